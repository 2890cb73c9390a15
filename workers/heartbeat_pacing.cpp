#include "workers/heartbeat_pacing.h"

#include <algorithm>

namespace jobstate::workers {

using std::chrono::milliseconds;

int64_t heartbeat_interval_ms(int64_t heartbeat_timeout_s, int64_t min_interval_ms,
                              int64_t max_interval_ms) {
  return std::clamp<int64_t>(heartbeat_timeout_s * 1000 / 3, min_interval_ms, max_interval_ms);
}

HeartbeatPacer::HeartbeatPacer(int64_t interval_ms, int64_t progress_min_interval_ms,
                               TimePoint last_heartbeat)
    : interval_(interval_ms),
      progress_gap_(std::max<int64_t>(progress_min_interval_ms, 0)),
      plain_due_(last_heartbeat + interval_),
      progress_due_(last_heartbeat) {}

HeartbeatPacer::TimePoint HeartbeatPacer::next_due(bool progress_pending) const {
  return progress_pending ? std::min(plain_due_, progress_due_) : plain_due_;
}

void HeartbeatPacer::heartbeat_sent(TimePoint at) {
  plain_due_ = at + interval_;
}

void HeartbeatPacer::progress_sent(TimePoint at) {
  progress_due_ = at + progress_gap_;
}

}  // namespace jobstate::workers
