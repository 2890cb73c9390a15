// verify_log: checks any backend's store through the seam (EventLog and
// ReadModel), for `jobstate verify --store`. In this order, stopping at the
// first problem (kCorruption naming the seq or the job):
//   1. the log: seq runs 1, 2, 3, ... without a gap, and every hash equals
//      sha256(previous hash + canonical event JSON) from the genesis hash;
//   2. the head (what GET /v1/audit/head publishes) is the last event's seq
//      and hash;
//   3. every job's history obeys the state machine (apply() accepts each
//      event in turn);
//   4. every job has a status row with the header fields and JSON values of
//      its replayed state, and no row exists without a history.
// The RocksDB backend has its own, stricter verify_store
// (projections/verify.h: its indexes, byte for byte).
//
// Reads the whole log once and keeps every job's state in memory.
#pragma once

#include <cstdint>
#include <functional>

#include "domain/result.h"
#include "store/event_log.h"
#include "store/read_model.h"

namespace jobstate {

struct VerifyReport {
  uint64_t events = 0;
  uint64_t jobs = 0;
  LogHead head;  // the last event: what an auditor compares with a published head
  double seconds = 0;
};

Result<VerifyReport> verify_log(const EventLog& log, const ReadModel& rows,
                                const std::function<void(uint64_t events)>& on_progress = {});

}  // namespace jobstate
