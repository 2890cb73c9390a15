// GET /metrics on a real `jobstate serve` (docs/operations.md, "Metrics"):
// the exposition passes promtool, the figures follow what clients did, the
// job gauges agree with the projection after a SIGKILL and a restart, the
// watchdog's failures are counted by code with their lag, and the endpoint
// needs a token once tokens exist (unless --open-metrics); and a real
// Prometheus scrapes it. On RocksDB, and on PostgreSQL in pg.api_metrics_test.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "child_process.h"
#include "http_client.h"
#include "postgres_fixture.h"
#include "serve_process.h"
#include "test_util.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

// The value of one sample ("name{labels}" exactly as rendered), or nullopt.
std::optional<double> sample(const std::string& text, const std::string& series) {
  size_t at = 0;
  while ((at = text.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') return std::stod(text.substr(at + series.size() + 1));
    at += series.size();
  }
  return std::nullopt;
}

class MetricsTest : public ::testing::Test {
 protected:
  MetricsTest() {
    if (testing_postgres()) postgres_ = std::make_unique<TestPostgres>();
  }

  std::unique_ptr<ServeProcess> serve(std::vector<std::string> flags = {}) {
    flags.insert(flags.end(), {"--log-level", "warn"});
    ServeOptions o{.data_dir = dir_.sub("data"),
                   .output_path = dir_.sub("serve-" + std::to_string(++serves_) + ".log"),
                   .flags = flags};
    if (postgres_) o.store = postgres_->uri();
    auto p = std::make_unique<ServeProcess>(std::move(o));
    EXPECT_FALSE(p->url().empty()) << p->output();
    return p;
  }

  // GET /metrics, checked by promtool; the body.
  std::string scrape(const std::string& url, const std::vector<std::string>& headers = {}) {
    HttpClient c(url);
    auto r = c.get("/metrics", headers);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    const std::string file = dir_.sub("metrics-" + std::to_string(++scrapes_) + ".txt");
    std::ofstream(file) << r.body;
    auto check = run_process({"/bin/sh", "-c", "promtool check metrics < " + file});
    EXPECT_EQ(check.status, 0) << "promtool check metrics:\n" << check.out << check.err << "\n" << r.body;
    return r.body;
  }

  TempDir dir_;
  std::unique_ptr<TestPostgres> postgres_;
  int serves_ = 0, scrapes_ = 0;
};

std::string create(HttpClient& c, const std::string& type, int heartbeat_timeout_s = 3600) {
  auto r = c.post_json("/v1/jobs", {{"type", type}, {"heartbeat_timeout_s", heartbeat_timeout_s}},
                       {"Content-Type: application/json"});
  EXPECT_EQ(r.status, 202) << r.body;
  return r.json().value("id", "");
}

std::string start(HttpClient& c, const std::string& id) {
  auto r = c.post_json("/v1/jobs/" + id + "/start", {{"worker", "w1"}}, {"Content-Type: application/json"});
  EXPECT_EQ(r.status, 200) << r.body;
  return r.header("Job-Lease");
}

TEST_F(MetricsTest, PassesPromtoolAndCountsWhatClientsDid) {
  auto s = serve();
  HttpClient c(s->url());
  const std::string before = scrape(s->url());
  // Declared before anything happened: a scraper sees every family at once.
  for (const char* family :
       {"# TYPE jobstate_http_requests_total counter", "# TYPE jobstate_http_request_duration_seconds histogram",
        "# TYPE jobstate_events_appended_total counter", "# TYPE jobstate_store_fsync_seconds histogram",
        "# TYPE jobstate_store_batch_commands histogram", "# TYPE jobstate_jobs gauge",
        "# TYPE jobstate_long_polls_parked gauge", "# TYPE jobstate_watchdog_failures_total counter",
        "# TYPE jobstate_watchdog_detection_lag_seconds histogram"})
    EXPECT_NE(before.find(family), std::string::npos) << family << "\n" << before;
  if (!postgres_) {
    for (const char* figure : {"jobstate_rocksdb_live_data_bytes", "jobstate_rocksdb_pending_compaction_bytes",
                               "jobstate_rocksdb_write_stopped", "jobstate_store_free_bytes"})
      EXPECT_TRUE(sample(before, figure)) << figure << "\n" << before;
  } else {
    EXPECT_TRUE(sample(before, "jobstate_postgres_pool_max_connections")) << before;
  }

  for (int i = 0; i < 3; ++i) create(c, "email");
  const std::string report = create(c, "report");
  const std::string lease = start(c, report);
  auto hb = c.post_json("/v1/jobs/" + report + "/heartbeat", {{"progress", {{"fraction", 0.5}}}},
                        {"Content-Type: application/json", "Job-Lease: " + lease});
  EXPECT_EQ(hb.status, 200) << hb.body;
  EXPECT_EQ(c.get("/v1/jobs/" + report).status, 200);
  EXPECT_EQ(c.get("/v1/jobs/00000000-0000-4000-8000-000000000000").status, 404);
  EXPECT_EQ(c.get("/no/such/path").status, 404);

  const std::string m = scrape(s->url());
  EXPECT_EQ(sample(m, R"(jobstate_http_requests_total{method="POST",route="/v1/jobs",code="202"})"), 4) << m;
  EXPECT_EQ(sample(m, R"(jobstate_http_requests_total{method="POST",route="/v1/jobs/{id}/heartbeat",code="200"})"), 1);
  EXPECT_EQ(sample(m, R"(jobstate_http_requests_total{method="GET",route="/v1/jobs/{id}",code="200"})"), 1);
  EXPECT_EQ(sample(m, R"(jobstate_http_requests_total{method="GET",route="/v1/jobs/{id}",code="404"})"), 1);
  EXPECT_EQ(sample(m, R"(jobstate_http_requests_total{method="GET",route="unmatched",code="404"})"), 1)
      << "an unknown path is one label value, whatever it was";
  EXPECT_EQ(sample(m, R"(jobstate_http_request_duration_seconds_count{method="POST",route="/v1/jobs"})"), 4);
  EXPECT_EQ(sample(m, R"(jobstate_events_appended_total{type="created"})"), 4);
  EXPECT_EQ(sample(m, R"(jobstate_events_appended_total{type="started"})"), 1);
  EXPECT_EQ(sample(m, R"(jobstate_events_appended_total{type="heartbeat"})"), 1);
  EXPECT_EQ(sample(m, R"(jobstate_jobs{state="queued",type="email"})"), 3);
  EXPECT_EQ(sample(m, R"(jobstate_jobs{state="running",type="report"})"), 1);
  EXPECT_FALSE(sample(m, R"(jobstate_jobs{state="queued",type="report"})")) << "zero counts are left out";
  // Every write was one durable batch or fewer: at least one, at most six.
  auto batches = sample(m, "jobstate_store_fsync_seconds_count");
  ASSERT_TRUE(batches);
  EXPECT_GE(*batches, 1);
  EXPECT_LE(*batches, 6);
  EXPECT_EQ(sample(m, "jobstate_store_batch_commands_sum"), 6);
  EXPECT_EQ(sample(m, "jobstate_log_head_seq"), 6);
  EXPECT_EQ(sample(m, "jobstate_store_writable"), 1);
}

TEST_F(MetricsTest, JobGaugesAgreeWithTheProjectionAfterAKillAndARestart) {
  std::map<std::string, double> counted;
  {
    auto s = serve();
    HttpClient c(s->url());
    for (int i = 0; i < 5; ++i) create(c, "a");
    for (int i = 0; i < 3; ++i) start(c, create(c, "b"));
    const std::string cancelled = create(c, "a");
    auto cancel = c.post_json("/v1/jobs/" + cancelled + "/cancel", {{"reason", "test"}},
                              {"Content-Type: application/json"});
    EXPECT_EQ(cancel.status, 200) << cancel.body;
    const std::string m = scrape(s->url());
    for (const char* series : {R"(jobstate_jobs{state="queued",type="a"})", R"(jobstate_jobs{state="running",type="b"})",
                               R"(jobstate_jobs{state="cancelled",type="a"})"}) {
      auto v = sample(m, series);
      ASSERT_TRUE(v) << series << "\n" << m;
      counted[series] = *v;
    }
    EXPECT_EQ(counted[R"(jobstate_jobs{state="queued",type="a"})"], 5);
    EXPECT_EQ(counted[R"(jobstate_jobs{state="running",type="b"})"], 3);
    EXPECT_EQ(counted[R"(jobstate_jobs{state="cancelled",type="a"})"], 1);
    s->signal(SIGKILL);
  }
  auto again = serve();
  const std::string m = scrape(again->url());
  for (const auto& [series, v] : counted) EXPECT_EQ(sample(m, series), v) << series << "\n" << m;
  // And the list the API serves says the same.
  HttpClient c(again->url());
  auto queued = c.get("/v1/jobs?state=queued&type=a&limit=100");
  ASSERT_EQ(queued.status, 200) << queued.body;
  EXPECT_EQ(queued.json()["jobs"].size(), 5u);
}

TEST_F(MetricsTest, WatchdogFailuresAreCountedByCodeWithTheirDetectionLag) {
  auto s = serve();
  HttpClient c(s->url());
  const std::string id = create(c, "silent", /*heartbeat_timeout_s=*/1);
  start(c, id);
  // The watchdog fails it about a second later (bounded wait).
  for (int i = 0; i < 100 && c.get("/v1/jobs/" + id).json().value("state", "") != "failed"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(c.get("/v1/jobs/" + id).json().value("state", ""), "failed");
  const std::string m = scrape(s->url());
  EXPECT_EQ(sample(m, R"(jobstate_watchdog_failures_total{code="heartbeat_timeout"})"), 1) << m;
  EXPECT_EQ(sample(m, "jobstate_watchdog_detection_lag_seconds_count"), 1);
  auto lag = sample(m, "jobstate_watchdog_detection_lag_seconds_sum");
  ASSERT_TRUE(lag);
  EXPECT_GE(*lag, 0);
  EXPECT_LT(*lag, 5) << "the watchdog sweeps every 200 ms";
  EXPECT_EQ(sample(m, R"(jobstate_events_appended_total{type="failed"})"), 1);
}

TEST_F(MetricsTest, NeedsAReaderTokenOnceTokensExistUnlessOpened) {
  const std::string tokens = dir_.sub("tokens.json");
  auto added = run_process({JOBSTATE_BIN, "token", "add", "--tokens", tokens, "--role", "reader", "--name", "prom"});
  ASSERT_EQ(added.status, 0) << added.err;
  // The token is alone on the last line.
  std::string token = added.out;
  while (!token.empty() && token.back() == '\n') token.pop_back();
  token = token.substr(token.rfind('\n') + 1);
  ASSERT_EQ(token.rfind("jst_", 0), 0u) << added.out;
  {
    auto s = serve({"--tokens", tokens});
    HttpClient c(s->url());
    auto r = c.get("/metrics");
    EXPECT_EQ(r.status, 401) << r.body;
    EXPECT_EQ(c.get("/metrics", {"Authorization: Bearer jst_wrong"}).status, 401);
    scrape(s->url(), {"Authorization: Bearer " + token});
    s->stop();
  }
  auto open = serve({"--tokens", tokens, "--open-metrics"});
  scrape(open->url());
  HttpClient c(open->url());
  EXPECT_EQ(c.get("/v1/jobs").status, 401) << "--open-metrics opens /metrics only";
}

// A loopback port for a helper server, from the block registry the
// PostgreSQL fixtures use (scripts/lib/local-pg.sh: below the ephemeral
// range, never handed to two tests at once); given back at scope exit.
class ReservedPort {
 public:
  explicit ReservedPort(std::string dir) : dir_(std::move(dir)) {
    auto r = run_process({"/bin/bash", "-c", ". " + lib() + " && reserve_ports \"$0\"", dir_});
    EXPECT_EQ(r.status, 0) << r.err;
    if (r.status == 0) port_ = static_cast<uint16_t>(std::stoi(r.out));
  }
  ~ReservedPort() { run_process({"/bin/bash", "-c", ". " + lib() + " && release_ports \"$0\"", dir_}); }
  uint16_t port() const { return port_; }

 private:
  static std::string lib() { return std::string(JOBSTATE_SOURCE_DIR) + "/scripts/lib/local-pg.sh"; }
  std::string dir_;
  uint16_t port_ = 0;
};

// Debian's Prometheus, pointed at /metrics with a 1 s scrape interval,
// scrapes it: the target is up with no scrape error, and a PromQL query
// gives the job count the API gives.
TEST_F(MetricsTest, APrometheusScrapesIt) {
  auto s = serve();
  HttpClient c(s->url());
  for (int i = 0; i < 3; ++i) create(c, "report");
  ASSERT_EQ(c.get("/v1/jobs?type=report&state=queued").json()["jobs"].size(), 3u);

  std::filesystem::create_directories(dir_.sub("prometheus"));
  ReservedPort port(dir_.sub("prometheus"));
  ASSERT_NE(port.port(), 0);
  const std::string config = dir_.sub("prometheus.yml");
  std::ofstream(config) << "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
                           "scrape_configs:\n"
                           "  - job_name: jobstate\n"
                           "    static_configs: [{targets: ['"
                        << s->url().substr(std::string("http://").size()) << "']}]\n";
  const std::string api = "http://127.0.0.1:" + std::to_string(port.port()) + "/api/v1/";
  const pid_t pid = spawn_process({"prometheus", "--config.file=" + config,
                                   "--storage.tsdb.path=" + dir_.sub("prometheus/tsdb"),
                                   "--web.listen-address=127.0.0.1:" + std::to_string(port.port())},
                                  -1, dir_.sub("prometheus.log"));
  ASSERT_GT(pid, 0);
  ProcessGroupReaper reaper(pid);
  // Prometheus' HTTP API through curl (not HttpClient: these answers are not
  // jobstate's, and stay out of the contract log).
  auto api_get = [&](const std::vector<std::string>& args) {
    std::vector<std::string> cmd = {"curl", "-sS", "--max-time", "5", "-G"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    auto r = run_process(cmd);
    return r.status == 0 ? json::parse(r.out, nullptr, false) : json();
  };
  auto queued = [&] {
    json r = api_get({"--data-urlencode", R"(query=jobstate_jobs{state="queued",type="report"})", api + "query"});
    if (!r.is_object() || r.value("status", "") != "success" || r["data"]["result"].empty()) return std::string();
    return r["data"]["result"][0]["value"][1].get<std::string>();
  };
  // Bounded: Prometheus starts in about a second, then scrapes every second.
  std::string value;
  for (int i = 0; i < 150 && value.empty(); ++i) {
    value = queued();
    if (value.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(value, "3") << read_file(dir_.sub("prometheus.log"));
  // The target is up and its last scrape had no error (asked again while a
  // scrape under a sanitizer's load runs past the 1 s timeout; bounded).
  json targets;
  auto up = [&] {
    targets = api_get({api + "targets"});
    if (!targets.is_object() || targets["data"]["activeTargets"].size() != 1) return false;
    const json& t = targets["data"]["activeTargets"][0];
    return t.value("health", "") == "up" && t.value("lastError", "x").empty();
  };
  bool was_up = up();
  for (int i = 0; i < 60 && !was_up; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    was_up = up();
  }
  EXPECT_TRUE(was_up) << targets.dump() << "\n" << read_file(dir_.sub("prometheus.log"));
  terminate_process(pid, std::chrono::seconds(10));
}

}  // namespace
}  // namespace jobstate::testing
