// Rebuild: recomputes the projections from the events alone. Used by
// `jobstate rebuild` (after a projection change or loss) and by verify.
#pragma once

#include <cstdint>
#include <functional>

#include "domain/result.h"
#include "eventstore/database.h"

namespace jobstate {

struct RebuildOptions {
  // Compare with the stored projection instead of writing: kCorruption naming
  // the first job or key that differs.
  bool check_only = false;
  // Called every ~100k events with the number replayed so far, on the
  // calling thread.
  std::function<void(uint64_t events_replayed)> on_progress;
  // Exact mode (verify sets it): parse every event's data and fold it
  // through apply() as stored, so that malformed data anywhere in the log is
  // reported, and encode rows with encode_status_row itself. By default only
  // the data the final states need is parsed (a heartbeat's progress only
  // when no later heartbeat of the job replaces it) and rows are written by
  // a faster encoder that is cross-checked against encode_status_row.
  bool parse_every_event = false;
};

struct RebuildStats {
  uint64_t events = 0;
  uint64_t jobs = 0;
  uint64_t generation = 0;  // the projection generation now in use
  double seconds = 0;
};

// Replays the whole log. Without check_only: writes projection generation N+1
// in fresh column families, switches meta to it in one synced write (a crash
// before that leaves generation N in use), then drops generation N. Works when
// generation N's column families are missing. REQUIRES for writing: db is
// kReadWrite and no writer is running on it. A log that breaks the state
// machine fails with kCorruption naming the first broken seq; nothing is
// switched. Uses up to three threads (one reads the log, two fold jobs).
Result<RebuildStats> rebuild_projections(Database& db, const RebuildOptions& options = {});

}  // namespace jobstate
