#include "workers/progress_line.h"

#include <charconv>
#include <system_error>

namespace jobstate::workers {

namespace {
void skip_blanks(std::string_view& s) {
  while (!s.empty() && (s[0] == ' ' || s[0] == '\t')) s.remove_prefix(1);
}
}  // namespace

std::optional<ProgressLine> parse_progress_line(std::string_view line) {
  constexpr std::string_view kKeyword = "PROGRESS";
  if (line.substr(0, kKeyword.size()) != kKeyword) return std::nullopt;
  std::string_view rest = line.substr(kKeyword.size());
  if (rest.empty() || (rest[0] != ' ' && rest[0] != '\t')) return std::nullopt;
  skip_blanks(rest);
  const size_t end = rest.find_first_of(" \t");
  std::string_view number = rest.substr(0, end);
  double fraction = 0;
  auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), fraction);
  if (number.empty() || ec != std::errc() || ptr != number.data() + number.size() ||
      !(fraction >= 0.0 && fraction <= 1.0))
    return std::nullopt;
  ProgressLine progress;
  progress.fraction = fraction;
  if (end != std::string_view::npos) {
    std::string_view message = rest.substr(end);
    skip_blanks(message);
    progress.message = message;
  }
  return progress;
}

}  // namespace jobstate::workers
