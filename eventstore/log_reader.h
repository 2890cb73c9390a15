// LogReader: reads the committed log. Never blocks the writer (RocksDB reads
// see the latest committed batch; a batch is visible all at once, so readers
// never see a gap in seq).
//
// Thread-safe. Works on any Database mode.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "domain/event.h"
#include "domain/result.h"
#include "eventstore/database.h"
#include "eventstore/event_codec.h"

namespace jobstate {

// Key of the job_events column family: 16-byte job id + big-endian version.
std::string job_event_key(const JobId& id, uint64_t version);

// The RocksDB backend's EventLog (store/event_log.h).
class LogReader final : public EventLog {
 public:
  // REQUIRES: db outlives the reader and has the log's column families.
  explicit LogReader(const Database& db) : db_(db) {}

  // The stored head (meta). For a live server, Writer::committed_head() is the same and cheaper.
  Result<LogHead> head() const override;

  // Calls fn for every event with after_seq < seq <= until_seq, in seq order,
  // through one iterator (no per-event seek). fn returns false to stop early.
  // A record that does not decode stops the scan with kCorruption naming its seq.
  Status scan(uint64_t after_seq, uint64_t until_seq, const EventVisitor& fn) const override;

  // Calls fn for the job's events with version > after_version, oldest first.
  // Stops after `limit` events or when fn returns false.
  Status scan_job(const JobId& id, uint64_t after_version, size_t limit,
                  const EventVisitor& fn) const override;

 private:
  const Database& db_;
};

}  // namespace jobstate
