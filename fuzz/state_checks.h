// Invariants of a job state that every fuzz target reaching one checks: the
// job resource reads back as the same state, and the status row (its fast
// encoder against the reference, its header, its JSON) round-trips.
#pragma once

#include "domain/event.h"
#include "domain/job.h"
#include "fuzz_check.h"
#include "store/status_row.h"

namespace jobstate::fuzz {

// The names of the members in which two states differ, for messages.
inline std::string differing_fields(const JobState& a, const JobState& b) {
  std::string out;
#define JOBSTATE_FUZZ_FIELD(f) \
  if (!(a.f == b.f)) out += #f " ";
  JOBSTATE_FUZZ_FIELD(id) JOBSTATE_FUZZ_FIELD(type) JOBSTATE_FUZZ_FIELD(status)
  JOBSTATE_FUZZ_FIELD(version) JOBSTATE_FUZZ_FIELD(created_seq) JOBSTATE_FUZZ_FIELD(created_at_ms)
  JOBSTATE_FUZZ_FIELD(started_at_ms) JOBSTATE_FUZZ_FIELD(last_heartbeat_at_ms)
  JOBSTATE_FUZZ_FIELD(finished_at_ms) JOBSTATE_FUZZ_FIELD(heartbeat_timeout_s)
  JOBSTATE_FUZZ_FIELD(deadline_ms) JOBSTATE_FUZZ_FIELD(progress) JOBSTATE_FUZZ_FIELD(params)
  JOBSTATE_FUZZ_FIELD(labels) JOBSTATE_FUZZ_FIELD(worker) JOBSTATE_FUZZ_FIELD(cancel_requested)
  JOBSTATE_FUZZ_FIELD(result) JOBSTATE_FUZZ_FIELD(error) JOBSTATE_FUZZ_FIELD(execution_timeout_s)
  JOBSTATE_FUZZ_FIELD(queue_timeout_s) JOBSTATE_FUZZ_FIELD(not_before_ms)
  JOBSTATE_FUZZ_FIELD(priority) JOBSTATE_FUZZ_FIELD(retry) JOBSTATE_FUZZ_FIELD(attempt)
  JOBSTATE_FUZZ_FIELD(last_error) JOBSTATE_FUZZ_FIELD(lease_hash)
#undef JOBSTATE_FUZZ_FIELD
  return out + "differ: " + show(job_to_json(a, 0)) + " vs " + show(job_to_json(b, 0));
}

inline void check_state(const JobState& s) {
  const nlohmann::json j = job_to_json(s, 0);
  auto back = job_from_json(j, s.created_seq);
  FUZZ_CHECK(back.ok(), back.ok() ? "" : back.error().message);
  FUZZ_CHECK(*back == s, differing_fields(*back, s));

  const std::string row = encode_status_row(s);
  const std::string reference = encode_status_row_reference(s);
  FUZZ_CHECK(row == reference, row.substr(kStatusRowHeaderBytes),
             reference.substr(kStatusRowHeaderBytes));
  auto decoded = decode_status_row(row);
  FUZZ_CHECK(decoded.ok());
  FUZZ_CHECK(decoded->version == s.version && decoded->status == s.status &&
             decoded->created_seq == s.created_seq &&
             decoded->heartbeat_timeout_s == s.heartbeat_timeout_s &&
             decoded->deadline_ms == next_deadline_ms(s));
  FUZZ_CHECK(decoded->json_text == canonical_dump(j));
  FUZZ_CHECK(same_status_row(*decoded, *decoded));
  auto from_row = decoded->to_state();
  FUZZ_CHECK(from_row.ok() && *from_row == s, decoded->json_text);
  // A server started later shows the same row (no grace to add).
  FUZZ_CHECK(decoded->render(0) == decoded->json_text);
}

}  // namespace jobstate::fuzz
