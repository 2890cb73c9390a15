// `jobstate verify` and verify_store(): a clean store passes (stopped or
// live); an edited byte in any part of a stored event, a removed event, a
// tampered status row or index, a broken job_events index and a chain-valid
// log that breaks the state machine each fail with one line naming the
// first broken seq or job. Every tampering is written into a copy of a store
// with the plain RocksDB API.
#include <gtest/gtest.h>

#include "eventstore/event_codec.h"
#include "store/hash_chain.h"
#include "ops_test_util.h"
#include "projections/verify.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

class OpsVerifyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    filled_ = new FilledStore(fill_varied_store(dir_->sub("store")));
  }
  static void TearDownTestSuite() {
    delete filled_;
    delete dir_;
  }
  // A fresh copy of the suite's store, to tamper with.
  std::string copy() {
    std::string to = tmp_.sub("copy" + std::to_string(copies_++));
    copy_store(dir_->sub("store"), to);
    return to;
  }
  static CommandResult verify(const std::string& dir) {
    return run_jobstate({"verify", "--data-dir", dir});
  }

  static TempDir* dir_;
  static FilledStore* filled_;
  TempDir tmp_;
  int copies_ = 0;
};
TempDir* OpsVerifyTest::dir_ = nullptr;
FilledStore* OpsVerifyTest::filled_ = nullptr;

std::string seq_key(uint64_t seq) {
  return u64_be(seq);
}

TEST_F(OpsVerifyTest, AnIntactStorePasses) {
  auto r = verify(dir_->sub("store"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("ok: " + std::to_string(filled_->head.seq) + " events, " +
                       std::to_string(filled_->jobs.size()) + " jobs"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(filled_->head.hash), std::string::npos) << r.out;
}

TEST_F(OpsVerifyTest, TheLibraryReportsTheHead) {
  DatabaseOptions o;
  o.path = dir_->sub("store");
  o.mode = OpenMode::kReadOnly;
  auto db = Database::open(o);
  ASSERT_OK(db);
  auto report = verify_store(**db);
  ASSERT_OK(report);
  EXPECT_EQ(report->head, filled_->head);
  EXPECT_EQ(report->events, filled_->head.seq);
  EXPECT_EQ(report->jobs, filled_->jobs.size());
}

// One byte changed in each part of the stored record of seq 20: the format,
// the stored hash, the version, the type, the time, the job id, the data.
TEST_F(OpsVerifyTest, AnEditedByteInAStoredEventNamesItsSeq) {
  constexpr uint64_t kSeq = 20;
  struct Edit {
    const char* part;
    size_t offset;  // from event_codec.h's layout; SIZE_MAX: inside the data
    uint8_t xor_mask;
  };
  for (const Edit& edit :
       {Edit{"format", 0, 0x02}, Edit{"hash", 7, 0x01}, Edit{"version", 40, 0x01},
        Edit{"type", 41, 0x01}, Edit{"time", 49, 0x01}, Edit{"job id", 60, 0x10},
        Edit{"data", SIZE_MAX, 0x01}}) {
    SCOPED_TRACE(edit.part);
    const std::string dir = copy();
    with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
      std::string v;
      ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs.at(kEventsCf), seq_key(kSeq), &v).ok());
      const size_t at = edit.offset == SIZE_MAX ? v.size() - 3 : edit.offset;
      v[at] = static_cast<char>(v[at] ^ edit.xor_mask);
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs.at(kEventsCf), seq_key(kSeq), v).ok());
    });
    auto r = verify(dir);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(is_one_line_error(r, "seq 20"));
  }
}

// An edit that also recomputes the event's own hash moves the break to the
// next event, whose stored hash was chained from the original.
TEST_F(OpsVerifyTest, AnEventRewrittenWithItsOwnHashBreaksTheNextSeq) {
  const std::string dir = copy();
  with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
    std::string before, at;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs.at(kEventsCf), seq_key(19), &before).ok());
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs.at(kEventsCf), seq_key(20), &at).ok());
    auto previous = decode_stored_event(19, before);
    auto view = decode_stored_event(20, at);
    ASSERT_OK(previous);
    ASSERT_OK(view);
    auto e = view->to_event();
    ASSERT_OK(e);
    e->at_ms += 1;  // a forged time, re-hashed
    e->hash = chain_hash(previous->hash_hex(), canonical_event_json(*e));
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs.at(kEventsCf), seq_key(20),
                        encode_stored_event(*e, canonical_dump(e->data)))
                    .ok());
  });
  auto r = verify(dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(r, "seq 21 "));
  EXPECT_TRUE(is_one_line_error(r, "hash chain breaks here"));
}

TEST_F(OpsVerifyTest, ARemovedEventIsNamed) {
  const std::string dir = copy();
  with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), cfs.at(kEventsCf), seq_key(33)).ok());
  });
  auto r = verify(dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(r, "seq 33 is missing"));
}

TEST_F(OpsVerifyTest, ARemovedLastEventIsNamed) {
  const std::string dir = copy();
  const uint64_t last = filled_->head.seq;
  with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), cfs.at(kEventsCf), seq_key(last)).ok());
  });
  auto r = verify(dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(r, "seq " + std::to_string(last)));
}

// Cutting the log's tail and rewinding the head to match keeps the chain
// valid; the job whose events went is still caught (and the auditor's
// published head would not be found any more).
TEST_F(OpsVerifyTest, ATruncatedLogWithARewoundHeadIsCaught) {
  const std::string dir = copy();
  const uint64_t last = filled_->head.seq;
  std::string cut_job;
  with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
    std::string v;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs.at(kEventsCf), seq_key(last), &v).ok());
    auto last_event = decode_stored_event(last, v);
    ASSERT_OK(last_event);
    cut_job = last_event->job_id.to_string();
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), cfs.at(kEventsCf), seq_key(last - 1), &v).ok());
    auto previous = decode_stored_event(last - 1, v);
    ASSERT_OK(previous);
    rocksdb::WriteBatch wb;
    wb.Delete(cfs.at(kEventsCf), seq_key(last));
    wb.Delete(cfs.at(kJobEventsCf), job_event_key(last_event->job_id, last_event->version));
    wb.Put(cfs.at(kMetaCf), kMetaHeadSeq, u64_be(last - 1));
    wb.Put(cfs.at(kMetaCf), kMetaHeadHash, std::string(previous->hash_raw));
    ASSERT_TRUE(db->Write(rocksdb::WriteOptions(), &wb).ok());
  });
  auto r = verify(dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(r, "job " + cut_job));
}

TEST_F(OpsVerifyTest, ATamperedStatusRowNamesTheJob) {
  const std::string dir = copy();
  const JobId job = filled_->succeeded_job;
  with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
    auto* jobs = cfs.at(StatusProjection::jobs_cf_name(1));
    std::string v;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), jobs, job.bytes(), &v).ok());
    const auto at = v.find("\"state\":\"succeeded\"");
    ASSERT_NE(at, std::string::npos);
    v.replace(at, 19, "\"state\":\"cancelled\"");
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), jobs, job.bytes(), v).ok());
  });
  auto r = verify(dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(r, "job " + job.to_string()));
  EXPECT_TRUE(is_one_line_error(r, "differs from a replay"));
  // rebuild --check sees the same, and a rebuild repairs it.
  auto check = run_jobstate({"rebuild", "--data-dir", dir, "--check"});
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(check, "job " + job.to_string()));
  auto rebuilt = run_jobstate({"rebuild", "--data-dir", dir});
  ASSERT_EQ(rebuilt.exit_code, 0) << rebuilt.err;
  EXPECT_EQ(verify(dir).exit_code, 0);
}

TEST_F(OpsVerifyTest, TamperedListAndDeadlineIndexesAreNamed) {
  {
    const std::string dir = copy();
    with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
      auto* list = cfs.at(StatusProjection::list_cf_name(1));
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), list));
      it->SeekToFirst();
      ASSERT_TRUE(it->Valid());
      ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), list, it->key()).ok());
    });
    auto r = verify(dir);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(is_one_line_error(r, "job_list.g1 key"));
  }
  {
    const std::string dir = copy();
    with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
      std::string key = u64_be(static_cast<uint64_t>(kOpsT0) + 1);  // a deadline nobody has
      key += filled_->succeeded_job.bytes();
      ASSERT_TRUE(
          db->Put(rocksdb::WriteOptions(), cfs.at(StatusProjection::deadlines_cf_name(1)), key, "")
              .ok());
    });
    auto r = verify(dir);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(is_one_line_error(r, "deadlines.g1 key"));
    EXPECT_TRUE(is_one_line_error(r, "not in a replay"));
  }
}

TEST_F(OpsVerifyTest, AMissingProjectionIsNamed) {
  const std::string dir = copy();
  with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
    ASSERT_TRUE(db->DropColumnFamily(cfs.at(StatusProjection::jobs_cf_name(1))).ok());
  });
  auto r = verify(dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(r, "projection 'jobs.g1' is missing"));
}

TEST_F(OpsVerifyTest, ABrokenJobEventsIndexIsNamed) {
  const JobId job = filled_->succeeded_job;
  {  // an entry removed
    const std::string dir = copy();
    with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
      ASSERT_TRUE(
          db->Delete(rocksdb::WriteOptions(), cfs.at(kJobEventsCf), job_event_key(job, 2)).ok());
    });
    auto r = verify(dir);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(
        is_one_line_error(r, "job " + job.to_string() + " version 2) has no job_events entry"));
  }
  {  // an entry pointing at another event
    const std::string dir = copy();
    with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
      ASSERT_TRUE(
          db->Put(rocksdb::WriteOptions(), cfs.at(kJobEventsCf), job_event_key(job, 2), u64_be(1))
              .ok());
    });
    auto r = verify(dir);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(is_one_line_error(
        r, "job_events entry for job " + job.to_string() + " version 2 points at seq 1"));
  }
}

// An event appended after a terminal one, with a correct hash chain, head and
// index: only the state machine catches it.
TEST_F(OpsVerifyTest, AChainValidEventAfterATerminalOneNamesItsSeq) {
  const std::string dir = copy();
  const JobId job = filled_->succeeded_job;
  const uint64_t seq = filled_->head.seq + 1;
  with_raw_db(dir, [&](rocksdb::DB* db, auto& cfs) {
    std::string last_seq;
    ASSERT_TRUE(
        db->Get(rocksdb::ReadOptions(), cfs.at(kJobEventsCf), job_event_key(job, 99), &last_seq)
            .IsNotFound());
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(rocksdb::ReadOptions(), cfs.at(kJobEventsCf)));
    uint64_t version = 0;
    for (it->Seek(job_event_key(job, 1)); it->Valid() && it->key().starts_with(job.bytes());
         it->Next())
      ++version;
    Event e;
    e.seq = seq;
    e.job_id = job;
    e.version = version + 1;
    e.type = EventType::kHeartbeat;
    e.at_ms = kOpsT0 + 999'000;
    e.data = {{"progress", nullptr}};
    const std::string data = canonical_dump(e.data);
    e.hash = chain_hash(filled_->head.hash, canonical_event_json(e));
    rocksdb::WriteBatch wb;
    wb.Put(cfs.at(kEventsCf), seq_key(seq), encode_stored_event(e, data));
    wb.Put(cfs.at(kJobEventsCf), job_event_key(job, e.version), u64_be(seq));
    wb.Put(cfs.at(kMetaCf), kMetaHeadSeq, u64_be(seq));
    wb.Put(cfs.at(kMetaCf), kMetaHeadHash, hex_to_raw(e.hash));
    ASSERT_TRUE(db->Write(rocksdb::WriteOptions(), &wb).ok());
  });
  auto r = verify(dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(r, "seq " + std::to_string(seq)));
  EXPECT_TRUE(is_one_line_error(r, "after a terminal event"));
  EXPECT_TRUE(is_one_line_error(r, "job " + job.to_string()));
  // rebuild refuses such a log and leaves the projection as it was.
  auto rebuilt = run_jobstate({"rebuild", "--data-dir", dir});
  EXPECT_EQ(rebuilt.exit_code, 1);
  EXPECT_TRUE(is_one_line_error(rebuilt, "seq " + std::to_string(seq)));
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  EXPECT_NE(std::find(names.begin(), names.end(), "jobs.g1"), names.end());
  EXPECT_EQ(std::find(names.begin(), names.end(), "jobs.g2"), names.end());
}

// A store written before floats were printed as Python prints them holds
// 0.2485859740334425 as "0.24858597403344251" in its events (and hashed so)
// and in its rows. It keeps that text: verify and rebuild --check pass on it,
// also after today's writer re-encoded its rows with the shortest text.
TEST(OpsVerifyOldStoreTest, LongerFloatTextsFromBeforeTheFixStillVerify) {
  TempDir dir;
  const std::string store_dir = dir.sub("store");
  const double d = 0.2485859740334425;
  const std::string shortest = "0.2485859740334425", longer = "0.24858597403344251";
  const JobId a = JobId::generate(), b = JobId::generate(), c = JobId::generate();
  auto open_store = [&](ManualClock& clock) { return open_test_store(store_dir, clock); };
  {
    ManualClock clock(kOpsT0);
    auto store = open_store(clock);
    ASSERT_OK(store);
    execute_all(**store, {request(a, CreateJob{"old", {{"ratio", d}}, 60, json::object()}),
                          request(b, CreateJob{"old", {{"ratio", d}}, 60, json::object()}),
                          request(c, CreateJob{"plain", json::object(), 60, json::object()})});
    execute_all(**store, {request(a, StartJob{"w"}), request(b, StartJob{"w"})});
    execute_all(**store, {request(a, Heartbeat{{{"fraction", d}}}),
                          request(b, Heartbeat{{{"fraction", d}}})});
  }
  // What the writer before the fix stored: the longer text in the events
  // (the chain computed over it) and in the rows.
  size_t rewritten = 0;
  with_raw_db(store_dir, [&](rocksdb::DB* db, auto& cfs) {
    auto replace_all = [&](std::string v) {
      for (size_t at = 0; (at = v.find(shortest, at)) != std::string::npos; at += longer.size())
        if (v.compare(at, longer.size(), longer) != 0) v.replace(at, shortest.size(), longer);
      return v;
    };
    std::string prev(kGenesisHash);
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cfs.at(kEventsCf)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string value = it->value().ToString();
      auto view = decode_stored_event(get_u64_be(it->key().ToStringView()), value);
      ASSERT_OK(view);
      const std::string data = replace_all(std::string(view->data));
      if (data != view->data) ++rewritten;
      auto e = view->to_event();
      ASSERT_OK(e);
      e->hash = chain_hash(prev, canonical_event_json(e->seq, e->job_id, e->version, e->type,
                                                      e->at_ms, data));
      prev = e->hash;
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), cfs.at(kEventsCf), it->key(),
                          encode_stored_event(*e, data))
                      .ok());
    }
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), cfs.at(kMetaCf), kMetaHeadHash, hex_to_raw(prev)).ok());
    auto* jobs = cfs.at(StatusProjection::jobs_cf_name(1));
    for (const JobId& id : {a, b}) {
      std::string row;
      ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), jobs, id.bytes(), &row).ok());
      ASSERT_NE(row.find(shortest), std::string::npos);
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), jobs, id.bytes(), replace_all(row)).ok());
    }
  });
  ASSERT_EQ(rewritten, 4u);  // two creates, two heartbeats

  auto verified = run_jobstate({"verify", "--data-dir", store_dir});
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  auto replayed = run_jobstate({"replay", "--data-dir", store_dir});
  EXPECT_NE(replayed.out.find(longer), std::string::npos) << "the stored text is kept";

  // Today's writer re-encodes both rows (params, and b's kept progress) with
  // the shortest text; the events keep theirs.
  {
    ManualClock clock(kOpsT0 + 5'000);
    auto store = open_store(clock);
    ASSERT_OK(store);
    execute_all(**store, {request(a, Heartbeat{nullptr}), request(b, Heartbeat{nullptr})});
  }
  verified = run_jobstate({"verify", "--data-dir", store_dir});
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  auto checked = run_jobstate({"rebuild", "--data-dir", store_dir, "--check"});
  EXPECT_EQ(checked.exit_code, 0) << checked.err;
  replayed = run_jobstate({"replay", "--data-dir", store_dir});
  EXPECT_NE(replayed.out.find(longer), std::string::npos);
}

TEST(OpsVerifyLiveTest, PassesWhileAnotherProcessAppends) {
  TempDir dir;
  LiveWriter writer(dir.sub("store"));
  ASSERT_TRUE(writer.wait_for_seq(40)) << "the live writer did not get going";
  for (int i = 0; i < 2; ++i) {
    const uint64_t before = writer.seq();
    auto r = run_jobstate({"verify", "--data-dir", dir.sub("store")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // Its report names a head at least as new as what was committed before.
    auto at = r.out.find("head seq ");
    ASSERT_NE(at, std::string::npos) << r.out;
    EXPECT_GE(std::stoull(r.out.substr(at + 9)), before);
  }
  EXPECT_TRUE(writer.wait_for_seq(writer.seq() + 8)) << "the writer was blocked";
}

TEST(OpsVerifyBadInputTest, OneLineErrors) {
  TempDir dir;
  std::filesystem::create_directory(dir.sub("empty"));
  for (auto args : {std::vector<std::string>{"--data-dir", dir.sub("missing")},
                    std::vector<std::string>{"--data-dir", dir.sub("empty")},
                    std::vector<std::string>{"--data-dir", dir.sub("empty"), "--extra"},
                    std::vector<std::string>{}}) {
    SCOPED_TRACE(::testing::PrintToString(args));
    args.insert(args.begin(), "verify");
    auto r = run_jobstate(args);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(is_one_line_error(r, ""));
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.sub("empty")));
}

}  // namespace
}  // namespace jobstate::testing
