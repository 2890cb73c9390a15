#include "watchdog/watchdog.h"

#include <spdlog/spdlog.h>

#include <future>
#include <vector>

namespace jobstate {

Watchdog::Watchdog(const ReadModel& jobs, JobWriter& writer, const Clock& clock,
                   WatchdogOptions options, Leadership* leadership)
    : jobs_(jobs), writer_(writer), leadership_(leadership), clock_(clock), options_(options) {}

Watchdog::~Watchdog() {
  stop();
}

void Watchdog::start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_requested_ = false;
  }
  running_ = true;
  thread_ = std::thread([this] { loop(); });
}

void Watchdog::stop() {
  {
    std::lock_guard lock(mu_);
    stop_requested_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  running_ = false;
}

void Watchdog::loop() {
  std::unique_lock lock(mu_);
  while (!stop_requested_) {
    lock.unlock();
    const bool lead = !leadership_ || leadership_->holds_lead();
    if (static_cast<int>(lead) != leading_) {
      spdlog::info(lead ? "watchdog: this node leads the sweep" : "watchdog: another node leads the sweep");
      leading_ = static_cast<int>(lead);
    }
    if (lead) sweep_once();
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(options_.interval_ms),
                 [&] { return stop_requested_; });
  }
}

size_t Watchdog::sweep_once() {
  const TimeMs now = clock_.now_ms();
  const TimeMs server_start = writer_.server_start_ms();
  constexpr size_t kPage = 1000;
  std::vector<std::future<void>> pending;
  std::optional<ExpiredDeadline> cursor;
  // Page through the expired range: jobs still in their restart grace are
  // skipped, and must not hide overdue jobs behind them.
  while (pending.size() < options_.max_per_sweep) {
    auto expired = jobs_.expired(now, kPage, cursor ? &*cursor : nullptr);
    if (!expired) {
      spdlog::warn("watchdog: reading deadlines failed: {}", expired.error().message);
      break;
    }
    for (auto& d : *expired) {
      if (pending.size() >= options_.max_per_sweep) break;
      auto row = jobs_.row(d.job_id);
      if (!row || !*row || (*row)->deadline_ms == 0) continue;
      // The index files a job up to a quarter timeout before its deadline,
      // and a deadline that passed while the server was down gets its grace:
      // the row decides.
      if (now <
          effective_deadline_ms((*row)->deadline_ms, (*row)->heartbeat_timeout_s, server_start))
        continue;
      auto done = std::make_shared<std::promise<void>>();
      pending.push_back(done->get_future());
      CommandRequest req;
      req.job_id = d.job_id;
      req.command = ExpireDeadlines{};
      req.expected_version = (*row)->version;
      writer_.submit(std::move(req), [this, done, id = d.job_id](Result<CommandOutcome> r) {
        if (r && !r->events.empty())
          spdlog::info("watchdog: job {} failed: heartbeat_timeout", id.to_string());
        // The store not taking writes (a full disk): one line, not one per
        // job per sweep; the next sweeps try again.
        if (!r && r.error().code == ErrorCode::kUnavailable) {
          if (!writes_refused_.exchange(true))
            spdlog::warn("watchdog: the store refuses writes ({}); overdue jobs are failed once "
                         "it takes them again",
                         r.error().message);
        } else if (writes_refused_.exchange(false)) {
          spdlog::info("watchdog: the store takes writes again");
        }
        done->set_value();
      });
    }
    if (expired->size() < kPage) break;
    cursor = expired->back();
  }
  for (auto& f : pending) f.wait();
  return pending.size();
}

}  // namespace jobstate
