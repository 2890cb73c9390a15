// The job aggregate: its state, the commands it accepts, and two pure
// functions. decide(state, command) says which events a command produces (or
// why it is refused); apply(state, event) folds one event into the state.
// Nothing here does I/O or reads a clock: time arrives in DecideContext.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "domain/clock.h"
#include "domain/event.h"
#include "domain/job_id.h"
#include "domain/result.h"

namespace jobstate {

// Stored as one byte: never renumber.
enum class JobStatus : uint8_t {
  kQueued = 1,
  kRunning = 2,
  kSucceeded = 3,
  kFailed = 4,
  kCancelled = 5
};

// "queued", "running", "succeeded", "failed", "cancelled".
const char* job_status_name(JobStatus s);
std::optional<JobStatus> parse_job_status(std::string_view name);
inline bool is_terminal(JobStatus s) {
  return s >= JobStatus::kSucceeded;
}

// Retries on create: a failure caused by infrastructure (or marked
// retryable by the worker) queues the job again while attempts remain.
struct RetryPolicy {
  int64_t max_attempts = 1;  // 1–100; 1 = no retry
  int64_t initial_backoff_s = 1;  // 0–86400
  int64_t max_backoff_s = 300;    // 1–86400
  bool operator==(const RetryPolicy&) const = default;
};

struct JobState {
  JobId id;
  std::string type;
  JobStatus status = JobStatus::kQueued;
  uint64_t version = 0;      // number of events in the job's history
  uint64_t created_seq = 0;  // seq of the created event: list order
  TimeMs created_at_ms = 0;
  std::optional<TimeMs> started_at_ms;
  std::optional<TimeMs> last_heartbeat_at_ms;
  std::optional<TimeMs> finished_at_ms;
  int64_t heartbeat_timeout_s = 120;
  std::optional<TimeMs> deadline_ms;  // running jobs only
  nlohmann::json progress;            // null or {fraction, message, details}
  nlohmann::json params = nlohmann::json::object();
  nlohmann::json labels = nlohmann::json::object();
  std::optional<std::string> worker;
  bool cancel_requested = false;
  nlohmann::json result;  // null unless succeeded
  nlohmann::json error;   // null unless failed: {code, message, details}
  // Set on create (null/0 when not asked for).
  std::optional<int64_t> execution_timeout_s;  // an attempt may run this long
  std::optional<int64_t> queue_timeout_s;      // a job may wait this long once claimable
  std::optional<TimeMs> not_before_ms;         // not claimable before; a retry sets it
  int64_t priority = 0;                        // claims take the highest first
  std::optional<RetryPolicy> retry;
  // The attempt, from 1; a retry queues the job again as the next one.
  int64_t attempt = 1;
  nlohmann::json last_error;  // the previous attempt's error, null before any retry
  // Hex SHA-256 of the running attempt's lease; its reports must carry the
  // lease. Null when the attempt was started without one (in-process).
  std::optional<std::string> lease_hash;

  int64_t max_attempts() const { return retry ? retry->max_attempts : 1; }
  bool operator==(const JobState&) const = default;
};

constexpr int64_t kDefaultHeartbeatTimeoutS = 120;
constexpr int64_t kMaxHeartbeatTimeoutS = 86400;
constexpr size_t kMaxLabels = 32;
constexpr int64_t kMaxJobTimeoutS = 604800;  // execution_timeout_s, queue_timeout_s
constexpr int64_t kMaxPriority = 1000;
constexpr int64_t kMaxAttempts = 100;
constexpr int64_t kMaxBackoffS = 86400;

// Commands: what a client, a worker or the watchdog asks of a job.
struct CreateJob {
  std::string type;  // 1–128 of A-Za-z0-9._:-
  nlohmann::json params = nlohmann::json::object();
  int64_t heartbeat_timeout_s = kDefaultHeartbeatTimeoutS;  // 1–86400
  nlohmann::json labels = nlohmann::json::object();         // ≤ 32 string → string
  std::optional<int64_t> execution_timeout_s = {};          // 1–604800
  std::optional<int64_t> queue_timeout_s = {};              // 1–604800
  std::optional<TimeMs> not_before_ms = {};
  int64_t priority = 0;  // −1000…1000
  std::optional<RetryPolicy> retry = {};
};
struct StartJob {
  std::string worker;
  // Hex SHA-256 of the attempt's lease (store/lease.h): the Job-Lease the
  // API hands a worker, or one an in-process runner (executors, the embedded
  // runner) draws for itself. None only in logs written before leases.
  std::optional<std::string> lease_hash = {};
};
struct Heartbeat {
  nlohmann::json progress;  // null: progress unchanged; else {fraction 0..1, message, details}
};
struct SucceedJob {
  nlohmann::json result;
};
struct FailJob {
  nlohmann::json error;  // {code: string, message: string, details: any}
};
struct RequestCancel {
  std::string reason;
};
struct ConfirmCancelled {
  std::string reason;
};
// The watchdog: fail the job (or queue it for its next attempt) if one of
// its deadlines has passed: a running job's heartbeat deadline or execution
// timeout, a queued job's queue timeout. Nothing when none has.
struct ExpireDeadlines {};

using Command = std::variant<CreateJob, StartJob, Heartbeat, SucceedJob, FailJob, RequestCancel,
                             ConfirmCancelled, ExpireDeadlines>;

// Short name of a command, for logs: "create", "start", "heartbeat", ...
const char* command_name(const Command& c);

struct DecideContext {
  TimeMs now_ms = 0;
  // When this server process started: deadlines that passed while it was down
  // get one heartbeat_timeout of grace from here.
  TimeMs server_start_ms = 0;
  // If-Match: refuse with kVersionMismatch unless the job is at this version.
  std::optional<uint64_t> expected_version;
  // Job-Lease on a start or a worker's report (heartbeat, succeed, fail,
  // cancelled), as hex SHA-256; see decide().
  std::optional<std::string> lease_hash = {};
  // In [0, 1): where a retry's backoff falls between half and all of its
  // exponential step. The caller draws it; decide() stays pure.
  double jitter = 0.5;
  // Who asks: the name of the token that authenticated the request. Every
  // event the command produces records it as data.by (the audit trail's
  // "who"); none for open access and for the server's own commands.
  std::optional<std::string> by = {};
};

// An event decide() wants appended; the store assigns seq, version and hash.
struct NewEvent {
  EventType type;
  nlohmann::json data;
};

// The events `command` produces against `state` (nullptr: the job does not
// exist). Empty vector: accepted, nothing to append (e.g. a repeated cancel).
// Order of refusals: kJobNotFound; kJobTerminal (whatever expected_version
// says); kLeaseMismatch (a start or report carrying a lease that is not the
// running attempt's, any lease on a queued job, or none on a report to an
// attempt started with one); kVersionMismatch; kInvalidRequest (bad command
// content); kInvalidTransition.
//
// With ctx.by, every event's data carries "by": ctx.by.
//
// Retries: a failure with code heartbeat_timeout, abandoned or
// execution_timeout, or a fail whose error says "retryable": true, of a
// running job whose cancel was not requested and that has attempts left,
// appends retry_scheduled instead of failed.
Result<std::vector<NewEvent>> decide(const JobState* state, const Command& command,
                                     const DecideContext& ctx);

// Folds `event` into `state` (nullptr before the first event). Refuses events
// the state machine does not allow (wrong version, transition out of order,
// anything after a terminal event, malformed data): verify and rebuild rely
// on that to report a broken log instead of producing a wrong state.
Result<JobState> apply(const JobState* state, const Event& event);

// When the watchdog fails a running job: its stored deadline, except that a
// deadline that passed before server_start_ms (while the server was down)
// becomes server_start_ms + heartbeat_timeout (grace after a restart).
TimeMs effective_deadline_ms(const JobState& s, TimeMs server_start_ms);
// The same from a stored deadline and timeout (a status row's header).
TimeMs effective_deadline_ms(TimeMs stored_deadline_ms, int64_t heartbeat_timeout_s,
                             TimeMs server_start_ms);

// The next time the watchdog must look at the job (0: none): a running
// job's heartbeat deadline or the end of its execution timeout, whichever
// is first; a queued job's queue timeout. Status rows index jobs by it.
TimeMs next_deadline_ms(const JobState& s);
// When a queued job became (or becomes) claimable: its not_before, or its
// creation when that is later.
TimeMs claimable_at_ms(const JobState& s);
// The backoff before attempt `failed_attempt` + 1: initial_backoff_s ×
// 2^(failed_attempt − 1), capped at max_backoff_s, of which the first half
// is fixed and the second scaled by jitter in [0, 1).
TimeMs retry_backoff_ms(const RetryPolicy& r, int64_t failed_attempt, double jitter);

// The job resource of API.md. `deadline_at` shows effective_deadline_ms.
nlohmann::json job_to_json(const JobState& s, TimeMs server_start_ms);
// Inverse of job_to_json(s, 0); created_seq is not part of the resource.
Result<JobState> job_from_json(const nlohmann::json& j, uint64_t created_seq);

// Whether `type` is a valid job type: 1–128 of A-Za-z0-9._:-
bool is_valid_job_type(std::string_view type);

}  // namespace jobstate
