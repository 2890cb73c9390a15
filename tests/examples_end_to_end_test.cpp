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

using namespace jobstate::testing;
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

// The example service as a child process, stopped at scope exit.
class ReportService {
 public:
  ReportService(const std::string& jobstate_url, const TempDir& dir)
      : process_(spawn_announcing_url({report_service_binary(), "--jobstate", jobstate_url,
                                       "--listen", "127.0.0.1:0", "--page-ms", "50"},
                                      dir.sub("report_service.err"))) {}
  ~ReportService() {
    if (process_.pid > 0) terminate_process(process_.pid, seconds(30));
  }
  ReportService(const ReportService&) = delete;
  ReportService& operator=(const ReportService&) = delete;

  // "http://127.0.0.1:PORT"; empty when it did not come up.
  const std::string& url() const { return process_.url; }

 private:
  AnnouncingProcess process_;
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

class ExamplesTest : public SharedServerTest {
 protected:
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

  // Runs examples/shell/nightly-export.sh against the server, with `env` added.
  ProcessOutput run_nightly_export(const std::string& env) {
    return run_process(
        {"sh", shell_example("nightly-export.sh")},
        {std::string("JOBSTATE=") + JOBSTATE_BIN, "JOBSTATE_SERVER=" + server_->url(), env});
  }
  // The newest nightly-export job in `state` ("": any); nullopt, with the
  // failure recorded, when the list fails or has none.
  std::optional<Job> newest_nightly_export(const std::string& state = "") {
    ListQuery q;
    q.type = "nightly-export";
    q.state = state;
    q.limit = 1;
    auto page = client_->list(q);
    EXPECT_TRUE(page.ok()) << (page ? "" : page.problem().describe());
    if (!page) return std::nullopt;
    EXPECT_EQ(page->jobs.size(), 1u);
    if (page->jobs.empty()) return std::nullopt;
    return page->jobs[0];
  }
};

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
  auto events = client_->job_events(id);
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
  ASSERT_TRUE(eventually(
      [&] {
        auto j = client_->get(id);
        return j && j->state == "running";
      },
      seconds(30)));
  ASSERT_TRUE(client_->cancel(id, "changed my mind").ok());
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
  auto out = run_nightly_export("EXPORT_BATCHES=3");
  ASSERT_EQ(out.status, 0) << out.err;
  EXPECT_NE(out.out.find("exporting 3 batches for job"), std::string::npos);
  EXPECT_EQ(out.out.find("PROGRESS"), std::string::npos);  // consumed by jobstate run

  std::optional<Job> job = newest_nightly_export();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->state, "succeeded");
  EXPECT_EQ(job->result.at("batches"), 3);
  EXPECT_EQ(job->progress.at("message"), "batch 3/3");
  EXPECT_EQ(job->heartbeat_timeout_s, 60);
}

TEST_F(ExamplesTest, ShellExampleFailureKeepsTheExitStatusAndTheReason) {
  auto out = run_nightly_export("EXPORT_FAIL_AT=2");
  EXPECT_EQ(out.status, 3);
  std::optional<Job> job = newest_nightly_export("failed");
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->error.at("code"), "exit_code");
  EXPECT_NE(
      job->error.at("details").at("stderr_tail").get<std::string>().find("refused the connection"),
      std::string::npos);
}

}  // namespace
}  // namespace jobstate::client
