// work_on_claims: the engine of `jobstate work` (run_command.h).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "jobstate/job_run.h"
#include "jobstate/run_command.h"

namespace jobstate::client {

namespace {

int g_stop_pipe_write = -1;  // written by the signal handler only

void note_stop_signal(int) {
  const int saved = errno;
  const unsigned char byte = 1;
  if (g_stop_pipe_write >= 0) (void)!write(g_stop_pipe_write, &byte, 1);
  errno = saved;
}

// SIGTERM, SIGINT and SIGHUP become bytes on a pipe for the work loop's
// lifetime; the previous handlers come back afterwards.
class StopSignals {
 public:
  StopSignals() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return;
    read_fd_ = fds[0];
    g_stop_pipe_write = fds[1];
    struct sigaction sa {};
    sa.sa_handler = note_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &sa, &previous_[i]);
  }
  ~StopSignals() {
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &previous_[i], nullptr);
    if (g_stop_pipe_write >= 0) close(g_stop_pipe_write);
    g_stop_pipe_write = -1;
    if (read_fd_ >= 0) close(read_fd_);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  int fd() const { return read_fd_; }

 private:
  static constexpr std::array<int, 3> kSignals = {SIGTERM, SIGINT, SIGHUP};
  std::array<struct sigaction, 3> previous_{};
  int read_fd_ = -1;
};

}  // namespace

int work_on_claims(const WorkOptions& options) {
  auto log = options.log ? options.log : [](const std::string& m) {
    std::fprintf(stderr, "jobstate work: %s\n", m.c_str());
  };
  if (options.types.empty() || options.argv.empty() || options.concurrency < 1) {
    log("needs at least one --type, a command, and --concurrency of 1 or more");
    return 2;
  }
  const std::string worker = options.worker.empty() ? default_worker_name() : options.worker;
  std::atomic<bool> draining{false};
  std::atomic<bool> terminate{false};
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Client*> claimers;  // guarded by mu: aborted when the drain begins

  StopSignals signals;
  auto loop = [&](int slot) {
    ClientOptions claim_options = options.client;
    Client claimer(claim_options);
    {
      std::lock_guard<std::mutex> lock(mu);
      if (draining) return;
      claimers.push_back(&claimer);
    }
    const std::string me = options.concurrency > 1 ? worker + "#" + std::to_string(slot) : worker;
    while (!draining) {
      auto claimed = claimer.claim(options.types, me, options.claim_wait_s);
      if (!claimed) {
        if (claimed.problem().slug == "aborted" || draining) break;
        log("claim failed: " + claimed.problem().describe() + "; trying again in 1 s");
        std::unique_lock<std::mutex> lock(mu);
        cv.wait_for(lock, std::chrono::seconds(1), [&] { return draining.load(); });
        continue;
      }
      if (!*claimed) continue;  // nothing within the wait: claim again
      Job job = std::move(**claimed);
      JobRunOptions run_options;
      run_options.worker = me;
      auto run = JobRun::adopt(options.client, run_options, job);
      log("job " + job.id + " (" + job.type + ", attempt " +
          std::to_string(job.raw.value("attempt", 1)) + ") claimed");
      ProcessSpec spec;
      spec.argv = options.argv;
      const std::string params = job.params.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      spec.env = {"JOBSTATE_JOB_ID=" + job.id, "JOBSTATE_SERVER=" + options.client.base_url,
                  "JOBSTATE_PARAMS=" + params,
                  "JOBSTATE_ATTEMPT=" + std::to_string(job.raw.value("attempt", 1))};
      spec.stdin_text = params;
      spec.cancel_grace_ms = options.cancel_grace_ms;
      spec.stderr_tail_bytes = options.stderr_tail_bytes;
      spec.stdout_fd = options.stdout_fd;
      spec.stderr_fd = options.stderr_fd;
      spec.log = [&log, id = job.id](const std::string& m) { log("job " + id + ": " + m); };
      spec.terminate = &terminate;
      const int status = run_command_for_job(*run, spec);
      log("job " + job.id + " done: the command exited with status " + std::to_string(status));
      run.reset();  // reports "abandoned" only if nothing was reported
    }
    std::lock_guard<std::mutex> lock(mu);
    std::erase(claimers, &claimer);
  };

  log("claiming " + std::to_string(options.concurrency) + " at a time as " + worker + " from " +
      options.client.base_url);
  std::vector<std::thread> threads;
  for (int i = 0; i < options.concurrency; ++i) threads.emplace_back(loop, i);

  // The signal thread: this one. First signal: drain; second: stop the commands.
  std::thread waiter([&] {
    for (auto& t : threads) t.join();
    std::lock_guard<std::mutex> lock(mu);
    draining = true;  // every loop ended (it cannot claim any more)
    cv.notify_all();
    if (g_stop_pipe_write >= 0) (void)!write(g_stop_pipe_write, "\0", 1);
  });
  int signals_seen = 0;
  bool loops_done = false;
  while (!loops_done) {
    pollfd p{signals.fd(), POLLIN, 0};
    if (poll(&p, 1, -1) < 0 && errno != EINTR) break;
    unsigned char byte;
    while (read(signals.fd(), &byte, 1) == 1) {
      if (byte == 0) {
        loops_done = true;
        continue;
      }
      if (++signals_seen == 1) {
        log("draining: no new claims; waiting for the running commands (again to stop them)");
        std::lock_guard<std::mutex> lock(mu);
        draining = true;
        for (Client* c : claimers) c->abort_calls();
        cv.notify_all();
      } else if (!terminate.exchange(true)) {
        log("stopping the running commands");
      }
    }
  }
  waiter.join();
  log("stopped");
  return 0;
}

}  // namespace jobstate::client
