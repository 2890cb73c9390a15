// Query values and ids, each against a reference written from its contract:
// percent_decode, parse_int64, parse_etag_version, JobId::parse/from_bytes,
// is_valid_job_type, the state/event-type names, RFC 3339 times, and the
// open-access host checks. Every function sees the whole input.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "api/open_access.h"
#include "api/request_json.h"
#include "domain/clock.h"
#include "domain/event.h"
#include "domain/job.h"
#include "domain/job_id.h"
#include "fuzz_check.h"

using namespace jobstate;

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 decoding, written independently: nullopt for a bad escape.
std::optional<std::string> reference_percent_decode(std::string_view t) {
  std::string out;
  size_t i = 0;
  while (i < t.size()) {
    if (t[i] != '%') {
      out += t[i++];
      continue;
    }
    if (t.size() - i < 3 || hex_digit(t[i + 1]) < 0 || hex_digit(t[i + 2]) < 0)
      return std::nullopt;
    out += static_cast<char>(hex_digit(t[i + 1]) * 16 + hex_digit(t[i + 2]));
    i += 3;
  }
  return out;
}

std::string percent_encode(std::string_view t) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : t) {
    out += '%';
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

// "Strict decimal integer: optional '-', digits only, fits in int64."
std::optional<int64_t> reference_int64(std::string_view t) {
  bool negative = false;
  if (!t.empty() && t[0] == '-') {
    negative = true;
    t.remove_prefix(1);
  }
  if (t.empty()) return std::nullopt;
  __int128 v = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
    if (v > (static_cast<__int128>(1) << 63)) return std::nullopt;
  }
  if (negative) v = -v;
  if (v > INT64_MAX || v < INT64_MIN) return std::nullopt;
  return static_cast<int64_t>(v);
}

bool reference_job_type(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  for (char c : t)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '-'))
      return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // percent_decode: the reference's answer; its inverse round-trips.
  auto decoded = api::percent_decode(text);
  auto expected = reference_percent_decode(text);
  FUZZ_CHECK(decoded == expected, decoded.value_or("<none>"), expected.value_or("<none>"));
  FUZZ_CHECK(api::percent_decode(percent_encode(text)) == std::string(text));

  // parse_int64: exactly the strict decimal integers that fit.
  auto n = api::parse_int64(text);
  auto n_expected = reference_int64(text);
  FUZZ_CHECK(n == n_expected, n ? std::to_string(*n) : "<none>",
             n_expected ? std::to_string(*n_expected) : "<none>");
  if (n) FUZZ_CHECK(api::parse_int64(std::to_string(*n)) == n);

  // parse_etag_version: spaces around, optional quotes, a non-negative integer.
  auto v = api::parse_etag_version(text);
  {
    std::string_view t = text;
    while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
    while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
    if (t.size() >= 2 && t.front() == '"' && t.back() == '"') t = t.substr(1, t.size() - 2);
    auto r = reference_int64(t);
    std::optional<uint64_t> v_expected;
    if (r && *r >= 0 && t[0] != '-') v_expected = static_cast<uint64_t>(*r);
    FUZZ_CHECK(v == v_expected, text);
  }
  if (v) FUZZ_CHECK(api::parse_etag_version("\"" + std::to_string(*v) + "\"") == v);

  // JobId: only the canonical lowercase v4 text parses, and prints back as is.
  if (auto id = JobId::parse(text)) {
    FUZZ_CHECK(id->to_string() == text, id->to_string(), text);
    FUZZ_CHECK(JobId::from_bytes(id->bytes()) == id);
  }
  if (size == 16) {
    auto id = JobId::from_bytes(text);
    FUZZ_CHECK(id && id->bytes() == text);
    const bool v4 = (data[6] >> 4) == 4 && (data[8] & 0xC0) == 0x80;
    auto reparsed = JobId::parse(id->to_string());
    FUZZ_CHECK(reparsed.has_value() == v4);
    if (reparsed) FUZZ_CHECK(*reparsed == *id);
  }

  FUZZ_CHECK(is_valid_job_type(text) == reference_job_type(text), text);
  if (auto st = parse_job_status(text)) FUZZ_CHECK(job_status_name(*st) == text);
  if (auto et = parse_event_type(text)) FUZZ_CHECK(event_type_name(*et) == text);

  // Times: what parses prints in the one stored form, which parses exactly.
  if (auto t = parse_rfc3339(text)) {
    if (*t >= 0 && *t < 253402300800000) {  // years 1970–9999
      const std::string printed = format_rfc3339_ms(*t);
      FUZZ_CHECK(parse_rfc3339_ms(printed) == t, printed);
      FUZZ_CHECK(parse_rfc3339(printed) == t, printed);
    }
  }
  if (auto t = parse_rfc3339_ms(text)) {
    FUZZ_CHECK(format_rfc3339_ms(*t) == text, format_rfc3339_ms(*t), text);
  }
  if (size >= 8) {
    int64_t t;
    std::memcpy(&t, data, 8);
    t = static_cast<int64_t>(static_cast<uint64_t>(t) % 253402300800000ull);  // 1970–9999
    const std::string printed = format_rfc3339_ms(t);
    FUZZ_CHECK(parse_rfc3339_ms(printed) == t, printed);
    FUZZ_CHECK(parse_rfc3339(printed) == t, printed);
  }

  // Host and Origin checks: any text, no crash; loopback literals pass.
  (void)api::names_loopback(text);
  (void)api::is_loopback_listen_host(text);
  (void)api::origin_names_loopback(text);
  if (api::is_loopback_listen_host(text)) FUZZ_CHECK(api::names_loopback(text), text);
  return 0;
}
