// ChildProcess: one command started with posix_spawn (no shell), its stdout
// and stderr as non-blocking pipes, and a pidfd that becomes readable when it
// exits, so one thread can watch many children with poll().
//
// The child runs in its own process group (signals reach what it starts
// too), with stdin from /dev/null, default signal dispositions and an empty
// signal mask (the server blocks SIGTERM/SIGINT and ignores SIGPIPE; a child
// must not inherit that), and no file descriptor of the server beyond 0–2.
//
// The owner must call try_reap() until it returns true (no zombies); the
// destructor closes the descriptors but neither kills nor reaps.
// Not thread-safe.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "domain/result.h"
#include "workers/exit_outcome.h"

namespace jobstate::executors {

struct SpawnRequest {
  std::vector<std::string> argv;  // REQUIRES: non-empty. argv[0] without '/' is looked up in PATH.
  std::vector<std::string> env;   // "NAME=value", the child's whole environment
  std::string cwd;                // empty: the caller's working directory
};

class ChildProcess {
 public:
  // Starts the command. kInvalidRequest with the reason ("cannot run 'x': No
  // such file or directory") when it cannot be started; kInternal when the
  // server is out of descriptors or processes.
  static Result<ChildProcess> spawn(const SpawnRequest& request);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // Readable when the child exited; -1 when the kernel has no pidfd (poll
  // with a short timeout and call try_reap() instead).
  int exit_fd() const { return pidfd_; }
  // -1 once closed (after EOF).
  int stdout_fd() const { return stdout_fd_; }
  int stderr_fd() const { return stderr_fd_; }

  // Reads what is available without blocking into `out`, at most max_bytes.
  // Returns false at EOF or on an error (the descriptor is then closed).
  bool read_stdout(std::string& out, size_t max_bytes);
  bool read_stderr(std::string& out, size_t max_bytes);

  // Sends `sig` to the child's process group (falls back to the child alone).
  // Does nothing once the child was reaped.
  void signal_group(int sig);

  // Whether the child has exited, without reaping it: its process group
  // can still be signalled safely (say, to stop what it left running).
  bool exited() const;

  // Reaps the child when it has exited: returns true then, and status()
  // holds how it ended. Never blocks.
  bool try_reap();
  bool reaped() const { return status_.has_value(); }
  const std::optional<workers::ProcessExit>& status() const { return status_; }

  // Closes stdout/stderr (after the child exited and its output was read).
  void close_pipes();

 private:
  ChildProcess() = default;
  static bool read_fd(int& fd, std::string& out, size_t max_bytes);
  void close_all();

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  std::optional<workers::ProcessExit> status_;
};

}  // namespace jobstate::executors
