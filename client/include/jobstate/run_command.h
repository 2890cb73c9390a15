// run_command_as_job: runs a command as a job, the engine of
// `jobstate run -- CMD ARGS...` (POSIX only).
//
// It creates and starts a job (params {"argv": [...]}), runs the command with
// fork/exec (no shell: arguments are passed as they are), and heartbeats while
// the command lives (JobRun). The command's stdout is read line by line:
//   PROGRESS <fraction> <message>
// lines become the job's progress and are not echoed; every other line is
// passed through to stdout_fd. stderr is passed through to stderr_fd and its
// last stderr_tail_bytes are kept (invalid UTF-8 replaced by U+FFFD). When
// the command ends (the mapping is the server's executors' too; the source
// tree's workers/exit_outcome.h):
// - exit 0: succeeded; result = the last non-empty stdout line (not a
//   PROGRESS line) when it parses as JSON nested at most 64 deep, else null;
// - exit N: failed, error {"code": "exit_code", "message", "details":
//   {"exit_code": N, "stderr_tail"}};
// - killed by signal S: failed, code "signal", details {"signal": S,
//   "signal_name", "stderr_tail"};
// - cannot be spawned: failed, code "spawn_failed", details {"errno", "argv"}.
// When a cancel is requested the command gets SIGTERM, then SIGKILL after
// cancel_grace_ms; once it exits the job is reported cancelled.
//
// The command gets JOBSTATE_JOB_ID and JOBSTATE_SERVER in its environment,
// and (Linux) SIGTERM when the runner dies, so it does not outlive a runner
// killed with SIGKILL (the watchdog then fails the job after its heartbeat
// timeout).
//
// Side effects on the calling process while it runs: SIGTERM, SIGINT and SIGHUP
// are caught and forwarded to the command (previous handlers are restored on
// return). The caller should ignore SIGPIPE (`jobstate run` does), or a
// closed stdout would kill the runner.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jobstate/client.h"

namespace jobstate::client {

class JobRun;

// Exit statuses beyond the command's own.
constexpr int kRunExitSpawnFailed = 127;  // the command could not be started
constexpr int kRunExitNoJob = 125;        // the job could not be created or started

struct RunCommandOptions {
  ClientOptions client;
  std::string type = "command";                // the job's type
  std::optional<int64_t> heartbeat_timeout_s;  // nullopt: the server's default (120)
  std::optional<int64_t> execution_timeout_s;  // nullopt: none; else the job fails after it
  nlohmann::json labels = nlohmann::json::object();
  // REQUIRES: not empty. argv[0] is looked up in PATH.
  std::vector<std::string> argv;
  int64_t cancel_grace_ms = 10000;  // SIGTERM → SIGKILL after a cancel request
  size_t stderr_tail_bytes = 4096;
  int stdout_fd = 1;  // where the command's other stdout lines go
  int stderr_fd = 2;  // where its stderr goes
  // The runner's own messages ("job <id> started", problems); default: a
  // "jobstate run: " line on stderr.
  std::function<void(const std::string&)> log;
};

// "PROGRESS 0.42 page 42/100" → fraction 0.42, message "page 42/100".
// nullopt when the line is not a progress line (wrong keyword, fraction not
// a number in [0, 1]); then it is ordinary output.
std::optional<Progress> parse_progress_line(std::string_view line);

// How run_command_for_job runs a command for a job.
struct ProcessSpec {
  // REQUIRES: not empty. argv[0] is looked up in PATH.
  std::vector<std::string> argv;
  // "NAME=value" entries added to the environment (replacing ours).
  std::vector<std::string> env;
  // The command's stdin; nullopt: the caller's.
  std::optional<std::string> stdin_text;
  int64_t cancel_grace_ms = 10000;
  size_t stderr_tail_bytes = 4096;
  int stdout_fd = 1;
  int stderr_fd = 2;
  std::function<void(const std::string&)> log;
  // Forward SIGTERM, SIGINT and SIGHUP to the command while it runs (the
  // handlers are the process's: one command at a time).
  bool forward_signals = false;
  // When it turns true the command gets SIGTERM, then SIGKILL after
  // cancel_grace_ms, and the job fails with code "abandoned".
  const std::atomic<bool>* terminate = nullptr;
};

// Runs spec.argv for the job of `run`, as described at the top (progress lines,
// stdout result, exit mapping, cancel), and reports the outcome. Returns the
// command's exit status as run_command_as_job does.
int run_command_for_job(JobRun& run, const ProcessSpec& spec);

// `jobstate work`: claims jobs of `types` and runs argv for each.
struct WorkOptions {
  ClientOptions client;
  std::vector<std::string> types;  // REQUIRES: not empty
  int concurrency = 1;             // commands at once
  std::string worker;              // empty: "host/pid"
  std::vector<std::string> argv;   // REQUIRES: not empty
  int64_t cancel_grace_ms = 10000;
  size_t stderr_tail_bytes = 4096;
  int64_t claim_wait_s = 20;  // each claim long-polls this long
  int stdout_fd = 1;
  int stderr_fd = 2;
  std::function<void(const std::string&)> log;  // default: "jobstate work: " on stderr
};

// Runs `concurrency` loops, each claiming a job (POST /v1/claims, with its
// lease) and running argv for it: the job's params as JSON on stdin and in
// JOBSTATE_PARAMS, its id in JOBSTATE_JOB_ID, its attempt in
// JOBSTATE_ATTEMPT, the server in JOBSTATE_SERVER; heartbeats, PROGRESS
// lines, the exit mapping and cancel as for `jobstate run`. The first
// SIGTERM, SIGINT or SIGHUP drains: no new claims, the running commands
// finish and are reported; a second one stops them (SIGTERM, then SIGKILL
// after cancel_grace_ms) and fails their jobs "abandoned", which a retry
// policy runs again. Returns 0 after a drain, 2 on bad options.
int work_on_claims(const WorkOptions& options);

// Runs options.argv as a job (see above). Returns the status the runner
// should exit with: the command's exit code, 128 + signal when it was killed,
// kRunExitSpawnFailed when it could not be started, kRunExitNoJob when the
// job could not be created or started (the command is then not run).
int run_command_as_job(const RunCommandOptions& options);

}  // namespace jobstate::client
