// `jobstate rebuild [--check]`: a rebuild reproduces the projection the
// writer kept inline, byte for byte, for every kind of job history; a lost
// projection is restored from the log alone; --check works on a live store;
// a rebuild of a store a server holds is refused in one line and changes
// nothing; bad input never turns a directory into half a store.
#include <gtest/gtest.h>

#include <fstream>

#include "ops_test_util.h"
#include "projections/rebuild.h"

namespace jobstate::testing {
namespace {

using Contents = std::map<std::string, std::string>;

struct Projection {
  Contents jobs, list, deadlines;
  bool operator==(const Projection&) const = default;
};

Projection read_projection(const std::string& dir, uint64_t generation) {
  DatabaseOptions o;
  o.path = dir;
  o.mode = OpenMode::kReadOnly;
  auto db = Database::open(o);
  EXPECT_OK(db);
  if (!db.ok()) return {};
  return {family_contents(**db, StatusProjection::jobs_cf_name(generation)),
          family_contents(**db, StatusProjection::list_cf_name(generation)),
          family_contents(**db, StatusProjection::deadlines_cf_name(generation))};
}

std::vector<std::string> column_families(const std::string& dir) {
  std::vector<std::string> names;
  EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::sort(names.begin(), names.end());
  return names;
}

class OpsRebuildTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    // Enough jobs that the row encoder is cross-checked on several of them.
    filled_ = new FilledStore(fill_varied_store(dir_->sub("store"), 300));
    original_ = new Projection(read_projection(dir_->sub("store"), 1));
  }
  static void TearDownTestSuite() {
    delete original_;
    delete filled_;
    delete dir_;
  }
  std::string copy() {
    std::string to = tmp_.sub("copy" + std::to_string(copies_++));
    copy_store(dir_->sub("store"), to);
    return to;
  }

  static TempDir* dir_;
  static FilledStore* filled_;
  static Projection* original_;
  TempDir tmp_;
  int copies_ = 0;
};
TempDir* OpsRebuildTest::dir_ = nullptr;
FilledStore* OpsRebuildTest::filled_ = nullptr;
Projection* OpsRebuildTest::original_ = nullptr;

TEST_F(OpsRebuildTest, ReproducesTheInlineProjectionByteForByte) {
  ASSERT_EQ(original_->jobs.size(), filled_->jobs.size());
  ASSERT_FALSE(original_->deadlines.empty());
  const std::string dir = copy();
  auto check = run_jobstate({"rebuild", "--data-dir", dir, "--check"});
  ASSERT_EQ(check.exit_code, 0) << check.err;
  EXPECT_NE(check.out.find("projection matches the log: " + std::to_string(filled_->head.seq) +
                           " events replayed, " + std::to_string(filled_->jobs.size()) + " jobs"),
            std::string::npos)
      << check.out;

  auto r = run_jobstate({"rebuild", "--data-dir", dir});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "") << "no progress line when stderr is not a terminal";
  EXPECT_NE(r.out.find(std::to_string(filled_->head.seq) + " events replayed"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("events/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("generation 2"), std::string::npos) << r.out;
  const Projection rebuilt = read_projection(dir, 2);
  EXPECT_EQ(rebuilt.jobs, original_->jobs);
  EXPECT_EQ(rebuilt.list, original_->list);
  EXPECT_EQ(rebuilt.deadlines, original_->deadlines);
  // Generation 1 is gone; nothing of the rebuild's scratch space is left.
  auto names = column_families(dir);
  EXPECT_EQ(std::count(names.begin(), names.end(), "jobs.g1"), 0);
  EXPECT_FALSE(std::filesystem::exists(dir + "/rebuild.tmp"));
  EXPECT_EQ(run_jobstate({"verify", "--data-dir", dir}).exit_code, 0);
}

// The library with parse_every_event (verify's mode) agrees with the fast
// default on the same log.
TEST_F(OpsRebuildTest, EveryEventParsedGivesTheSameProjection) {
  const std::string dir = copy();
  DatabaseOptions o;
  o.path = dir;
  o.mode = OpenMode::kReadWrite;
  o.create_if_missing = false;
  auto db = Database::open(o);
  ASSERT_OK(db);
  RebuildOptions exact;
  exact.parse_every_event = true;
  auto stats = rebuild_projections(**db, exact);
  ASSERT_OK(stats);
  EXPECT_EQ(stats->generation, 2u);
  EXPECT_EQ(stats->events, filled_->head.seq);
  RebuildOptions check;
  check.check_only = true;
  EXPECT_OK(rebuild_projections(**db, check));
  db->reset();
  EXPECT_EQ(read_projection(dir, 2), *original_);
}

TEST_F(OpsRebuildTest, ALostProjectionIsRestoredFromTheLog) {
  const std::string dir = copy();
  with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
    for (uint64_t g : {1}) {
      ASSERT_TRUE(db->DropColumnFamily(cfs.at(StatusProjection::jobs_cf_name(g))).ok());
      ASSERT_TRUE(db->DropColumnFamily(cfs.at(StatusProjection::list_cf_name(g))).ok());
      ASSERT_TRUE(db->DropColumnFamily(cfs.at(StatusProjection::deadlines_cf_name(g))).ok());
    }
  });
  {  // a server cannot start on it
    ManualClock clock(kOpsT0);
    EXPECT_ERROR_CODE(open_test_store(dir, clock), ErrorCode::kInvalidRequest);
  }
  auto check = run_jobstate({"rebuild", "--data-dir", dir, "--check"});
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(check, "projection 'jobs.g1' is missing"));

  auto r = run_jobstate({"rebuild", "--data-dir", dir});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_projection(dir, 2), *original_);
  EXPECT_EQ(run_jobstate({"verify", "--data-dir", dir}).exit_code, 0);
  // And the store serves again: the same job, the same row.
  ManualClock clock(kOpsT0 + 10'000'000);
  auto store = open_test_store(dir, clock);
  ASSERT_OK(store);
  auto row = (*store)->projection().row(filled_->succeeded_job);
  ASSERT_OK(row);
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->json_text.find("\"state\":\"succeeded\"") != std::string::npos, true);
  EXPECT_EQ(original_->jobs.at(std::string(filled_->succeeded_job.bytes())).substr(34),
            (*row)->json_text);
  EXPECT_EQ((*store)->writer().committed_head(), filled_->head);
}

TEST_F(OpsRebuildTest, LeftoversOfAnInterruptedRebuildAreReplaced) {
  const std::string dir = copy();
  with_raw_db(dir, [&](rocksdb::DB* db, auto&) {
    rocksdb::ColumnFamilyHandle* half = nullptr;
    ASSERT_TRUE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "jobs.g2", &half).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), half, "junk", "from a crashed rebuild").ok());
    db->DestroyColumnFamilyHandle(half);
  });
  std::filesystem::create_directory(dir + "/rebuild.tmp");
  { std::ofstream(dir + "/rebuild.tmp/jobs.g2.0.sst") << "partial"; }
  auto r = run_jobstate({"rebuild", "--data-dir", dir});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_projection(dir, 2), *original_);
  EXPECT_FALSE(std::filesystem::exists(dir + "/rebuild.tmp"));
}

TEST(OpsRebuildLiveTest, RefusedInOneLineWhileAServerHoldsTheStoreAndCheckWorks) {
  TempDir dir;
  const std::string store = dir.sub("store");
  LiveWriter writer(store);
  ASSERT_TRUE(writer.wait_for_seq(40)) << "the live writer did not get going";
  const auto families = column_families(store);
  auto log_files = [&] {
    std::vector<std::string> logs;
    for (auto& e : std::filesystem::directory_iterator(store))
      if (e.path().filename().string().rfind("LOG", 0) == 0) logs.push_back(e.path().filename());
    std::sort(logs.begin(), logs.end());
    return logs;
  };
  const auto logs = log_files();

  auto r = run_jobstate({"rebuild", "--data-dir", store});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(r, "in use by process"));
  EXPECT_TRUE(is_one_line_error(r, "stop the server"));
  EXPECT_EQ(column_families(store), families);
  EXPECT_EQ(log_files(), logs) << "the server's info log was rotated";

  auto check = run_jobstate({"rebuild", "--data-dir", store, "--check"});
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_NE(check.out.find("projection matches the log"), std::string::npos);
  EXPECT_TRUE(writer.wait_for_seq(writer.seq() + 8)) << "the writer was blocked";

  // Stopped, the same store rebuilds.
  writer.stop();
  auto stopped = run_jobstate({"rebuild", "--data-dir", store});
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  EXPECT_EQ(run_jobstate({"verify", "--data-dir", store}).exit_code, 0);
}

TEST(OpsRebuildBadInputTest, OneLineErrorsAndNoDirectoryBecomesAStore) {
  TempDir dir;
  std::filesystem::create_directory(dir.sub("empty"));
  {  // a RocksDB database that is not a jobstate store
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir.sub("foreign"), &raw).ok());
    delete raw;
  }
  const auto before = directory_listing(dir.path());
  const auto foreign_families = column_families(dir.sub("foreign"));
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string needle;
  };
  for (const Case& c :
       {Case{{"--data-dir", dir.sub("missing")}, 1, "no such directory"},
        Case{{"--data-dir", dir.sub("empty")}, 1, "not a jobstate store"},
        Case{{"--data-dir", dir.sub("foreign")}, 1, "not a jobstate store"},
        Case{{"--data-dir", dir.sub("foreign"), "--check"}, 1, "not a jobstate store"},
        Case{{"--data-dir", dir.sub("empty"), "--force"}, 2, "--force"},
        Case{{"--check"}, 2, "--data-dir"}}) {
    SCOPED_TRACE(::testing::PrintToString(c.args));
    std::vector<std::string> args{"rebuild"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = run_jobstate(args);
    EXPECT_EQ(r.exit_code, c.exit_code);
    EXPECT_TRUE(is_one_line_error(r, c.needle));
  }
  EXPECT_EQ(directory_listing(dir.path()), before);
  EXPECT_EQ(column_families(dir.sub("foreign")), foreign_families);
}

}  // namespace
}  // namespace jobstate::testing
