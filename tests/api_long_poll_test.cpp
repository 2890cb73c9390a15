// Long-polling through a real server: GET /v1/jobs/{id}/wait and
// GET /v1/events?wait_s= wake up on the commit that satisfies them, time out
// with the current state, and the number of parked requests is capped (this
// binary's server parks at most 2; the third gets 503).
//
// No tight timing: a wake-up must come well before the request's own timeout.
#include <gtest/gtest.h>

#include <future>

#include "api_test_server.h"
#include "raw_socket.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxParked = 2;
[[maybe_unused]] auto* const kEnv =
    ::testing::AddGlobalTestEnvironment(new ServerEnvironment(TestServerOptions{.max_parked = kMaxParked}));

TestServer& srv() { return ServerEnvironment::server(); }

struct Timed {
  HttpResponse response;
  Clock::duration took;
};

// Runs a GET on its own client and thread.
std::future<Timed> get_async(const std::string& path) {
  return std::async(std::launch::async, [path] {
    HttpClient mine(srv().url());
    mine.set_timeout_s(90);
    auto start = Clock::now();
    auto r = mine.get(path);
    return Timed{std::move(r), Clock::now() - start};
  });
}

bool parked_becomes(size_t n) {
  return eventually([n] { return srv().registry().parked() == n; });
}

class LongPoll : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(parked_becomes(0)) << "a previous test left requests parked"; }
  void TearDown() override { EXPECT_TRUE(parked_becomes(0)) << "requests still parked after the test"; }
  HttpClient c{srv().url()};
};

TEST_F(LongPoll, WaitAnswersAsSoonAsTheJobSucceeds) {
  json j = create_job(c, unique_type("wait"));
  act(c, j, "start");
  auto waiting = get_async(job_path(j) + "/wait?timeout_s=30");
  ASSERT_TRUE(parked_becomes(1));
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout)
      << "answered before the job finished";
  act(c, j, "succeed", json{{"result", {{"n", 1}}}});
  ASSERT_EQ(waiting.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  Timed t = waiting.get();
  ASSERT_TRUE(is_json_response(t.response, 200));
  json got = t.response.json();
  ASSERT_TRUE(is_job_resource(got));
  EXPECT_EQ(got["state"], "succeeded");
  EXPECT_EQ(got["result"], (json{{"n", 1}}));
  EXPECT_EQ(got, c.get(job_path(j)).json());
  EXPECT_EQ(t.response.header("ETag"), "\"3\"");
  EXPECT_FALSE(t.response.has_header("Retry-After"));
  EXPECT_LT(t.took, std::chrono::seconds(20)) << "woke only at its timeout";
}

TEST_F(LongPoll, WaitWakesOnEveryKindOfTerminalEvent) {
  struct Finish {
    const char* action;
    json body;
    const char* state;
  };
  for (const Finish& f : {Finish{"fail", json{{"error", {{"code", "x"}}}}, "failed"},
                          Finish{"cancel", json::object(), "cancelled"}}) {
    json j = create_job(c, unique_type("wait-end"));
    auto waiting = get_async(job_path(j) + "/wait?timeout_s=30");
    ASSERT_TRUE(parked_becomes(1));
    act(c, j, f.action, f.body);
    ASSERT_EQ(waiting.wait_for(std::chrono::seconds(20)), std::future_status::ready) << f.state;
    Timed t = waiting.get();
    ASSERT_EQ(t.response.status, 200);
    EXPECT_EQ(t.response.json()["state"], f.state);
  }
}

TEST_F(LongPoll, WaitWithAfterVersionWakesOnTheNextEvent) {
  json j = create_job(c, unique_type("wait-version"));
  act(c, j, "start");  // version 2
  auto waiting = get_async(job_path(j) + "/wait?timeout_s=30&after_version=2");
  ASSERT_TRUE(parked_becomes(1));
  act(c, j, "heartbeat", json{{"progress", {{"fraction", 0.5}}}});
  ASSERT_EQ(waiting.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  Timed t = waiting.get();
  ASSERT_TRUE(is_json_response(t.response, 200));
  EXPECT_EQ(t.response.json()["version"], 3);
  EXPECT_EQ(t.response.json()["state"], "running");
  EXPECT_EQ(t.response.json()["progress"]["fraction"], 0.5);
  EXPECT_EQ(t.response.header("ETag"), "\"3\"");
  EXPECT_TRUE(t.response.has_header("Retry-After"));

  // Already past the version: answered at once, nothing parked.
  auto now = c.get(job_path(j) + "/wait?timeout_s=30&after_version=1");
  ASSERT_EQ(now.status, 200);
  EXPECT_EQ(now.json()["version"], 3);
  EXPECT_EQ(srv().registry().parked(), 0u);
}

TEST_F(LongPoll, WaitTimesOutWithTheCurrentJob) {
  json j = create_job(c, unique_type("wait-timeout"));
  act(c, j, "start");
  auto start = Clock::now();
  auto r = c.get(job_path(j) + "/wait?timeout_s=1");
  auto took = Clock::now() - start;
  ASSERT_TRUE(is_json_response(r, 200));
  EXPECT_EQ(r.json(), c.get(job_path(j)).json());
  EXPECT_EQ(r.json()["state"], "running");
  EXPECT_TRUE(r.has_header("Retry-After"));
  EXPECT_GE(took, std::chrono::milliseconds(900)) << "did not wait";
  // after_version not reached: also a timeout with the current job.
  auto v = c.get(job_path(j) + "/wait?timeout_s=1&after_version=2");
  ASSERT_EQ(v.status, 200);
  EXPECT_EQ(v.json()["version"], 2);
  // The connection is still good after a timed-out wait.
  EXPECT_EQ(c.get("/healthz").new_connections, 0);
}

TEST_F(LongPoll, WaitWithTimeoutZeroAnswersAtOnce) {
  json j = create_job(c, unique_type("wait-zero"));
  auto r = c.get(job_path(j) + "/wait?timeout_s=0");
  ASSERT_TRUE(is_json_response(r, 200));
  EXPECT_EQ(r.json()["state"], "queued");
  EXPECT_EQ(srv().registry().parked(), 0u);
}

TEST_F(LongPoll, WaitOnATerminalJobAnswersAtOnce) {
  json j = create_job(c, unique_type("wait-done"));
  act(c, j, "cancel");
  auto start = Clock::now();
  auto r = c.get(job_path(j) + "/wait?timeout_s=60");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["state"], "cancelled");
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(30));
}

TEST_F(LongPoll, WaitRejectsBadParameters) {
  json j = create_job(c, unique_type("wait-bad"));
  for (const char* q : {"timeout_s=-1", "timeout_s=x", "timeout_s=", "after_version=-1", "after_version=v2"})
    EXPECT_TRUE(is_problem(c.get(job_path(j) + "/wait?" + q), 400, "invalid-request")) << q;
  EXPECT_TRUE(is_problem(c.get("/v1/jobs/" + JobId::generate().to_string() + "/wait?timeout_s=5"), 404,
                         "job-not-found"));
}

TEST_F(LongPoll, TwoWaitersOnOneJobBothWake) {
  json j = create_job(c, unique_type("wait-two"));
  act(c, j, "start");
  auto a = get_async(job_path(j) + "/wait?timeout_s=30");
  auto b = get_async(job_path(j) + "/wait?timeout_s=30&after_version=2");
  ASSERT_TRUE(parked_becomes(2));
  act(c, j, "heartbeat");
  // The after_version waiter wakes on the heartbeat; the other keeps waiting.
  ASSERT_EQ(b.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(b.get().response.json()["version"], 3);
  EXPECT_EQ(a.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  act(c, j, "succeed");
  ASSERT_EQ(a.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(a.get().response.json()["state"], "succeeded");
}

TEST_F(LongPoll, FeedWaitWakesOnTheNextEvent) {
  const uint64_t head = c.get("/v1/audit/head").json()["seq"];
  auto waiting = get_async("/v1/events?after_seq=" + std::to_string(head) + "&wait_s=30");
  ASSERT_TRUE(parked_becomes(1));
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  json j = create_job(c, unique_type("feed-wait"));
  ASSERT_EQ(waiting.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  Timed t = waiting.get();
  ASSERT_TRUE(is_json_response(t.response, 200));
  json page = t.response.json();
  ASSERT_EQ(page["events"].size(), 1u);
  EXPECT_EQ(page["events"][0]["seq"], head + 1);
  EXPECT_EQ(page["events"][0]["job_id"], j["id"]);
  EXPECT_EQ(page["events"][0]["type"], "created");
  EXPECT_EQ(page["next_after_seq"], head + 1);
}

TEST_F(LongPoll, FeedWaitTimesOutWithAnEmptyPage) {
  const uint64_t head = c.get("/v1/audit/head").json()["seq"];
  auto start = Clock::now();
  auto r = c.get("/v1/events?after_seq=" + std::to_string(head) + "&wait_s=1");
  ASSERT_TRUE(is_json_response(r, 200));
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(900));
  // Events may have been appended by nobody else here: the page is empty.
  EXPECT_TRUE(r.json()["events"].empty());
  EXPECT_EQ(r.json()["next_after_seq"], head);
}

TEST_F(LongPoll, FeedWaitAnswersAtOnceWhenNewerEventsExist) {
  create_job(c, unique_type("feed-now"));
  const uint64_t head = c.get("/v1/audit/head").json()["seq"];
  auto start = Clock::now();
  auto r = c.get("/v1/events?after_seq=" + std::to_string(head - 1) + "&wait_s=30");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["events"].size(), 1u);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(20));
  EXPECT_EQ(srv().registry().parked(), 0u);
}

// Clients that ask, then hang up, must not hold the cap until their
// timeouts: a full registry frees their slots for the next request.
TEST_F(LongPoll, ClientsThatLeftDoNotHoldTheCap) {
  json a = create_job(c, unique_type("left"));
  {
    std::vector<std::unique_ptr<RawSocket>> left;
    for (size_t i = 0; i < kMaxParked; ++i) {
      left.push_back(std::make_unique<RawSocket>(srv().port()));
      left.back()->send("GET " + job_path(a) + "/wait?timeout_s=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    }
    ASSERT_TRUE(parked_becomes(kMaxParked));
  }  // they hang up, a minute before their timeouts
  // The server notices the closed connections on its own time: a few tries.
  HttpResponse r;
  for (int i = 0; i < 50; ++i) {
    r = c.get(job_path(a) + "/wait?timeout_s=1");
    if (r.status != 503) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(r.status, 200) << r.body;  // parked, then answered at its timeout
  EXPECT_EQ(r.json()["state"], "queued");
  // A waiter whose hang-up the server had not seen yet when that request
  // came is still parked: the next requests that find the cap full free it.
  for (int i = 0; i < 20 && srv().registry().parked() > 0; ++i) {
    auto w1 = get_async(job_path(a) + "/wait?timeout_s=1");
    auto w2 = get_async(job_path(a) + "/wait?timeout_s=1");
    ASSERT_EQ(w1.wait_for(std::chrono::seconds(20)), std::future_status::ready);
    ASSERT_EQ(w2.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  }
  ASSERT_TRUE(parked_becomes(0));
  act(c, a, "cancel");
}

TEST_F(LongPoll, ParkedRequestsBeyondTheCapGet503) {
  json a = create_job(c, unique_type("cap"));
  json b = create_job(c, unique_type("cap"));
  auto wa = get_async(job_path(a) + "/wait?timeout_s=30");
  auto wb = get_async(job_path(b) + "/wait?timeout_s=30");
  ASSERT_TRUE(parked_becomes(kMaxParked));

  auto third = c.get(job_path(a) + "/wait?timeout_s=30");
  EXPECT_TRUE(is_problem(third, 503, "unavailable"));
  const uint64_t head = c.get("/v1/audit/head").json()["seq"];
  EXPECT_TRUE(is_problem(c.get("/v1/events?wait_s=30&after_seq=" + std::to_string(head)), 503, "unavailable"));
  // Requests that need not park are still answered.
  EXPECT_EQ(c.get(job_path(a) + "/wait?timeout_s=0").status, 200);
  EXPECT_EQ(c.get("/v1/events?after_seq=0&limit=1").status, 200);
  EXPECT_EQ(srv().registry().parked(), kMaxParked);

  act(c, a, "cancel");
  act(c, b, "cancel");
  ASSERT_EQ(wa.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  ASSERT_EQ(wb.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(wa.get().response.json()["state"], "cancelled");
  EXPECT_EQ(wb.get().response.json()["state"], "cancelled");
  ASSERT_TRUE(parked_becomes(0));
  // Room again.
  json d = create_job(c, unique_type("cap"));
  auto wd = get_async(job_path(d) + "/wait?timeout_s=30");
  ASSERT_TRUE(parked_becomes(1));
  act(c, d, "cancel");
  ASSERT_EQ(wd.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(wd.get().response.status, 200);
}

TEST_F(LongPoll, AClientThatGivesUpDoesNotHurtTheServer) {
  json j = create_job(c, unique_type("gone"));
  {
    HttpClient impatient(srv().url());
    impatient.set_timeout_s(1);
    auto r = impatient.get(job_path(j) + "/wait?timeout_s=3");
    EXPECT_EQ(r.status, 0) << "expected the client to give up first";
  }
  // The server answers the abandoned wait at its timeout (into a closed
  // socket), frees its slot and keeps serving.
  ASSERT_TRUE(eventually([] { return srv().registry().parked() == 0; }, std::chrono::seconds(15)));
  EXPECT_EQ(c.get("/healthz").status, 200);
  // Same when the job finishes while nobody listens any more.
  {
    HttpClient impatient(srv().url());
    impatient.set_timeout_s(1);
    EXPECT_EQ(impatient.get(job_path(j) + "/wait?timeout_s=20").status, 0);
  }
  act(c, j, "cancel");
  ASSERT_TRUE(parked_becomes(0));
  EXPECT_EQ(c.get("/healthz").status, 200);
}

TEST_F(LongPoll, ManyWaitRoundsOnOneConnection) {
  // A worker-style loop: wait for the next version, then make one, 20 times,
  // all waits on one kept-alive connection.
  json j = create_job(c, unique_type("rounds"));
  act(c, j, "start");
  HttpClient waiter(srv().url());
  long port = 0;
  for (int v = 2; v < 22; ++v) {
    auto w = std::async(std::launch::async, [&, v] {
      return waiter.get(job_path(j) + "/wait?timeout_s=30&after_version=" + std::to_string(v));
    });
    ASSERT_TRUE(parked_becomes(1)) << v;
    act(c, j, "heartbeat");
    ASSERT_EQ(w.wait_for(std::chrono::seconds(20)), std::future_status::ready) << v;
    HttpResponse r = w.get();
    ASSERT_EQ(r.status, 200) << r.curl_error;
    EXPECT_EQ(r.json()["version"], v + 1);
    if (port == 0) port = r.local_port;
    EXPECT_EQ(r.local_port, port) << "reconnected at round " << v;
  }
}

}  // namespace
}  // namespace jobstate::testing
