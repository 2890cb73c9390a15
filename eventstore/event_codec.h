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
#include "store/event_log.h"

namespace jobstate {

// REQUIRES: e.hash is 64 hex chars; `data_canonical` is canonical_dump(e.data).
std::string encode_stored_event(const Event& e, std::string_view data_canonical);
// kCorruption naming `seq` when the value is short or has an unknown format or type.
Result<StoredEventView> decode_stored_event(uint64_t seq, std::string_view value);

}  // namespace jobstate
