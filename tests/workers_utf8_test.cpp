// UTF-8 clean-up for text a child process wrote (workers/utf8.h), as tables.
#include <gtest/gtest.h>

#include <string>

#include "workers/utf8.h"

namespace jobstate::workers {
namespace {

const std::string kReplacement = "\xEF\xBF\xBD";

TEST(Utf8, SanitizeTable) {
  struct Case {
    std::string in, out;
  };
  const Case cases[] = {
      {"", ""},
      {"plain ascii", "plain ascii"},
      {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"},
      {"ok \xff\xfe", "ok " + kReplacement + kReplacement},
      {"\xC0\xAF", kReplacement + kReplacement},                     // overlong '/'
      {"\xED\xA0\x80", kReplacement + kReplacement + kReplacement},  // a surrogate
      {"\xF4\x90\x80\x80",
       kReplacement + kReplacement + kReplacement + kReplacement},  // > U+10FFFF
      {"cut \xE2\x82", "cut " + kReplacement + kReplacement},       // truncated at the end
      {"\x80start", kReplacement + "start"},                        // stray continuation
  };
  for (const auto& c : cases) EXPECT_EQ(sanitize_utf8(c.in), c.out) << c.in;
}

TEST(Utf8, CutTable) {
  struct Case {
    std::string in;
    size_t max;
    std::string out;
  };
  const Case cases[] = {
      {"abc", 5, "abc"},
      {"abc", 3, "abc"},
      {"abcdef", 3, "abc"},
      {"ab\xC3\xA9z", 3, "ab"},
      {"ab\xC3\xA9z", 4, "ab\xC3\xA9"},
      {"\xE2\x82\xAC", 2, ""},
      {"x", 0, ""},
  };
  for (const auto& c : cases) EXPECT_EQ(cut_utf8(c.in, c.max), c.out) << c.in << " " << c.max;
}

TEST(Utf8, SkipPartialStartTable) {
  struct Case {
    std::string in, out;
  };
  const Case cases[] = {
      {"abc", "abc"},
      {"\xA9tail", "tail"},
      {"\x82\xACtail", "tail"},
      {"\x80\x80\x80\x80x", "\x80x"},  // at most three: a fourth is not a cut character
      {"", ""},
  };
  for (const auto& c : cases) EXPECT_EQ(skip_partial_utf8_start(c.in), c.out) << c.in;
}

}  // namespace
}  // namespace jobstate::workers
