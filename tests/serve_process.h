// The real `jobstate serve` binary as a child process, for tests that need a
// server they can signal (SIGKILL, SIGTERM) and start again on the same data.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace jobstate::testing {

// `jobstate serve ARGS...` with stdout and stderr in a file, and the URL it
// prints once it serves ("jobstate serving on http://HOST:PORT ..."). The
// URL stays empty when the server exits, or prints nothing within 60 s.
// The destructor SIGKILLs a server still running.
class ServeProcess {
 public:
  ServeProcess(std::vector<std::string> args, const std::string& out_path) : out_path_(out_path) {
    args.insert(args.begin(), {JOBSTATE_BIN, "serve"});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (out >= 0) {
        dup2(out, STDOUT_FILENO);
        dup2(out, STDERR_FILENO);
      }
      execv(JOBSTATE_BIN, argv.data());
      _exit(127);
    }
    const auto end = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < end && url_.empty()) {
      const std::string text = output();
      auto at = text.find("serving on http://");
      if (at != std::string::npos) {
        auto start = at + std::string("serving on ").size();
        auto stop = text.find_first_of(" \n", start);
        if (stop != std::string::npos) url_ = text.substr(start, stop - start);
      }
      if (url_.empty()) {
        if (reaped()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }
  // `jobstate serve --data-dir D --listen 127.0.0.1:0 --log-level warn`.
  ServeProcess(const std::string& data_dir, const std::string& out_path)
      : ServeProcess({"--data-dir", data_dir, "--listen", "127.0.0.1:0", "--log-level", "warn"},
                     out_path) {}
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;
  ~ServeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  const std::string& url() const { return url_; }
  std::string output() const {
    std::ifstream in(out_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // The exit status (as from waitpid), or nullopt when it has not exited
  // within `limit`.
  std::optional<int> wait_exit(std::chrono::seconds limit = std::chrono::seconds(60)) {
    const auto end = Clock::now() + limit;
    while (pid_ > 0 && Clock::now() < end) {
      if (reaped()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return exit_status_;
  }

 private:
  using Clock = std::chrono::steady_clock;
  // Reaps the child if it has exited; true when it has.
  bool reaped() {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
    pid_ = -1;
    exit_status_ = status;
    return true;
  }

  std::string out_path_;
  pid_t pid_ = -1;
  std::string url_;
  std::optional<int> exit_status_;  // once reaped
};

}  // namespace jobstate::testing
