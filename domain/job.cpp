#include "domain/job.h"

#include <algorithm>
#include <array>
#include <stdexcept>

namespace jobstate {

using nlohmann::json;

namespace {
constexpr std::array<const char*, 6> kStatusNames = {"",          "queued", "running",
                                                     "succeeded", "failed", "cancelled"};

Error invalid(std::string msg) {
  return make_error(ErrorCode::kInvalidRequest, std::move(msg));
}
Error transition(const JobState& s, const char* what) {
  return make_error(ErrorCode::kInvalidTransition,
                    std::string("cannot ") + what + " a " + job_status_name(s.status) + " job");
}

json opt_time(const std::optional<TimeMs>& t) {
  return t ? json(format_rfc3339_ms(*t)) : json(nullptr);
}
json opt_int(const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); }

// Progress as stored: always {fraction, message, details}, each possibly null.
Result<json> normalize_progress(const json& p) {
  if (p.is_null()) return json(nullptr);
  if (!p.is_object()) return invalid("progress must be an object");
  // Built member by member: an initializer list costs a heartbeat more than
  // the rest of decide().
  json out(json::value_t::object);
  auto& members = out.get_ref<json::object_t&>();
  json& fraction = members.emplace("fraction", nullptr).first->second;
  json& message = members.emplace("message", nullptr).first->second;
  json& details = members.emplace("details", nullptr).first->second;
  for (auto& [k, v] : p.get_ref<const json::object_t&>()) {
    if (k == "fraction") {
      if (v.is_null()) continue;
      if (!v.is_number()) return invalid("progress.fraction must be a number from 0 to 1");
      double f = v.get<double>();
      if (!(f >= 0.0 && f <= 1.0)) return invalid("progress.fraction must be a number from 0 to 1");
      fraction = v;
    } else if (k == "message") {
      if (!v.is_string() && !v.is_null()) return invalid("progress.message must be a string");
      message = v;
    } else if (k == "details") {
      details = v;
    } else {
      return invalid("progress has unknown member '" + k + "'");
    }
  }
  return out;
}

// Error as stored: always {code, message, details}.
Result<json> normalize_error(const json& e) {
  if (!e.is_object()) return invalid("error must be an object with a code");
  auto code = e.find("code");
  if (code == e.end() || !code->is_string() || code->get_ref<const std::string&>().empty() ||
      code->get_ref<const std::string&>().size() > 128)
    return invalid("error.code must be a string of 1 to 128 characters");
  json out = {{"code", *code}, {"message", ""}, {"details", nullptr}};
  for (auto& [k, v] : e.items()) {
    if (k == "code") continue;
    if (k == "message") {
      if (!v.is_string()) return invalid("error.message must be a string");
      out["message"] = v;
    } else if (k == "details") {
      out["details"] = v;
    } else if (k == "retryable") {
      if (!v.is_boolean()) return invalid("error.retryable must be true or false");
      out["retryable"] = v;
    } else {
      return invalid("error has unknown member '" + k + "'");
    }
  }
  return out;
}

Result<std::vector<NewEvent>> decide_create(const JobState* s, const CreateJob& c) {
  if (s) return make_error(ErrorCode::kInvalidTransition, "job already exists");
  if (!is_valid_job_type(c.type)) return invalid("type must be 1 to 128 of A-Za-z0-9._:-");
  if (c.heartbeat_timeout_s < 1 || c.heartbeat_timeout_s > kMaxHeartbeatTimeoutS)
    return invalid("heartbeat_timeout_s must be an integer from 1 to 86400");
  if (!c.labels.is_object()) return invalid("labels must be an object of strings");
  if (c.labels.size() > kMaxLabels) return invalid("labels may have at most 32 entries");
  for (auto& [k, v] : c.labels.items())
    if (!v.is_string()) return invalid("label '" + k + "' must be a string");
  auto in = [](std::optional<int64_t> v, int64_t lo, int64_t hi) {
    return !v || (*v >= lo && *v <= hi);
  };
  if (!in(c.execution_timeout_s, 1, kMaxJobTimeoutS))
    return invalid("execution_timeout_s must be an integer from 1 to 604800");
  if (!in(c.queue_timeout_s, 1, kMaxJobTimeoutS))
    return invalid("queue_timeout_s must be an integer from 1 to 604800");
  if (!in(c.priority, -kMaxPriority, kMaxPriority))
    return invalid("priority must be an integer from -1000 to 1000");
  if (c.not_before_ms && *c.not_before_ms < 0) return invalid("not_before must be after 1970");
  if (c.retry) {
    if (!in(c.retry->max_attempts, 1, kMaxAttempts))
      return invalid("retry.max_attempts must be an integer from 1 to 100");
    if (!in(c.retry->initial_backoff_s, 0, kMaxBackoffS))
      return invalid("retry.initial_backoff_s must be an integer from 0 to 86400");
    if (!in(c.retry->max_backoff_s, 1, kMaxBackoffS))
      return invalid("retry.max_backoff_s must be an integer from 1 to 86400");
  }
  json data = {{"type", c.type},
               {"params", c.params},
               {"heartbeat_timeout_s", c.heartbeat_timeout_s},
               {"labels", c.labels}};
  // Members only when asked for: a plain job's event is what it always was.
  if (c.execution_timeout_s) data["execution_timeout_s"] = *c.execution_timeout_s;
  if (c.queue_timeout_s) data["queue_timeout_s"] = *c.queue_timeout_s;
  if (c.not_before_ms) data["not_before"] = format_rfc3339_ms(*c.not_before_ms);
  if (c.priority != 0) data["priority"] = c.priority;
  if (c.retry)
    data["retry"] = {{"max_attempts", c.retry->max_attempts},
                     {"initial_backoff_s", c.retry->initial_backoff_s},
                     {"max_backoff_s", c.retry->max_backoff_s}};
  return std::vector<NewEvent>{{EventType::kCreated, std::move(data)}};
}

// Codes that say the attempt died of its surroundings, not of its input.
bool is_retryable_code(const std::string& code) {
  return code == "heartbeat_timeout" || code == "abandoned" || code == "execution_timeout";
}

struct Decider {
  const JobState& s;
  const DecideContext& ctx;
  using Out = Result<std::vector<NewEvent>>;

  // (No initializer lists here: they copy every json value they hold.)
  static Out one(EventType t, json data) {
    std::vector<NewEvent> events;
    events.push_back(NewEvent{t, std::move(data)});
    return events;
  }
  // {"<key>": value}
  static json member(const char* key, json value) {
    json object = json::object();
    object.emplace(key, std::move(value));
    return object;
  }

  Out operator()(const CreateJob&) const { return make_error(ErrorCode::kInternal, "unreachable"); }
  // The attempt ends with `error`: failed, or retry_scheduled while it may
  // run again.
  Out end_attempt(json error, bool retryable) const {
    if (retryable && s.status == JobStatus::kRunning && !s.cancel_requested &&
        s.attempt < s.max_attempts()) {
      const TimeMs not_before =
          ctx.now_ms + retry_backoff_ms(*s.retry, s.attempt, ctx.jitter);
      json data = json::object();
      data.emplace("attempt", s.attempt + 1);
      data.emplace("error", std::move(error));
      data.emplace("not_before", format_rfc3339_ms(not_before));
      return one(EventType::kRetryScheduled, std::move(data));
    }
    return one(EventType::kFailed, member("error", std::move(error)));
  }

  Out operator()(const StartJob& c) const {
    if (c.worker.size() > 256) return invalid("worker must be at most 256 characters");
    if (s.status != JobStatus::kQueued) return transition(s, "start");
    json data = {{"worker", c.worker}};
    if (c.lease_hash) data["lease_hash"] = *c.lease_hash;
    return one(EventType::kStarted, std::move(data));
  }
  Out operator()(const Heartbeat& c) const {
    auto p = normalize_progress(c.progress);
    if (!p) return p.error();
    if (s.status != JobStatus::kRunning) return transition(s, "heartbeat");
    return one(EventType::kHeartbeat, member("progress", std::move(*p)));
  }
  Out operator()(const SucceedJob& c) const {
    if (s.status != JobStatus::kRunning) return transition(s, "succeed");
    return one(EventType::kSucceeded, {{"result", c.result}});
  }
  Out operator()(const FailJob& c) const {
    auto e = normalize_error(c.error);
    if (!e) return e.error();
    const bool retryable = e->value("retryable", false) ||
                           is_retryable_code((*e)["code"].get_ref<const std::string&>());
    return end_attempt(std::move(*e), retryable);
  }
  Out operator()(const RequestCancel& c) const {
    if (s.status == JobStatus::kQueued) return one(EventType::kCancelled, {{"reason", c.reason}});
    if (s.cancel_requested) return std::vector<NewEvent>{};
    return one(EventType::kCancelRequested, {{"reason", c.reason}});
  }
  Out operator()(const ConfirmCancelled& c) const {
    if (s.status != JobStatus::kRunning || !s.cancel_requested)
      return make_error(ErrorCode::kInvalidTransition,
                        "cancelled confirms a cancel request; this job has none pending");
    return one(EventType::kCancelled, {{"reason", c.reason}});
  }
  Out operator()(const ExpireDeadlines&) const {
    // A deadline that passed while the server was down gets the restart
    // grace, as the heartbeat deadline always has.
    auto passed = [&](TimeMs deadline) {
      return ctx.now_ms >= effective_deadline_ms(deadline, s.heartbeat_timeout_s,
                                                 ctx.server_start_ms);
    };
    if (s.status == JobStatus::kQueued) {
      if (!s.queue_timeout_s) return std::vector<NewEvent>{};
      const TimeMs deadline = claimable_at_ms(s) + *s.queue_timeout_s * 1000;
      if (!passed(deadline)) return std::vector<NewEvent>{};
      json error = {{"code", "queue_timeout"},
                    {"message", "not started within " + std::to_string(*s.queue_timeout_s) +
                                    " s of becoming claimable"},
                    {"details",
                     {{"claimable_at", format_rfc3339_ms(claimable_at_ms(s))},
                      {"attempt", s.attempt}}}};
      return one(EventType::kFailed, member("error", std::move(error)));
    }
    if (s.status != JobStatus::kRunning) return std::vector<NewEvent>{};
    if (s.execution_timeout_s && s.started_at_ms) {
      const TimeMs deadline = *s.started_at_ms + *s.execution_timeout_s * 1000;
      if (passed(deadline)) {
        json error = {
            {"code", "execution_timeout"},
            {"message", "the attempt ran longer than " + std::to_string(*s.execution_timeout_s) +
                            " s"},
            {"details",
             {{"started_at", format_rfc3339_ms(*s.started_at_ms)},
              {"timeout_at", format_rfc3339_ms(deadline)},
              {"attempt", s.attempt},
              {"progress", s.progress}}}};
        return end_attempt(std::move(error), true);
      }
    }
    TimeMs deadline = effective_deadline_ms(s, ctx.server_start_ms);
    if (ctx.now_ms < deadline) return std::vector<NewEvent>{};
    json error = {
        {"code", "heartbeat_timeout"},
        {"message", "no heartbeat within " + std::to_string(s.heartbeat_timeout_s) + " s"},
        {"details",
         {{"last_heartbeat_at", opt_time(s.last_heartbeat_at_ms)},
          {"deadline_at", format_rfc3339_ms(deadline)},
          {"progress", s.progress}}}};
    return end_attempt(std::move(error), true);
  }
};
}  // namespace

const char* job_status_name(JobStatus s) {
  auto i = static_cast<size_t>(s);
  return i < kStatusNames.size() ? kStatusNames[i] : "unknown";
}

std::optional<JobStatus> parse_job_status(std::string_view name) {
  for (size_t i = 1; i < kStatusNames.size(); ++i)
    if (name == kStatusNames[i]) return static_cast<JobStatus>(i);
  return std::nullopt;
}

bool is_valid_job_type(std::string_view type) {
  if (type.empty() || type.size() > 128) return false;
  for (char c : type) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

const char* command_name(const Command& c) {
  static constexpr std::array<const char*, 8> kNames = {"create", "start",  "heartbeat", "succeed",
                                                        "fail",   "cancel", "cancelled", "expire"};
  return kNames[c.index()];
}

namespace {
Result<std::vector<NewEvent>> decide_events(const JobState* state, const Command& command,
                                            const DecideContext& ctx) {
  if (auto* create = std::get_if<CreateJob>(&command)) return decide_create(state, *create);
  if (!state) return make_error(ErrorCode::kJobNotFound, "no such job");
  if (is_terminal(state->status))
    return make_error(ErrorCode::kJobTerminal,
                      std::string("job is already ") + job_status_name(state->status));
  const bool worker_report = std::holds_alternative<StartJob>(command) ||
                             std::holds_alternative<Heartbeat>(command) ||
                             std::holds_alternative<SucceedJob>(command) ||
                             std::holds_alternative<FailJob>(command) ||
                             std::holds_alternative<ConfirmCancelled>(command);
  if (worker_report) {
    if (ctx.lease_hash && (state->status != JobStatus::kRunning ||
                           state->lease_hash != ctx.lease_hash))
      return make_error(ErrorCode::kLeaseMismatch,
                        state->status == JobStatus::kRunning
                            ? "this lease is not the running attempt's"
                            : "the job is not running: no lease is valid for it");
    if (!ctx.lease_hash && state->status == JobStatus::kRunning && state->lease_hash &&
        !std::holds_alternative<StartJob>(command))
      return make_error(ErrorCode::kLeaseMismatch,
                        "this attempt was started with a lease: send it in Job-Lease");
  }
  if (ctx.expected_version && *ctx.expected_version != state->version)
    return make_error(ErrorCode::kVersionMismatch, "job is at version " +
                                                       std::to_string(state->version) + ", not " +
                                                       std::to_string(*ctx.expected_version));
  return std::visit(Decider{*state, ctx}, command);
}
}  // namespace

Result<std::vector<NewEvent>> decide(const JobState* state, const Command& command,
                                     const DecideContext& ctx) {
  auto events = decide_events(state, command, ctx);
  if (events && ctx.by)
    for (auto& e : *events) e.data["by"] = *ctx.by;
  return events;
}

namespace {
Error bad_event(const Event& e, std::string why) {
  return make_error(ErrorCode::kCorruption,
                    "seq " + std::to_string(e.seq) + " (" + event_type_name(e.type) + "): " + why);
}

template <typename T>
bool get_field(const json& data, const char* key, T& out) {
  auto it = data.find(key);
  if (it == data.end()) return false;
  try {
    out = it->get<T>();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}
}  // namespace

Result<JobState> apply(const JobState* state, const Event& e) {
  if (!e.data.is_object()) return bad_event(e, "data is not an object");
  if (e.type == EventType::kCreated) {
    if (state) return bad_event(e, "created for a job that already exists");
    if (e.version != 1) return bad_event(e, "created must be version 1");
    JobState s;
    s.id = e.job_id;
    s.version = 1;
    s.created_seq = e.seq;
    s.created_at_ms = e.at_ms;
    if (!get_field(e.data, "type", s.type) ||
        !get_field(e.data, "heartbeat_timeout_s", s.heartbeat_timeout_s))
      return bad_event(e, "created lacks type or heartbeat_timeout_s");
    s.params = e.data.value("params", json::object());
    s.labels = e.data.value("labels", json::object());
    auto optional_int = [&](const char* key, std::optional<int64_t>& out) {
      if (!e.data.contains(key)) return true;
      int64_t v = 0;
      if (!get_field(e.data, key, v)) return false;
      out = v;
      return true;
    };
    if (!optional_int("execution_timeout_s", s.execution_timeout_s) ||
        !optional_int("queue_timeout_s", s.queue_timeout_s))
      return bad_event(e, "created has a bad timeout");
    if (e.data.contains("priority") && !get_field(e.data, "priority", s.priority))
      return bad_event(e, "created has a bad priority");
    if (e.data.contains("not_before")) {
      std::string text;
      if (!get_field(e.data, "not_before", text) || !(s.not_before_ms = parse_rfc3339_ms(text)))
        return bad_event(e, "created has a bad not_before");
    }
    if (auto r = e.data.find("retry"); r != e.data.end()) {
      RetryPolicy p;
      if (!r->is_object() || !get_field(*r, "max_attempts", p.max_attempts) ||
          !get_field(*r, "initial_backoff_s", p.initial_backoff_s) ||
          !get_field(*r, "max_backoff_s", p.max_backoff_s))
        return bad_event(e, "created has a bad retry");
      s.retry = p;
    }
    return s;
  }
  if (!state) return bad_event(e, "event for a job that was never created");
  if (e.version != state->version + 1)
    return bad_event(e, "version " + std::to_string(e.version) + " does not follow " +
                            std::to_string(state->version));
  if (is_terminal(state->status)) return bad_event(e, "event after a terminal event");
  JobState s = *state;
  s.version = e.version;
  const TimeMs timeout_ms = s.heartbeat_timeout_s * 1000;
  switch (e.type) {
    case EventType::kCreated:
      break;  // handled above
    case EventType::kStarted: {
      if (s.status != JobStatus::kQueued) return bad_event(e, "started a job that is not queued");
      std::string worker;
      if (!get_field(e.data, "worker", worker)) return bad_event(e, "started lacks worker");
      s.status = JobStatus::kRunning;
      s.worker = std::move(worker);
      s.started_at_ms = e.at_ms;
      s.deadline_ms = e.at_ms + timeout_ms;
      if (e.data.contains("lease_hash")) {
        std::string lease;
        if (!get_field(e.data, "lease_hash", lease)) return bad_event(e, "started has a bad lease_hash");
        s.lease_hash = std::move(lease);
      }
      break;
    }
    case EventType::kRetryScheduled: {
      if (s.status != JobStatus::kRunning) return bad_event(e, "retry of a job not running");
      int64_t attempt = 0;
      std::string not_before;
      std::optional<TimeMs> at;
      if (!get_field(e.data, "attempt", attempt) || attempt != s.attempt + 1 ||
          attempt > s.max_attempts())
        return bad_event(e, "retry_scheduled has a bad attempt");
      if (!get_field(e.data, "not_before", not_before) || !(at = parse_rfc3339_ms(not_before)))
        return bad_event(e, "retry_scheduled lacks not_before");
      auto error = e.data.find("error");
      if (error == e.data.end() || !error->is_object())
        return bad_event(e, "retry_scheduled lacks error");
      // Queued again, as the next attempt; what belonged to the last one goes.
      s.status = JobStatus::kQueued;
      s.attempt = attempt;
      s.last_error = *error;
      s.not_before_ms = at;
      s.started_at_ms.reset();
      s.last_heartbeat_at_ms.reset();
      s.deadline_ms.reset();
      s.progress = nullptr;
      s.worker.reset();
      s.lease_hash.reset();
      break;
    }
    case EventType::kHeartbeat: {
      if (s.status != JobStatus::kRunning) return bad_event(e, "heartbeat on a job not running");
      auto p = e.data.find("progress");
      if (p != e.data.end() && !p->is_null()) s.progress = *p;
      s.last_heartbeat_at_ms = e.at_ms;
      s.deadline_ms = e.at_ms + timeout_ms;
      break;
    }
    case EventType::kSucceeded:
      if (s.status != JobStatus::kRunning) return bad_event(e, "succeeded a job not running");
      s.status = JobStatus::kSucceeded;
      s.result = e.data.value("result", json());
      break;
    case EventType::kFailed:
      s.status = JobStatus::kFailed;
      s.error = e.data.value("error", json());
      if (!s.error.is_object()) return bad_event(e, "failed lacks error");
      break;
    case EventType::kCancelRequested:
      if (s.status != JobStatus::kRunning || s.cancel_requested)
        return bad_event(e, "cancel_requested on a job not running or already asked");
      s.cancel_requested = true;
      break;
    case EventType::kCancelled:
      if (s.status == JobStatus::kRunning && !s.cancel_requested)
        return bad_event(e, "cancelled a running job without a cancel request");
      s.status = JobStatus::kCancelled;
      s.cancel_requested = true;
      break;
  }
  if (is_terminal(s.status)) {
    s.finished_at_ms = e.at_ms;
    s.deadline_ms.reset();
  }
  return s;
}

TimeMs claimable_at_ms(const JobState& s) {
  return s.not_before_ms && *s.not_before_ms > s.created_at_ms ? *s.not_before_ms
                                                               : s.created_at_ms;
}

TimeMs next_deadline_ms(const JobState& s) {
  if (s.status == JobStatus::kQueued)
    return s.queue_timeout_s ? claimable_at_ms(s) + *s.queue_timeout_s * 1000 : 0;
  if (s.status != JobStatus::kRunning) return 0;
  TimeMs deadline = s.deadline_ms.value_or(0);
  if (s.execution_timeout_s && s.started_at_ms) {
    const TimeMs ends = *s.started_at_ms + *s.execution_timeout_s * 1000;
    if (deadline == 0 || ends < deadline) deadline = ends;
  }
  return deadline;
}

TimeMs retry_backoff_ms(const RetryPolicy& r, int64_t failed_attempt, double jitter) {
  int64_t step_ms = r.initial_backoff_s * 1000;
  for (int64_t i = 1; i < failed_attempt && step_ms < r.max_backoff_s * 1000; ++i) step_ms *= 2;
  step_ms = std::min(step_ms, r.max_backoff_s * 1000);
  jitter = std::clamp(jitter, 0.0, 1.0);
  return step_ms / 2 + static_cast<TimeMs>(static_cast<double>(step_ms - step_ms / 2) * jitter);
}

TimeMs effective_deadline_ms(const JobState& s, TimeMs server_start_ms) {
  return effective_deadline_ms(s.deadline_ms.value_or(0), s.heartbeat_timeout_s, server_start_ms);
}

TimeMs effective_deadline_ms(TimeMs stored_deadline_ms, int64_t heartbeat_timeout_s,
                             TimeMs server_start_ms) {
  // Only a deadline that passed while the server was down is moved (API.md):
  // one still ahead at start-up stays as the worker's heartbeats set it.
  return stored_deadline_ms < server_start_ms ? server_start_ms + heartbeat_timeout_s * 1000
                                              : stored_deadline_ms;
}

json job_to_json(const JobState& s, TimeMs server_start_ms) {
  json deadline = nullptr;
  if (s.status == JobStatus::kRunning && s.deadline_ms)
    deadline = format_rfc3339_ms(effective_deadline_ms(s, server_start_ms));
  return json{{"id", s.id.to_string()},
              {"type", s.type},
              {"state", job_status_name(s.status)},
              {"version", s.version},
              {"created_at", format_rfc3339_ms(s.created_at_ms)},
              {"started_at", opt_time(s.started_at_ms)},
              {"last_heartbeat_at", opt_time(s.last_heartbeat_at_ms)},
              {"finished_at", opt_time(s.finished_at_ms)},
              {"heartbeat_timeout_s", s.heartbeat_timeout_s},
              {"deadline_at", std::move(deadline)},
              {"progress", s.progress},
              {"params", s.params},
              {"labels", s.labels},
              {"worker", s.worker ? json(*s.worker) : json(nullptr)},
              {"cancel_requested", s.cancel_requested},
              {"result", s.result},
              {"error", s.error},
              {"execution_timeout_s", opt_int(s.execution_timeout_s)},
              {"queue_timeout_s", opt_int(s.queue_timeout_s)},
              {"not_before", opt_time(s.not_before_ms)},
              {"priority", s.priority},
              {"retry", s.retry ? json{{"max_attempts", s.retry->max_attempts},
                                       {"initial_backoff_s", s.retry->initial_backoff_s},
                                       {"max_backoff_s", s.retry->max_backoff_s}}
                                : json(nullptr)},
              {"attempt", s.attempt},
              {"max_attempts", s.max_attempts()},
              {"last_error", s.last_error},
              {"lease_hash", s.lease_hash ? json(*s.lease_hash) : json(nullptr)}};
}

Result<JobState> job_from_json(const json& j, uint64_t created_seq) {
  auto corrupt = [](const std::string& what) {
    return make_error(ErrorCode::kCorruption, "status row: " + what);
  };
  auto time_field = [&](const char* key, std::optional<TimeMs>& out) -> bool {
    auto it = j.find(key);
    if (it == j.end()) return false;
    if (it->is_null()) return true;
    if (!it->is_string()) return false;
    out = parse_rfc3339_ms(it->get_ref<const std::string&>());
    // Before 1970 no job had a time (decide refuses such a not_before), and
    // job_to_json(s, 0) would show such a deadline moved by the restart
    // grace: not the inverse (fuzz_codecs).
    return out.has_value() && *out >= 0;
  };
  try {
    JobState s;
    auto id = JobId::parse(j.at("id").get<std::string>());
    if (!id) return corrupt("bad id");
    s.id = *id;
    s.type = j.at("type").get<std::string>();
    auto status = parse_job_status(j.at("state").get<std::string>());
    if (!status) return corrupt("bad state");
    s.status = *status;
    s.version = j.at("version").get<uint64_t>();
    s.created_seq = created_seq;
    std::optional<TimeMs> created;
    if (!time_field("created_at", created) || !created) return corrupt("bad created_at");
    s.created_at_ms = *created;
    if (!time_field("started_at", s.started_at_ms) ||
        !time_field("last_heartbeat_at", s.last_heartbeat_at_ms) ||
        !time_field("finished_at", s.finished_at_ms) || !time_field("deadline_at", s.deadline_ms))
      return corrupt("bad timestamp");
    // Integers in the ranges decide() allows: a corrupt row must not carry
    // a value whose arithmetic overflows (a float cast to int64, a timeout
    // times 1000), found by fuzz_codecs.
    auto int_in = [&](const json& v, int64_t lo, int64_t hi, const char* key) -> int64_t {
      if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX) ||
          v.get<int64_t>() < lo || v.get<int64_t>() > hi)
        throw std::out_of_range(std::string("bad ") + key);
      return v.get<int64_t>();
    };
    if (!j.at("version").is_number_unsigned()) return corrupt("bad version");
    s.heartbeat_timeout_s =
        int_in(j.at("heartbeat_timeout_s"), 1, kMaxHeartbeatTimeoutS, "heartbeat_timeout_s");
    s.progress = j.at("progress");
    s.params = j.at("params");
    s.labels = j.at("labels");
    if (!j.at("worker").is_null()) s.worker = j.at("worker").get<std::string>();
    s.cancel_requested = j.at("cancel_requested").get<bool>();
    s.result = j.at("result");
    s.error = j.at("error");
    // Rows written before issue 13 lack these members: their defaults.
    auto opt_int_field = [&](const char* key, std::optional<int64_t>& out) {
      if (auto it = j.find(key); it != j.end() && !it->is_null())
        out = int_in(*it, 1, kMaxJobTimeoutS, key);
    };
    opt_int_field("execution_timeout_s", s.execution_timeout_s);
    opt_int_field("queue_timeout_s", s.queue_timeout_s);
    if (j.contains("not_before") && !time_field("not_before", s.not_before_ms))
      return corrupt("bad not_before");
    if (auto p = j.find("priority"); p != j.end())
      s.priority = int_in(*p, -kMaxPriority, kMaxPriority, "priority");
    if (auto r = j.find("retry"); r != j.end() && !r->is_null())
      s.retry = RetryPolicy{int_in(r->at("max_attempts"), 1, kMaxAttempts, "max_attempts"),
                            int_in(r->at("initial_backoff_s"), 0, kMaxBackoffS, "initial_backoff_s"),
                            int_in(r->at("max_backoff_s"), 1, kMaxBackoffS, "max_backoff_s")};
    if (auto a = j.find("attempt"); a != j.end())
      s.attempt = int_in(*a, 1, kMaxAttempts, "attempt");
    s.last_error = j.value("last_error", json());
    if (auto l = j.find("lease_hash"); l != j.end() && !l->is_null())
      s.lease_hash = l->get<std::string>();
    return s;
  } catch (const json::exception& e) {
    return corrupt(e.what());
  } catch (const std::out_of_range& e) {
    return corrupt(e.what());
  }
}

}  // namespace jobstate
