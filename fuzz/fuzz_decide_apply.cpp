// Random command sequences through decide/apply (domain/job.h), one job per
// input, checked against the state machine's invariants:
// - refusals in the documented order (not found, terminal, lease, version);
// - decide is deterministic, and what it accepts applies: every event moves
//   the version on by exactly one, along an allowed transition, and a
//   terminal state never changes again (every command on it is refused);
// - apply refuses a replayed (stale-version) event and anything after a
//   terminal one;
// - the state reads back from its job resource and its status row;
// - the log, chained, encoded as stored, decoded and folded again from its
//   canonical text, gives the same state (what rebuild and verify do).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "domain/event.h"
#include "domain/job.h"
#include "eventstore/event_codec.h"
#include "fuzz_check.h"
#include "state_checks.h"
#include "store/hash_chain.h"

using namespace jobstate;
using nlohmann::json;

namespace {

constexpr TimeMs kT0 = 1'795'802'400'000;  // 2026-11-27T18:00:00.000Z
const std::string kLeaseA(64, 'a'), kLeaseB(64, 'b');

template <typename T>
T pick(FuzzedDataProvider& in, const std::vector<T>& pool) {
  return pool[in.ConsumeIntegralInRange<size_t>(0, pool.size() - 1)];
}

// Any bytes as ASCII: the API hands decide only valid UTF-8 (parse_body
// checks), and canonical_dump requires it.
std::string text(FuzzedDataProvider& in, size_t max) {
  std::string s = in.ConsumeRandomLengthString(max);
  for (char& c : s)
    if (static_cast<unsigned char>(c) >= 0x80) c = '?';
  return s;
}

json some_json(FuzzedDataProvider& in) {
  static const std::vector<json> pool = {
      nullptr, json::object(), json::array(), 1, -1, 0.5, 1e300, "text", "é\u2028",
      json{{"k", "v"}}, json{{"nested", {{"a", {1, 2.25, nullptr}}}}}, true,
      json{{"fraction", 0.5}}};
  if (in.ConsumeBool()) return pick(in, pool);
  return text(in, 16);
}

Command make_command(FuzzedDataProvider& in, std::string& lease_for_start) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: {
      CreateJob c;
      c.type = pick<std::string>(in, {"thumbnail", "a.b:c-d_e", "", "bad type", std::string(129, 'x')});
      c.params = some_json(in);
      c.heartbeat_timeout_s = pick<int64_t>(in, {1, 5, 60, 120, 0, 86400, 86401, -1});
      if (in.ConsumeBool()) c.labels = pick<json>(in, {json::object(), json{{"team", "a"}}, json{{"n", 1}}, json::array()});
      if (in.ConsumeBool()) c.execution_timeout_s = pick<int64_t>(in, {1, 30, 600, 0, 604801});
      if (in.ConsumeBool()) c.queue_timeout_s = pick<int64_t>(in, {1, 30, 600, 0, 604801});
      if (in.ConsumeBool()) c.not_before_ms = kT0 + in.ConsumeIntegralInRange<int64_t>(-100000, 100000);
      if (in.ConsumeBool()) c.priority = pick<int64_t>(in, {0, 5, -1000, 1000, 1001});
      if (in.ConsumeBool())
        c.retry = RetryPolicy{pick<int64_t>(in, {1, 2, 3, 100, 0, 101}),
                              pick<int64_t>(in, {0, 1, 10, 86401}),
                              pick<int64_t>(in, {1, 5, 300, 0})};
      return c;
    }
    case 1: {
      StartJob s{pick<std::string>(in, {"host-1/42", "", std::string(257, 'w')})};
      if (in.ConsumeBool()) s.lease_hash = lease_for_start = pick(in, std::vector<std::string>{kLeaseA, kLeaseB});
      return s;
    }
    case 2: {
      static const std::vector<json> progress = {
          nullptr, json{{"fraction", 0.5}}, json{{"fraction", 2}}, json{{"fraction", -0.1}},
          json{{"message", "half"}}, "bad", json{{"fraction", 0.25}, {"message", "m"}, {"details", {{"x", 1}}}},
          json{{"other", 1}}};
      if (in.ConsumeBool()) return Heartbeat{pick(in, progress)};
      return Heartbeat{some_json(in)};
    }
    case 3:
      return SucceedJob{some_json(in)};
    case 4: {
      static const std::vector<json> errors = {
          json{{"code", "boom"}}, json{{"code", "heartbeat_timeout"}},
          json{{"code", "x"}, {"retryable", true}}, json{{"code", 1}}, "str",
          json{{"message", "no code"}}, json{{"code", "abandoned"}, {"message", "m"}, {"details", nullptr}},
          json{{"code", "x"}, {"retryable", "yes"}}};
      if (in.ConsumeBool()) return FailJob{pick(in, errors)};
      return FailJob{some_json(in)};
    }
    case 5:
      return RequestCancel{text(in, 8)};
    case 6:
      return ConfirmCancelled{text(in, 8)};
    default:
      return ExpireDeadlines{};
  }
}

JobStatus status_after(EventType t, JobStatus before) {
  switch (t) {
    case EventType::kCreated:
    case EventType::kRetryScheduled:
      return JobStatus::kQueued;
    case EventType::kStarted:
      return JobStatus::kRunning;
    case EventType::kHeartbeat:
    case EventType::kCancelRequested:
      return before;
    case EventType::kSucceeded:
      return JobStatus::kSucceeded;
    case EventType::kFailed:
      return JobStatus::kFailed;
    case EventType::kCancelled:
      return JobStatus::kCancelled;
  }
  return before;
}

// Which event types may follow a job in `s` (nullopt: no job yet).
bool allowed(const std::optional<JobStatus>& s, EventType t) {
  if (!s) return t == EventType::kCreated;
  switch (*s) {
    case JobStatus::kQueued:
      return t == EventType::kStarted || t == EventType::kCancelled || t == EventType::kFailed;
    case JobStatus::kRunning:
      return t == EventType::kHeartbeat || t == EventType::kSucceeded ||
             t == EventType::kFailed || t == EventType::kCancelRequested ||
             t == EventType::kCancelled || t == EventType::kRetryScheduled;
    default:
      return false;
  }
}

std::string describe(const Result<std::vector<NewEvent>>& r) {
  if (!r) return std::string("error ") + r.error().message;
  std::string out;
  for (auto& e : *r) out += std::string(event_type_name(e.type)) + " " + fuzz::show(e.data) + "; ";
  return out;
}

bool same(const Result<std::vector<NewEvent>>& a, const Result<std::vector<NewEvent>>& b) {
  if (a.ok() != b.ok()) return false;
  if (!a) return a.error().code == b.error().code && a.error().message == b.error().message;
  if (a->size() != b->size()) return false;
  for (size_t i = 0; i < a->size(); ++i)
    if ((*a)[i].type != (*b)[i].type || (*a)[i].data != (*b)[i].data) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const JobId id = *JobId::parse("3f0c8a2e-5b1d-4c7e-9a6f-0123456789ab");
  std::optional<JobState> s;
  std::vector<Event> log;
  TimeMs now = kT0;
  const TimeMs server_start = kT0 + in.ConsumeIntegralInRange<int64_t>(0, 600'000);

  for (int step = 0; step < 64 && in.remaining_bytes() > 0; ++step) {
    now += in.ConsumeIntegralInRange<int64_t>(0, 400'000);
    std::string start_lease;
    const Command cmd = make_command(in, start_lease);
    DecideContext ctx;
    ctx.now_ms = now;
    ctx.server_start_ms = server_start;
    ctx.jitter = in.ConsumeProbability<double>() * 0.999;
    if (in.ConsumeBool())
      ctx.expected_version = s && in.ConsumeBool() ? s->version : in.ConsumeIntegralInRange<uint64_t>(0, 8);
    if (in.ConsumeBool())
      ctx.lease_hash = s && s->lease_hash && in.ConsumeBool() ? *s->lease_hash
                                                              : pick(in, std::vector<std::string>{kLeaseA, kLeaseB});
    if (in.ConsumeBool()) ctx.by = "webapp";

    const JobState* before = s ? &*s : nullptr;
    const auto out = decide(before, cmd, ctx);
    FUZZ_CHECK(same(out, decide(before, cmd, ctx)), "decide is not deterministic");
    if (out && ctx.by)
      for (const auto& ne : *out)
        FUZZ_CHECK(ne.data.is_object() && ne.data.value("by", "") == *ctx.by, "an event lacks data.by");

    // Refusals in their documented order.
    const bool create = std::holds_alternative<CreateJob>(cmd);
    if (!before && !create) FUZZ_CHECK(!out && out.error().code == ErrorCode::kJobNotFound);
    if (before && create) FUZZ_CHECK(!out && out.error().code == ErrorCode::kInvalidTransition);
    if (before && !create && is_terminal(before->status))
      FUZZ_CHECK(!out && out.error().code == ErrorCode::kJobTerminal, describe(out));
    if (out && before && ctx.expected_version) FUZZ_CHECK(*ctx.expected_version == before->version);
    if (!out) {
      const auto c = out.error().code;
      FUZZ_CHECK(c == ErrorCode::kJobNotFound || c == ErrorCode::kJobTerminal ||
                     c == ErrorCode::kLeaseMismatch || c == ErrorCode::kVersionMismatch ||
                     c == ErrorCode::kInvalidRequest || c == ErrorCode::kInvalidTransition,
                 out.error().message);
      continue;
    }
    FUZZ_CHECK(out->size() <= 1, describe(out));

    for (const NewEvent& ne : *out) {
      const std::optional<JobStatus> st = s ? std::optional(s->status) : std::nullopt;
      FUZZ_CHECK(allowed(st, ne.type), describe(out));
      Event e;
      e.seq = log.size() + 1;
      e.job_id = id;
      e.version = s ? s->version + 1 : 1;
      e.type = ne.type;
      e.at_ms = now;
      e.data = ne.data;
      FUZZ_CHECK(e.data.is_object(), describe(out));
      auto next = apply(s ? &*s : nullptr, e);
      FUZZ_CHECK(next.ok(), describe(out), next.ok() ? "" : next.error().message);
      FUZZ_CHECK(next->version == e.version);
      FUZZ_CHECK(next->status == status_after(e.type, st.value_or(JobStatus::kQueued)),
                 describe(out));
      if (e.type == EventType::kRetryScheduled) {
        FUZZ_CHECK(next->attempt == s->attempt + 1 && next->attempt <= next->max_attempts());
        FUZZ_CHECK(next->not_before_ms && *next->not_before_ms >= now);
      }
      if (e.type == EventType::kStarted) FUZZ_CHECK(next->lease_hash == std::get<StartJob>(cmd).lease_hash);
      // The same event again is stale; one skipping a version is refused.
      FUZZ_CHECK(!apply(&*next, e).ok(), "a replayed event applied");
      Event skip = e;
      skip.version += 2;
      FUZZ_CHECK(!apply(&*next, skip).ok(), "an event skipping a version applied");
      s = std::move(*next);
      log.push_back(std::move(e));
      fuzz::check_state(*s);
    }
    if (out->empty() && before) FUZZ_CHECK(*s == *before);
    (void)effective_deadline_ms(*s, server_start);
    (void)next_deadline_ms(*s);
    (void)claimable_at_ms(*s);
  }

  // After a terminal state, every kind of event is refused.
  if (s && is_terminal(s->status)) {
    for (uint8_t t = 1; t <= 8; ++t) {
      Event e;
      e.seq = log.size() + 1;
      e.job_id = id;
      e.version = s->version + 1;
      e.type = static_cast<EventType>(t);
      e.at_ms = now;
      FUZZ_CHECK(!apply(&*s, e).ok(), event_type_name(e.type));
    }
  }

  // Rebuild from the stored log: chain, encode, decode, parse the canonical
  // text, fold. The same state comes out.
  std::string prev(kGenesisHash);
  std::optional<JobState> replayed;
  for (const Event& e : log) {
    const std::string canonical_data = canonical_dump(e.data);
    Event chained = e;
    chained.hash = chain_hash(prev, canonical_event_json(e));
    prev = chained.hash;
    const std::string stored = encode_stored_event(chained, canonical_data);
    auto view = decode_stored_event(e.seq, stored);
    FUZZ_CHECK(view.ok());
    FUZZ_CHECK(view->hash_hex() == chained.hash);
    auto read = view->to_event();
    FUZZ_CHECK(read.ok());
    auto next = apply(replayed ? &*replayed : nullptr, *read);
    FUZZ_CHECK(next.ok(), next.ok() ? "" : next.error().message);
    replayed = std::move(*next);
  }
  FUZZ_CHECK(replayed == s, "replay from the stored log differs");
  return 0;
}
