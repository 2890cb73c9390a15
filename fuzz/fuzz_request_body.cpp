// Request bodies: parse_body under the API's limits, then the mapping of the
// body to a command (create_job_from_body, transition_from_body,
// claim_from_body), then what decide/apply make of an accepted command.
//
// Input: one byte choosing the endpoint, then the body.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "api/request_json.h"
#include "domain/job.h"
#include "fuzz_check.h"
#include "state_checks.h"

using namespace jobstate;
using nlohmann::json;

namespace {

constexpr std::string_view kEndpoints[] = {"create", "claims",    "start", "heartbeat", "succeed",
                                           "fail",   "cancel",   "cancelled", "unknown"};
constexpr TimeMs kNow = 1'795'802'400'000;  // 2026-11-27T18:00:00Z

// Applies decide's events to `s` (nullptr: no job yet) as the writer would,
// checking each applies and moves the version on by one.
std::optional<JobState> apply_all(const JobState* s, const std::vector<NewEvent>& events,
                                  uint64_t& seq, const JobId& id) {
  std::optional<JobState> cur;
  if (s) cur = *s;
  for (const auto& ne : events) {
    Event e;
    e.seq = ++seq;
    e.job_id = id;
    e.version = cur ? cur->version + 1 : 1;
    e.type = ne.type;
    e.at_ms = kNow;
    e.data = ne.data;
    auto next = apply(cur ? &*cur : nullptr, e);
    FUZZ_CHECK(next.ok(), std::string(event_type_name(e.type)) + " " + fuzz::show(e.data) + ": " +
                              (next.ok() ? "" : next.error().message));
    FUZZ_CHECK(next->version == e.version);
    // What the log stores is the canonical text; it must read back the same.
    FUZZ_CHECK(json::parse(canonical_dump(e.data)) == e.data);
    cur = std::move(*next);
  }
  return cur;
}

// A running job created with generous limits, for the transitions.
JobState running_job(const JobId& id, uint64_t& seq) {
  CreateJob c;
  c.type = "fuzz";
  c.retry = RetryPolicy{3, 1, 10};
  DecideContext ctx{kNow, kNow};
  auto created = decide(nullptr, c, ctx);
  auto s = apply_all(nullptr, *created, seq, id);
  auto started = decide(&*s, StartJob{"w"}, ctx);
  return *apply_all(&*s, *started, seq, id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > api::kMaxBodyBytes + 1) return 0;
  const std::string_view endpoint = kEndpoints[data[0] % std::size(kEndpoints)];
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);

  auto parsed = api::parse_body(body);
  if (!parsed) {
    FUZZ_CHECK(parsed.error().code == ErrorCode::kInvalidRequest);
    return 0;
  }
  if (*parsed) {
    const json& j = **parsed;
    FUZZ_CHECK(fuzz::depth(j) <= api::kMaxJsonDepth);
    // Valid UTF-8 was checked: the canonical form can be written, and reads back.
    const std::string text = canonical_dump(j);
    FUZZ_CHECK(json::parse(text) == j, text);
    auto again = api::parse_body(text);
    FUZZ_CHECK(again.ok() && *again && **again == j, text);
  } else {
    FUZZ_CHECK(body.find_first_not_of(" \t\r\n") == std::string_view::npos);
  }

  const JobId id = *JobId::parse("3f0c8a2e-5b1d-4c7e-9a6f-0123456789ab");
  uint64_t seq = 0;
  if (endpoint == "create") {
    auto c = api::create_job_from_body(*parsed);
    if (!c) {
      FUZZ_CHECK(c.error().code == ErrorCode::kInvalidRequest);
      return 0;
    }
    FUZZ_CHECK(api::create_fingerprint(*c).size() == 32);
    auto events = decide(nullptr, *c, DecideContext{kNow, kNow});
    if (!events) {
      FUZZ_CHECK(events.error().code == ErrorCode::kInvalidRequest, events.error().message);
      return 0;
    }
    FUZZ_CHECK(events->size() == 1 && (*events)[0].type == EventType::kCreated);
    auto s = apply_all(nullptr, *events, seq, id);
    FUZZ_CHECK(s->status == JobStatus::kQueued && s->version == 1 && is_valid_job_type(s->type));
    FUZZ_CHECK(s->params == c->params && s->labels == c->labels && s->priority == c->priority);
    fuzz::check_state(*s);
    return 0;
  }
  if (endpoint == "claims") {
    auto c = api::claim_from_body(*parsed);
    if (!c) {
      FUZZ_CHECK(c.error().code == ErrorCode::kInvalidRequest);
      return 0;
    }
    FUZZ_CHECK(!c->types.empty() && c->types.size() <= 100);
    for (size_t i = 0; i < c->types.size(); ++i) {
      FUZZ_CHECK(is_valid_job_type(c->types[i]), c->types[i]);
      FUZZ_CHECK(std::find(c->types.begin() + i + 1, c->types.end(), c->types[i]) ==
                 c->types.end());
    }
    FUZZ_CHECK(c->worker.size() <= 256);
    FUZZ_CHECK(c->wait_s >= 0 && c->wait_s <= 60);
    return 0;
  }
  auto cmd = api::transition_from_body(endpoint, *parsed);
  if (!cmd) {
    FUZZ_CHECK(cmd.error().code == ErrorCode::kInvalidRequest);
    return 0;
  }
  FUZZ_CHECK(endpoint != "unknown");
  // Against a running job (with and without a cancel request).
  JobState s = running_job(id, seq);
  fuzz::check_state(s);
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) {
      auto cr = decide(&s, RequestCancel{"r"}, DecideContext{kNow, kNow});
      s = *apply_all(&s, *cr, seq, id);
    }
    auto events = decide(&s, *cmd, DecideContext{kNow, kNow});
    if (!events) {
      FUZZ_CHECK(events.error().code == ErrorCode::kInvalidRequest ||
                     events.error().code == ErrorCode::kInvalidTransition,
                 events.error().message);
      continue;
    }
    auto after = apply_all(&s, *events, seq, id);
    FUZZ_CHECK(after->version == s.version + events->size());
    fuzz::check_state(*after);
  }
  return 0;
}
