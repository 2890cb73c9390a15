// A job's status row: what every backend's read model keeps per job, and
// what GET /v1/jobs/{id} serves. A fixed binary header (the fields the
// writer, lists and the watchdog read without parsing) and the job's API
// JSON, job_to_json(state, 0) as canonical text:
//
//   u8 format (=1) · u64 version · u8 status · u64 created_seq ·
//   u64 deadline_ms (next_deadline_ms: when the watchdog must look; 0 =
//   none) · u64 heartbeat_timeout_s · JSON text
//
// (integers big-endian). The JSON is written member by member, about 10x
// faster than building a json value; encode_status_row_reference is the
// definition it is tested and spot-checked against.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "domain/job.h"
#include "domain/result.h"

namespace jobstate {

inline constexpr size_t kStatusRowHeaderBytes = 1 + 8 + 1 + 8 + 8 + 8;

// A decoded status row; json_text is job_to_json(state, 0) as stored.
struct StatusRow {
  uint64_t version = 0;
  JobStatus status = JobStatus::kQueued;
  uint64_t created_seq = 0;
  TimeMs deadline_ms = 0;  // next_deadline_ms of the job; 0: none
  int64_t heartbeat_timeout_s = 0;
  std::string json_text;

  Result<JobState> to_state() const;
  // The API's job JSON, with deadline_at moved to the grace deadline when the
  // server restarted after it (effective_deadline_ms).
  std::string render(TimeMs server_start_ms) const;
  // True when render() is json_text as it is (no grace deadline to show).
  bool renders_as_stored(TimeMs server_start_ms) const;
  // The job's type, read from json_text without parsing all of it.
  std::string type() const;
};

// Canonical texts standing in for the state's JSON values when a row is
// encoded (empty: dump the state's value). Rebuild passes the texts stored
// in the events; the writer passes a heartbeat's progress as its event holds
// it. REQUIRES: each is the canonical text of the state's value, or the text
// the log holds for it (a store written before issue 12 may hold a longer
// float text than canonical_dump prints today).
struct RowTexts {
  std::string_view params, labels, progress, result;
};

// The status row of `s` (header and JSON).
std::string encode_status_row(const JobState& s, const RowTexts& texts = {});
// The same bytes through job_to_json and canonical_dump.
std::string encode_status_row_reference(const JobState& s);
// Whether two rows say the same: the same header and the same JSON values.
// Texts may differ where stores written by older versions differ: a float
// written longer than Python prints it (before issue 12), members the job
// resource gained later missing with their default value (before issue 13).
// verify and rebuild --check compare a stored row with a replay's with it.
bool same_status_row(const StatusRow& a, const StatusRow& b);

// kCorruption when the header is short or names an unknown format or state.
Result<StatusRow> decode_status_row(std::string_view value);

}  // namespace jobstate
