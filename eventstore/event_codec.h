// How an event is stored in the `events` column family.
//   key:   big-endian u64 seq
//   value: u8 format (1) | 32 raw hash bytes | u64 version | u8 type | i64 at_ms
//          | 16 job id bytes | data as canonical JSON text
// The data is kept as canonical text, so replay and verify rebuild the exact
// hashed bytes by concatenation, without parsing or re-serialising JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "domain/event.h"
#include "domain/result.h"

namespace jobstate {

// A stored event, decoded without parsing its data.
struct StoredEventView {
  uint64_t seq = 0;
  JobId job_id;
  uint64_t version = 0;
  EventType type = EventType::kCreated;
  TimeMs at_ms = 0;
  std::string_view hash_raw;  // 32 bytes, points into the value
  std::string_view data;      // canonical JSON text, points into the value

  std::string hash_hex() const;
  // The bytes the hash covers.
  std::string canonical_json() const;
  // The API's / replay's JSON line.
  std::string json_text() const;
  // Parses data. kCorruption (naming the seq) when it is not a JSON object.
  Result<Event> to_event() const;
};

// REQUIRES: e.hash is 64 hex chars; `data_canonical` is canonical_dump(e.data).
std::string encode_stored_event(const Event& e, std::string_view data_canonical);
// kCorruption naming `seq` when the value is short or has an unknown format or type.
Result<StoredEventView> decode_stored_event(uint64_t seq, std::string_view value);

}  // namespace jobstate
