// The real `jobstate serve` binary as a child process: the one way tests start
// a server they can signal (SIGKILL, SIGTERM, SIGSTOP), restart on the same
// data, or watch refuse to start.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "child_process.h"
#include "test_util.h"

namespace jobstate::testing {

// What ~ServeProcess does to a server still running.
enum class Teardown {
  kKill,       // SIGKILL at once, as a crash would: nothing is flushed or answered
  kTerminate,  // stop(): SIGTERM, then SIGKILL if it has not exited within 20 s
};

// How a ServeProcess starts the server, and how it ends it.
struct ServeOptions {
  // --data-dir. Required unless `store` is given.
  std::string data_dir;
  // Gets the server's stdout and stderr; truncated at each start. Required.
  std::string output_path;
  // Passed after `--data-dir D --listen 127.0.0.1:PORT`. Default: none.
  std::vector<std::string> flags;
  // What the destructor does to a server still running. Default: kKill.
  Teardown teardown = Teardown::kKill;
  // --store (a postgresql:// URI) instead of --data-dir. Default: none.
  std::string store = {};
};

// `jobstate serve --data-dir D --listen 127.0.0.1:0 FLAGS...` in its own
// process group, and the URL it prints once it serves ("jobstate serving on
// http://HOST:PORT ..."). The URL stays empty when the server exits, or
// prints nothing within 60 s; the test decides whether that is a failure.
class ServeProcess {
 public:
  explicit ServeProcess(ServeOptions options) : options_(std::move(options)) { start(0); }
  // `--log-level warn`, output to `output_path`, SIGKILL at teardown.
  ServeProcess(const std::string& data_dir, const std::string& output_path)
      : ServeProcess(
            {.data_dir = data_dir, .output_path = output_path, .flags = {"--log-level", "warn"}}) {}
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;
  ~ServeProcess() {
    if (options_.teardown == Teardown::kTerminate) {
      stop();
    } else if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // "http://127.0.0.1:PORT"; empty when it did not come up.
  const std::string& url() const { return url_; }
  // Everything it has written to stdout and stderr since it last started.
  std::string output() const { return read_file(options_.output_path); }

  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Freezes the process: connections are accepted by the kernel, nothing is answered.
  void pause() { signal(SIGSTOP); }
  void resume() { signal(SIGCONT); }
  // The exit status (as from waitpid), or nullopt when it has not exited
  // within `limit`.
  std::optional<int> wait_exit(std::chrono::seconds limit = std::chrono::seconds(60)) {
    const auto end = SteadyClock::now() + limit;
    while (pid_ > 0 && SteadyClock::now() < end) {
      if (reaped()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return exit_status_;
  }
  // SIGTERM, then SIGKILL if it has not stopped within 20 s.
  void stop() {
    if (pid_ <= 0) return;
    terminate_process(pid_, std::chrono::seconds(20));
    pid_ = -1;
  }
  // Starts again on the same data directory and port.
  void restart() {
    stop();
    start(port_);
  }

 private:
  void start(uint16_t port) {
    url_.clear();
    exit_status_.reset();
    std::vector<std::string> args = {JOBSTATE_BIN, "serve"};
    if (options_.store.empty())
      args.insert(args.end(), {"--data-dir", options_.data_dir});
    else
      args.insert(args.end(), {"--store", options_.store});
    args.insert(args.end(), {"--listen", "127.0.0.1:" + std::to_string(port)});
    args.insert(args.end(), options_.flags.begin(), options_.flags.end());
    // Both descriptors append, so stdout and stderr do not overwrite each other.
    int out_fd =
        ::open(options_.output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    pid_ = spawn_process(args, out_fd, options_.output_path);
    ::close(out_fd);
    const auto end = SteadyClock::now() + std::chrono::seconds(60);
    while (pid_ > 0 && SteadyClock::now() < end && url_.empty()) {
      const std::string text = output();
      auto at = text.find("serving on http://");
      if (at != std::string::npos) {
        auto from = at + std::string("serving on ").size();
        auto to = text.find_first_of(" \n", from);
        if (to != std::string::npos) url_ = text.substr(from, to - from);
      }
      if (url_.empty()) {
        if (reaped()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    if (!url_.empty()) port_ = static_cast<uint16_t>(std::stoi(url_.substr(url_.rfind(':') + 1)));
  }
  // Reaps the child if it has exited; true when it has.
  bool reaped() {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
    pid_ = -1;
    exit_status_ = status;
    return true;
  }

  ServeOptions options_;
  pid_t pid_ = -1;
  std::string url_;
  uint16_t port_ = 0;               // once it has served
  std::optional<int> exit_status_;  // once reaped
};

}  // namespace jobstate::testing
