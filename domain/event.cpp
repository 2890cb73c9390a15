#include "domain/event.h"

#include <array>

namespace jobstate {

namespace {
constexpr std::array<const char*, 8> kEventTypeNames = {
    "", "created", "started", "heartbeat", "succeeded", "failed", "cancel_requested", "cancelled"};
}

const char* event_type_name(EventType type) {
  auto i = static_cast<size_t>(type);
  return i < kEventTypeNames.size() ? kEventTypeNames[i] : "unknown";
}

std::optional<EventType> parse_event_type(std::string_view name) {
  for (size_t i = 1; i < kEventTypeNames.size(); ++i)
    if (name == kEventTypeNames[i]) return static_cast<EventType>(i);
  return std::nullopt;
}

std::optional<EventType> event_type_from_byte(uint8_t b) {
  if (b >= 1 && b < kEventTypeNames.size()) return static_cast<EventType>(b);
  return std::nullopt;
}

std::string canonical_dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::strict);
}

namespace {
// Keys in code-point order: at, data, [hash,] job_id, seq, type, version.
std::string event_json(uint64_t seq, const JobId& job_id, uint64_t version, EventType type,
                       TimeMs at_ms, std::string_view data, std::string_view hash) {
  std::string out;
  out.reserve(128 + data.size());
  out += "{\"at\":\"";
  out += format_rfc3339_ms(at_ms);
  out += "\",\"data\":";
  out += data;
  if (!hash.empty()) {
    out += ",\"hash\":\"";
    out += hash;
    out += '"';
  }
  out += ",\"job_id\":\"";
  out += job_id.to_string();
  out += "\",\"seq\":";
  out += std::to_string(seq);
  out += ",\"type\":\"";
  out += event_type_name(type);
  out += "\",\"version\":";
  out += std::to_string(version);
  out += '}';
  return out;
}
}  // namespace

std::string canonical_event_json(uint64_t seq, const JobId& job_id, uint64_t version,
                                 EventType type, TimeMs at_ms, std::string_view data_canonical) {
  return event_json(seq, job_id, version, type, at_ms, data_canonical, {});
}

std::string canonical_event_json(const Event& e) {
  return canonical_event_json(e.seq, e.job_id, e.version, e.type, e.at_ms, canonical_dump(e.data));
}

std::string event_json_text(uint64_t seq, const JobId& job_id, uint64_t version, EventType type,
                            TimeMs at_ms, std::string_view data_canonical, std::string_view hash) {
  return event_json(seq, job_id, version, type, at_ms, data_canonical, hash);
}

std::string event_json_text(const Event& e) {
  return event_json_text(e.seq, e.job_id, e.version, e.type, e.at_ms, canonical_dump(e.data),
                         e.hash);
}

}  // namespace jobstate
