// Several `jobstate serve` nodes on one PostgreSQL database (the postgres
// backend, issue 12): under 16 concurrent writers spread over two nodes every
// acknowledged event is in the log, seq is gapless and the chain verifies; a
// SIGKILL of one node mid-load loses nothing acknowledged and the other node
// keeps serving; a long-poll on one node wakes on a commit made through the
// other; and when the node leading the watchdog dies, the other takes over.
#include <gtest/gtest.h>

#include <mutex>
#include <set>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "http_client.h"
#include "ops_test_util.h"
#include "pgstore/pg.h"
#include "postgres_fixture.h"
#include "serve_process.h"
#include "service/open_store.h"
#include "test_util.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

// One acknowledged write: the job's version it created.
struct Acked {
  std::string job_id;
  uint64_t version;
};

class PgMultiNodeTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServeProcess> node(const std::string& name,
                                     std::vector<std::string> flags = {"--log-level", "warn"}) {
    ServeOptions o;
    o.store = pg_.uri();
    o.output_path = dir_.sub(name + ".log");
    o.flags = std::move(flags);
    auto p = std::make_unique<ServeProcess>(o);
    EXPECT_FALSE(p->url().empty()) << p->output();
    return p;
  }

  // Every acknowledged write is in the log as that job's event of that
  // version; the log is gapless and its chain verifies from the genesis hash.
  void expect_log_holds(const std::vector<Acked>& acked) {
    SystemClock clock;
    StoreOptions so;
    so.location = pg_.uri();
    so.clock = &clock;
    auto store = open_store(so);
    ASSERT_OK(store);
    uint64_t events = 0;
    EXPECT_TRUE(log_is_intact((*store)->log(), &events));
    std::map<std::string, uint64_t> newest;
    Status s = (*store)->log().scan(0, UINT64_MAX, [&](const StoredEventView& v) {
      uint64_t& n = newest[v.job_id.to_string()];
      n = std::max(n, v.version);
      return true;
    });
    ASSERT_OK(s);
    size_t missing = 0;
    for (const Acked& a : acked)
      if (newest[a.job_id] < a.version && ++missing <= 5)
        ADD_FAILURE() << "acknowledged " << a.job_id << " version " << a.version << " is not in the log";
    EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged writes";
    EXPECT_GE(events, acked.size());
  }

  // `threads` writers, each creating `jobs` jobs and starting and
  // heartbeating each; request i of a writer goes to nodes[i % 2] unless that
  // node stopped answering. Returns what was acknowledged.
  static std::vector<Acked> write_load(const std::vector<std::string>& urls, int threads, int jobs,
                                       std::atomic<int>* progress = nullptr) {
    std::mutex mu;
    std::vector<Acked> acked;
    std::vector<std::thread> writers;
    for (int t = 0; t < threads; ++t) {
      writers.emplace_back([&, t] {
        std::vector<std::unique_ptr<HttpClient>> clients;
        for (auto& u : urls) clients.push_back(std::make_unique<HttpClient>(u));
        std::vector<bool> dead(urls.size(), false);
        int request = t;
        // Sends to the next node that still answers. A request that got no
        // answer at all may or may not have committed: it is not counted,
        // and its job is left alone (`lost`), since repeating a start or a
        // heartbeat elsewhere would depend on what happened to it.
        bool lost = false;
        auto send = [&](const std::string& path, const json& body) -> std::optional<json> {
          for (size_t tries = 0; tries < urls.size(); ++tries) {
            const size_t n = static_cast<size_t>(request++) % urls.size();
            if (dead[n]) continue;
            auto r = clients[n]->post_json(path, body);
            if (r.status == 0) {
              dead[n] = true;
              lost = true;
              return std::nullopt;
            }
            if (r.status / 100 != 2) {
              ADD_FAILURE() << path << ": " << r.status << " " << r.body;
              return std::nullopt;
            }
            return r.json();
          }
          return std::nullopt;
        };
        for (int j = 0; j < jobs; ++j) {
          lost = false;
          auto created = send("/v1/jobs", {{"type", "load"}, {"heartbeat_timeout_s", 600}});
          if (!created) continue;
          const std::string id = (*created)["id"];
          std::vector<Acked> mine = {{id, (*created)["version"].get<uint64_t>()}};
          const std::string base = "/v1/jobs/" + id;
          if (auto s = send(base + "/start", {{"worker", "w" + std::to_string(t)}}))
            mine.push_back({id, (*s)["version"].get<uint64_t>()});
          for (int h = 0; h < 3 && !lost; ++h)
            if (auto s = send(base + "/heartbeat", {{"progress", {{"fraction", h / 3.0}}}}))
              mine.push_back({id, (*s)["version"].get<uint64_t>()});
          std::lock_guard lock(mu);
          acked.insert(acked.end(), mine.begin(), mine.end());
          if (progress) ++*progress;
        }
      });
    }
    for (auto& w : writers) w.join();
    return acked;
  }

  TestPostgres pg_;
  TempDir dir_;
};

TEST_F(PgMultiNodeTest, SixteenWritersOnTwoNodesLeaveAGaplessVerifiedLog) {
  auto a = node("a"), b = node("b");
  const auto acked = write_load({a->url(), b->url()}, 16, 12);
  EXPECT_EQ(acked.size(), 16u * 12 * 5);
  expect_log_holds(acked);
  // Both nodes publish the same head.
  HttpClient ca(a->url()), cb(b->url());
  EXPECT_EQ(ca.get("/v1/audit/head").json(), cb.get("/v1/audit/head").json());
}

TEST_F(PgMultiNodeTest, ASigkilledNodeLosesNothingAcknowledgedAndTheOtherKeepsServing) {
  auto a = node("a"), b = node("b");
  std::atomic<int> jobs_done{0};
  std::thread killer([&] {
    for (int i = 0; i < 1000 && jobs_done.load() < 40; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    a->signal(SIGKILL);
  });
  const auto acked = write_load({a->url(), b->url()}, 16, 10, &jobs_done);
  killer.join();
  EXPECT_GT(acked.size(), 0u);
  expect_log_holds(acked);
  // The survivor takes writes and reads.
  HttpClient cb(b->url());
  auto created = cb.post_json("/v1/jobs", {{"type", "after"}});
  ASSERT_EQ(created.status, 202) << created.body;
  EXPECT_EQ(cb.get("/v1/jobs/" + created.json()["id"].get<std::string>()).status, 200);
}

TEST_F(PgMultiNodeTest, ALongPollOnOneNodeWakesOnACommitThroughTheOther) {
  auto a = node("a"), b = node("b");
  HttpClient ca(a->url());
  auto created = ca.post_json("/v1/jobs", {{"type", "wake"}});
  ASSERT_EQ(created.status, 202);
  const std::string id = created.json()["id"];
  ASSERT_EQ(ca.post_json("/v1/jobs/" + id + "/start", {{"worker", "w"}}).status, 200);
  HttpResponse waited;
  std::thread waiter([&] {
    HttpClient cb(b->url());
    cb.set_timeout_s(60);
    waited = cb.get("/v1/jobs/" + id + "/wait?timeout_s=30");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let it park on b
  ASSERT_EQ(ca.post_json("/v1/jobs/" + id + "/succeed", {{"result", {{"n", 1}}}}).status, 200);
  waiter.join();
  ASSERT_EQ(waited.status, 200) << waited.body;
  // Answered by the commit, not by the 30 s timeout (which shows "running").
  EXPECT_EQ(waited.json()["state"], "succeeded");
  EXPECT_EQ(waited.json()["result"], json({{"n", 1}}));

  // /v1/events?wait_s= on b wakes on a's next commit too.
  HttpClient cb(b->url());
  const uint64_t head = cb.get("/v1/audit/head").json()["seq"];
  HttpResponse events;
  std::thread events_waiter([&] {
    HttpClient c(b->url());
    c.set_timeout_s(60);
    events = c.get("/v1/events?after_seq=" + std::to_string(head) + "&wait_s=30");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(ca.post_json("/v1/jobs", {{"type", "next"}}).status, 202);
  events_waiter.join();
  ASSERT_EQ(events.status, 200) << events.body;
  ASSERT_FALSE(events.json()["events"].empty()) << events.body;
  EXPECT_EQ(events.json()["events"][0]["seq"], head + 1);
}

TEST_F(PgMultiNodeTest, WhenTheWatchdogsNodeDiesTheOtherTakesOver) {
  const std::vector<std::string> flags = {"--log-level", "info", "--watchdog-interval-ms", "100"};
  auto a = node("a", flags);
  // a leads (it started first and took the lock); b waits for the lead.
  for (int i = 0; i < 100 && a->output().find("this node leads the sweep") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_NE(a->output().find("this node leads the sweep"), std::string::npos) << a->output();
  auto b = node("b", flags);
  for (int i = 0; i < 100 && b->output().find("another node leads") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_NE(b->output().find("another node leads the sweep"), std::string::npos) << b->output();

  a->signal(SIGKILL);
  HttpClient cb(b->url());
  auto created = cb.post_json("/v1/jobs", {{"type", "silent"}, {"heartbeat_timeout_s", 1}});
  ASSERT_EQ(created.status, 202);
  const std::string id = created.json()["id"];
  ASSERT_EQ(cb.post_json("/v1/jobs/" + id + "/start", {{"worker", "gone"}}).status, 200);
  json job;
  for (int i = 0; i < 300; ++i) {  // at most 30 s
    job = cb.get("/v1/jobs/" + id).json();
    if (job["state"] != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(job["state"], "failed") << job.dump();
  EXPECT_EQ(job["error"]["code"], "heartbeat_timeout") << job.dump();
  // An info line: out within the second (docs/operations.md, "Logs").
  for (int i = 0; i < 100 && b->output().find("this node leads the sweep") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_NE(b->output().find("this node leads the sweep"), std::string::npos) << b->output();
}

// `jobstate verify --store` and `replay --store` read a live postgres store:
// verify passes and names the head; replay prints the API's event lines,
// whose hashes Python recomputes; an edited event is named by its seq.
TEST_F(PgMultiNodeTest, VerifyAndReplayReadAPostgresStore) {
  auto a = node("a"), b = node("b");
  const auto acked = write_load({a->url(), b->url()}, 4, 5);
  HttpClient ca(a->url());
  const json head = ca.get("/v1/audit/head").json();

  auto verified = run_jobstate({"verify", "--store", pg_.uri()});
  ASSERT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_NE(verified.out.find("ok: " + std::to_string(head["seq"].get<uint64_t>()) +
                              " events, 20 jobs"),
            std::string::npos)
      << verified.out;
  EXPECT_NE(verified.out.find(head["hash"].get<std::string>()), std::string::npos);

  auto replayed = run_jobstate({"replay", "--store", pg_.uri()});
  ASSERT_EQ(replayed.exit_code, 0) << replayed.err;
  {
    std::ofstream out(dir_.sub("replay.jsonl"));
    out << replayed.out;
  }
  const std::string cmd =
      "python3 -c 'import hashlib,json,sys\n"
      "prev, n = \"0\" * 64, 0\n"
      "for line in open(sys.argv[1], encoding=\"utf-8\"):\n"
      "    e = json.loads(line); h = e.pop(\"hash\")\n"
      "    c = json.dumps(e, sort_keys=True, separators=(\",\", \":\"), ensure_ascii=False)\n"
      "    prev = hashlib.sha256((prev + c).encode()).hexdigest(); n += 1\n"
      "    assert prev == h, (e[\"seq\"], prev, h)\n"
      "print(n, prev)' " +
      dir_.sub("replay.jsonl") + " > " + dir_.sub("python.out") + " 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << read_file(dir_.sub("python.out"));
  EXPECT_EQ(read_file(dir_.sub("python.out")),
            std::to_string(head["seq"].get<uint64_t>()) + " " + head["hash"].get<std::string>() +
                "\n");

  // A stored event's time moved by 1 ms: verify names its seq.
  auto c = pg::Connection::open(pg_.uri());
  ASSERT_OK(c);
  ASSERT_OK((*c)->exec("UPDATE jobstate_events SET at_ms = at_ms + 1 WHERE seq = 7"));
  verified = run_jobstate({"verify", "--store", pg_.uri()});
  EXPECT_EQ(verified.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(verified, "seq 7")) << verified.err;

  // Bad input: one line, no crash.
  auto bad = run_jobstate({"verify", "--store", "not-a-uri"});
  EXPECT_TRUE(is_one_line_error(bad, "postgresql://")) << bad.err;
}

// Claims on two nodes: the head row's lock serialises every node's write
// cycle, so no two claimers get one job; a claim parked on one node wakes on
// a job created through the other.
TEST_F(PgMultiNodeTest, ClaimersOnTwoNodesNeverShareAJobAndWakeAcrossNodes) {
  auto a = node("a"), b = node("b");
  HttpClient ca(a->url());
  constexpr int kJobs = 40;
  for (int i = 0; i < kJobs; ++i) ASSERT_EQ(ca.post_json("/v1/jobs", {{"type", "claimed"}}).status, 202);
  std::mutex mu;
  std::vector<std::string> got;
  std::vector<std::thread> claimers;
  for (int t = 0; t < 8; ++t)
    claimers.emplace_back([&, t] {
      HttpClient c(t % 2 ? b->url() : a->url());
      for (int k = 0; k < kJobs; ++k) {  // bounded
        auto r = c.post_json("/v1/claims", {{"types", {"claimed"}}, {"worker", "w" + std::to_string(t)}});
        if (r.status != 200) break;
        std::lock_guard<std::mutex> lock(mu);
        got.push_back(r.json()["id"]);
      }
    });
  for (auto& t : claimers) t.join();
  EXPECT_EQ(got.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), got.size()) << "a job claimed twice";

  HttpResponse parked;
  std::thread waiter([&] {
    HttpClient cb(b->url());
    cb.set_timeout_s(60);
    parked = cb.post_json("/v1/claims", {{"types", {"later"}}, {"worker", "wb"}, {"wait_s", 30}});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let it park on b
  auto created = ca.post_json("/v1/jobs", {{"type", "later"}});
  ASSERT_EQ(created.status, 202);
  waiter.join();
  ASSERT_EQ(parked.status, 200) << parked.body;
  EXPECT_EQ(parked.json()["id"], created.json()["id"]);
  EXPECT_FALSE(parked.header("Job-Lease").empty());
}

// The schema is created on first use and versioned; a node refuses, with one
// line and before serving, a database whose schema is newer than it knows.
TEST_F(PgMultiNodeTest, ANodeRefusesASchemaNewerThanItKnows) {
  {
    auto a = node("a");  // creates the schema (version 2)
  }
  auto c = pg::Connection::open(pg_.uri());
  ASSERT_OK(c);
  auto v = (*c)->exec("SELECT max(version) FROM jobstate_schema");
  ASSERT_OK(v);
  EXPECT_EQ(v->i64(0, 0), 2);
  ASSERT_OK((*c)->exec("INSERT INTO jobstate_schema VALUES (3)"));
  ServeOptions o;
  o.store = pg_.uri();
  o.output_path = dir_.sub("newer.log");
  ServeProcess refused(o);
  EXPECT_TRUE(refused.url().empty());
  auto status = refused.wait_exit(std::chrono::seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_NE(WEXITSTATUS(*status), 0);
  EXPECT_NE(refused.output().find("schema version 3, newer than this jobstate knows (2)"),
            std::string::npos)
      << refused.output();
}

}  // namespace
}  // namespace jobstate::testing
