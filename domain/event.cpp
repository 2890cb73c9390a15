#include "domain/event.h"

#include <array>
#include <charconv>
#include <cmath>

namespace jobstate {

namespace {
constexpr std::array<const char*, 9> kEventTypeNames = {
    "",       "created",          "started",   "heartbeat",      "succeeded",
    "failed", "cancel_requested", "cancelled", "retry_scheduled"};
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

bool has_float(const nlohmann::json& j) {
  if (j.is_number_float()) return true;
  if (j.is_structured())
    for (const auto& v : j)
      if (has_float(v)) return true;
  return false;
}

bool is_plain_json_string(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c >= 0x7F || c == '"' || c == '\\') return false;
  return true;
}

// nlohmann's own float text is not Python's: Grisu2 sometimes gives 17 digits
// where 16 round-trip (0.24858597403344251 for 0.2485859740334425), and it
// switches to exponent form at 1e15 instead of 1e16. So every float of a
// document that has one is written here, everything else as nlohmann does.
void dump_python_compatible(const nlohmann::json& j, std::string& out) {
  if (j.is_object()) {
    out.push_back('{');
    bool first = true;
    for (const auto& [k, v] : j.items()) {  // std::map order: UTF-8 bytes = code points
      if (!first) out.push_back(',');
      first = false;
      append_canonical_string(out, k);
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
  } else if (j.is_number_float()) {
    append_python_float(out, j.get<double>());
  } else if (j.is_string()) {
    append_canonical_string(out, j.get_ref<const std::string&>());
  } else if (j.is_null()) {
    out += "null";
  } else if (j.is_boolean()) {
    out += j.get<bool>() ? "true" : "false";
  } else if (j.is_number_unsigned()) {
    char buf[24];
    out.append(buf, std::to_chars(buf, buf + sizeof buf, j.get<uint64_t>()).ptr);
  } else if (j.is_number_integer()) {
    char buf[24];
    out.append(buf, std::to_chars(buf, buf + sizeof buf, j.get<int64_t>()).ptr);
  } else {
    out += plain_dump(j);  // binary values: nlohmann's own error or text
  }
}
}  // namespace

void append_python_float(std::string& out, double d) {
  if (!std::isfinite(d)) {  // JSON has no such number; nlohmann writes null
    out += "null";
    return;
  }
  // Shortest round-trip digits (Ryu in libstdc++), in exponent form so the
  // digits and the exponent can be read off: "d[.ddd]e[+-]XX".
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view text(buf, ec == std::errc() ? end - buf : 0);
  if (std::signbit(d)) {
    out.push_back('-');
    text.remove_prefix(1);
  }
  const size_t e = text.find('e');
  std::string digits;
  digits.reserve(17);
  for (size_t i = 0; i < e; ++i)
    if (text[i] != '.') digits.push_back(text[i]);
  int exp10 = 0;
  std::from_chars(text.data() + e + (text[e + 1] == '+' ? 2 : 1), text.data() + text.size(),
                  exp10);
  // Python's repr (format_float_short, mode 'r'): the value is 0.DIGITS x
  // 10^decpt; exponent form when decpt <= -4 or decpt > 16, else positional
  // with ".0" added to an integer.
  const int decpt = exp10 + 1;
  const int n = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    out.push_back(digits[0]);
    if (n > 1) {
      out.push_back('.');
      out.append(digits, 1);
    }
    out.push_back('e');
    out.push_back(exp10 < 0 ? '-' : '+');
    const int a = exp10 < 0 ? -exp10 : exp10;
    if (a < 10) out.push_back('0');
    out += std::to_string(a);
  } else if (decpt <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-decpt), '0');
    out += digits;
  } else if (decpt >= n) {
    out += digits;
    out.append(static_cast<size_t>(decpt - n), '0');
    out += ".0";
  } else {
    out.append(digits, 0, static_cast<size_t>(decpt));
    out.push_back('.');
    out.append(digits, static_cast<size_t>(decpt));
  }
}

void append_canonical_string(std::string& out, std::string_view s) {
  if (is_plain_json_string(s)) {
    out.push_back('"');
    out += s;
    out.push_back('"');
  } else {
    out += plain_dump(nlohmann::json(std::string(s)));
  }
}

std::string canonical_dump(const nlohmann::json& j) {
  // Fast path: a document without floats is nlohmann's compact dump.
  if (!has_float(j)) return plain_dump(j);
  std::string out;
  out.reserve(128);
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
