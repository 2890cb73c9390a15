// Racing reports on the same jobs from several threads and connections:
// succeed / fail / heartbeat / cancel / cancelled at once, If-Match
// contention, and the watchdog racing a success. Whatever the interleaving,
// each job ends with exactly one terminal event, the last of its history, no
// request gets a 5xx, and the global feed stays gapless with an intact chain.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "api_test_server.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

[[maybe_unused]] auto* const kEnv = ::testing::AddGlobalTestEnvironment(new ServerEnvironment());

TestServer& srv() { return ServerEnvironment::server(); }

bool is_terminal_event(const json& e) {
  const std::string t = e["type"];
  return t == "succeeded" || t == "failed" || t == "cancelled";
}

struct Outcome {
  std::string job_id;
  std::string action;
  long status;
  std::string slug;  // problem type, for non-2xx
  uint64_t version;  // 2xx: the version answered
};

// Runs `actions[t]` from thread t on every job (each thread in its own
// order), `rounds` times; returns every response.
std::vector<Outcome> race(const std::vector<json>& jobs, const std::vector<std::string>& actions, int rounds) {
  std::mutex mu;
  std::vector<Outcome> out;
  std::vector<std::thread> threads;
  for (size_t t = 0; t < actions.size(); ++t)
    threads.emplace_back([&, t] {
      HttpClient c(srv().url());
      std::vector<size_t> order(jobs.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::mt19937 rng(static_cast<unsigned>(t * 7919 + 17));
      std::vector<Outcome> mine;
      for (int round = 0; round < rounds; ++round) {
        std::shuffle(order.begin(), order.end(), rng);
        for (size_t i : order) {
          const std::string& action = actions[t];
          json body = action == "fail"      ? json{{"error", {{"code", "race"}}}}
                      : action == "succeed" ? json{{"result", t}}
                      : action == "heartbeat" ? json{{"progress", {{"fraction", 0.5}}}}
                                              : json::object();
          auto r = c.post_json(job_path(jobs[i]) + "/" + action, body);
          Outcome o{jobs[i]["id"], action, r.status, "", 0};
          if (r.status == 200) {
            o.version = r.json()["version"];
          } else if (r.status != 0) {
            auto p = json::parse(r.body, nullptr, false);
            if (!p.is_discarded() && p.is_object()) o.slug = p.value("type", "");
          }
          mine.push_back(std::move(o));
        }
      }
      std::lock_guard lock(mu);
      out.insert(out.end(), mine.begin(), mine.end());
    });
  for (auto& th : threads) th.join();
  return out;
}

::testing::AssertionResult feed_is_gapless_and_chained(HttpClient& c) {
  const uint64_t head = c.get("/v1/audit/head").json()["seq"];
  uint64_t after = 0;
  for (int pages = 0; after < head && pages < 100000; ++pages) {
    json page = c.get("/v1/events?limit=1000&after_seq=" + std::to_string(after)).json();
    if (page["events"].empty()) return ::testing::AssertionFailure() << "empty page after " << after;
    for (auto& e : page["events"]) {
      if (e["seq"] != after + 1) return ::testing::AssertionFailure() << "seq " << e["seq"] << " after " << after;
      after = e["seq"];
    }
  }
  if (after != head) return ::testing::AssertionFailure() << "feed ends at " << after << ", head " << head;
  return log_is_intact(srv().store().log());
}

TEST(Race, SucceedFailHeartbeatCancelOnRunningJobsLeaveOneTerminalEventEach) {
  HttpClient c(srv().url());
  std::vector<json> jobs;
  for (int i = 0; i < 20; ++i) {
    jobs.push_back(create_job(c, unique_type("race")));
    act(c, jobs.back(), "start");
  }
  auto outcomes =
      race(jobs, {"succeed", "fail", "heartbeat", "cancel", "cancelled", "heartbeat"}, /*rounds=*/2);

  std::map<std::string, int> terminal_wins;  // job → 2xx terminal reports
  std::map<std::string, std::set<uint64_t>> appended_versions;
  for (const auto& o : outcomes) {
    ASSERT_NE(o.status, 0) << o.action << ": transfer failed";
    EXPECT_LT(o.status, 500) << o.action << " " << o.slug;
    EXPECT_NE(o.status, 412) << o.action;  // nobody sent If-Match
    if (o.status == 200) {
      if (o.action == "succeed" || o.action == "fail" || o.action == "cancelled") terminal_wins[o.job_id]++;
      if (o.action != "cancel") {
        EXPECT_TRUE(appended_versions[o.job_id].insert(o.version).second)
            << "two appending reports answered version " << o.version << " of " << o.job_id;
      }
    } else {
      EXPECT_EQ(o.status, 409) << o.action << " " << o.slug;
      EXPECT_TRUE(o.slug == "/problems/job-terminal" || o.slug == "/problems/invalid-transition")
          << o.action << " " << o.slug;
    }
  }
  for (const json& j : jobs) {
    EXPECT_EQ(terminal_wins[j["id"]], 1) << j["id"];
    auto hist = job_history(c, j);
    ASSERT_FALSE(hist.empty());
    int terminal = 0;
    for (auto& e : hist) terminal += is_terminal_event(e);
    EXPECT_EQ(terminal, 1) << j["id"];
    EXPECT_TRUE(is_terminal_event(hist.back())) << hist.back().dump();
    for (size_t v = 0; v < hist.size(); ++v) EXPECT_EQ(hist[v]["version"], v + 1);
    // The status row agrees with the history.
    json now = c.get(job_path(j)).json();
    EXPECT_EQ(now["version"], hist.size());
    const std::string last = hist.back()["type"];
    EXPECT_EQ(now["state"], last);
    // At most one cancel_requested event however many cancels raced.
    int cancel_requests = 0;
    for (auto& e : hist) cancel_requests += e["type"] == "cancel_requested";
    EXPECT_LE(cancel_requests, 1);
  }
  EXPECT_TRUE(feed_is_gapless_and_chained(c));
}

TEST(Race, StartCancelFailOnQueuedJobsLeaveOneTerminalEventEach) {
  HttpClient c(srv().url());
  std::vector<json> jobs;
  for (int i = 0; i < 20; ++i) jobs.push_back(create_job(c, unique_type("race-queued")));
  auto outcomes = race(jobs, {"start", "cancel", "fail", "succeed"}, /*rounds=*/2);
  for (const auto& o : outcomes) {
    ASSERT_NE(o.status, 0);
    EXPECT_TRUE(o.status == 200 || o.status == 409) << o.action << " " << o.status << " " << o.slug;
  }
  for (const json& j : jobs) {
    auto hist = job_history(c, j);
    int terminal = 0;
    for (auto& e : hist) terminal += is_terminal_event(e);
    EXPECT_EQ(terminal, 1) << j["id"];
    EXPECT_TRUE(is_terminal_event(hist.back()));
  }
  EXPECT_TRUE(feed_is_gapless_and_chained(c));
}

TEST(Race, IfMatchLetsExactlyOneWriterWinEachVersion) {
  HttpClient c(srv().url());
  json j = create_job(c, unique_type("race-ifmatch"));
  act(c, j, "start");
  std::atomic<int> wins{0}, mismatches{0}, others{0};
  std::mutex mu;
  std::set<uint64_t> won_versions;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      HttpClient mine(srv().url());
      for (int i = 0; i < 25; ++i) {
        auto g = mine.get(job_path(j));
        const std::string etag = g.header("ETag");
        auto r = mine.post(job_path(j) + "/heartbeat", std::nullopt, {"If-Match: " + etag});
        if (r.status == 200) {
          wins++;
          const uint64_t v = r.json()["version"];
          std::lock_guard lock(mu);
          EXPECT_TRUE(won_versions.insert(v).second) << "version " << v << " won twice";
          EXPECT_EQ("\"" + std::to_string(v - 1) + "\"", etag) << "won with a stale tag";
        } else if (r.status == 412) {
          mismatches++;
        } else {
          others++;
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(others.load(), 0);
  EXPECT_EQ(wins.load() + mismatches.load(), 100);
  // A refusal means another thread won between that thread's read and its
  // write; one win can refuse at most the 3 other threads' pending writes.
  EXPECT_GE(wins.load(), 25);
  EXPECT_EQ(c.get(job_path(j)).json()["version"], 2 + wins.load());
}

TEST(Race, WatchdogRacingSuccessLeavesOneTerminalEvent) {
  HttpClient c(srv().url());
  std::vector<json> jobs;
  for (int i = 0; i < 20; ++i) {
    jobs.push_back(create_job(c, {{"type", unique_type("race-watchdog")}, {"heartbeat_timeout_s", 1}}));
    act(c, jobs.back(), "start");
  }
  // Report success around the deadline (one every 50 ms per thread from
  // 850 ms on), while the watchdog sweeps every 100 ms.
  std::this_thread::sleep_for(std::chrono::milliseconds(850));
  std::vector<std::thread> threads;
  std::atomic<int> unexpected{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      HttpClient mine(srv().url());
      for (size_t i = static_cast<size_t>(t); i < jobs.size(); i += 4) {
        auto r = mine.post_json(job_path(jobs[i]) + "/succeed", {{"result", "in time?"}});
        if (r.status == 409) {
          // Lost to the watchdog: told so, with the state it left.
          EXPECT_EQ(r.json()["type"], "/problems/job-terminal");
          EXPECT_EQ(r.json()["state"], "failed");
        } else if (r.status != 200) {
          unexpected++;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(unexpected.load(), 0);
  for (const json& j : jobs) {
    // Whoever lost, the job is terminal soon (the watchdog takes those whose success lost).
    ASSERT_TRUE(eventually([&] { return c.get(job_path(j)).json()["finished_at"].is_string(); },
                           std::chrono::seconds(15)));
    auto hist = job_history(c, j);
    int terminal = 0;
    for (auto& e : hist) terminal += is_terminal_event(e);
    EXPECT_EQ(terminal, 1) << j["id"];
    EXPECT_TRUE(is_terminal_event(hist.back()));
    if (hist.back()["type"] == "failed") {
      EXPECT_EQ(hist.back()["data"]["error"]["code"], "heartbeat_timeout");
    }
  }
  EXPECT_TRUE(feed_is_gapless_and_chained(c));
}

TEST(Race, ConcurrentCreatesGetDistinctIdsAndGaplessSeqs) {
  const std::string type = unique_type("race-create");
  std::mutex mu;
  std::set<std::string> ids;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      HttpClient mine(srv().url());
      for (int i = 0; i < 25; ++i) {
        auto r = mine.post_json("/v1/jobs", {{"type", type}});
        ASSERT_EQ(r.status, 202) << r.body;
        std::lock_guard lock(mu);
        ids.insert(r.json()["id"].get<std::string>());
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(ids.size(), 200u);
  HttpClient c(srv().url());
  EXPECT_EQ(c.get("/v1/jobs?limit=1000&type=" + type).json()["jobs"].size(), 200u);
  EXPECT_TRUE(feed_is_gapless_and_chained(c));
}

}  // namespace
}  // namespace jobstate::testing
