// The real `jobstate serve` process: SIGKILL in the middle of a load and a
// restart on the same directory lose nothing that was acknowledged; SIGTERM
// and SIGINT stop it cleanly (exit 0, parked long-polls answered, writes
// acknowledged before the signal kept) and it starts again on the same data.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "api_test_server.h"
#include "store/hash_chain.h"
#include "serve_process.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

// What clients were told: job id → highest acknowledged version, and the
// event types of its acknowledged history (created, started, heartbeat..., succeeded).
struct Acks {
  std::mutex mu;
  std::map<std::string, uint64_t> version;
  void ack(const std::string& id, uint64_t v) {
    std::lock_guard lock(mu);
    auto& cur = version[id];
    cur = std::max(cur, v);
  }
};

const char* const kLifeTypes[] = {"created", "started", "heartbeat", "heartbeat", "succeeded"};

// One worker's loop: create, start, two heartbeats, succeed; records every 2xx.
void load(const std::string& url, Acks& acks, std::atomic<bool>& stop, std::atomic<int>& acked) {
  HttpClient c(url);
  c.set_timeout_s(5);
  while (!stop.load()) {
    auto r = c.post_json("/v1/jobs", {{"type", "crash-load"}, {"params", {{"n", 1}}}});
    if (r.status != 202) {
      if (r.status == 0 || r.status == 503) return;  // the server is gone or stopping
      ADD_FAILURE() << "create: " << r.status << " " << r.body;
      return;
    }
    const std::string id = r.json()["id"];
    acks.ack(id, r.json()["version"]);
    acked++;
    for (const char* action : {"start", "heartbeat", "heartbeat", "succeed"}) {
      auto t = c.post("/v1/jobs/" + id + "/" + action);
      if (t.status != 200) {
        if (t.status == 0 || t.status == 503) return;
        ADD_FAILURE() << action << ": " << t.status << " " << t.body;
        return;
      }
      acks.ack(id, t.json()["version"]);
      acked++;
    }
  }
}

// Every acknowledged job and version is in the restarted server, with the
// history the workers wrote; the feed is gapless and the chain verifies.
void expect_everything_acknowledged_is_there(const std::string& url, Acks& acks) {
  HttpClient c(url);
  for (auto& [id, v] : acks.version) {
    auto r = c.get("/v1/jobs/" + id);
    ASSERT_EQ(r.status, 200) << "acknowledged job " << id << " is missing: " << r.body;
    json j = r.json();
    EXPECT_GE(j["version"].get<uint64_t>(), v) << id;
    json events = c.get("/v1/jobs/" + id + "/events").json()["events"];
    ASSERT_GE(events.size(), v) << id;
    for (size_t k = 0; k < events.size(); ++k) {
      ASSERT_LT(k, std::size(kLifeTypes));
      EXPECT_EQ(events[k]["type"], kLifeTypes[k]) << id << " version " << k + 1;
    }
    if (v == 5) {
      EXPECT_EQ(j["state"], "succeeded") << id;
    }
  }
  const uint64_t head = c.get("/v1/audit/head").json()["seq"];
  uint64_t after = 0;
  std::string previous(kGenesisHash);
  for (int pages = 0; after < head && pages < 100000; ++pages) {
    json page = c.get("/v1/events?limit=1000&after_seq=" + std::to_string(after)).json();
    ASSERT_FALSE(page["events"].empty());
    for (auto& e : page["events"]) {
      ASSERT_EQ(e["seq"], after + 1) << "gap in the log after a crash";
      json without = e;
      without.erase("hash");
      ASSERT_EQ(chain_hash(previous, without.dump()), e["hash"].get<std::string>()) << "chain broken at " << e["seq"];
      previous = e["hash"];
      after = e["seq"];
    }
  }
  EXPECT_EQ(after, head);
  EXPECT_EQ(c.get("/v1/audit/head").json()["hash"], previous);
}

TEST(ServeProcess, SigkillMidLoadLosesNothingAcknowledged) {
  TempDir dir;
  const std::string data = dir.sub("data");
  Acks acks;
  for (int round = 0; round < 2; ++round) {
    ServeProcess p(data, dir.sub("serve-" + std::to_string(round) + ".out"));
    ASSERT_FALSE(p.url().empty()) << p.output();
    // What earlier rounds acknowledged survived the kill.
    expect_everything_acknowledged_is_there(p.url(), acks);

    std::atomic<bool> stop{false};
    std::atomic<int> acked{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < 4; ++t) workers.emplace_back([&] { load(p.url(), acks, stop, acked); });
    // Kill it while the workers are busy: after some writes (a different
    // number each run), never at a quiet moment.
    const int kill_after = 100 + static_cast<int>(std::random_device{}() % 200);
    ASSERT_TRUE(eventually([&] { return acked.load() >= kill_after; }, std::chrono::seconds(30)))
        << "only " << acked.load() << " writes acknowledged";
    p.signal(SIGKILL);
    auto status = p.wait_exit(std::chrono::seconds(10));
    stop = true;
    for (auto& w : workers) w.join();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFSIGNALED(*status));
  }
  ServeProcess last(data, dir.sub("serve-last.out"));
  ASSERT_FALSE(last.url().empty()) << last.output();
  EXPECT_GE(acks.version.size(), 30u);
  expect_everything_acknowledged_is_there(last.url(), acks);
  last.signal(SIGTERM);
  auto status = last.wait_exit(std::chrono::seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << last.output();
}

TEST(ServeProcess, SigtermStopsCleanlyAnswersWaitersAndKeepsAcknowledgedWrites) {
  TempDir dir;
  const std::string data = dir.sub("data");
  Acks acks;
  std::string waited_id;
  {
    ServeProcess p(data, dir.sub("serve-1.out"));
    ASSERT_FALSE(p.url().empty()) << p.output();
    HttpClient c(p.url());
    json j = create_job(c, "sigterm");
    act(c, j, "start");
    waited_id = j["id"];
    acks.ack(waited_id, 2);

    // A parked long-poll, and writers busy when the signal arrives.
    auto waiting = std::async(std::launch::async, [&] {
      HttpClient w(p.url());
      w.set_timeout_s(60);
      return w.get("/v1/jobs/" + waited_id + "/wait?timeout_s=50");
    });
    std::atomic<bool> stop{false};
    std::atomic<int> acked{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < 3; ++t) workers.emplace_back([&] { load(p.url(), acks, stop, acked); });
    ASSERT_TRUE(eventually([&] { return acked.load() >= 60; }, std::chrono::seconds(30)));

    p.signal(SIGTERM);
    auto status = p.wait_exit(std::chrono::seconds(30));
    stop = true;
    for (auto& w : workers) w.join();
    ASSERT_TRUE(status.has_value()) << "did not exit after SIGTERM";
    ASSERT_TRUE(WIFEXITED(*status)) << "killed by signal " << WTERMSIG(*status);
    EXPECT_EQ(WEXITSTATUS(*status), 0) << p.output();
    EXPECT_NE(p.output().find("jobstate stopped"), std::string::npos) << p.output();

    // The parked request got an answer, not a dropped connection.
    ASSERT_EQ(waiting.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    HttpResponse w = waiting.get();
    EXPECT_EQ(w.status, 200) << w.curl_error << " " << w.body;
    if (w.status == 200) {
      EXPECT_EQ(w.json()["id"], waited_id);
    }
  }
  // Starts again on the same data with everything acknowledged.
  ServeProcess again(data, dir.sub("serve-2.out"));
  ASSERT_FALSE(again.url().empty()) << again.output();
  expect_everything_acknowledged_is_there(again.url(), acks);
  HttpClient c(again.url());
  EXPECT_EQ(c.get("/v1/jobs/" + waited_id).json()["state"], "running");
  EXPECT_EQ(c.get("/readyz").status, 200);
  // SIGINT stops it the same way.
  again.signal(SIGINT);
  auto status = again.wait_exit(std::chrono::seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << again.output();
}

TEST(ServeProcess, ASecondServerOnTheSameDirectoryIsRefused) {
  TempDir dir;
  ServeProcess first(dir.sub("data"), dir.sub("serve-1.out"));
  ASSERT_FALSE(first.url().empty()) << first.output();
  ServeProcess second(dir.sub("data"), dir.sub("serve-2.out"));
  EXPECT_TRUE(second.url().empty());
  auto status = second.wait_exit(std::chrono::seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_FALSE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << second.output();
  // The first one is unaffected.
  HttpClient c(first.url());
  EXPECT_EQ(c.get("/healthz").status, 200);
  first.signal(SIGTERM);
  auto st = first.wait_exit(std::chrono::seconds(30));
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
}

// Without tokens anyone who reaches the server may change any job: a
// non-loopback --listen is refused before anything opens, with one line that
// names the way out. (Nothing here binds beyond loopback: the refusal comes
// first.)
TEST(ServeProcess, ANonLoopbackListenWithoutTokensIsRefused) {
  TempDir dir;
  for (const char* listen : {"0.0.0.0:0", "192.0.2.1:0", "[::]:0", "example.com:0", "127.0.0.1.example:0",
                             "jobs.localhost:0", "localhost.:0"}) {
    const std::string cmd = std::string(JOBSTATE_BIN) + " serve --data-dir " + dir.sub("data") +
                            " --listen " + listen + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    const int status = ::pclose(p);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << listen << ": " << out;
    EXPECT_NE(out.find("not a loopback address"), std::string::npos) << out;
    EXPECT_NE(out.find("--insecure-no-auth"), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
    EXPECT_FALSE(std::filesystem::exists(dir.sub("data"))) << "the store was opened for " << listen;
  }
}

}  // namespace
}  // namespace jobstate::testing
