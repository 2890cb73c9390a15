// The exit-to-outcome mapping (workers/exit_outcome.h) as tables: the codes
// and JSON shapes docs/executors.md and docs/running-jobs.md promise.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <string>

#include "workers/exit_outcome.h"

namespace jobstate::workers {
namespace {

using nlohmann::json;

const ExitOutcomeFormat kExecutors{.signal_name_in_details = false,
                                   .last_stderr_line_in_message = true};
const ExitOutcomeFormat kRun{.signal_name_in_details = true, .last_stderr_line_in_message = false};

TEST(ExitOutcome, FromWaitStatusTable) {
  struct Case {
    int wait_status;
    std::optional<ProcessExit> exit;
  };
  const Case cases[] = {
      {0, ProcessExit::exited(0)},
      {3 << 8, ProcessExit::exited(3)},
      {255 << 8, ProcessExit::exited(255)},
      {SIGKILL, ProcessExit::signaled(SIGKILL)},
      {SIGTERM | 0x80, ProcessExit::signaled(SIGTERM)},  // with a core dump
      {(SIGSTOP << 8) | 0x7f, std::nullopt},             // stopped: still alive
      {0xffff, std::nullopt},                            // continued
  };
  for (const auto& c : cases)
    EXPECT_EQ(ProcessExit::from_wait_status(c.wait_status), c.exit) << c.wait_status;
}

TEST(ExitOutcome, DescribeTable) {
  EXPECT_EQ(describe_exit(ProcessExit::exited(0)), "exited with status 0");
  EXPECT_EQ(describe_exit(ProcessExit::exited(3)), "exited with status 3");
  EXPECT_EQ(describe_exit(ProcessExit::signaled(SIGKILL)), "was killed by signal 9 (SIGKILL)");
  EXPECT_EQ(describe_exit(ProcessExit::unknown()), "ended with an unknown status");
  EXPECT_EQ(signal_name(SIGTERM), "SIGTERM");
  EXPECT_EQ(signal_name(1000), "signal 1000");
}

TEST(ExitOutcome, ResultLineTable) {
  struct Case {
    std::string line;
    json result;
  };
  const Case cases[] = {
      {"", nullptr},
      {"{\"rows\": 42}", {{"rows", 42}}},
      {"\"converted\"", "converted"},
      {"[1, 2]", {1, 2}},
      {"17", 17},
      {"null", nullptr},
      {"all done", nullptr},
      {"{\"a\": 1", nullptr},
      {std::string(64, '[') + std::string(64, ']'),
       json::parse(std::string(64, '[') + std::string(64, ']'))},
      {std::string(65, '[') + std::string(65, ']'), nullptr},  // deeper than API.md allows
  };
  for (const auto& c : cases) EXPECT_EQ(parse_result_line(c.line), c.result) << c.line;
}

TEST(ExitOutcome, OutcomeTable) {
  StderrTail tail;
  tail.add("first problem\ndisk full\n");
  struct Case {
    const char* name;
    ProcessExit exit;
    ExitOutcomeFormat format;
    std::string last_stdout_line;
    bool succeeded;
    json result_or_error;
  };
  const Case cases[] = {
      {"success with a JSON result",
       ProcessExit::exited(0),
       kExecutors,
       "{\"pages\": 3}",
       true,
       {{"pages", 3}}},
      {"success without JSON", ProcessExit::exited(0), kRun, "done", true, nullptr},
      {"exit code, executors",
       ProcessExit::exited(3),
       kExecutors,
       "ignored",
       false,
       {{"code", "exit_code"},
        {"message", "the command exited with status 3: disk full"},
        {"details", {{"exit_code", 3}, {"stderr_tail", "first problem\ndisk full\n"}}}}},
      {"exit code, run",
       ProcessExit::exited(3),
       kRun,
       "",
       false,
       {{"code", "exit_code"},
        {"message", "the command exited with status 3"},
        {"details", {{"exit_code", 3}, {"stderr_tail", "first problem\ndisk full\n"}}}}},
      {"signal, executors",
       ProcessExit::signaled(SIGKILL),
       kExecutors,
       "",
       false,
       {{"code", "signal"},
        {"message", "the command was killed by signal 9 (SIGKILL): disk full"},
        {"details", {{"signal", 9}, {"stderr_tail", "first problem\ndisk full\n"}}}}},
      {"signal, run",
       ProcessExit::signaled(SIGKILL),
       kRun,
       "",
       false,
       {{"code", "signal"},
        {"message", "the command was killed by signal 9 (SIGKILL)"},
        {"details",
         {{"signal", 9},
          {"signal_name", "SIGKILL"},
          {"stderr_tail", "first problem\ndisk full\n"}}}}},
      {"unknown status",
       ProcessExit::unknown(),
       kExecutors,
       "{}",
       false,
       {{"code", "exit_code"},
        {"message", "the command ended with an unknown status"},
        {"details", {{"exit_code", nullptr}, {"stderr_tail", "first problem\ndisk full\n"}}}}},
  };
  for (const auto& c : cases) {
    auto outcome = exit_outcome(c.exit, c.last_stdout_line, tail, c.format);
    EXPECT_EQ(outcome.succeeded, c.succeeded) << c.name;
    if (c.succeeded) {
      EXPECT_EQ(outcome.result, c.result_or_error) << c.name;
      EXPECT_TRUE(outcome.error.is_null()) << c.name;
    } else {
      EXPECT_EQ(outcome.error, c.result_or_error) << c.name;
    }
  }
}

TEST(ExitOutcome, NoStderrLeavesTheMessageAlone) {
  StderrTail empty;
  auto outcome = exit_outcome(ProcessExit::exited(1), "", empty, kExecutors);
  EXPECT_EQ(outcome.error["message"], "the command exited with status 1");
  EXPECT_EQ(outcome.error["details"], (json{{"exit_code", 1}, {"stderr_tail", ""}}));
}

TEST(ExitOutcome, DetailsAlone) {
  StderrTail tail;
  tail.add("bye\n");
  EXPECT_EQ(exit_details(ProcessExit::signaled(SIGTERM), tail),
            (json{{"signal", SIGTERM}, {"stderr_tail", "bye\n"}}));
  EXPECT_EQ(exit_details(ProcessExit::signaled(SIGTERM), tail, true),
            (json{{"signal", SIGTERM}, {"signal_name", "SIGTERM"}, {"stderr_tail", "bye\n"}}));
}

}  // namespace
}  // namespace jobstate::workers
