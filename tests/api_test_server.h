// The API tests' server: the Service `jobstate serve` runs (service/service.h),
// on 127.0.0.1 with an ephemeral port and the system clock, in this process so
// tests can also look at the store directly. On RocksDB by default; on a
// PostgreSQL of its own when JOBSTATE_TEST_STORE=postgres (ctest runs the API
// suites both ways: the pg.* tests).
//
// Pistache leaks file descriptors for every endpoint started and stopped
// (#1158), so each test binary runs ONE server for all its tests: register a
// ServerEnvironment and reach the server through ServerEnvironment::server().
//
// Also: assertions and builders shared by the API test binaries.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>

#include "api/long_poll.h"
#include "domain/clock.h"
#include "identity/tokens.h"
#include "service/service.h"
#include "http_client.h"
#include "postgres_fixture.h"
#include "test_util.h"
#include "watchdog/watchdog.h"

namespace jobstate::testing {

// A token the server is started with (TestServer::token(name) gives it).
struct TestToken {
  std::string name;
  identity::Role role = identity::Role::kReader;
  std::string types;  // "" : every type
};

struct TestServerOptions {
  size_t max_parked = 1000;  // long-polls parked at once before 503
  int threads = 2;
  int64_t watchdog_interval_ms = 100;
  // Non-empty: `serve --tokens` with a tokens file holding these.
  std::vector<TestToken> tokens = {};
  int64_t idle_timeout_s = 90;   // ServerOptions::idle_timeout_s
  int64_t max_connections = 0;   // ServerOptions::max_connections
};

class TestServer {
 public:
  explicit TestServer(TestServerOptions o) {
    ServiceOptions so;
    so.store = dir_.sub("data");
    if (testing_postgres()) {
      postgres_ = std::make_unique<TestPostgres>();
      so.store = postgres_->uri();
    }
    so.clock = &clock_;
    so.max_parked = o.max_parked;
    so.watchdog.interval_ms = o.watchdog_interval_ms;
    so.server.host = "127.0.0.1";
    so.server.port = 0;
    so.server.threads = o.threads;
    if (!o.tokens.empty()) {
      tokens_path_ = dir_.sub("tokens.json");
      for (const auto& t : o.tokens) {
        auto token = identity::add_token(tokens_path_, t.name, t.role, t.types, clock_.now_ms());
        if (!token) throw std::runtime_error("adding a test token: " + token.error().message);
        tokens_[t.name] = *token;
      }
      auto set = identity::TokenSet::open(tokens_path_);
      if (!set) throw std::runtime_error("opening the test tokens: " + set.error().message);
      token_set_ = *set;
      so.server.tokens = token_set_;
    }
    so.server.idle_timeout_s = o.idle_timeout_s;
    so.server.max_connections = o.max_connections;
    // The store's own durable write, unless a test asks the disk to fail.
    so.fail_writes_for_test = [this] { return fail_writes_.load(); };
    auto service = Service::start(std::move(so));
    if (!service) throw std::runtime_error("starting the server: " + service.error().message);
    service_ = std::move(*service);
    url_ = "http://127.0.0.1:" + std::to_string(service_->port());
  }
  // The shutdown order of `jobstate serve` (Service::stop).
  ~TestServer() {
    service_.reset();
    postgres_.reset();
  }

  const std::string& url() const { return url_; }
  uint16_t port() const { return service_->port(); }
  Store& store() { return service_->store(); }
  api::LongPollRegistry& registry() { return service_->registry(); }
  Watchdog& watchdog() { return service_->watchdog(); }
  // The token named `name` (TestServerOptions::tokens), and the tokens file
  // and set the server reads (reload() is what SIGHUP does).
  const std::string& token(const std::string& name) const { return tokens_.at(name); }
  const std::string& tokens_path() const { return tokens_path_; }
  identity::TokenSet& token_set() { return *token_set_; }
  // While true, every batch the writer commits fails as if the disk did.
  void set_fail_writes(bool fail) { fail_writes_ = fail; }

 private:
  TempDir dir_;
  SystemClock clock_;
  std::atomic<bool> fail_writes_{false};
  std::string tokens_path_;
  std::map<std::string, std::string> tokens_;
  std::shared_ptr<identity::TokenSet> token_set_;
  std::unique_ptr<TestPostgres> postgres_;  // JOBSTATE_TEST_STORE=postgres only
  std::unique_ptr<Service> service_;
  std::string url_;
};

// One server for the whole test binary:
//   static auto* const env = ::testing::AddGlobalTestEnvironment(new ServerEnvironment());
class ServerEnvironment : public ::testing::Environment {
 public:
  explicit ServerEnvironment(TestServerOptions o = {}) : options_(o) {}
  void SetUp() override { instance() = new TestServer(options_); }
  void TearDown() override {
    delete instance();
    instance() = nullptr;
  }
  static TestServer& server() { return *instance(); }

 private:
  static TestServer*& instance() {
    static TestServer* s = nullptr;
    return s;
  }
  TestServerOptions options_;
};

// ---- assertions -------------------------------------------------------------

inline bool is_rfc3339_ms(const nlohmann::json& v) {
  static const std::regex re(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");
  return v.is_string() && std::regex_match(v.get<std::string>(), re) &&
         parse_rfc3339_ms(v.get<std::string>()).has_value();
}

inline bool is_job_id(const nlohmann::json& v) {
  static const std::regex re(R"([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})");
  return v.is_string() && std::regex_match(v.get<std::string>(), re);
}

inline TimeMs ms_of(const nlohmann::json& v) { return parse_rfc3339_ms(v.get<std::string>()).value_or(-1); }

// Every member of the job resource is present (unset ones null, or {} for
// labels/params) and has its type.
inline ::testing::AssertionResult is_job_resource(const nlohmann::json& j) {
  static const char* const kFields[] = {
      "id",          "type",     "state",           "version",           "created_at",
      "started_at",  "last_heartbeat_at", "finished_at", "heartbeat_timeout_s", "deadline_at",
      "progress",    "params",   "labels",          "worker",            "cancel_requested",
      "result",      "error",    "execution_timeout_s", "queue_timeout_s", "not_before",
      "priority",    "retry",    "attempt",         "max_attempts",      "last_error",
      "lease_hash"};
  if (!j.is_object()) return ::testing::AssertionFailure() << "not an object: " << j.dump();
  for (const char* f : kFields)
    if (!j.contains(f)) return ::testing::AssertionFailure() << "missing '" << f << "' in " << j.dump();
  if (j.size() != std::size(kFields))
    return ::testing::AssertionFailure() << "unexpected members in " << j.dump();
  if (!is_job_id(j["id"])) return ::testing::AssertionFailure() << "id " << j["id"];
  if (!j["type"].is_string()) return ::testing::AssertionFailure() << "type " << j["type"];
  static const std::regex states("queued|running|succeeded|failed|cancelled");
  if (!j["state"].is_string() || !std::regex_match(j["state"].get<std::string>(), states))
    return ::testing::AssertionFailure() << "state " << j["state"];
  if (!j["version"].is_number_unsigned() || j["version"].get<uint64_t>() < 1)
    return ::testing::AssertionFailure() << "version " << j["version"];
  if (!is_rfc3339_ms(j["created_at"])) return ::testing::AssertionFailure() << "created_at " << j["created_at"];
  for (const char* t : {"started_at", "last_heartbeat_at", "finished_at", "deadline_at"})
    if (!j[t].is_null() && !is_rfc3339_ms(j[t]))
      return ::testing::AssertionFailure() << t << " " << j[t];
  if (!j["heartbeat_timeout_s"].is_number_integer())
    return ::testing::AssertionFailure() << "heartbeat_timeout_s " << j["heartbeat_timeout_s"];
  if (!j["labels"].is_object()) return ::testing::AssertionFailure() << "labels " << j["labels"];
  if (!j["worker"].is_null() && !j["worker"].is_string())
    return ::testing::AssertionFailure() << "worker " << j["worker"];
  if (!j["cancel_requested"].is_boolean())
    return ::testing::AssertionFailure() << "cancel_requested " << j["cancel_requested"];
  const std::string state = j["state"];
  const bool terminal = state == "succeeded" || state == "failed" || state == "cancelled";
  if (terminal != !j["finished_at"].is_null())
    return ::testing::AssertionFailure() << "finished_at vs state in " << j.dump();
  if ((state == "running") != !j["deadline_at"].is_null())
    return ::testing::AssertionFailure() << "deadline_at vs state in " << j.dump();
  if (state != "failed" && !j["error"].is_null())
    return ::testing::AssertionFailure() << "error on a " << state << " job";
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult is_json_response(const HttpResponse& r, long status) {
  if (r.status != status)
    return ::testing::AssertionFailure() << "status " << r.status << " (want " << status << "), body "
                                         << r.body << (r.curl_error.empty() ? "" : ", curl: " + r.curl_error);
  if (r.header("Content-Type").rfind("application/json", 0) != 0)
    return ::testing::AssertionFailure() << "Content-Type '" << r.header("Content-Type") << "'";
  return ::testing::AssertionSuccess();
}

// ---- builders ---------------------------------------------------------------

// A unique job type per call, so tests can list "their" jobs on a shared server.
inline std::string unique_type(const std::string& prefix) {
  static std::atomic<int> n{0};
  return prefix + "." + std::to_string(n.fetch_add(1)) + "." +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000);
}

// POST /v1/jobs; the created job (a test failure and null when not 202).
inline nlohmann::json create_job(HttpClient& c, nlohmann::json body) {
  auto r = c.post_json("/v1/jobs", body);
  EXPECT_EQ(r.status, 202) << r.body;
  return r.status == 202 ? r.json() : nlohmann::json();
}
inline nlohmann::json create_job(HttpClient& c, const std::string& type) {
  return create_job(c, nlohmann::json{{"type", type}});
}
inline nlohmann::json create_job(HttpClient& c, const char* type) { return create_job(c, std::string(type)); }

inline std::string job_path(const nlohmann::json& job) { return "/v1/jobs/" + job["id"].get<std::string>(); }

// POST /v1/jobs/{id}/<action> expecting 200; the job afterwards.
inline nlohmann::json act(HttpClient& c, const nlohmann::json& job, const std::string& action,
                          const std::optional<nlohmann::json>& body = std::nullopt) {
  auto r = body ? c.post_json(job_path(job) + "/" + action, *body) : c.post(job_path(job) + "/" + action);
  EXPECT_EQ(r.status, 200) << action << ": " << r.body;
  return r.status == 200 ? r.json() : nlohmann::json();
}

// The job's whole history through the API.
inline std::vector<nlohmann::json> job_history(HttpClient& c, const nlohmann::json& job) {
  auto r = c.get(job_path(job) + "/events?limit=1000");
  EXPECT_EQ(r.status, 200) << r.body;
  std::vector<nlohmann::json> out;
  if (r.status == 200) {
    const nlohmann::json body = r.json();
    for (const auto& e : body["events"]) out.push_back(e);
  }
  return out;
}

// Polls `pred` every 10 ms until it holds or `limit` passes.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

}  // namespace jobstate::testing
