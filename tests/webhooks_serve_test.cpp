// Webhooks end to end: the real `jobstate serve --config FILE` with its
// secret in the environment, real HTTP in (libcurl) and out (to a receiver
// on 127.0.0.1, webhook_receiver.h): a signed delivery of a job's outcome,
// GET /v1/webhooks while the receiver is down and after, a server killed
// with SIGKILL mid-stream that resumes from its durable cursor without
// skipping, and configs that are refused with a one-line error. On RocksDB;
// on PostgreSQL too with JOBSTATE_TEST_STORE=postgres (ctest's
// pg.webhooks_serve_test).
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "api_test_server.h"  // eventually()
#include "http_client.h"
#include "postgres_fixture.h"
#include "serve_process.h"
#include "test_util.h"
#include "webhook_receiver.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

constexpr const char* kSecretEnv = "JOBSTATE_TEST_WEBHOOK_SECRET";
constexpr const char* kSecret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";


class WebhooksServeTest : public ::testing::Test {
 protected:
  WebhooksServeTest() {
    ::setenv(kSecretEnv, kSecret, 1);  // the servers inherit it
    if (testing_postgres()) postgres_ = std::make_unique<TestPostgres>();
  }

  std::string write_config(const json& webhooks) {
    const std::string path = dir_.sub("config-" + std::to_string(++configs_) + ".json");
    std::ofstream(path) << json{{"webhooks", webhooks}}.dump(2);
    return path;
  }
  ServeOptions options(const std::string& config) {
    ServeOptions o{.data_dir = dir_.sub("data"),
                   .output_path = dir_.sub("serve-" + std::to_string(++serves_) + ".log"),
                   .flags = {"--log-level", "warn"}};
    if (!config.empty()) o.flags.insert(o.flags.end(), {"--config", config});
    if (postgres_) o.store = postgres_->uri();
    return o;
  }
  std::unique_ptr<ServeProcess> serve(const std::string& config) {
    auto p = std::make_unique<ServeProcess>(options(config));
    EXPECT_FALSE(p->url().empty()) << p->output();
    return p;
  }
  json webhooks_status(HttpClient& http) {
    auto r = http.get("/v1/webhooks");
    EXPECT_EQ(r.status, 200) << r.body << r.curl_error;
    return r.status == 200 ? r.json() : json();
  }
  uint64_t head(HttpClient& http) {
    return http.get("/v1/audit/head").json()["seq"].get<uint64_t>();
  }
  // Waits until GET /v1/webhooks knows every endpoint's cursor.
  void wait_cursors_known(HttpClient& http) {
    ASSERT_TRUE(eventually([&] {
      const json s = webhooks_status(http);
      if (!s.contains("webhooks")) return false;
      for (const auto& w : s["webhooks"])
        if (w["cursor_seq"].is_null()) return false;
      return true;
    })) << webhooks_status(http).dump();
  }
  // A job through its life over HTTP: created, started, succeeded.
  std::string run_job(HttpClient& http) {
    auto r = http.post_json("/v1/jobs", {{"type", "hooked"}});
    EXPECT_EQ(r.status, 202) << r.body;
    const std::string id = r.json().value("id", "");
    auto s = http.post_json("/v1/jobs/" + id + "/start", {{"worker", "w/1"}});
    EXPECT_EQ(s.status, 200) << s.body;
    auto d = http.post_json("/v1/jobs/" + id + "/succeed", {{"result", {{"n", 1}}}});
    EXPECT_EQ(d.status, 200) << d.body;
    return id;
  }
  bool wait_acked(uint64_t seq, std::chrono::seconds limit = std::chrono::seconds(60)) {
    return eventually(
        [&] {
          for (const auto& r : receiver_.requests())
            if (r.acked() && r.seq() >= seq) return true;
          return false;
        },
        limit);
  }

  TempDir dir_;
  std::unique_ptr<TestPostgres> postgres_;
  WebhookReceiver receiver_;
  int configs_ = 0;
  int serves_ = 0;
};

TEST_F(WebhooksServeTest, ASignedDeliveryOfEachOutcomeAndTheStatusEndpoint) {
  auto server = serve(write_config(
      json::array({{{"url", receiver_.url("/outcomes")}, {"secret_env", kSecretEnv}}})));
  ASSERT_FALSE(server->url().empty());
  HttpClient http(server->url());
  wait_cursors_known(http);
  const std::string id = run_job(http);
  const uint64_t last = head(http);
  ASSERT_TRUE(wait_acked(last)) << server->output();

  auto requests = receiver_.requests();
  ASSERT_EQ(requests.size(), 1u);
  const ReceivedRequest& r = requests[0];
  EXPECT_EQ(r.path, "/outcomes");
  EXPECT_TRUE(verify_standard_webhook(r, kSecret));
  EXPECT_EQ(r.headers.at("webhook-id"), "evt_" + std::to_string(last));
  const json body = json::parse(r.body);
  const json events = http.get("/v1/jobs/" + id + "/events").json()["events"];
  EXPECT_EQ(body["event"], events.back());
  EXPECT_EQ(body["event"]["type"], "succeeded");
  EXPECT_EQ(body["job"], http.get("/v1/jobs/" + id).json());

  ASSERT_TRUE(eventually([&] { return webhooks_status(http)["webhooks"][0]["lag"] == 0; }));
  json w = webhooks_status(http)["webhooks"][0];
  EXPECT_EQ(w, json({{"url", receiver_.url("/outcomes")},
                     {"cursor_seq", last},
                     {"lag", 0},
                     {"last_error", nullptr}}));

  // The receiver goes away: the outcome waits, and the status says why.
  receiver_.stop();
  run_job(http);
  const uint64_t newer = head(http);
  ASSERT_TRUE(
      eventually([&] { return webhooks_status(http)["webhooks"][0]["last_error"].is_string(); },
                 std::chrono::seconds(30)));
  w = webhooks_status(http)["webhooks"][0];
  EXPECT_EQ(w["last_error"], "connect: Connection refused");
  EXPECT_EQ(w["cursor_seq"], newer - 1);  // created and started skipped
  EXPECT_EQ(w["lag"], 1);
  const std::string out = server->output();
  EXPECT_EQ(out.find("AAECAwQF"), std::string::npos) << "the secret was logged";

  receiver_.start();
  ASSERT_TRUE(wait_acked(newer)) << server->output();
  ASSERT_TRUE(eventually([&] { return webhooks_status(http)["webhooks"][0]["lag"] == 0; }));

  // SIGTERM stops it cleanly.
  server->signal(SIGTERM);
  auto status = server->wait_exit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << server->output();
}

TEST_F(WebhooksServeTest, AServerKilledMidStreamResumesFromItsDurableCursor) {
  // A slow receiver, so that deliveries are behind when the server dies.
  receiver_.set_responder([](const ReceivedRequest&, size_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return 200;
  });
  const std::string config = write_config(json::array(
      {{{"url", receiver_.url("/all")}, {"secret_env", kSecretEnv}, {"events", {"*"}}}}));
  auto server = serve(config);
  ASSERT_FALSE(server->url().empty());
  uint64_t start = 0;
  uint64_t last = 0;
  {
    HttpClient http(server->url());
    wait_cursors_known(http);
    start = head(http);
    for (int i = 0; i < 15; ++i) run_job(http);
    last = head(http);
  }
  ASSERT_EQ(last - start, 45u);
  ASSERT_TRUE(
      eventually([&] { return receiver_.requests().size() >= 10; }, std::chrono::seconds(60)));
  server->signal(SIGKILL);
  ASSERT_TRUE(server->wait_exit().has_value());
  const size_t before = receiver_.requests().size();
  ASSERT_LT(before, 45u) << "the receiver was not slow enough to be behind";

  server = serve(config);
  ASSERT_FALSE(server->url().empty());
  ASSERT_TRUE(wait_acked(last)) << server->output();

  // Each event acknowledged, in order; the only one that may come twice is
  // the last one acknowledged before the kill (its cursor save may not
  // have happened).
  // (A request in flight at the kill may have been answered after it.)
  const auto requests = receiver_.requests();
  uint64_t last_acked_before = 0;
  for (size_t i = 0; i < before; ++i)
    if (requests[i].acked()) last_acked_before = std::max(last_acked_before, requests[i].seq());
  std::vector<uint64_t> acked_seqs;
  for (const auto& r : requests)
    if (r.acked()) acked_seqs.push_back(r.seq());
  std::vector<uint64_t> distinct;
  size_t repeats = 0;
  for (uint64_t seq : acked_seqs) {
    if (!distinct.empty() && distinct.back() == seq) {
      ++repeats;
      EXPECT_EQ(seq, last_acked_before);
      continue;
    }
    distinct.push_back(seq);
  }
  EXPECT_LE(repeats, 1u);
  std::vector<uint64_t> expected;
  for (uint64_t s = start + 1; s <= last; ++s) expected.push_back(s);
  EXPECT_EQ(distinct, expected);
  for (const auto& r : receiver_.requests()) EXPECT_TRUE(verify_standard_webhook(r, kSecret));
}

TEST_F(WebhooksServeTest, WithoutWebhooksTheListIsEmpty) {
  auto server = serve("");
  ASSERT_FALSE(server->url().empty());
  HttpClient http(server->url());
  EXPECT_EQ(webhooks_status(http), json({{"webhooks", json::array()}}));
  auto post = http.post("/v1/webhooks");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.header("Allow"), "GET, HEAD");
}

TEST_F(WebhooksServeTest, BadConfigsAreRefusedWithOneLine) {
  ::setenv("JOBSTATE_TEST_NOT_A_WHSEC", "plain-secret-value", 1);
  ::unsetenv("JOBSTATE_TEST_UNSET_VAR");
  struct Case {
    json webhooks;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {json::array({{{"url", "ftp://127.0.0.1/x"}, {"secret_env", kSecretEnv}}}),
       "webhooks[0].url: \"ftp://127.0.0.1/x\" must start with http:// or https://"},
      {json::array({{{"url", "http://127.0.0.1/x"}, {"secret_env", "JOBSTATE_TEST_UNSET_VAR"}}}),
       "webhooks[0].secret_env: the environment variable JOBSTATE_TEST_UNSET_VAR is not set"},
      {json::array({{{"url", "http://127.0.0.1/x"}, {"secret_env", "JOBSTATE_TEST_NOT_A_WHSEC"}}}),
       "webhooks[0].secret_env: the value of JOBSTATE_TEST_NOT_A_WHSEC does not start with "
       "whsec_ (a Standard Webhooks secret is whsec_<base64>)"},
      {json::array(
           {{{"url", "http://127.0.0.1/x"}, {"secret_env", kSecretEnv}, {"events", {"finished"}}}}),
       "webhooks[0].events[0]: \"finished\" is not an event type"},
  };
  for (const auto& c : cases) {
    const std::string path = write_config(c.webhooks);
    ServeProcess server(options(path));
    EXPECT_TRUE(server.url().empty());
    auto status = server.wait_exit();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0) << *status;
    std::string out = server.output();
    while (!out.empty() && out.back() == '\n') out.pop_back();
    EXPECT_EQ(out, "jobstate serve: --config: " + path + ": " + c.expected);
    EXPECT_EQ(out.find("plain-secret-value"), std::string::npos);
  }
}

}  // namespace
}  // namespace jobstate::testing
