// EmbeddedRunner: runs jobs inside a C++ program that links the store
// directly (no HTTP). Register a handler per job type, trigger() a job and
// get its id at once; a bounded pool of threads runs the handlers, with the
// guard semantics of the HTTP client's JobRun:
//
//   runner.register_handler("report", [](JobContext& job) {
//     for (int page = 1; page <= 100; ++page) {
//       if (job.cancel_requested()) { job.cancelled("asked to stop"); return; }
//       render(page);
//       job.progress(page / 100.0, "page " + std::to_string(page) + "/100");
//     }
//     job.succeed({{"pages", 100}});
//   });
//   runner.start();
//   JobId id = *runner.trigger("report", {{"month", "2026-11"}});
//   ... runner.status(id), runner.history(id) ...
//
// - The job is started (worker "jobstate-embedded/<pid>") when a thread takes
//   it, under a lease of the runner's own (store/lease.h): every report
//   carries it, so nothing else can report on the attempt. It is
//   heartbeated every heartbeat_timeout_s / 3 while the handler runs,
//   carrying the newest progress() (coalesced: at most one heartbeat in
//   flight per job, progress at most every progress_min_interval_ms).
// - A handler that throws → failed, code "abandoned", the message naming the
//   exception's what(). A handler that returns without succeed(), fail() or
//   cancelled() → failed, code "abandoned". If the process dies, the
//   watchdog fails the job at its heartbeat deadline — or, when the program
//   starts its runner again on the same store, start() fails it at once.
// - Status and history come from the same projections the HTTP API reads.
//
// Thread safety: register_handler() before start(); everything else from any
// thread. A JobContext is valid only until its handler returns, and only on
// the handler's thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "domain/event.h"
#include "domain/job.h"
#include "domain/result.h"
#include "store/store.h"

namespace jobstate::embedded {

// Prefix of the runner's worker names; the pid follows.
inline constexpr const char* kEmbeddedWorkerPrefix = "jobstate-embedded/";

struct EmbeddedRunnerOptions {
  // Handlers running at once (threads). Default 4.
  size_t threads = 4;
  // Triggered jobs waiting for a thread; trigger() beyond it fails with
  // kUnavailable and creates nothing. Default 10'000.
  size_t max_waiting = 10'000;
  // Reported as the worker of every job. Default "jobstate-embedded/<pid>".
  std::string worker_name;
  // Fewest milliseconds between two progress heartbeats of one job. Default 200.
  int64_t progress_min_interval_ms = 200;
  // Fewest milliseconds between two heartbeats of one job. Default 100.
  int64_t min_heartbeat_interval_ms = 100;
  // At start(): fail jobs a previous runner left running ("abandoned"), and
  // run the queued jobs of registered types. Default true.
  bool recover_on_start = true;
};

struct TriggerOptions {
  int64_t heartbeat_timeout_s = kDefaultHeartbeatTimeoutS;  // 1–86400
  nlohmann::json labels = nlohmann::json::object();         // ≤ 32 string → string
};

// What a handler gets: the job and the ways to report on it.
class JobContext {
 public:
  const JobId& id() const { return id_; }
  const std::string& type() const { return type_; }
  const nlohmann::json& params() const { return params_; }

  // Records progress; the next heartbeat (soon) carries it. kInvalidRequest
  // unless 0 <= fraction <= 1.
  Status progress(double fraction, const std::string& message = "",
                  nlohmann::json details = nullptr);
  // True once a client asked to cancel: stop and call cancelled(). Reads the
  // job's status row at most every 100 ms, so calling it often is cheap.
  bool cancel_requested() const;
  // True when the runner is stopping or the job already ended elsewhere (the
  // watchdog failed it): the handler should return soon.
  bool stop_requested() const;

  // Each records the outcome durably and returns its Status (kJobTerminal
  // when the job already ended, e.g. the watchdog failed it). After an
  // outcome is recorded, the others answer kInvalidRequest.
  Status succeed(nlohmann::json result = nullptr);
  Status fail(std::string code, const std::string& message, nlohmann::json details = nullptr);
  // Confirms a cancel request. kInvalidTransition when none is pending.
  Status cancelled(const std::string& reason = "");

  // Whether an outcome was recorded (or the job ended elsewhere).
  bool finished() const;

  struct Shared;  // state shared with the heartbeat thread

 private:
  friend class EmbeddedRunner;
  JobContext() = default;
  Status report(Command command);

  JobId id_;
  std::string type_;
  nlohmann::json params_;
  Store* store_ = nullptr;
  const std::atomic<bool>* runner_stopping_ = nullptr;
  std::shared_ptr<Shared> shared_;
};

using JobHandler = std::function<void(JobContext&)>;

class EmbeddedRunner {
 public:
  // REQUIRES: store outlives the runner.
  explicit EmbeddedRunner(Store& store, EmbeddedRunnerOptions options = {});
  ~EmbeddedRunner();  // stop()

  // REQUIRES: before start(). kInvalidRequest for an invalid type or a type
  // registered twice.
  Status register_handler(const std::string& type, JobHandler handler);

  // Recovers (see recover_on_start) and starts the threads.
  Status start();

  // Creates the job (durably: the id names a job that exists even if the
  // program crashes now) and returns its id without waiting for the handler.
  // kInvalidRequest: no handler for `type`, or invalid values; kUnavailable:
  // not started, stopping, or max_waiting jobs already wait.
  Result<JobId> trigger(const std::string& type, nlohmann::json params = nlohmann::json::object(),
                        TriggerOptions options = {});

  // The job's current state; nullopt when there is no such job.
  Result<std::optional<JobState>> status(const JobId& id) const;
  // The job's events, oldest first.
  Result<std::vector<Event>> history(const JobId& id) const;

  // Refuses new triggers, lets running handlers return (stop_requested()
  // turns true for them), joins the threads. Jobs still waiting stay queued
  // in the store; a later start() runs them. Idempotent.
  void stop();

  // Jobs waiting for a thread / handlers running now.
  size_t waiting() const;
  size_t running() const { return running_.load(); }

 private:
  void worker_loop();
  void heartbeat_loop();
  void run_job(const JobId& id);

  Store& store_;
  EmbeddedRunnerOptions options_;
  std::unordered_map<std::string, JobHandler> handlers_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<JobId> waiting_;  // guarded by mu_
  size_t reserved_ = 0;        // trigger() calls between the check and the enqueue; guarded by mu_
  bool started_ = false;       // guarded by mu_
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> running_{0};
  std::vector<std::thread> workers_;

  std::mutex hb_mu_;
  std::condition_variable hb_cv_;
  std::vector<std::shared_ptr<JobContext::Shared>> active_;  // guarded by hb_mu_
  bool hb_stop_ = false;                                     // guarded by hb_mu_
  std::thread heartbeat_thread_;
};

}  // namespace jobstate::embedded
