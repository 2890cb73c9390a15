#include "jobstate/job_run.h"

#include <algorithm>
#include <cmath>
#include <typeinfo>

#if __has_include(<cxxabi.h>)
#include <cxxabi.h>

#include "workers/heartbeat_pacing.h"
#define JOBSTATE_HAVE_CXXABI 1
#endif

namespace jobstate::client {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr int64_t kMinIntervalMs = 100;
constexpr int64_t kMaxIntervalMs = 30000;
constexpr int64_t kFirstBackoffMs = 100;

int64_t derive_interval_ms(int64_t configured_ms, int64_t heartbeat_timeout_s) {
  if (configured_ms > 0) return configured_ms;
  return workers::heartbeat_interval_ms(heartbeat_timeout_s, kMinIntervalMs, kMaxIntervalMs);
}

// A heartbeat must come back (or fail) well before the next one is due, yet
// not give up on a merely slow fsync.
ClientOptions heartbeat_client_options(ClientOptions o, int64_t heartbeat_timeout_s) {
  o.request_timeout_ms = std::clamp<int64_t>(heartbeat_timeout_s * 1000 / 2, 1000, 10000);
  o.connect_timeout_ms = std::min(o.connect_timeout_ms, o.request_timeout_ms);
  return o;
}

int64_t ms_until(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(t - Clock::now()).count();
}

std::string type_name(const std::type_info& type) {
#ifdef JOBSTATE_HAVE_CXXABI
  int status = 0;
  char* demangled = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  if (status == 0 && demangled) {
    std::string out(demangled);
    std::free(demangled);
    return out;
  }
  std::free(demangled);
#endif
  return type.name();
}

// The attempt is over for this worker: the job finished, or it moved on to
// another attempt (a retry, a claim by another worker) and this lease is stale.
bool is_terminal_problem(const Problem& p) {
  return p.status == 409 && (p.slug == "job-terminal" || p.slug == "lease-mismatch");
}

// Retries fn() while its problem is retryable and time remains.
Result<Job> retry_until(Clock::time_point deadline, const std::function<Result<Job>()>& fn) {
  int64_t backoff_ms = kFirstBackoffMs;
  while (true) {
    auto r = fn();
    if (r || !r.problem().retryable() || ms_until(deadline) <= backoff_ms) return r;
    std::this_thread::sleep_for(milliseconds(backoff_ms));
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 1000);
  }
}

}  // namespace

Result<std::unique_ptr<JobRun>> JobRun::start(const ClientOptions& client_options,
                                              JobRunOptions options) {
  if (options.worker.empty()) options.worker = default_worker_name();
  if (options.job_id.empty() && options.idempotency_key.empty())
    options.idempotency_key = random_uuid();
  Client client(client_options);
  const auto deadline = Clock::now() + milliseconds(options.start_timeout_ms);

  std::string id = options.job_id;
  const bool creating = id.empty();
  if (creating) {
    auto created = retry_until(
        deadline, [&] { return client.create(options.create, options.idempotency_key); });
    if (!created) return created.problem();
    id = created->id;
  }

  int attempts = 0;
  auto started = retry_until(deadline, [&] {
    ++attempts;
    return client.start(id, options.worker);
  });
  if (!started && attempts > 1 && started.problem().status == 409) {
    // An earlier attempt may have landed with its answer lost: the job is
    // then running under our name.
    if (auto now = client.get(id); now && now->state == "running" && now->worker == options.worker)
      started = std::move(now);
  }
  if (!started) {
    Problem p = started.problem();
    if (creating) {
      // Do not leave a job queued that no worker will take.
      auto cancelled = client.cancel(id, "the worker could not start it: " + p.describe());
      p.detail += cancelled ? " (job " + id + " was created, then cancelled)"
                            : " (job " + id + " was created and stays queued)";
    }
    return p;
  }
  return std::unique_ptr<JobRun>(
      new JobRun(client_options, std::move(options), std::move(*started)));
}

std::unique_ptr<JobRun> JobRun::adopt(const ClientOptions& client, JobRunOptions options, Job job) {
  if (options.worker.empty()) options.worker = job.worker.value_or(default_worker_name());
  return std::unique_ptr<JobRun>(new JobRun(client, std::move(options), std::move(job)));
}

JobRun::JobRun(const ClientOptions& client, JobRunOptions options, Job job)
    : client_options_(client),
      options_(std::move(options)),
      job_id_(job.id),
      heartbeat_timeout_s_(job.heartbeat_timeout_s),
      heartbeat_interval_ms_(
          derive_interval_ms(options_.heartbeat_interval_ms, job.heartbeat_timeout_s)),
      uncaught_at_start_(std::uncaught_exceptions()),
      heartbeat_client_(heartbeat_client_options(client, job.heartbeat_timeout_s)),
      lease_(job.lease),
      last_job_(std::move(job)) {
  // Every report of this attempt carries its lease, from whichever client.
  if (lease_) heartbeat_client_.use_lease(job_id_, *lease_);
  cancel_requested_ = last_job_.cancel_requested;
  heartbeat_thread_ = std::thread([this] { heartbeat_loop(); });
}

JobRun::~JobRun() {
  try {
    if (!finished_ && !lost_) {
      const bool unwinding = std::uncaught_exceptions() > uncaught_at_start_;
      std::string message;
      json details = {{"worker", options_.worker}, {"during_exception", unwinding}};
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (exception_noted_) {
          message = "the task ended with exception " + exception_type_ + ": " + exception_message_;
          details["exception"] = {{"type", exception_type_}, {"message", exception_message_}};
        } else if (unwinding) {
          message =
              "the worker's JobRun was destroyed while an exception propagated (type and message "
              "not recorded: run the task inside JobRun::guard())";
        } else {
          message = "the worker's JobRun was destroyed before succeed(), fail() or cancelled()";
        }
      }
      // A heartbeat stuck on a hanging server must not hold the destructor.
      heartbeat_client_.abort_calls();
      // How far the task got is worth a third of the time budget; the
      // failure gets the rest.
      const auto deadline = Clock::now() + milliseconds(options_.destructor_timeout_ms);
      flush_progress(std::max<int64_t>(options_.destructor_timeout_ms / 3, 1));
      report(std::max<int64_t>(ms_until(deadline), 1), "failed",
             [&](Client& c) { return c.fail(job_id_, "abandoned", message, details); });
    }
  } catch (...) {
    // Nothing may escape a destructor; the watchdog fails the job at its deadline.
  }
  try {
    stop_heartbeats();
  } catch (...) {
  }
}

Job JobRun::last_job() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_job_;
}

std::string JobRun::lost_state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lost_state_;
}

std::optional<Problem> JobRun::heartbeat_problem() const {
  std::lock_guard<std::mutex> lock(mu_);
  return heartbeat_problem_;
}

void JobRun::set_progress(double fraction, std::string message, nlohmann::json details) {
  Progress p;
  if (!std::isnan(fraction)) p.fraction = std::clamp(fraction, 0.0, 1.0);
  if (!message.empty()) p.message = std::move(message);
  p.details = std::move(details);
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_progress_ = std::move(p);
  }
  wake_.notify_all();
}

bool JobRun::sleep_unless_stopped(std::chrono::milliseconds duration) {
  std::unique_lock<std::mutex> lock(mu_);
  wake_.wait_for(lock, duration, [this] { return should_stop(); });
  return should_stop();
}

void JobRun::note_exception(std::exception_ptr exception) {
  if (!exception) return;
  std::string type = "unknown exception", message;
  try {
    std::rethrow_exception(exception);
  } catch (const std::exception& e) {
    type = type_name(typeid(e));
    message = e.what();
  } catch (...) {
  }
  std::lock_guard<std::mutex> lock(mu_);
  exception_type_ = std::move(type);
  exception_message_ = std::move(message);
  exception_noted_ = true;
}

void JobRun::remember(const Job& job) {
  std::lock_guard<std::mutex> lock(mu_);
  if (job.version >= last_job_.version) last_job_ = job;
}

void JobRun::heartbeat_loop() {
  const auto interval = milliseconds(heartbeat_interval_ms_);
  // Only this thread uses it; the job was just started (its deadline set).
  workers::HeartbeatPacer pacer(heartbeat_interval_ms_, options_.min_progress_interval_ms,
                                Clock::now());
  int failures = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const auto due = pacer.next_due(pending_progress_.has_value());
    if (Clock::now() < due) {
      wake_.wait_until(lock, due);
      continue;
    }
    // Take the sender's turn with the progress, so an outcome's flush
    // cannot overtake it with newer progress.
    send_done_.wait(lock, [&] { return !sending_ || stopping_; });
    if (stopping_) break;
    std::optional<Progress> progress = std::move(pending_progress_);
    pending_progress_.reset();
    if (progress) pacer.progress_sent(Clock::now());
    sending_ = true;
    lock.unlock();
    auto r = heartbeat_client_.heartbeat(job_id_, progress);
    lock.lock();
    sending_ = false;
    send_done_.notify_all();
    if (r) {
      if (r->version >= last_job_.version) last_job_ = *r;
      heartbeat_problem_.reset();
      failures = 0;
      pacer.heartbeat_sent(Clock::now());
      if (r->cancel_requested && !cancel_requested_.exchange(true)) wake_.notify_all();
      continue;
    }
    const Problem& p = r.problem();
    if (p.slug == "aborted") break;
    if (is_terminal_problem(p) || p.status == 404) {
      // Our own outcome landing first also looks like this; only a job
      // finished by someone else is lost.
      if (!reporting_.load() && !finished_.load()) {
        lost_state_ = p.body.is_object() ? p.body.value("state", "unknown") : "unknown";
        lost_ = true;
        wake_.notify_all();
      }
      break;
    }
    heartbeat_problem_ = p;
    if (p.retryable()) {
      // Keep the unsent progress unless newer progress arrived meanwhile.
      if (progress && !pending_progress_) pending_progress_ = std::move(progress);
      const int64_t backoff_ms = kFirstBackoffMs << std::min(failures, 12);
      ++failures;
      pacer.heartbeat_due_at(Clock::now() + std::min(milliseconds(backoff_ms), interval));
    } else {
      // Refused (say, progress the server finds invalid): drop it, keep the cadence.
      pacer.heartbeat_sent(Clock::now());
    }
  }
}

void JobRun::flush_progress(int64_t timeout_ms) {
  // After a heartbeat in flight (it may carry older progress); it ends
  // within its own timeout, or at once when the heartbeat client was aborted.
  const auto deadline = Clock::now() + milliseconds(timeout_ms);
  std::optional<Progress> progress;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!send_done_.wait_until(lock, deadline, [&] { return !sending_; })) return;
    progress = std::move(pending_progress_);
    pending_progress_.reset();
    if (!progress) return;
    sending_ = true;
  }
  struct TurnDone {  // gives the turn back, on every way out
    JobRun& run;
    ~TurnDone() {
      std::lock_guard<std::mutex> lock(run.mu_);
      run.sending_ = false;
      run.send_done_.notify_all();
    }
  } turn_done{*this};
  ClientOptions o = client_options_;
  o.request_timeout_ms = std::clamp<int64_t>(ms_until(deadline), 1, o.request_timeout_ms);
  o.connect_timeout_ms = std::min(o.connect_timeout_ms, o.request_timeout_ms);
  Client c(o);
  if (lease_) c.use_lease(job_id_, *lease_);
  if (auto r = c.heartbeat(job_id_, progress)) remember(*r);
}

Result<Job> JobRun::report(int64_t timeout_ms, const std::string& expected_state,
                           const std::function<Result<Job>(Client&)>& call) {
  ++reporting_;
  const auto deadline = Clock::now() + milliseconds(std::max<int64_t>(timeout_ms, 1));
  int64_t backoff_ms = kFirstBackoffMs;
  int attempts = 0;
  std::optional<Result<Job>> outcome;
  while (!outcome) {
    // Each attempt gets only the time left, so the whole report stays bounded.
    ClientOptions o = client_options_;
    o.request_timeout_ms = std::max<int64_t>(ms_until(deadline), 1);
    o.connect_timeout_ms = std::min(o.connect_timeout_ms, o.request_timeout_ms);
    Client c(o);
    if (lease_) c.use_lease(job_id_, *lease_);
    auto r = call(c);
    ++attempts;
    if (r) {
      finished_ = true;
      remember(*r);
      outcome = std::move(r);
      break;
    }
    const Problem p = r.problem();
    if (is_terminal_problem(p)) {
      const std::string state = p.body.is_object() ? p.body.value("state", "") : "";
      if (attempts > 1 && state == expected_state) {
        // The earlier attempt landed; its answer was lost.
        if (auto now = c.get(job_id_)) {
          finished_ = true;
          remember(*now);
          outcome = std::move(now);
          break;
        }
      }
      {
        // Under the lock: sleep_unless_stopped() must not miss the change.
        std::lock_guard<std::mutex> lock(mu_);
        lost_state_ = state.empty() ? "unknown" : state;
        lost_ = true;
        finished_ = true;
      }
      wake_.notify_all();
      outcome = std::move(r);
      break;
    }
    if (!p.retryable() || ms_until(deadline) <= backoff_ms) {
      outcome = std::move(r);
      break;
    }
    std::this_thread::sleep_for(milliseconds(backoff_ms));
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 2000);
  }
  --reporting_;
  if (finished_) stop_heartbeats();
  return std::move(*outcome);
}

void JobRun::stop_heartbeats() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  send_done_.notify_all();
  heartbeat_client_.abort_calls();  // a heartbeat stuck on a hanging server ends now
  std::call_once(join_once_, [this] {
    if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  });
}

Result<Job> JobRun::succeed(const nlohmann::json& result) {
  flush_progress(std::min<int64_t>(options_.report_timeout_ms, 5000));
  return report(options_.report_timeout_ms, "succeeded",
                [&](Client& c) { return c.succeed(job_id_, result); });
}

Result<Job> JobRun::fail(const std::string& code, const std::string& message,
                         const nlohmann::json& details) {
  flush_progress(std::min<int64_t>(options_.report_timeout_ms, 5000));
  return report(options_.report_timeout_ms, "failed",
                [&](Client& c) { return c.fail(job_id_, code, message, details); });
}

Result<Job> JobRun::cancelled(const std::string& reason) {
  flush_progress(std::min<int64_t>(options_.report_timeout_ms, 5000));
  return report(options_.report_timeout_ms, "cancelled",
                [&](Client& c) { return c.cancelled(job_id_, reason); });
}

}  // namespace jobstate::client
