// `jobstate copy --from SRC --to DST` between the two backends: RocksDB to
// PostgreSQL and back keeps every seq, hash and data text (replay prints the
// same lines, verify reports the same head on each copy), and a destination
// that already holds a store is refused with one line, untouched. And
// `rebuild --store` on the copy: --check names a tampered row, a rebuild
// repairs it.
#include <gtest/gtest.h>

#include "ops_test_util.h"
#include "pgstore/pg.h"
#include "postgres_fixture.h"

namespace jobstate::testing {
namespace {

TEST(OpsCopyTest, RocksDbToPostgresAndBackKeepsEverySeqAndHash) {
  TempDir dir;
  TestPostgres pg;
  const auto filled = fill_varied_store(dir.sub("store"), 30);
  const std::string head_line = "head seq " + std::to_string(filled.head.seq) + " hash " + filled.head.hash;

  auto to_pg = run_jobstate({"copy", "--from", dir.sub("store"), "--to", pg.uri()});
  ASSERT_EQ(to_pg.exit_code, 0) << to_pg.err;
  EXPECT_NE(to_pg.out.find("copied " + std::to_string(filled.head.seq) + " events; " + head_line),
            std::string::npos)
      << to_pg.out;
  auto verified = run_jobstate({"verify", "--store", pg.uri()});
  ASSERT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_NE(verified.out.find(head_line), std::string::npos) << verified.out;
  EXPECT_NE(verified.out.find(std::to_string(filled.jobs.size()) + " jobs"), std::string::npos);
  const auto original = run_jobstate({"replay", "--data-dir", dir.sub("store")});
  const auto on_pg = run_jobstate({"replay", "--store", pg.uri()});
  ASSERT_EQ(original.exit_code, 0);
  EXPECT_EQ(on_pg.out, original.out);

  auto back = run_jobstate({"copy", "--from", pg.uri(), "--to", dir.sub("back")});
  ASSERT_EQ(back.exit_code, 0) << back.err;
  verified = run_jobstate({"verify", "--data-dir", dir.sub("back")});
  ASSERT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_NE(verified.out.find(head_line), std::string::npos) << verified.out;
  EXPECT_EQ(run_jobstate({"replay", "--data-dir", dir.sub("back")}).out, original.out);

  // Destinations that hold a store are refused, and keep what they hold.
  auto again = run_jobstate({"copy", "--from", dir.sub("store"), "--to", pg.uri()});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_TRUE(is_one_line_error(again, "empty one only")) << again.err;
  auto into_dir = run_jobstate({"copy", "--from", pg.uri(), "--to", dir.sub("back")});
  EXPECT_EQ(into_dir.exit_code, 2);
  EXPECT_TRUE(is_one_line_error(into_dir, "not empty")) << into_dir.err;
  EXPECT_EQ(run_jobstate({"verify", "--store", pg.uri()}).exit_code, 0);
  EXPECT_EQ(run_jobstate({"verify", "--data-dir", dir.sub("back")}).exit_code, 0);
}

TEST(OpsCopyTest, RebuildOnPostgresFindsAndRepairsATamperedRow) {
  TempDir dir;
  TestPostgres pg;
  const auto filled = fill_varied_store(dir.sub("store"), 12);
  ASSERT_EQ(run_jobstate({"copy", "--from", dir.sub("store"), "--to", pg.uri()}).exit_code, 0);
  auto checked = run_jobstate({"rebuild", "--store", pg.uri(), "--check"});
  ASSERT_EQ(checked.exit_code, 0) << checked.err;

  const std::string job = filled.succeeded_job.to_string();
  auto c = pg::Connection::open(pg.uri());
  ASSERT_OK(c);
  ASSERT_OK((*c)->exec("UPDATE jobstate_jobs SET job = replace(job, '\"succeeded\"', "
                       "'\"cancelled\"') WHERE id = $1",
                       {job}));
  checked = run_jobstate({"rebuild", "--store", pg.uri(), "--check"});
  EXPECT_EQ(checked.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(checked, "job " + job)) << checked.err;

  auto rebuilt = run_jobstate({"rebuild", "--store", pg.uri()});
  ASSERT_EQ(rebuilt.exit_code, 0) << rebuilt.err;
  EXPECT_NE(rebuilt.out.find("status rows rebuilt: 12 jobs"), std::string::npos) << rebuilt.out;
  EXPECT_EQ(run_jobstate({"verify", "--store", pg.uri()}).exit_code, 0);
}

}  // namespace
}  // namespace jobstate::testing
