#include "watchdog/watchdog.h"

#include <spdlog/spdlog.h>

#include <future>
#include <vector>

namespace jobstate {

Watchdog::Watchdog(const StatusProjection& projection, Writer& writer, const Clock& clock,
                   WatchdogOptions options)
    : projection_(projection), writer_(writer), clock_(clock), options_(options) {}

Watchdog::~Watchdog() { stop(); }

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
    sweep_once();
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(options_.interval_ms),
                 [&] { return stop_requested_; });
  }
}

size_t Watchdog::sweep_once() {
  const TimeMs now = clock_.now_ms();
  auto expired = projection_.expired(now, options_.max_per_sweep);
  if (!expired) {
    spdlog::warn("watchdog: reading deadlines failed: {}", expired.error().message);
    return 0;
  }
  std::vector<std::future<void>> pending;
  for (auto& d : *expired) {
    auto row = projection_.row(d.job_id);
    if (!row || !*row || (*row)->status != JobStatus::kRunning) continue;
    // Still within the grace after a restart: not yet.
    const TimeMs grace_end = writer_.server_start_ms() + (*row)->heartbeat_timeout_s * 1000;
    if (now < grace_end) continue;
    auto done = std::make_shared<std::promise<void>>();
    pending.push_back(done->get_future());
    CommandRequest req;
    req.job_id = d.job_id;
    req.command = ExpireHeartbeat{};
    req.expected_version = (*row)->version;
    writer_.submit(std::move(req), [done, id = d.job_id](Result<CommandOutcome> r) {
      if (r && !r->events.empty())
        spdlog::info("watchdog: job {} failed: heartbeat_timeout", id.to_string());
      done->set_value();
    });
  }
  for (auto& f : pending) f.wait();
  return pending.size();
}

}  // namespace jobstate
