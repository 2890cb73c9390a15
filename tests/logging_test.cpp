// The log line formats (logging/logging.h; docs/operations.md, "Logs"): a
// JSON line is one valid object whose first members are time, level and
// message, whatever bytes a message or a field holds; a text line reads
// "[time] [level] message key=value ...", quoting only what would be
// ambiguous bare; a request's id rides along on both; and which
// X-Request-Id values are fit to echo.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "logging/logging.h"

namespace jobstate::logging {
namespace {

using nlohmann::json;

constexpr TimeMs kAt = 1'796'083'200'123;  // 2026-12-01T00:00:00.123Z

TEST(LoggingFormat, AJsonLineIsOneObjectWithTimeLevelMessageFirst) {
  const std::string line = format_line(Format::kJson, kAt, spdlog::level::info, "request",
                                       {{"method", "POST"},
                                        {"status", 202},
                                        {"duration_ms", 1.734},
                                        {"bytes", 512u},
                                        {"negative", -3},
                                        {"retry_scheduled", false}});
  EXPECT_EQ(line,
            R"({"time":"2026-12-01T00:00:00.123Z","level":"info","message":"request","method":"POST",)"
            R"("status":202,"duration_ms":1.734,"bytes":512,"negative":-3,"retry_scheduled":false})");
}

TEST(LoggingFormat, AnyBytesInAMessageOrAFieldStayOneValidJsonLine) {
  const std::string nasty = std::string("quote\" back\\ nl\n tab\t nul") + '\0' + " del\x7f utf8 \xc3\xa9 bad \xff";
  const std::string line = format_line(Format::kJson, kAt, spdlog::level::err, nasty,
                                       {{"param", nasty}, {"nested", json{{"a", {1, 2}}}}});
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  auto j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << line;
  EXPECT_EQ(j["level"], "error");
  // The invalid byte is replaced; everything else survives as it was sent.
  const std::string kept = j["message"].get<std::string>();
  EXPECT_EQ(kept.substr(0, kept.find(" bad ")), nasty.substr(0, nasty.find(" bad ")));
  EXPECT_EQ(j["param"], j["message"]);
  EXPECT_EQ(j["nested"]["a"][1], 2);
}

TEST(LoggingFormat, AFieldCannotOverwriteTimeLevelMessageOrTheRequestId) {
  RequestScope scope("req-1");
  const std::string line = format_line(Format::kJson, kAt, spdlog::level::warn, "m",
                                       {{"time", "x"}, {"level", "x"}, {"message", "x"}, {"request_id", "x"}, {"k", 1}});
  EXPECT_EQ(line,
            R"({"time":"2026-12-01T00:00:00.123Z","level":"warn","message":"m","request_id":"req-1","k":1})");
}

TEST(LoggingFormat, TextQuotesOnlyWhatWouldBeAmbiguousBare) {
  const std::string line = format_line(Format::kText, kAt, spdlog::level::info, "watchdog: job failed",
                                       {{"job_id", "0b1e"},
                                        {"code", "heartbeat_timeout"},
                                        {"note", "two words"},
                                        {"eq", "a=b"},
                                        {"empty", ""},
                                        {"retry_scheduled", true},
                                        {"ms", 0.5}});
  EXPECT_EQ(line,
            "[2026-12-01T00:00:00.123Z] [info] watchdog: job failed job_id=0b1e code=heartbeat_timeout "
            "note=\"two words\" eq=\"a=b\" empty=\"\" retry_scheduled=true ms=0.5");
}

TEST(LoggingFormat, ATextLineStaysOneLineAndQuotesAnAmbiguousRequestId) {
  RequestScope scope("a=\"b\"");
  const std::string line =
      format_line(Format::kText, kAt, spdlog::level::err, std::string("what():\n\tat x\r") + '\x01' + "\x7f");
  EXPECT_EQ(line, R"([2026-12-01T00:00:00.123Z] [error] what():\n\tat x\r\x01\x7f request_id="a=\"b\"")");
}

TEST(LoggingFormat, TheRequestIdRidesAlongWhileItsScopeLives) {
  EXPECT_EQ(current_request_id(), "");
  {
    RequestScope outer("outer");
    {
      RequestScope inner("inner");
      EXPECT_EQ(format_line(Format::kText, kAt, spdlog::level::info, "m"),
                "[2026-12-01T00:00:00.123Z] [info] m request_id=inner");
    }
    EXPECT_EQ(current_request_id(), "outer");
  }
  EXPECT_EQ(current_request_id(), "");
  EXPECT_EQ(format_line(Format::kText, kAt, spdlog::level::info, "m"), "[2026-12-01T00:00:00.123Z] [info] m");
  // A scope may be opened with the id already current.
  RequestScope first("same");
  {
    RequestScope again(current_request_id());
    EXPECT_EQ(current_request_id(), "same");
  }
  EXPECT_EQ(current_request_id(), "same");
}

TEST(LoggingRequestId, OnlyBoundedPrintableIdsAreEchoed) {
  EXPECT_EQ(accept_request_id("checkout-42.a"), "checkout-42.a");
  EXPECT_EQ(accept_request_id(std::string(128, 'x')), std::string(128, 'x'));
  EXPECT_EQ(accept_request_id("!~"), "!~");
  for (const std::string& bad : {std::string(), std::string(129, 'x'), std::string("two words"),
                                std::string("tab\there"), std::string("\x7f"), std::string("caf\xc3\xa9"),
                                std::string("nl\n")})
    EXPECT_EQ(accept_request_id(bad), std::nullopt) << bad;
  const std::string a = new_request_id(), b = new_request_id();
  EXPECT_TRUE(std::regex_match(a, std::regex("[0-9a-f]{32}"))) << a;
  EXPECT_NE(a, b);
}

TEST(LoggingFormat, FormatNamesParse) {
  EXPECT_EQ(parse_format("text"), Format::kText);
  EXPECT_EQ(parse_format("json"), Format::kJson);
  EXPECT_EQ(parse_format("JSON"), std::nullopt);
  EXPECT_EQ(parse_format(""), std::nullopt);
}

}  // namespace
}  // namespace jobstate::logging
