#include "embedded/embedded_runner.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "store/lease.h"
#include "workers/abandoned_jobs.h"
#include "workers/heartbeat_pacing.h"
#include "workers/utf8.h"

namespace jobstate::embedded {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {
constexpr milliseconds kCancelCheckInterval{100};
}

struct JobContext::Shared {
  JobId id;
  std::string lease_hash;  // the attempt's (store/lease.h); every report carries it
  std::mutex mu;
  std::optional<json> progress;   // newest progress not yet sent
  bool reporting = false;         // an outcome is being recorded: no heartbeats
  bool outcome_recorded = false;  // succeed/fail/cancelled went through (or the job was terminal)
  bool ended_elsewhere = false;   // a heartbeat found the job terminal, or this attempt over
  bool cancel_requested = false;
  bool heartbeat_in_flight = false;
  std::optional<workers::HeartbeatPacer> pacer;  // set before the heartbeat thread sees it
  SteadyClock::time_point last_cancel_check{};
};

Status JobContext::progress(double fraction, const std::string& message, json details) {
  if (!std::isfinite(fraction) || fraction < 0.0 || fraction > 1.0)
    return make_error(ErrorCode::kInvalidRequest, "progress fraction must be from 0 to 1");
  json p = {{"fraction", fraction},
            {"message", message.empty() ? json(nullptr) : json(workers::sanitize_utf8(message))},
            {"details", std::move(details)}};
  std::lock_guard lock(shared_->mu);
  shared_->progress = std::move(p);
  return ok_status();
}

bool JobContext::cancel_requested() const {
  {
    std::lock_guard lock(shared_->mu);
    if (shared_->cancel_requested) return true;
    const auto now = SteadyClock::now();
    if (now - shared_->last_cancel_check < kCancelCheckInterval) return false;
    shared_->last_cancel_check = now;
  }
  auto row = store_->read_model().row(id_);
  if (!row || !*row) return false;
  auto state = (*row)->to_state();
  if (!state || !state->cancel_requested) return false;
  std::lock_guard lock(shared_->mu);
  shared_->cancel_requested = true;
  return true;
}

bool JobContext::stop_requested() const {
  if (runner_stopping_ && runner_stopping_->load()) return true;
  std::lock_guard lock(shared_->mu);
  return shared_->ended_elsewhere;
}

bool JobContext::finished() const {
  std::lock_guard lock(shared_->mu);
  return shared_->outcome_recorded || shared_->ended_elsewhere;
}

Status JobContext::succeed(json result) {
  return report(SucceedJob{std::move(result)});
}

Status JobContext::fail(std::string code, const std::string& message, json details) {
  return report(FailJob{json{{"code", std::move(code)},
                             {"message", workers::sanitize_utf8(message)},
                             {"details", std::move(details)}}});
}

Status JobContext::cancelled(const std::string& reason) {
  return report(ConfirmCancelled{workers::sanitize_utf8(reason)});
}

Status JobContext::report(Command command) {
  std::optional<json> progress;
  {
    std::lock_guard lock(shared_->mu);
    if (shared_->outcome_recorded || shared_->reporting)
      return make_error(ErrorCode::kInvalidRequest, "this job's outcome was already reported");
    shared_->reporting = true;
    progress = std::move(shared_->progress);
    shared_->progress.reset();
  }
  JobWriter& writer = store_->writer();
  // The last progress goes in first: the writer keeps submission order.
  if (progress) {
    CommandRequest hb;
    hb.job_id = id_;
    hb.command = Heartbeat{std::move(*progress)};
    hb.lease_hash = shared_->lease_hash;
    writer.submit(std::move(hb), [](const Result<CommandOutcome>&) {});
  }
  CommandRequest request;
  request.job_id = id_;
  request.command = std::move(command);
  request.lease_hash = shared_->lease_hash;
  auto r = writer.execute(std::move(request));
  std::lock_guard lock(shared_->mu);
  shared_->reporting = false;
  // Unavailable or a refused transition: nothing was recorded; the handler
  // (or the guard after it) may still report.
  if (r.ok() || r.error().code == ErrorCode::kJobTerminal ||
      r.error().code == ErrorCode::kLeaseMismatch)
    shared_->outcome_recorded = true;
  if (!r) return r.error();
  return ok_status();
}

EmbeddedRunner::EmbeddedRunner(Store& store, EmbeddedRunnerOptions options)
    : store_(store), options_(std::move(options)) {
  if (options_.worker_name.empty())
    options_.worker_name = kEmbeddedWorkerPrefix + std::to_string(::getpid());
  options_.threads = std::max<size_t>(1, options_.threads);
}

EmbeddedRunner::~EmbeddedRunner() {
  stop();
}

Status EmbeddedRunner::register_handler(const std::string& type, JobHandler handler) {
  std::lock_guard lock(mu_);
  if (started_) return make_error(ErrorCode::kInvalidRequest, "register handlers before start()");
  if (!is_valid_job_type(type))
    return make_error(ErrorCode::kInvalidRequest, "type must be 1 to 128 of A-Za-z0-9._:-");
  if (!handler) return make_error(ErrorCode::kInvalidRequest, "empty handler for '" + type + "'");
  if (!handlers_.emplace(type, std::move(handler)).second)
    return make_error(ErrorCode::kInvalidRequest,
                      "a handler for '" + type + "' is already registered");
  return ok_status();
}

Status EmbeddedRunner::start() {
  {
    std::lock_guard lock(mu_);
    if (started_ || stopping_) return make_error(ErrorCode::kInvalidRequest, "start() runs once");
  }
  std::vector<std::pair<uint64_t, JobId>> queued;
  if (options_.recover_on_start) {
    auto abandoned =
        workers::fail_abandoned_jobs(store_.read_model(), store_.writer(), kEmbeddedWorkerPrefix);
    if (!abandoned) return abandoned.error();
    for (const auto& [type, handler] : handlers_) {
      std::optional<uint64_t> before;
      while (true) {  // bounded: `before` moves strictly down
        auto page = store_.read_model().list(ListFilter{JobStatus::kQueued, type}, before, 1000);
        if (!page) return page.error();
        for (const auto& row : page->jobs)
          if (auto s = row.to_state()) queued.emplace_back(row.created_seq, s->id);
        if (!page->next_before_seq) break;
        before = page->next_before_seq;
      }
    }
    std::sort(queued.begin(), queued.end());  // creation order
  }
  std::lock_guard lock(mu_);
  for (auto& [seq, id] : queued) waiting_.push_back(id);
  started_ = true;
  for (size_t i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  heartbeat_thread_ = std::thread([this] { heartbeat_loop(); });
  return ok_status();
}

Result<JobId> EmbeddedRunner::trigger(const std::string& type, json params,
                                      TriggerOptions options) {
  if (!handlers_.count(type))
    return make_error(ErrorCode::kInvalidRequest, "no handler registered for type '" + type + "'");
  {
    std::lock_guard lock(mu_);
    if (!started_ || stopping_)
      return make_error(ErrorCode::kUnavailable, "the runner is not running");
    if (waiting_.size() + reserved_ >= options_.max_waiting)
      return make_error(ErrorCode::kUnavailable,
                        std::to_string(options_.max_waiting) + " jobs are already waiting");
    ++reserved_;
  }
  CommandRequest request;
  request.job_id = JobId::generate();
  request.command =
      CreateJob{type, std::move(params), options.heartbeat_timeout_s, std::move(options.labels)};
  const JobId id = request.job_id;
  auto created = store_.writer().execute(std::move(request));
  {
    std::lock_guard lock(mu_);
    --reserved_;
    if (created) waiting_.push_back(id);
  }
  if (!created) return created.error();
  work_cv_.notify_one();
  return id;
}

Result<std::optional<JobState>> EmbeddedRunner::status(const JobId& id) const {
  auto row = store_.read_model().row(id);
  if (!row) return row.error();
  if (!*row) return std::optional<JobState>();
  auto state = (*row)->to_state();
  if (!state) return state.error();
  return std::optional<JobState>(std::move(*state));
}

Result<std::vector<Event>> EmbeddedRunner::history(const JobId& id) const {
  return store_.log().job_events(id);
}

size_t EmbeddedRunner::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_.size();
}

void EmbeddedRunner::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
  {
    std::lock_guard lock(hb_mu_);
    hb_stop_ = true;
  }
  hb_cv_.notify_all();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

void EmbeddedRunner::worker_loop() {
  while (true) {
    JobId id;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !waiting_.empty(); });
      if (stopping_) return;  // waiting jobs stay queued in the store
      id = waiting_.front();
      waiting_.pop_front();
    }
    run_job(id);
  }
}

void EmbeddedRunner::run_job(const JobId& id) {
  const std::string lease_hash = new_lease_hash();
  CommandRequest start;
  start.job_id = id;
  start.command = StartJob{options_.worker_name, lease_hash};
  auto started = store_.writer().execute(std::move(start));
  if (!started) {
    // Cancelled while waiting, or another worker took it: nothing to run.
    spdlog::debug("embedded: job {} not started: {}", id.to_string(), started.error().message);
    return;
  }
  const JobState& job = started->state();
  auto handler = handlers_.find(job.type);
  if (handler == handlers_.end()) return;  // unreachable: only registered types are queued

  JobContext ctx;
  ctx.id_ = id;
  ctx.type_ = job.type;
  ctx.params_ = job.params;
  ctx.store_ = &store_;
  ctx.runner_stopping_ = &stopping_;
  ctx.shared_ = std::make_shared<JobContext::Shared>();
  ctx.shared_->id = id;
  ctx.shared_->lease_hash = lease_hash;
  // The start set the deadline.
  ctx.shared_->pacer.emplace(
      workers::heartbeat_interval_ms(job.heartbeat_timeout_s, options_.min_heartbeat_interval_ms),
      options_.progress_min_interval_ms, SteadyClock::now());
  ctx.shared_->cancel_requested = job.cancel_requested;
  {
    std::lock_guard lock(hb_mu_);
    active_.push_back(ctx.shared_);
  }
  hb_cv_.notify_all();
  ++running_;

  std::optional<std::string> thrown;
  try {
    handler->second(ctx);
  } catch (const std::exception& e) {
    thrown = e.what();
  } catch (...) {
    thrown = "an exception not derived from std::exception";
  }
  {
    std::lock_guard lock(hb_mu_);
    std::erase(active_, ctx.shared_);
  }
  if (!ctx.finished()) {
    // The guard: a job whose handler did not report must not stay running.
    json error = {{"code", "abandoned"}, {"details", nullptr}};
    if (thrown) {
      error["message"] =
          workers::sanitize_utf8("the handler for '" + job.type + "' threw: " + *thrown);
      error["details"] = {{"exception", workers::sanitize_utf8(*thrown)}};
    } else {
      error["message"] = "the handler for '" + job.type +
                         "' returned without calling succeed(), fail() or cancelled()";
    }
    auto s = ctx.report(FailJob{std::move(error)});
    if (!s && s.error().code != ErrorCode::kJobTerminal)
      spdlog::warn("embedded: job {}: recording the abandoned handler failed: {}", id.to_string(),
                   s.error().message);
  }
  --running_;
}

void EmbeddedRunner::heartbeat_loop() {
  std::unique_lock lock(hb_mu_);
  while (!hb_stop_) {
    const auto now = SteadyClock::now();
    auto next = now + std::chrono::seconds(60);
    std::vector<CommandRequest> due;
    std::vector<std::shared_ptr<JobContext::Shared>> owners;
    for (const auto& s : active_) {
      std::lock_guard run_lock(s->mu);
      if (s->reporting || s->outcome_recorded || s->ended_elsewhere) continue;
      // Progress may arrive at any moment without a wake-up: look again
      // after progress_min_interval_ms at the latest.
      next = std::min(next, now + milliseconds(options_.progress_min_interval_ms));
      if (s->heartbeat_in_flight) continue;
      const bool progress_pending = s->progress.has_value();
      if (!s->pacer->is_due(now, progress_pending)) {
        next = std::min(next, s->pacer->next_due(progress_pending));
        continue;
      }
      CommandRequest request;
      request.job_id = s->id;
      request.lease_hash = s->lease_hash;
      Heartbeat hb;
      if (s->progress) {
        hb.progress = std::move(*s->progress);
        s->progress.reset();
        s->pacer->progress_sent(now);
      }
      request.command = std::move(hb);
      s->pacer->heartbeat_sent(now);
      s->heartbeat_in_flight = true;
      due.push_back(std::move(request));
      owners.push_back(s);
    }
    lock.unlock();
    for (size_t i = 0; i < due.size(); ++i) {
      store_.writer().submit(std::move(due[i]), [s = owners[i]](const Result<CommandOutcome>& r) {
        std::lock_guard run_lock(s->mu);
        s->heartbeat_in_flight = false;
        if (r) {
          if (r->state().cancel_requested) s->cancel_requested = true;
        } else if (r.error().code == ErrorCode::kJobTerminal ||
                   r.error().code == ErrorCode::kLeaseMismatch) {
          s->ended_elsewhere = true;
        }
      });
    }
    lock.lock();
    if (hb_stop_) break;
    hb_cv_.wait_until(lock, next);
  }
}

}  // namespace jobstate::embedded
