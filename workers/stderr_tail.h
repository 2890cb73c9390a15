// StderrTail: the last bytes a child process wrote to stderr, in bounded
// memory whatever it writes. Its text() goes into a failed job's
// details.stderr_tail (see exit_outcome.h).
//
// Not thread-safe: one thread owns each instance.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace jobstate::workers {

class StderrTail {
 public:
  // Keeps the last `limit_bytes` bytes (4 KiB in every user today).
  explicit StderrTail(size_t limit_bytes = 4096) : limit_bytes_(limit_bytes) {}

  // Appends a chunk as read from the pipe. Amortized O(chunk size): memory
  // stays below 2 × limit_bytes.
  void add(std::string_view bytes);

  // The kept bytes as valid UTF-8: a character cut at the start is dropped
  // and invalid sequences become U+FFFD. At most limit_bytes before the
  // replacement.
  std::string text() const;
  // The last non-blank line of text() without its line ending, cut to at most
  // 200 bytes at a character boundary; "" when there is none.
  std::string last_line() const;

 private:
  size_t limit_bytes_;
  std::string bytes_;
};

}  // namespace jobstate::workers
