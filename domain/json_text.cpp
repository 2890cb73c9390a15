#include "domain/json_text.h"

namespace jobstate {

namespace {
constexpr size_t kNotFound = std::string_view::npos;

// REQUIRES: t[i] == '"'. The index after the closing quote.
size_t skip_string(std::string_view t, size_t i) {
  for (++i; i < t.size(); ++i) {
    if (t[i] == '\\')
      ++i;
    else if (t[i] == '"')
      return i + 1;
  }
  return kNotFound;
}

// The index after the JSON value starting at t[i].
size_t skip_value(std::string_view t, size_t i) {
  if (i >= t.size()) return kNotFound;
  if (t[i] == '"') return skip_string(t, i);
  if (t[i] == '{' || t[i] == '[') {
    int depth = 0;
    while (i < t.size()) {
      const char c = t[i];
      if (c == '"') {
        i = skip_string(t, i);
        if (i == kNotFound) return kNotFound;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if ((c == '}' || c == ']') && --depth == 0) return i + 1;
      ++i;
    }
    return kNotFound;
  }
  while (i < t.size() && t[i] != ',' && t[i] != '}' && t[i] != ']') {
    if (t[i] == ' ' || t[i] == '\n' || t[i] == '\t' || t[i] == '\r') return kNotFound;
    ++i;
  }
  return i;
}
}  // namespace

std::optional<std::string_view> member_text(std::string_view t, std::string_view key) {
  if (t.size() < 2 || t[0] != '{' || t[1] == '}') return std::nullopt;
  for (size_t i = 1;;) {
    if (t[i] != '"') return std::nullopt;
    const size_t key_end = skip_string(t, i);
    if (key_end == kNotFound || key_end >= t.size() || t[key_end] != ':') return std::nullopt;
    const size_t value_end = skip_value(t, key_end + 1);
    if (value_end == kNotFound || value_end >= t.size()) return std::nullopt;
    if (t.substr(i + 1, key_end - i - 2) == key)
      return t.substr(key_end + 1, value_end - key_end - 1);
    if (t[value_end] != ',') return std::nullopt;
    i = value_end + 1;
  }
}

std::optional<std::string_view> only_member_text(std::string_view t, std::string_view key) {
  const size_t head = key.size() + 4;  // {"key":
  if (t.size() < head + 2 || t.back() != '}' || t.substr(0, 2) != "{\"" ||
      t.substr(2, key.size()) != key || t.substr(2 + key.size(), 2) != "\":")
    return std::nullopt;
  if (skip_value(t, head) != t.size() - 1) return std::nullopt;
  return t.substr(head, t.size() - head - 1);
}

}  // namespace jobstate
