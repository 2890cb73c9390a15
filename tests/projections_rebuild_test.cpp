// rebuild_projections: a replay of the log must give, byte for byte, the
// projection the writer maintained inline; --check must notice any
// difference; and a lost projection must be recoverable from the log alone.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "store/byte_order.h"
#include "projections/job_store.h"
#include "projections/rebuild.h"
#include "store_fixture.h"

namespace jobstate {
namespace {

using nlohmann::json;
using Contents = std::map<std::string, std::string>;

constexpr TimeMs kT0 = 1'795'802'400'000;

struct Projection {
  Contents jobs, list, deadlines;
  bool operator==(const Projection&) const = default;
};

Projection snapshot(const Database& db, uint64_t generation) {
  return {testing::family_contents(db, StatusProjection::jobs_cf_name(generation)),
          testing::family_contents(db, StatusProjection::list_cf_name(generation)),
          testing::family_contents(db, StatusProjection::deadlines_cf_name(generation))};
}

std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xF]);
  }
  return out;
}

// First differing key, for a readable failure.
std::string first_difference(const Contents& a, const Contents& b) {
  for (auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end()) return "key " + hex(k) + " only before";
    if (it->second != v) return "key " + hex(k) + ": before " + v + "\n after " + it->second;
  }
  for (auto& [k, v] : b)
    if (!a.count(k)) return "key " + hex(k) + " only after";
  return "equal";
}

void expect_same(const Projection& before, const Projection& after) {
  EXPECT_EQ(before.jobs.size(), after.jobs.size());
  EXPECT_TRUE(before.jobs == after.jobs) << first_difference(before.jobs, after.jobs);
  EXPECT_TRUE(before.list == after.list) << first_difference(before.list, after.list);
  EXPECT_TRUE(before.deadlines == after.deadlines)
      << first_difference(before.deadlines, after.deadlines);
}

class RebuildTest : public testing::StoreTest {
 protected:
  RebuildTest() : StoreTest(kT0) {}
  // A read-write open with no writer: what `jobstate rebuild` does.
  std::unique_ptr<Database> open_offline() {
    DatabaseOptions o;
    o.path = store_path();
    o.required_column_families = log_column_families();
    auto db = Database::open(o);
    EXPECT_TRUE(db.ok()) << testing::describe_error(db);
    return db.ok() ? std::move(*db) : nullptr;
  }
  CommandOutcome must(const JobId& id, Command c, std::optional<uint64_t> expected = {},
                      std::optional<std::string> key = {}) {
    CommandRequest r;
    r.job_id = id;
    r.command = std::move(c);
    r.expected_version = expected;
    if (key) {
      r.idempotency_key = key;
      r.request_fingerprint = "fp-" + *key;
    }
    auto out = store_->writer().execute(std::move(r));
    EXPECT_TRUE(out.ok()) << testing::describe_error(out);
    return out.ok() ? std::move(*out) : CommandOutcome{};
  }

  // Every kind of job life, with awkward payloads. Phase 2 works on jobs
  // phase 1 left behind (after a reopen, so the writer reloads them from rows).
  void workload_phase1() {
    for (int i = 0; i < 40; ++i) {
      const JobId id = JobId::generate();
      json params = {
          {"i", i}, {"name", "ünï 😀 \"q\" \\ \u0001"}, {"big", 1e15 + i}, {"f", i / 7.0}};
      json labels = {{"team", i % 2 ? "media" : "search"}, {"é", "x"}};
      must(id, CreateJob{"type." + std::to_string(i % 4), params, 5 + i % 7, labels}, std::nullopt,
           i % 5 == 0 ? std::optional<std::string>("key-" + std::to_string(i)) : std::nullopt);
      jobs_.push_back(id);
      clock_.advance_ms(37);
    }
    // An idempotent replay appends nothing and must not disturb the projection.
    must(JobId::generate(),
         CreateJob{"type.0",
                   {{"i", 0}, {"name", "ünï 😀 \"q\" \\ \u0001"}, {"big", 1e15}, {"f", 0.0}},
                   5,
                   {{"team", "search"}, {"é", "x"}}},
         std::nullopt, std::string("key-0"));
    for (int i = 0; i < 40; ++i) {
      const JobId& id = jobs_[i];
      switch (i % 8) {
        case 0:
          break;  // stays queued
        case 1:
          must(id, RequestCancel{"not needed"});
          break;
        case 2:
          must(id, FailJob{{{"code", "bad_input"}, {"details", {{"line", i}}}}});
          break;
        default:
          must(id, StartJob{"host-" + std::to_string(i % 3) + "/42"});
          break;
      }
      clock_.advance_ms(11);
    }
    for (int i = 0; i < 40; ++i) {
      if (i % 8 < 3) continue;
      must(jobs_[i],
           Heartbeat{{{"fraction", (i % 10) / 10.0}, {"message", "step " + std::to_string(i)}}});
      clock_.advance_ms(3);
    }
  }
  void workload_phase2() {
    for (int i = 0; i < 40; ++i) {
      const JobId& id = jobs_[i];
      switch (i % 8) {
        case 3:
          must(id, SucceedJob{{{"out", "/r/" + std::to_string(i)}, {"size", 1.5e15}}});
          break;
        case 4:
          must(id, Heartbeat{nullptr});
          break;  // progress stays
        case 5:
          must(id, RequestCancel{"user"});
          break;  // running + cancel requested
        case 6:
          must(id, RequestCancel{"user"});
          must(id, ConfirmCancelled{"stopped"});
          break;
        case 7:
          break;  // expires below
        default:
          break;
      }
      clock_.advance_ms(5);
    }
    // Let the watchdog's command fail every job whose deadline passed.
    clock_.advance_ms(60'000);
    auto due = store_->projection().expired(clock_.now_ms(), 1000);
    ASSERT_OK(due);
    for (auto& d : *due) {
      auto row = store_->projection().row(d.job_id);
      ASSERT_OK(row);
      must(d.job_id, ExpireDeadlines{}, (*row)->version);
    }
    // Some fresh jobs after the expiries, one left running.
    for (int i = 0; i < 5; ++i) {
      const JobId id = JobId::generate();
      must(id, CreateJob{"late", json::object(), 120, json::object()});
      if (i == 0) must(id, StartJob{"w"});
    }
  }

  std::vector<JobId> jobs_;
};

TEST_F(RebuildTest, RebuiltProjectionIsByteIdenticalToTheInlineOne) {
  open_store();
  workload_phase1();
  close_store();
  open_store();
  workload_phase2();
  const uint64_t generation = store_->projection().generation();
  const Projection inline_projection = snapshot(store_->db(), generation);
  ASSERT_FALSE(inline_projection.jobs.empty());
  ASSERT_FALSE(inline_projection.deadlines.empty()) << "the workload should leave running jobs";
  const uint64_t head = store_->log().head()->seq;
  const uint64_t job_count = inline_projection.jobs.size();

  // --check on the live store, and on a read-only open beside it.
  RebuildOptions check;
  check.check_only = true;
  auto checked = rebuild_projections(store_->db(), check);
  ASSERT_OK(checked);
  EXPECT_EQ(checked->events, head);
  EXPECT_EQ(checked->jobs, job_count);
  EXPECT_EQ(checked->generation, generation);
  {
    DatabaseOptions ro;
    ro.path = store_path();
    ro.mode = OpenMode::kReadOnly;
    ro.required_column_families = log_column_families();
    auto ro_db = Database::open(ro);
    ASSERT_OK(ro_db);
    EXPECT_OK(rebuild_projections(**ro_db, check));
    // A real rebuild needs a read-write store.
    EXPECT_ERROR_CODE(rebuild_projections(**ro_db), ErrorCode::kInvalidRequest);
  }
  close_store();

  // A real rebuild writes the next generation, switches to it, drops the old.
  {
    auto db = open_offline();
    ASSERT_TRUE(db);
    uint64_t progress_calls = 0;
    RebuildOptions opts;
    opts.on_progress = [&](uint64_t) { ++progress_calls; };
    auto rebuilt = rebuild_projections(*db, opts);
    ASSERT_OK(rebuilt);
    EXPECT_EQ(rebuilt->events, head);
    EXPECT_EQ(rebuilt->jobs, job_count);
    EXPECT_EQ(rebuilt->generation, generation + 1);
    EXPECT_EQ(read_projection_generation(*db).value(), generation + 1);
    expect_same(inline_projection, snapshot(*db, generation + 1));
    EXPECT_EQ(db->cf(StatusProjection::jobs_cf_name(generation)), nullptr);
    EXPECT_EQ(db->cf(StatusProjection::list_cf_name(generation)), nullptr);
    EXPECT_EQ(db->cf(StatusProjection::deadlines_cf_name(generation)), nullptr);
    EXPECT_OK(rebuild_projections(*db, check));
  }

  // Reopened: the server uses the rebuilt generation and carries on.
  open_store();
  EXPECT_EQ(store_->projection().generation(), generation + 1);
  expect_same(inline_projection, snapshot(store_->db(), generation + 1));
  for (const JobId& id : jobs_) {
    auto row = store_->projection().row(id);
    ASSERT_OK(row);
    ASSERT_TRUE(row->has_value());
    if (!is_terminal((*row)->status)) must(id, FailJob{{{"code", "shutdown"}}}, (*row)->version);
  }
  EXPECT_OK(rebuild_projections(store_->db(), check));
  EXPECT_TRUE(testing::log_is_intact(store_->db()));
}

TEST_F(RebuildTest, LostProjectionIsRebuiltFromTheLog) {
  open_store();
  workload_phase1();
  workload_phase2();
  const uint64_t generation = store_->projection().generation();
  const Projection inline_projection = snapshot(store_->db(), generation);
  close_store();

  {
    auto db = open_offline();
    ASSERT_TRUE(db);
    ASSERT_OK(db->drop_column_family(StatusProjection::jobs_cf_name(generation)));
    ASSERT_OK(db->drop_column_family(StatusProjection::list_cf_name(generation)));
    ASSERT_OK(db->drop_column_family(StatusProjection::deadlines_cf_name(generation)));
  }
  // Nothing serves a store whose projection is gone (jobs would look missing).
  EXPECT_ERROR_CODE(testing::open_test_store(store_path(), clock_), ErrorCode::kInvalidRequest);
  {
    auto db = open_offline();
    ASSERT_TRUE(db);
    RebuildOptions check;
    check.check_only = true;
    EXPECT_ERROR_CODE(rebuild_projections(*db, check), ErrorCode::kCorruption);
    auto rebuilt = rebuild_projections(*db);
    ASSERT_OK(rebuilt);
    EXPECT_EQ(rebuilt->generation, generation + 1);
    expect_same(inline_projection, snapshot(*db, generation + 1));
    EXPECT_OK(rebuild_projections(*db, check));
  }
  open_store();
  EXPECT_EQ(store_->projection().generation(), generation + 1);
  const JobId extra = JobId::generate();
  must(extra, CreateJob{"after-rebuild", json::object(), 60, json::object()});
  auto listed =
      store_->projection().list({std::nullopt, std::string("after-rebuild")}, std::nullopt, 10);
  ASSERT_OK(listed);
  EXPECT_EQ(listed->jobs.size(), 1u);
}

// --check compares every family and names what differs.
TEST_F(RebuildTest, CheckNoticesEveryKindOfDifference) {
  open_store();
  workload_phase1();
  const uint64_t g = store_->projection().generation();
  close_store();
  auto db = open_offline();
  ASSERT_TRUE(db);
  RebuildOptions check;
  check.check_only = true;
  ASSERT_OK(rebuild_projections(*db, check));

  auto* jobs = db->cf(StatusProjection::jobs_cf_name(g));
  auto* list = db->cf(StatusProjection::list_cf_name(g));
  auto* deadlines = db->cf(StatusProjection::deadlines_cf_name(g));
  ASSERT_TRUE(jobs && list && deadlines);
  const Projection good = snapshot(*db, g);
  ASSERT_FALSE(good.deadlines.empty());
  const rocksdb::WriteOptions wo;
  auto restore = [&] {
    for (auto* cf : {jobs, list, deadlines}) {
      rocksdb::WriteBatch wb;
      wb.DeleteRange(cf, "", std::string(64, '\xff'));
      ASSERT_TRUE(db->db()->Write(wo, &wb).ok());
    }
    for (auto& [k, v] : good.jobs) ASSERT_TRUE(db->db()->Put(wo, jobs, k, v).ok());
    for (auto& [k, v] : good.list) ASSERT_TRUE(db->db()->Put(wo, list, k, v).ok());
    for (auto& [k, v] : good.deadlines) ASSERT_TRUE(db->db()->Put(wo, deadlines, k, v).ok());
    ASSERT_OK(rebuild_projections(*db, check));
  };

  // A row that differs by one byte of its JSON, naming the job.
  {
    auto [key, value] = *good.jobs.begin();
    value.back() = value.back() == '}' ? ' ' : '}';
    ASSERT_TRUE(db->db()->Put(wo, jobs, key, value).ok());
    auto r = rebuild_projections(*db, check);
    EXPECT_ERROR_CODE(r, ErrorCode::kCorruption);
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find(JobId::from_bytes(key)->to_string()), std::string::npos)
          << r.error().message;
    }
    restore();
  }
  // A missing row, an extra list key, a lost deadline, a stale deadline.
  ASSERT_TRUE(db->db()->Delete(wo, jobs, good.jobs.rbegin()->first).ok());
  EXPECT_ERROR_CODE(rebuild_projections(*db, check), ErrorCode::kCorruption);
  restore();
  ASSERT_TRUE(db->db()->Put(wo, list, std::string("a") + u64_be(12345), std::string(16, 'x')).ok());
  EXPECT_ERROR_CODE(rebuild_projections(*db, check), ErrorCode::kCorruption);
  restore();
  ASSERT_TRUE(db->db()->Delete(wo, deadlines, good.deadlines.begin()->first).ok());
  EXPECT_ERROR_CODE(rebuild_projections(*db, check), ErrorCode::kCorruption);
  restore();
  std::string stale = good.deadlines.begin()->first;
  stale[7] = static_cast<char>(stale[7] ^ 1);
  ASSERT_TRUE(db->db()->Put(wo, deadlines, stale, "").ok());
  EXPECT_ERROR_CODE(rebuild_projections(*db, check), ErrorCode::kCorruption);
  restore();
}

TEST_F(RebuildTest, EmptyStore) {
  open_store();
  close_store();
  auto db = open_offline();
  ASSERT_TRUE(db);
  RebuildOptions check;
  check.check_only = true;
  auto checked = rebuild_projections(*db, check);
  ASSERT_OK(checked);
  EXPECT_EQ(checked->events, 0u);
  EXPECT_EQ(checked->jobs, 0u);
  auto rebuilt = rebuild_projections(*db);
  ASSERT_OK(rebuilt);
  EXPECT_EQ(rebuilt->generation, checked->generation + 1);
  EXPECT_OK(rebuild_projections(*db, check));
}

}  // namespace
}  // namespace jobstate
