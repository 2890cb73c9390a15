// What `jobstate serve` writes (docs/operations.md, "Logs"): with
// --log-format json every line is one JSON object with time, level and
// message, the "serving on" line included; each answered request has one
// access line naming its X-Request-Id (echoed when the client sent a fit
// one, made up otherwise), which the answer carries back; a watchdog failure
// is one line with the job and the code.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"
#include "serve_process.h"
#include "test_util.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

class ServeLogsTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServeProcess> serve(std::vector<std::string> flags) {
    ServeOptions o{.data_dir = dir_.sub("data"),
                   .output_path = dir_.sub("serve-" + std::to_string(++serves_) + ".log"),
                   .flags = std::move(flags),
                   .teardown = Teardown::kTerminate};
    auto p = std::make_unique<ServeProcess>(std::move(o));
    EXPECT_FALSE(p->url().empty()) << p->output();
    return p;
  }
  TempDir dir_;
  int serves_ = 0;
};

TEST_F(ServeLogsTest, JsonLinesCarryTheRequestIdTheClientSentOrOneMadeUp) {
  auto s = serve({"--log-format", "json"});
  HttpClient c(s->url());
  auto sent = c.post_json("/v1/jobs", {{"type", "email"}},
                          {"Content-Type: application/json", "X-Request-Id: checkout-42.a"});
  ASSERT_EQ(sent.status, 202) << sent.body;
  EXPECT_EQ(sent.header("X-Request-Id"), "checkout-42.a");
  auto made = c.get("/v1/jobs");
  EXPECT_TRUE(std::regex_match(made.header("X-Request-Id"), std::regex("[0-9a-f]{32}")))
      << made.header("X-Request-Id");
  // Unfit ids are replaced, never echoed: a space, too long, a control character.
  for (const std::string& bad : std::vector<std::string>{"two words", std::string(129, 'x'), std::string("a\x01")}) {
    auto r = c.get("/healthz", {"X-Request-Id: " + bad});
    EXPECT_TRUE(std::regex_match(r.header("X-Request-Id"), std::regex("[0-9a-f]{32}"))) << bad;
  }
  auto missing = c.get("/v1/jobs/00000000-0000-4000-8000-000000000000", {"X-Request-Id: lost-1"});
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.header("X-Request-Id"), "lost-1") << "problems carry it too";
  s->stop();

  int access_lines = 0;
  bool serving_line = false;
  for (const std::string& line : lines_of(s->output())) {
    auto j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << "not one JSON object: " << line;
    EXPECT_TRUE(j["time"].is_string() && j["level"].is_string() && j["message"].is_string()) << line;
    if (j["message"].get<std::string>().rfind("jobstate serving on http://", 0) == 0) {
      serving_line = true;
      EXPECT_EQ(j.value("url", ""), s->url()) << line;
    }
    if (j["message"] == "request") {
      ++access_lines;
      EXPECT_TRUE(j["request_id"].is_string()) << line;
      if (j["request_id"] == "checkout-42.a") {
        EXPECT_EQ(j.value("method", ""), "POST") << line;
        EXPECT_EQ(j.value("route", ""), "/v1/jobs") << line;
        EXPECT_EQ(j.value("status", 0), 202) << line;
        EXPECT_TRUE(j["duration_ms"].is_number()) << line;
        EXPECT_EQ(j.value("bytes", 0u), sent.body.size()) << line;
      }
      if (j["request_id"] == "lost-1") {
        EXPECT_EQ(j.value("route", ""), "/v1/jobs/{id}") << line;
      }
    }
  }
  EXPECT_TRUE(serving_line) << s->output();
  EXPECT_EQ(access_lines, 6) << s->output();
}

TEST_F(ServeLogsTest, TextIsTheDefaultAndAccessLinesCanBeTurnedOff) {
  {
    auto s = serve({});
    HttpClient c(s->url());
    EXPECT_EQ(c.get("/v1/jobs", {"X-Request-Id: r-text"}).status, 200);
    s->stop();
    const std::string out = s->output();
    EXPECT_NE(out.find("jobstate serving on http://"), std::string::npos) << out;
    EXPECT_NE(out.find("request method=GET route=/v1/jobs status=200"), std::string::npos) << out;
    EXPECT_NE(out.find("request_id=r-text"), std::string::npos) << out;
  }
  auto quiet = serve({"--no-access-log"});
  HttpClient c(quiet->url());
  EXPECT_EQ(c.get("/v1/jobs", {"X-Request-Id: r-quiet"}).header("X-Request-Id"), "r-quiet");
  quiet->stop();
  EXPECT_EQ(quiet->output().find("r-quiet"), std::string::npos) << quiet->output();
}

TEST_F(ServeLogsTest, AWatchdogFailureIsOneLineWithTheJobAndTheCode) {
  auto s = serve({"--log-format", "json", "--no-access-log"});
  HttpClient c(s->url());
  auto created = c.post_json("/v1/jobs", {{"type", "silent"}, {"heartbeat_timeout_s", 1}},
                             {"Content-Type: application/json"});
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string id = created.json().value("id", "");
  ASSERT_EQ(c.post_json("/v1/jobs/" + id + "/start", {{"worker", "w"}}, {"Content-Type: application/json"}).status,
            200);
  for (int i = 0; i < 100 && c.get("/v1/jobs/" + id).json().value("state", "") != "failed"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(c.get("/v1/jobs/" + id).json().value("state", ""), "failed");
  s->stop();
  int mentions = 0;
  for (const std::string& line : lines_of(s->output())) {
    if (line.find(id) == std::string::npos) continue;
    ++mentions;
    auto j = json::parse(line);
    EXPECT_EQ(j.value("message", ""), "watchdog: job failed") << line;
    EXPECT_EQ(j.value("code", ""), "heartbeat_timeout") << line;
    EXPECT_EQ(j.value("job_id", ""), id) << line;
  }
  EXPECT_EQ(mentions, 1) << s->output();
}

TEST_F(ServeLogsTest, ARefusalToStartIsOneJsonLineToo) {
  auto run = run_process({JOBSTATE_BIN, "serve", "--data-dir", dir_.sub("data"), "--listen", "0.0.0.0:0",
                          "--log-format", "json"});
  EXPECT_EQ(run.status, 2) << run.err;
  auto lines = lines_of(run.err);
  ASSERT_EQ(lines.size(), 1u) << run.err;
  auto j = json::parse(lines[0], nullptr, false);
  ASSERT_TRUE(j.is_object()) << run.err;
  EXPECT_EQ(j.value("level", ""), "error");
  EXPECT_NE(j.value("message", "").find("not a loopback address"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace jobstate::testing
