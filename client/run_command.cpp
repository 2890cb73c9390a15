#include "jobstate/run_command.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

#include "jobstate/job_run.h"
#include "workers/exit_outcome.h"
#include "workers/progress_line.h"
#include "workers/stderr_tail.h"

extern char** environ;

namespace jobstate::client {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// A line longer than this is passed through in pieces and never taken as
// the result (the server accepts bodies up to 1 MiB).
constexpr size_t kMaxLineBytes = 512u << 10;
// After the command exits, output still buffered in the pipes is read for at
// most this long: a grandchild holding the pipe open must not hang the runner.
constexpr int64_t kDrainAfterExitMs = 500;
constexpr int kPollIntervalMs = 100;

int g_signal_pipe_write = -1;  // written by the signal handler only

void forward_signal_handler(int sig, siginfo_t* info, void*) {
  // A terminal's Ctrl-C (sent by the kernel) reaches the command directly,
  // being in the same process group: forwarding it would deliver it twice.
  if (info && info->si_code == SI_KERNEL) return;
  const int saved = errno;
  if (g_signal_pipe_write >= 0) {
    const unsigned char byte = static_cast<unsigned char>(sig);
    (void)!write(g_signal_pipe_write, &byte, 1);
  }
  errno = saved;
}

// Installs the forwarding handlers for the runner's lifetime.
class SignalForwarding {
 public:
  explicit SignalForwarding(int write_fd) {
    g_signal_pipe_write = write_fd;
    struct sigaction sa {};
    sa.sa_sigaction = forward_signal_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &sa, &previous_[i]);
  }
  ~SignalForwarding() {
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &previous_[i], nullptr);
    g_signal_pipe_write = -1;
  }
  SignalForwarding(const SignalForwarding&) = delete;
  SignalForwarding& operator=(const SignalForwarding&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals = {SIGTERM, SIGINT, SIGHUP};
  std::array<struct sigaction, 3> previous_{};
};

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A pipe with both ends close-on-exec (the child dup2()s what it needs).
bool make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return true;
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a closed stdout must not stop the command
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// What the command's stdout amounted to, fed chunk by chunk.
class StdoutLines {
 public:
  StdoutLines(JobRun& run, int passthrough_fd) : run_(run), fd_(passthrough_fd) {}

  void add(std::string_view data) {
    buffer_.append(data);
    size_t start = 0;
    while (true) {
      size_t nl = buffer_.find('\n', start);
      if (nl == std::string::npos) break;
      line(std::string_view(buffer_).substr(start, nl - start), true);
      start = nl + 1;
    }
    buffer_.erase(0, start);
    if (buffer_.size() > kMaxLineBytes) {
      // No newline in sight: pass it on, and it cannot be the result.
      write_all(fd_, buffer_);
      buffer_.clear();
      last_line_.clear();
      in_long_line_ = true;
    }
  }
  // At EOF: an unterminated last line is still a line.
  void finish() {
    if (!buffer_.empty()) line(buffer_, false);
    buffer_.clear();
  }
  const std::string& last_line() const { return last_line_; }

 private:
  void line(std::string_view text, bool had_newline) {
    if (in_long_line_) {
      // The rest of a line already passed through in pieces.
      in_long_line_ = false;
      write_all(fd_, text);
      if (had_newline) write_all(fd_, "\n");
      return;
    }
    std::string_view trimmed = text;
    if (!trimmed.empty() && trimmed.back() == '\r') trimmed.remove_suffix(1);
    if (auto progress = workers::parse_progress_line(trimmed)) {
      run_.set_progress(progress->fraction, std::string(progress->message), nullptr);
      return;
    }
    write_all(fd_, text);
    if (had_newline) write_all(fd_, "\n");
    if (trimmed.find_first_not_of(" \t") != std::string_view::npos)
      last_line_ = std::string(trimmed);
  }

  JobRun& run_;
  int fd_;
  std::string buffer_;
  std::string last_line_;
  bool in_long_line_ = false;
};

}  // namespace

std::optional<Progress> parse_progress_line(std::string_view line) {
  auto parsed = workers::parse_progress_line(line);
  if (!parsed) return std::nullopt;
  Progress p;
  p.fraction = parsed->fraction;
  if (!parsed->message.empty()) p.message = std::string(parsed->message);
  return p;
}

int run_command_as_job(const RunCommandOptions& options) {
  auto log = options.log ? options.log : [](const std::string& m) {
    std::fprintf(stderr, "jobstate run: %s\n", m.c_str());
  };
  if (options.argv.empty()) {
    log("no command given");
    return kRunExitNoJob;
  }

  JobRunOptions job_options;
  job_options.create.type = options.type;
  job_options.create.params = {{"argv", options.argv}};
  job_options.create.heartbeat_timeout_s = options.heartbeat_timeout_s;
  job_options.create.execution_timeout_s = options.execution_timeout_s;
  job_options.create.labels = options.labels;
  auto started = JobRun::start(options.client, job_options);
  if (!started) {
    log("cannot create and start the job: " + started.problem().describe());
    return kRunExitNoJob;
  }
  JobRun& run = **started;
  log("job " + run.job_id() + " started (" + options.client.base_url + "/v1/jobs/" + run.job_id() +
      ")");
  ProcessSpec spec;
  spec.argv = options.argv;
  spec.env = {"JOBSTATE_JOB_ID=" + run.job_id(), "JOBSTATE_SERVER=" + options.client.base_url};
  spec.cancel_grace_ms = options.cancel_grace_ms;
  spec.stderr_tail_bytes = options.stderr_tail_bytes;
  spec.stdout_fd = options.stdout_fd;
  spec.stderr_fd = options.stderr_fd;
  spec.log = log;
  spec.forward_signals = true;
  return run_command_for_job(run, spec);
}

int run_command_for_job(JobRun& run, const ProcessSpec& spec) {
  const auto& log = spec.log;
  // Everything the child needs is prepared before fork(): after it, only
  // async-signal-safe calls (the parent has threads).
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_storage = spec.env;
  std::vector<char*> envp;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    bool replaced = false;
    for (const auto& mine : env_storage)
      replaced = replaced || entry.substr(0, entry.find('=') + 1) == mine.substr(0, mine.find('=') + 1);
    if (!replaced) envp.push_back(*e);
  }
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  // The command's stdin: the given text (a sealed in-memory file), or ours.
  Fd input;
  if (spec.stdin_text) {
    input.reset(memfd_create("jobstate-stdin", MFD_CLOEXEC));
    if (input.get() < 0 || (write_all(input.get(), *spec.stdin_text), lseek(input.get(), 0, SEEK_SET)) != 0) {
      const std::string why = strerror(errno);
      run.fail("spawn_failed", "cannot prepare stdin: " + why, {{"argv", spec.argv}});
      log("cannot prepare stdin: " + why);
      return kRunExitSpawnFailed;
    }
  }

  Fd out_read, out_write, err_read, err_write, exec_read, exec_write, sig_read, sig_write;
  if (!make_pipe(out_read, out_write) || !make_pipe(err_read, err_write) ||
      !make_pipe(exec_read, exec_write) || !make_pipe(sig_read, sig_write)) {
    const std::string why = strerror(errno);
    run.fail("spawn_failed", "cannot create pipes: " + why, {{"argv", spec.argv}});
    log("cannot create pipes: " + why);
    return kRunExitSpawnFailed;
  }
  // Non-blocking both ways: the handler must never block, and the loop
  // drains the pipe until it is empty.
  fcntl(sig_write.get(), F_SETFL, O_NONBLOCK);
  fcntl(sig_read.get(), F_SETFL, O_NONBLOCK);
  std::optional<SignalForwarding> forwarding;
  if (spec.forward_signals) forwarding.emplace(sig_write.get());

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const std::string why = strerror(errno);
    run.fail("spawn_failed", "fork failed: " + why, {{"argv", spec.argv}});
    log("fork failed: " + why);
    return kRunExitSpawnFailed;
  }
  if (pid == 0) {
#ifdef __linux__
    // The command must not outlive a runner killed outright.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(kRunExitSpawnFailed);
#endif
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);  // an ignored signal would stay ignored across exec
    if (input.get() >= 0) dup2(input.get(), STDIN_FILENO);
    dup2(out_write.get(), STDOUT_FILENO);
    dup2(err_write.get(), STDERR_FILENO);
    execvpe(argv[0], argv.data(), envp.data());
    const int err = errno;
    (void)!write(exec_write.get(), &err, sizeof err);
    _exit(kRunExitSpawnFailed);
  }
  out_write.reset();
  err_write.reset();
  exec_write.reset();

  // exec succeeded when the close-on-exec pipe closes without data.
  int exec_errno = 0;
  ssize_t got;
  do {
    got = read(exec_read.get(), &exec_errno, sizeof exec_errno);
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    int ignored;
    while (waitpid(pid, &ignored, 0) < 0 && errno == EINTR) {
    }
    const std::string message = "cannot run '" + spec.argv[0] + "': " + strerror(exec_errno);
    log(message);
    auto r = run.fail("spawn_failed", message, {{"errno", exec_errno}, {"argv", spec.argv}});
    if (!r) log("reporting the failure failed: " + r.problem().describe());
    return kRunExitSpawnFailed;
  }

  StdoutLines stdout_lines(run, spec.stdout_fd);
  workers::StderrTail stderr_tail(spec.stderr_tail_bytes);
  bool out_open = true, err_open = true;
  std::optional<workers::ProcessExit> end;
  Clock::time_point reaped_at{};
  bool term_sent = false, kill_sent = false, lost_logged = false;
  Clock::time_point term_sent_at{};
  char buf[65536];

  while (true) {
    if (!end) {
      int status = 0;
      pid_t w = waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        end = workers::ProcessExit::from_wait_status(status);
        if (end) reaped_at = Clock::now();
      }
    }
    if (end &&
        ((!out_open && !err_open) || Clock::now() - reaped_at > milliseconds(kDrainAfterExitMs)))
      break;

    const bool told_to_end = spec.terminate && spec.terminate->load();
    if (!end && (run.cancel_requested() || told_to_end)) {
      if (!term_sent) {
        log(told_to_end ? "stopping: sending SIGTERM to the command"
                        : "cancel requested: sending SIGTERM to the command");
        kill(pid, SIGTERM);
        term_sent = true;
        term_sent_at = Clock::now();
      } else if (!kill_sent &&
                 Clock::now() - term_sent_at > milliseconds(spec.cancel_grace_ms)) {
        log("the command ignored SIGTERM: sending SIGKILL");
        kill(pid, SIGKILL);
        kill_sent = true;
      }
    }
    if (run.lost() && !lost_logged) {
      log("the server finished job " + run.job_id() + " as " + run.lost_state() +
          " (missed heartbeats?); the command keeps running");
      lost_logged = true;
    }

    pollfd fds[3];
    nfds_t n = 0;
    int out_index = -1, err_index = -1;
    fds[n++] = {sig_read.get(), POLLIN, 0};
    if (out_open) {
      out_index = static_cast<int>(n);
      fds[n++] = {out_read.get(), POLLIN, 0};
    }
    if (err_open) {
      err_index = static_cast<int>(n);
      fds[n++] = {err_read.get(), POLLIN, 0};
    }
    int ready = poll(fds, n, kPollIntervalMs);
    if (ready < 0) {
      if (errno == EINTR) continue;
      log(std::string("poll failed: ") + strerror(errno));
      break;
    }
    if (fds[0].revents & POLLIN) {
      unsigned char sig;
      while (read(sig_read.get(), &sig, 1) == 1)
        if (!end) kill(pid, sig);  // forwarded; the command decides how to end
    }
    auto pump = [&](int index, int fd, bool& open, auto&& sink) {
      if (index < 0 || !(fds[index].revents & (POLLIN | POLLHUP | POLLERR))) return;
      ssize_t r = read(fd, buf, sizeof buf);
      if (r > 0) {
        sink(std::string_view(buf, static_cast<size_t>(r)));
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        open = false;
      }
    };
    pump(out_index, out_read.get(), out_open, [&](std::string_view d) { stdout_lines.add(d); });
    pump(err_index, err_read.get(), err_open, [&](std::string_view d) {
      write_all(spec.stderr_fd, d);
      stderr_tail.add(d);
    });
  }
  stdout_lines.finish();
  if (!end) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    end = workers::ProcessExit::from_wait_status(status).value_or(workers::ProcessExit::unknown());
  }

  // kUnknown cannot come from waitpid() without WUNTRACED; 1 keeps it a failure.
  const int exit_status = end->kind == workers::ProcessExit::Kind::kExited     ? end->code
                          : end->kind == workers::ProcessExit::Kind::kSignaled ? 128 + end->signal
                                                                               : 1;
  Result<Job> reported = Problem{};
  if (run.lost()) {
    log("not reporting: the job is already " + run.lost_state());
    return exit_status;
  }
  if (term_sent && run.cancel_requested()) {
    reported = run.cancelled("cancel requested; the command " + workers::describe_exit(*end));
  } else if (term_sent) {
    // The worker stopped, not the task: "abandoned" lets a retry policy run it again.
    reported = run.fail("abandoned", "the worker stopped; the command " + workers::describe_exit(*end),
                        {{"argv", spec.argv}});
  } else {
    // `jobstate run` passes stderr through, so the message does not repeat it;
    // run_command.h promises signal_name in the details.
    constexpr workers::ExitOutcomeFormat kFormat{.signal_name_in_details = true,
                                                 .last_stderr_line_in_message = false};
    auto outcome = workers::exit_outcome(*end, stdout_lines.last_line(), stderr_tail, kFormat);
    if (outcome.succeeded) {
      reported = run.succeed(outcome.result);
    } else {
      reported =
          run.fail(outcome.error.at("code").get<std::string>(),
                   outcome.error.at("message").get<std::string>(), outcome.error.at("details"));
    }
  }
  if (!reported) log("reporting the outcome failed: " + reported.problem().describe());
  return exit_status;
}

}  // namespace jobstate::client
