// The PROGRESS grammar (workers/progress_line.h) as a table: which lines are
// progress, and what fraction and message they carry.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "workers/progress_line.h"

namespace jobstate::workers {
namespace {

struct ProgressCase {
  std::string line;
  std::optional<double> fraction;  // nullopt: not a progress line
  std::string message;
};

TEST(ProgressLine, Table) {
  const ProgressCase cases[] = {
      {"PROGRESS 0.42 page 42/100", 0.42, "page 42/100"},
      {"PROGRESS 1", 1.0, ""},
      {"PROGRESS 0", 0.0, ""},
      {"PROGRESS 0.5 ", 0.5, ""},
      {"PROGRESS\t0\t starting  up", 0.0, "starting  up"},
      {"PROGRESS   0.25   a quarter", 0.25, "a quarter"},
      {"PROGRESS 1e-1 exponent", 0.1, "exponent"},
      {"PROGRESS .5 no leading digit", 0.5, "no leading digit"},
      {"PROGRESS 0.3 trailing blanks stay  ", 0.3, "trailing blanks stay  "},
      {"PROGRESS 0.3 \xff bytes as written", 0.3, "\xff bytes as written"},
      // Not progress: ordinary output.
      {"", std::nullopt, ""},
      {"PROGRESS", std::nullopt, ""},
      {"PROGRESS ", std::nullopt, ""},
      {"PROGRESSING 0.2", std::nullopt, ""},
      {"progress 0.2", std::nullopt, ""},
      {" PROGRESS 0.2", std::nullopt, ""},
      {"PROGRESS 1.5 too far", std::nullopt, ""},
      {"PROGRESS -0.1", std::nullopt, ""},
      {"PROGRESS +0.1", std::nullopt, ""},
      {"PROGRESS abc", std::nullopt, ""},
      {"PROGRESS nan", std::nullopt, ""},
      {"PROGRESS inf", std::nullopt, ""},
      {"PROGRESS 0.5x glued", std::nullopt, ""},
      {"PROGRESS 50%", std::nullopt, ""},
  };
  for (const auto& c : cases) {
    auto p = parse_progress_line(c.line);
    if (!c.fraction) {
      EXPECT_FALSE(p.has_value()) << "'" << c.line << "'";
      continue;
    }
    ASSERT_TRUE(p.has_value()) << "'" << c.line << "'";
    EXPECT_DOUBLE_EQ(p->fraction, *c.fraction) << c.line;
    EXPECT_EQ(p->message, c.message) << c.line;
  }
}

TEST(ProgressLine, MessagePointsIntoTheLine) {
  const std::string line = "PROGRESS 0.1 copying";
  auto p = parse_progress_line(line);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->message.data(), line.data() + line.find("copying"));
}

}  // namespace
}  // namespace jobstate::workers
