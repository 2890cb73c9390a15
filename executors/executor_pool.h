// ExecutorPool: runs jobs of the configured types as child processes inside
// `jobstate serve`, and reports everything through the writer like any
// worker would (started, heartbeat, succeeded / failed / cancelled).
//
// - A job of a configured type that is queued is started (worker
//   "jobstate-executor/<pid>") as soon as its type has a free slot
//   (ExecutorSpec::concurrency); extra jobs stay queued and start in creation
//   order. Types without an executor are left alone for external workers.
// - While the process lives the job is heartbeated every
//   heartbeat_timeout_s / 3; stdout lines "PROGRESS <fraction> <message>"
//   become progress (at most one heartbeat in flight per job). Pacing and
//   grammar: workers/heartbeat_pacing.h, workers/progress_line.h.
// - Exit 0 → succeeded, result = the last non-progress stdout line when it is
//   JSON, else null. Otherwise failed: code "exit_code" or "signal", details
//   {exit_code | signal, stderr_tail}, the message ending with stderr's last
//   line (workers/exit_outcome.h). A command that cannot be started →
//   failed "spawn_failed"; a placeholder without a value → failed
//   "invalid_params" (from queued: no process ever ran).
// - cancel_requested → SIGTERM to the process group, SIGKILL after
//   cancel_grace_s, then `cancelled` is confirmed. A job that ends otherwise
//   while its process runs (the watchdog, a client's /fail) gets the same
//   SIGTERM/SIGKILL and no report.
// - start() first fails, with code "abandoned", every running job whose
//   worker is "jobstate-executor/…" (workers/abandoned_jobs.h): only one
//   server opens a store, so such a job's process belonged to a server that
//   is gone. Then it queues the configured types' queued jobs.
// - stop() starts nothing more, sends SIGTERM (SIGKILL after the grace) to
//   every running process and fails its job "abandoned" before returning.
//
// One supervisor thread does all of it with poll() over the children's pipes
// and pidfds (no thread per job); writer callbacks only queue a note for it.
//
// Thread safety: on_commit() from the writer thread (any thread); start()
// and stop() from one controlling thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "domain/result.h"
#include "executors/executor_config.h"
#include "executors/process_output.h"
#include "store/job_writer.h"
#include "store/read_model.h"

namespace jobstate::executors {

// Prefix of the executors' worker names; the pid follows.
inline constexpr const char* kExecutorWorkerPrefix = "jobstate-executor/";

struct ExecutorPoolOptions {
  // Reported as the worker of every job started. Default: "jobstate-executor/<pid>".
  std::string worker_name;
  // stdout/stderr limits per process (line length, stderr tail).
  ProcessOutputLimits output;
  // Fewest milliseconds between two progress heartbeats of one job (progress
  // lines in between are coalesced: the newest wins). Default 200.
  int64_t progress_min_interval_ms = 200;
  // Fewest milliseconds between two plain heartbeats (heartbeat_timeout_s / 3
  // is the normal cadence). Default 100.
  int64_t min_heartbeat_interval_ms = 100;
  // At stop(), SIGKILL follows SIGTERM after min(cancel_grace_s, this).
  // Default 10000.
  int64_t shutdown_grace_ms = 10'000;
  // After SIGKILL, how long to wait for a process to exit before giving up on
  // it (it stays a zombie; this needs a process stuck in the kernel). Default 5000.
  int64_t kill_wait_ms = 5000;
  // start() fails every running job of an executor worker as abandoned.
  // Right when this process owns the store (RocksDB); false when other
  // servers share it (postgres), whose executors' jobs are alive: a dead
  // node's jobs are then failed by the watchdog at their heartbeat deadline
  // (and run again when their retry policy says so). Default true.
  bool fail_abandoned_at_start = true;
};

class ExecutorPool {
 public:
  explicit ExecutorPool(ExecutorConfig config, ExecutorPoolOptions options = {});
  ~ExecutorPool();  // stop()

  // For WriterOptions::on_commit: copies what the pool needs of each changed
  // job of a configured type and returns at once. Safe before start() (the
  // notes wait) and after stop() (ignored).
  void on_commit(const CommitInfo& info);

  // Fails the previous server's executor jobs ("abandoned"), queues the
  // queued jobs of configured types, and starts the supervisor thread.
  // REQUIRES: jobs and writer outlive the pool (or stop() is called first).
  Status start(const ReadModel& jobs, JobWriter& writer);

  // Starts no new process, terminates the running ones (SIGTERM, SIGKILL
  // after their grace) and reports each job failed "abandoned"; returns when
  // all are reaped and reported. Needs the writer still running. Idempotent.
  void stop();

  // Processes running or being started now (for tests and logs).
  size_t active() const { return active_.load(); }

  const ExecutorConfig& config() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::atomic<size_t> active_{0};
  std::thread thread_;
};

}  // namespace jobstate::executors
