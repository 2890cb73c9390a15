#include "workers/stderr_tail.h"

#include "workers/utf8.h"

namespace jobstate::workers {

namespace {
constexpr size_t kMaxLastLineBytes = 200;
}

void StderrTail::add(std::string_view bytes) {
  if (bytes.size() >= limit_bytes_) {
    bytes_.assign(bytes.substr(bytes.size() - limit_bytes_));
    return;
  }
  bytes_.append(bytes);
  // Trim only once the buffer is twice the tail: amortized O(1) per byte.
  if (bytes_.size() > 2 * limit_bytes_) bytes_.erase(0, bytes_.size() - limit_bytes_);
}

std::string StderrTail::text() const {
  std::string_view tail = bytes_;
  if (tail.size() > limit_bytes_) tail.remove_prefix(tail.size() - limit_bytes_);
  return sanitize_utf8(skip_partial_utf8_start(tail));
}

std::string StderrTail::last_line() const {
  std::string tail = text();
  size_t end = tail.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return "";
  size_t start = tail.rfind('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  return std::string(
      cut_utf8(std::string_view(tail).substr(start, end - start + 1), kMaxLastLineBytes));
}

}  // namespace jobstate::workers
