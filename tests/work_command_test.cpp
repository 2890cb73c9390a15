// `jobstate work --type T -- CMD ARGS...` as a team runs it: the real binary
// against a real server. It claims jobs, hands each command its params (stdin
// and JOBSTATE_PARAMS), reports results and failures, and drains on SIGTERM:
// the running command finishes and is reported, no new job is claimed.
#include <gtest/gtest.h>

#include "jobstate/client.h"
#include "tests/client_test_support.h"
#include "tests/http_client.h"

namespace jobstate::client {
namespace {

using namespace jobstate::testing;
using nlohmann::json;
using std::chrono::seconds;

class WorkCommandTest : public SharedServerTest {
 protected:
  // `jobstate work` in the background (stderr in <name>.err), its process
  // group killed at scope exit.
  struct Worker {
    pid_t pid;
    ProcessGroupReaper reaper;
    std::string err_path;
  };
  std::unique_ptr<Worker> start_worker(const std::string& type, const std::string& name,
                                       const std::vector<std::string>& command,
                                       const std::vector<std::string>& flags = {}) {
    std::vector<std::string> args = {JOBSTATE_BIN, "work", "--server", server_->url(), "--type", type};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back("--");
    args.insert(args.end(), command.begin(), command.end());
    const std::string err = dir_->sub(name + ".err");
    pid_t pid = spawn_process(args, -1, err);
    return std::unique_ptr<Worker>(new Worker{pid, ProcessGroupReaper(pid), err});
  }
  std::string new_type(const std::string& prefix) {
    static int n = 0;
    return prefix + "." + std::to_string(getpid()) + "." + std::to_string(++n);
  }
  // Waits (at most 30 s) until the job is terminal; its last state.
  Job finished(const std::string& id) {
    Job last;
    eventually(
        [&] {
          auto j = client_->get(id);
          if (j) last = *j;
          return j && j->terminal();
        },
        seconds(30));
    return last;
  }
};

TEST_F(WorkCommandTest, RunsACommandPerClaimedJobWithItsParams) {
  const std::string type = new_type("work-params");
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto j = client_->create(CreateJobRequest{type, {{"n", i}, {"text", "a \"quoted\" word"}}});
    ASSERT_TRUE(j.ok());
    ids.push_back(j->id);
  }
  // The command echoes its stdin and its environment back as the result.
  auto w = start_worker(
      type, "params",
      {"sh", "-c",
       "read -r p; echo 'PROGRESS 0.5 half way'; "
       "printf '{\"stdin\": %s, \"env\": %s, \"id\": \"%s\", \"attempt\": %s}\\n' "
       "\"$p\" \"$JOBSTATE_PARAMS\" \"$JOBSTATE_JOB_ID\" \"$JOBSTATE_ATTEMPT\""},
      {"--concurrency", "2"});
  for (int i = 0; i < 3; ++i) {
    Job j = finished(ids[i]);
    ASSERT_EQ(j.state, "succeeded") << read_file(w->err_path);
    const json want = {{"n", i}, {"text", "a \"quoted\" word"}};
    EXPECT_EQ(j.result["stdin"], want);
    EXPECT_EQ(j.result["env"], want);
    EXPECT_EQ(j.result["id"], ids[i]);
    EXPECT_EQ(j.result["attempt"], 1);
    EXPECT_EQ(j.progress["fraction"], 0.5);
    ASSERT_TRUE(j.worker.has_value());
  }
  terminate_process(w->pid, std::chrono::seconds(20));
}

TEST_F(WorkCommandTest, AFailingCommandFailsItsJobAndTheWorkerGoesOn) {
  const std::string type = new_type("work-fail");
  auto bad = client_->create(CreateJobRequest{type, {{"ok", false}}});
  ASSERT_TRUE(bad.ok());
  auto w = start_worker(type, "fail",
                        {"sh", "-c", "grep -q true && echo '{\"done\": 1}' || { echo oops >&2; exit 3; }"});
  Job failed = finished(bad->id);
  EXPECT_EQ(failed.state, "failed");
  EXPECT_EQ(failed.error["code"], "exit_code");
  EXPECT_EQ(failed.error["details"]["exit_code"], 3);
  auto good = client_->create(CreateJobRequest{type, {{"ok", true}}});
  ASSERT_TRUE(good.ok());
  Job done = finished(good->id);
  EXPECT_EQ(done.state, "succeeded") << read_file(w->err_path);
  EXPECT_EQ(done.result, (json{{"done", 1}}));
  terminate_process(w->pid, std::chrono::seconds(20));
}

TEST_F(WorkCommandTest, SigtermDrainsTheRunningCommandThenStopsClaiming) {
  const std::string type = new_type("work-drain");
  const std::string marker = dir_->sub("drain.started");
  auto first = client_->create(CreateJobRequest{type});
  ASSERT_TRUE(first.ok());
  auto w = start_worker(type, "drain",
                        {"sh", "-c", "touch " + marker + "; sleep 1; echo '{\"finished\": true}'"});
  ASSERT_TRUE(eventually([&] { return !read_file(marker).empty() || access(marker.c_str(), F_OK) == 0; },
                         seconds(30)))
      << read_file(w->err_path);
  kill(w->pid, SIGTERM);
  auto status = wait_for_exit(w->pid, std::chrono::seconds(30));
  ASSERT_TRUE(status.has_value()) << "the worker did not stop: " << read_file(w->err_path);
  EXPECT_EQ(shell_status(*status), 0);
  // The running command finished and was reported...
  Job j = finished(first->id);
  EXPECT_EQ(j.state, "succeeded");
  EXPECT_EQ(j.result, (json{{"finished", true}}));
  // ...and nothing was claimed after the drain began.
  auto later = client_->create(CreateJobRequest{type});
  ASSERT_TRUE(later.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(client_->get(later->id)->state, "queued");
}

TEST_F(WorkCommandTest, ARetriedJobRunsAgainAfterAWorkerStopsItsCommand) {
  const std::string type = new_type("work-retry");
  auto created = client_->create(CreateJobRequest{type});
  ASSERT_TRUE(created.ok());
  // Retries: created through the API (the client's request has no retry member).
  HttpClient http(server_->url());
  auto retried = http.post_json("/v1/jobs", {{"type", type}, {"retry", {{"max_attempts", 2}, {"initial_backoff_s", 0}}}});
  ASSERT_EQ(retried.status, 202);
  const std::string id = retried.json()["id"];
  ASSERT_TRUE(client_->cancel(created->id).ok());  // only the retried job is left to claim
  const std::string marker = dir_->sub("retry.started");
  auto w = start_worker(type, "retry", {"sh", "-c", "touch " + marker + "; exec sleep 60"},
                        {"--cancel-grace", "1"});
  ASSERT_TRUE(eventually([&] { return access(marker.c_str(), F_OK) == 0; }, seconds(30)));
  // Two signals: drain, then stop the command; the job is "abandoned" and retried.
  kill(w->pid, SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  kill(w->pid, SIGTERM);
  auto status = wait_for_exit(w->pid, std::chrono::seconds(30));
  ASSERT_TRUE(status.has_value()) << read_file(w->err_path);
  auto j = client_->get(id);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->state, "queued") << j->raw;
  EXPECT_EQ(j->raw["attempt"], 2);
  EXPECT_EQ(j->raw["last_error"]["code"], "abandoned");
}

}  // namespace
}  // namespace jobstate::client
