// The examples, exercised as a user would: examples/report_service (an HTTP
// service that triggers long tasks through the client library, polled until
// done) and examples/shell/nightly-export.sh (a script wrapped in
// `jobstate run`), both against a real `jobstate serve`.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "jobstate/client.h"
#include "tests/client_test_support.h"

namespace jobstate::client {
namespace {

using jobstate::testing::eventually;
using jobstate::testing::read_file;
using jobstate::testing::run_process;
using jobstate::testing::ServerProcess;
using jobstate::testing::spawn_process;
using jobstate::testing::TempDir;
using nlohmann::json;
using std::chrono::seconds;

// <build>/app/jobstate → <build>/examples/report_service
std::string report_service_binary() {
  return std::filesystem::path(JOBSTATE_BIN).parent_path().parent_path() / "examples" /
         "report_service";
}

std::string shell_example(const std::string& name) {
  return std::string(JOBSTATE_SOURCE_DIR) + "/examples/shell/" + name;
}

// The example service as a child process.
class ReportService {
 public:
  ReportService(const std::string& jobstate_url, const TempDir& dir) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = spawn_process({report_service_binary(), "--jobstate", jobstate_url, "--listen",
                          "127.0.0.1:0", "--page-ms", "50"},
                         fds[1], dir.sub("report_service.err"));
    close(fds[1]);
    std::string text;
    const auto deadline = jobstate::testing::SteadyClock::now() + seconds(30);
    while (text.find('\n') == std::string::npos &&
           jobstate::testing::SteadyClock::now() < deadline) {
      pollfd p{fds[0], POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[256];
      ssize_t n = read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    close(fds[0]);
    auto at = text.find("http://");
    if (at != std::string::npos) url_ = text.substr(at, text.find(' ', at) - at);
  }
  ~ReportService() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    if (!jobstate::testing::wait_for_exit(pid_, seconds(30))) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  const std::string& url() const { return url_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string url_;
};

// A minimal HTTP client for the example service (it is not jobstate, so
// the jobstate Client does not apply): libcurl, JSON in and out.
struct HttpReply {
  long status = 0;
  json body;
};
size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}
HttpReply http(const std::string& method, const std::string& url, const std::string& body = "") {
  CURL* h = curl_easy_init();
  std::string text;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &text);
  if (method == "POST") {
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
  }
  HttpReply r;
  if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
  r.body = json::parse(text, nullptr, false);
  return r;
}

class ExamplesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    server_ = new ServerProcess(dir_->sub("data"));
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }
  void SetUp() override { ASSERT_FALSE(server_->url().empty()); }

  // Polls GET /reports/<id> until the job is terminal (bounded).
  json poll_until_done(const std::string& service, const std::string& id) {
    json last;
    eventually(
        [&] {
          auto r = http("GET", service + "/reports/" + id);
          if (r.status != 200) return false;
          last = r.body;
          const std::string state = last.value("state", "");
          return state == "succeeded" || state == "failed" || state == "cancelled";
        },
        seconds(60));
    return last;
  }

  static TempDir* dir_;
  static ServerProcess* server_;
};
TempDir* ExamplesTest::dir_ = nullptr;
ServerProcess* ExamplesTest::server_ = nullptr;

TEST_F(ExamplesTest, ReportServiceTriggersThenCallersPollToSuccess) {
  ReportService service(server_->url(), *dir_);
  ASSERT_FALSE(service.url().empty()) << read_file(dir_->sub("report_service.err"));

  auto triggered = http("POST", service.url() + "/reports", R"({"pages": 8})");
  ASSERT_EQ(triggered.status, 202) << triggered.body.dump();
  const std::string id = triggered.body.at("job_id");
  EXPECT_EQ(triggered.body.at("status_url"), "/reports/" + id);

  // While it runs, progress shows up; then it succeeds.
  json done = poll_until_done(service.url(), id);
  EXPECT_EQ(done.at("state"), "succeeded") << done.dump();
  EXPECT_EQ(done.at("result").at("pages"), 8);
  EXPECT_EQ(done.at("progress").at("fraction"), 1.0);
  EXPECT_EQ(done.at("progress").at("message"), "page 8/8");

  // The same job, seen directly in jobstate, with its history.
  ClientOptions o;
  o.base_url = server_->url();
  Client client(o);
  auto events = client.job_events(id);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->events.front().type, "created");
  EXPECT_EQ(events->events.back().type, "succeeded");
}

TEST_F(ExamplesTest, ReportServiceTaskThatThrowsIsRecordedAsFailedWithTheMessage) {
  ReportService service(server_->url(), *dir_);
  ASSERT_FALSE(service.url().empty());
  auto triggered = http("POST", service.url() + "/reports", R"({"pages": 5, "fail_at_page": 3})");
  ASSERT_EQ(triggered.status, 202);
  json done = poll_until_done(service.url(), triggered.body.at("job_id"));
  EXPECT_EQ(done.at("state"), "failed") << done.dump();
  EXPECT_EQ(done.at("error").at("code"), "abandoned");
  EXPECT_NE(done.at("error").at("message").get<std::string>().find("page 3 could not be rendered"),
            std::string::npos)
      << done.dump();
  EXPECT_EQ(done.at("progress").at("message"), "page 2/5");
}

TEST_F(ExamplesTest, ReportServiceStopsACancelledReport) {
  ReportService service(server_->url(), *dir_);
  ASSERT_FALSE(service.url().empty());
  auto triggered = http("POST", service.url() + "/reports", R"({"pages": 2000})");
  ASSERT_EQ(triggered.status, 202);
  const std::string id = triggered.body.at("job_id");
  ClientOptions o;
  o.base_url = server_->url();
  Client client(o);
  ASSERT_TRUE(eventually(
      [&] {
        auto j = client.get(id);
        return j && j->state == "running";
      },
      seconds(30)));
  ASSERT_TRUE(client.cancel(id, "changed my mind").ok());
  json done = poll_until_done(service.url(), id);
  EXPECT_EQ(done.at("state"), "cancelled") << done.dump();
}

TEST_F(ExamplesTest, ReportServiceRefusesBadInputAndUnknownReports) {
  ReportService service(server_->url(), *dir_);
  ASSERT_FALSE(service.url().empty());
  EXPECT_EQ(http("POST", service.url() + "/reports", R"({"pages": "many"})").status, 400);
  EXPECT_EQ(http("GET", service.url() + "/reports/" + random_uuid()).status, 404);
}

TEST_F(ExamplesTest, ShellExampleRecordsTheNightlyExport) {
  auto out = run_process({"sh", shell_example("nightly-export.sh")}, *dir_,
                         {std::string("JOBSTATE=") + JOBSTATE_BIN,
                          "JOBSTATE_SERVER=" + server_->url(), "EXPORT_BATCHES=3"});
  ASSERT_EQ(out.status, 0) << out.err;
  EXPECT_NE(out.out.find("exporting 3 batches for job"), std::string::npos);
  EXPECT_EQ(out.out.find("PROGRESS"), std::string::npos);  // consumed by jobstate run

  ClientOptions o;
  o.base_url = server_->url();
  Client client(o);
  ListQuery q;
  q.type = "nightly-export";
  q.limit = 1;
  auto page = client.list(q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs.size(), 1u);
  const Job& job = page->jobs[0];
  EXPECT_EQ(job.state, "succeeded");
  EXPECT_EQ(job.result.at("batches"), 3);
  EXPECT_EQ(job.progress.at("message"), "batch 3/3");
  EXPECT_EQ(job.heartbeat_timeout_s, 60);
}

TEST_F(ExamplesTest, ShellExampleFailureKeepsTheExitStatusAndTheReason) {
  auto out = run_process({"sh", shell_example("nightly-export.sh")}, *dir_,
                         {std::string("JOBSTATE=") + JOBSTATE_BIN,
                          "JOBSTATE_SERVER=" + server_->url(), "EXPORT_FAIL_AT=2"});
  EXPECT_EQ(out.status, 3);
  ClientOptions o;
  o.base_url = server_->url();
  Client client(o);
  ListQuery q;
  q.type = "nightly-export";
  q.state = "failed";
  q.limit = 1;
  auto page = client.list(q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs.size(), 1u);
  const Job& job = page->jobs[0];
  EXPECT_EQ(job.error.at("code"), "exit_code");
  EXPECT_NE(
      job.error.at("details").at("stderr_tail").get<std::string>().find("refused the connection"),
      std::string::npos);
}

}  // namespace
}  // namespace jobstate::client
