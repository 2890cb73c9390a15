// Watchdog: fails running jobs whose heartbeats stopped, so a crashed worker
// never leaves a job "running" forever.
//
// Each sweep reads only the due range of the read model's deadline index (keys below now:
// the cost follows the expired jobs, not the running ones), re-reads each
// job's row, skips it while the row's deadline is still ahead (the index files
// a job up to a quarter timeout early, see status_projection.h), and submits
// ExpireDeadlines through the writer with the version it saw. A heartbeat or success that commits first wins: the command is refused
// with a version mismatch or decides nothing, and the next sweep re-checks.
// Deadlines that passed while the server was down get one heartbeat_timeout
// of grace from the writer's start (effective_deadline_ms).
//
// Thread safety: start/stop from one thread; sweep_once() from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "domain/clock.h"
#include "store/job_writer.h"
#include "store/leadership.h"
#include "store/read_model.h"

namespace jobstate {

struct WatchdogOptions {
  // Time between sweeps; failure lands within deadline + interval + one fsync.
  int64_t interval_ms = 200;
  // Most jobs expired per sweep (the rest wait for the next one).
  size_t max_per_sweep = 10'000;
};

class Watchdog {
 public:
  // REQUIRES: all of them outlive the watchdog. `leadership` (null: always
  // lead) is asked before each sweep of the running loop: on a store several
  // nodes share, only the node holding the lead sweeps. sweep_once() does not ask.
  Watchdog(const ReadModel& jobs, JobWriter& writer, const Clock& clock,
           WatchdogOptions options = {}, Leadership* leadership = nullptr);
  ~Watchdog();  // stop()

  void start();
  void stop();
  bool running() const { return running_.load(); }

  // One sweep now; returns how many jobs it asked the writer to fail and
  // waits until those commands are decided. For tests with a ManualClock.
  size_t sweep_once();

 private:
  void loop();

  const ReadModel& jobs_;
  JobWriter& writer_;
  Leadership* leadership_;
  int leading_ = -1;  // loop thread only: 1 leads, 0 does not, -1 not asked yet (for the log line)
  const Clock& clock_;
  WatchdogOptions options_;
  std::atomic<bool> running_{false};
  std::atomic<bool> writes_refused_{false};  // the last expiry failed with kUnavailable
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_requested_ = false;
  std::thread thread_;
};

}  // namespace jobstate
