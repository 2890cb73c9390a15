// Heartbeat pacing (workers/heartbeat_pacing.h) as tables of time points:
// the pacer never reads a clock.
#include <gtest/gtest.h>

#include "workers/heartbeat_pacing.h"

namespace jobstate::workers {
namespace {

using TimePoint = HeartbeatPacer::TimePoint;
using std::chrono::milliseconds;

TimePoint at(int64_t ms) {
  return TimePoint{} + std::chrono::hours(1) + milliseconds(ms);
}

TEST(HeartbeatPacing, IntervalTable) {
  struct Case {
    int64_t timeout_s, min_ms, max_ms, interval_ms;
  };
  const Case cases[] = {
      {120, 100, INT64_MAX, 40'000},  // executors, embedded: a third of the timeout
      {1, 100, INT64_MAX, 333},      {86400, 100, INT64_MAX, 28'800'000},
      {120, 100, 30'000, 30'000},  // JobRun caps at 30 s
      {1, 500, 30'000, 500},       // the floor wins
      {0, 100, 30'000, 100},
  };
  for (const auto& c : cases)
    EXPECT_EQ(heartbeat_interval_ms(c.timeout_s, c.min_ms, c.max_ms), c.interval_ms)
        << c.timeout_s << " " << c.min_ms << " " << c.max_ms;
  EXPECT_EQ(heartbeat_interval_ms(120, 100), 40'000);
}

// One step: at `now_ms`, with or without progress pending, is a heartbeat
// due; if the test then sends one, what is due next.
struct Step {
  int64_t now_ms;
  bool progress_pending;
  bool due;
  bool send;            // send a heartbeat now (carrying the progress if pending)
  int64_t next_due_ms;  // next_due(progress_pending) after the step
};

void run_steps(HeartbeatPacer& pacer, const std::vector<Step>& steps) {
  for (const auto& s : steps) {
    EXPECT_EQ(pacer.is_due(at(s.now_ms), s.progress_pending), s.due) << "at " << s.now_ms;
    if (s.send) {
      pacer.heartbeat_sent(at(s.now_ms));
      if (s.progress_pending) pacer.progress_sent(at(s.now_ms));
    }
    EXPECT_EQ(pacer.next_due(s.progress_pending), at(s.next_due_ms)) << "at " << s.now_ms;
  }
}

TEST(HeartbeatPacing, PlainCadenceFromTheStart) {
  HeartbeatPacer pacer(1000, 200, at(0));
  EXPECT_EQ(pacer.interval_ms(), 1000);
  run_steps(pacer, {
                       {0, false, false, false, 1000},
                       {999, false, false, false, 1000},
                       {1000, false, true, true, 2000},
                       {1500, false, false, false, 2000},
                       {2100, false, true, true, 3100},  // late: the next counts from the send
                   });
}

TEST(HeartbeatPacing, ProgressGoesSoonerButAtMostEveryGap) {
  HeartbeatPacer pacer(1000, 200, at(0));
  run_steps(pacer, {
                       {0, true, true, true, 200},        // the first progress goes at once
                       {100, true, false, false, 200},    // newer progress waits for the gap
                       {100, false, false, false, 1000},  // no progress: the plain cadence
                       {250, true, true, true, 450},
                       {1249, false, false, false, 1250},
                       {1250, false, true, true, 2250},
                       {1300, true, true, true, 1500},  // the gap since 250 passed long ago
                   });
}

TEST(HeartbeatPacing, ProgressNeverLaterThanThePlainHeartbeat) {
  HeartbeatPacer pacer(100, 500, at(0));
  run_steps(pacer, {
                       {0, true, true, true, 100},
                       {100, true, true, true, 200},  // due by the cadence; it carries progress
                   });
}

TEST(HeartbeatPacing, RetryMovesThePlainHeartbeat) {
  HeartbeatPacer pacer(1000, 200, at(0));
  pacer.heartbeat_due_at(at(100));  // a failed heartbeat: try again soon
  EXPECT_EQ(pacer.next_due(false), at(100));
  EXPECT_TRUE(pacer.is_due(at(100), false));
  pacer.heartbeat_sent(at(150));
  EXPECT_EQ(pacer.next_due(false), at(1150));
}

TEST(HeartbeatPacing, NegativeProgressGapMeansNone) {
  HeartbeatPacer pacer(1000, -5, at(0));
  pacer.progress_sent(at(10));
  EXPECT_EQ(pacer.next_due(true), at(10));
}

}  // namespace
}  // namespace jobstate::workers
