// JobRun: an RAII guard for one job a worker runs. Create it where the task
// begins; it takes the job (creating it or starting an existing one),
// heartbeats from a background thread, carries progress, tells the task when
// a cancel was requested, and reports the outcome. If it is destroyed before
// succeed() / fail() / cancelled() landed, it reports the job failed with
// error code "abandoned", so a task that dies by exception or early return
// is never left "running".
//
//   auto run = JobRun::start(client_options, {.create = {.type = "thumbnail"}});
//   if (!run) return log(run.problem().describe());
//   (*run)->guard([&] {
//     for (int page = 0; page < pages; ++page) {
//       if ((*run)->should_stop()) return (void)(*run)->cancelled("asked to stop");
//       render(page);                                   // may throw
//       (*run)->set_progress((page + 1.0) / pages, "page " + std::to_string(page + 1));
//     }
//     (*run)->succeed({{"pages", pages}});
//   });
//
// Exceptions: a destructor that runs during stack unwinding can tell that an
// exception is propagating (std::uncaught_exceptions()) but cannot see which:
// std::current_exception() is empty until a catch block is entered (and
// inside an unrelated enclosing catch block it names that older exception).
// So the failure names the exception only when it was recorded on the way
// out: run the task inside guard() (records and rethrows), or call
// note_exception(std::current_exception()) in a catch block. Without that the
// message says an exception propagated, without its text.
//
// Heartbeats: every heartbeat_interval (default heartbeat_timeout_s / 3,
// within [100 ms, 30 s]) and, after set_progress(), at most every
// min_progress_interval_ms. When the server cannot be reached (or answers
// 503) the guard retries with exponential backoff from 100 ms up to the
// interval and keeps the task running. Past the job's deadline it keeps
// trying at the interval: a restarted server grants running jobs one
// heartbeat timeout of grace, so a late heartbeat can still save the job.
// Only the server says a job is gone: 409 job-terminal (for example the
// watchdog failed it) or 404 sets lost() and stops heartbeats.
//
// Thread safety: every member function may be called from any thread
// concurrently; the destructor must not race with other calls.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "jobstate/client.h"

namespace jobstate::client {

struct JobRunOptions {
  // The job to take: an existing queued job's id; empty: create a new job
  // from `create` first.
  std::string job_id;
  CreateJobRequest create;
  // Idempotency-Key for the create; empty: a random one, so a create retried
  // after a lost answer still makes one job.
  std::string idempotency_key;
  // The "worker" recorded on start; empty: "host/pid".
  std::string worker;
  // Time between heartbeats; 0: heartbeat_timeout_s / 3, within [100 ms, 30 s].
  int64_t heartbeat_interval_ms = 0;
  // Progress changes are sent at most this often (each heartbeat is a
  // durable event on the server). Default 1 s.
  int64_t min_progress_interval_ms = 1000;
  // How long start() keeps retrying create/start when the server cannot be
  // reached or answers 503. Default 10 s.
  int64_t start_timeout_ms = 10000;
  // Bound on succeed()/fail()/cancelled(), retries included. Default 30 s.
  int64_t report_timeout_ms = 30000;
  // Bound on the destructor's "abandoned" report, retries included; the
  // destructor returns within about this plus one second. Default 5 s.
  int64_t destructor_timeout_ms = 5000;
};

class JobRun {
 public:
  // Creates the job (unless options.job_id names one), starts it as this
  // worker and begins heartbeating. On error nothing runs; a job created
  // before start failed stays queued (the problem's detail names it).
  static Result<std::unique_ptr<JobRun>> start(const ClientOptions& client, JobRunOptions options);
  // Takes over a job this worker already started (a claim's answer, with its
  // lease) and begins heartbeating; options.job_id and create are ignored.
  static std::unique_ptr<JobRun> adopt(const ClientOptions& client, JobRunOptions options, Job job);

  // Reports failed/"abandoned" unless an outcome landed or the job is lost
  // (after sending pending progress, so the job shows how far it got), then
  // stops the heartbeat thread. Never throws; returns within about
  // destructor_timeout_ms + 1 s even when the server hangs or is down.
  ~JobRun();
  JobRun(const JobRun&) = delete;
  JobRun& operator=(const JobRun&) = delete;

  const std::string& job_id() const { return job_id_; }
  int64_t heartbeat_timeout_s() const { return heartbeat_timeout_s_; }
  int64_t heartbeat_interval_ms() const { return heartbeat_interval_ms_; }
  // The job as of the server's latest answer.
  Job last_job() const;

  // Progress for the next heartbeat (sent within min_progress_interval_ms).
  // fraction is clamped into [0, 1]; NaN sends no fraction.
  void set_progress(double fraction, std::string message = "", nlohmann::json details = nullptr);

  // A client asked to cancel (seen in a heartbeat's answer): stop, then call
  // cancelled().
  bool cancel_requested() const { return cancel_requested_.load(); }
  // The server finished the job without this guard (the watchdog failed it
  // after missed heartbeats, or someone else reported): further reports are
  // refused. lost_state() says how it ended.
  bool lost() const { return lost_.load(); }
  std::string lost_state() const;
  // cancel_requested() || lost(): the task should stop.
  bool should_stop() const { return cancel_requested() || lost(); }
  // Sleeps up to `duration`, waking early when should_stop() turns true.
  // Returns should_stop().
  bool sleep_unless_stopped(std::chrono::milliseconds duration);
  // The last heartbeat's problem while heartbeats are failing; nullopt once
  // one succeeds again.
  std::optional<Problem> heartbeat_problem() const;

  // Outcomes. Each flushes pending progress first, retries retryable
  // problems within report_timeout_ms, and on success stops heartbeats. An
  // outcome that was refused (say 400 for a result that is not JSON-able
  // within limits) leaves the guard armed: heartbeats go on and the
  // destructor still reports "abandoned" unless another outcome lands.
  Result<Job> succeed(const nlohmann::json& result = nullptr);
  Result<Job> fail(const std::string& code, const std::string& message,
                   const nlohmann::json& details = nullptr);
  // Confirms a stop after cancel_requested().
  Result<Job> cancelled(const std::string& reason = "");
  // True once an outcome landed or the job was found finished.
  bool finished() const { return finished_.load(); }

  // Records an exception for the "abandoned" report (see the top of this
  // file). Call in a catch block with std::current_exception().
  void note_exception(std::exception_ptr exception);

  // Runs fn(); if it throws, records the exception, then rethrows it.
  template <typename F>
  decltype(auto) guard(F&& fn) {
    try {
      return std::forward<F>(fn)();
    } catch (...) {
      note_exception(std::current_exception());
      throw;
    }
  }

 private:
  JobRun(const ClientOptions& client, JobRunOptions options, Job job);
  void heartbeat_loop();
  // Sends a pending progress update, if any, before an outcome (one
  // attempt, at most timeout_ms).
  void flush_progress(int64_t timeout_ms);
  // One outcome call, retried on retryable problems for up to timeout_ms.
  // expected_state: the state the outcome leads to (a retry that finds the
  // job already there means an earlier attempt landed).
  Result<Job> report(int64_t timeout_ms, const std::string& expected_state,
                     const std::function<Result<Job>(Client&)>& call);
  void stop_heartbeats();
  void remember(const Job& job);

  const ClientOptions client_options_;
  const JobRunOptions options_;
  const std::string job_id_;
  const int64_t heartbeat_timeout_s_;
  const int64_t heartbeat_interval_ms_;
  // std::uncaught_exceptions() when the guard was made: more at destruction
  // means the destructor runs during unwinding.
  const int uncaught_at_start_;

  Client heartbeat_client_;  // used only by the heartbeat thread
  const std::optional<std::string> lease_;  // the attempt's Job-Lease

  mutable std::mutex mu_;
  std::condition_variable wake_;  // heartbeat thread and sleep_unless_stopped()
  bool stopping_ = false;
  Job last_job_;
  std::optional<Progress> pending_progress_;
  std::optional<Problem> heartbeat_problem_;
  std::string lost_state_;
  std::string exception_type_;     // from note_exception
  std::string exception_message_;  // from note_exception
  bool exception_noted_ = false;

  // Set (under mu_) while a heartbeat is sent, by the heartbeat thread or a
  // flush, so progress reaches the server in the order it was set; send_done_
  // tells when it clears. (Not a std::timed_mutex: its try_lock_until uses
  // pthread_mutex_clocklock, which GCC 12's ThreadSanitizer does not see.)
  bool sending_ = false;
  std::condition_variable send_done_;

  std::atomic<bool> cancel_requested_{false};
  std::atomic<bool> lost_{false};
  std::atomic<bool> finished_{false};
  // Set while an outcome is in flight: a heartbeat answered 409 job-terminal
  // then is our own outcome landing, not a lost job.
  std::atomic<int> reporting_{0};
  std::once_flag join_once_;

  std::thread heartbeat_thread_;  // last: starts after everything above exists
};

}  // namespace jobstate::client
