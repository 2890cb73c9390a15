// `jobstate run -- CMD ARGS...` as a user runs it: the real binary against a
// real server. Exit statuses, stdout progress lines, results, failures by exit
// code and signal, spawn failures, cancel, and a runner killed with SIGKILL
// caught by the watchdog.
#include "jobstate/run_command.h"

#include <gtest/gtest.h>

#include <regex>

#include "jobstate/client.h"
#include "tests/client_test_support.h"

namespace jobstate::client {
namespace {

using jobstate::testing::eventually;
using jobstate::testing::ProcessOutput;
using jobstate::testing::read_file;
using jobstate::testing::run_process;
using jobstate::testing::ServerProcess;
using jobstate::testing::TempDir;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The job id the runner announces on stderr ("job <id> started").
std::string announced_job_id(const std::string& err) {
  static const std::regex kJob(
      "job ([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}) started");
  std::smatch m;
  return std::regex_search(err, m, kJob) ? m[1].str() : std::string();
}

class RunCommandTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    server_ = new ServerProcess(dir_->sub("data"));
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_FALSE(server_->url().empty());
    ClientOptions o;
    o.base_url = server_->url();
    client_ = std::make_unique<Client>(o);
  }

  // jobstate run --server URL <flags> -- <command>
  ProcessOutput run(const std::vector<std::string>& flags,
                    const std::vector<std::string>& command) {
    std::vector<std::string> args = {JOBSTATE_BIN, "run", "--server", server_->url()};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back("--");
    args.insert(args.end(), command.begin(), command.end());
    return run_process(args, *dir_);
  }
  Job job_of(const ProcessOutput& out) {
    const std::string id = announced_job_id(out.err);
    EXPECT_FALSE(id.empty()) << "stderr: " << out.err;
    auto j = client_->get(id);
    EXPECT_TRUE(j.ok()) << (j ? "" : j.problem().describe());
    return j ? *j : Job{};
  }

  static TempDir* dir_;
  static ServerProcess* server_;
  std::unique_ptr<Client> client_;
};
TempDir* RunCommandTest::dir_ = nullptr;
ServerProcess* RunCommandTest::server_ = nullptr;

TEST_F(RunCommandTest, SuccessWithProgressAndAJsonResult) {
  auto out = run({"--type", "nightly-export"},
                 {"sh", "-c",
                  "echo starting; echo 'PROGRESS 0.5 half way'; echo plain output; "
                  "echo 'PROGRESS 1 all rows'; echo '{\"rows\": 42}'"});
  EXPECT_EQ(out.status, 0) << out.err;
  // Progress lines are consumed; everything else passes through.
  EXPECT_EQ(out.out, "starting\nplain output\n{\"rows\": 42}\n");
  Job j = job_of(out);
  EXPECT_EQ(j.type, "nightly-export");
  EXPECT_EQ(j.state, "succeeded");
  EXPECT_EQ(j.result, (json{{"rows", 42}}));
  EXPECT_EQ(j.params.at("argv").at(0), "sh");
  EXPECT_EQ(j.progress.at("fraction"), 1);
  EXPECT_EQ(j.progress.at("message"), "all rows");
  EXPECT_EQ(j.heartbeat_timeout_s, 120);

  // The progress landed as heartbeat events.
  auto events = client_->job_events(j.id);
  ASSERT_TRUE(events.ok());
  bool saw_progress = false;
  for (const auto& e : events->events)
    if (e.type == "heartbeat" && e.data.at("progress").at("message") == "all rows")
      saw_progress = true;
  EXPECT_TRUE(saw_progress);
}

TEST_F(RunCommandTest, LastLineThatIsNotJsonGivesANullResult) {
  auto out = run({}, {"sh", "-c", "echo done, 3 files"});
  EXPECT_EQ(out.status, 0);
  Job j = job_of(out);
  EXPECT_EQ(j.state, "succeeded");
  EXPECT_TRUE(j.result.is_null());
}

TEST_F(RunCommandTest, ExitCodeIsPropagatedAndRecordedWithStderrTail) {
  auto out = run({}, {"sh", "-c", "echo 'disk quota exceeded' >&2; exit 3"});
  EXPECT_EQ(out.status, 3);
  EXPECT_NE(out.err.find("disk quota exceeded"), std::string::npos);  // passed through
  Job j = job_of(out);
  EXPECT_EQ(j.state, "failed");
  EXPECT_EQ(j.error.at("code"), "exit_code");
  EXPECT_EQ(j.error.at("details").at("exit_code"), 3);
  EXPECT_NE(j.error.at("details").at("stderr_tail").get<std::string>().find("disk quota exceeded"),
            std::string::npos);
  EXPECT_NE(j.error.at("message").get<std::string>().find("status 3"), std::string::npos);
}

TEST_F(RunCommandTest, DeathBySignalIsPropagatedAs128PlusSignal) {
  auto out = run({}, {"sh", "-c", "kill -KILL $$"});
  EXPECT_EQ(out.status, 128 + 9);
  Job j = job_of(out);
  EXPECT_EQ(j.state, "failed");
  EXPECT_EQ(j.error.at("code"), "signal");
  EXPECT_EQ(j.error.at("details").at("signal"), 9);
  EXPECT_EQ(j.error.at("details").at("signal_name"), "SIGKILL");
}

TEST_F(RunCommandTest, CommandThatCannotBeSpawnedFailsTheJobAndExits127) {
  auto out = run({}, {"/nonexistent/jobstate-no-such-command", "arg"});
  EXPECT_EQ(out.status, 127);
  Job j = job_of(out);
  EXPECT_EQ(j.state, "failed");
  EXPECT_EQ(j.error.at("code"), "spawn_failed");
  EXPECT_NE(j.error.at("message").get<std::string>().find("No such file or directory"),
            std::string::npos)
      << j.error.dump();
}

TEST_F(RunCommandTest, CommandSeesItsJobIdAndTheServer) {
  auto out = run({}, {"sh", "-c", "echo \"$JOBSTATE_JOB_ID $JOBSTATE_SERVER\""});
  EXPECT_EQ(out.status, 0);
  Job j = job_of(out);
  EXPECT_EQ(out.out, j.id + " " + server_->url() + "\n");
}

TEST_F(RunCommandTest, ArgumentsAreNotInterpretedByAShell) {
  auto out = run({}, {"printf", "%s|", "a b", "$(echo x)", ";", "*"});
  EXPECT_EQ(out.status, 0);
  EXPECT_EQ(out.out, "a b|$(echo x)|;|*|");
}

TEST_F(RunCommandTest, HeartbeatTimeoutFlagIsUsed) {
  auto out = run({"--heartbeat-timeout", "7"}, {"true"});
  EXPECT_EQ(out.status, 0);
  EXPECT_EQ(job_of(out).heartbeat_timeout_s, 7);
}

TEST_F(RunCommandTest, CancelStopsTheCommand) {
  const std::string marker = dir_->sub("cancel-started");
  std::vector<std::string> args = {
      JOBSTATE_BIN, "run", "--server", server_->url(), "--heartbeat-timeout",
      "3",          "--",  "sh",       "-c",           "touch " + marker + "; exec sleep 60"};
  const std::string err_path = dir_->sub("cancel.err");
  pid_t runner = jobstate::testing::spawn_process(args, -1, err_path);
  ASSERT_GT(runner, 0);
  jobstate::testing::ProcessGroupReaper reaper(runner);
  std::string id;
  ASSERT_TRUE(eventually(
      [&] {
        id = announced_job_id(read_file(err_path));
        return !id.empty() && access(marker.c_str(), F_OK) == 0;
      },
      seconds(30)));
  ASSERT_TRUE(client_->cancel(id, "test").ok());
  auto raw = jobstate::testing::wait_for_exit(runner, seconds(60));
  ASSERT_TRUE(raw.has_value());
  EXPECT_EQ(jobstate::testing::shell_status(*raw), 128 + 15);  // SIGTERM ended `sleep`
  auto j = client_->get(id);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->state, "cancelled");
}

TEST_F(RunCommandTest, SigtermToTheRunnerIsForwardedToTheCommand) {
  const std::string marker = dir_->sub("forward-started");
  std::vector<std::string> args = {
      JOBSTATE_BIN, "run", "--server", server_->url(),
      "--",         "sh",  "-c",       "touch " + marker + "; exec sleep 60"};
  const std::string err_path = dir_->sub("forward.err");
  pid_t runner = jobstate::testing::spawn_process(args, -1, err_path);
  ASSERT_GT(runner, 0);
  jobstate::testing::ProcessGroupReaper reaper(runner);
  std::string id;
  ASSERT_TRUE(eventually(
      [&] {
        id = announced_job_id(read_file(err_path));
        return !id.empty() && access(marker.c_str(), F_OK) == 0;
      },
      seconds(30)));
  kill(runner, SIGTERM);
  auto raw = jobstate::testing::wait_for_exit(runner, seconds(60));
  ASSERT_TRUE(raw.has_value());
  EXPECT_EQ(jobstate::testing::shell_status(*raw), 128 + 15);
  auto j = client_->get(id);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->state, "failed");
  EXPECT_EQ(j->error.at("code"), "signal");
  EXPECT_EQ(j->error.at("details").at("signal_name"), "SIGTERM");
}

TEST_F(RunCommandTest, RunnerKilledWithSigkillIsCaughtByTheWatchdog) {
  const std::string pid_file = dir_->sub("killed-child.pid");
  std::vector<std::string> args = {
      JOBSTATE_BIN, "run", "--server", server_->url(), "--heartbeat-timeout",
      "1",          "--",  "sh",       "-c",           "echo $$ > " + pid_file + "; exec sleep 60"};
  const std::string err_path = dir_->sub("killed.err");
  pid_t runner = jobstate::testing::spawn_process(args, -1, err_path);
  ASSERT_GT(runner, 0);
  jobstate::testing::ProcessGroupReaper reaper(runner);
  std::string id;
  ASSERT_TRUE(eventually(
      [&] {
        id = announced_job_id(read_file(err_path));
        return !id.empty() && !read_file(pid_file).empty();
      },
      seconds(30)));
  const pid_t command = std::stoi(read_file(pid_file));

  kill(runner, SIGKILL);
  ASSERT_TRUE(jobstate::testing::wait_for_exit(runner, seconds(10)).has_value());

  // Generous overall bound; the outcome is what counts.
  auto j = client_->wait(id, 30);
  ASSERT_TRUE(j.ok());
  ASSERT_EQ(j->state, "failed");
  EXPECT_EQ(j->error.at("code"), "heartbeat_timeout");
  const std::string last_sign_of_life =
      j->last_heartbeat_at ? *j->last_heartbeat_at : j->started_at.value_or("");
  std::printf("runner SIGKILLed: last heartbeat %s, failed at %s (timeout 1 s; contract: +1 s)\n",
              last_sign_of_life.c_str(), j->finished_at.value_or("?").c_str());

  // The command did not outlive its runner (parent-death signal).
  EXPECT_TRUE(eventually([&] { return kill(command, 0) != 0; }, seconds(10)));
}

TEST(RunCommandNoServerTest, CommandIsNotRunWhenTheJobCannotBeCreated) {
  TempDir dir;
  const std::string marker = dir.sub("ran");
  auto out = run_process(
      {JOBSTATE_BIN, "run", "--server", "http://127.0.0.1:1", "--", "touch", marker}, dir);
  EXPECT_EQ(out.status, kRunExitNoJob);
  EXPECT_NE(out.err.find("cannot create and start the job"), std::string::npos) << out.err;
  EXPECT_NE(access(marker.c_str(), F_OK), 0);
}

TEST(RunCommandNoServerTest, MissingCommandIsAUsageError) {
  TempDir dir;
  auto out = run_process({JOBSTATE_BIN, "run", "--server", "http://127.0.0.1:1"}, dir);
  EXPECT_EQ(out.status, 2);
}

TEST(ProgressLineTest, Parses) {
  auto p = parse_progress_line("PROGRESS 0.42 page 42/100");
  ASSERT_TRUE(p.has_value());
  EXPECT_DOUBLE_EQ(*p->fraction, 0.42);
  EXPECT_EQ(p->message, "page 42/100");
  auto bare = parse_progress_line("PROGRESS 1");
  ASSERT_TRUE(bare.has_value());
  EXPECT_DOUBLE_EQ(*bare->fraction, 1.0);
  EXPECT_FALSE(bare->message.has_value());
  auto tabs = parse_progress_line("PROGRESS\t0\t starting  up");
  ASSERT_TRUE(tabs.has_value());
  EXPECT_EQ(tabs->message, "starting  up");
}

TEST(ProgressLineTest, OtherLinesAreOutput) {
  for (const char* line : {"PROGRESS", "PROGRESS ", "PROGRESS x msg", "PROGRESS 1.5 too far",
                           "PROGRESS -0.1 negative", "PROGRESS nan", "progress 0.5 lower case",
                           "PROGRESSIVE 0.5", " PROGRESS 0.5 leading space", "PROGRESS 0.5x"}) {
    EXPECT_FALSE(parse_progress_line(line).has_value()) << line;
  }
}

}  // namespace
}  // namespace jobstate::client
