// The durable log through JobStore: what an append leaves behind, what
// survives a reopen, reading a live store from another handle, and how
// corrupt records are reported (an error naming the seq, never a crash).
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eventstore/event_codec.h"
#include "store/byte_order.h"
#include "projections/job_store.h"
#include "projections/rebuild.h"
#include "store_fixture.h"

namespace jobstate {
namespace {

using nlohmann::json;

constexpr TimeMs kT0 = 1'795'802'400'000;

class LogTest : public testing::StoreTest {
 protected:
  LogTest() : StoreTest(kT0) {}

  Result<CommandOutcome> run(const JobId& id, Command c, std::optional<uint64_t> expected = {}) {
    CommandRequest r;
    r.job_id = id;
    r.command = std::move(c);
    r.expected_version = expected;
    return store_->writer().execute(std::move(r));
  }
  // Runs a command that must succeed; returns its outcome.
  CommandOutcome must(const JobId& id, Command c) {
    auto r = run(id, std::move(c));
    EXPECT_TRUE(r.ok()) << testing::describe_error(r);
    return r.ok() ? std::move(*r) : CommandOutcome{};
  }
  // A job created, started, with one heartbeat, succeeded: seqs 1..4 on a new store.
  JobId write_sample_history() {
    const JobId a = JobId::generate();
    must(a, CreateJob{"thumbnail", {{"src", "/in/ü.png"}}, 30, {{"team", "media"}}});
    clock_.advance_ms(1000);
    must(a, StartJob{"host-1/4242"});
    clock_.advance_ms(1000);
    must(a, Heartbeat{{{"fraction", 0.5}, {"message", "half"}}});
    clock_.advance_ms(1000);
    must(a, SucceedJob{{{"thumb", "/out.png"}}});
    return a;
  }
};

TEST_F(LogTest, AppendAssignsSeqVersionTimeAndChain) {
  open_store();
  const JobId a = JobId::generate();
  auto created = must(a, CreateJob{"thumbnail", json::object(), 30, json::object()});
  ASSERT_EQ(created.events.size(), 1u);
  const Event& e1 = created.events[0];
  EXPECT_EQ(e1.seq, 1u);
  EXPECT_EQ(e1.version, 1u);
  EXPECT_EQ(e1.job_id, a);
  EXPECT_EQ(e1.type, EventType::kCreated);
  EXPECT_EQ(e1.at_ms, kT0);
  EXPECT_EQ(e1.hash, chain_hash(kGenesisHash, canonical_event_json(e1)));
  EXPECT_EQ(created.state().status, JobStatus::kQueued);
  EXPECT_EQ(created.state().created_seq, 1u);
  EXPECT_FALSE(created.idempotent_replay);

  clock_.advance_ms(250);
  auto started = must(a, StartJob{"w"});
  ASSERT_EQ(started.events.size(), 1u);
  const Event& e2 = started.events[0];
  EXPECT_EQ(e2.seq, 2u);
  EXPECT_EQ(e2.version, 2u);
  EXPECT_EQ(e2.at_ms, kT0 + 250);
  EXPECT_EQ(e2.hash, chain_hash(e1.hash, canonical_event_json(e2)));
  EXPECT_EQ(started.state().deadline_ms, kT0 + 250 + 30'000);

  // A no-op (second cancel request) appends nothing and is still a success.
  must(a, RequestCancel{"stop"});
  auto again = must(a, RequestCancel{"stop again"});
  EXPECT_TRUE(again.events.empty());
  EXPECT_EQ(again.state().version, 3u);
  EXPECT_EQ(store_->writer().committed_head().seq, 3u);
}

TEST_F(LogTest, ReadsByGlobalPositionAndByJob) {
  open_store();
  const JobId a = write_sample_history();
  const JobId b = JobId::generate();
  must(b, CreateJob{"other", json::object(), 60, json::object()});
  const LogReader& log = store_->log();

  auto head = log.head();
  ASSERT_OK(head);
  EXPECT_EQ(head->seq, 5u);
  EXPECT_EQ(*head, store_->writer().committed_head());
  EXPECT_TRUE(testing::log_is_intact(store_->db()));

  auto all = log.events_after(0, 100);
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 5u);
  const std::vector<EventType> types = {EventType::kCreated, EventType::kStarted,
                                        EventType::kHeartbeat, EventType::kSucceeded,
                                        EventType::kCreated};
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ((*all)[i].seq, i + 1);
    EXPECT_EQ((*all)[i].type, types[i]);
    EXPECT_EQ((*all)[i].job_id, i < 4 ? a : b);
  }
  EXPECT_EQ((*all)[0].data.at("params").at("src"), "/in/ü.png");
  EXPECT_EQ((*all)[2].data.at("progress").at("fraction"), 0.5);
  EXPECT_EQ((*all)[3].at_ms, kT0 + 3000);

  auto page = log.events_after(2, 2);
  ASSERT_OK(page);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ(page->front().seq, 3u);
  EXPECT_EQ(page->back().seq, 4u);
  auto past_end = log.events_after(5, 10);
  ASSERT_OK(past_end);
  EXPECT_TRUE(past_end->empty());

  auto one = log.event(4);
  ASSERT_OK(one);
  ASSERT_TRUE(one->has_value());
  EXPECT_EQ((*one)->type, EventType::kSucceeded);
  EXPECT_EQ((*one)->hash, (*all)[3].hash);
  auto none = log.event(6);
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());

  auto history = log.job_events(a);
  ASSERT_OK(history);
  ASSERT_EQ(history->size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ((*history)[i].version, i + 1);
  auto tail = log.job_events(a, 2);
  ASSERT_OK(tail);
  ASSERT_EQ(tail->size(), 2u);
  EXPECT_EQ(tail->front().version, 3u);
  auto first_two = log.job_events(a, 0, 2);
  ASSERT_OK(first_two);
  ASSERT_EQ(first_two->size(), 2u);
  EXPECT_EQ(first_two->back().version, 2u);
  auto unknown = log.job_events(JobId::generate());
  ASSERT_OK(unknown);
  EXPECT_TRUE(unknown->empty());

  // scan's bounds: after_seq exclusive, until_seq inclusive.
  std::vector<uint64_t> seqs;
  ASSERT_OK(log.scan(1, 3, [&](const StoredEventView& v) {
    seqs.push_back(v.seq);
    return true;
  }));
  EXPECT_EQ(seqs, (std::vector<uint64_t>{2, 3}));
  // The stored view renders the API's event JSON.
  ASSERT_OK(log.scan(0, 1, [&](const StoredEventView& v) {
    EXPECT_EQ(v.json_text(), event_json_text((*all)[0]));
    return true;
  }));
}

TEST_F(LogTest, EverythingSurvivesReopen) {
  open_store();
  const JobId a = write_sample_history();
  const JobId b = JobId::generate();
  must(b, CreateJob{"other", json::object(), 60, {{"k", "v"}}});
  clock_.advance_ms(10);
  must(b, StartJob{"w2"});
  auto head_before = store_->log().head();
  ASSERT_OK(head_before);
  auto events_before = store_->log().events_after(0, 1000);
  ASSERT_OK(events_before);
  auto row_a = store_->projection().row(a);
  auto row_b = store_->projection().row(b);
  ASSERT_OK(row_a);
  ASSERT_OK(row_b);
  close_store();

  open_store();
  auto head_after = store_->log().head();
  ASSERT_OK(head_after);
  EXPECT_EQ(*head_after, *head_before);
  EXPECT_EQ(store_->writer().committed_head(), *head_before);
  auto events_after = store_->log().events_after(0, 1000);
  ASSERT_OK(events_after);
  ASSERT_EQ(events_after->size(), events_before->size());
  for (size_t i = 0; i < events_before->size(); ++i)
    EXPECT_EQ(event_json_text((*events_after)[i]), event_json_text((*events_before)[i]));
  EXPECT_TRUE(testing::log_is_intact(store_->db()));
  for (auto [id, before] : {std::pair{a, &row_a}, std::pair{b, &row_b}}) {
    auto row = store_->projection().row(id);
    ASSERT_OK(row);
    ASSERT_TRUE(row->has_value());
    EXPECT_EQ((*row)->json_text, (**before)->json_text);
    EXPECT_EQ((*row)->version, (**before)->version);
  }

  // The writer continues the chain where it stopped, with states it reloads
  // from the rows (its in-memory cache died with the old process).
  clock_.advance_ms(10);
  auto hb = must(b, Heartbeat{nullptr});
  ASSERT_EQ(hb.events.size(), 1u);
  EXPECT_EQ(hb.events[0].seq, head_before->seq + 1);
  EXPECT_EQ(hb.events[0].version, 3u);
  EXPECT_EQ(hb.events[0].hash, chain_hash(head_before->hash, canonical_event_json(hb.events[0])));
  EXPECT_ERROR_CODE(run(a, Heartbeat{nullptr}), ErrorCode::kJobTerminal);
  close_store();
  open_store();
  EXPECT_TRUE(testing::log_is_intact(store_->db()));
  EXPECT_EQ(store_->log().head()->seq, head_before->seq + 1);
}

TEST_F(LogTest, LiveStoreReadableReadOnlyAndAsSecondary) {
  open_store();
  write_sample_history();
  const std::string path = store_path();

  DatabaseOptions second_writer;
  second_writer.path = path;
  second_writer.required_column_families = log_column_families();
  EXPECT_ERROR_CODE(Database::open(second_writer), ErrorCode::kUnavailable);

  DatabaseOptions ro;
  ro.path = path;
  ro.mode = OpenMode::kReadOnly;
  ro.required_column_families = log_column_families();
  auto ro_db = Database::open(ro);
  ASSERT_OK(ro_db);
  EXPECT_EQ(LogReader(**ro_db).head()->seq, 4u);
  EXPECT_TRUE(testing::log_is_intact(**ro_db));

  DatabaseOptions sec;
  sec.path = path;
  sec.mode = OpenMode::kSecondary;
  sec.secondary_dir = dir_.sub("secondary");
  sec.required_column_families = log_column_families();
  auto sec_db = Database::open(sec);
  ASSERT_OK(sec_db);
  EXPECT_EQ(LogReader(**sec_db).head()->seq, 4u);
  auto projection = StatusProjection::open(**sec_db);
  ASSERT_OK(projection);

  const JobId b = JobId::generate();
  must(b, CreateJob{"later", json::object(), 60, json::object()});
  ASSERT_OK((*sec_db)->catch_up());
  EXPECT_EQ(LogReader(**sec_db).head()->seq, 5u);
  EXPECT_TRUE(testing::log_is_intact(**sec_db));
  auto row = (*projection)->row(b);
  ASSERT_OK(row);
  EXPECT_TRUE(row->has_value()) << "the secondary sees the row written with the event";
  // The read-only handle is a snapshot of open time.
  EXPECT_EQ(LogReader(**ro_db).head()->seq, 4u);
}

TEST_F(LogTest, OpeningSomethingElseFailsCleanly) {
  DatabaseOptions ro;
  ro.path = dir_.sub("nothing-here");
  ro.mode = OpenMode::kReadOnly;
  EXPECT_ERROR_CODE(Database::open(ro), ErrorCode::kInvalidRequest);
  EXPECT_ERROR_CODE(
      testing::open_test_store(dir_.sub("absent"), clock_, {}, /*create_if_missing=*/false),
      ErrorCode::kInvalidRequest);
  JobStoreOptions no_clock;
  no_clock.data_dir = dir_.sub("x");
  EXPECT_ERROR_CODE(JobStore::open(std::move(no_clock)), ErrorCode::kInvalidRequest);
}

// Corrupt records are reported as kCorruption naming the seq, from every read
// path, and never crash; the rest of the store stays readable.
class CorruptionTest : public LogTest {
 protected:
  void SetUp() override {
    open_store();
    job_ = write_sample_history();
    close_store();
    DatabaseOptions o;
    o.path = store_path();
    o.required_column_families = log_column_families();
    auto db = Database::open(o);
    ASSERT_OK(db);
    db_ = std::move(*db);
    ASSERT_TRUE(
        db_->db()->Get(rocksdb::ReadOptions(), db_->cf(kEventsCf), u64_be(3), &original_).ok());
  }
  void put_event(uint64_t seq, const std::string& value) {
    ASSERT_TRUE(
        db_->db()->Put(rocksdb::WriteOptions(), db_->cf(kEventsCf), u64_be(seq), value).ok());
  }
  static void expect_names_seq3(const Status& s) {
    EXPECT_ERROR_CODE(s, ErrorCode::kCorruption);
    if (!s.ok()) {
      EXPECT_NE(s.error().message.find("seq 3"), std::string::npos) << s.error().message;
    }
  }
  template <typename T>
  static void expect_names_seq3(const Result<T>& r) {
    EXPECT_ERROR_CODE(r, ErrorCode::kCorruption);
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find("seq 3"), std::string::npos) << r.error().message;
    }
  }
  // Every read path that touches seq 3 reports it.
  void expect_reported(bool header_broken) {
    LogReader log(*db_);
    auto scan_all = log.scan(0, UINT64_MAX, [](const StoredEventView&) { return true; });
    if (header_broken) expect_names_seq3(scan_all);
    expect_names_seq3(log.events_after(0, 100));
    expect_names_seq3(log.event(3));
    expect_names_seq3(log.job_events(job_));
    RebuildOptions check;
    check.check_only = true;
    expect_names_seq3(rebuild_projections(*db_, check));
    expect_names_seq3(rebuild_projections(*db_));
    // Around it, the log still reads.
    auto before = log.events_after(0, 2);
    ASSERT_OK(before);
    EXPECT_EQ(before->size(), 2u);
    auto after = log.events_after(3, 10);
    ASSERT_OK(after);
    EXPECT_EQ(after->size(), 1u);
    EXPECT_OK(log.head());
    EXPECT_FALSE(testing::log_is_intact(*db_));
  }

  JobId job_;
  std::unique_ptr<Database> db_;
  std::string original_;
};

TEST_F(CorruptionTest, GarbageBytes) {
  put_event(3, "garbage");
  expect_reported(true);
  put_event(3, "");
  expect_reported(true);
}

TEST_F(CorruptionTest, UnknownEventTypeByte) {
  for (uint8_t type : {uint8_t{0}, uint8_t{9}, uint8_t{0xff}}) {
    std::string v = original_;
    v[41] = static_cast<char>(type);  // format | hash(32) | version(8) | type
    put_event(3, v);
    expect_reported(true);
  }
}

TEST_F(CorruptionTest, UnknownRecordFormat) {
  std::string v = original_;
  v[0] = 2;
  put_event(3, v);
  expect_reported(true);
}

TEST_F(CorruptionTest, TruncatedRecord) {
  put_event(3, original_.substr(0, 60));
  expect_reported(true);
}

TEST_F(CorruptionTest, DataThatIsNotAJsonObject) {
  const size_t header = 1 + 32 + 8 + 1 + 8 + 16;
  for (const char* data : {"{not json", "[1,2]", "\"text\"", "{\"a\":1"}) {
    SCOPED_TRACE(data);
    put_event(3, original_.substr(0, header) + data);
    expect_reported(false);
  }
}

TEST_F(CorruptionTest, EditedEventBreaksTheChain) {
  // Still a well-formed record; only the hash chain notices.
  std::string v = original_;
  const size_t pos = v.find("half");
  ASSERT_NE(pos, std::string::npos);
  v.replace(pos, 4, "HALF");
  put_event(3, v);
  auto intact = testing::log_is_intact(*db_);
  EXPECT_FALSE(intact);
  EXPECT_NE(std::string(intact.message()).find("seq 3"), std::string::npos) << intact.message();
}

TEST_F(CorruptionTest, MissingEvent) {
  ASSERT_TRUE(db_->db()->Delete(rocksdb::WriteOptions(), db_->cf(kEventsCf), u64_be(3)).ok());
  LogReader log(*db_);
  expect_names_seq3(log.job_events(job_));
  RebuildOptions check;
  check.check_only = true;
  expect_names_seq3(rebuild_projections(*db_, check));
  EXPECT_FALSE(testing::log_is_intact(*db_));
}

TEST_F(CorruptionTest, StoreStillOpensAndServesReads) {
  put_event(3, "garbage");
  db_.reset();
  open_store();
  auto row = store_->projection().row(job_);
  ASSERT_OK(row);
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->status, JobStatus::kSucceeded);
  expect_names_seq3(store_->log().events_after(0, 10));
  // Writes go on: the writer needs only the head and the rows.
  const JobId b = JobId::generate();
  auto created = must(b, CreateJob{"t", json::object(), 60, json::object()});
  ASSERT_EQ(created.events.size(), 1u);
  EXPECT_EQ(created.events[0].seq, 5u);
}

TEST(EventCodec, RoundTripAndShortInput) {
  Event e;
  e.seq = 9;
  e.job_id = JobId::generate();
  e.version = 3;
  e.type = EventType::kHeartbeat;
  e.at_ms = -12345;  // before 1970 survives the u64 encoding
  e.data = {{"progress", nullptr}};
  e.hash = std::string(64, 'a');
  const std::string data = canonical_dump(e.data);
  const std::string stored = encode_stored_event(e, data);
  auto v = decode_stored_event(9, stored);
  ASSERT_OK(v);
  EXPECT_EQ(v->seq, 9u);
  EXPECT_EQ(v->job_id, e.job_id);
  EXPECT_EQ(v->version, 3u);
  EXPECT_EQ(v->type, EventType::kHeartbeat);
  EXPECT_EQ(v->at_ms, -12345);
  EXPECT_EQ(v->hash_hex(), e.hash);
  EXPECT_EQ(v->data, data);
  EXPECT_EQ(v->canonical_json(), canonical_event_json(e));
  // Cut inside the header: the record is refused. Cut inside the data: the
  // header decodes, and parsing the data reports the seq.
  const size_t header = stored.size() - data.size();
  for (size_t n = 0; n < stored.size(); ++n) {
    SCOPED_TRACE(n);
    const std::string prefix = stored.substr(0, n);  // the view points into it
    auto cut = decode_stored_event(77, prefix);
    Status parsed = ok_status();
    if (n < header + 2) {
      ASSERT_FALSE(cut.ok());
      parsed = cut.error();
    } else {
      ASSERT_OK(cut);
      auto event = cut->to_event();
      ASSERT_FALSE(event.ok());
      parsed = event.error();
    }
    EXPECT_EQ(parsed.error().code, ErrorCode::kCorruption);
    EXPECT_NE(parsed.error().message.find("seq 77"), std::string::npos) << parsed.error().message;
  }
}

}  // namespace
}  // namespace jobstate
