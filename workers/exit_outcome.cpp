#include "workers/exit_outcome.h"

#include <string.h>
#include <sys/wait.h>

namespace jobstate::workers {

using nlohmann::json;

namespace {
constexpr int kMaxResultDepth = 64;  // API.md's nesting limit for JSON

// Thrown from the parse callback to stop at the depth limit (a deep document
// would otherwise cost recursion later when it is encoded).
struct TooDeep {};
}  // namespace

std::optional<ProcessExit> ProcessExit::from_wait_status(int wait_status) {
  if (WIFEXITED(wait_status)) return exited(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return signaled(WTERMSIG(wait_status));
  return std::nullopt;
}

std::string signal_name(int signal) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* abbrev = sigabbrev_np(signal)) return std::string("SIG") + abbrev;
#endif
  return "signal " + std::to_string(signal);
}

std::string describe_exit(const ProcessExit& exit) {
  switch (exit.kind) {
    case ProcessExit::Kind::kExited:
      return "exited with status " + std::to_string(exit.code);
    case ProcessExit::Kind::kSignaled:
      return "was killed by signal " + std::to_string(exit.signal) + " (" +
             signal_name(exit.signal) + ")";
    case ProcessExit::Kind::kUnknown:
      break;
  }
  return "ended with an unknown status";
}

json parse_result_line(std::string_view line) {
  if (line.empty()) return nullptr;
  try {
    return json::parse(line, [](int depth, json::parse_event_t event, json&) {
      if ((event == json::parse_event_t::object_start ||
           event == json::parse_event_t::array_start) &&
          depth >= kMaxResultDepth)
        throw TooDeep{};
      return true;
    });
  } catch (const json::exception&) {
    return nullptr;
  } catch (const TooDeep&) {
    return nullptr;
  }
}

json exit_details(const ProcessExit& exit, const StderrTail& stderr, bool with_signal_name) {
  json d = json::object();
  switch (exit.kind) {
    case ProcessExit::Kind::kExited:
      d["exit_code"] = exit.code;
      break;
    case ProcessExit::Kind::kSignaled:
      d["signal"] = exit.signal;
      if (with_signal_name) d["signal_name"] = signal_name(exit.signal);
      break;
    case ProcessExit::Kind::kUnknown:
      d["exit_code"] = nullptr;
      break;
  }
  d["stderr_tail"] = stderr.text();
  return d;
}

ExitOutcome exit_outcome(const ProcessExit& exit, std::string_view last_stdout_line,
                         const StderrTail& stderr, const ExitOutcomeFormat& format) {
  ExitOutcome outcome;
  if (exit.succeeded()) {
    outcome.succeeded = true;
    outcome.result = parse_result_line(last_stdout_line);
    return outcome;
  }
  std::string message = "the command " + describe_exit(exit);
  // An unknown status says nothing about the command: no stderr line either.
  if (format.last_stderr_line_in_message && exit.kind != ProcessExit::Kind::kUnknown) {
    std::string last = stderr.last_line();
    if (!last.empty()) message += ": " + last;
  }
  outcome.error = json{{"code", exit.kind == ProcessExit::Kind::kSignaled ? "signal" : "exit_code"},
                       {"message", std::move(message)},
                       {"details", exit_details(exit, stderr, format.signal_name_in_details)}};
  return outcome;
}

}  // namespace jobstate::workers
