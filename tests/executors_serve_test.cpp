// `jobstate serve --config FILE` end to end: the real binary, real HTTP
// (libcurl), real child processes. A configured type runs when POSTed; an
// unconfigured one stays queued; cancel reaches the process; a bad config is
// refused with its line; a server killed while a command runs fails that job
// as abandoned when it starts again.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "http_client.h"
#include "serve_process.h"
#include "test_util.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

// A literal for an argv template: braces doubled (single ones are placeholders).
std::string literal(const std::string& text) {
  std::string out;
  for (char c : text) {
    out += c;
    if (c == '{' || c == '}') out += c;
  }
  return out;
}

// Waits for a file a command creates; bounded (a script fragment).
std::string wait_for_file(const std::string& path) {
  return "i=0; while [ ! -e '" + path + "' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; ";
}

class ExecutorsServeTest : public ::testing::Test {
 protected:
  std::string write_config(const json& executors) {
    const std::string path = dir_.sub("executors.json");
    std::ofstream(path) << json{{"executors", executors}}.dump(2);
    return path;
  }
  std::unique_ptr<ServeProcess> serve(const std::string& config) {
    auto p = std::make_unique<ServeProcess>(
        ServeOptions{.data_dir = dir_.sub("data"),
                     .output_path = dir_.sub("serve-" + std::to_string(++serves_) + ".log"),
                     .flags = {"--config", config, "--log-level", "warn"}});
    EXPECT_FALSE(p->url().empty()) << p->output();
    return p;
  }
  std::string post_job(HttpClient& http, const json& body) {
    auto r = http.request("POST", "/v1/jobs", {}, body.dump());
    EXPECT_EQ(r.status, 202) << r.body << r.curl_error;
    return r.json().value("id", "");
  }
  // Long-polls until the job is terminal (or `done` holds); bounded.
  json wait_job(HttpClient& http, const std::string& id,
                const std::function<bool(const json&)>& done = nullptr) {
    json job;
    for (int i = 0; i < 60; ++i) {
      const std::string after =
          job.is_null() ? "" : "&after_version=" + std::to_string(job["version"].get<int>());
      auto r = http.request("GET", "/v1/jobs/" + id + "/wait?timeout_s=1" + after);
      EXPECT_EQ(r.status, 200) << r.body << r.curl_error;
      if (r.status != 200) break;
      job = r.json();
      const std::string state = job["state"];
      if (done ? done(job) : (state == "succeeded" || state == "failed" || state == "cancelled"))
        break;
    }
    return job;
  }

  TempDir dir_;
  int serves_ = 0;
};

TEST_F(ExecutorsServeTest, ConfiguredTypeRunsOverHttp) {
  const std::string got_term = dir_.sub("got-term");
  auto config =
      write_config({{"thumbnail",
                     {{"argv",
                       {"/bin/sh", "-c",
                        literal("echo 'PROGRESS 0.3 resizing'; "
                                "printf '{\"src\": \"%s\", \"width\": %s}\\n' \"$1\" \"$2\""),
                        "sh", "{params.src}", "{params.width}"}},
                      {"concurrency", 2}}},
                    {"sleeper",
                     {{"argv",
                       {"/bin/sh", "-c",
                        "trap 'touch " + got_term + "; exit 1' TERM; echo 'PROGRESS 0 waiting'; " +
                            wait_for_file(dir_.sub("never")) + "exit 0"}},
                      {"cancel_grace_s", 5}}}});
  auto server = serve(config);
  ASSERT_FALSE(server->url().empty());
  HttpClient http(server->url());
  http.set_timeout_s(30);

  // Trigger, then poll: the job runs in the server's own executor.
  std::string id =
      post_job(http, {{"type", "thumbnail"}, {"params", {{"src", "cat.png"}, {"width", 200}}}});
  json job = wait_job(http, id);
  EXPECT_EQ(job["state"], "succeeded") << job.dump();
  EXPECT_EQ(job["result"], json({{"src", "cat.png"}, {"width", 200}}));
  EXPECT_EQ(job["progress"]["fraction"], 0.3);
  EXPECT_EQ(job["worker"].get<std::string>().rfind("jobstate-executor/", 0), 0u);
  auto events = http.request("GET", "/v1/jobs/" + id + "/events").json()["events"];
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.front()["type"], "created");
  EXPECT_EQ(events.back()["type"], "succeeded");

  // A type nobody configured waits for an external worker.
  std::string external = post_job(http, {{"type", "transcode"}});
  // A missing param fails with the reason.
  std::string bad = post_job(http, {{"type", "thumbnail"}, {"params", {{"src", "x.png"}}}});
  json bad_job = wait_job(http, bad);
  ASSERT_FALSE(bad_job.is_null()) << server->output();
  EXPECT_EQ(bad_job["state"], "failed");
  EXPECT_EQ(bad_job["error"]["code"], "invalid_params");
  EXPECT_NE(bad_job["error"]["message"].get<std::string>().find("params.width is missing"),
            std::string::npos);
  auto ext = http.request("GET", "/v1/jobs/" + external).json();
  EXPECT_EQ(ext["state"], "queued");
  EXPECT_EQ(ext["version"], 1);

  // Cancel over HTTP reaches the process as SIGTERM.
  std::string sleeper = post_job(http, {{"type", "sleeper"}});
  wait_job(http, sleeper, [](const json& j) { return !j["progress"].is_null(); });
  // The executor holds the attempt's lease: a client that knows the id cannot
  // finish or keep alive the job the server runs.
  for (const char* action : {"succeed", "heartbeat", "fail"}) {
    const std::string body = std::string(action) == "fail"
                                 ? R"({"error": {"code": "x", "message": "y"}})"
                                 : std::string(action) == "succeed" ? R"({"result": 1})" : "{}";
    auto none = http.request("POST", "/v1/jobs/" + sleeper + "/" + action, {}, body);
    EXPECT_TRUE(is_problem(none, 409, "lease-mismatch")) << action << ": " << none.body;
    auto made_up = http.request("POST", "/v1/jobs/" + sleeper + "/" + action,
                                {"Job-Lease: 00000000000000000000000000000000"}, body);
    EXPECT_TRUE(is_problem(made_up, 409, "lease-mismatch")) << action << ": " << made_up.body;
  }
  EXPECT_EQ(http.request("GET", "/v1/jobs/" + sleeper).json()["state"], "running");
  auto c = http.request("POST", "/v1/jobs/" + sleeper + "/cancel", {}, R"({"reason": "enough"})");
  EXPECT_EQ(c.status, 200) << c.body;
  json cancelled = wait_job(http, sleeper);
  EXPECT_EQ(cancelled["state"], "cancelled") << cancelled.dump();
  EXPECT_TRUE(std::ifstream(got_term).good());

  server->signal(SIGTERM);
  auto status = server->wait_exit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << server->output();
}

TEST_F(ExecutorsServeTest, KilledServerJobsAreAbandonedAtRestart) {
  const std::string pid_file = dir_.sub("pid");
  auto config = write_config({{"long",
                               {{"argv",
                                 {"/bin/sh", "-c",
                                  "echo $$ > " + pid_file + "; echo 'PROGRESS 0 up'; " +
                                      wait_for_file(dir_.sub("release")) + "exit 0"}}}}});
  std::string id;
  {
    auto server = serve(config);
    ASSERT_FALSE(server->url().empty());
    HttpClient http(server->url());
    http.set_timeout_s(30);
    id = post_job(http, {{"type", "long"}, {"heartbeat_timeout_s", 3600}});
    wait_job(http, id, [](const json& j) { return !j["progress"].is_null(); });
    server->signal(SIGKILL);
    server->wait_exit();
  }
  // The orphaned command is still out there; let it go.
  std::ofstream(dir_.sub("release")) << "x";

  auto server = serve(config);
  ASSERT_FALSE(server->url().empty());
  HttpClient http(server->url());
  // Failed at start-up, not an hour later at its heartbeat deadline.
  auto job = http.request("GET", "/v1/jobs/" + id).json();
  EXPECT_EQ(job["state"], "failed") << job.dump();
  EXPECT_EQ(job["error"]["code"], "abandoned");
}

TEST_F(ExecutorsServeTest, StoppedServerFailsItsRunningJobs) {
  auto config =
      write_config({{"long",
                     {{"argv",
                       {"/bin/sh", "-c",
                        "echo 'PROGRESS 0 up'; " + wait_for_file(dir_.sub("never")) + "exit 0"}},
                      {"cancel_grace_s", 1}}}});
  std::string id;
  {
    auto server = serve(config);
    ASSERT_FALSE(server->url().empty());
    HttpClient http(server->url());
    http.set_timeout_s(30);
    id = post_job(http, {{"type", "long"}});
    wait_job(http, id, [](const json& j) { return !j["progress"].is_null(); });
    server->signal(SIGTERM);
    auto status = server->wait_exit();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << server->output();
  }
  auto server = serve(config);
  HttpClient http(server->url());
  auto job = http.request("GET", "/v1/jobs/" + id).json();
  EXPECT_EQ(job["state"], "failed") << job.dump();
  EXPECT_EQ(job["error"]["code"], "abandoned");
  EXPECT_EQ(job["error"]["details"]["signal"], SIGTERM);
}

TEST_F(ExecutorsServeTest, ConfigWithErrorsIsRefusedWithLineAndReason) {
  const std::string path = dir_.sub("broken.json");
  std::ofstream(path)
      << "{\n  \"executors\": {\n    \"thumbnail\": {\n      \"argv\": [\"/bin/true\"],\n"
         "      \"concurrency\": -1\n    }\n  }\n}\n";
  ServeProcess server({.data_dir = dir_.sub("data"),
                       .output_path = dir_.sub("broken.log"),
                       .flags = {"--config", path}});
  EXPECT_TRUE(server.url().empty());
  auto status = server.wait_exit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << *status;
  const std::string out = server.output();
  EXPECT_NE(
      out.find(path + ":5: executors.thumbnail.concurrency must be an integer from 1 to 1024"),
      std::string::npos)
      << out;

  std::ofstream(path, std::ios::trunc)
      << "{\n  \"executors\": {\n    \"a\": {\"argv\": [\"/bin/true\"]\n  }\n";
  ServeProcess syntax({.data_dir = dir_.sub("data"),
                       .output_path = dir_.sub("syntax.log"),
                       .flags = {"--config", path}});
  EXPECT_TRUE(syntax.url().empty());
  syntax.wait_exit();
  EXPECT_NE(syntax.output().find(path + ":5:"), std::string::npos) << syntax.output();
}

}  // namespace
}  // namespace jobstate::testing
