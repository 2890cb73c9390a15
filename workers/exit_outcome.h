// Exit-to-outcome mapping: how a command run as a job ended (its wait status,
// its last stdout line, its stderr tail) becomes the job's outcome, the same
// for `jobstate run` (client/) and the executors of `jobstate serve`
// (executors/):
//
//   the process                 the outcome
//   exits 0                     succeeded; result = the last non-empty stdout
//                               line that is not a PROGRESS line, parsed as
//                               JSON nested at most 64 deep, else null
//   exits N != 0                failed {"code": "exit_code", "message",
//                               "details": {"exit_code": N, "stderr_tail"}}
//   killed by signal S          failed {"code": "signal", "message",
//                               "details": {"signal": S, ["signal_name",]
//                                           "stderr_tail"}}
//   status unknown (reaped      failed {"code": "exit_code", "message",
//   elsewhere)                  "details": {"exit_code": null, "stderr_tail"}}
//
// The message is "the command " + describe_exit(), and what else goes in is
// ExitOutcomeFormat's choice. docs/executors.md and docs/running-jobs.md
// promise these codes and shapes; tests check them.
//
// Pure functions, safe from any thread.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "workers/stderr_tail.h"

namespace jobstate::workers {

// How a process ended.
struct ProcessExit {
  enum class Kind {
    kExited,    // returned or called exit(): `code`
    kSignaled,  // killed by `signal`
    kUnknown,   // reaped by someone else (SIGCHLD ignored): no status
  };
  Kind kind = Kind::kUnknown;
  int code = 0;    // kExited only
  int signal = 0;  // kSignaled only

  static ProcessExit exited(int code) { return {Kind::kExited, code, 0}; }
  static ProcessExit signaled(int signal) { return {Kind::kSignaled, 0, signal}; }
  static ProcessExit unknown() { return {}; }
  // From a status of waitpid(); nullopt when it reports a stopped or
  // continued process (still alive).
  static std::optional<ProcessExit> from_wait_status(int wait_status);

  bool succeeded() const { return kind == Kind::kExited && code == 0; }
  bool operator==(const ProcessExit&) const = default;
};

// "SIGKILL" for 9; "signal N" for a number without a name.
std::string signal_name(int signal);

// "exited with status 3", "was killed by signal 9 (SIGKILL)", "ended with an
// unknown status": completes "the command …" in messages and reasons.
std::string describe_exit(const ProcessExit& exit);

// The job's result from the command's last non-empty, non-PROGRESS stdout
// line: that line parsed as JSON, or null when it is empty, is not JSON or
// nests deeper than 64 (API.md's limit, which the server would refuse).
nlohmann::json parse_result_line(std::string_view line);

// Choices where the users differ on purpose; each is documented for its user.
struct ExitOutcomeFormat {
  // Adds "signal_name" ("SIGKILL") to the details of a death by signal.
  // `jobstate run` does (client/include/jobstate/run_command.h); the
  // executors do not (docs/executors.md). Default false.
  bool signal_name_in_details = false;
  // Ends the message of a non-zero exit or a death by signal with ": " and
  // stderr's last line. The executors do (docs/executors.md: their stderr is
  // seen nowhere else); `jobstate run` passes stderr through to its own
  // instead. Default false.
  bool last_stderr_line_in_message = false;
};

// {"exit_code": N} (null when unknown) or {"signal": S} (plus "signal_name"
// when asked), and always "stderr_tail": stderr.text(). Also the details of
// an executor's job failed "abandoned" at shutdown.
nlohmann::json exit_details(const ProcessExit& exit, const StderrTail& stderr,
                            bool with_signal_name = false);

// What a finished command amounts to: either a result or an error.
struct ExitOutcome {
  bool succeeded = false;
  nlohmann::json result;  // succeeded only: parse_result_line(last stdout line)
  nlohmann::json error;   // failed only: {"code", "message", "details"}
};

// The outcome of a command that ended on its own (no cancel request, no
// shutdown: those outcomes are the caller's), as in the table above.
ExitOutcome exit_outcome(const ProcessExit& exit, std::string_view last_stdout_line,
                         const StderrTail& stderr, const ExitOutcomeFormat& format = {});

}  // namespace jobstate::workers
