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

using namespace jobstate::testing;
using nlohmann::json;
using std::chrono::seconds;

// The job id the runner announces on stderr ("job <id> started").
std::string announced_job_id(const std::string& err) {
  static const std::regex kJob(
      "job ([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}) started");
  std::smatch m;
  return std::regex_search(err, m, kJob) ? m[1].str() : std::string();
}

// jobstate run --server URL <flags> -- <command>
std::vector<std::string> run_args(const std::string& server_url,
                                  const std::vector<std::string>& flags,
                                  const std::vector<std::string>& command) {
  std::vector<std::string> args = {JOBSTATE_BIN, "run", "--server", server_url};
  args.insert(args.end(), flags.begin(), flags.end());
  args.push_back("--");
  args.insert(args.end(), command.begin(), command.end());
  return args;
}

// `jobstate run <flags> -- sh -c 'echo $$ > <name>.pid; exec sleep 60'` in
// the background, stderr in <name>.err. Its process group is killed at scope
// exit, so a test that fails half-way leaves neither runner nor command.
class SleepingRun {
 public:
  SleepingRun(const std::string& server_url, const std::vector<std::string>& flags,
              const TempDir& dir, const std::string& name)
      : pid_file_(dir.sub(name + ".pid")),
        err_path_(dir.sub(name + ".err")),
        runner_(spawn_process(
            run_args(server_url, flags, {"sh", "-c", "echo $$ > " + pid_file_ + "; exec sleep 60"}),
            -1, err_path_)),
        reaper_(runner_) {}

  // Waits (at most 30 s) until the runner has announced its job and the
  // command runs; false when it did not get that far.
  bool started() {
    return runner_ > 0 && eventually(
                              [&] {
                                job_id_ = announced_job_id(read_file(err_path_));
                                return !job_id_.empty() && !read_file(pid_file_).empty();
                              },
                              seconds(30));
  }
  // The runner's exit status as a shell reports it, or nullopt when it is
  // still running after `bound`.
  std::optional<int> wait_exit(seconds bound) {
    auto raw = wait_for_exit(runner_, bound);
    return raw ? std::optional<int>(shell_status(*raw)) : std::nullopt;
  }
  pid_t runner() const { return runner_; }
  // REQUIRES: started().
  pid_t command() const { return std::stoi(read_file(pid_file_)); }
  const std::string& job_id() const { return job_id_; }
  std::string err() const { return read_file(err_path_); }

 private:
  std::string pid_file_;
  std::string err_path_;
  pid_t runner_;
  ProcessGroupReaper reaper_;
  std::string job_id_;
};

class RunCommandTest : public SharedServerTest {
 protected:
  ProcessOutput run(const std::vector<std::string>& flags,
                    const std::vector<std::string>& command) {
    return run_process(run_args(server_->url(), flags, command));
  }
  Job job_of(const ProcessOutput& out) {
    const std::string id = announced_job_id(out.err);
    EXPECT_FALSE(id.empty()) << "stderr: " << out.err;
    auto j = client_->get(id);
    EXPECT_TRUE(j.ok()) << (j ? "" : j.problem().describe());
    return j ? *j : Job{};
  }
};

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

// A command that hangs while its runner keeps heartbeating is still failed:
// the execution timeout counts from the start, heartbeats or not.
TEST_F(RunCommandTest, AHungCommandThatStillHeartbeatsIsFailedByItsExecutionTimeout) {
  SleepingRun run(server_->url(), {"--heartbeat-timeout", "3", "--execution-timeout", "1"}, *dir_,
                  "hung");
  ASSERT_TRUE(run.started()) << run.err();
  Job j;
  ASSERT_TRUE(eventually(
      [&] {
        auto now = client_->get(run.job_id());
        if (now) j = *now;
        return now && now->terminal();
      },
      seconds(30)))
      << run.err();
  EXPECT_EQ(j.state, "failed");
  EXPECT_EQ(j.error["code"], "execution_timeout");
  EXPECT_EQ(j.raw["execution_timeout_s"], 1);
  // The runner saw its job lost; it heartbeat within its 3 s timeout all along.
  EXPECT_TRUE(eventually([&] { return run.err().find("execution_timeout") != std::string::npos ||
                                      run.err().find("as failed") != std::string::npos; },
                         seconds(10)))
      << run.err();
}

TEST_F(RunCommandTest, CancelStopsTheCommand) {
  SleepingRun run(server_->url(), {"--heartbeat-timeout", "3"}, *dir_, "cancel");
  ASSERT_TRUE(run.started()) << run.err();
  ASSERT_TRUE(client_->cancel(run.job_id(), "test").ok());
  auto status = run.wait_exit(seconds(60));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 128 + 15);  // SIGTERM ended `sleep`
  auto j = client_->get(run.job_id());
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->state, "cancelled");
}

TEST_F(RunCommandTest, SigtermToTheRunnerIsForwardedToTheCommand) {
  SleepingRun run(server_->url(), {}, *dir_, "forward");
  ASSERT_TRUE(run.started()) << run.err();
  kill(run.runner(), SIGTERM);
  auto status = run.wait_exit(seconds(60));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 128 + 15);
  auto j = client_->get(run.job_id());
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->state, "failed");
  EXPECT_EQ(j->error.at("code"), "signal");
  EXPECT_EQ(j->error.at("details").at("signal_name"), "SIGTERM");
}

TEST_F(RunCommandTest, RunnerKilledWithSigkillIsCaughtByTheWatchdog) {
  SleepingRun run(server_->url(), {"--heartbeat-timeout", "1"}, *dir_, "killed");
  ASSERT_TRUE(run.started()) << run.err();
  const pid_t command = run.command();

  kill(run.runner(), SIGKILL);
  ASSERT_TRUE(run.wait_exit(seconds(10)).has_value());

  // Generous overall bound; the outcome is what counts.
  auto j = client_->wait(run.job_id(), 30);
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
  auto out =
      run_process({JOBSTATE_BIN, "run", "--server", "http://127.0.0.1:1", "--", "touch", marker});
  EXPECT_EQ(out.status, kRunExitNoJob);
  EXPECT_NE(out.err.find("cannot create and start the job"), std::string::npos) << out.err;
  EXPECT_NE(access(marker.c_str(), F_OK), 0);
}

TEST(RunCommandNoServerTest, MissingCommandIsAUsageError) {
  auto out = run_process({JOBSTATE_BIN, "run", "--server", "http://127.0.0.1:1"});
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
