// StderrTail (workers/stderr_tail.h): bounded memory, a clean UTF-8 text, the
// last line for messages.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "workers/stderr_tail.h"

namespace jobstate::workers {
namespace {

TEST(StderrTail, Table) {
  struct Case {
    size_t limit;
    std::vector<std::string> chunks;
    std::string text, last_line;
  };
  const Case cases[] = {
      {16, {}, "", ""},
      {16, {"one\n", "two\n"}, "one\ntwo\n", "two"},
      {16, {"no newline"}, "no newline", "no newline"},
      {16, {"first\n\n  \r\n"}, "first\n\n  \r\n", "first"},
      {8, {"0123456789"}, "23456789", "23456789"},      // one big chunk
      {8, {"01234", "56789"}, "23456789", "23456789"},  // trimmed across chunks
      {3, {"ab\xC3\xA9", "xy"}, "xy", "xy"},            // the cut é vanishes
      {4, {"ab\xC3\xA9", "xy"}, "\xC3\xA9xy", "\xC3\xA9xy"},
      {16, {"bad \xff byte\n"}, "bad \xEF\xBF\xBD byte\n", "bad \xEF\xBF\xBD byte"},
  };
  for (const auto& c : cases) {
    StderrTail tail(c.limit);
    for (const auto& chunk : c.chunks) tail.add(chunk);
    EXPECT_EQ(tail.text(), c.text) << c.text;
    EXPECT_EQ(tail.last_line(), c.last_line) << c.text;
  }
}

TEST(StderrTail, BoundedWhateverTheChildWrites) {
  StderrTail tail(16);
  for (int i = 0; i < 10'000; ++i) tail.add("line " + std::to_string(i) + "\n");
  EXPECT_LE(tail.text().size(), 16u);
  EXPECT_EQ(tail.last_line(), "line 9999");
  EXPECT_NO_THROW(nlohmann::json({{"tail", tail.text()}}).dump());
}

TEST(StderrTail, LastLineIsAtMost200Bytes) {
  StderrTail tail(4096);
  tail.add(std::string(300, 'x') + "\n");
  EXPECT_EQ(tail.last_line(), std::string(200, 'x'));
}

}  // namespace
}  // namespace jobstate::workers
