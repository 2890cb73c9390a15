// The progress protocol of commands run as jobs: a stdout line
//
//   PROGRESS <fraction> [<message>]
//
// sets the job's progress. The keyword is followed by at least one blank
// (space or tab), then the fraction: a number from 0 to 1 (std::from_chars
// syntax, so no sign, "nan" or "inf" in range), then optionally blanks and a
// message that runs to the end of the line. Anything else is ordinary output.
// `jobstate run` (client/), the executors of `jobstate serve` (executors/) and
// docs/running-jobs.md all mean this grammar.
//
// Pure, safe from any thread.
#pragma once

#include <optional>
#include <string_view>

namespace jobstate::workers {

struct ProgressLine {
  double fraction = 0;       // 0..1
  std::string_view message;  // into the parsed line; empty when there is none
};

// "PROGRESS 0.42 page 42/100" → {0.42, "page 42/100"}. nullopt when the line
// is not a progress line (another keyword, no blank after it, a fraction that
// is not a number in [0, 1]). REQUIRES: `line` without its line ending (the
// caller strips "\n" and a trailing "\r"). The message is returned as
// written: the caller decides how much of it to keep and how to make it
// valid UTF-8.
std::optional<ProgressLine> parse_progress_line(std::string_view line);

}  // namespace jobstate::workers
