#include "watchdog/watchdog.h"

#include <spdlog/spdlog.h>

#include "logging/logging.h"
#include "metrics/metrics.h"

#include <future>
#include <vector>

namespace jobstate {

namespace {
metrics::CounterFamily& watchdog_failures() {
  static auto& f = metrics::process().counter(
      "jobstate_watchdog_failures_total",
      "Jobs the watchdog failed (or queued for a retry) because a deadline passed, by error code",
      {"code"});
  return f;
}
metrics::HistogramFamily& detection_lag() {
  static auto& f = metrics::process().histogram(
      "jobstate_watchdog_detection_lag_seconds",
      "From a job's deadline (deadline_at, with a restart's grace) to the watchdog's failure event",
      metrics::job_seconds_buckets());
  return f;
}
// The error code of a failed or retry_scheduled event: data.error.code.
std::string failure_code(const Event& e) {
  if (e.data.is_object()) {
    auto err = e.data.find("error");
    if (err != e.data.end() && err->is_object()) {
      auto code = err->find("code");
      if (code != err->end() && code->is_string()) return code->get<std::string>();
    }
  }
  return "unknown";
}
}  // namespace

Watchdog::Watchdog(const ReadModel& jobs, JobWriter& writer, const Clock& clock,
                   WatchdogOptions options, Leadership* leadership)
    : jobs_(jobs), writer_(writer), leadership_(leadership), clock_(clock), options_(options) {
  // The codes a deadline gives, at zero from the first scrape.
  for (const char* code : {"heartbeat_timeout", "execution_timeout"}) watchdog_failures().with({code});
  detection_lag().with({});
}

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
      const TimeMs deadline =
          effective_deadline_ms((*row)->deadline_ms, (*row)->heartbeat_timeout_s, server_start);
      if (now < deadline) continue;
      auto done = std::make_shared<std::promise<void>>();
      pending.push_back(done->get_future());
      CommandRequest req;
      req.job_id = d.job_id;
      req.command = ExpireDeadlines{};
      req.expected_version = (*row)->version;
      writer_.submit(std::move(req), [this, done, deadline, id = d.job_id](Result<CommandOutcome> r) {
        if (r) {
          for (const Event& e : r->events) {
            if (e.type != EventType::kFailed && e.type != EventType::kRetryScheduled) continue;
            const std::string code = failure_code(e);
            watchdog_failures().with({code}).inc();
            // How late the failure was recorded after the deadline passed.
            detection_lag().with({}).observe(static_cast<double>(std::max<TimeMs>(e.at_ms - deadline, 0)) / 1000.0);
            // The one line per failure (docs/operations.md, "Logs").
            logging::log(spdlog::level::info, "watchdog: job failed",
                         {{"job_id", id.to_string()},
                          {"code", code},
                          {"retry_scheduled", e.type == EventType::kRetryScheduled}});
          }
        }
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
