// ProcessOutput: what an executor keeps of a child's stdout and stderr, in
// bounded memory whatever the child writes.
//
// stdout is read as lines (a trailing '\r' is dropped):
//   PROGRESS <fraction> [<message>]   fraction a number from 0 to 1 → progress
//   anything else                     the latest non-empty one is kept: when
//                                     the process succeeds and that line is
//                                     JSON, it becomes the job's result
// A line longer than max_line_bytes is dropped (it can be neither progress nor
// the result). stderr keeps only its last tail_bytes.
//
// Not thread-safe: one executor thread owns each instance.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace jobstate::executors {

struct ProcessOutputLimits {
  size_t max_line_bytes = 1u << 20;          // longest stdout line kept (the result's upper bound)
  size_t tail_bytes = 4096;                  // stderr bytes kept
  size_t max_progress_message_bytes = 1024;  // longer progress messages are cut
};

class ProcessOutput {
 public:
  explicit ProcessOutput(ProcessOutputLimits limits = {}) : limits_(limits) {}

  void add_stdout(std::string_view bytes);
  // The child's stdout is closed: an unterminated last line counts as a line.
  void finish_stdout();
  void add_stderr(std::string_view bytes);

  // The newest progress not yet taken: {fraction, message, details: null}.
  std::optional<nlohmann::json> take_progress();
  bool has_new_progress() const { return progress_.has_value(); }

  // The last non-progress, non-empty stdout line parsed as JSON (nesting at
  // most 64 levels); null when there is none or it is not JSON.
  nlohmann::json result() const;
  // The kept stderr bytes as valid UTF-8 (invalid sequences become U+FFFD).
  std::string stderr_tail() const;
  // The last non-empty line of the stderr tail, at most 200 bytes; "" if none.
  std::string last_stderr_line() const;

 private:
  void on_line(std::string_view line);

  ProcessOutputLimits limits_;
  std::string partial_;            // stdout since the last newline
  bool partial_overflow_ = false;  // the current line exceeded max_line_bytes
  std::string last_line_;
  std::optional<nlohmann::json> progress_;
  std::string stderr_;
};

// `text` with every invalid UTF-8 sequence replaced by U+FFFD, so it can go
// into a JSON string.
std::string sanitize_utf8(std::string_view text);

// Parses a "PROGRESS <fraction> [<message>]" line; nullopt for anything else.
std::optional<nlohmann::json> parse_progress_line(std::string_view line,
                                                  size_t max_message_bytes = 1024);

}  // namespace jobstate::executors
