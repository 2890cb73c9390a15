// The SHA-256 hash chain over the log (API.md, "Events"):
//   hash(e) = sha256_hex(hash(previous event) as 64 hex chars + canonical_event_json(e))
// with 64 '0's before the first event.
#pragma once

#include <string>
#include <string_view>

namespace jobstate {

constexpr std::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);
// The hash of an event whose canonical JSON is `canonical` after `previous_hash`.
std::string chain_hash(std::string_view previous_hash, std::string_view canonical);

// 64 hex chars ↔ 32 raw bytes (the stored form). hex_to_raw returns "" on bad input.
std::string hex_to_raw(std::string_view hex);
std::string raw_to_hex(std::string_view raw);

}  // namespace jobstate
