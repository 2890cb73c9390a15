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

  bool operator==(const JobState&) const = default;
};

constexpr int64_t kDefaultHeartbeatTimeoutS = 120;
constexpr int64_t kMaxHeartbeatTimeoutS = 86400;
constexpr size_t kMaxLabels = 32;

// Commands: what a client, a worker or the watchdog asks of a job.
struct CreateJob {
  std::string type;  // 1–128 of A-Za-z0-9._:-
  nlohmann::json params = nlohmann::json::object();
  int64_t heartbeat_timeout_s = kDefaultHeartbeatTimeoutS;  // 1–86400
  nlohmann::json labels = nlohmann::json::object();         // ≤ 32 string → string
};
struct StartJob {
  std::string worker;
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
// The watchdog: fail the job if it is running and its deadline has passed.
struct ExpireHeartbeat {};

using Command = std::variant<CreateJob, StartJob, Heartbeat, SucceedJob, FailJob, RequestCancel,
                             ConfirmCancelled, ExpireHeartbeat>;

// Short name of a command, for logs: "create", "start", "heartbeat", ...
const char* command_name(const Command& c);

struct DecideContext {
  TimeMs now_ms = 0;
  // When this server process started: deadlines that passed while it was down
  // get one heartbeat_timeout of grace from here.
  TimeMs server_start_ms = 0;
  // If-Match: refuse with kVersionMismatch unless the job is at this version.
  std::optional<uint64_t> expected_version;
};

// An event decide() wants appended; the store assigns seq, version and hash.
struct NewEvent {
  EventType type;
  nlohmann::json data;
};

// The events `command` produces against `state` (nullptr: the job does not
// exist). Empty vector: accepted, nothing to append (e.g. a repeated cancel).
// Order of refusals: kJobNotFound; kJobTerminal (whatever expected_version
// says); kVersionMismatch; kInvalidRequest (bad command content);
// kInvalidTransition.
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

// The job resource of API.md. `deadline_at` shows effective_deadline_ms.
nlohmann::json job_to_json(const JobState& s, TimeMs server_start_ms);
// Inverse of job_to_json(s, 0); created_seq is not part of the resource.
Result<JobState> job_from_json(const nlohmann::json& j, uint64_t created_seq);

// Whether `type` is a valid job type: 1–128 of A-Za-z0-9._:-
bool is_valid_job_type(std::string_view type);

}  // namespace jobstate
