#include "domain/job.h"

#include <array>

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
  json data = {{"type", c.type},
               {"params", c.params},
               {"heartbeat_timeout_s", c.heartbeat_timeout_s},
               {"labels", c.labels}};
  return std::vector<NewEvent>{{EventType::kCreated, std::move(data)}};
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
  Out operator()(const StartJob& c) const {
    if (c.worker.size() > 256) return invalid("worker must be at most 256 characters");
    if (s.status != JobStatus::kQueued) return transition(s, "start");
    return one(EventType::kStarted, {{"worker", c.worker}});
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
    return one(EventType::kFailed, member("error", std::move(*e)));
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
  Out operator()(const ExpireHeartbeat&) const {
    if (s.status != JobStatus::kRunning) return std::vector<NewEvent>{};
    TimeMs deadline = effective_deadline_ms(s, ctx.server_start_ms);
    if (ctx.now_ms < deadline) return std::vector<NewEvent>{};
    json error = {
        {"code", "heartbeat_timeout"},
        {"message", "no heartbeat within " + std::to_string(s.heartbeat_timeout_s) + " s"},
        {"details",
         {{"last_heartbeat_at", opt_time(s.last_heartbeat_at_ms)},
          {"deadline_at", format_rfc3339_ms(deadline)},
          {"progress", s.progress}}}};
    return one(EventType::kFailed, {{"error", std::move(error)}});
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

Result<std::vector<NewEvent>> decide(const JobState* state, const Command& command,
                                     const DecideContext& ctx) {
  if (auto* create = std::get_if<CreateJob>(&command)) return decide_create(state, *create);
  if (!state) return make_error(ErrorCode::kJobNotFound, "no such job");
  if (is_terminal(state->status))
    return make_error(ErrorCode::kJobTerminal,
                      std::string("job is already ") + job_status_name(state->status));
  if (ctx.expected_version && *ctx.expected_version != state->version)
    return make_error(ErrorCode::kVersionMismatch, "job is at version " +
                                                       std::to_string(state->version) + ", not " +
                                                       std::to_string(*ctx.expected_version));
  return std::visit(Decider{*state, ctx}, command);
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
              {"error", s.error}};
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
    return out.has_value();
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
    s.heartbeat_timeout_s = j.at("heartbeat_timeout_s").get<int64_t>();
    s.progress = j.at("progress");
    s.params = j.at("params");
    s.labels = j.at("labels");
    if (!j.at("worker").is_null()) s.worker = j.at("worker").get<std::string>();
    s.cancel_requested = j.at("cancel_requested").get<bool>();
    s.result = j.at("result");
    s.error = j.at("error");
    return s;
  } catch (const json::exception& e) {
    return corrupt(e.what());
  }
}

}  // namespace jobstate
