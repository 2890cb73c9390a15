// What the fuzz targets share: a check that stops the run with a message
// (libFuzzer then saves the input as crash-*), and small helpers.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#define FUZZ_CHECK(cond, ...)                                                      \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, \
                   #cond);                                                         \
      ::jobstate::fuzz::explain(__VA_ARGS__);                                      \
      std::abort();                                                                \
    }                                                                              \
  } while (0)

namespace jobstate::fuzz {

inline void explain() {}
inline void explain(std::string_view what) {
  std::fprintf(stderr, "  %.*s\n", static_cast<int>(what.size()), what.data());
}
inline void explain(std::string_view a, std::string_view b) {
  std::fprintf(stderr, "  ours:   %.*s\n  theirs: %.*s\n", static_cast<int>(a.size()), a.data(),
               static_cast<int>(b.size()), b.data());
}

// A json value's text for messages (never throws: invalid UTF-8 replaced).
inline std::string show(const nlohmann::json& j) {
  return j.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

// Nesting depth of a value: a scalar is 0, [] and {} are 1.
inline int depth(const nlohmann::json& j) {
  if (!j.is_structured()) return 0;
  int d = 0;
  for (const auto& v : j) d = std::max(d, depth(v));
  return d + 1;
}

}  // namespace jobstate::fuzz
