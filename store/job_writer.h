// JobWriter: the one way to change a store. Every change is a command
// (domain/job.h) that the store decides with decide() against the job's
// committed state, and appends as events with their projection changes in
// one atomic, durable write.
//
// Guarantees of every implementation (API.md): a success means the events,
// the job's new status row and the new log head are durable together (a
// crash never leaves part of them); seq is global and gapless and each
// event's hash chains from the one before; a command is decided against the
// newest committed state of its job, so expected_version (If-Match) and
// racing terminal reports behave the same on every backend; a refusal
// changes nothing. Concurrent commands may share one durable write (group
// commit); a caller cannot tell, except by the speed.
//
// Thread safety: every method may be called from any thread. Callbacks run
// on a thread of the writer's, after the outcome is durable (or failed):
// they must be quick and must not wait for another command's outcome (so
// never call execute() from one).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "domain/clock.h"
#include "domain/job.h"
#include "domain/result.h"
#include "store/event_log.h"

namespace jobstate {

struct CommandRequest {
  JobId job_id;
  Command command;
  // If-Match: refuse with kVersionMismatch unless the job is at this version.
  std::optional<uint64_t> expected_version;
  // CreateJob only: the same key with the same fingerprint returns the job it
  // created before; with another fingerprint, kIdempotencyKeyReused.
  std::optional<std::string> idempotency_key;
  std::string request_fingerprint;
  // Job-Lease on a start or a worker's report, as hex SHA-256
  // (DecideContext::lease_hash).
  std::optional<std::string> lease_hash = {};
  // A claim (POST /v1/claims): job_id is not set; the writer picks the best
  // claimable job of these types (highest priority, then oldest, not_before
  // passed) and runs `command`, a StartJob, on it, atomically with the
  // choice. The outcome has no job when none was claimable.
  std::optional<std::vector<std::string>> claim_types = {};
  // The name of the token that made the request (DecideContext::by).
  std::optional<std::string> by = {};
};

struct CommandOutcome {
  // The job after the command: the writer's own copy, shared (a heartbeat's
  // outcome used to copy every JSON member of the state, and free it again).
  std::shared_ptr<const JobState> job;
  // *job, or an empty JobState when there is none.
  const JobState& state() const;
  std::vector<Event> events;       // appended by this command (empty: nothing changed)
  bool idempotent_replay = false;  // an earlier request with the same Idempotency-Key
  // A claim that found nothing: the earliest not_before still ahead among
  // the types' queued jobs, when there is one.
  std::optional<TimeMs> next_claimable_ms = {};
};

using CommandCallback = std::function<void(Result<CommandOutcome>)>;

// One durable batch, for listeners (long-polls, executors, tests).
struct CommitInfo {
  LogHead head;  // newest event after the batch
  // Final state of each job the batch changed.
  std::vector<std::shared_ptr<const JobState>> changed_jobs;
};

// Called after every durable batch, in commit order, on one thread of the
// store's; must be quick and must not wait on a command.
using CommitListener = std::function<void(const CommitInfo&)>;

// Whether the store takes writes now, and if not, why (GET /readyz).
struct WriteHealth {
  enum class State {
    kOk,           // writes are taken
    kDiskFull,     // refused before writing: the disk is (nearly) full
    kWriteFailed,  // the store failed a write; retried until it takes one again
  };
  State state = State::kOk;
  // When not ok: one line for an operator (what is wrong, what happens next).
  std::string reason;
  bool ok() const { return state == State::kOk; }
};

// "open", "disk-full", "write-failed": the name /readyz shows.
const char* write_health_name(WriteHealth::State state);

class JobWriter {
 public:
  virtual ~JobWriter() = default;

  // Queues a command; `done` runs exactly once with its outcome. When the
  // writer is stopped or overloaded, `done` runs at once on the calling
  // thread with kUnavailable. A success means the events are durable.
  virtual void submit(CommandRequest request, CommandCallback done) = 0;

  // Submits and waits. For tools, tests and the embedded runner: never from
  // a writer callback or a commit listener.
  Result<CommandOutcome> execute(CommandRequest request);

  // Refuses new commands (kUnavailable), finishes every queued one, and
  // returns when they are answered. Idempotent. From a callback or a commit
  // listener it only asks.
  virtual void stop() = 0;

  // The newest head this writer knows to be durable: every command answered
  // so far is at or below it.
  virtual LogHead committed_head() const = 0;

  // When this writer started (or, for a store that refused writes for a
  // while, as on a full disk, when it took them again): a running job whose
  // deadline passed before it gets one heartbeat_timeout of grace from here
  // (effective_deadline_ms in domain/job.h).
  virtual TimeMs server_start_ms() const = 0;

  // Whether writes are taken now. A store that cannot tell says ok (its
  // writes then fail one by one, each with kUnavailable).
  virtual WriteHealth write_health() const { return {}; }
};

}  // namespace jobstate
