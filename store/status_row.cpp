#include "store/status_row.h"

#include "store/byte_order.h"
#include "domain/json_text.h"

namespace jobstate {

namespace {
constexpr uint8_t kRowFormat = 1;
constexpr size_t kRowHeader = kStatusRowHeaderBytes;

std::string encode_row_header(const JobState& s, size_t reserve) {
  std::string v;
  v.reserve(kRowHeader + reserve);
  v.push_back(static_cast<char>(kRowFormat));
  put_u64_be(v, s.version);
  v.push_back(static_cast<char>(s.status));
  put_u64_be(v, s.created_seq);
  put_u64_be(v, static_cast<uint64_t>(next_deadline_ms(s)));
  put_u64_be(v, static_cast<uint64_t>(s.heartbeat_timeout_s));
  return v;
}

void append_json(std::string& out, std::string_view text, const nlohmann::json& j) {
  if (!text.empty())
    out += text;
  else if (j.is_null())
    out += "null";
  else if (j.is_object() && j.empty())
    out += "{}";
  else
    out += canonical_dump(j);
}

void append_int(std::string& out, std::optional<int64_t> v) {
  out += v ? std::to_string(*v) : "null";
}

// The JSON of t: "\"<format_rfc3339_ms(*t)>\"", or null.
void append_time(std::string& out, std::optional<TimeMs> t) {
  if (!t) {
    out += "null";
    return;
  }
  out += '"';
  append_rfc3339_ms(out, *t);
  out += '"';
}
}  // namespace

std::string encode_status_row_reference(const JobState& s) {
  std::string text = canonical_dump(job_to_json(s, 0));
  std::string v = encode_row_header(s, text.size());
  v += text;
  return v;
}

// job_to_json(s, 0)'s members in key order, each value as canonical text.
// projections_status_test checks it byte for byte against the reference.
std::string encode_status_row(const JobState& s, const RowTexts& texts) {
  std::string v = encode_row_header(s, 480 + texts.params.size() + texts.labels.size() +
                                           texts.progress.size() + texts.result.size());
  v += R"({"attempt":)";
  v += std::to_string(s.attempt);
  v += R"(,"cancel_requested":)";
  v += s.cancel_requested ? "true" : "false";
  v += R"(,"created_at":)";
  append_time(v, s.created_at_ms);
  v += R"(,"deadline_at":)";
  append_time(v, s.status == JobStatus::kRunning && s.deadline_ms
                     ? std::optional<TimeMs>(effective_deadline_ms(s, 0))
                     : std::nullopt);
  v += R"(,"error":)";
  append_json(v, {}, s.error);
  v += R"(,"execution_timeout_s":)";
  append_int(v, s.execution_timeout_s);
  v += R"(,"finished_at":)";
  append_time(v, s.finished_at_ms);
  v += R"(,"heartbeat_timeout_s":)";
  v += std::to_string(s.heartbeat_timeout_s);
  v += R"(,"id":")";
  v += s.id.to_string();
  v += R"(","labels":)";
  append_json(v, texts.labels, s.labels);
  v += R"(,"last_error":)";
  append_json(v, {}, s.last_error);
  v += R"(,"last_heartbeat_at":)";
  append_time(v, s.last_heartbeat_at_ms);
  v += R"(,"lease_hash":)";
  if (s.lease_hash)
    append_canonical_string(v, *s.lease_hash);
  else
    v += "null";
  v += R"(,"max_attempts":)";
  v += std::to_string(s.max_attempts());
  v += R"(,"not_before":)";
  append_time(v, s.not_before_ms);
  v += R"(,"params":)";
  append_json(v, texts.params, s.params);
  v += R"(,"priority":)";
  v += std::to_string(s.priority);
  v += R"(,"progress":)";
  append_json(v, texts.progress, s.progress);
  v += R"(,"queue_timeout_s":)";
  append_int(v, s.queue_timeout_s);
  v += R"(,"result":)";
  append_json(v, texts.result, s.result);
  v += R"(,"retry":)";
  if (s.retry) {
    v += R"({"initial_backoff_s":)";
    v += std::to_string(s.retry->initial_backoff_s);
    v += R"(,"max_attempts":)";
    v += std::to_string(s.retry->max_attempts);
    v += R"(,"max_backoff_s":)";
    v += std::to_string(s.retry->max_backoff_s);
    v += '}';
  } else {
    v += "null";
  }
  v += R"(,"started_at":)";
  append_time(v, s.started_at_ms);
  v += R"(,"state":")";
  v += job_status_name(s.status);
  v += R"(","type":)";
  append_canonical_string(v, s.type);
  v += R"(,"version":)";
  v += std::to_string(s.version);
  v += R"(,"worker":)";
  if (s.worker)
    append_canonical_string(v, *s.worker);
  else
    v += "null";
  v += '}';
  return v;
}

bool same_status_row(const StatusRow& a, const StatusRow& b) {
  if (a.version != b.version || a.status != b.status || a.created_seq != b.created_seq ||
      a.deadline_ms != b.deadline_ms || a.heartbeat_timeout_s != b.heartbeat_timeout_s)
    return false;
  if (a.json_text == b.json_text) return true;
  auto parse = [](const std::string& text) {
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return j;
    // The members added by issue 13, with the value a job without them has.
    static const nlohmann::json kLater = {
        {"attempt", 1},         {"execution_timeout_s", nullptr}, {"last_error", nullptr},
        {"lease_hash", nullptr}, {"max_attempts", 1},            {"not_before", nullptr},
        {"priority", 0},        {"queue_timeout_s", nullptr},     {"retry", nullptr}};
    for (auto& [k, v] : kLater.items())
      if (!j.contains(k)) j[k] = v;
    return j;
  };
  const auto ja = parse(a.json_text);
  const auto jb = parse(b.json_text);
  return !ja.is_discarded() && ja == jb;
}

Result<StatusRow> decode_status_row(std::string_view v) {
  if (v.size() < kRowHeader + 2 || static_cast<uint8_t>(v[0]) != kRowFormat)
    return make_error(ErrorCode::kCorruption, "status row: unknown format");
  StatusRow r;
  r.version = get_u64_be(v.substr(1));
  auto st = static_cast<uint8_t>(v[9]);
  if (st < 1 || st > 5) return make_error(ErrorCode::kCorruption, "status row: unknown state");
  r.status = static_cast<JobStatus>(st);
  r.created_seq = get_u64_be(v.substr(10));
  r.deadline_ms = static_cast<TimeMs>(get_u64_be(v.substr(18)));
  r.heartbeat_timeout_s = static_cast<int64_t>(get_u64_be(v.substr(26)));
  // The watchdog adds it (in ms) to a time: only what decide() allows.
  if (r.heartbeat_timeout_s < 1 || r.heartbeat_timeout_s > kMaxHeartbeatTimeoutS)
    return make_error(ErrorCode::kCorruption, "status row: bad heartbeat timeout");
  r.json_text = std::string(v.substr(kRowHeader));
  return r;
}

Result<JobState> StatusRow::to_state() const {
  auto j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(ErrorCode::kCorruption, "status row: bad JSON");
  return job_from_json(j, created_seq);
}

std::string StatusRow::type() const {
  // Types are plain A-Za-z0-9._:- : the member's text is the type in quotes.
  auto text = member_text(json_text, "type");
  if (text && text->size() >= 2 && text->find('\\') == std::string_view::npos)
    return std::string(text->substr(1, text->size() - 2));
  auto j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j.value("type", std::string()) : std::string();
}

bool StatusRow::renders_as_stored(TimeMs server_start_ms) const {
  return status != JobStatus::kRunning || deadline_ms == 0 || deadline_ms >= server_start_ms;
}

std::string StatusRow::render(TimeMs server_start_ms) const {
  if (renders_as_stored(server_start_ms)) return json_text;
  auto s = to_state();
  if (!s) return json_text;
  return canonical_dump(job_to_json(*s, server_start_ms));
}

}  // namespace jobstate
