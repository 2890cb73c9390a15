// Big-endian integer keys: RocksDB compares bytes, so big-endian u64s sort
// numerically.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace jobstate {

inline void put_u64_be(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}
inline std::string u64_be(uint64_t v) {
  std::string s;
  s.reserve(8);
  put_u64_be(s, v);
  return s;
}
// REQUIRES: in.size() >= 8
inline uint64_t get_u64_be(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | static_cast<uint8_t>(in[i]);
  return v;
}

}  // namespace jobstate
