// Verify: proves a store is intact from its own contents. What `jobstate
// verify` runs; callable from anywhere that holds a Database (any mode).
#pragma once

#include <cstdint>
#include <functional>

#include "domain/result.h"
#include "eventstore/database.h"
#include "eventstore/log_reader.h"
#include "store/verify_log.h"  // VerifyReport

namespace jobstate {

struct VerifyOptions {
  // Called every ~100k events with the number of events whose hash has been
  // checked so far, on the calling thread.
  std::function<void(uint64_t events_checked)> on_progress;
};


// Checks, in this order, and stops at the first problem:
//   1. the log: every record decodes, seq runs 1, 2, 3, ... without a gap,
//      and every hash equals sha256(previous hash + canonical event JSON)
//      from the genesis hash on (an edited byte anywhere breaks it);
//   2. the meta head (what GET /v1/audit/head publishes) is the last event's
//      seq and hash (a removed last event breaks it);
//   3. the job_events index holds exactly one entry per event, pointing at
//      it, and nothing else;
//   4. every job's history obeys the state machine (apply() accepts each
//      event: created first, versions contiguous from 1, transitions allowed,
//      nothing after the one terminal event, well-formed data);
//   5. the stored projection (status rows, list and deadline indexes) is
//      byte for byte what a fresh replay produces.
// Checks 4 and 5 run on other threads while 1 to 3 run on this one; the
// first failure in the order above is the one reported.
// Returns the report when all hold; otherwise kCorruption whose one-line
// message names the first broken seq, job or key and what is wrong (other
// codes: the store could not be read). Never writes. For a live store open
// db as a secondary: the checks then cover the state as of its last
// catch_up().
Result<VerifyReport> verify_store(Database& db, const VerifyOptions& options = {});

}  // namespace jobstate
