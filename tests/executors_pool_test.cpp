// Built-in executors on a real store with real child processes: what a user
// of `jobstate serve --config` sees in a job's state and history.
//
// The commands are small /bin/sh scripts in the *test's* config; the
// executor itself runs argv directly (no shell), which the injection test
// shows. Scripts that must wait for the test poll a file, bounded in time.
#include <errno.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "executors/executor_pool.h"
#include "store/lease.h"
#include "store_fixture.h"

namespace jobstate::executors {
namespace {

using jobstate::testing::StoreTest;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// Waits for `path` to exist, at most ~30 s (a script fragment).
std::string wait_for_file(const std::string& path) {
  return "i=0; while [ ! -e '" + path + "' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; ";
}

// A literal for an argv template: braces doubled (single ones are placeholders).
std::string literal(const std::string& text) {
  std::string out;
  for (char c : text) {
    out += c;
    if (c == '{' || c == '}') out += c;
  }
  return out;
}

json sh_executor(const std::string& script, json extra = json::object()) {
  json spec = {{"argv", {"/bin/sh", "-c", literal(script), "sh"}}};
  for (auto& [k, v] : extra.items()) spec[k] = v;
  return spec;
}

void touch(const std::string& path) {
  std::ofstream(path) << "x";
}

bool process_exists(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

pid_t read_pid(const std::string& path) {
  std::ifstream in(path);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

// A store in a temp dir with an executor pool wired to its writer.
size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}

class ExecutorPoolTest : public StoreTest {
 protected:
  ExecutorPoolTest() { use_clock(system_clock_); }  // processes run in real time
  void SetUp() override { fds_at_start_ = open_fds(); }
  void TearDown() override {
    close();
    // Every pipe and pidfd was closed.
    EXPECT_EQ(open_fds(), fds_at_start_);
    // Every child was reaped: this process has none left (no zombies).
    int status = 0;
    EXPECT_EQ(::waitpid(-1, &status, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
  }

  // Opens the store with executors configured by `executors` (type → spec).
  void open(const json& executors, ExecutorPoolOptions options = {}, bool start = true) {
    auto config = parse_executor_config(json{{"executors", executors}}.dump(), "test-config");
    ASSERT_OK(config);
    pool_ = std::make_unique<ExecutorPool>(std::move(*config), std::move(options));
    WriterOptions writer;
    writer.on_commit = [p = pool_.get()](const CommitInfo& info) { p->on_commit(info); };
    ASSERT_NO_FATAL_FAILURE(open_store(std::move(writer)));
    if (start) {
      ASSERT_OK(pool_->start(store().read_model(), store().writer()));
    }
  }
  void close() {
    if (pool_) pool_->stop();
    close_store();
    pool_.reset();
  }

  Result<CommandOutcome> run(const JobId& id, Command cmd) {
    CommandRequest r;
    r.job_id = id;
    r.command = std::move(cmd);
    return store_->writer().execute(std::move(r));
  }
  JobId create(const std::string& type, json params = json::object(), int64_t timeout_s = 120) {
    JobId id = JobId::generate();
    EXPECT_OK(run(id, CreateJob{type, std::move(params), timeout_s, json::object()}));
    return id;
  }
  JobState state(const JobId& id) {
    auto row = store_->projection().row(id);
    EXPECT_TRUE(row.ok() && row->has_value());
    if (!row.ok() || !row->has_value()) return {};
    auto s = (*row)->to_state();
    EXPECT_OK(s);
    return s ? *s : JobState{};
  }
  // Polls until `pred(state)` holds; at most 30 s.
  template <typename Pred>
  JobState wait_for(const JobId& id, Pred pred, const char* what) {
    const auto end = SteadyClock::now() + std::chrono::seconds(30);
    JobState s = state(id);
    while (!pred(s) && SteadyClock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      s = state(id);
    }
    EXPECT_TRUE(pred(s)) << "job " << id.to_string() << " never became " << what << ": "
                         << job_to_json(s, 0).dump();
    return s;
  }
  JobState wait_terminal(const JobId& id) {
    return wait_for(
        id, [](const JobState& s) { return is_terminal(s.status); }, "terminal");
  }
  std::vector<Event> history(const JobId& id) {
    auto e = store_->log().job_events(id);
    EXPECT_OK(e);
    return e ? *e : std::vector<Event>{};
  }
  static std::vector<std::string> types_of(const std::vector<Event>& events) {
    std::vector<std::string> out;
    for (const auto& e : events) out.emplace_back(event_type_name(e.type));
    return out;
  }

  size_t fds_at_start_ = 0;
  SystemClock system_clock_;
  std::unique_ptr<ExecutorPool> pool_;
};

TEST_F(ExecutorPoolTest, SuccessWithProgressAndJsonResult) {
  const std::string marker = dir_.sub("injected");
  open({{"greet",
         {{"argv",
           {"/bin/sh", "-c",
            literal("echo starting; echo 'PROGRESS 0.5 half way'; "
                    "printf '{\"name\": \"%s\", \"args\": %d}\\n' \"$1\" $#"),
            "sh", "{params.name}"}}}}});
  const std::string name = "x'; touch " + marker + "; echo '$(touch " + marker + ")";
  JobId id = create("greet", {{"name", name}});
  JobState s = wait_terminal(id);
  EXPECT_EQ(job_status_name(s.status), std::string("succeeded")) << job_to_json(s, 0).dump();
  EXPECT_EQ(s.result, json({{"name", name}, {"args", 1}}));
  ASSERT_TRUE(s.worker.has_value());
  EXPECT_EQ(s.worker->rfind("jobstate-executor/", 0), 0u) << *s.worker;
  EXPECT_FALSE(std::ifstream(marker).good()) << "a param was run as a command";
  // The progress the command printed is in the history, before the outcome.
  auto events = history(id);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(event_type_name(events[1].type), std::string("started"));
  EXPECT_EQ(event_type_name(events.back().type), std::string("succeeded"));
  bool saw_progress = false;
  for (const auto& e : events)
    if (e.type == EventType::kHeartbeat && e.data["progress"]["fraction"] == 0.5 &&
        e.data["progress"]["message"] == "half way")
      saw_progress = true;
  EXPECT_TRUE(saw_progress) << json(types_of(events)).dump();
  EXPECT_EQ(s.progress["fraction"], 0.5);
}

// A job's not_before holds its executor back too (a delay on create, or a
// retry's backoff): it starts once the time comes, not when it is queued.
TEST_F(ExecutorPoolTest, ADelayedJobStartsAtItsNotBefore) {
  open({{"later", sh_executor("echo '{\"ok\": true}'")}});
  JobId id = JobId::generate();
  CreateJob c{"later", json::object(), 120, json::object()};
  const TimeMs at = system_clock_.now_ms() + 1500;
  c.not_before_ms = at;
  ASSERT_OK(run(id, c));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(state(id).status, JobStatus::kQueued) << "started before its not_before";
  JobState s = wait_terminal(id);
  EXPECT_EQ(s.status, JobStatus::kSucceeded);
  ASSERT_TRUE(s.started_at_ms.has_value());
  EXPECT_GE(*s.started_at_ms, at);
}

TEST_F(ExecutorPoolTest, NonJsonLastLineGivesNullResult) {
  open({{"plain", sh_executor("echo '{\"early\": 1}'; echo done; echo 'PROGRESS 1 finished'")}});
  JobState s = wait_terminal(create("plain"));
  EXPECT_EQ(s.status, JobStatus::kSucceeded);
  EXPECT_TRUE(s.result.is_null()) << s.result.dump();
}

TEST_F(ExecutorPoolTest, FailureByExitCodeKeepsTheStderrTail) {
  open({{"broken", sh_executor("echo 'first problem' >&2; echo 'disk full' >&2; exit 3")}});
  JobState s = wait_terminal(create("broken"));
  ASSERT_EQ(s.status, JobStatus::kFailed);
  EXPECT_EQ(s.error["code"], "exit_code");
  EXPECT_EQ(s.error["details"]["exit_code"], 3);
  EXPECT_EQ(s.error["details"]["stderr_tail"], "first problem\ndisk full\n");
  const std::string message = s.error["message"];
  EXPECT_NE(message.find("status 3"), std::string::npos) << message;
  EXPECT_NE(message.find("disk full"), std::string::npos) << message;
}

TEST_F(ExecutorPoolTest, StderrTailIsBounded) {
  open({{"noisy", sh_executor("i=0; while [ $i -lt 2000 ]; do echo \"line $i of noise\" >&2; "
                              "i=$((i+1)); done; exit 1")}});
  JobState s = wait_terminal(create("noisy"));
  ASSERT_EQ(s.status, JobStatus::kFailed);
  const std::string tail = s.error["details"]["stderr_tail"];
  EXPECT_LE(tail.size(), 4096u);
  EXPECT_GT(tail.size(), 3000u);
  EXPECT_NE(tail.find("line 1999 of noise\n"), std::string::npos);
}

TEST_F(ExecutorPoolTest, KilledBySignal) {
  open({{"crash", sh_executor("echo 'about to die' >&2; kill -KILL $$")}});
  JobState s = wait_terminal(create("crash"));
  ASSERT_EQ(s.status, JobStatus::kFailed);
  EXPECT_EQ(s.error["code"], "signal");
  EXPECT_EQ(s.error["details"]["signal"], SIGKILL);
  EXPECT_FALSE(s.error["details"].contains("exit_code"));
  EXPECT_EQ(s.error["details"]["stderr_tail"], "about to die\n");
  EXPECT_NE(s.error["message"].get<std::string>().find("SIGKILL"), std::string::npos);
}

TEST_F(ExecutorPoolTest, CancelSendsSigtermAndConfirms) {
  const std::string got_term = dir_.sub("got-term");
  open({{"long", sh_executor("trap 'echo stopping; touch " + got_term +
                             "; exit 143' TERM; echo 'PROGRESS 0.1 waiting'; " +
                             wait_for_file(dir_.sub("never")) + "exit 0")}});
  JobId id = create("long");
  // Progress shows the trap is installed.
  wait_for(
      id, [](const JobState& s) { return !s.progress.is_null(); }, "running with progress");
  ASSERT_OK(run(id, RequestCancel{"user pressed stop"}));
  JobState s = wait_terminal(id);
  EXPECT_EQ(s.status, JobStatus::kCancelled) << job_to_json(s, 0).dump();
  EXPECT_TRUE(std::ifstream(got_term).good()) << "the command did not get SIGTERM";
  auto types = types_of(history(id));
  ASSERT_GE(types.size(), 3u);
  EXPECT_EQ(types[types.size() - 2], "cancel_requested");
  EXPECT_EQ(types.back(), "cancelled");
  EXPECT_NE(history(id).back().data["reason"].get<std::string>().find("status 143"),
            std::string::npos);
}

TEST_F(ExecutorPoolTest, CancelEscalatesToSigkillAfterTheGrace) {
  // SIG_IGN is inherited: neither sh nor its sleeps can be stopped by SIGTERM.
  open({{"stubborn", sh_executor("trap '' TERM; echo 'PROGRESS 0.1 ignoring TERM'; " +
                                     wait_for_file(dir_.sub("never")) + "exit 0",
                                 {{"cancel_grace_s", 0.3}})}});
  JobId id = create("stubborn");
  wait_for(
      id, [](const JobState& s) { return !s.progress.is_null(); }, "running with progress");
  ASSERT_OK(run(id, RequestCancel{"stop"}));
  JobState s = wait_terminal(id);
  EXPECT_EQ(s.status, JobStatus::kCancelled);
  const std::string reason = history(id).back().data["reason"];
  EXPECT_NE(reason.find("SIGKILL"), std::string::npos) << reason;
}

TEST_F(ExecutorPoolTest, ConcurrencyLimitHoldsAndJobsStartInCreationOrder) {
  const std::string release = dir_.sub("release");
  open({{"batch",
         sh_executor(wait_for_file(release) + "echo '{\"ok\": true}'", {{"concurrency", 2}})}});
  std::vector<JobId> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(create("batch", {{"i", i}}));
  // Two start and block; the other three stay queued.
  wait_for(
      ids[1], [](const JobState& s) { return s.status == JobStatus::kRunning; }, "running");
  EXPECT_EQ(state(ids[0]).status, JobStatus::kRunning);
  for (int i = 2; i < 5; ++i) EXPECT_EQ(state(ids[i]).status, JobStatus::kQueued);
  EXPECT_EQ(pool_->active(), 2u);
  touch(release);
  for (const auto& id : ids) EXPECT_EQ(wait_terminal(id).status, JobStatus::kSucceeded);

  // The whole history, in commit order: never more than two running, and the
  // starts follow creation order.
  std::map<JobId, int> index;
  for (int i = 0; i < 5; ++i) index[ids[i]] = i;
  int running = 0, most = 0;
  std::vector<int> start_order;
  auto all = store_->log().events_after(0, 10'000);
  ASSERT_OK(all);
  for (const auto& e : *all) {
    if (!index.count(e.job_id)) continue;
    if (e.type == EventType::kStarted) {
      most = std::max(most, ++running);
      start_order.push_back(index[e.job_id]);
    }
    if (e.type == EventType::kSucceeded || e.type == EventType::kFailed ||
        e.type == EventType::kCancelled)
      --running;
  }
  EXPECT_EQ(most, 2);
  EXPECT_EQ(start_order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST_F(ExecutorPoolTest, RestartFailsThePreviousProcessJobsAsAbandoned) {
  // A previous server: one job running in its executors, one held by an
  // external worker, one queued of a configured type.
  open_store();
  JobId executor_job = create("convert");
  ASSERT_OK(run(executor_job, StartJob{"jobstate-executor/999999"}));
  JobId external_job = create("convert");
  ASSERT_OK(run(external_job, StartJob{"host-7/4242"}));
  JobId queued_job = create("convert");
  close_store();

  // The new server, on the same store.
  open({{"convert", sh_executor("echo '\"converted\"'")}});
  // start() returned: the abandoned job is failed already, not at its deadline.
  JobState abandoned = state(executor_job);
  ASSERT_EQ(abandoned.status, JobStatus::kFailed);
  EXPECT_EQ(abandoned.error["code"], "abandoned");
  EXPECT_NE(abandoned.error["message"].get<std::string>().find("jobstate-executor/999999"),
            std::string::npos);
  EXPECT_EQ(state(external_job).status, JobStatus::kRunning);  // not ours to judge
  JobState picked_up = wait_terminal(queued_job);
  EXPECT_EQ(picked_up.status, JobStatus::kSucceeded);
  EXPECT_EQ(picked_up.result, "converted");
}

// On a store other servers share (postgres), another node's executor job is
// alive: start() leaves it to the watchdog.
TEST_F(ExecutorPoolTest, ASharedStoresRunningExecutorJobsAreLeftAlone) {
  open_store();
  JobId other_node = create("convert");
  ASSERT_OK(run(other_node, StartJob{"jobstate-executor/999999", new_lease_hash()}));
  close_store();
  ExecutorPoolOptions options;
  options.fail_abandoned_at_start = false;
  open({{"convert", sh_executor("echo '\"converted\"'")}}, options);
  JobState s = state(other_node);
  EXPECT_EQ(s.status, JobStatus::kRunning) << job_to_json(s, 0).dump();
  EXPECT_EQ(s.version, 2u);
}

TEST_F(ExecutorPoolTest, UnknownTypeStaysQueuedForExternalWorkers) {
  open({{"known", sh_executor("true")}});
  JobId unknown = create("nobody-runs-this");
  JobId known = create("known");
  // The known job, created after, finished: the pool has seen both.
  EXPECT_EQ(wait_terminal(known).status, JobStatus::kSucceeded);
  JobState s = state(unknown);
  EXPECT_EQ(s.status, JobStatus::kQueued);
  EXPECT_EQ(s.version, 1u);
  EXPECT_FALSE(s.worker.has_value());
  // An external worker can still take it.
  EXPECT_OK(run(unknown, StartJob{"external/1"}));
}

TEST_F(ExecutorPoolTest, SpawnFailureFailsTheJobWithTheReason) {
  const std::string not_executable = dir_.sub("script.txt");
  std::ofstream(not_executable) << "#!/bin/sh\necho hi\n";
  open({{"missing", {{"argv", {"/no/such/program", "arg"}}}},
        {"noexec", {{"argv", {not_executable}}}},
        {"nopath", {{"argv", {"no-such-command-in-path-xyz"}}}}});
  JobState missing = wait_terminal(create("missing"));
  ASSERT_EQ(missing.status, JobStatus::kFailed);
  EXPECT_EQ(missing.error["code"], "spawn_failed");
  EXPECT_EQ(missing.error["message"], "cannot run '/no/such/program': No such file or directory");
  JobState noexec = wait_terminal(create("noexec"));
  EXPECT_EQ(noexec.error["code"], "spawn_failed");
  EXPECT_NE(noexec.error["message"].get<std::string>().find("Permission denied"), std::string::npos)
      << noexec.error.dump();
  JobState nopath = wait_terminal(create("nopath"));
  EXPECT_EQ(nopath.error["code"], "spawn_failed");
}

TEST_F(ExecutorPoolTest, MissingParamFailsWithoutRunningAnything) {
  const std::string ran = dir_.sub("ran");
  open({{"needs", {{"argv", {"/bin/sh", "-c", "touch " + ran, "sh", "{params.path}"}}}}});
  JobId id = create("needs", {{"other", 1}});
  JobState s = wait_terminal(id);
  ASSERT_EQ(s.status, JobStatus::kFailed);
  EXPECT_EQ(s.error["code"], "invalid_params");
  EXPECT_NE(s.error["message"].get<std::string>().find("params.path is missing"), std::string::npos)
      << s.error.dump();
  EXPECT_FALSE(s.worker.has_value());  // never started
  EXPECT_EQ(types_of(history(id)), (std::vector<std::string>{"created", "failed"}));
  EXPECT_FALSE(std::ifstream(ran).good());
}

TEST_F(ExecutorPoolTest, EnvironmentAndWorkingDirectory) {
  const std::string work = dir_.sub("work");
  ASSERT_EQ(::mkdir(work.c_str(), 0755), 0);
  open({{"envy", sh_executor("printf '{\"cwd\":\"%s\",\"job\":\"%s\",\"home\":\"%s\"}\\n' "
                             "\"$(pwd -P)\" \"$JOB\" \"${HOME:-unset}\"",
                             {{"cwd", work},
                              {"env", {{"JOB", "{job.type}/{job.id}"}, {"PATH", "/usr/bin:/bin"}}},
                              {"inherit_env", false}})}});
  JobId id = create("envy");
  JobState s = wait_terminal(id);
  ASSERT_EQ(s.status, JobStatus::kSucceeded) << job_to_json(s, 0).dump();
  char real[PATH_MAX];
  ASSERT_NE(::realpath(work.c_str(), real), nullptr);
  EXPECT_EQ(s.result["cwd"], std::string(real));
  EXPECT_EQ(s.result["job"], "envy/" + id.to_string());
  EXPECT_EQ(s.result["home"], "unset");
}

// Waits (bounded) until the process is gone; true when it is.
bool wait_gone(pid_t pid) {
  const auto end = SteadyClock::now() + std::chrono::seconds(30);
  while (process_exists(pid) && SteadyClock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return !process_exists(pid);
}

TEST_F(ExecutorPoolTest, JobEndedElsewhereStopsItsProcess) {
  const std::string pid_file = dir_.sub("pid");
  open({{"victim", sh_executor("echo $$ > " + pid_file + "; echo 'PROGRESS 0 up'; " +
                               wait_for_file(dir_.sub("never")) + "exit 0")}});
  JobId id = JobId::generate();
  CreateJob c{"victim", json::object(), 120, json::object()};
  c.execution_timeout_s = 1;
  ASSERT_OK(run(id, c));
  JobState running = wait_for(
      id, [](const JobState& s) { return !s.progress.is_null(); }, "running with progress");
  const pid_t pid = read_pid(pid_file);
  ASSERT_GT(pid, 0);
  // The executor holds the attempt's lease: a report without it is refused.
  ASSERT_TRUE(running.lease_hash.has_value());
  EXPECT_EQ(running.lease_hash->size(), 64u);
  auto foreign = run(id, FailJob{json{{"code", "operator"}, {"message", "not mine to fail"}}});
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.error().code, ErrorCode::kLeaseMismatch) << foreign.error().message;
  // The watchdog fails the job at its execution timeout: the process has no
  // reason to live.
  const auto timeout_at = SteadyClock::now() + std::chrono::milliseconds(1100);
  std::this_thread::sleep_until(timeout_at);
  ASSERT_OK(run(id, ExpireDeadlines{}));
  EXPECT_EQ(state(id).error["code"], "execution_timeout");
  EXPECT_TRUE(wait_gone(pid));
  // Nothing was reported over the watchdog's failure.
  const size_t versions = state(id).version;
  const auto end = SteadyClock::now() + std::chrono::seconds(30);
  while (pool_->active() != 0 && SteadyClock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(pool_->active(), 0u);
  EXPECT_EQ(state(id).version, versions);
  EXPECT_EQ(state(id).status, JobStatus::kFailed);
}

// A retried attempt: the watchdog ends a hung attempt at its execution
// timeout and queues the job again. The executor stops the old process and
// runs the job once more, under a new lease; the old attempt reports nothing.
TEST_F(ExecutorPoolTest, AnAttemptEndedByARetryStopsAndTheJobRunsAgain) {
  const std::string first = dir_.sub("first-attempt");
  const std::string pid_file = dir_.sub("pid");
  open({{"flaky", sh_executor("if [ -e " + first + " ]; then echo '{\"second\": true}'; exit 0; fi; touch " +
                              first + "; echo $$ > " + pid_file + "; echo 'PROGRESS 0 hung'; " +
                              wait_for_file(dir_.sub("never")) + "exit 0")}});
  JobId id = JobId::generate();
  CreateJob c{"flaky", json::object(), 120, json::object()};
  c.execution_timeout_s = 1;
  c.retry = RetryPolicy{.max_attempts = 2, .initial_backoff_s = 0, .max_backoff_s = 1};
  ASSERT_OK(run(id, c));
  JobState hung = wait_for(
      id, [](const JobState& s) { return !s.progress.is_null(); }, "running with progress");
  const pid_t pid = read_pid(pid_file);
  ASSERT_GT(pid, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  auto expired = run(id, ExpireDeadlines{});
  ASSERT_OK(expired);
  EXPECT_EQ(expired->state().attempt, 2);
  EXPECT_TRUE(wait_gone(pid)) << "the first attempt's process still runs";
  JobState s = wait_terminal(id);
  EXPECT_EQ(s.status, JobStatus::kSucceeded) << job_to_json(s, 0).dump();
  EXPECT_EQ(s.result, json({{"second", true}}));
  EXPECT_EQ(s.attempt, 2);
  EXPECT_EQ(s.last_error["code"], "execution_timeout");
  ASSERT_TRUE(s.lease_hash && hung.lease_hash);
  EXPECT_NE(*s.lease_hash, *hung.lease_hash) << "the second attempt reused the first's lease";
  // created, started, …, retry_scheduled, started, …, succeeded: nothing
  // from the first attempt after its retry was scheduled.
  auto types = types_of(history(id));
  auto retry = std::find(types.begin(), types.end(), "retry_scheduled");
  ASSERT_NE(retry, types.end()) << json(types).dump();
  ASSERT_NE(retry + 1, types.end());
  EXPECT_EQ(*(retry + 1), "started") << json(types).dump();
  EXPECT_EQ(std::count(types.begin(), types.end(), "started"), 2) << json(types).dump();
}

TEST_F(ExecutorPoolTest, StopTerminatesRunningProcessesAndFailsTheirJobs) {
  const std::string pid_file = dir_.sub("pid");
  open({{"server-bound", sh_executor("echo $$ > " + pid_file + "; echo 'PROGRESS 0 up'; " +
                                     wait_for_file(dir_.sub("never")) + "exit 0")}});
  JobId id = create("server-bound");
  JobId waiting = create("server-bound");  // beyond the limit: stays queued
  wait_for(
      id, [](const JobState& s) { return !s.progress.is_null(); }, "running with progress");
  const pid_t pid = read_pid(pid_file);
  pool_->stop();
  EXPECT_FALSE(process_exists(pid));
  JobState s = state(id);
  EXPECT_EQ(s.status, JobStatus::kFailed);
  EXPECT_EQ(s.error["code"], "abandoned");
  EXPECT_EQ(s.error["details"]["signal"], SIGTERM);
  EXPECT_EQ(state(waiting).status, JobStatus::kQueued);  // the next server runs it
}

TEST_F(ExecutorPoolTest, StopDuringALongCancelGraceStillEnds) {
  // A cancel with a long grace is under way when the server stops: the
  // shutdown grace (here 0.2 s) bounds the wait, and the job ends cancelled.
  ExecutorPoolOptions options;
  options.shutdown_grace_ms = 200;
  open({{"stubborn", sh_executor("trap '' TERM; echo 'PROGRESS 0.1 ignoring TERM'; " +
                                     wait_for_file(dir_.sub("never")) + "exit 0",
                                 {{"cancel_grace_s", 600}})}},
       options);
  JobId id = create("stubborn");
  wait_for(
      id, [](const JobState& s) { return !s.progress.is_null(); }, "running with progress");
  ASSERT_OK(run(id, RequestCancel{"stop"}));
  wait_for(
      id, [](const JobState& s) { return s.cancel_requested; }, "cancel requested");
  pool_->stop();
  JobState s = state(id);
  EXPECT_EQ(s.status, JobStatus::kCancelled);
  EXPECT_NE(history(id).back().data["reason"].get<std::string>().find("SIGKILL"),
            std::string::npos);
}

}  // namespace
}  // namespace jobstate::executors
