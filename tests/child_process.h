// Running other programs from tests: start one in the background in its own
// process group, wait for it with a bound, stop it, or run one to completion
// and collect what it wrote. POSIX only.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

extern char** environ;

namespace jobstate::testing {

using SteadyClock = std::chrono::steady_clock;

// Forks and execs argv with stdout to `stdout_fd` (-1: /dev/null) and stderr
// to the file `stderr_path` ("" : /dev/null), with `extra_env` added.
// The child gets its own process group so tests can clean up whatever it
// started. Returns the pid (or -1).
inline pid_t spawn_process(const std::vector<std::string>& args, int stdout_fd,
                           const std::string& stderr_path,
                           const std::vector<std::string>& extra_env = {}) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; e && *e; ++e) envp.push_back(*e);
  for (const auto& e : extra_env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string err = stderr_path.empty() ? "/dev/null" : stderr_path;
  pid_t pid = fork();
  if (pid != 0) return pid;
  setpgid(0, 0);
  int null_fd = open("/dev/null", O_RDWR);
  int err_fd = open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  dup2(null_fd, STDIN_FILENO);
  dup2(stdout_fd >= 0 ? stdout_fd : null_fd, STDOUT_FILENO);
  dup2(err_fd >= 0 ? err_fd : null_fd, STDERR_FILENO);
  execvpe(argv[0], argv.data(), envp.data());
  _exit(127);
}

// Kills a spawned process's whole group at scope exit (a test that fails
// half-way must not leave a runner and its command behind).
class ProcessGroupReaper {
 public:
  explicit ProcessGroupReaper(pid_t pid) : pid_(pid) {}
  ~ProcessGroupReaper() {
    if (pid_ <= 0) return;
    kill(-pid_, SIGKILL);
    waitpid(pid_, nullptr, WNOHANG);
  }
  ProcessGroupReaper(const ProcessGroupReaper&) = delete;
  ProcessGroupReaper& operator=(const ProcessGroupReaper&) = delete;

 private:
  pid_t pid_;
};

// waitpid with a bound: the raw status, or nullopt if still running.
inline std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds bound) {
  const auto deadline = SteadyClock::now() + bound;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 || SteadyClock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The exit status a shell would report: the code, or 128 + signal.
inline int shell_status(int raw) {
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
}

// SIGTERM (after SIGCONT, should it be stopped), then SIGKILL if it has not
// exited within `bound`; reaps it either way.
inline void terminate_process(pid_t pid, std::chrono::milliseconds bound) {
  kill(pid, SIGCONT);
  kill(pid, SIGTERM);
  if (!wait_for_exit(pid, bound)) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
}

// How a program run by run_to_completion ended, and what it wrote.
struct CompletedRun {
  std::optional<int> raw_status;  // as from waitpid; nullopt when it did not start or timed out
  bool timed_out = false;         // still running at the bound, so killed
  std::string out;
  std::string err;
};

// Runs a program (with `extra_env` added) until it exits, or kills its
// process group after `bound`; its stdout and stderr are collected in files
// of a private temporary directory, so a child that leaves a background
// process behind holding them does not hold this up.
inline CompletedRun run_to_completion(const std::vector<std::string>& args,
                                      std::chrono::milliseconds bound,
                                      const std::vector<std::string>& extra_env = {}) {
  TempDir capture;
  const std::string out_path = capture.sub("out");
  const std::string err_path = capture.sub("err");
  int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = spawn_process(args, out_fd, err_path, extra_env);
  close(out_fd);
  CompletedRun r;
  if (pid < 0) return r;
  r.raw_status = wait_for_exit(pid, bound);
  if (!r.raw_status) {
    r.timed_out = true;
    kill(-pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

struct ProcessOutput {
  int status = -1;  // shell_status(); -1 when it had to be killed
  std::string out;
  std::string err;
};

// Runs a program to completion (killed after `bound`, which fails the test),
// capturing stdout and stderr.
inline ProcessOutput run_process(const std::vector<std::string>& args,
                                 const std::vector<std::string>& extra_env = {},
                                 std::chrono::milliseconds bound = std::chrono::seconds(60)) {
  CompletedRun run = run_to_completion(args, bound, extra_env);
  if (run.timed_out)
    ADD_FAILURE() << args[0] << " did not finish within " << bound.count() << " ms";
  ProcessOutput r;
  if (run.raw_status) r.status = shell_status(*run.raw_status);
  r.out = std::move(run.out);
  r.err = std::move(run.err);
  return r;
}

}  // namespace jobstate::testing
