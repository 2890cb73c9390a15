#include "domain/job_id.h"

#include <boost/uuid/random_generator.hpp>
#include <cstring>

namespace jobstate {

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase is rejected on purpose: one canonical spelling per id
}
}  // namespace

JobId JobId::generate() {
  // boost's random_generator is not thread-safe; one per thread.
  thread_local boost::uuids::random_generator gen;
  return JobId(gen());
}

std::optional<JobId> JobId::parse(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  boost::uuids::uuid u{};
  size_t byte = 0;
  for (size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    int hi = hex_value(text[i]);
    int lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    u.data[byte++] = static_cast<uint8_t>(hi << 4 | lo);
    i += 2;
  }
  if ((u.data[6] >> 4) != 4) return std::nullopt;     // version 4
  if ((u.data[8] & 0xC0) != 0x80) return std::nullopt;  // RFC 4122 variant
  return JobId(u);
}

std::optional<JobId> JobId::from_bytes(std::string_view bytes) {
  if (bytes.size() != 16) return std::nullopt;
  boost::uuids::uuid u{};
  std::memcpy(u.data, bytes.data(), 16);
  return JobId(u);
}

std::string JobId::to_string() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[uuid_.data[i] >> 4]);
    out.push_back(kHex[uuid_.data[i] & 0xF]);
  }
  return out;
}

}  // namespace jobstate
