// decide(state, command): every (state, command) pair, the order in which
// refusals are reported, command validation, and the watchdog's deadline rule.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "domain/job.h"
#include "test_util.h"

namespace jobstate {
namespace {

using nlohmann::json;

const JobId kId = *JobId::parse("3f0c8a2e-5b1d-4c7e-9a6f-0123456789ab");
constexpr TimeMs kT0 = 1'795'802'400'000;  // 2026-11-27T18:00:00.000Z
constexpr int64_t kTimeoutS = 60;

Event make_event(uint64_t seq, uint64_t version, EventType type, TimeMs at, json data) {
  Event e;
  e.seq = seq;
  e.job_id = kId;
  e.version = version;
  e.type = type;
  e.at_ms = at;
  e.data = std::move(data);
  return e;
}

// Folds events of kId; every one must apply.
JobState fold(const std::vector<Event>& events) {
  std::optional<JobState> s;
  for (const auto& e : events) {
    auto next = apply(s ? &*s : nullptr, e);
    EXPECT_TRUE(next.ok()) << testing::describe_error(next);
    if (!next.ok()) break;
    s = std::move(*next);
  }
  return *s;
}

Event created_event() {
  return make_event(1, 1, EventType::kCreated, kT0,
                    {{"type", "thumbnail"},
                     {"params", json::object()},
                     {"heartbeat_timeout_s", kTimeoutS},
                     {"labels", json::object()}});
}
Event started_event() {
  return make_event(2, 2, EventType::kStarted, kT0 + 1000, {{"worker", "host-1/4242"}});
}

enum StateName {
  kNone,
  kQueued,
  kRunning,
  kRunningCancelRequested,
  kSucceeded,
  kFailed,
  kCancelled
};
constexpr std::array<const char*, 7> kStateNames = {
    "no job", "queued", "running", "running+cancel_requested", "succeeded", "failed", "cancelled"};

std::optional<JobState> state_named(StateName n) {
  const Event c = created_event();
  const Event st = started_event();
  const Event cr = make_event(3, 3, EventType::kCancelRequested, kT0 + 2000, {{"reason", "r"}});
  switch (n) {
    case kNone:
      return std::nullopt;
    case kQueued:
      return fold({c});
    case kRunning:
      return fold({c, st});
    case kRunningCancelRequested:
      return fold({c, st, cr});
    case kSucceeded:
      return fold({c, st, make_event(3, 3, EventType::kSucceeded, kT0 + 3000, {{"result", 1}})});
    case kFailed:
      return fold(
          {c, make_event(2, 2, EventType::kFailed, kT0 + 3000,
                         {{"error", {{"code", "x"}, {"message", ""}, {"details", nullptr}}}})});
    case kCancelled:
      return fold({c, make_event(2, 2, EventType::kCancelled, kT0 + 3000, {{"reason", "r"}})});
  }
  return std::nullopt;
}

// One valid command of each alternative, in Command's order.
std::vector<Command> all_commands() {
  return {CreateJob{"thumbnail", json::object(), kTimeoutS, json::object()},
          StartJob{"host-1/4242"},
          Heartbeat{{{"fraction", 0.5}}},
          SucceedJob{{{"ok", true}}},
          FailJob{{{"code", "boom"}}},
          RequestCancel{"user asked"},
          ConfirmCancelled{"stopped"},
          ExpireDeadlines{}};
}

// Long past every deadline, so ExpireDeadlines fires on running jobs.
DecideContext late_context() {
  DecideContext ctx;
  ctx.now_ms = kT0 + 3'600'000;
  ctx.server_start_ms = kT0;
  return ctx;
}

struct Expect {
  std::optional<ErrorCode> error;
  std::vector<EventType> events;   // when accepted
  std::optional<JobStatus> after;  // status after applying the events (accepted only)
};
Expect refused(ErrorCode c) {
  return {c, {}, std::nullopt};
}
Expect emits(std::vector<EventType> events, JobStatus after) {
  return {std::nullopt, std::move(events), after};
}

using E = EventType;
using S = JobStatus;
constexpr auto kIT = ErrorCode::kInvalidTransition;
constexpr auto kTerm = ErrorCode::kJobTerminal;
constexpr auto kNF = ErrorCode::kJobNotFound;

// Rows: states in StateName order. Columns: create, start, heartbeat, succeed,
// fail, cancel, cancelled, expire.
std::vector<std::vector<Expect>> expected_table() {
  return {
      // no job
      {emits({E::kCreated}, S::kQueued), refused(kNF), refused(kNF), refused(kNF), refused(kNF),
       refused(kNF), refused(kNF), refused(kNF)},
      // queued
      {refused(kIT), emits({E::kStarted}, S::kRunning), refused(kIT), refused(kIT),
       emits({E::kFailed}, S::kFailed), emits({E::kCancelled}, S::kCancelled), refused(kIT),
       emits({}, S::kQueued)},
      // running
      {refused(kIT), refused(kIT), emits({E::kHeartbeat}, S::kRunning),
       emits({E::kSucceeded}, S::kSucceeded), emits({E::kFailed}, S::kFailed),
       emits({E::kCancelRequested}, S::kRunning), refused(kIT), emits({E::kFailed}, S::kFailed)},
      // running + cancel requested
      {refused(kIT), refused(kIT), emits({E::kHeartbeat}, S::kRunning),
       emits({E::kSucceeded}, S::kSucceeded), emits({E::kFailed}, S::kFailed),
       emits({}, S::kRunning), emits({E::kCancelled}, S::kCancelled),
       emits({E::kFailed}, S::kFailed)},
      // succeeded, failed, cancelled: a create names an existing id; the rest is final.
      {refused(kIT), refused(kTerm), refused(kTerm), refused(kTerm), refused(kTerm), refused(kTerm),
       refused(kTerm), refused(kTerm)},
      {refused(kIT), refused(kTerm), refused(kTerm), refused(kTerm), refused(kTerm), refused(kTerm),
       refused(kTerm), refused(kTerm)},
      {refused(kIT), refused(kTerm), refused(kTerm), refused(kTerm), refused(kTerm), refused(kTerm),
       refused(kTerm), refused(kTerm)},
  };
}

// Checks one decide() outcome against `want`; accepted events must apply to
// the state (decide and apply agree) and leave it in `want.after`.
void check_outcome(const std::optional<JobState>& state, const Command& cmd,
                   const DecideContext& ctx, const Expect& want) {
  auto got = decide(state ? &*state : nullptr, cmd, ctx);
  if (want.error) {
    EXPECT_ERROR_CODE(got, *want.error);
    return;
  }
  ASSERT_TRUE(got.ok()) << testing::describe_error(got);
  std::vector<EventType> types;
  for (const auto& ne : *got) types.push_back(ne.type);
  ASSERT_EQ(types, want.events);
  std::optional<JobState> s = state;
  uint64_t seq = 100;
  for (const auto& ne : *got) {
    Event e = make_event(++seq, s ? s->version + 1 : 1, ne.type, ctx.now_ms, ne.data);
    auto next = apply(s ? &*s : nullptr, e);
    ASSERT_TRUE(next.ok()) << "decide and apply disagree: " << testing::describe_error(next);
    s = std::move(*next);
  }
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->status, *want.after);
  EXPECT_EQ(s->version, (state ? state->version : 0) + got->size());
}

TEST(DomainDecideTable, EveryStateAndCommand) {
  const auto table = expected_table();
  const auto commands = all_commands();
  ASSERT_EQ(commands.size(), std::variant_size_v<Command>);
  for (int st = kNone; st <= kCancelled; ++st) {
    const auto state = state_named(static_cast<StateName>(st));
    for (size_t c = 0; c < commands.size(); ++c) {
      SCOPED_TRACE(std::string(kStateNames[st]) + " × " + command_name(commands[c]));
      check_outcome(state, commands[c], late_context(), table[st][c]);
    }
  }
}

// With ctx.by, the same table holds, and every event records who asked
// (data.by) on top of exactly the data it has without.
TEST(DomainDecideTable, EveryEventRecordsWhoAsked) {
  const auto table = expected_table();
  const auto commands = all_commands();
  DecideContext by = late_context();
  by.by = "webapp";
  for (int st = kNone; st <= kCancelled; ++st) {
    const auto state = state_named(static_cast<StateName>(st));
    for (size_t c = 0; c < commands.size(); ++c) {
      SCOPED_TRACE(std::string(kStateNames[st]) + " × " + command_name(commands[c]));
      check_outcome(state, commands[c], by, table[st][c]);
      auto with = decide(state ? &*state : nullptr, commands[c], by);
      auto without = decide(state ? &*state : nullptr, commands[c], late_context());
      ASSERT_EQ(with.ok(), without.ok());
      if (!with.ok()) continue;
      ASSERT_EQ(with->size(), without->size());
      for (size_t i = 0; i < with->size(); ++i) {
        json data = (*with)[i].data;
        EXPECT_EQ(data["by"], "webapp");
        data.erase("by");
        // Retry jitter aside (none here: no retry policy), the rest is unchanged.
        EXPECT_EQ(data, (*without)[i].data);
      }
    }
  }
}

TEST(DomainDecideTable, MatchingExpectedVersionChangesNothing) {
  const auto table = expected_table();
  const auto commands = all_commands();
  for (int st = kQueued; st <= kCancelled; ++st) {
    const auto state = state_named(static_cast<StateName>(st));
    for (size_t c = 0; c < commands.size(); ++c) {
      SCOPED_TRACE(std::string(kStateNames[st]) + " × " + command_name(commands[c]));
      DecideContext ctx = late_context();
      ctx.expected_version = state->version;
      check_outcome(state, commands[c], ctx, table[st][c]);
    }
  }
}

// API.md: a terminal job answers job-terminal whatever If-Match says;
// otherwise version-mismatch comes before invalid-transition (and before
// content validation).
TEST(DomainDecideTable, StaleExpectedVersion) {
  const auto table = expected_table();
  const auto commands = all_commands();
  for (int st = kNone; st <= kCancelled; ++st) {
    const auto state = state_named(static_cast<StateName>(st));
    for (size_t c = 0; c < commands.size(); ++c) {
      SCOPED_TRACE(std::string(kStateNames[st]) + " × " + command_name(commands[c]));
      DecideContext ctx = late_context();
      ctx.expected_version = (state ? state->version : 0) + 7;
      Expect want;
      if (std::holds_alternative<CreateJob>(commands[c]))
        want = table[st][c];  // creation has no version to match
      else if (!state)
        want = refused(kNF);
      else if (is_terminal(state->status))
        want = refused(kTerm);
      else
        want = refused(ErrorCode::kVersionMismatch);
      check_outcome(state, commands[c], ctx, want);
    }
  }
}

TEST(DomainDecideOrder, VersionMismatchBeatsInvalidContent) {
  const auto running = state_named(kRunning);
  DecideContext ctx = late_context();
  ctx.expected_version = 1;
  EXPECT_ERROR_CODE(decide(&*running, Heartbeat{{{"fraction", 2}}}, ctx),
                    ErrorCode::kVersionMismatch);
  EXPECT_ERROR_CODE(decide(&*running, FailJob{json::array()}, ctx), ErrorCode::kVersionMismatch);
}

TEST(DomainDecideOrder, TerminalBeatsInvalidContent) {
  const auto done = state_named(kSucceeded);
  EXPECT_ERROR_CODE(decide(&*done, Heartbeat{{{"fraction", 2}}}, late_context()),
                    ErrorCode::kJobTerminal);
  EXPECT_ERROR_CODE(decide(&*done, FailJob{json::array()}, late_context()),
                    ErrorCode::kJobTerminal);
}

TEST(DomainDecideOrder, InvalidContentBeatsInvalidTransition) {
  const auto queued = state_named(kQueued);
  const auto running = state_named(kRunning);
  EXPECT_ERROR_CODE(decide(&*queued, Heartbeat{{{"fraction", 2}}}, late_context()),
                    ErrorCode::kInvalidRequest);
  EXPECT_ERROR_CODE(decide(&*running, StartJob{std::string(257, 'w')}, late_context()),
                    ErrorCode::kInvalidRequest);
}

TEST(DomainDecideOrder, MissingJobBeatsEverything) {
  DecideContext ctx = late_context();
  ctx.expected_version = 3;
  EXPECT_ERROR_CODE(decide(nullptr, Heartbeat{{{"fraction", 2}}}, ctx), ErrorCode::kJobNotFound);
}

TEST(DomainDecideEvents, DataOfEachEvent) {
  const auto queued = state_named(kQueued);
  const auto running = state_named(kRunning);
  const auto ctx = late_context();

  auto created =
      decide(nullptr, CreateJob{"thumb.v2:x-y_z", {{"path", "/a"}}, 300, {{"team", "media"}}}, ctx);
  ASSERT_OK(created);
  EXPECT_EQ((*created)[0].data, (json{{"type", "thumb.v2:x-y_z"},
                                      {"params", {{"path", "/a"}}},
                                      {"heartbeat_timeout_s", 300},
                                      {"labels", {{"team", "media"}}}}));

  auto started = decide(&*queued, StartJob{"host-1/4242"}, ctx);
  ASSERT_OK(started);
  EXPECT_EQ((*started)[0].data, (json{{"worker", "host-1/4242"}}));

  // Progress is stored normalised: all three members, absent ones null.
  auto hb = decide(&*running, Heartbeat{{{"fraction", 0.25}}}, ctx);
  ASSERT_OK(hb);
  EXPECT_EQ((*hb)[0].data,
            (json{{"progress", {{"fraction", 0.25}, {"message", nullptr}, {"details", nullptr}}}}));
  auto hb_null = decide(&*running, Heartbeat{nullptr}, ctx);
  ASSERT_OK(hb_null);
  EXPECT_EQ((*hb_null)[0].data, (json{{"progress", nullptr}}));

  auto ok = decide(&*running, SucceedJob{{{"thumb", "/t.png"}}}, ctx);
  ASSERT_OK(ok);
  EXPECT_EQ((*ok)[0].data, (json{{"result", {{"thumb", "/t.png"}}}}));

  // An error is stored normalised too: message defaults to "", details to null.
  auto failed = decide(&*running, FailJob{{{"code", "oom"}}}, ctx);
  ASSERT_OK(failed);
  EXPECT_EQ((*failed)[0].data,
            (json{{"error", {{"code", "oom"}, {"message", ""}, {"details", nullptr}}}}));

  auto cancel = decide(&*running, RequestCancel{"user"}, ctx);
  ASSERT_OK(cancel);
  EXPECT_EQ((*cancel)[0].data, (json{{"reason", "user"}}));
}

TEST(DomainDecideValidation, JobType) {
  const auto ctx = late_context();
  auto create = [&](std::string type) {
    return decide(nullptr, CreateJob{std::move(type), json::object(), 120, json::object()}, ctx);
  };
  EXPECT_OK(create("a"));
  EXPECT_OK(create(std::string(128, 'x')));
  EXPECT_OK(create("AZaz09._:-"));
  for (std::string bad : {std::string(), std::string(129, 'x'), std::string("a b"),
                          std::string("a/b"), std::string("ü"), std::string("a\nb"),
                          std::string("a\0b", 3), std::string("job*"), std::string("\"q\"")}) {
    SCOPED_TRACE(bad);
    EXPECT_ERROR_CODE(create(bad), ErrorCode::kInvalidRequest);
    EXPECT_FALSE(is_valid_job_type(bad));
  }
}

TEST(DomainDecideValidation, HeartbeatTimeout) {
  const auto ctx = late_context();
  auto create = [&](int64_t timeout_s) {
    return decide(nullptr, CreateJob{"t", json::object(), timeout_s, json::object()}, ctx);
  };
  EXPECT_OK(create(1));
  EXPECT_OK(create(86400));
  for (int64_t bad : {int64_t{0}, int64_t{-1}, int64_t{86401}, std::numeric_limits<int64_t>::max(),
                      std::numeric_limits<int64_t>::min()}) {
    SCOPED_TRACE(bad);
    EXPECT_ERROR_CODE(create(bad), ErrorCode::kInvalidRequest);
  }
}

TEST(DomainDecideValidation, Labels) {
  const auto ctx = late_context();
  auto create = [&](json labels) {
    return decide(nullptr, CreateJob{"t", json::object(), 120, std::move(labels)}, ctx);
  };
  json labels = json::object();
  for (int i = 0; i < 32; ++i) labels["k" + std::to_string(i)] = "v";
  EXPECT_OK(create(labels));
  labels["one-too-many"] = "v";
  EXPECT_ERROR_CODE(create(labels), ErrorCode::kInvalidRequest);
  EXPECT_OK(create(json::object()));
  EXPECT_ERROR_CODE(create({{"n", 1}}), ErrorCode::kInvalidRequest);
  EXPECT_ERROR_CODE(create({{"n", nullptr}}), ErrorCode::kInvalidRequest);
  EXPECT_ERROR_CODE(create({{"n", {{"nested", "x"}}}}), ErrorCode::kInvalidRequest);
  EXPECT_ERROR_CODE(create(json::array({"a", "b"})), ErrorCode::kInvalidRequest);
  EXPECT_ERROR_CODE(create("team=media"), ErrorCode::kInvalidRequest);
}

TEST(DomainDecideValidation, Progress) {
  const auto running = state_named(kRunning);
  const auto ctx = late_context();
  auto hb = [&](json progress) { return decide(&*running, Heartbeat{std::move(progress)}, ctx); };
  EXPECT_OK(hb(nullptr));
  EXPECT_OK(hb(json::object()));
  EXPECT_OK(hb({{"fraction", 0}}));
  EXPECT_OK(hb({{"fraction", 1}}));
  EXPECT_OK(hb({{"fraction", 0.0}}));
  EXPECT_OK(hb({{"fraction", 1.0}}));
  EXPECT_OK(hb({{"fraction", nullptr}, {"message", nullptr}}));
  EXPECT_OK(hb({{"fraction", 0.5}, {"message", "page 1"}, {"details", {{"any", {1, 2}}}}}));
  for (json bad :
       {json{{"fraction", -0.0001}}, json{{"fraction", 1.0001}}, json{{"fraction", 2}},
        json{{"fraction", -1}}, json{{"fraction", "0.5"}}, json{{"fraction", true}},
        json{{"fraction", std::nan("")}},
        json{{"fraction", std::numeric_limits<double>::infinity()}}, json{{"message", 5}},
        json{{"percent", 50}}, json(0.5), json("half"), json::array()}) {
    SCOPED_TRACE(bad.dump());
    EXPECT_ERROR_CODE(hb(bad), ErrorCode::kInvalidRequest);
  }
}

TEST(DomainDecideValidation, Error) {
  const auto running = state_named(kRunning);
  const auto ctx = late_context();
  auto fail = [&](json error) { return decide(&*running, FailJob{std::move(error)}, ctx); };
  EXPECT_OK(fail({{"code", "x"}}));
  EXPECT_OK(fail({{"code", std::string(128, 'c')}, {"message", "m"}, {"details", {1, 2}}}));
  for (json bad : {json(nullptr), json::object(), json{{"message", "no code"}}, json{{"code", ""}},
                   json{{"code", 5}}, json{{"code", nullptr}},
                   json{{"code", std::string(129, 'c')}}, json{{"code", "x"}, {"message", 1}},
                   json{{"code", "x"}, {"extra", 1}}, json("boom"), json::array({"code", "x"})}) {
    SCOPED_TRACE(bad.dump());
    EXPECT_ERROR_CODE(fail(bad), ErrorCode::kInvalidRequest);
  }
}

TEST(DomainDecideValidation, WorkerLength) {
  const auto queued = state_named(kQueued);
  EXPECT_OK(decide(&*queued, StartJob{std::string(256, 'w')}, late_context()));
  EXPECT_ERROR_CODE(decide(&*queued, StartJob{std::string(257, 'w')}, late_context()),
                    ErrorCode::kInvalidRequest);
}

// The watchdog may fail a running job only once its effective deadline has
// come: the stored deadline (last heartbeat or start + timeout), but never
// before server start + timeout (grace for workers while we were down).
TEST(DomainDecideExpire, OnlyAtOrAfterTheDeadline) {
  const auto running = state_named(kRunning);  // started at kT0 + 1000
  const TimeMs deadline = kT0 + 1000 + kTimeoutS * 1000;
  ASSERT_EQ(running->deadline_ms, deadline);
  DecideContext ctx;
  ctx.server_start_ms = kT0 - 5000;

  ctx.now_ms = deadline - 1;
  auto early = decide(&*running, ExpireDeadlines{}, ctx);
  ASSERT_OK(early);
  EXPECT_TRUE(early->empty());

  // At the deadline exactly: the deadline index reports deadline <= now, so
  // decide must fail the job then too, or the watchdog would spin.
  ctx.now_ms = deadline;
  auto due = decide(&*running, ExpireDeadlines{}, ctx);
  ASSERT_OK(due);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].type, EventType::kFailed);
  const json& error = (*due)[0].data.at("error");
  EXPECT_EQ(error.at("code"), "heartbeat_timeout");
  EXPECT_EQ(error.at("details").at("deadline_at"), format_rfc3339_ms(deadline));
  EXPECT_EQ(error.at("details").at("last_heartbeat_at"), nullptr);
  EXPECT_EQ(error.at("details").at("progress"), nullptr);
}

TEST(DomainDecideExpire, HeartbeatMovesTheDeadline) {
  auto running = state_named(kRunning);
  const TimeMs hb_at = kT0 + 50'000;
  auto next = apply(
      &*running,
      make_event(3, 3, EventType::kHeartbeat, hb_at,
                 {{"progress", {{"fraction", 0.4}, {"message", "page 4"}, {"details", nullptr}}}}));
  ASSERT_OK(next);
  const TimeMs deadline = hb_at + kTimeoutS * 1000;
  DecideContext ctx;
  ctx.server_start_ms = kT0;
  ctx.now_ms = kT0 + 1000 + kTimeoutS * 1000;  // the old deadline: no longer due
  auto early = decide(&*next, ExpireDeadlines{}, ctx);
  ASSERT_OK(early);
  EXPECT_TRUE(early->empty());
  ctx.now_ms = deadline;
  auto due = decide(&*next, ExpireDeadlines{}, ctx);
  ASSERT_OK(due);
  ASSERT_EQ(due->size(), 1u);
  const json& details = (*due)[0].data.at("error").at("details");
  EXPECT_EQ(details.at("last_heartbeat_at"), format_rfc3339_ms(hb_at));
  EXPECT_EQ(details.at("deadline_at"), format_rfc3339_ms(deadline));
  EXPECT_EQ(details.at("progress").at("fraction"), 0.4);
  EXPECT_EQ(details.at("progress").at("message"), "page 4");
}

TEST(DomainDecideExpire, RestartGrace) {
  const auto running = state_named(kRunning);
  const TimeMs stored_deadline = *running->deadline_ms;
  // The server restarted 10 minutes after the deadline passed.
  const TimeMs restart = stored_deadline + 600'000;
  const TimeMs grace_deadline = restart + kTimeoutS * 1000;
  EXPECT_EQ(effective_deadline_ms(*running, restart), grace_deadline);
  EXPECT_EQ(effective_deadline_ms(*running, kT0), stored_deadline);
  EXPECT_EQ(job_to_json(*running, restart).at("deadline_at"), format_rfc3339_ms(grace_deadline));
  EXPECT_EQ(job_to_json(*running, 0).at("deadline_at"), format_rfc3339_ms(stored_deadline));

  DecideContext ctx;
  ctx.server_start_ms = restart;
  ctx.now_ms = restart;
  auto at_start = decide(&*running, ExpireDeadlines{}, ctx);
  ASSERT_OK(at_start);
  EXPECT_TRUE(at_start->empty()) << "a deadline that passed while down gets grace";
  ctx.now_ms = grace_deadline - 1;
  auto before = decide(&*running, ExpireDeadlines{}, ctx);
  ASSERT_OK(before);
  EXPECT_TRUE(before->empty());
  ctx.now_ms = grace_deadline;
  auto due = decide(&*running, ExpireDeadlines{}, ctx);
  ASSERT_OK(due);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].data.at("error").at("details").at("deadline_at"),
            format_rfc3339_ms(grace_deadline));
}

TEST(DomainDecideExpire, NothingForJobsThatAreNotRunning) {
  DecideContext ctx = late_context();
  ctx.now_ms = kT0 + 365LL * 86'400'000;
  auto queued = state_named(kQueued);
  auto r = decide(&*queued, ExpireDeadlines{}, ctx);
  ASSERT_OK(r);
  EXPECT_TRUE(r->empty());
}

TEST(DomainDecideNames, CommandNames) {
  std::vector<std::string> names;
  for (const auto& c : all_commands()) names.push_back(command_name(c));
  EXPECT_EQ(names, (std::vector<std::string>{"create", "start", "heartbeat", "succeed", "fail",
                                             "cancel", "cancelled", "expire"}));
}

// ---- Issue 13: leases, timeouts, retries, delays, priority -----------------

DecideContext context_at(TimeMs now, TimeMs server_start) {
  DecideContext ctx;
  ctx.now_ms = now;
  ctx.server_start_ms = server_start;
  return ctx;
}

// Applies decide's events to `s` as the store would (seq and version next).
JobState applied(const JobState& s, const std::vector<NewEvent>& events, TimeMs at) {
  JobState cur = s;
  for (const auto& ne : events) {
    auto next = apply(&cur, make_event(cur.version + 1, cur.version + 1, ne.type, at, ne.data));
    EXPECT_TRUE(next.ok()) << testing::describe_error(next);
    cur = std::move(*next);
  }
  return cur;
}

// A job created with `create`, applied as its created event.
JobState created_with(CreateJob create) {
  auto events = decide(nullptr, Command(std::move(create)), context_at(kT0, kT0));
  EXPECT_OK(events);
  auto s = apply(nullptr, make_event(1, 1, EventType::kCreated, kT0, (*events)[0].data));
  EXPECT_OK(s);
  return *s;
}

CreateJob plain_create() { return CreateJob{"thumbnail", json::object(), kTimeoutS, json::object()}; }

JobState started_with_lease(JobState s, const std::string& lease_hash, TimeMs at) {
  auto events = decide(&s, StartJob{"w", lease_hash}, context_at(at, kT0));
  EXPECT_OK(events);
  return applied(s, *events, at);
}

TEST(DomainLease, ReportsMustCarryTheRunningAttemptsLease) {
  const JobState running = started_with_lease(created_with(plain_create()), "aa", kT0 + 1000);
  EXPECT_EQ(running.lease_hash, "aa");
  DecideContext ctx = context_at(kT0 + 2000, kT0);
  const std::vector<Command> reports = {Heartbeat{}, SucceedJob{}, FailJob{{{"code", "x"}}}};
  for (const auto& cmd : reports) {
    ctx.lease_hash = "aa";
    EXPECT_TRUE(decide(&running, cmd, ctx).ok()) << command_name(cmd);
    ctx.lease_hash = "bb";
    EXPECT_EQ(decide(&running, cmd, ctx).error().code, ErrorCode::kLeaseMismatch)
        << command_name(cmd);
    ctx.lease_hash.reset();
    EXPECT_EQ(decide(&running, cmd, ctx).error().code, ErrorCode::kLeaseMismatch)
        << command_name(cmd);
  }
  // A client's cancel and the watchdog need no lease.
  EXPECT_OK(decide(&running, RequestCancel{"r"}, ctx));
  ctx.now_ms = kT0 + 3'600'000;
  EXPECT_OK(decide(&running, ExpireDeadlines{}, ctx));
}

TEST(DomainLease, OrderTerminalThenLeaseThenVersionThenTransition) {
  JobState queued = created_with(plain_create());
  DecideContext ctx = context_at(kT0, kT0);
  // Any lease on a queued job, even with a stale If-Match: lease-mismatch.
  ctx.lease_hash = "aa";
  ctx.expected_version = 7;
  EXPECT_EQ(decide(&queued, Heartbeat{}, ctx).error().code, ErrorCode::kLeaseMismatch);
  EXPECT_EQ(decide(&queued, StartJob{"w", "cc"}, ctx).error().code, ErrorCode::kLeaseMismatch);
  // A terminal job answers job-terminal whatever the lease.
  JobState done = applied(queued, {{EventType::kCancelled, {{"reason", "r"}}}}, kT0);
  EXPECT_EQ(decide(&done, Heartbeat{}, ctx).error().code, ErrorCode::kJobTerminal);
  // With the right lease, a stale version is 412, then transitions are checked.
  JobState running = started_with_lease(queued, "aa", kT0 + 1);
  EXPECT_EQ(decide(&running, Heartbeat{}, ctx).error().code, ErrorCode::kVersionMismatch);
  ctx.expected_version.reset();
  EXPECT_EQ(decide(&running, ConfirmCancelled{"r"}, ctx).error().code,
            ErrorCode::kInvalidTransition);
}

TEST(DomainLease, AnAttemptStartedWithoutALeaseTakesReportsWithoutOne) {
  JobState running = fold({created_event(), started_event()});
  EXPECT_FALSE(running.lease_hash);
  DecideContext ctx = context_at(kT0 + 2000, kT0);
  EXPECT_OK(decide(&running, Heartbeat{}, ctx));
  ctx.lease_hash = "aa";
  EXPECT_EQ(decide(&running, Heartbeat{}, ctx).error().code, ErrorCode::kLeaseMismatch);
}

TEST(DomainCreate, NewMembersAreValidatedAndOnlyWrittenWhenAsked) {
  auto plain = decide(nullptr, Command(plain_create()), DecideContext{});
  ASSERT_OK(plain);
  EXPECT_EQ((*plain)[0].data, created_event().data);  // a plain job's event is unchanged

  CreateJob c = plain_create();
  c.execution_timeout_s = 30;
  c.queue_timeout_s = 604800;
  c.not_before_ms = kT0 + 5000;
  c.priority = -1000;
  c.retry = RetryPolicy{3, 0, 86400};
  auto full = decide(nullptr, Command(c), DecideContext{});
  ASSERT_OK(full);
  const json& d = (*full)[0].data;
  EXPECT_EQ(d.at("execution_timeout_s"), 30);
  EXPECT_EQ(d.at("queue_timeout_s"), 604800);
  EXPECT_EQ(d.at("not_before"), format_rfc3339_ms(kT0 + 5000));
  EXPECT_EQ(d.at("priority"), -1000);
  EXPECT_EQ(d.at("retry"), (json{{"max_attempts", 3}, {"initial_backoff_s", 0},
                                 {"max_backoff_s", 86400}}));
  const JobState s = created_with(c);
  EXPECT_EQ(s.execution_timeout_s, 30);
  EXPECT_EQ(s.queue_timeout_s, 604800);
  EXPECT_EQ(s.not_before_ms, kT0 + 5000);
  EXPECT_EQ(s.priority, -1000);
  EXPECT_EQ(s.max_attempts(), 3);
  EXPECT_EQ(s.attempt, 1);
  // The resource round-trips through a status row's JSON.
  auto back = job_from_json(job_to_json(s, 0), s.created_seq);
  ASSERT_OK(back);
  EXPECT_EQ(*back, s);

  struct Bad {
    void (*set)(CreateJob&);
    const char* what;
  };
  const Bad bad[] = {
      {[](CreateJob& b) { b.execution_timeout_s = 0; }, "execution_timeout_s"},
      {[](CreateJob& b) { b.execution_timeout_s = 604801; }, "execution_timeout_s"},
      {[](CreateJob& b) { b.queue_timeout_s = 0; }, "queue_timeout_s"},
      {[](CreateJob& b) { b.priority = 1001; }, "priority"},
      {[](CreateJob& b) { b.priority = -1001; }, "priority"},
      {[](CreateJob& b) { b.retry = RetryPolicy{0, 1, 300}; }, "retry.max_attempts"},
      {[](CreateJob& b) { b.retry = RetryPolicy{101, 1, 300}; }, "retry.max_attempts"},
      {[](CreateJob& b) { b.retry = RetryPolicy{2, -1, 300}; }, "retry.initial_backoff_s"},
      {[](CreateJob& b) { b.retry = RetryPolicy{2, 1, 0}; }, "retry.max_backoff_s"},
  };
  for (const Bad& b : bad) {
    CreateJob x = plain_create();
    b.set(x);
    auto r = decide(nullptr, Command(x), DecideContext{});
    ASSERT_FALSE(r.ok()) << b.what;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidRequest);
    EXPECT_NE(r.error().message.find(b.what), std::string::npos) << r.error().message;
  }
}

TEST(DomainRetry, BackoffDoublesIsCappedAndJittersInItsUpperHalf) {
  const RetryPolicy p{10, 2, 20};
  EXPECT_EQ(retry_backoff_ms(p, 1, 0.0), 1000);   // 2 s step: 1 s fixed + 0
  EXPECT_EQ(retry_backoff_ms(p, 1, 0.999), 1999);
  EXPECT_EQ(retry_backoff_ms(p, 2, 0.0), 2000);   // 4 s step
  EXPECT_EQ(retry_backoff_ms(p, 3, 0.5), 6000);   // 8 s step: 4 + 2
  EXPECT_EQ(retry_backoff_ms(p, 5, 0.0), 10000);  // 32 s, capped at 20
  EXPECT_EQ(retry_backoff_ms(p, 60, 1.0), 20000);  // no overflow
  EXPECT_EQ(retry_backoff_ms(RetryPolicy{3, 0, 5}, 2, 0.7), 0);
}

TEST(DomainRetry, InfrastructureFailuresAndRetryableErrorsRetryWhileAttemptsRemain) {
  CreateJob c = plain_create();
  c.retry = RetryPolicy{2, 10, 300};
  const JobState running = started_with_lease(created_with(c), "aa", kT0 + 1000);
  DecideContext ctx = context_at(kT0 + 2000, kT0);
  ctx.lease_hash = "aa";
  ctx.jitter = 0.0;
  struct Case {
    json error;
    bool retries;
  };
  const Case cases[] = {
      {{{"code", "abandoned"}}, true},
      {{{"code", "heartbeat_timeout"}}, true},
      {{{"code", "execution_timeout"}}, true},
      {{{"code", "bad_input"}, {"retryable", true}}, true},
      {{{"code", "bad_input"}}, false},
      {{{"code", "abandoned"}, {"retryable", false}}, true},  // the code says so
  };
  for (const Case& k : cases) {
    auto events = decide(&running, FailJob{k.error}, ctx);
    ASSERT_OK(events);
    ASSERT_EQ(events->size(), 1u);
    EXPECT_EQ((*events)[0].type, k.retries ? EventType::kRetryScheduled : EventType::kFailed)
        << k.error;
    if (!k.retries) continue;
    const json& d = (*events)[0].data;
    EXPECT_EQ(d.at("attempt"), 2);
    EXPECT_EQ(d.at("error").at("code"), k.error.at("code"));
    EXPECT_EQ(d.at("not_before"), format_rfc3339_ms(kT0 + 2000 + 5000));  // half of 10 s
    const JobState again = applied(running, *events, kT0 + 2000);
    EXPECT_EQ(again.status, JobStatus::kQueued);
    EXPECT_EQ(again.attempt, 2);
    EXPECT_EQ(again.last_error, d.at("error"));
    EXPECT_EQ(again.not_before_ms, kT0 + 7000);
    EXPECT_FALSE(again.lease_hash);
    EXPECT_FALSE(again.worker);
    EXPECT_FALSE(again.started_at_ms);
    EXPECT_FALSE(again.deadline_ms);
    EXPECT_TRUE(again.progress.is_null());
    // The last attempt fails for good.
    const JobState last = started_with_lease(again, "bb", kT0 + 8000);
    DecideContext last_ctx = ctx;
    last_ctx.lease_hash = "bb";
    auto final_events = decide(&last, FailJob{k.error}, last_ctx);
    ASSERT_OK(final_events);
    EXPECT_EQ((*final_events)[0].type, EventType::kFailed);
    EXPECT_EQ(applied(last, *final_events, kT0 + 9000).status, JobStatus::kFailed);
  }
}

TEST(DomainRetry, NoRetryWithoutAPolicyOrAfterACancelRequest) {
  const JobState plain = started_with_lease(created_with(plain_create()), "aa", kT0 + 1000);
  DecideContext ctx = context_at(kT0 + 3'600'000, kT0);
  auto expired = decide(&plain, ExpireDeadlines{}, ctx);
  ASSERT_OK(expired);
  EXPECT_EQ((*expired)[0].type, EventType::kFailed);

  CreateJob c = plain_create();
  c.retry = RetryPolicy{5, 1, 300};
  JobState running = started_with_lease(created_with(c), "aa", kT0 + 1000);
  running = applied(running, {{EventType::kCancelRequested, {{"reason", "r"}}}}, kT0 + 2000);
  auto after_cancel = decide(&running, ExpireDeadlines{}, ctx);
  ASSERT_OK(after_cancel);
  EXPECT_EQ((*after_cancel)[0].type, EventType::kFailed);
}

TEST(DomainTimeouts, ExecutionTimeoutFiresWhateverTheHeartbeats) {
  CreateJob c = plain_create();
  c.execution_timeout_s = 30;
  JobState running = started_with_lease(created_with(c), "aa", kT0 + 1000);
  // Heartbeats keep the heartbeat deadline ahead...
  running = applied(running, {{EventType::kHeartbeat, {{"progress", nullptr}}}}, kT0 + 29'000);
  EXPECT_EQ(next_deadline_ms(running), kT0 + 31'000);  // the execution timeout comes first
  DecideContext ctx = context_at(kT0 + 30'999, kT0);
  auto early = decide(&running, ExpireDeadlines{}, ctx);
  ASSERT_OK(early);
  EXPECT_TRUE(early->empty());
  // ...but the attempt ends 30 s after it started.
  ctx.now_ms = kT0 + 31'000;
  auto due = decide(&running, ExpireDeadlines{}, ctx);
  ASSERT_OK(due);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].type, EventType::kFailed);
  const json& e = (*due)[0].data.at("error");
  EXPECT_EQ(e.at("code"), "execution_timeout");
  EXPECT_EQ(e.at("details").at("started_at"), format_rfc3339_ms(kT0 + 1000));
  EXPECT_EQ(e.at("details").at("timeout_at"), format_rfc3339_ms(kT0 + 31'000));
}

TEST(DomainTimeouts, QueueTimeoutCountsFromWhenTheJobBecameClaimable) {
  CreateJob c = plain_create();
  c.queue_timeout_s = 10;
  c.not_before_ms = kT0 + 60'000;
  const JobState queued = created_with(c);
  EXPECT_EQ(claimable_at_ms(queued), kT0 + 60'000);
  EXPECT_EQ(next_deadline_ms(queued), kT0 + 70'000);
  DecideContext ctx = context_at(kT0 + 69'999, kT0);
  auto early = decide(&queued, ExpireDeadlines{}, ctx);
  ASSERT_OK(early);
  EXPECT_TRUE(early->empty());
  ctx.now_ms = kT0 + 70'000;
  auto due = decide(&queued, ExpireDeadlines{}, ctx);
  ASSERT_OK(due);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].type, EventType::kFailed);
  EXPECT_EQ((*due)[0].data.at("error").at("code"), "queue_timeout");
  // A not_before in the past counts from creation.
  c.not_before_ms = kT0 - 60'000;
  EXPECT_EQ(claimable_at_ms(created_with(c)), kT0);
  // Started in time: no queue deadline any more.
  EXPECT_EQ(next_deadline_ms(started_with_lease(queued, "aa", kT0 + 61'000)),
            kT0 + 61'000 + kTimeoutS * 1000);
}

TEST(DomainApply, RetryScheduledIsCheckedLikeEveryOtherEvent) {
  CreateJob c = plain_create();
  c.retry = RetryPolicy{2, 1, 300};
  const JobState running = started_with_lease(created_with(c), "aa", kT0 + 1000);
  const json error = {{"code", "abandoned"}, {"message", ""}, {"details", nullptr}};
  auto retry = [&](json data) {
    return apply(&running, make_event(3, 3, EventType::kRetryScheduled, kT0 + 2000, data));
  };
  const std::string nb = format_rfc3339_ms(kT0 + 3000);
  EXPECT_OK(retry({{"attempt", 2}, {"error", error}, {"not_before", nb}}));
  EXPECT_FALSE(retry({{"attempt", 3}, {"error", error}, {"not_before", nb}}).ok());
  EXPECT_FALSE(retry({{"attempt", 2}, {"not_before", nb}}).ok());
  EXPECT_FALSE(retry({{"attempt", 2}, {"error", error}}).ok());
  const JobState queued = created_with(c);
  EXPECT_FALSE(apply(&queued, make_event(2, 2, EventType::kRetryScheduled, kT0,
                                         {{"attempt", 2}, {"error", error}, {"not_before", nb}}))
                   .ok());
  // Without a policy there is no second attempt to schedule.
  const JobState plain = started_with_lease(created_with(plain_create()), "aa", kT0 + 1000);
  EXPECT_FALSE(apply(&plain, make_event(3, 3, EventType::kRetryScheduled, kT0 + 2000,
                                        {{"attempt", 2}, {"error", error}, {"not_before", nb}}))
                   .ok());
}

}  // namespace
}  // namespace jobstate
