// Workers through a real server (API.md "Workers, timeouts, retries,
// webhooks"): claims in priority order with long-polls that wake on a new or
// delayed job, leases that refuse a report from another attempt, execution
// and queue timeouts failed by the watchdog, and retries that end in success
// or in a final failure. ctest runs it on both backends (pg.api_workers_test).
//
// No tight timing: a wake-up must come well before the request's own timeout.
#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <regex>
#include <set>

#include "api_test_server.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

[[maybe_unused]] auto* const kEnv = ::testing::AddGlobalTestEnvironment(new ServerEnvironment());

TestServer& srv() { return ServerEnvironment::server(); }

HttpResponse claim(HttpClient& c, const std::string& type, int wait_s = 0,
                   const std::string& worker = "w") {
  return c.post_json("/v1/claims", {{"types", {type}}, {"worker", worker}, {"wait_s", wait_s}});
}

// A claim on its own client and thread.
std::future<HttpResponse> claim_async(const std::string& type, int wait_s) {
  return std::async(std::launch::async, [type, wait_s] {
    HttpClient mine(srv().url());
    mine.set_timeout_s(90);
    return claim(mine, type, wait_s);
  });
}

bool is_lease(const std::string& s) { return std::regex_match(s, std::regex("[0-9a-f]{32}")); }

class Workers : public ::testing::Test {
 protected:
  HttpClient c{srv().url()};
};

// ---- claims ------------------------------------------------------------------

TEST_F(Workers, AClaimTakesTheHighestPriorityThenTheOldestAndHandsOutALease) {
  const std::string type = unique_type("claim-order");
  json low = create_job(c, {{"type", type}, {"priority", -5}});
  json first = create_job(c, {{"type", type}, {"priority", 7}});
  json second = create_job(c, {{"type", type}, {"priority", 7}});
  json plain = create_job(c, {{"type", type}});
  EXPECT_EQ(low["priority"], -5);
  EXPECT_EQ(plain["priority"], 0);

  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) {
    auto r = claim(c, type, 0, "host-1/7");
    ASSERT_TRUE(is_json_response(r, 200)) << r.body;
    json j = r.json();
    ASSERT_TRUE(is_job_resource(j));
    EXPECT_EQ(j["state"], "running");
    EXPECT_EQ(j["worker"], "host-1/7");
    EXPECT_TRUE(is_lease(r.header("Job-Lease"))) << r.header("Job-Lease");
    EXPECT_TRUE(j["lease_hash"].is_string());
    EXPECT_NE(j["lease_hash"], r.header("Job-Lease"));  // the log keeps only its hash
    order.push_back(j["id"]);
  }
  EXPECT_EQ(order, (std::vector<std::string>{first["id"], second["id"], plain["id"], low["id"]}));
  // Nothing left: 204 with no body.
  auto none = claim(c, type);
  EXPECT_EQ(none.status, 204);
  EXPECT_TRUE(none.body.empty());
  EXPECT_FALSE(none.has_header("Job-Lease"));
}

TEST_F(Workers, AClaimOnlyTakesTheTypesItNames) {
  const std::string a = unique_type("claim-a"), b = unique_type("claim-b");
  json ja = create_job(c, a);
  EXPECT_EQ(claim(c, b).status, 204);
  auto r = c.post_json("/v1/claims", {{"types", {b, a}}, {"worker", "w"}});
  ASSERT_TRUE(is_json_response(r, 200));
  EXPECT_EQ(r.json()["id"], ja["id"]);
}

TEST_F(Workers, AParkedClaimWakesWhenAJobOfItsTypeIsCreated) {
  const std::string type = unique_type("claim-wake");
  auto waiting = claim_async(type, 30);
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "answered before any job existed";
  create_job(c, unique_type("other"));  // another type does not wake it for good
  json j = create_job(c, type);
  ASSERT_EQ(waiting.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  auto r = waiting.get();
  ASSERT_TRUE(is_json_response(r, 200)) << r.body;
  EXPECT_EQ(r.json()["id"], j["id"]);
  EXPECT_TRUE(is_lease(r.header("Job-Lease")));
}

TEST_F(Workers, AClaimThatWaitsForNothingAnswers204) {
  const std::string type = unique_type("claim-empty");
  auto start = Clock::now();
  auto r = claim(c, type, 1);
  EXPECT_EQ(r.status, 204);
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(900)) << "did not wait";
}

TEST_F(Workers, ADelayedJobIsClaimableOnceItsNotBeforeComes) {
  const std::string type = unique_type("claim-later");
  const TimeMs at = SystemClock().now_ms() + 1500;
  json j = create_job(c, {{"type", type}, {"not_before", format_rfc3339_ms(at)}});
  EXPECT_EQ(j["not_before"], format_rfc3339_ms(at));
  EXPECT_EQ(claim(c, type).status, 204) << "claimed before not_before";
  // A parked claim wakes at not_before, not at the end of its wait.
  auto r = claim(c, type, 30);
  ASSERT_TRUE(is_json_response(r, 200)) << r.body;
  EXPECT_EQ(r.json()["id"], j["id"]);
  EXPECT_GE(SystemClock().now_ms(), at);
}

TEST_F(Workers, RacingClaimersNeverGetTheSameJob) {
  const std::string type = unique_type("claim-race");
  constexpr int kJobs = 60, kClaimers = 8;
  for (int i = 0; i < kJobs; ++i) create_job(c, type);
  std::mutex mu;
  std::vector<std::string> got;
  std::vector<std::thread> threads;
  for (int t = 0; t < kClaimers; ++t)
    threads.emplace_back([&] {
      HttpClient mine(srv().url());
      for (int k = 0; k < kJobs; ++k) {  // bounded: at most every job
        auto r = claim(mine, type);
        if (r.status != 200) break;
        std::lock_guard<std::mutex> lock(mu);
        got.push_back(r.json()["id"]);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(got.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), got.size()) << "a job claimed twice";
}

TEST_F(Workers, ClaimBodiesAreValidated) {
  for (const char* body :
       {R"({})", R"({"types": []})", R"({"types": "t"})", R"({"types": ["bad type"]})",
        R"({"types": ["t"], "wait_s": 61})", R"({"types": ["t"], "wait_s": -1})",
        R"({"types": ["t"], "worker": 5})", R"({"types": ["t"], "extra": 1})", "[1]"})
    EXPECT_TRUE(is_problem(c.post("/v1/claims", std::string(body)), 400, "invalid-request")) << body;
  EXPECT_EQ(c.get("/v1/claims").status, 405);
}

// ---- leases ------------------------------------------------------------------

TEST_F(Workers, ReportsWithoutTheRunningAttemptsLeaseAre409LeaseMismatch) {
  json j = create_job(c, unique_type("lease"));
  auto started = c.post_json(job_path(j) + "/start", {{"worker", "w"}});
  ASSERT_TRUE(is_json_response(started, 200));
  const std::string lease = started.header("Job-Lease");
  ASSERT_TRUE(is_lease(lease));
  for (const char* action : {"heartbeat", "succeed", "fail", "cancelled"}) {
    const json body = std::string(action) == "fail" ? json{{"error", {{"code", "x"}}}} : json::object();
    auto wrong = c.post_json(job_path(j) + "/" + action, body, {"Job-Lease: 0123"});
    EXPECT_TRUE(is_problem(wrong, 409, "lease-mismatch")) << action << ": " << wrong.body;
    EXPECT_EQ(wrong.json()["state"], "running");
    auto none = c.post_json(job_path(j) + "/" + action, body, {"Job-Lease:"});
    EXPECT_TRUE(is_problem(none, 409, "lease-mismatch")) << action << ": " << none.body;
  }
  auto ok = c.post_json(job_path(j) + "/heartbeat", json::object(), {"Job-Lease: " + lease});
  EXPECT_TRUE(is_json_response(ok, 200)) << ok.body;
  // A lease on a queued job is refused too, before If-Match is looked at.
  json q = create_job(c, unique_type("lease-queued"));
  EXPECT_TRUE(is_problem(c.post_json(job_path(q) + "/start", {{"worker", "w"}},
                                     {"Job-Lease: " + lease, "If-Match: \"9\""}),
                         409, "lease-mismatch"));
  // A client's cancel needs no lease.
  EXPECT_TRUE(is_json_response(c.post_json(job_path(j) + "/cancel", json::object(), {"Job-Lease:"}), 200));
}

TEST_F(Workers, AWorkerThatComesBackAfterItsJobWasRetriedIsRefused) {
  const std::string type = unique_type("lease-late");
  json j = create_job(c, {{"type", type}, {"retry", {{"max_attempts", 3}, {"initial_backoff_s", 0}}}});
  auto first = claim(c, type);
  ASSERT_TRUE(is_json_response(first, 200));
  const std::string old_lease = first.header("Job-Lease");
  // The worker is presumed dead (its attempt abandoned) and the job runs again.
  auto failed = c.post_json(job_path(j) + "/fail", {{"error", {{"code", "abandoned"}}}},
                            {"Job-Lease: " + old_lease});
  ASSERT_TRUE(is_json_response(failed, 200)) << failed.body;
  EXPECT_EQ(failed.json()["state"], "queued");
  auto second = claim(c, type);
  ASSERT_TRUE(is_json_response(second, 200));
  EXPECT_EQ(second.json()["attempt"], 2);
  EXPECT_NE(second.header("Job-Lease"), old_lease);
  // The first worker's late report must not finish the second attempt.
  auto late = c.post_json(job_path(j) + "/succeed", {{"result", "stale"}}, {"Job-Lease: " + old_lease});
  EXPECT_TRUE(is_problem(late, 409, "lease-mismatch")) << late.body;
  auto now = c.get(job_path(j));
  EXPECT_EQ(now.json()["state"], "running");
  EXPECT_EQ(now.json()["result"], nullptr);
}

// ---- retries -----------------------------------------------------------------

TEST_F(Workers, ARetriedJobSucceedsOnItsSecondAttempt) {
  const std::string type = unique_type("retry-ok");
  json j = create_job(c, {{"type", type},
                          {"retry", {{"max_attempts", 2}, {"initial_backoff_s", 0}, {"max_backoff_s", 1}}}});
  EXPECT_EQ(j["attempt"], 1);
  EXPECT_EQ(j["max_attempts"], 2);
  EXPECT_EQ(j["retry"], (json{{"max_attempts", 2}, {"initial_backoff_s", 0}, {"max_backoff_s", 1}}));
  ASSERT_EQ(claim(c, type).status, 200);
  const json error = {{"code", "flaky_upstream"}, {"message", "502 from S3"}, {"retryable", true}};
  json again = act(c, j, "fail", json{{"error", error}});
  EXPECT_EQ(again["state"], "queued");
  EXPECT_EQ(again["attempt"], 2);
  EXPECT_EQ(again["last_error"]["code"], "flaky_upstream");
  EXPECT_EQ(again["last_error"]["retryable"], true);
  EXPECT_EQ(again["worker"], nullptr);
  EXPECT_EQ(again["error"], nullptr);
  auto second = claim(c, type, 10);
  ASSERT_TRUE(is_json_response(second, 200)) << second.body;
  json done = act(c, j, "succeed", json{{"result", {{"ok", true}}}});
  EXPECT_EQ(done["state"], "succeeded");
  EXPECT_EQ(done["attempt"], 2);
  // The history says what happened.
  std::vector<std::string> types;
  for (auto& e : job_history(c, j)) types.push_back(e["type"]);
  EXPECT_EQ(types, (std::vector<std::string>{"created", "started", "retry_scheduled", "started",
                                             "succeeded"}));
  auto events = job_history(c, j);
  EXPECT_EQ(events[2]["data"]["attempt"], 2);
  EXPECT_EQ(events[2]["data"]["error"]["code"], "flaky_upstream");
  EXPECT_TRUE(events[2]["data"]["not_before"].is_string());
}

TEST_F(Workers, WhenNoAttemptRemainsTheJobFailsForGood) {
  const std::string type = unique_type("retry-out");
  json j = create_job(c, {{"type", type}, {"retry", {{"max_attempts", 2}, {"initial_backoff_s", 0}}}});
  for (int attempt = 1; attempt <= 2; ++attempt) {
    auto r = claim(c, type, 10);
    ASSERT_TRUE(is_json_response(r, 200)) << r.body;
    EXPECT_EQ(r.json()["attempt"], attempt);
    act(c, j, "fail", json{{"error", {{"code", "execution_timeout"}}}});
  }
  auto now = c.get(job_path(j)).json();
  EXPECT_EQ(now["state"], "failed");
  EXPECT_EQ(now["attempt"], 2);
  EXPECT_EQ(now["error"]["code"], "execution_timeout");
  EXPECT_EQ(now["last_error"]["code"], "execution_timeout");
}

TEST_F(Workers, AnOrdinaryFailureIsFinalEvenWithRetries) {
  json j = create_job(c, {{"type", unique_type("retry-no")}, {"retry", {{"max_attempts", 5}}}});
  act(c, j, "start", json{{"worker", "w"}});
  json failed = act(c, j, "fail", json{{"error", {{"code", "bad_input"}}}});
  EXPECT_EQ(failed["state"], "failed");
  EXPECT_EQ(failed["attempt"], 1);
}

// ---- timeouts ----------------------------------------------------------------

TEST_F(Workers, AHungButHeartbeatingAttemptIsFailedByItsExecutionTimeout) {
  json j = create_job(c, {{"type", unique_type("exec-timeout")},
                          {"heartbeat_timeout_s", 60},
                          {"execution_timeout_s", 1}});
  EXPECT_EQ(j["execution_timeout_s"], 1);
  act(c, j, "start", json{{"worker", "w"}});
  json last;
  // Heartbeats keep coming (bounded: at most 100 of them, 10 s)...
  for (int i = 0; i < 100; ++i) {
    auto r = c.post_json(job_path(j) + "/heartbeat", json::object());
    last = r.json();
    if (r.status != 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // ...and still the attempt ends.
  auto now = c.get(job_path(j)).json();
  EXPECT_EQ(now["state"], "failed");
  EXPECT_EQ(now["error"]["code"], "execution_timeout");
  EXPECT_EQ(last["type"], "/problems/job-terminal") << last;
}

TEST_F(Workers, AJobNobodyClaimsIsFailedByItsQueueTimeout) {
  json j = create_job(c, {{"type", unique_type("queue-timeout")}, {"queue_timeout_s", 1}});
  EXPECT_EQ(j["queue_timeout_s"], 1);
  ASSERT_TRUE(eventually([&] { return c.get(job_path(j)).json()["state"] == "failed"; },
                         std::chrono::seconds(15)));
  auto now = c.get(job_path(j)).json();
  EXPECT_EQ(now["error"]["code"], "queue_timeout");
  EXPECT_EQ(now["started_at"], nullptr);
}

TEST_F(Workers, CreateValidatesTheNewMembers) {
  for (json body : {json{{"type", "t"}, {"execution_timeout_s", 0}},
                    json{{"type", "t"}, {"execution_timeout_s", 604801}},
                    json{{"type", "t"}, {"queue_timeout_s", "1"}},
                    json{{"type", "t"}, {"priority", 1001}},
                    json{{"type", "t"}, {"priority", 1.5}},
                    json{{"type", "t"}, {"not_before", "tomorrow"}},
                    json{{"type", "t"}, {"retry", {{"max_attempts", 0}}}},
                    json{{"type", "t"}, {"retry", {{"max_attempts", 101}}}},
                    json{{"type", "t"}, {"retry", {{"max_backoff_s", 0}}}},
                    json{{"type", "t"}, {"retry", {{"tries", 2}}}},
                    json{{"type", "t"}, {"retry", 3}}})
    EXPECT_TRUE(is_problem(c.post_json("/v1/jobs", body), 400, "invalid-request")) << body;
  json edges = create_job(c, {{"type", "t"},
                              {"execution_timeout_s", 604800},
                              {"queue_timeout_s", 1},
                              {"priority", -1000},
                              {"retry", {{"max_attempts", 100}, {"initial_backoff_s", 0}, {"max_backoff_s", 86400}}}});
  EXPECT_EQ(edges["max_attempts"], 100);
}

TEST_F(Workers, AnIdempotencyKeyCoversTheNewMembers) {
  const std::string key = "Idempotency-Key: " + unique_type("idem-workers");
  json body = {{"type", "t"}, {"priority", 3}};
  auto first = c.post_json("/v1/jobs", body, {key});
  ASSERT_EQ(first.status, 202);
  body["priority"] = 4;
  EXPECT_TRUE(is_problem(c.post_json("/v1/jobs", body, {key}), 422, "idempotency-key-reused"));
}

}  // namespace
}  // namespace jobstate::testing
