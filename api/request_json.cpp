#include "api/request_json.h"

#include <openssl/sha.h>

#include <algorithm>
#include <charconv>
#include <unordered_set>
#include <vector>

namespace jobstate::api {

using nlohmann::json;

namespace {
Error invalid(std::string msg) { return make_error(ErrorCode::kInvalidRequest, std::move(msg)); }

// Depth of [ / { nesting outside strings, without parsing.
int max_depth(std::string_view s) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') deepest = std::max(deepest, ++depth);
    else if (c == ']' || c == '}') --depth;
  }
  return deepest;
}

Result<const json*> object_body(const std::optional<json>& body, bool required) {
  if (!body) {
    if (required) return invalid("a JSON object body is required");
    return static_cast<const json*>(nullptr);
  }
  if (!body->is_object()) return invalid("the body must be a JSON object");
  return &*body;
}

// Rejects members other than `allowed`: a typo must not be silently ignored.
Status only_members(const json& obj, std::initializer_list<const char*> allowed) {
  for (auto& [k, v] : obj.items()) {
    bool ok = false;
    for (auto* a : allowed) ok = ok || k == a;
    if (!ok) return invalid("unknown member '" + k + "'");
  }
  return ok_status();
}

Result<std::string> optional_string(const json* obj, const char* key, size_t max_len) {
  if (!obj) return std::string();
  auto it = obj->find(key);
  if (it == obj->end() || it->is_null()) return std::string();
  if (!it->is_string()) return invalid(std::string(key) + " must be a string");
  if (it->get_ref<const std::string&>().size() > max_len)
    return invalid(std::string(key) + " must be at most " + std::to_string(max_len) + " bytes");
  return it->get<std::string>();
}
}  // namespace

Result<std::optional<json>> parse_body(std::string_view body) {
  size_t first = body.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return std::optional<json>();
  if (max_depth(body) > kMaxJsonDepth)
    return invalid("JSON nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  // Each open object's member names so far (nlohmann keeps the last of a
  // duplicate without a word).
  std::vector<std::unordered_set<std::string>> open_objects;
  std::optional<std::string> duplicate;
  auto watch = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty()) {
      const std::string& name = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(name).second && !duplicate) duplicate = name;
    }
    return true;
  };
  json j = json::parse(body.begin(), body.end(), watch, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid("the body is not valid JSON (or not valid UTF-8)");
  if (duplicate) return invalid("the body has the member \"" + *duplicate + "\" twice in one object");
  return std::optional<json>(std::move(j));
}

std::optional<std::string> percent_decode(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;  // fewer than two characters follow
    const int hi = hex(text[i + 1]), lo = hex(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

Result<CreateJob> create_job_from_body(const std::optional<json>& body) {
  auto obj = object_body(body, true);
  if (!obj) return obj.error();
  const json& b = **obj;
  if (auto s = only_members(b, {"type", "params", "heartbeat_timeout_s", "labels",
                                "execution_timeout_s", "queue_timeout_s", "not_before",
                                "priority", "retry"});
      !s)
    return s.error();
  CreateJob c;
  auto type = b.find("type");
  if (type == b.end() || !type->is_string()) return invalid("type is required: a string");
  c.type = type->get<std::string>();
  if (auto p = b.find("params"); p != b.end() && !p->is_null()) c.params = *p;
  if (auto t = b.find("heartbeat_timeout_s"); t != b.end() && !t->is_null()) {
    if (!t->is_number_integer()) return invalid("heartbeat_timeout_s must be an integer from 1 to 86400");
    c.heartbeat_timeout_s = t->is_number_unsigned() && t->get<uint64_t>() > INT64_MAX
                                ? INT64_MAX
                                : t->get<int64_t>();
  }
  if (auto l = b.find("labels"); l != b.end() && !l->is_null()) c.labels = *l;
  // Integers; the decider checks their ranges (its message names them).
  auto integer = [](const json& obj, const char* key, const char* range,
                    std::optional<int64_t>& out) -> Status {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return ok_status();
    if (!it->is_number_integer())
      return invalid(std::string(key) + " must be an integer from " + range);
    out = it->is_number_unsigned() && it->get<uint64_t>() > INT64_MAX ? INT64_MAX
                                                                        : it->get<int64_t>();
    return ok_status();
  };
  if (auto s = integer(b, "execution_timeout_s", "1 to 604800", c.execution_timeout_s); !s)
    return s.error();
  if (auto s = integer(b, "queue_timeout_s", "1 to 604800", c.queue_timeout_s); !s)
    return s.error();
  std::optional<int64_t> priority;
  if (auto s = integer(b, "priority", "-1000 to 1000", priority); !s) return s.error();
  c.priority = priority.value_or(0);
  if (auto nb = b.find("not_before"); nb != b.end() && !nb->is_null()) {
    std::optional<TimeMs> at;
    if (nb->is_string()) at = parse_rfc3339(nb->get_ref<const std::string&>());
    if (!at) return invalid("not_before must be an RFC 3339 time, such as 2026-12-06T18:00:00Z");
    c.not_before_ms = at;
  }
  if (auto r = b.find("retry"); r != b.end() && !r->is_null()) {
    if (!r->is_object()) return invalid("retry must be an object");
    if (auto s = only_members(*r, {"max_attempts", "initial_backoff_s", "max_backoff_s"}); !s)
      return invalid("retry: " + s.error().message);
    RetryPolicy p;
    std::optional<int64_t> v;
    if (auto s = integer(*r, "max_attempts", "1 to 100", v); !s) return s.error();
    p.max_attempts = v.value_or(p.max_attempts);
    v.reset();
    if (auto s = integer(*r, "initial_backoff_s", "0 to 86400", v); !s) return s.error();
    p.initial_backoff_s = v.value_or(p.initial_backoff_s);
    v.reset();
    if (auto s = integer(*r, "max_backoff_s", "1 to 86400", v); !s) return s.error();
    p.max_backoff_s = v.value_or(p.max_backoff_s);
    c.retry = p;
  }
  return c;
}

Result<ClaimRequest> claim_from_body(const std::optional<json>& body) {
  auto obj = object_body(body, true);
  if (!obj) return obj.error();
  const json& b = **obj;
  if (auto s = only_members(b, {"types", "worker", "wait_s"}); !s) return s.error();
  ClaimRequest c;
  auto types = b.find("types");
  if (types == b.end() || !types->is_array() || types->empty() || types->size() > 100)
    return invalid("types must be an array of 1 to 100 job types");
  for (auto& t : *types) {
    if (!t.is_string() || !is_valid_job_type(t.get_ref<const std::string&>()))
      return invalid("types must be job types: 1 to 128 of A-Za-z0-9._:-");
    const std::string& type = t.get_ref<const std::string&>();
    if (std::find(c.types.begin(), c.types.end(), type) == c.types.end()) c.types.push_back(type);
  }
  auto worker = optional_string(&b, "worker", 256);
  if (!worker) return worker.error();
  c.worker = std::move(*worker);
  if (auto w = b.find("wait_s"); w != b.end() && !w->is_null()) {
    if (!w->is_number_integer() || w->get<int64_t>() < 0 || w->get<int64_t>() > 60)
      return invalid("wait_s must be an integer from 0 to 60");
    c.wait_s = w->get<int64_t>();
  }
  return c;
}

Result<Command> transition_from_body(std::string_view action, const std::optional<json>& body) {
  const bool required = action == "fail";
  auto obj = object_body(body, required);
  if (!obj) return obj.error();
  const json* b = *obj;
  auto member = [&](const char* key) -> json {
    if (!b) return json();
    auto it = b->find(key);
    return it == b->end() ? json() : *it;
  };
  if (action == "start") {
    if (b) if (auto s = only_members(*b, {"worker"}); !s) return s.error();
    auto w = optional_string(b, "worker", 256);
    if (!w) return w.error();
    return Command(StartJob{*w});
  }
  if (action == "heartbeat") {
    if (b) if (auto s = only_members(*b, {"progress"}); !s) return s.error();
    return Command(Heartbeat{member("progress")});
  }
  if (action == "succeed") {
    if (b) if (auto s = only_members(*b, {"result"}); !s) return s.error();
    return Command(SucceedJob{member("result")});
  }
  if (action == "fail") {
    if (auto s = only_members(*b, {"error"}); !s) return s.error();
    json e = member("error");
    if (e.is_null()) return invalid("error is required: {\"code\": \"...\", \"message\": \"...\"}");
    return Command(FailJob{std::move(e)});
  }
  if (action == "cancel" || action == "cancelled") {
    if (b) if (auto s = only_members(*b, {"reason"}); !s) return s.error();
    auto r = optional_string(b, "reason", 4096);
    if (!r) return r.error();
    if (action == "cancel") return Command(RequestCancel{*r});
    return Command(ConfirmCancelled{*r});
  }
  return invalid("unknown action");
}

std::string create_fingerprint(const CreateJob& c) {
  json j = {{"type", c.type},
            {"params", c.params},
            {"heartbeat_timeout_s", c.heartbeat_timeout_s},
            {"labels", c.labels}};
  // Only what was asked for: keys stored before issue 13 keep matching.
  if (c.execution_timeout_s) j["execution_timeout_s"] = *c.execution_timeout_s;
  if (c.queue_timeout_s) j["queue_timeout_s"] = *c.queue_timeout_s;
  if (c.not_before_ms) j["not_before_ms"] = *c.not_before_ms;
  if (c.priority != 0) j["priority"] = c.priority;
  if (c.retry)
    j["retry"] = {c.retry->max_attempts, c.retry->initial_backoff_s, c.retry->max_backoff_s};
  std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof md);
}

std::optional<int64_t> parse_int64(std::string_view text) {
  // No length cap: leading zeros are allowed ("0010"), and from_chars
  // reports a value beyond int64 as out of range (fuzz_query_ids).
  if (text.empty()) return std::nullopt;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  if (text[0] == '+') return std::nullopt;
  return v;
}

std::optional<uint64_t> parse_etag_version(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"')
    text = text.substr(1, text.size() - 2);
  auto v = parse_int64(text);
  if (!v || *v < 0 || text[0] == '-') return std::nullopt;
  return static_cast<uint64_t>(*v);
}

}  // namespace jobstate::api
