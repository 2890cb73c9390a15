#include "executors/executor_pool.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "executors/child_process.h"
#include "store/lease.h"
#include "workers/abandoned_jobs.h"
#include "workers/heartbeat_pacing.h"

extern char** environ;

namespace jobstate::executors {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;
using std::chrono::milliseconds;

namespace {
constexpr size_t kReadPerRoundBytes = size_t{64} * 1024;  // per pipe per poll round: fairness
constexpr size_t kDrainAfterExitBytes = size_t{4} * 1024 * 1024;  // what is read after the exit
constexpr int kNoPidfdPollMs = 50;                                // when the kernel has no pidfd
constexpr int kMaxReportAttempts = 5;
constexpr milliseconds kReportRetryDelay{500};
constexpr milliseconds kStartRetryDelay{1000};

// The executors' choices of workers/exit_outcome.h (docs/executors.md).
constexpr workers::ExitOutcomeFormat kExitFormat{.signal_name_in_details = false,
                                                 .last_stderr_line_in_message = true};
}  // namespace

// What the writer thread and the controlling thread tell the supervisor.
struct Note {
  enum class Kind { kJob, kStarted, kHeartbeat, kReported } kind = Kind::kJob;
  JobId id;
  // kJob: the job's committed state (the fields the pool needs).
  std::string type;
  JobStatus status = JobStatus::kQueued;
  uint64_t created_seq = 0;
  bool cancel_requested = false;  // kJob; the others: from the answer when it is ok
  std::optional<std::string> lease_hash;  // kJob: the running attempt's
  uint64_t version = 0;                   // kJob; the others: from the answer when it is ok
  // kStarted, kHeartbeat, kReported: the writer's answer.
  bool ok = false;
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  // kReported: the request again, to retry when the writer was unavailable.
  std::optional<CommandRequest> request;
  int attempt = 0;
};

namespace {
// The note carrying the writer's answer to a command the pool submitted; the
// caller adds what only its kind needs.
Note answer_note(Note::Kind kind, const JobId& id, const Result<CommandOutcome>& r) {
  Note n;
  n.kind = kind;
  n.id = id;
  n.ok = r.ok();
  if (r) {
    n.cancel_requested = r->state().cancel_requested;
    n.version = r->state().version;
  } else {
    n.code = r.error().code;
    n.message = r.error().message;
  }
  return n;
}
}  // namespace

struct ExecutorPool::Impl {
  Impl(ExecutorConfig c, ExecutorPoolOptions o, std::atomic<size_t>& active)
      : config(std::move(c)), options(std::move(o)), active_count(active) {
    if (options.worker_name.empty())
      options.worker_name = kExecutorWorkerPrefix + std::to_string(::getpid());
    for (char** e = environ; e && *e; ++e) base_env.emplace_back(*e);
    wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    for (auto& [type, spec] : config.executors) types[type].spec = &spec;
  }
  ~Impl() {
    // A writer callback may still be leaving push(): wait until it has.
    std::lock_guard lock(mu);
    if (wake_fd >= 0) ::close(wake_fd);
  }

  // Thread-safe.
  void push(Note note) {
    std::lock_guard lock(mu);
    if (closed) return;
    notes.push_back(std::move(note));
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof one);
  }

  void loop();

  // --- everything below runs on the supervisor thread only ---
  struct TypeState {
    const ExecutorSpec* spec = nullptr;
    std::set<std::pair<uint64_t, JobId>> pending;  // (created_seq, id): creation order
    std::unordered_map<JobId, uint64_t> pending_seq;
    // Queued jobs whose not_before (a delay, or a retry's backoff) has not
    // come: back to pending at that time.
    std::set<std::pair<TimePoint, std::pair<uint64_t, JobId>>> delayed;
    int active = 0;
    TimePoint retry_after{};
  };
  enum class StopReason { kNone, kCancel, kGone, kShutdown };
  struct Run {
    JobId id;
    TypeState* type = nullptr;
    uint64_t created_seq = 0;
    int64_t heartbeat_interval_ms = 40'000;
    // The attempt's lease (store/lease.h): every report carries it, so no
    // HTTP client can report on an executor's job, and this attempt cannot
    // report on a later one.
    std::string lease_hash = new_lease_hash();
    bool started = false;  // StartJob committed
    uint64_t started_version = 0;  // the job's version the start made
    bool requeued = false;  // the attempt ended by a retry: queue the job again when done
    SpawnRequest spawn;
    std::optional<ChildProcess> child;
    ProcessOutput output;
    bool heartbeat_in_flight = false;
    std::optional<workers::HeartbeatPacer> pacer;  // from the spawn on
    bool cancel_requested = false;
    StopReason stop = StopReason::kNone;
    bool sigterm_sent = false, sigkill_sent = false;
    TimePoint kill_at{}, give_up_at{};
    int64_t grace_ms = 0;
  };
  struct Retry {
    CommandRequest request;
    int attempt;
    TimePoint at;
  };

  void handle(Note& note, TimePoint now);
  void on_job(const Note& note, TimePoint now);
  void on_started(const Note& note, TimePoint now);
  void schedule(TimePoint now);
  void try_start(TypeState& type, const JobId& id, uint64_t created_seq, TimePoint now);
  void terminate(Run& run, StopReason why, TimePoint now);
  void finish(Run& run);
  void timers(TimePoint now);
  void send_heartbeat(Run& run, TimePoint now);
  CommandRequest report(const Run& run, Command command) const;
  void submit_report(CommandRequest request, int attempt = 1);
  void release(const JobId& id);
  void add_pending(TypeState& type, const JobId& id, uint64_t created_seq);
  void remove_pending(TypeState& type, const JobId& id);
  int poll_timeout_ms(TimePoint now) const;

  ExecutorConfig config;
  ExecutorPoolOptions options;
  std::atomic<size_t>& active_count;
  std::vector<std::string> base_env;  // the server's environment at construction
  const ReadModel* jobs = nullptr;
  JobWriter* writer = nullptr;

  std::mutex mu;
  std::deque<Note> notes;       // guarded by mu
  bool stop_requested = false;  // guarded by mu
  bool closed = false;          // guarded by mu: no more notes accepted
  int wake_fd = -1;

  std::map<std::string, TypeState> types;
  std::unordered_map<JobId, std::unique_ptr<Run>> runs;
  std::deque<Retry> retries;
  size_t in_flight = 0;  // writer commands whose answer has not been handled
  bool stopping = false;
};

ExecutorPool::ExecutorPool(ExecutorConfig config, ExecutorPoolOptions options)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(options), active_)) {}

ExecutorPool::~ExecutorPool() {
  stop();
}

const ExecutorConfig& ExecutorPool::config() const {
  return impl_->config;
}

void ExecutorPool::on_commit(const CommitInfo& info) {
  for (const auto& changed : info.changed_jobs) {
    const JobState& job = *changed;
    if (!impl_->config.find(job.type)) continue;
    Note n;
    n.kind = Note::Kind::kJob;
    n.id = job.id;
    n.type = job.type;
    n.status = job.status;
    n.created_seq = job.created_seq;
    n.cancel_requested = job.cancel_requested;
    n.lease_hash = job.lease_hash;
    n.version = job.version;
    impl_->push(std::move(n));
  }
}

Status ExecutorPool::start(const ReadModel& jobs, JobWriter& writer) {
  if (thread_.joinable())
    return make_error(ErrorCode::kInvalidRequest, "executors already started");
  if (impl_->wake_fd < 0) return make_error(ErrorCode::kInternal, "eventfd failed");
  impl_->jobs = &jobs;
  impl_->writer = &writer;
  if (impl_->options.fail_abandoned_at_start) {
    auto abandoned = workers::fail_abandoned_jobs(jobs, writer, kExecutorWorkerPrefix);
    if (!abandoned) return abandoned.error();
  }
  // The thread has not started: this thread may fill its state.
  for (auto& [type, state] : impl_->types) {
    std::optional<uint64_t> before;
    while (true) {
      auto page = jobs.list(ListFilter{JobStatus::kQueued, type}, before, 1000);
      if (!page) return page.error();
      for (const auto& row : page->jobs) {
        auto s = row.to_state();
        if (s) impl_->add_pending(state, s->id, row.created_seq);
      }
      if (!page->next_before_seq) break;
      before = page->next_before_seq;
    }
    if (!state.pending.empty())
      spdlog::info("executors: {} queued job(s) of type {} waiting", state.pending.size(), type);
  }
  thread_ = std::thread([impl = impl_.get()] { impl->loop(); });
  return ok_status();
}

void ExecutorPool::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stop_requested = true;
    if (impl_->wake_fd >= 0) {
      uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(impl_->wake_fd, &one, sizeof one);
    }
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(impl_->mu);
  impl_->closed = true;
  impl_->notes.clear();
}

void ExecutorPool::Impl::add_pending(TypeState& type, const JobId& id, uint64_t created_seq) {
  if (runs.count(id) || !type.pending_seq.emplace(id, created_seq).second) return;
  type.pending.emplace(created_seq, id);
}

void ExecutorPool::Impl::remove_pending(TypeState& type, const JobId& id) {
  auto it = type.pending_seq.find(id);
  if (it == type.pending_seq.end()) return;
  type.pending.erase({it->second, id});
  type.pending_seq.erase(it);
}

void ExecutorPool::Impl::loop() {
  std::vector<pollfd> fds;
  // Which run (and which of its descriptors) each pollfd after the first is.
  enum Which { kStdout, kStderr, kExit };
  std::vector<std::pair<JobId, Which>> owners;
  while (true) {
    TimePoint now = SteadyClock::now();
    fds.assign(1, pollfd{wake_fd, POLLIN, 0});
    owners.clear();
    bool needs_polling = false;
    for (auto& [id, run] : runs) {
      if (!run->child) continue;
      ChildProcess& c = *run->child;
      if (c.stdout_fd() >= 0) {
        fds.push_back({c.stdout_fd(), POLLIN, 0});
        owners.emplace_back(id, kStdout);
      }
      if (c.stderr_fd() >= 0) {
        fds.push_back({c.stderr_fd(), POLLIN, 0});
        owners.emplace_back(id, kStderr);
      }
      if (c.exit_fd() >= 0) {
        fds.push_back({c.exit_fd(), POLLIN, 0});
        owners.emplace_back(id, kExit);
      } else {
        needs_polling = true;
      }
    }
    int timeout = poll_timeout_ms(now);
    if (needs_polling && (timeout < 0 || timeout > kNoPidfdPollMs)) timeout = kNoPidfdPollMs;
    int ready = ::poll(fds.data(), fds.size(), timeout);
    if (ready < 0 && errno != EINTR) {
      spdlog::error("executors: poll failed: {}", errno);
      std::this_thread::sleep_for(milliseconds(10));
    }
    now = SteadyClock::now();

    if (fds[0].revents & POLLIN) {
      uint64_t count;
      [[maybe_unused]] auto n = ::read(wake_fd, &count, sizeof count);
    }
    std::deque<Note> batch;
    {
      std::lock_guard lock(mu);
      batch.swap(notes);
      if (stop_requested && !stopping) {
        stopping = true;
        for (auto& [id, run] : runs)
          if (run->child) terminate(*run, StopReason::kShutdown, now);
        for (auto& [name, type] : types) {
          type.pending.clear();
          type.pending_seq.clear();
        }
      }
    }
    for (auto& note : batch) handle(note, now);

    // Output first, then exits: what a process wrote before it exited counts.
    std::string chunk;
    std::vector<JobId> maybe_exited;
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      auto [id, which] = owners[i - 1];
      auto it = runs.find(id);
      if (it == runs.end() || !it->second->child) continue;
      Run& run = *it->second;
      chunk.clear();
      if (which == kStdout) {
        run.child->read_stdout(chunk, kReadPerRoundBytes);
        run.output.add_stdout(chunk);
      } else if (which == kStderr) {
        run.child->read_stderr(chunk, kReadPerRoundBytes);
        run.output.add_stderr(chunk);
      } else {
        maybe_exited.push_back(id);
      }
    }
    if (needs_polling)
      for (auto& [id, run] : runs)
        if (run->child && run->child->exit_fd() < 0) maybe_exited.push_back(id);
    for (const JobId& id : maybe_exited) {
      auto it = runs.find(id);
      if (it != runs.end() && it->second->child && it->second->child->exited()) finish(*it->second);
    }

    timers(now);
    schedule(now);

    if (stopping && runs.empty() && in_flight == 0 && retries.empty()) break;
  }
}

// Reads what the exited process left in its pipes (bounded: a process it
// started may still hold them open and keep writing).
static void drain(ChildProcess& child, ProcessOutput& output) {
  std::string chunk;
  for (size_t total = 0; total < kDrainAfterExitBytes;) {
    chunk.clear();
    const bool open = child.read_stdout(chunk, kReadPerRoundBytes);
    total += chunk.size();
    output.add_stdout(chunk);
    if (!open || chunk.empty()) break;
  }
  for (size_t total = 0; total < kDrainAfterExitBytes;) {
    chunk.clear();
    const bool open = child.read_stderr(chunk, kReadPerRoundBytes);
    total += chunk.size();
    output.add_stderr(chunk);
    if (!open || chunk.empty()) break;
  }
}

int ExecutorPool::Impl::poll_timeout_ms(TimePoint now) const {
  std::optional<TimePoint> next;
  auto consider = [&](TimePoint t) {
    if (!next || t < *next) next = t;
  };
  for (const auto& [id, run] : runs) {
    if (!run->child) continue;
    if (!run->heartbeat_in_flight && run->stop != StopReason::kGone) {
      consider(run->pacer->next_due(run->output.has_new_progress()));
    }
    if (run->sigterm_sent && !run->sigkill_sent) consider(run->kill_at);
    if (run->sigkill_sent) consider(run->give_up_at);
  }
  for (const auto& r : retries) consider(r.at);
  if (!stopping)
    for (const auto& [name, type] : types) {
      if (!type.pending.empty() && type.active < type.spec->concurrency) consider(type.retry_after);
      if (!type.delayed.empty()) consider(type.delayed.begin()->first);
    }
  if (!next) return -1;
  auto ms = std::chrono::duration_cast<milliseconds>(*next - now).count();
  return static_cast<int>(std::clamp<int64_t>(ms + 1, 0, 60'000));
}

void ExecutorPool::Impl::handle(Note& note, TimePoint now) {
  switch (note.kind) {
    case Note::Kind::kJob:
      on_job(note, now);
      return;
    case Note::Kind::kStarted:
      --in_flight;
      on_started(note, now);
      return;
    case Note::Kind::kHeartbeat: {
      --in_flight;
      auto it = runs.find(note.id);
      if (it == runs.end()) return;  // finished meanwhile
      Run& run = *it->second;
      run.heartbeat_in_flight = false;
      if (note.ok) {
        if (note.cancel_requested && !run.cancel_requested) {
          run.cancel_requested = true;
          terminate(run, StopReason::kCancel, now);
        }
      } else if (note.code == ErrorCode::kJobTerminal || note.code == ErrorCode::kLeaseMismatch) {
        spdlog::info("executors: job {} ended elsewhere ({}); stopping its process",
                     note.id.to_string(), note.message);
        terminate(run, StopReason::kGone, now);
      } else if (note.code != ErrorCode::kUnavailable) {
        spdlog::warn("executors: heartbeat for job {} refused: {}", note.id.to_string(),
                     note.message);
      }
      return;
    }
    case Note::Kind::kReported:
      --in_flight;
      if (note.ok) return;
      if (note.code == ErrorCode::kUnavailable && note.attempt < kMaxReportAttempts &&
          note.request) {
        retries.push_back(
            Retry{std::move(*note.request), note.attempt + 1, now + kReportRetryDelay});
      } else if (note.code == ErrorCode::kJobTerminal) {
        spdlog::info("executors: job {} had already ended: {}", note.id.to_string(), note.message);
      } else {
        spdlog::warn("executors: reporting job {} failed: {}", note.id.to_string(), note.message);
      }
      return;
  }
}

void ExecutorPool::Impl::on_job(const Note& note, TimePoint now) {
  auto type_it = types.find(note.type);
  if (type_it == types.end()) return;
  TypeState& type = type_it->second;
  auto run_it = runs.find(note.id);
  if (run_it == runs.end()) {
    if (note.status == JobStatus::kQueued && !stopping) {
      add_pending(type, note.id, note.created_seq);
    } else {
      remove_pending(type, note.id);
    }
    return;
  }
  Run& run = *run_it->second;
  if (!run.started) return;  // the StartJob answer decides
  if (note.version < run.started_version) return;  // a commit from before this attempt
  if (is_terminal(note.status) || note.lease_hash != run.lease_hash) {
    // Ended elsewhere, or this attempt is over: the watchdog queued the job
    // for a retry (execution or heartbeat timeout), maybe already started
    // again. The process stops; a queued job runs again here.
    run.requeued = note.status == JobStatus::kQueued;
    if (run.child) terminate(run, StopReason::kGone, now);
  } else if (note.cancel_requested && !run.cancel_requested) {
    run.cancel_requested = true;
    if (run.child) terminate(run, StopReason::kCancel, now);
  }
}

void ExecutorPool::Impl::schedule(TimePoint now) {
  if (stopping) return;
  for (auto& [name, type] : types) {
    while (!type.delayed.empty() && type.delayed.begin()->first <= now) {
      const auto [seq, id] = type.delayed.begin()->second;
      type.delayed.erase(type.delayed.begin());
      add_pending(type, id, seq);
    }
    if (now < type.retry_after) continue;
    while (type.active < type.spec->concurrency && !type.pending.empty()) {
      auto [seq, id] = *type.pending.begin();
      remove_pending(type, id);
      try_start(type, id, seq, now);
    }
  }
}

void ExecutorPool::Impl::try_start(TypeState& type, const JobId& id, uint64_t created_seq,
                                   TimePoint now) {
  auto row = jobs->row(id);
  if (!row) {
    spdlog::warn("executors: reading job {} failed: {}", id.to_string(), row.error().message);
    add_pending(type, id, created_seq);
    type.retry_after = now + kStartRetryDelay;
    return;
  }
  if (!*row || (*row)->status != JobStatus::kQueued) return;  // moved on meanwhile
  auto state = (*row)->to_state();
  if (!state) {
    spdlog::warn("executors: job {} unreadable: {}", id.to_string(), state.error().message);
    return;
  }
  if (state->not_before_ms) {
    const TimeMs wait_ms = *state->not_before_ms - SystemClock().now_ms();
    if (wait_ms > 0) {
      type.delayed.emplace(now + milliseconds(wait_ms), std::make_pair(created_seq, id));
      return;
    }
  }
  const ExecutorSpec& spec = *type.spec;
  SpawnRequest spawn;
  std::optional<Error> problem;
  for (const auto& t : spec.argv) {
    auto a = t.render(*state);
    if (!a) {
      problem = a.error();
      break;
    }
    spawn.argv.push_back(std::move(*a));
  }
  if (!problem) {
    if (spec.inherit_env) {
      for (const auto& e : base_env) {
        auto eq = e.find('=');
        if (eq == std::string::npos || !spec.env.count(e.substr(0, eq))) spawn.env.push_back(e);
      }
    }
    for (const auto& [name, t] : spec.env) {
      auto v = t.render(*state);
      if (!v) {
        problem = v.error();
        break;
      }
      spawn.env.push_back(name + "=" + *v);
    }
  }
  spawn.cwd = spec.cwd;
  if (problem) {
    // No process ever ran: fail it from queued, nobody's worker.
    CommandRequest request;
    request.job_id = id;
    request.expected_version = state->version;
    request.command = FailJob{json{{"code", "invalid_params"},
                                   {"message", problem->message},
                                   {"details", {{"executor", spec.type}}}}};
    ++in_flight;
    writer->submit(std::move(request), [this, id](const Result<CommandOutcome>& r) {
      push(answer_note(Note::Kind::kReported, id, r));
    });
    return;
  }
  auto run = std::make_unique<Run>();
  run->id = id;
  run->type = &type;
  run->created_seq = created_seq;
  run->heartbeat_interval_ms =
      workers::heartbeat_interval_ms(state->heartbeat_timeout_s, options.min_heartbeat_interval_ms);
  run->spawn = std::move(spawn);
  run->output = ProcessOutput(options.output);
  run->grace_ms = spec.cancel_grace_ms;
  runs.emplace(id, std::move(run));
  ++type.active;
  ++active_count;

  CommandRequest request;
  request.job_id = id;
  request.expected_version = state->version;
  request.command = StartJob{options.worker_name, runs.at(id)->lease_hash};
  ++in_flight;
  writer->submit(std::move(request), [this, id](const Result<CommandOutcome>& r) {
    push(answer_note(Note::Kind::kStarted, id, r));
  });
}

void ExecutorPool::Impl::on_started(const Note& note, TimePoint now) {
  auto it = runs.find(note.id);
  if (it == runs.end()) return;
  Run& run = *it->second;
  if (!note.ok) {
    TypeState& type = *run.type;
    const uint64_t seq = run.created_seq;
    release(note.id);
    if (note.code == ErrorCode::kUnavailable && !stopping) {
      add_pending(type, note.id, seq);
      type.retry_after = now + kStartRetryDelay;
    } else {
      spdlog::debug("executors: job {} not started: {}", note.id.to_string(), note.message);
    }
    return;
  }
  run.started = true;
  run.started_version = note.version;
  if (stopping) {
    submit_report(report(
        run, FailJob{json{{"code", "abandoned"},
                          {"message", "jobstate serve stopped before the command was started"},
                          {"details", nullptr}}}));
    release(note.id);
    return;
  }
  if (run.cancel_requested || note.cancel_requested) {
    submit_report(report(run, ConfirmCancelled{"cancelled before the command was started"}));
    release(note.id);
    return;
  }
  auto child = ChildProcess::spawn(run.spawn);
  if (!child) {
    spdlog::warn("executors: job {}: {}", note.id.to_string(), child.error().message);
    submit_report(report(run, FailJob{json{{"code", "spawn_failed"},
                                           {"message", child.error().message},
                                           {"details", {{"command", run.spawn.argv[0]}}}}}));
    release(note.id);
    return;
  }
  spdlog::info("executors: job {} ({}) running as pid {}", note.id.to_string(),
               run.type->spec->type, child->pid());
  run.child.emplace(std::move(*child));
  // The start set the deadline.
  run.pacer.emplace(run.heartbeat_interval_ms, options.progress_min_interval_ms, now);
}

void ExecutorPool::Impl::terminate(Run& run, StopReason why, TimePoint now) {
  // A cancel or the job ending elsewhere outranks a plain shutdown; the
  // first reason wins otherwise.
  if (run.stop == StopReason::kNone ||
      (run.stop == StopReason::kShutdown && why != StopReason::kShutdown))
    run.stop = why;
  if (!run.child || run.sigkill_sent) return;
  int64_t grace_ms = run.grace_ms;
  // Shutdown waits at most shutdown_grace_ms, even for a cancel already under way.
  if (why == StopReason::kShutdown) grace_ms = std::min(grace_ms, options.shutdown_grace_ms);
  const TimePoint kill_at = now + milliseconds(std::max<int64_t>(grace_ms, 0));
  if (!run.sigterm_sent) {
    run.sigterm_sent = true;
    run.kill_at = kill_at;
    if (grace_ms > 0) run.child->signal_group(SIGTERM);
  } else {
    run.kill_at = std::min(run.kill_at, kill_at);
  }
  if (run.kill_at <= now) {
    run.child->signal_group(SIGKILL);
    run.sigkill_sent = true;
    run.give_up_at = now + milliseconds(options.kill_wait_ms);
  }
}

void ExecutorPool::Impl::timers(TimePoint now) {
  std::vector<Run*> given_up;
  for (auto& [id, run] : runs) {
    if (!run->child) continue;
    if (run->sigterm_sent && !run->sigkill_sent && now >= run->kill_at) {
      spdlog::info("executors: job {}: still running after SIGTERM and its grace; sending SIGKILL",
                   id.to_string());
      run->child->signal_group(SIGKILL);
      run->sigkill_sent = true;
      run->give_up_at = now + milliseconds(options.kill_wait_ms);
    } else if (run->sigkill_sent && now >= run->give_up_at) {
      given_up.push_back(run.get());
      continue;
    }
    if (run->heartbeat_in_flight || run->stop == StopReason::kGone) continue;
    if (run->pacer->is_due(now, run->output.has_new_progress())) send_heartbeat(*run, now);
  }
  for (Run* run : given_up) {
    spdlog::error("executors: job {}: pid {} did not exit after SIGKILL; no longer watched",
                  run->id.to_string(), run->child->pid());
    finish(*run);
  }
  while (!retries.empty() && retries.front().at <= now) {
    Retry r = std::move(retries.front());
    retries.pop_front();
    submit_report(std::move(r.request), r.attempt);
  }
}

void ExecutorPool::Impl::send_heartbeat(Run& run, TimePoint now) {
  Heartbeat hb;
  if (auto p = run.output.take_progress()) {
    hb.progress = std::move(*p);
    run.pacer->progress_sent(now);
  }
  run.pacer->heartbeat_sent(now);
  run.heartbeat_in_flight = true;
  CommandRequest request = report(run, std::move(hb));
  ++in_flight;
  writer->submit(std::move(request), [this, id = run.id](const Result<CommandOutcome>& r) {
    push(answer_note(Note::Kind::kHeartbeat, id, r));
  });
}

void ExecutorPool::Impl::finish(Run& run) {
  ChildProcess& child = *run.child;
  // Whatever the process group left running dies with a stopped job; the
  // group id is still safe to signal because the leader is not reaped yet.
  if (run.stop != StopReason::kNone) child.signal_group(SIGKILL);
  if (!child.try_reap() && !run.sigkill_sent) return;  // exited() raced ahead; next round
  drain(child, run.output);
  run.output.finish_stdout();
  child.close_pipes();
  const workers::ProcessExit status = child.status().value_or(workers::ProcessExit::unknown());
  const std::string job = run.id.to_string();
  spdlog::info("executors: job {} (pid {}) {}", job, child.pid(), workers::describe_exit(status));

  if (run.stop == StopReason::kGone) {
    TypeState& type = *run.type;
    const JobId id = run.id;
    const uint64_t seq = run.created_seq;
    const bool requeued = run.requeued;
    release(id);
    // Its next attempt runs here too, once its backoff has passed.
    if (requeued && !stopping) add_pending(type, id, seq);
    return;
  }
  // Progress the process printed last goes in before the outcome (the writer
  // keeps submission order).
  if (auto p = run.output.take_progress()) {
    CommandRequest request = report(run, Heartbeat{std::move(*p)});
    ++in_flight;
    writer->submit(std::move(request), [this, id = run.id](const Result<CommandOutcome>& r) {
      push(answer_note(Note::Kind::kHeartbeat, id, r));
    });
  }
  Command outcome;
  if (run.stop == StopReason::kShutdown) {
    outcome = FailJob{json{{"code", "abandoned"},
                           {"message",
                            "jobstate serve stopped while the command was running; the "
                            "command " +
                                workers::describe_exit(status)},
                           {"details", workers::exit_details(status, run.output.stderr())}}};
  } else if (run.cancel_requested) {
    outcome = ConfirmCancelled{"the command stopped after the cancel request: it " +
                               workers::describe_exit(status)};
  } else {
    auto ended =
        workers::exit_outcome(status, run.output.last_line(), run.output.stderr(), kExitFormat);
    if (ended.succeeded) {
      outcome = SucceedJob{std::move(ended.result)};
    } else {
      outcome = FailJob{std::move(ended.error)};
    }
  }
  submit_report(report(run, std::move(outcome)));
  release(run.id);
}

CommandRequest ExecutorPool::Impl::report(const Run& run, Command command) const {
  CommandRequest request;
  request.job_id = run.id;
  request.command = std::move(command);
  request.lease_hash = run.lease_hash;
  return request;
}

void ExecutorPool::Impl::submit_report(CommandRequest request, int attempt) {
  const JobId id = request.job_id;
  CommandRequest copy = request;  // for a retry when the writer is unavailable
  ++in_flight;
  writer->submit(std::move(request), [this, id, attempt, copy = std::move(copy)](
                                         const Result<CommandOutcome>& r) mutable {
    Note n = answer_note(Note::Kind::kReported, id, r);
    n.attempt = attempt;
    if (!r) n.request = std::move(copy);
    push(std::move(n));
  });
}

void ExecutorPool::Impl::release(const JobId& id) {
  auto it = runs.find(id);
  if (it == runs.end()) return;
  --it->second->type->active;
  --active_count;
  runs.erase(it);
}

}  // namespace jobstate::executors
