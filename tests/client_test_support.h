// Helpers for tests that talk to a real `jobstate serve` process: start one
// on an ephemeral loopback port (URL parsed from what it prints), run other
// programs with a time bound and collect their output, wait for conditions
// with a bound, and the fixtures the client tests share (a server for the
// suite, or one of the test's own). POSIX only.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "jobstate/client.h"
#include "tests/test_util.h"

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

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls cond() every 20 ms until it holds or `bound` passes.
inline bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds bound) {
  const auto deadline = SteadyClock::now() + bound;
  while (true) {
    if (cond()) return true;
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

struct ProcessOutput {
  int status = -1;  // shell_status(); -1 when it had to be killed
  std::string out;
  std::string err;
};

// Runs a program to completion (killed after `bound`), capturing stdout and
// stderr into files under `dir`.
inline ProcessOutput run_process(const std::vector<std::string>& args, const TempDir& dir,
                                 const std::vector<std::string>& extra_env = {},
                                 std::chrono::milliseconds bound = std::chrono::seconds(60)) {
  static int counter = 0;
  const std::string base = dir.sub("proc" + std::to_string(++counter));
  int out_fd = open((base + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = spawn_process(args, out_fd, base + ".err", extra_env);
  close(out_fd);
  ProcessOutput r;
  if (pid < 0) return r;
  auto raw = wait_for_exit(pid, bound);
  if (!raw) {
    kill(-pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    ADD_FAILURE() << args[0] << " did not finish within " << bound.count() << " ms";
  } else {
    r.status = shell_status(*raw);
  }
  r.out = read_file(base + ".out");
  r.err = read_file(base + ".err");
  return r;
}

// A child that says where it listens on the first line of its stdout
// ("... on http://HOST:PORT ..."), as `jobstate serve` and the examples do.
struct AnnouncingProcess {
  pid_t pid = -1;          // -1 when it could not be started
  std::string url;         // "http://HOST:PORT"; empty when it printed none within 30 s
  std::string first_line;  // what it printed, for failure messages
};

// Spawns args (stderr appended to `stderr_path`) and reads its stdout until
// the first line ends, at most 30 s.
inline AnnouncingProcess spawn_announcing_url(const std::vector<std::string>& args,
                                              const std::string& stderr_path) {
  AnnouncingProcess p;
  int fds[2];
  if (pipe(fds) != 0) return p;
  p.pid = spawn_process(args, fds[1], stderr_path);
  close(fds[1]);
  const auto deadline = SteadyClock::now() + std::chrono::seconds(30);
  while (p.first_line.find('\n') == std::string::npos && SteadyClock::now() < deadline) {
    pollfd poll_fd{fds[0], POLLIN, 0};
    if (poll(&poll_fd, 1, 100) <= 0) continue;
    char buf[512];
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    p.first_line.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  auto at = p.first_line.find("http://");
  if (at != std::string::npos)
    p.url = p.first_line.substr(at, p.first_line.find_first_of(" \n", at) - at);
  return p;
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

// A `jobstate serve` child process on 127.0.0.1 (ephemeral port unless one
// is given). Its log goes to <data_dir>.log.
class ServerProcess {
 public:
  explicit ServerProcess(std::string data_dir, uint16_t port = 0) : data_dir_(std::move(data_dir)) {
    start(port);
  }
  ~ServerProcess() { stop(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // "http://127.0.0.1:PORT"; empty when it did not come up.
  const std::string& url() const { return url_; }
  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }

  // SIGTERM, then SIGKILL if it has not stopped within 20 s.
  void stop() {
    if (pid_ <= 0) return;
    terminate_process(pid_, std::chrono::seconds(20));
    pid_ = -1;
  }
  // Freezes the process: connections are accepted by the kernel, nothing is answered.
  void pause() { kill(pid_, SIGSTOP); }
  void resume() { kill(pid_, SIGCONT); }
  // Starts again on the same data directory and port.
  void restart() {
    stop();
    start(port_);
  }

 private:
  void start(uint16_t port) {
    log_path_ = data_dir_ + ".log";
    // "jobstate serving on http://127.0.0.1:PORT (data: ...)"
    AnnouncingProcess p =
        spawn_announcing_url({JOBSTATE_BIN, "serve", "--data-dir", data_dir_, "--listen",
                              "127.0.0.1:" + std::to_string(port), "--watchdog-interval-ms", "100"},
                             log_path_);
    pid_ = p.pid;
    if (p.url.empty()) {
      ADD_FAILURE() << "jobstate serve did not print its URL; printed: " << p.first_line
                    << "\nlog: " << read_file(log_path_);
      return;
    }
    url_ = p.url;
    port_ = static_cast<uint16_t>(std::stoi(url_.substr(url_.rfind(':') + 1)));
  }

  std::string data_dir_;
  std::string log_path_;
  std::string url_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// A suite of tests sharing one server: started once for the suite on a fresh
// data directory under dir_, with a Client for it in every test. Suites run
// one after another, so each derived suite has the statics to itself.
class SharedServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    server_ = new ServerProcess(dir_->sub("data"));
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_FALSE(server_->url().empty());
    options_.base_url = server_->url();
    client_ = std::make_unique<client::Client>(options_);
  }

  static inline TempDir* dir_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  client::ClientOptions options_;  // base_url: server_
  std::unique_ptr<client::Client> client_;
};

// For tests that stop, freeze or restart the server: each starts its own.
class OwnServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(server_.url().empty());
    options_.base_url = server_.url();
  }

  TempDir dir_;
  ServerProcess server_{dir_.sub("data")};
  client::ClientOptions options_;  // base_url: server_
};

}  // namespace jobstate::testing
