// The status projection through JobStore: rows, the list index (filters,
// newest first, stable paging) and the deadline index the watchdog reads.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "store/byte_order.h"
#include "projections/job_store.h"
#include "projections/verify.h"
#include "store_fixture.h"

namespace jobstate {
namespace {

using nlohmann::json;

constexpr TimeMs kT0 = 1'795'802'400'000;

class ProjectionTest : public testing::StoreTest {
 protected:
  ProjectionTest() : StoreTest(kT0) {}
  void SetUp() override { open_store(); }
  Result<CommandOutcome> run(const JobId& id, Command c, std::optional<uint64_t> expected = {}) {
    CommandRequest r;
    r.job_id = id;
    r.command = std::move(c);
    r.expected_version = expected;
    return store_->writer().execute(std::move(r));
  }
  CommandOutcome must(const JobId& id, Command c, std::optional<uint64_t> expected = {}) {
    auto r = run(id, std::move(c), expected);
    EXPECT_TRUE(r.ok()) << testing::describe_error(r);
    return r.ok() ? std::move(*r) : CommandOutcome{};
  }
  JobId create(const std::string& type, int64_t timeout_s = 60) {
    const JobId id = JobId::generate();
    auto out = must(id, CreateJob{type, json::object(), timeout_s, json::object()});
    model_.push_back({id, type, JobStatus::kQueued, out.state().created_seq});
    return id;
  }
  void set_status(const JobId& id, JobStatus s) {
    for (auto& m : model_)
      if (m.id == id) m.status = s;
  }

  // What the list must show: the model filtered, newest created first.
  std::vector<JobId> expected(const ListFilter& f) const {
    std::vector<Modelled> rows;
    for (const auto& m : model_)
      if ((!f.status || m.status == *f.status) && (!f.type || m.type == *f.type)) rows.push_back(m);
    std::sort(rows.begin(), rows.end(),
              [](auto& a, auto& b) { return a.created_seq > b.created_seq; });
    std::vector<JobId> ids;
    for (auto& r : rows) ids.push_back(r.id);
    return ids;
  }
  std::vector<JobId> ids_of(const ListPage& page) const {
    std::vector<JobId> ids;
    for (const auto& row : page.jobs) {
      auto s = row.to_state();
      EXPECT_TRUE(s.ok()) << testing::describe_error(s);
      if (s.ok()) ids.push_back(s->id);
    }
    return ids;
  }
  // Every page of a listing, `limit` at a time (bounded).
  std::vector<JobId> all_pages(const ListFilter& f, size_t limit) const {
    std::vector<JobId> ids;
    std::optional<uint64_t> before;
    for (int pages = 0; pages < 1000; ++pages) {
      auto page = store_->projection().list(f, before, limit);
      EXPECT_TRUE(page.ok()) << testing::describe_error(page);
      if (!page.ok()) break;
      EXPECT_LE(page->jobs.size(), limit);
      for (auto& id : ids_of(*page)) ids.push_back(id);
      if (!page->next_before_seq) break;
      EXPECT_FALSE(page->jobs.empty()) << "a page that promises more must not be empty";
      before = page->next_before_seq;
    }
    return ids;
  }

  struct Modelled {
    JobId id;
    std::string type;
    JobStatus status;
    uint64_t created_seq;
  };
  std::vector<Modelled> model_;
};

std::vector<ListFilter> filters() {
  std::vector<ListFilter> out;
  out.push_back({});
  for (auto s : {JobStatus::kQueued, JobStatus::kRunning, JobStatus::kSucceeded, JobStatus::kFailed,
                 JobStatus::kCancelled}) {
    out.push_back({s, std::nullopt});
    for (const char* t : {"a", "ab", "a:b", "zz"}) out.push_back({s, std::string(t)});
  }
  for (const char* t : {"a", "ab", "a:b", "zz", "b"}) out.push_back({std::nullopt, std::string(t)});
  return out;
}

std::string describe(const ListFilter& f) {
  return std::string("state=") + (f.status ? job_status_name(*f.status) : "*") +
         " type=" + (f.type ? *f.type : "*");
}

TEST_F(ProjectionTest, RowIsTheJobResource) {
  const JobId id = create("thumbnail", 30);
  clock_.advance_ms(500);
  auto started = must(id, StartJob{"w/1"});
  auto row = store_->projection().row(id);
  ASSERT_OK(row);
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->version, 2u);
  EXPECT_EQ((*row)->status, JobStatus::kRunning);
  EXPECT_EQ((*row)->created_seq, 1u);
  EXPECT_EQ((*row)->deadline_ms, kT0 + 500 + 30'000);
  EXPECT_EQ((*row)->heartbeat_timeout_s, 30);
  EXPECT_EQ((*row)->json_text, canonical_dump(job_to_json(started.state(), 0)));
  EXPECT_EQ((*row)->render(0), (*row)->json_text);
  auto loaded = store_->projection().load(id);
  ASSERT_OK(loaded);
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ(**loaded, started.state());
  auto missing = store_->projection().row(JobId::generate());
  ASSERT_OK(missing);
  EXPECT_FALSE(missing->has_value());
}

// A heartbeat's row reuses the progress text its event encoded; a heartbeat
// without progress keeps the previous progress. Either way the row is the
// job resource exactly.
TEST_F(ProjectionTest, HeartbeatRowsMatchTheJobResource) {
  const JobId id = create("t", 30);
  must(id, StartJob{"w/1"});
  auto check = [&](const CommandOutcome& out, const json& progress) {
    auto row = store_->projection().row(id);
    ASSERT_OK(row);
    ASSERT_TRUE(row->has_value());
    EXPECT_EQ((*row)->json_text, canonical_dump(job_to_json(out.state(), 0)));
    EXPECT_EQ(json::parse((*row)->json_text).at("progress"), progress);
  };
  const json first = {{"fraction", 0.25},
                      {"message", "caf\u00e9 \"1\"\n"},
                      {"details", {{"b", 1}, {"a", {1.5, nullptr}}}}};
  auto out = must(id, Heartbeat{first});
  check(out, first);
  clock_.advance_ms(10);
  out = must(id, Heartbeat{nullptr});
  check(out, first);
  const json second = {{"fraction", 1}, {"message", nullptr}, {"details", nullptr}};
  out = must(id, Heartbeat{{{"fraction", 1}}});
  check(out, second);
}

TEST_F(ProjectionTest, ListFiltersNewestFirst) {
  // Types chosen so a prefix scan that forgets the terminator would leak
  // "ab" or "a:b" into "a".
  const char* types[] = {"a", "ab", "a:b", "a", "zz", "a", "ab", "b", "a", "zz", "a", "b"};
  std::vector<JobId> ids;
  for (const char* t : types) ids.push_back(create(t));
  // Move some along, interleaved with more creates, so created_seq and the
  // order of later events differ.
  must(ids[0], StartJob{"w"});
  set_status(ids[0], JobStatus::kRunning);
  must(ids[3], StartJob{"w"});
  must(ids[3], SucceedJob{nullptr});
  set_status(ids[3], JobStatus::kSucceeded);
  ids.push_back(create("a"));
  must(ids[1], RequestCancel{"no"});
  set_status(ids[1], JobStatus::kCancelled);
  must(ids[5], FailJob{{{"code", "x"}}});
  set_status(ids[5], JobStatus::kFailed);
  must(ids[6], StartJob{"w"});
  set_status(ids[6], JobStatus::kRunning);
  must(ids[6], RequestCancel{"stop"});  // running with cancel_requested: still running
  ids.push_back(create("ab"));

  for (const auto& f : filters()) {
    SCOPED_TRACE(describe(f));
    auto page = store_->projection().list(f, std::nullopt, 1000);
    ASSERT_OK(page);
    EXPECT_EQ(ids_of(*page), expected(f));
    EXPECT_FALSE(page->next_before_seq);
    for (const auto& row : page->jobs) {
      if (f.status) {
        EXPECT_EQ(row.status, *f.status);
      }
      if (f.type) {
        EXPECT_EQ(row.to_state()->type, *f.type);
      }
    }
    // Paged, every page size gives the same sequence.
    for (size_t limit : {1, 2, 3, 5}) {
      SCOPED_TRACE(limit);
      EXPECT_EQ(all_pages(f, limit), expected(f));
    }
  }
  // Exactly `limit` jobs: no next page promised.
  const ListFilter running{JobStatus::kRunning, std::nullopt};
  const size_t n = expected(running).size();
  ASSERT_GT(n, 0u);
  auto exact = store_->projection().list(running, std::nullopt, n);
  ASSERT_OK(exact);
  EXPECT_EQ(exact->jobs.size(), n);
  EXPECT_FALSE(exact->next_before_seq);
  auto short_page = store_->projection().list(running, std::nullopt, n - (n > 1 ? 1 : 0));
  ASSERT_OK(short_page);
  if (n > 1) {
    EXPECT_TRUE(short_page->next_before_seq);
  }
}

TEST_F(ProjectionTest, PagingIsStableWhileJobsArrive) {
  for (int i = 0; i < 10; ++i) create(i % 2 ? "odd" : "even");
  for (const ListFilter& f :
       {ListFilter{}, ListFilter{JobStatus::kQueued, std::nullopt},
        ListFilter{std::nullopt, "even"}, ListFilter{JobStatus::kQueued, "odd"}}) {
    SCOPED_TRACE(describe(f));
    const std::vector<JobId> snapshot = expected(f);
    std::vector<JobId> seen;
    std::optional<uint64_t> before;
    for (int pages = 0; pages < 100; ++pages) {
      auto page = store_->projection().list(f, before, 3);
      ASSERT_OK(page);
      for (auto& id : ids_of(*page)) seen.push_back(id);
      // Between pages, new jobs of every kind arrive (newer than all listed).
      create("odd");
      create("even");
      if (!page->next_before_seq) break;
      before = page->next_before_seq;
    }
    EXPECT_EQ(seen, snapshot) << "no job twice, none skipped, none of the newcomers";
  }
}

TEST_F(ProjectionTest, StatusChangesMoveJobsBetweenStateLists) {
  const JobId id = create("t");
  const ListFilter queued{JobStatus::kQueued, std::nullopt},
      running{JobStatus::kRunning, std::nullopt}, done{JobStatus::kSucceeded, "t"};
  EXPECT_EQ(all_pages(queued, 10), std::vector<JobId>{id});
  must(id, StartJob{"w"});
  EXPECT_TRUE(all_pages(queued, 10).empty());
  EXPECT_EQ(all_pages(running, 10), std::vector<JobId>{id});
  must(id, Heartbeat{nullptr});
  EXPECT_EQ(all_pages(running, 10), std::vector<JobId>{id}) << "one entry per job, not per event";
  must(id, SucceedJob{nullptr});
  EXPECT_TRUE(all_pages(running, 10).empty());
  EXPECT_EQ(all_pages(done, 10), std::vector<JobId>{id});
  EXPECT_EQ(all_pages(ListFilter{}, 10), std::vector<JobId>{id});
  // The list family holds exactly 4 keys per job: all, by state, by type, by both.
  auto keys = testing::family_contents(
      store_->db(), StatusProjection::list_cf_name(store_->projection().generation()));
  EXPECT_EQ(keys.size(), 4u);
}

TEST_F(ProjectionTest, DeadlineIndexFollowsRunningJobs) {
  const JobId a = create("t", 10), b = create("t", 20), q = create("t", 1);
  auto expired_ids = [&](TimeMs now, size_t limit = 100) {
    auto r = store_->projection().expired(now, limit);
    EXPECT_TRUE(r.ok()) << testing::describe_error(r);
    std::vector<std::pair<TimeMs, JobId>> out;
    if (r.ok())
      for (auto& e : *r) out.emplace_back(e.due_ms, e.job_id);
    return out;
  };
  using Due = std::vector<std::pair<TimeMs, JobId>>;
  EXPECT_TRUE(expired_ids(kT0 + 86'400'000).empty()) << "queued jobs have no deadline";

  // Filed under the deadline rounded down to a quarter timeout (2.5 s for a,
  // 5 s for b): due then, and never after the deadline.
  clock_.set_ms(kT0 + 1'234);
  must(a, StartJob{"w"});  // deadline kT0 + 11.234 s, due kT0 + 10 s
  must(b, StartJob{"w"});  // deadline kT0 + 21.234 s, due kT0 + 20 s
  EXPECT_TRUE(expired_ids(kT0 + 9'999).empty());
  EXPECT_EQ(expired_ids(kT0 + 10'000), (Due{{kT0 + 10'000, a}})) << "due at the rounded deadline";
  EXPECT_EQ(expired_ids(kT0 + 21'234), (Due{{kT0 + 10'000, a}, {kT0 + 20'000, b}}))
      << "earliest first";
  EXPECT_EQ(expired_ids(kT0 + 21'234, 1), (Due{{kT0 + 10'000, a}}));
  auto row = store_->projection().row(a);
  ASSERT_OK(row);
  EXPECT_EQ((*row)->deadline_ms, kT0 + 11'234) << "the row keeps the deadline itself";

  const std::string deadlines =
      StatusProjection::deadlines_cf_name(store_->projection().generation());
  const auto before = testing::family_contents(store_->db(), deadlines);
  // A heartbeat that keeps the deadline within the same quarter leaves the key.
  clock_.set_ms(kT0 + 2'000);
  must(a, Heartbeat{nullptr});  // deadline kT0 + 12 s, still due kT0 + 10 s
  EXPECT_EQ(testing::family_contents(store_->db(), deadlines), before);
  // One that crosses a step moves it; the old key goes.
  clock_.set_ms(kT0 + 15'000);
  must(a, Heartbeat{nullptr});  // deadline kT0 + 25 s
  EXPECT_EQ(expired_ids(kT0 + 24'999), (Due{{kT0 + 20'000, b}}));
  EXPECT_EQ(expired_ids(kT0 + 25'000), (Due{{kT0 + 20'000, b}, {kT0 + 25'000, a}}));
  // A cancel request is not a heartbeat.
  must(b, RequestCancel{"r"});
  EXPECT_EQ(expired_ids(kT0 + 20'000), (Due{{kT0 + 20'000, b}}));

  EXPECT_EQ(testing::family_contents(store_->db(), deadlines).size(), 2u)
      << "one key per running job";

  // Terminal jobs leave the index, whichever way they end.
  must(a, SucceedJob{nullptr});
  must(b, ConfirmCancelled{"ok"});
  must(q, FailJob{{{"code", "x"}}});
  EXPECT_TRUE(expired_ids(kT0 + 86'400'000).empty());
  EXPECT_TRUE(testing::family_contents(store_->db(), deadlines).empty());
}

// A store whose deadline index files jobs under the deadline itself (written
// before the rule was recorded) is converted when opened read-write: every
// running job gets its rounded key, the old keys go, and the rule is recorded.
TEST_F(ProjectionTest, AnExactDeadlineIndexIsConvertedOnOpen) {
  const JobId a = create("t", 10), b = create("t", 60), done = create("t", 10);
  clock_.set_ms(kT0 + 1'234);
  must(a, StartJob{"w"});
  must(b, StartJob{"w"});
  must(done, StartJob{"w"});
  must(done, SucceedJob{nullptr});
  const std::string deadlines =
      StatusProjection::deadlines_cf_name(store_->projection().generation());
  const auto converted = testing::family_contents(store_->db(), deadlines);
  ASSERT_EQ(converted.size(), 2u);

  // Make it an old store: exact keys, no rule in meta.
  {
    rocksdb::WriteBatch old;
    for (auto& [k, v] : converted) old.Delete(store_->db().cf(deadlines), k);
    for (auto& [id, deadline] : {std::pair{a, kT0 + 11'234}, std::pair{b, kT0 + 61'234}})
      old.Put(store_->db().cf(deadlines),
              u64_be(static_cast<uint64_t>(deadline)) + std::string(id.bytes()), "");
    old.Delete(store_->db().cf(kMetaCf), kMetaDeadlineRule);
    ASSERT_TRUE(store_->db().db()->Write(rocksdb::WriteOptions(), &old).ok());
  }
  EXPECT_NE(testing::family_contents(store_->db(), deadlines), converted);
  auto rule = read_deadline_rule(store_->db());
  ASSERT_OK(rule);
  EXPECT_EQ(*rule, DeadlineRule::kExact);
  // verify checks an old index by its own rule.
  EXPECT_OK(verify_store(store_->db()));

  reopen_store();
  EXPECT_EQ(testing::family_contents(store_->db(), deadlines), converted);
  rule = read_deadline_rule(store_->db());
  ASSERT_OK(rule);
  EXPECT_EQ(*rule, DeadlineRule::kQuarterTimeout);
  EXPECT_EQ(store_->projection().deadline_rule(), DeadlineRule::kQuarterTimeout);
  EXPECT_OK(verify_store(store_->db()));

  // And the converted index goes on like a new one.
  clock_.set_ms(kT0 + 5'000);
  must(a, Heartbeat{nullptr});  // deadline kT0 + 15 s
  auto due = store_->projection().expired(kT0 + 15'000, 10);
  ASSERT_OK(due);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].due_ms, kT0 + 15'000);
  EXPECT_EQ((*due)[0].job_id, a);
}

// The watchdog path end to end: index says due → ExpireDeadlines with the
// version seen → failed with heartbeat_timeout; a heartbeat that commits
// first wins.
TEST_F(ProjectionTest, ExpireDeadlinesThroughTheWriter) {
  const JobId a = create("t", 10);
  must(a, StartJob{"w"});
  clock_.set_ms(kT0 + 9'999);
  auto early = must(a, ExpireDeadlines{}, 2);
  EXPECT_TRUE(early.events.empty());
  EXPECT_EQ(early.state().status, JobStatus::kRunning);

  clock_.set_ms(kT0 + 10'000);
  auto due = store_->projection().expired(clock_.now_ms(), 10);
  ASSERT_OK(due);
  ASSERT_EQ(due->size(), 1u);
  auto row = store_->projection().row(a);
  ASSERT_OK(row);
  const uint64_t seen_version = (*row)->version;
  // A heartbeat sneaks in before the watchdog's command: the watchdog's stale
  // version loses.
  must(a, Heartbeat{nullptr});
  EXPECT_ERROR_CODE(run(a, ExpireDeadlines{}, seen_version), ErrorCode::kVersionMismatch);
  EXPECT_TRUE(store_->projection().expired(clock_.now_ms(), 10)->empty());

  clock_.set_ms(kT0 + 20'000);
  auto failed = must(a, ExpireDeadlines{}, 3);
  ASSERT_EQ(failed.events.size(), 1u);
  EXPECT_EQ(failed.state().status, JobStatus::kFailed);
  EXPECT_EQ(failed.state().error.at("code"), "heartbeat_timeout");
  EXPECT_EQ(failed.state().finished_at_ms, kT0 + 20'000);
  EXPECT_TRUE(store_->projection().expired(kT0 + 86'400'000, 10)->empty());
  // The worker's late report learns the job is over.
  EXPECT_ERROR_CODE(run(a, Heartbeat{nullptr}), ErrorCode::kJobTerminal);
}

// After a restart, a deadline that passed while the server was down becomes
// start-up time + heartbeat_timeout_s (API.md), in decide and in the JSON.
TEST_F(ProjectionTest, RestartGivesGraceToOverdueJobs) {
  const JobId a = create("t", 10);
  must(a, StartJob{"w"});  // stored deadline kT0 + 10 s
  close_store();
  const TimeMs restart = kT0 + 60'000;
  clock_.set_ms(restart);
  open_store();
  EXPECT_EQ(store_->writer().server_start_ms(), restart);

  auto row = store_->projection().row(a);
  ASSERT_OK(row);
  EXPECT_EQ((*row)->deadline_ms, kT0 + 10'000) << "the stored deadline is not rewritten";
  const json shown = json::parse((*row)->render(store_->writer().server_start_ms()));
  EXPECT_EQ(shown.at("deadline_at"), format_rfc3339_ms(restart + 10'000));

  auto graced = must(a, ExpireDeadlines{}, 2);
  EXPECT_TRUE(graced.events.empty()) << "workers could not reach us while we were down";
  clock_.set_ms(restart + 9'999);
  EXPECT_TRUE(must(a, ExpireDeadlines{}, 2).events.empty());
  clock_.set_ms(restart + 10'000);
  auto failed = must(a, ExpireDeadlines{}, 2);
  ASSERT_EQ(failed.events.size(), 1u);
  EXPECT_EQ(failed.events[0].data.at("error").at("details").at("deadline_at"),
            format_rfc3339_ms(restart + 10'000));
}

}  // namespace
}  // namespace jobstate

namespace jobstate {
namespace {

// The status row is written member by member (the writer's hot path); it
// must be byte for byte what job_to_json + canonical_dump give, for every
// kind of value a job can hold.
TEST(StatusRowEncoding, FastEncoderMatchesTheReferenceForEveryKindOfJob) {
  const TimeMs midnight = 1'795'824'000'000;  // 2026-11-27T00:00:00.000Z
  JobState base;
  base.id = JobId::generate();
  base.type = "reports.daily:v2";
  base.created_seq = 42;
  base.created_at_ms = midnight - 1;  // the day before, 23:59:59.999
  base.heartbeat_timeout_s = 90;

  std::vector<JobState> jobs;
  jobs.push_back(base);  // queued, empty params and labels

  JobState with_values = base;
  with_values.params = json{{"b", {1, 2.5, "x"}}, {"a", {{"nested", nullptr}}},
                            {"ü", "ø\"\\\n"},     {"big", 1.2345678901234567e15},
                            {"neg", -0.0},        {"emoji", "😀"}};
  with_values.labels = json{{"team", "data"}, {"région", "eu-west"}};
  with_values.cancel_requested = true;
  jobs.push_back(with_values);

  JobState running = with_values;
  running.status = JobStatus::kRunning;
  running.version = 7;
  running.started_at_ms = midnight + 5;
  running.last_heartbeat_at_ms = midnight + 86'399'999;  // 23:59:59.999 the same day
  running.deadline_ms = *running.last_heartbeat_at_ms + 90'000;
  running.worker = "host-1/pid 7 \"quoted\" \x01 ünï";
  running.progress =
      json{{"fraction", 0.333}, {"message", "step 2 of 3"}, {"details", {{"rows", 12}}}};
  jobs.push_back(running);

  JobState succeeded = running;
  succeeded.status = JobStatus::kSucceeded;
  succeeded.deadline_ms.reset();
  succeeded.finished_at_ms = midnight + 3 * 86'400'000 + 12'345;
  succeeded.result = json{{"url", "s3://bucket/key"}, {"count", 1e300}, {"list", json::array()}};
  jobs.push_back(succeeded);

  JobState failed = running;
  failed.status = JobStatus::kFailed;
  failed.deadline_ms.reset();
  failed.finished_at_ms = midnight + 1;
  failed.error = json{{"code", "heartbeat_timeout"},
                      {"message", "no heartbeat"},
                      {"details", {{"last_heartbeat_at", "2026-11-27T23:59:59.999Z"}}}};
  jobs.push_back(failed);

  JobState cancelled = base;
  cancelled.status = JobStatus::kCancelled;
  cancelled.finished_at_ms = base.created_at_ms;  // back to the day before
  jobs.push_back(cancelled);

  for (const auto& job : jobs) {
    SCOPED_TRACE(canonical_dump(job_to_json(job, 0)));
    EXPECT_EQ(encode_status_row(job), encode_status_row_reference(job));
    // The same with the JSON values given as their canonical texts.
    const std::string params = canonical_dump(job.params), labels = canonical_dump(job.labels),
                      progress = canonical_dump(job.progress), result = canonical_dump(job.result);
    EXPECT_EQ(encode_status_row(job, RowTexts{params, labels, progress, result}),
              encode_status_row_reference(job));
    auto decoded = decode_status_row(encode_status_row(job));
    ASSERT_OK(decoded);
    auto state = decoded->to_state();
    ASSERT_OK(state);
    EXPECT_EQ(*state, job);
  }
}

}  // namespace
}  // namespace jobstate
