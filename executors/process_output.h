// ProcessOutput: what an executor keeps of a child's stdout and stderr, in
// bounded memory whatever the child writes.
//
// stdout is read as lines (a trailing '\r' is dropped):
//   PROGRESS <fraction> [<message>]   fraction a number from 0 to 1 → progress
//   anything else                     the latest non-empty one is kept: when
//                                     the process succeeds and that line is
//                                     JSON, it becomes the job's result
// The grammar is workers/progress_line.h's. A line longer than max_line_bytes
// is dropped (it can be neither progress nor the result). stderr keeps only
// its last tail_bytes (workers::StderrTail).
//
// Not thread-safe: one executor thread owns each instance.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "workers/stderr_tail.h"

namespace jobstate::executors {

struct ProcessOutputLimits {
  size_t max_line_bytes = 1u << 20;          // longest stdout line kept (the result's upper bound)
  size_t tail_bytes = 4096;                  // stderr bytes kept
  size_t max_progress_message_bytes = 1024;  // longer progress messages are cut
};

class ProcessOutput {
 public:
  explicit ProcessOutput(ProcessOutputLimits limits = {})
      : limits_(limits), stderr_(limits.tail_bytes) {}

  void add_stdout(std::string_view bytes);
  // The child's stdout is closed: an unterminated last line counts as a line.
  void finish_stdout();
  void add_stderr(std::string_view bytes);

  // The newest progress not yet taken: {fraction, message, details: null}.
  std::optional<nlohmann::json> take_progress();
  bool has_new_progress() const { return progress_.has_value(); }

  // The last non-progress, non-empty stdout line ("" if none).
  const std::string& last_line() const { return last_line_; }
  // last_line() parsed as JSON (nesting at most 64 levels); null when there is
  // none or it is not JSON (workers::parse_result_line).
  nlohmann::json result() const;
  // What stderr left: its tail as valid UTF-8 and its last line.
  const workers::StderrTail& stderr() const { return stderr_; }
  std::string stderr_tail() const { return stderr_.text(); }
  std::string last_stderr_line() const { return stderr_.last_line(); }

 private:
  void on_line(std::string_view line);

  ProcessOutputLimits limits_;
  std::string partial_;            // stdout since the last newline
  bool partial_overflow_ = false;  // the current line exceeded max_line_bytes
  std::string last_line_;
  std::optional<nlohmann::json> progress_;
  workers::StderrTail stderr_;
};

}  // namespace jobstate::executors
