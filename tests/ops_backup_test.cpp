// `jobstate backup` and backup_store(): a stopped store is checkpointed, a
// live one (another process appending, or a real `jobstate serve`) is copied
// from a consistent cut; either copy opens as a store with the same audit
// head and job statuses, verifies, and is served by a second server; bad
// input leaves nothing behind.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "eventstore/backup.h"
#include "http_client.h"
#include "ops_test_util.h"
#include "serve_process.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

// The head a successful `jobstate backup` printed.
LogHead printed_head(const std::string& out) {
  std::smatch m;
  LogHead h;
  if (std::regex_search(out, m, std::regex("head seq ([0-9]+) hash ([0-9a-f]{64})"))) {
    h.seq = std::stoull(m[1]);
    h.hash = m[2];
  } else {
    ADD_FAILURE() << "no head in: " << out;
  }
  return h;
}

std::unique_ptr<JobStore> open_store(const std::string& dir, const Clock& clock) {
  auto store = open_test_store(dir, clock, {}, /*create_if_missing=*/false);
  EXPECT_OK(store);
  return store.ok() ? std::move(*store) : nullptr;
}

std::string row_text(JobStore& store, const JobId& id) {
  auto row = store.projection().row(id);
  EXPECT_OK(row);
  return row.ok() && row->has_value() ? (*row)->json_text : std::string();
}

// The last replayed line up to `seq`: what an auditor compares with a head.
std::string hash_at(const std::string& dir, uint64_t seq) {
  auto r = run_jobstate({"replay", "--data-dir", dir, "--after-seq", std::to_string(seq - 1),
                         "--until-seq", std::to_string(seq)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = json::parse(r.out, nullptr, false);
  return j.is_object() ? j.value("hash", "") : "";
}

TEST(OpsBackupTest, AStoppedStoreIsCheckpointedWithTheSameHeadAndJobs) {
  TempDir dir;
  const auto filled = fill_varied_store(dir.sub("store"), 27);
  auto r = run_jobstate({"backup", "--data-dir", dir.sub("store"), "--to", dir.sub("copy")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("checkpoint of a stopped store"), std::string::npos) << r.out;
  EXPECT_EQ(printed_head(r.out), filled.head);

  ManualClock clock(kOpsT0 + 10'000'000);
  {
    auto copy = open_store(dir.sub("copy"), clock);
    ASSERT_NE(copy, nullptr);
    auto source = open_store(dir.sub("store"), clock);
    ASSERT_NE(source, nullptr);
    EXPECT_EQ(copy->log().head().value(), filled.head);
    EXPECT_EQ(copy->writer().committed_head(), filled.head);
    for (const JobId& id : {filled.succeeded_job, filled.running_job, filled.jobs.front()})
      EXPECT_EQ(row_text(*copy, id), row_text(*source, id));
    // The copy is a store of its own: writing to it leaves the source alone.
    execute_all(*copy, {request(filled.running_job, Heartbeat{nullptr})});
    EXPECT_EQ(source->log().head().value(), filled.head);
  }
  EXPECT_EQ(run_jobstate({"verify", "--data-dir", dir.sub("copy")}).exit_code, 0);
  EXPECT_EQ(run_jobstate({"verify", "--data-dir", dir.sub("store")}).exit_code, 0);
  auto leftovers = directory_listing(dir.path());
  for (auto& [path, size] : leftovers) EXPECT_EQ(path.find(".partial"), std::string::npos) << path;
}

TEST(OpsBackupTest, ALiveStoreIsCopiedFromAConsistentCut) {
  TempDir dir;
  const std::string store = dir.sub("store");
  LiveWriter writer(store);
  ASSERT_TRUE(writer.wait_for_seq(40)) << "the live writer did not get going";
  const uint64_t before = writer.seq();
  auto r = run_jobstate({"backup", "--data-dir", store, "--to", dir.sub("copy")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("copy of a live store"), std::string::npos) << r.out;
  const LogHead head = printed_head(r.out);
  EXPECT_GE(head.seq, before);
  EXPECT_TRUE(writer.wait_for_seq(writer.seq() + 8)) << "the writer was blocked";

  auto verified = run_jobstate({"verify", "--data-dir", dir.sub("copy")});
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  // The live log, later, still extends the backup's head.
  writer.stop();
  EXPECT_EQ(hash_at(store, head.seq), head.hash);

  ManualClock clock(kOpsT0);
  auto copy = open_store(dir.sub("copy"), clock);
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(copy->writer().committed_head(), head);
  auto first = copy->log().event(1);
  ASSERT_OK(first);
  ASSERT_TRUE(first->has_value());
  EXPECT_NE(row_text(*copy, (*first)->job_id).find("\"state\":\"succeeded\""), std::string::npos);
}

// backup_store on a read-write store whose writer keeps appending in this
// process: the checkpoint is a consistent cut (the copy verifies).
TEST(OpsBackupTest, ACheckpointWhileTheWriterAppendsIsConsistent) {
  TempDir dir;
  fill_varied_store(dir.sub("store"), 9);
  ManualClock clock(kOpsT0 + 10'000'000);
  auto store = open_store(dir.sub("store"), clock);
  ASSERT_NE(store, nullptr);
  std::atomic<bool> stop{false};
  std::thread appender([&] {
    for (int i = 0; i < 2000 && !stop; ++i)
      store->writer().execute(request(
          JobId::generate(), CreateJob{"during.backup", json::object(), 60, json::object()}));
  });
  while (store->writer().committed_head().seq < 120)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const LogHead before = store->writer().committed_head();
  auto result = backup_store(store->db(), dir.sub("copy"));
  stop = true;
  appender.join();
  ASSERT_OK(result);
  EXPECT_EQ(result->method, BackupMethod::kCheckpoint);
  EXPECT_GE(result->head.seq, before.seq);
  store.reset();
  EXPECT_EQ(run_jobstate({"verify", "--data-dir", dir.sub("copy")}).exit_code, 0);
  EXPECT_EQ(hash_at(dir.sub("store"), result->head.seq), result->head.hash);
}

TEST(OpsBackupServeTest, ABackupOfARunningServerIsServedWithTheSameHead) {
  TempDir dir;
  ServeProcess primary(dir.sub("store"), dir.sub("primary.out"));
  ASSERT_FALSE(primary.url().empty()) << primary.output();
  HttpClient client(primary.url());
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    auto created =
        client.request("POST", "/v1/jobs", {},
                       R"({"type":"backed.up","labels":{"n":")" + std::to_string(i) + R"("}})");
    ASSERT_EQ(created.status, 202) << created.body;
    ids.push_back(created.json().at("id"));
  }
  auto r = run_jobstate({"backup", "--data-dir", dir.sub("store"), "--to", dir.sub("copy")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("copy of a live store"), std::string::npos) << r.out;
  const LogHead head = printed_head(r.out);
  EXPECT_EQ(head.seq, 20u);
  // The primary goes on taking writes.
  auto later = client.request("POST", "/v1/jobs", {}, R"({"type":"after.backup"})");
  EXPECT_EQ(later.status, 202) << later.body;

  ServeProcess second(dir.sub("copy"), dir.sub("second.out"));
  ASSERT_FALSE(second.url().empty()) << second.output();
  HttpClient copy_client(second.url());
  auto audit = copy_client.request("GET", "/v1/audit/head");
  ASSERT_EQ(audit.status, 200) << audit.body;
  EXPECT_EQ(audit.json().at("seq"), head.seq);
  EXPECT_EQ(audit.json().at("hash"), head.hash);
  for (const auto& id : {ids.front(), ids.back()}) {
    auto a = client.request("GET", "/v1/jobs/" + id);
    auto b = copy_client.request("GET", "/v1/jobs/" + id);
    EXPECT_EQ(b.status, 200) << b.body;
    EXPECT_EQ(a.json(), b.json());
  }
  EXPECT_EQ(copy_client.request("GET", "/v1/jobs/" + later.json().value("id", "x")).status, 404);
}

TEST(OpsBackupBadInputTest, OneLineErrorsAndNothingLeftBehind) {
  TempDir dir;
  fill_varied_store(dir.sub("store"), 9);
  std::filesystem::create_directory(dir.sub("taken"));
  { std::ofstream(dir.sub("taken") + "/keep.txt") << "precious"; }
  std::filesystem::create_directory(dir.sub("empty"));
  const auto before = directory_listing(dir.path());
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string needle;
  };
  for (const Case& c :
       {Case{{"--data-dir", dir.sub("store"), "--to", dir.sub("taken")}, 2, "already exists"},
        Case{{"--data-dir", dir.sub("store"), "--to", dir.sub("store")}, 2, "already exists"},
        Case{{"--data-dir", dir.sub("store"), "--to", dir.sub("no/such/parent")},
             2,
             "no such directory"},
        Case{{"--data-dir", dir.sub("missing"), "--to", dir.sub("copy")}, 1, "no such directory"},
        Case{{"--data-dir", dir.sub("empty"), "--to", dir.sub("copy")}, 1, "not a jobstate store"},
        Case{{"--data-dir", dir.sub("store")}, 2, "--to"},
        Case{{"--data-dir", dir.sub("store"), "--to", dir.sub("copy"), "--incremental"},
             2,
             "--incremental"}}) {
    SCOPED_TRACE(::testing::PrintToString(c.args));
    std::vector<std::string> args{"backup"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = run_jobstate(args);
    EXPECT_EQ(r.exit_code, c.exit_code);
    EXPECT_TRUE(is_one_line_error(r, c.needle));
  }
  // Nothing new anywhere (the store itself may have been opened, not changed).
  auto after = directory_listing(dir.path());
  for (auto& [path, size] : after) {
    if (path.find("/store/") != std::string::npos) continue;
    EXPECT_TRUE(before.count(path)) << "new: " << path;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.sub("copy")));
  EXPECT_EQ(run_jobstate({"verify", "--data-dir", dir.sub("store")}).exit_code, 0);
}

}  // namespace
}  // namespace jobstate::testing
