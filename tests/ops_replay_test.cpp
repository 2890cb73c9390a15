// `jobstate replay`: the log as JSON lines identical to the API's event JSON,
// for the whole log, one job, or a seq range; on a stopped and on a live
// store; and a one-line error for every kind of bad input.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "store/hash_chain.h"
#include "ops_test_util.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

// The API's JSON of every event (LogReader parses each one; event_json_text
// re-serialises it), optionally only one job's.
std::vector<std::string> api_event_json(const std::string& dir,
                                        std::optional<JobId> job = std::nullopt) {
  DatabaseOptions o;
  o.path = dir;
  o.mode = OpenMode::kReadOnly;
  auto db = Database::open(o);
  EXPECT_OK(db);
  std::vector<std::string> out;
  if (!db.ok()) return out;
  LogReader log(**db);
  auto events = job ? log.job_events(*job) : log.events_after(0, SIZE_MAX);
  EXPECT_OK(events);
  if (events.ok())
    for (auto& e : *events) out.push_back(event_json_text(e));
  return out;
}

uint64_t seq_of(const std::string& line) {
  return json::parse(line).at("seq").get<uint64_t>();
}

class OpsReplayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    filled_ = new FilledStore(fill_varied_store(dir_->sub("store")));
  }
  static void TearDownTestSuite() {
    delete filled_;
    delete dir_;
  }
  static std::string store() { return dir_->sub("store"); }
  static TempDir* dir_;
  static FilledStore* filled_;
};
TempDir* OpsReplayTest::dir_ = nullptr;
FilledStore* OpsReplayTest::filled_ = nullptr;

TEST_F(OpsReplayTest, WholeLogIsTheApiEventJsonInSeqOrder) {
  auto r = run_jobstate({"replay", "--data-dir", store()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), filled_->head.seq);
  EXPECT_EQ(lines, api_event_json(store()));
  for (size_t i = 0; i < lines.size(); ++i) ASSERT_EQ(seq_of(lines[i]), i + 1);
  EXPECT_EQ(json::parse(lines.back()).at("hash"), filled_->head.hash);
}

TEST_F(OpsReplayTest, OneJobIsItsHistoryInOrder) {
  const JobId job = filled_->succeeded_job;
  auto r = run_jobstate({"replay", "--data-dir", store(), "--job", job.to_string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = lines_of(r.out);
  EXPECT_EQ(lines, api_event_json(store(), job));
  ASSERT_GE(lines.size(), 4u);  // created, started, heartbeats, succeeded
  for (size_t i = 0; i < lines.size(); ++i) {
    auto e = json::parse(lines[i]);
    EXPECT_EQ(e.at("job_id"), job.to_string());
    EXPECT_EQ(e.at("version"), i + 1);
  }
  EXPECT_EQ(json::parse(lines.back()).at("type"), "succeeded");
}

TEST_F(OpsReplayTest, AfterSeqIsExclusiveAndUntilSeqInclusive) {
  auto r = run_jobstate({"replay", "--data-dir", store(), "--after-seq", "5", "--until-seq", "9"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 4u);
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(seq_of(lines[i]), 6 + i);
  const auto all = api_event_json(store());
  EXPECT_EQ(lines, std::vector<std::string>(all.begin() + 5, all.begin() + 9));

  auto to_end = run_jobstate(
      {"replay", "--data-dir", store(), "--after-seq", std::to_string(filled_->head.seq - 3)});
  ASSERT_EQ(to_end.exit_code, 0) << to_end.err;
  EXPECT_EQ(lines_of(to_end.out).size(), 3u);

  for (auto args : {std::vector<std::string>{"--after-seq", std::to_string(filled_->head.seq)},
                    std::vector<std::string>{"--until-seq", "0"},
                    std::vector<std::string>{"--after-seq", "7", "--until-seq", "7"}}) {
    args.insert(args.begin(), {"replay", "--data-dir", store()});
    auto empty = run_jobstate(args);
    EXPECT_EQ(empty.exit_code, 0) << empty.err;
    EXPECT_EQ(empty.out, "");
  }
}

TEST_F(OpsReplayTest, JobAndRangeTogether) {
  const JobId job = filled_->succeeded_job;
  auto all =
      lines_of(run_jobstate({"replay", "--data-dir", store(), "--job", job.to_string()}).out);
  ASSERT_GE(all.size(), 3u);
  const uint64_t second = seq_of(all[1]);
  auto r = run_jobstate({"replay", "--data-dir", store(), "--job", job.to_string(), "--after-seq",
                         std::to_string(second - 1), "--until-seq", std::to_string(second)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out), std::vector<std::string>{all[1]});
}

// The audit procedure of docs/operations.md: a published head {seq, hash}
// is still the hash of the event at that seq after the log has grown.
TEST(OpsReplayAuditTest, LastLineUpToAPublishedSeqCarriesThePublishedHash) {
  TempDir dir;
  const auto filled = fill_varied_store(dir.sub("store"), 18);
  const LogHead published = filled.head;
  {
    ManualClock clock(kOpsT0 + 3'600'000);
    auto store = open_test_store(dir.sub("store"), clock);
    ASSERT_OK(store);
    execute_all(**store, {request(JobId::generate(), CreateJob{"later", nlohmann::json::object(),
                                                               30, nlohmann::json::object()})});
    ASSERT_GT((*store)->writer().committed_head().seq, published.seq);
  }
  auto r = run_jobstate(
      {"replay", "--data-dir", dir.sub("store"), "--until-seq", std::to_string(published.seq)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), published.seq);
  auto last = json::parse(lines.back());
  EXPECT_EQ(last.at("seq"), published.seq);
  EXPECT_EQ(last.at("hash"), published.hash);
}

// API.md's promise: anyone can recompute every hash from replay's output
// with Python's json.dumps(e, sort_keys=True, separators=(",", ":"),
// ensure_ascii=False). Over every kind of content and 3,000 random heartbeat
// fractions (about 1 in 4,000 of which nlohmann alone printed with a 17th
// digit that Python does not), the whole chain recomputes.
TEST(OpsReplayAuditTest, PythonRecomputesEveryHashFromReplay) {
  TempDir dir;
  fill_varied_store(dir.sub("store"), 18);
  {
    ManualClock clock(kOpsT0 + 3'600'000);
    auto store = open_test_store(dir.sub("store"), clock);
    ASSERT_OK(store);
    const JobId id = JobId::generate();
    execute_all(**store, {request(id, CreateJob{"fractions", json::object(), 600, json::object()}),
                          request(id, StartJob{"w"})});
    std::mt19937_64 rng(12);
    std::uniform_real_distribution<double> fraction(0.0, 1.0);
    for (int round = 0; round < 30; ++round) {
      std::vector<CommandRequest> beats;
      for (int i = 0; i < 100; ++i)
        beats.push_back(request(id, Heartbeat{{{"fraction", fraction(rng)}, {"message", "m"}}}));
      execute_all(**store, std::move(beats));
    }
  }
  auto r = run_jobstate({"replay", "--data-dir", dir.sub("store")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  {
    std::ofstream out(dir.sub("replay.jsonl"));
    out << r.out;
  }
  const std::string script = dir.sub("rehash.py");
  {
    std::ofstream py(script);
    py << "import hashlib, json, sys\n"
          "prev, n = '0' * 64, 0\n"
          "for line in open(sys.argv[1], encoding='utf-8'):\n"
          "    e = json.loads(line)\n"
          "    stored = e.pop('hash')\n"
          "    canonical = json.dumps(e, sort_keys=True, separators=(',', ':'), "
          "ensure_ascii=False)\n"
          "    h = hashlib.sha256((prev + canonical).encode('utf-8')).hexdigest()\n"
          "    if h != stored:\n"
          "        print('seq', e['seq'], 'recomputes to', h, 'not', stored, canonical)\n"
          "        sys.exit(1)\n"
          "    prev, n = h, n + 1\n"
          "print('ok', n)\n";
  }
  const std::string cmd =
      "python3 " + script + " " + dir.sub("replay.jsonl") + " > " + dir.sub("python.out") + " 2>&1";
  const int status = std::system(cmd.c_str());
  const std::string said = read_file(dir.sub("python.out"));
  EXPECT_EQ(status, 0) << said;
  EXPECT_EQ(said, "ok " + std::to_string(lines_of(r.out).size()) + "\n");
  EXPECT_GT(lines_of(r.out).size(), 3000u);
}

TEST(OpsReplayLiveTest, WorksWhileAnotherProcessAppends) {
  TempDir dir;
  LiveWriter writer(dir.sub("store"));
  ASSERT_TRUE(writer.wait_for_seq(40)) << "the live writer did not get going";
  const uint64_t before = writer.seq();
  auto r = run_jobstate({"replay", "--data-dir", dir.sub("store")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = lines_of(r.out);
  ASSERT_GE(lines.size(), before);
  // Gapless from 1 and chained from the genesis hash: a consistent cut.
  std::string previous(kGenesisHash);
  for (size_t i = 0; i < lines.size(); ++i) {
    auto e = json::parse(lines[i]);
    ASSERT_EQ(e.at("seq"), i + 1);
    std::string hash = e.at("hash");
    e.erase("hash");
    ASSERT_EQ(chain_hash(previous, canonical_dump(e)), hash) << "seq " << i + 1;
    previous = hash;
  }
  ASSERT_TRUE(writer.wait_for_seq(writer.seq() + 8)) << "the writer was blocked";
  // One job of the live log, through the index.
  const std::string job = json::parse(lines[0]).at("job_id");
  auto one = run_jobstate({"replay", "--data-dir", dir.sub("store"), "--job", job});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(lines_of(one.out).size(), 4u);
}

TEST(OpsReplayBadInputTest, OneLineErrorsAndNothingWritten) {
  TempDir dir;
  const std::string store = dir.sub("store");
  fill_varied_store(store, 9);
  std::filesystem::create_directory(dir.sub("empty"));
  { std::ofstream(dir.sub("file")) << "not a directory"; }
  {  // a RocksDB database that is not a jobstate store
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir.sub("foreign"), &raw).ok());
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), "k", "v").ok());
    delete raw;
  }
  const auto before = directory_listing(dir.path());
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string needle;
  };
  const std::string id = JobId::generate().to_string();
  std::string upper = id;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  const std::vector<Case> cases = {
      {{"--data-dir", dir.sub("missing")}, 1, "no such directory"},
      {{"--data-dir", dir.sub("empty")}, 1, "not a jobstate store"},
      {{"--data-dir", dir.sub("file")}, 1, "not a directory"},
      {{"--data-dir", dir.sub("foreign")}, 1, "not a jobstate store"},
      {{"--data-dir", store, "--job", "not-a-uuid"}, 2, "--job"},
      {{"--data-dir", store, "--job", upper}, 2, "--job"},
      {{"--data-dir", store, "--job", id}, 1, "no job " + id},
      {{"--data-dir", store, "--after-seq", "-1"}, 2, "--after-seq"},
      {{"--data-dir", store, "--after-seq", "abc"}, 2, "--after-seq"},
      {{"--data-dir", store, "--until-seq", "1e3"}, 2, "--until-seq"},
      {{"--data-dir", store, "--until-seq", "99999999999999999999999"}, 2, "--until-seq"},
      {{"--data-dir", store, "--after-seq", "5", "--until-seq", "3"}, 2, "empty range"},
      {{"--data-dir", store, "--bogus"}, 2, "--bogus"},
      {{"--job", id}, 2, "--data-dir"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{"replay"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = run_jobstate(args);
    SCOPED_TRACE(::testing::PrintToString(c.args));
    EXPECT_EQ(r.exit_code, c.exit_code) << r.err;
    EXPECT_TRUE(is_one_line_error(r, c.needle));
  }
  EXPECT_EQ(directory_listing(dir.path()), before) << "a failed replay changed files";
}

}  // namespace
}  // namespace jobstate::testing
