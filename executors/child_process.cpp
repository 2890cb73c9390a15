#include "executors/child_process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <utility>

namespace jobstate::executors {

namespace {
std::string errno_text(int err) {
  char buf[256];
  // GNU strerror_r returns the message (maybe not in buf).
  return std::string(strerror_r(err, buf, sizeof buf));
}

// Owns the raw descriptors until spawn() hands them to the ChildProcess.
struct Fds {
  int fd[6] = {-1, -1, -1, -1, -1, -1};  // out_r, out_w, err_r, err_w, null, spare
  ~Fds() {
    for (int& f : fd)
      if (f >= 0) ::close(f);
  }
  int take(int i) { return std::exchange(fd[i], -1); }
};

// posix_spawn attributes and file actions, destroyed on every path.
struct SpawnSetup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  bool attr_ok = false, actions_ok = false;
  ~SpawnSetup() {
    if (attr_ok) posix_spawnattr_destroy(&attr);
    if (actions_ok) posix_spawn_file_actions_destroy(&actions);
  }
};
}  // namespace

Result<ChildProcess> ChildProcess::spawn(const SpawnRequest& request) {
  if (request.argv.empty()) return make_error(ErrorCode::kInvalidRequest, "empty command");
  Fds fds;
  if (::pipe2(&fds.fd[0], O_CLOEXEC) != 0 || ::pipe2(&fds.fd[2], O_CLOEXEC) != 0)
    return make_error(ErrorCode::kInternal, "pipe: " + errno_text(errno));
  fds.fd[4] = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fds.fd[4] < 0) return make_error(ErrorCode::kInternal, "/dev/null: " + errno_text(errno));

  SpawnSetup setup;
  if (posix_spawnattr_init(&setup.attr) != 0)
    return make_error(ErrorCode::kInternal, "posix_spawnattr_init");
  setup.attr_ok = true;
  if (posix_spawn_file_actions_init(&setup.actions) != 0)
    return make_error(ErrorCode::kInternal, "posix_spawn_file_actions_init");
  setup.actions_ok = true;

  sigset_t empty_mask, defaults;
  sigemptyset(&empty_mask);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM})
    sigaddset(&defaults, sig);
  int rc = posix_spawnattr_setflags(
      &setup.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (rc == 0) rc = posix_spawnattr_setpgroup(&setup.attr, 0);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&setup.attr, &empty_mask);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&setup.attr, &defaults);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&setup.actions, fds.fd[4], 0);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&setup.actions, fds.fd[1], 1);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&setup.actions, fds.fd[3], 2);
  // Nothing else of the server (sockets, the store's files) leaks into the child,
  // whether or not whoever opened it asked for O_CLOEXEC.
  if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);
  if (rc == 0 && !request.cwd.empty())
    rc = posix_spawn_file_actions_addchdir_np(&setup.actions, request.cwd.c_str());
  if (rc != 0) return make_error(ErrorCode::kInternal, "posix_spawn setup: " + errno_text(rc));

  std::vector<char*> argv;
  for (const auto& a : request.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : request.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  pid_t pid = -1;
  const bool search_path = request.argv[0].find('/') == std::string::npos;
  // glibc reports exec failures (ENOENT, EACCES, a bad cwd) as the return value.
  rc = search_path
           ? posix_spawnp(&pid, argv[0], &setup.actions, &setup.attr, argv.data(), envp.data())
           : posix_spawn(&pid, argv[0], &setup.actions, &setup.attr, argv.data(), envp.data());
  if (rc != 0) {
    std::string why = errno_text(rc);
    if (!request.cwd.empty() && rc == ENOENT && ::access(request.cwd.c_str(), F_OK) != 0)
      why += " (working directory " + request.cwd + ")";
    const auto code = (rc == EAGAIN || rc == ENOMEM || rc == EMFILE || rc == ENFILE)
                          ? ErrorCode::kInternal
                          : ErrorCode::kInvalidRequest;
    return make_error(code, "cannot run '" + request.argv[0] + "': " + why);
  }

  ChildProcess child;
  child.pid_ = pid;
  child.stdout_fd_ = fds.take(0);
  child.stderr_fd_ = fds.take(2);
  // The write ends and /dev/null close with `fds`: the child holds its own copies.
  for (int fd : {child.stdout_fd_, child.stderr_fd_})
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  // The child cannot have been reaped yet, so its pid still names it.
  // The raw syscall: glibc 2.36's <sys/pidfd.h> lacks extern "C" (fixed in 2.37).
  child.pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (child.pidfd_ >= 0) ::fcntl(child.pidfd_, F_SETFD, FD_CLOEXEC);
  return child;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept {
  *this = std::move(other);
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    close_all();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::exchange(other.pidfd_, -1);
    stdout_fd_ = std::exchange(other.stdout_fd_, -1);
    stderr_fd_ = std::exchange(other.stderr_fd_, -1);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  close_all();
}

void ChildProcess::close_all() {
  close_pipes();
  if (pidfd_ >= 0) ::close(std::exchange(pidfd_, -1));
}

void ChildProcess::close_pipes() {
  if (stdout_fd_ >= 0) ::close(std::exchange(stdout_fd_, -1));
  if (stderr_fd_ >= 0) ::close(std::exchange(stderr_fd_, -1));
}

bool ChildProcess::read_fd(int& fd, std::string& out, size_t max_bytes) {
  if (fd < 0) return false;
  char buf[16384];
  size_t total = 0;
  while (total < max_bytes) {
    ssize_t n = ::read(fd, buf, std::min(sizeof buf, max_bytes - total));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      total += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    ::close(std::exchange(fd, -1));  // EOF or a read error: nothing more comes
    return false;
  }
  return true;
}

bool ChildProcess::read_stdout(std::string& out, size_t max_bytes) {
  return read_fd(stdout_fd_, out, max_bytes);
}
bool ChildProcess::read_stderr(std::string& out, size_t max_bytes) {
  return read_fd(stderr_fd_, out, max_bytes);
}

void ChildProcess::signal_group(int sig) {
  if (pid_ <= 0 || status_) return;
  // Until reaped, the child's pid (and so its group id) cannot be reused.
  if (::kill(-pid_, sig) != 0) ::kill(pid_, sig);
}

bool ChildProcess::exited() const {
  if (status_) return true;
  if (pid_ <= 0) return false;
  siginfo_t info{};
  int r;
  do {
    r = ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return true;  // ECHILD: gone already; try_reap() will say so
  return info.si_pid == pid_;
}

bool ChildProcess::try_reap() {
  if (status_) return true;
  if (pid_ <= 0) return false;
  int wstatus = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &wstatus, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  if (r < 0) {
    status_ = workers::ProcessExit::unknown();  // ECHILD: someone else reaped it
  } else if (auto s = workers::ProcessExit::from_wait_status(wstatus)) {
    status_ = *s;
  } else {
    return false;  // stopped or continued: still alive
  }
  if (pidfd_ >= 0) ::close(std::exchange(pidfd_, -1));
  return true;
}

}  // namespace jobstate::executors
