// Heartbeat pacing: when a worker holding a running job sends its next
// heartbeat. Every worker (JobRun in client/, the executors, the embedded
// runner) keeps a job alive the same way:
//
// - a plain heartbeat every heartbeat_timeout_s / 3 (heartbeat_interval_ms),
//   so two can be lost before the watchdog's deadline;
// - progress goes out with a heartbeat, sooner than the plain cadence, but at
//   most once per progress_min_interval_ms (newer progress in between
//   replaces older: the caller keeps only the newest). The first progress of
//   a job goes out at once.
//
// HeartbeatPacer holds the times only; the caller reads its clock, sends, and
// keeps at most one heartbeat per job in flight. It never reads a clock
// itself, so tests are tables of time points.
//
// Not thread-safe: the caller guards each instance (one per job).
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>

namespace jobstate::workers {

// heartbeat_timeout_s / 3 in milliseconds, clamped to [min_interval_ms,
// max_interval_ms]. REQUIRES: min_interval_ms <= max_interval_ms.
int64_t heartbeat_interval_ms(int64_t heartbeat_timeout_s, int64_t min_interval_ms,
                              int64_t max_interval_ms = std::numeric_limits<int64_t>::max());

class HeartbeatPacer {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `last_heartbeat`: when the job's deadline was last set (the start of the
  // job counts as a heartbeat); progress is due from then on.
  // `progress_min_interval_ms` < 0 counts as 0.
  HeartbeatPacer(int64_t interval_ms, int64_t progress_min_interval_ms, TimePoint last_heartbeat);

  // When the next heartbeat is due: the plain cadence, or earlier when
  // progress is pending and its minimum gap has passed.
  TimePoint next_due(bool progress_pending) const;
  bool is_due(TimePoint now, bool progress_pending) const {
    return now >= next_due(progress_pending);
  }

  // A heartbeat was sent (or answered: the caller picks what starts the next
  // interval) at `at`: the next plain one is due one interval later.
  void heartbeat_sent(TimePoint at);
  // Progress went out at `at`: the next progress waits for the minimum gap.
  void progress_sent(TimePoint at);
  // Moves the next plain heartbeat to `at` (a retry after a failed one).
  void heartbeat_due_at(TimePoint at) { plain_due_ = at; }

  int64_t interval_ms() const { return interval_.count(); }

 private:
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds progress_gap_;
  TimePoint plain_due_;
  TimePoint progress_due_;  // the earliest the next progress may go
};

}  // namespace jobstate::workers
