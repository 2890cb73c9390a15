// Events: what happened to a job. The log stores them; projections fold them.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "domain/clock.h"
#include "domain/job_id.h"

namespace jobstate {

// Stored as one byte: never renumber.
enum class EventType : uint8_t {
  kCreated = 1,          // data: {type, params, heartbeat_timeout_s, labels}
  kStarted = 2,          // data: {worker}
  kHeartbeat = 3,        // data: {progress}  (null: progress unchanged)
  kSucceeded = 4,        // data: {result}
  kFailed = 5,           // data: {error: {code, message, details}}
  kCancelRequested = 6,  // data: {reason}
  kCancelled = 7,        // data: {reason}
  kRetryScheduled = 8,   // data: {attempt, error, not_before}: queued again for attempt N
};

// "created", "started", "heartbeat", "succeeded", "failed", "cancel_requested", "cancelled",
// "retry_scheduled".
const char* event_type_name(EventType type);
std::optional<EventType> parse_event_type(std::string_view name);
std::optional<EventType> event_type_from_byte(uint8_t b);

struct Event {
  uint64_t seq = 0;      // global position, 1-based, gapless
  JobId job_id;
  uint64_t version = 0;  // position in the job's history, 1-based
  EventType type = EventType::kCreated;
  TimeMs at_ms = 0;
  nlohmann::json data = nlohmann::json::object();
  std::string hash;  // 64 lowercase hex; empty until the store chains the event
};

// The canonical JSON the hash chain covers: the event without "hash", UTF-8,
// no whitespace, keys sorted, numbers as Python prints them. `data_canonical`
// must already be canonical (canonical_dump() of a json is).
std::string canonical_event_json(uint64_t seq, const JobId& job_id, uint64_t version,
                                 EventType type, TimeMs at_ms, std::string_view data_canonical);
std::string canonical_event_json(const Event& e);

// The API's event JSON: the canonical form plus "hash". Keys stay sorted, so
// this is also exactly what `jobstate replay` prints.
std::string event_json_text(uint64_t seq, const JobId& job_id, uint64_t version, EventType type,
                            TimeMs at_ms, std::string_view data_canonical, std::string_view hash);
std::string event_json_text(const Event& e);

// Canonical text of a json value: exactly Python's json.dumps(v,
// sort_keys=True, separators=(",", ":"), ensure_ascii=False): sorted keys,
// compact, UTF-8 as is, and every float as Python's repr() prints it.
// Throws nlohmann::json::type_error on invalid UTF-8 (callers validate input first).
std::string canonical_dump(const nlohmann::json& j);

// Appends repr(d) as Python prints it: the shortest digits that read back as
// d, positional for 1e-4 <= |d| < 1e16 ("0.0001", "1000000000000000.0"),
// else exponent form with at least two exponent digits ("1e-05", "1e+16");
// "-0.0" keeps its sign. Not finite: "null" (JSON has no such number).
void append_python_float(std::string& out, double d);

// Appends the canonical JSON string for s (quotes and escapes as
// canonical_dump writes them). Throws nlohmann::json::type_error on invalid UTF-8.
void append_canonical_string(std::string& out, std::string_view s);

}  // namespace jobstate
