// Helpers for the client, run and examples tests: the `jobstate serve` they
// talk to and the fixtures they share (a server for the suite, or one of the
// test's own), waiting for a condition with a bound, and starting a program
// that announces its URL (the example services). Running other programs is
// in child_process.h, the server process itself in serve_process.h. POSIX
// only.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "jobstate/client.h"
#include "tests/child_process.h"
#include "tests/serve_process.h"
#include "tests/test_util.h"

namespace jobstate::testing {

// Polls cond() every 20 ms until it holds or `bound` passes.
inline bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds bound) {
  const auto deadline = SteadyClock::now() + bound;
  while (true) {
    if (cond()) return true;
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// A child that says where it listens on the first line of its stdout
// ("... on http://HOST:PORT ..."), as the example services do.
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

// The server the client tests use: a 100 ms watchdog interval (so expired
// heartbeats are seen quickly), output in <data_dir>.log, and a clean stop
// (SIGTERM) at teardown.
inline ServeOptions client_test_server(const std::string& data_dir) {
  return {.data_dir = data_dir,
          .output_path = data_dir + ".log",
          .flags = {"--watchdog-interval-ms", "100"},
          .teardown = Teardown::kTerminate};
}

// A suite of tests sharing one server: started once for the suite on a fresh
// data directory under dir_, with a Client for it in every test. Suites run
// one after another, so each derived suite has the statics to itself.
class SharedServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    server_ = new ServeProcess(client_test_server(dir_->sub("data")));
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_FALSE(server_->url().empty()) << server_->output();
    options_.base_url = server_->url();
    client_ = std::make_unique<client::Client>(options_);
  }

  static inline TempDir* dir_ = nullptr;
  static inline ServeProcess* server_ = nullptr;
  client::ClientOptions options_;  // base_url: server_
  std::unique_ptr<client::Client> client_;
};

// For tests that stop, freeze or restart the server: each starts its own.
class OwnServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(server_.url().empty()) << server_.output();
    options_.base_url = server_.url();
  }

  TempDir dir_;
  ServeProcess server_{client_test_server(dir_.sub("data"))};
  client::ClientOptions options_;  // base_url: server_
};

}  // namespace jobstate::testing
