// EventLog: reading the committed log. Events come as views of their stored
// form: the canonical data text as stored (the hash covers those bytes, so it
// is never re-serialised) and the raw hash.
//
// Guarantees of every implementation: a reader sees only committed events,
// and a commit all at once (never a gap in seq below the newest event it
// sees); reads never wait for the writer.
//
// Thread safety: every method may be called from any thread at once.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/event.h"
#include "domain/job_id.h"
#include "domain/result.h"

namespace jobstate {

struct LogHead {
  uint64_t seq = 0;  // newest event; 0 when the log is empty
  std::string hash;  // its chain hash, 64 hex (the genesis hash when empty)
  bool operator==(const LogHead&) const = default;
};

// A stored event, decoded without parsing its data. The views point into
// storage owned by the reader: valid only during the callback that gets it.
struct StoredEventView {
  uint64_t seq = 0;
  JobId job_id;
  uint64_t version = 0;
  EventType type = EventType::kCreated;
  TimeMs at_ms = 0;
  std::string_view hash_raw;  // 32 bytes
  std::string_view data;      // canonical JSON text, as stored and hashed

  std::string hash_hex() const;
  // The bytes the hash covers.
  std::string canonical_json() const;
  // The API's / replay's JSON line.
  std::string json_text() const;
  // Parses data. kCorruption (naming the seq) when it is not a JSON object.
  Result<Event> to_event() const;
};

// Returns false to stop a scan early.
using EventVisitor = std::function<bool(const StoredEventView&)>;

class EventLog {
 public:
  virtual ~EventLog() = default;

  // The newest committed event. For a live writer, JobWriter::committed_head()
  // is the same and cheaper.
  virtual Result<LogHead> head() const = 0;

  // Calls fn for every event with after_seq < seq <= until_seq, in seq order.
  // A record that does not decode stops the scan with kCorruption naming its
  // seq; fn returning false stops it with success.
  virtual Status scan(uint64_t after_seq, uint64_t until_seq, const EventVisitor& fn) const = 0;

  // Calls fn for the job's events with version > after_version, oldest
  // first, at most `limit` of them; fn returning false stops early.
  virtual Status scan_job(const JobId& id, uint64_t after_version, size_t limit,
                          const EventVisitor& fn) const = 0;

  // Convenience forms that parse each event's data (through scan/scan_job).
  Result<std::vector<Event>> events_after(uint64_t after_seq, size_t limit) const;
  Result<std::vector<Event>> job_events(const JobId& id, uint64_t after_version = 0,
                                        size_t limit = SIZE_MAX) const;
  Result<std::optional<Event>> event(uint64_t seq) const;
};

}  // namespace jobstate
