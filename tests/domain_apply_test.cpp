// apply(state, event): how each event folds into the job, which events it
// refuses (verify and rebuild rely on that), and the job resource JSON.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "domain/job.h"
#include "test_util.h"

namespace jobstate {
namespace {

using nlohmann::json;

const JobId kId = *JobId::parse("0b9a7c1e-2d3f-4a5b-8c6d-7e8f90a1b2c3");
constexpr TimeMs kT0 = 1'795'802'400'000;
constexpr int64_t kTimeoutS = 30;

Event ev(uint64_t seq, uint64_t version, EventType type, TimeMs at, json data) {
  Event e;
  e.seq = seq;
  e.job_id = kId;
  e.version = version;
  e.type = type;
  e.at_ms = at;
  e.data = std::move(data);
  return e;
}

Event created(uint64_t seq = 7) {
  return ev(seq, 1, EventType::kCreated, kT0,
            {{"type", "render"},
             {"params", {{"scene", "ü"}, {"n", 3}}},
             {"heartbeat_timeout_s", kTimeoutS},
             {"labels", {{"team", "media"}}}});
}

JobState must(const Result<JobState>& r) {
  EXPECT_TRUE(r.ok()) << testing::describe_error(r);
  return r.ok() ? *r : JobState{};
}

// Folds a whole history; fails the test on the first refusal.
JobState fold(const std::vector<Event>& events) {
  std::optional<JobState> s;
  for (const auto& e : events) s = must(apply(s ? &*s : nullptr, e));
  return *s;
}

json progress(double fraction, const char* message) {
  return {{"fraction", fraction}, {"message", message}, {"details", nullptr}};
}

TEST(DomainApply, Created) {
  JobState s = fold({created(7)});
  EXPECT_EQ(s.id, kId);
  EXPECT_EQ(s.type, "render");
  EXPECT_EQ(s.status, JobStatus::kQueued);
  EXPECT_EQ(s.version, 1u);
  EXPECT_EQ(s.created_seq, 7u);
  EXPECT_EQ(s.created_at_ms, kT0);
  EXPECT_EQ(s.heartbeat_timeout_s, kTimeoutS);
  EXPECT_EQ(s.params, (json{{"scene", "ü"}, {"n", 3}}));
  EXPECT_EQ(s.labels, (json{{"team", "media"}}));
  EXPECT_FALSE(s.started_at_ms);
  EXPECT_FALSE(s.last_heartbeat_at_ms);
  EXPECT_FALSE(s.finished_at_ms);
  EXPECT_FALSE(s.deadline_ms);
  EXPECT_FALSE(s.worker);
  EXPECT_FALSE(s.cancel_requested);
  EXPECT_TRUE(s.progress.is_null());
  EXPECT_TRUE(s.result.is_null());
  EXPECT_TRUE(s.error.is_null());
}

TEST(DomainApply, StartedSetsWorkerAndDeadline) {
  JobState s = fold({created(), ev(9, 2, EventType::kStarted, kT0 + 500, {{"worker", "w/1"}})});
  EXPECT_EQ(s.status, JobStatus::kRunning);
  EXPECT_EQ(s.version, 2u);
  EXPECT_EQ(s.started_at_ms, kT0 + 500);
  EXPECT_EQ(s.deadline_ms, kT0 + 500 + kTimeoutS * 1000);
  EXPECT_EQ(s.worker, "w/1");
  EXPECT_FALSE(s.last_heartbeat_at_ms);
  EXPECT_EQ(s.created_seq, 7u) << "later events must not move the list position";
}

TEST(DomainApply, HeartbeatKeepsProgressWhenNull) {
  const TimeMs t1 = kT0 + 1000, t2 = kT0 + 9000, t3 = kT0 + 20'000, t4 = kT0 + 21'000;
  JobState s = fold({created(), ev(8, 2, EventType::kStarted, kT0 + 500, {{"worker", "w"}}),
                     ev(9, 3, EventType::kHeartbeat, t1, {{"progress", progress(0.25, "a")}})});
  EXPECT_EQ(s.progress, progress(0.25, "a"));
  EXPECT_EQ(s.last_heartbeat_at_ms, t1);
  EXPECT_EQ(s.deadline_ms, t1 + kTimeoutS * 1000);

  // A bare heartbeat (progress null) is liveness only: progress stays.
  s = must(apply(&s, ev(10, 4, EventType::kHeartbeat, t2, {{"progress", nullptr}})));
  EXPECT_EQ(s.progress, progress(0.25, "a"));
  EXPECT_EQ(s.last_heartbeat_at_ms, t2);
  EXPECT_EQ(s.deadline_ms, t2 + kTimeoutS * 1000);
  // Also when the member is absent altogether.
  s = must(apply(&s, ev(11, 5, EventType::kHeartbeat, t3, json::object())));
  EXPECT_EQ(s.progress, progress(0.25, "a"));
  EXPECT_EQ(s.deadline_ms, t3 + kTimeoutS * 1000);

  s = must(apply(&s, ev(12, 6, EventType::kHeartbeat, t4, {{"progress", progress(0.5, "b")}})));
  EXPECT_EQ(s.progress, progress(0.5, "b"));
  EXPECT_EQ(s.version, 6u);
  EXPECT_EQ(s.started_at_ms, kT0 + 500) << "heartbeats do not move started_at";
}

TEST(DomainApply, SucceededFinishesAndClearsDeadline) {
  JobState s = fold({created(), ev(8, 2, EventType::kStarted, kT0 + 500, {{"worker", "w"}}),
                     ev(9, 3, EventType::kSucceeded, kT0 + 4000, {{"result", {{"url", "/x"}}}})});
  EXPECT_EQ(s.status, JobStatus::kSucceeded);
  EXPECT_EQ(s.result, (json{{"url", "/x"}}));
  EXPECT_EQ(s.finished_at_ms, kT0 + 4000);
  EXPECT_FALSE(s.deadline_ms);
  EXPECT_TRUE(s.error.is_null());
}

TEST(DomainApply, FailedFromQueuedAndFromRunning) {
  const json error = {{"code", "oom"}, {"message", "out of memory"}, {"details", {{"rss", 1}}}};
  JobState q = fold({created(), ev(8, 2, EventType::kFailed, kT0 + 100, {{"error", error}})});
  EXPECT_EQ(q.status, JobStatus::kFailed);
  EXPECT_EQ(q.error, error);
  EXPECT_EQ(q.finished_at_ms, kT0 + 100);
  EXPECT_FALSE(q.started_at_ms);

  JobState r = fold({created(), ev(8, 2, EventType::kStarted, kT0 + 500, {{"worker", "w"}}),
                     ev(9, 3, EventType::kFailed, kT0 + 700, {{"error", error}})});
  EXPECT_EQ(r.status, JobStatus::kFailed);
  EXPECT_EQ(r.finished_at_ms, kT0 + 700);
  EXPECT_FALSE(r.deadline_ms);
}

TEST(DomainApply, CancelRequestThenCancelled) {
  JobState s = fold({created(), ev(8, 2, EventType::kStarted, kT0 + 500, {{"worker", "w"}}),
                     ev(9, 3, EventType::kCancelRequested, kT0 + 600, {{"reason", "user"}})});
  EXPECT_EQ(s.status, JobStatus::kRunning);
  EXPECT_TRUE(s.cancel_requested);
  EXPECT_EQ(s.deadline_ms, kT0 + 500 + kTimeoutS * 1000) << "a cancel request is not a heartbeat";
  EXPECT_FALSE(s.finished_at_ms);

  s = must(apply(&s, ev(10, 4, EventType::kCancelled, kT0 + 800, {{"reason", "stopped"}})));
  EXPECT_EQ(s.status, JobStatus::kCancelled);
  EXPECT_TRUE(s.cancel_requested);
  EXPECT_EQ(s.finished_at_ms, kT0 + 800);
  EXPECT_FALSE(s.deadline_ms);
}

TEST(DomainApply, QueuedJobCancelledDirectly) {
  JobState s = fold({created(), ev(8, 2, EventType::kCancelled, kT0 + 50, {{"reason", "r"}})});
  EXPECT_EQ(s.status, JobStatus::kCancelled);
  EXPECT_TRUE(s.cancel_requested);
  EXPECT_EQ(s.finished_at_ms, kT0 + 50);
}

// Every refusal is kCorruption naming the seq, never a wrong state.
TEST(DomainApply, RefusesWhatTheStateMachineForbids) {
  const JobState queued = fold({created()});
  const JobState running =
      fold({created(), ev(8, 2, EventType::kStarted, kT0 + 500, {{"worker", "w"}})});
  const JobState asked =
      must(apply(&running, ev(9, 3, EventType::kCancelRequested, kT0, {{"reason", ""}})));
  const JobState done =
      must(apply(&running, ev(9, 3, EventType::kSucceeded, kT0, {{"result", 1}})));
  const json err = {{"error", {{"code", "x"}, {"message", ""}, {"details", nullptr}}}};

  struct Case {
    const char* what;
    const JobState* state;
    Event event;
  };
  const std::vector<Case> cases = {
      {"created twice", &queued, ev(42, 2, EventType::kCreated, kT0, created().data)},
      {"created at version 2", nullptr, ev(42, 2, EventType::kCreated, kT0, created().data)},
      {"created without type", nullptr,
       ev(42, 1, EventType::kCreated, kT0, {{"heartbeat_timeout_s", 5}})},
      {"created without timeout", nullptr, ev(42, 1, EventType::kCreated, kT0, {{"type", "t"}})},
      {"created with a string timeout", nullptr,
       ev(42, 1, EventType::kCreated, kT0, {{"type", "t"}, {"heartbeat_timeout_s", "5"}})},
      {"started before created", nullptr, ev(42, 1, EventType::kStarted, kT0, {{"worker", "w"}})},
      {"version gap", &queued, ev(42, 3, EventType::kStarted, kT0, {{"worker", "w"}})},
      {"version repeated", &queued, ev(42, 1, EventType::kStarted, kT0, {{"worker", "w"}})},
      {"version zero", &queued, ev(42, 0, EventType::kStarted, kT0, {{"worker", "w"}})},
      {"started twice", &running, ev(42, 3, EventType::kStarted, kT0, {{"worker", "w"}})},
      {"started without worker", &queued, ev(42, 2, EventType::kStarted, kT0, json::object())},
      {"heartbeat on queued", &queued,
       ev(42, 2, EventType::kHeartbeat, kT0, {{"progress", nullptr}})},
      {"succeeded on queued", &queued, ev(42, 2, EventType::kSucceeded, kT0, {{"result", 1}})},
      {"cancel_requested on queued", &queued,
       ev(42, 2, EventType::kCancelRequested, kT0, {{"reason", ""}})},
      {"cancel_requested twice", &asked,
       ev(42, 4, EventType::kCancelRequested, kT0, {{"reason", ""}})},
      {"cancelled without request", &running,
       ev(42, 3, EventType::kCancelled, kT0, {{"reason", ""}})},
      {"failed without error", &running, ev(42, 3, EventType::kFailed, kT0, json::object())},
      {"failed with a string error", &running,
       ev(42, 3, EventType::kFailed, kT0, {{"error", "x"}})},
      {"data not an object", &running, ev(42, 3, EventType::kHeartbeat, kT0, json::array())},
      {"heartbeat after succeeded", &done,
       ev(42, 4, EventType::kHeartbeat, kT0, {{"progress", nullptr}})},
      {"failed after succeeded", &done, ev(42, 4, EventType::kFailed, kT0, err)},
      {"cancelled after succeeded", &done, ev(42, 4, EventType::kCancelled, kT0, {{"reason", ""}})},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto r = apply(c.state, c.event);
    EXPECT_ERROR_CODE(r, ErrorCode::kCorruption);
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find("seq 42"), std::string::npos) << r.error().message;
    }
  }
}

TEST(DomainApply, NothingAfterAnyTerminalEvent) {
  const std::vector<Event> prefix = {created(),
                                     ev(8, 2, EventType::kStarted, kT0, {{"worker", "w"}})};
  const std::vector<Event> endings = {
      ev(9, 3, EventType::kSucceeded, kT0, {{"result", nullptr}}),
      ev(9, 3, EventType::kFailed, kT0, {{"error", {{"code", "c"}}}}),
  };
  const std::vector<Event> afters = {
      ev(10, 4, EventType::kStarted, kT0, {{"worker", "w"}}),
      ev(10, 4, EventType::kHeartbeat, kT0, {{"progress", nullptr}}),
      ev(10, 4, EventType::kSucceeded, kT0, {{"result", nullptr}}),
      ev(10, 4, EventType::kFailed, kT0, {{"error", {{"code", "c"}}}}),
      ev(10, 4, EventType::kCancelRequested, kT0, {{"reason", ""}}),
      ev(10, 4, EventType::kCancelled, kT0, {{"reason", ""}}),
  };
  for (const auto& end : endings) {
    std::vector<Event> history = prefix;
    history.push_back(end);
    JobState s = fold(history);
    for (const auto& after : afters) {
      SCOPED_TRACE(std::string(event_type_name(end.type)) + " then " + event_type_name(after.type));
      EXPECT_ERROR_CODE(apply(&s, after), ErrorCode::kCorruption);
    }
  }
}

// The stored status row is job_to_json(s, 0) and is read back with
// job_from_json: the pair must lose nothing, or the writer (which reloads
// states from rows) and rebuild (which folds events) would disagree.
TEST(DomainJobJson, RoundTripEveryLifecycleStep) {
  std::vector<Event> history = {
      created(11), ev(12, 2, EventType::kStarted, kT0 + 500, {{"worker", "host-1/4242"}}),
      ev(13, 3, EventType::kHeartbeat, kT0 + 600,
         {{"progress",
           {{"fraction", 0.42}, {"message", "页 42"}, {"details", {{"k", {1, 2.5}}}}}}}),
      ev(14, 4, EventType::kCancelRequested, kT0 + 700, {{"reason", "user"}}),
      ev(15, 5, EventType::kCancelled, kT0 + 800, {{"reason", "stopped"}})};
  std::optional<JobState> s;
  for (const auto& e : history) {
    s = must(apply(s ? &*s : nullptr, e));
    SCOPED_TRACE(event_type_name(e.type));
    auto back = job_from_json(job_to_json(*s, 0), s->created_seq);
    ASSERT_OK(back);
    EXPECT_EQ(*back, *s);
    // Through text too, the way the row is stored.
    auto reparsed = job_from_json(json::parse(canonical_dump(job_to_json(*s, 0))), s->created_seq);
    ASSERT_OK(reparsed);
    EXPECT_EQ(*reparsed, *s);
  }
  // And the other terminal states.
  for (const Event& end :
       {ev(14, 4, EventType::kSucceeded, kT0 + 900, {{"result", {{"a", {1, nullptr}}}}}),
        ev(14, 4, EventType::kFailed, kT0 + 900,
           {{"error", {{"code", "c"}, {"message", "m"}, {"details", 1.5}}}})}) {
    JobState t = fold({history[0], history[1], history[2], end});
    auto back = job_from_json(json::parse(canonical_dump(job_to_json(t, 0))), t.created_seq);
    ASSERT_OK(back);
    EXPECT_EQ(*back, t);
  }
}

TEST(DomainJobJson, EveryMemberPresentUnsetIsNull) {
  JobState s = fold({created(3)});
  s.labels = json::object();
  s.params = json::object();
  json j = job_to_json(s, 0);
  const std::vector<std::string> members = {"id",
                                            "type",
                                            "state",
                                            "version",
                                            "created_at",
                                            "started_at",
                                            "last_heartbeat_at",
                                            "finished_at",
                                            "heartbeat_timeout_s",
                                            "deadline_at",
                                            "progress",
                                            "params",
                                            "labels",
                                            "worker",
                                            "cancel_requested",
                                            "result",
                                            "error",
                                            "execution_timeout_s",
                                            "queue_timeout_s",
                                            "not_before",
                                            "priority",
                                            "retry",
                                            "attempt",
                                            "max_attempts",
                                            "last_error",
                                            "lease_hash"};
  EXPECT_EQ(j.size(), members.size());
  for (const auto& m : members) EXPECT_TRUE(j.contains(m)) << m;
  EXPECT_EQ(j.at("id"), kId.to_string());
  EXPECT_EQ(j.at("state"), "queued");
  EXPECT_EQ(j.at("version"), 1);
  EXPECT_EQ(j.at("created_at"), "2026-11-27T18:00:00.000Z");
  for (const char* m : {"started_at", "last_heartbeat_at", "finished_at", "deadline_at", "progress",
                        "worker", "result", "error", "execution_timeout_s", "queue_timeout_s",
                        "not_before", "retry", "last_error", "lease_hash"})
    EXPECT_TRUE(j.at(m).is_null()) << m;
  EXPECT_EQ(j.at("priority"), 0);
  EXPECT_EQ(j.at("attempt"), 1);
  EXPECT_EQ(j.at("max_attempts"), 1);
  EXPECT_EQ(j.at("params"), json::object());
  EXPECT_EQ(j.at("labels"), json::object());
  EXPECT_EQ(j.at("cancel_requested"), false);
}

TEST(DomainJobJson, FromJsonRejectsBrokenRowsWithoutThrowing) {
  const json good = job_to_json(fold({created()}), 0);
  auto broken = [&](const char* key, json value) {
    json j = good;
    if (value.is_discarded())
      j.erase(key);
    else
      j[key] = std::move(value);
    return job_from_json(j, 1);
  };
  ASSERT_OK(job_from_json(good, 1));
  const json gone(json::value_t::discarded);
  EXPECT_ERROR_CODE(broken("id", gone), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("id", "3F0C8A2E-5B1D-4C7E-9A6F-0123456789AB"), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("state", "paused"), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("version", "1"), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("created_at", "yesterday"), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("created_at", nullptr), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("started_at", 5), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("worker", 5), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("labels", gone), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(job_from_json(json::array(), 1), ErrorCode::kCorruption);
  // Numbers outside what decide() allows, which the watchdog's arithmetic
  // would overflow on (found by fuzz_codecs: a float cast to int64, a
  // timeout times 1000 past INT64_MAX).
  EXPECT_ERROR_CODE(broken("heartbeat_timeout_s", 1e20), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("heartbeat_timeout_s", 0), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("heartbeat_timeout_s", INT64_MAX), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("heartbeat_timeout_s", 1.5), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("execution_timeout_s", 9'000'000'000'000'000'000u), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("queue_timeout_s", -1), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("priority", 1001), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("attempt", 0), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("retry", json{{"max_attempts", 2}, {"initial_backoff_s", 1e300},
                                         {"max_backoff_s", 10}}),
                    ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("version", -1), ErrorCode::kCorruption);
  EXPECT_ERROR_CODE(broken("created_at", "1969-12-31T23:59:59.999Z"), ErrorCode::kCorruption);
  ASSERT_OK(broken("heartbeat_timeout_s", 86400));
}

TEST(DomainStatusNames, RoundTrip) {
  for (auto s : {JobStatus::kQueued, JobStatus::kRunning, JobStatus::kSucceeded, JobStatus::kFailed,
                 JobStatus::kCancelled})
    EXPECT_EQ(parse_job_status(job_status_name(s)), s);
  EXPECT_FALSE(parse_job_status("Queued"));
  EXPECT_FALSE(parse_job_status(""));
  EXPECT_FALSE(is_terminal(JobStatus::kQueued));
  EXPECT_FALSE(is_terminal(JobStatus::kRunning));
  EXPECT_TRUE(is_terminal(JobStatus::kSucceeded));
  EXPECT_TRUE(is_terminal(JobStatus::kFailed));
  EXPECT_TRUE(is_terminal(JobStatus::kCancelled));
}

}  // namespace
}  // namespace jobstate
