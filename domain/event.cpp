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

namespace {
std::string plain_dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::strict);
}

// nlohmann switches to exponent notation one decimal digit earlier than
// Python's repr: 1e15 <= |x| < 1e16 prints "1e+15" where Python (and so the
// contract's json.dumps) prints "1000000000000000.0". Only that range differs.
bool is_python_positional_gap(double d) {
  const double a = d < 0 ? -d : d;
  return a >= 1e15 && a < 1e16;
}

bool has_python_positional_gap(const nlohmann::json& j) {
  if (j.is_number_float()) return is_python_positional_gap(j.get<double>());
  if (j.is_structured())
    for (const auto& v : j)
      if (has_python_positional_gap(v)) return true;
  return false;
}

// REQUIRES: is_python_positional_gap(d). Rewrites nlohmann's "-d.ddde+15" as
// Python's positional form: 16 integer digits, then the remaining digits or ".0".
std::string python_positional_float(double d) {
  const std::string text = plain_dump(nlohmann::json(d));
  const size_t e = text.find('e');
  if (e == std::string::npos) return text;  // already positional
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (text[i] >= '0' && text[i] <= '9') digits.push_back(text[i]);
  std::string out = d < 0 ? "-" : "";
  if (digits.size() <= 16) {
    out += digits + std::string(16 - digits.size(), '0') + ".0";
  } else {
    out += digits.substr(0, 16) + "." + digits.substr(16);
  }
  return out;
}

void dump_python_compatible(const nlohmann::json& j, std::string& out) {
  if (j.is_object()) {
    out.push_back('{');
    bool first = true;
    for (const auto& [k, v] : j.items()) {  // std::map order: UTF-8 bytes = code points
      if (!first) out.push_back(',');
      first = false;
      out += plain_dump(nlohmann::json(k));
      out.push_back(':');
      dump_python_compatible(v, out);
    }
    out.push_back('}');
  } else if (j.is_array()) {
    out.push_back('[');
    for (size_t i = 0; i < j.size(); ++i) {
      if (i) out.push_back(',');
      dump_python_compatible(j[i], out);
    }
    out.push_back(']');
  } else if (j.is_number_float() && is_python_positional_gap(j.get<double>())) {
    out += python_positional_float(j.get<double>());
  } else {
    out += plain_dump(j);
  }
}
}  // namespace

std::string canonical_dump(const nlohmann::json& j) {
  // Fast path: almost no document has such a number.
  if (!has_python_positional_gap(j)) return plain_dump(j);
  std::string out;
  dump_python_compatible(j, out);
  return out;
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
