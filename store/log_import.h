// LogImport: writes a whole log into an empty store, every event exactly as
// stored elsewhere (seq, version, time, data text and hash kept), and then
// the store's read model, for `jobstate copy` between backends. Nothing of
// the copy is visible as a store until finish() succeeded. Idempotency
// records are not part of the log and are not copied.
//
// Thread safety: one thread.
#pragma once

#include "domain/result.h"
#include "store/event_log.h"

namespace jobstate {

class LogImport {
 public:
  virtual ~LogImport() = default;
  // REQUIRES: events in seq order from 1, without a gap (kInvalidRequest
  // otherwise: the source is not a whole log).
  virtual Status append(const StoredEventView& event) = 0;
  // Writes the rest, the head and the read model, durably.
  virtual Status finish() = 0;
};

}  // namespace jobstate
