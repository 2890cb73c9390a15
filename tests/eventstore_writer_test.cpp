// The writer under load and under faults: concurrent appenders get gapless
// seqs and contiguous versions; idempotency keys; expected versions; a failed
// write acknowledges nothing, leaves no trace and does not stop the store.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "projections/job_store.h"
#include "projections/rebuild.h"
#include "store_fixture.h"

namespace jobstate {
namespace {

using nlohmann::json;

constexpr TimeMs kT0 = 1'795'802'400'000;

// WriterOptions::write_for_test: lets a test hold the writer inside a write
// (so later commands queue up and share the next batch) and make writes fail.
class GatedWrites {
 public:
  std::function<rocksdb::Status(rocksdb::WriteBatch&)> hook() {
    return [this](rocksdb::WriteBatch& batch) { return write(batch); };
  }
  void attach(rocksdb::DB* db) { db_ = db; }
  void set_fail(bool fail) {
    std::lock_guard lock(mu_);
    fail_ = fail;
  }
  // Only write attempt number `n` (counting from 1 since the store opened) fails.
  void fail_attempt(int n) {
    std::lock_guard lock(mu_);
    fail_attempt_ = n;
  }
  void hold() {
    std::lock_guard lock(mu_);
    held_ = true;
  }
  void release() {
    {
      std::lock_guard lock(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }
  // Waits (at most 10 s) until the writer sits in a held write.
  bool wait_until_blocked() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return blocked_; });
  }
  int attempts() const {
    std::lock_guard lock(mu_);
    return attempts_;
  }

 private:
  rocksdb::Status write(rocksdb::WriteBatch& batch) {
    std::unique_lock lock(mu_);
    ++attempts_;
    blocked_ = held_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !held_; });
    blocked_ = false;
    if (fail_ || attempts_ == fail_attempt_) return rocksdb::Status::IOError("injected write failure");
    lock.unlock();
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return db_->Write(wo, &batch);
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  rocksdb::DB* db_ = nullptr;
  bool fail_ = false;
  int fail_attempt_ = 0;
  bool held_ = false;
  bool blocked_ = false;
  int attempts_ = 0;
};

// Waits (bounded) until the writer has `n` commands queued.
bool wait_for_queued(const Writer& w, size_t n) {
  for (int i = 0; i < 10'000; ++i) {
    if (w.queued() >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// Waits (bounded) until the sequencer has taken `n` commands into the batch
// it is building, so that they share one batch.
bool wait_for_building(const Writer& w, size_t n) {
  for (int i = 0; i < 10'000; ++i) {
    if (w.building() >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

CommandRequest request(const JobId& id, Command c, std::optional<uint64_t> expected = {}) {
  CommandRequest r;
  r.job_id = id;
  r.command = std::move(c);
  r.expected_version = expected;
  return r;
}

CommandRequest create_request(const JobId& id, const std::string& type = "t") {
  return request(id, CreateJob{type, json::object(), 60, json::object()});
}

class WriterTest : public testing::StoreTest {
 protected:
  WriterTest() : StoreTest(kT0) {}
  // The writer goes before gate_, which its writes may be waiting on.
  void TearDown() override { close_store(); }
  // gated: every write of the writer waits on gate_ (WriterOptions::write_for_test).
  void open_store(bool gated = false) {
    WriterOptions writer;
    if (gated) writer.write_for_test = gate_.hook();
    ASSERT_NO_FATAL_FAILURE(StoreTest::open_store(std::move(writer)));
    gate_.attach(store_->db().db());
  }
  Result<CommandOutcome> exec(CommandRequest r) { return store_->writer().execute(std::move(r)); }
  CommandOutcome must(CommandRequest r) {
    auto out = exec(std::move(r));
    EXPECT_TRUE(out.ok()) << testing::describe_error(out);
    return out.ok() ? std::move(*out) : CommandOutcome{};
  }
  uint64_t head_seq() { return store_->log().head()->seq; }

  GatedWrites gate_;
};

// 8 threads each drive their own jobs through a full life; every command goes
// through the one writer. The log must come out gapless with each job's
// versions contiguous, whatever the interleaving and batching.
TEST_F(WriterTest, ConcurrentAppendersGetGaplessSeqsAndContiguousVersions) {
  open_store();
  constexpr int kThreads = 8, kJobsPerThread = 30, kEventsPerJob = 6;
  std::vector<std::vector<std::pair<JobId, std::vector<Event>>>> per_thread(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int j = 0; j < kJobsPerThread; ++j) {
        const JobId id = JobId::generate();
        std::vector<Event> events;
        std::vector<CommandRequest> steps;
        steps.push_back(create_request(id, "type-" + std::to_string(t % 3)));
        steps.push_back(request(id, StartJob{"worker-" + std::to_string(t)}));
        for (int h = 0; h < 3; ++h)
          steps.push_back(request(id, Heartbeat{{{"fraction", h / 3.0}}}));
        steps.push_back(request(id, SucceedJob{{{"thread", t}, {"job", j}}}));
        for (auto& step : steps) {
          // Odd threads use submit() with a callback, even ones execute().
          Result<CommandOutcome> out = make_error(ErrorCode::kInternal, "no answer");
          if (t % 2) {
            std::promise<Result<CommandOutcome>> p;
            auto f = p.get_future();
            store_->writer().submit(std::move(step),
                                    [&p](Result<CommandOutcome> r) { p.set_value(std::move(r)); });
            out = f.get();
          } else {
            out = store_->writer().execute(std::move(step));
          }
          if (!out.ok()) {
            ++failures;
            continue;
          }
          for (auto& e : out->events) events.push_back(std::move(e));
        }
        per_thread[t].emplace_back(id, std::move(events));
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);

  constexpr uint64_t kTotal = uint64_t{kThreads} * kJobsPerThread * kEventsPerJob;
  std::set<uint64_t> acknowledged;
  for (auto& jobs : per_thread) {
    for (auto& [id, events] : jobs) {
      ASSERT_EQ(events.size(), size_t{kEventsPerJob});
      for (size_t v = 0; v < events.size(); ++v) {
        EXPECT_EQ(events[v].version, v + 1);
        EXPECT_EQ(events[v].job_id, id);
        if (v) {
          EXPECT_GT(events[v].seq, events[v - 1].seq);
        }
        EXPECT_TRUE(acknowledged.insert(events[v].seq).second)
            << "seq given twice: " << events[v].seq;
      }
      auto row = store_->projection().row(id);
      ASSERT_OK(row);
      ASSERT_TRUE(row->has_value());
      EXPECT_EQ((*row)->status, JobStatus::kSucceeded);
      EXPECT_EQ((*row)->version, uint64_t{kEventsPerJob});
      // The per-job index names exactly the acknowledged events.
      auto history = store_->log().job_events(id);
      ASSERT_OK(history);
      ASSERT_EQ(history->size(), events.size());
      for (size_t v = 0; v < events.size(); ++v) {
        EXPECT_EQ((*history)[v].seq, events[v].seq);
        EXPECT_EQ((*history)[v].hash, events[v].hash);
      }
    }
  }
  ASSERT_EQ(acknowledged.size(), kTotal);
  EXPECT_EQ(*acknowledged.begin(), 1u);
  EXPECT_EQ(*acknowledged.rbegin(), kTotal);
  uint64_t events = 0;
  EXPECT_TRUE(testing::log_is_intact(store_->db(), &events));
  EXPECT_EQ(events, kTotal);
  EXPECT_EQ(store_->writer().committed_head().seq, kTotal);
  RebuildOptions check;
  check.check_only = true;
  EXPECT_OK(rebuild_projections(store_->db(), check));
}

// Many threads on one job: each heartbeat gets the next version, none lost.
TEST_F(WriterTest, ConcurrentCommandsOnOneJob) {
  open_store();
  const JobId id = JobId::generate();
  must(create_request(id));
  must(request(id, StartJob{"w"}));
  constexpr int kThreads = 8, kBeats = 25;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < kBeats; ++i)
        if (store_->writer().execute(request(id, Heartbeat{nullptr})).ok()) ++ok;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kBeats);
  auto row = store_->projection().row(id);
  ASSERT_OK(row);
  EXPECT_EQ((*row)->version, 2u + kThreads * kBeats);
  EXPECT_TRUE(testing::log_is_intact(store_->db()));
}

// Optimistic concurrency: with If-Match, exactly one of the racing writers
// for a version wins; the others learn the job moved on.
TEST_F(WriterTest, RacingExpectedVersionsLetOneWinPerVersion) {
  open_store();
  const JobId id = JobId::generate();
  must(create_request(id));
  must(request(id, StartJob{"w"}));
  constexpr int kThreads = 8, kAttempts = 20;
  std::atomic<int> wins{0}, mismatches{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < kAttempts; ++i) {
        auto row = store_->projection().row(id);
        if (!row.ok() || !row->has_value()) {
          ++other;
          continue;
        }
        auto r = store_->writer().execute(request(id, Heartbeat{nullptr}, (*row)->version));
        if (r.ok())
          ++wins;
        else if (r.error().code == ErrorCode::kVersionMismatch)
          ++mismatches;
        else
          ++other;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(wins + mismatches, kThreads * kAttempts);
  EXPECT_GE(wins.load(), kAttempts) << "at least the fastest thread always wins";
  auto row = store_->projection().row(id);
  ASSERT_OK(row);
  EXPECT_EQ((*row)->version, 2u + wins.load());
  EXPECT_TRUE(testing::log_is_intact(store_->db()));
}

TEST_F(WriterTest, ExpectedVersion) {
  open_store();
  const JobId id = JobId::generate();
  must(create_request(id));
  must(request(id, StartJob{"w"}, 1));
  const uint64_t head = head_seq();
  EXPECT_ERROR_CODE(exec(request(id, Heartbeat{nullptr}, 1)), ErrorCode::kVersionMismatch);
  EXPECT_ERROR_CODE(exec(request(id, Heartbeat{nullptr}, 3)), ErrorCode::kVersionMismatch);
  EXPECT_EQ(head_seq(), head) << "a refused command appends nothing";
  auto hb = must(request(id, Heartbeat{nullptr}, 2));
  EXPECT_EQ(hb.state().version, 3u);
  must(request(id, SucceedJob{nullptr}, 3));
  // Terminal beats a stale If-Match; an unknown job is not found.
  EXPECT_ERROR_CODE(exec(request(id, Heartbeat{nullptr}, 1)), ErrorCode::kJobTerminal);
  EXPECT_ERROR_CODE(exec(request(JobId::generate(), Heartbeat{nullptr}, 1)),
                    ErrorCode::kJobNotFound);
  // Creating an id that exists is refused, not a second history.
  EXPECT_ERROR_CODE(exec(create_request(id)), ErrorCode::kInvalidTransition);
  EXPECT_TRUE(testing::log_is_intact(store_->db()));
}

CommandRequest keyed_create(const JobId& id, const std::string& key, const std::string& fingerprint,
                            const std::string& type = "t") {
  CommandRequest r = create_request(id, type);
  r.idempotency_key = key;
  r.request_fingerprint = fingerprint;
  return r;
}

TEST_F(WriterTest, IdempotencyKeys) {
  open_store();
  const JobId first = JobId::generate();
  auto created = must(keyed_create(first, "key-1", "fp-A"));
  EXPECT_FALSE(created.idempotent_replay);
  const uint64_t head = head_seq();

  // Same key, same request: the same job, nothing appended (the request's
  // own fresh id is ignored).
  auto replay = must(keyed_create(JobId::generate(), "key-1", "fp-A"));
  EXPECT_TRUE(replay.idempotent_replay);
  EXPECT_EQ(replay.state().id, first);
  EXPECT_TRUE(replay.events.empty());
  EXPECT_EQ(head_seq(), head);

  // Same key, different request.
  EXPECT_ERROR_CODE(exec(keyed_create(JobId::generate(), "key-1", "fp-B")),
                    ErrorCode::kIdempotencyKeyReused);
  EXPECT_EQ(head_seq(), head);

  // A replay answers with the job as it is now.
  must(request(first, StartJob{"w"}));
  auto later = must(keyed_create(JobId::generate(), "key-1", "fp-A"));
  EXPECT_EQ(later.state().status, JobStatus::kRunning);
  EXPECT_EQ(later.state().version, 2u);

  // Another key is another job.
  auto other = must(keyed_create(JobId::generate(), "key-2", "fp-A"));
  EXPECT_NE(other.state().id, first);
  EXPECT_FALSE(other.idempotent_replay);

  // A create refused by validation records nothing under its key.
  EXPECT_ERROR_CODE(exec(keyed_create(JobId::generate(), "key-3", "fp-bad", "bad type!")),
                    ErrorCode::kInvalidRequest);
  auto fixed = must(keyed_create(JobId::generate(), "key-3", "fp-good"));
  EXPECT_FALSE(fixed.idempotent_replay);

  // The records are durable: a reopened store (no in-memory state) agrees.
  close_store();
  open_store();
  auto after_reopen = must(keyed_create(JobId::generate(), "key-1", "fp-A"));
  EXPECT_TRUE(after_reopen.idempotent_replay);
  EXPECT_EQ(after_reopen.state().id, first);
  EXPECT_EQ(after_reopen.state().status, JobStatus::kRunning);
  EXPECT_ERROR_CODE(exec(keyed_create(JobId::generate(), "key-1", "fp-B")),
                    ErrorCode::kIdempotencyKeyReused);
  EXPECT_TRUE(testing::log_is_intact(store_->db()));
}

// Two creates with one key in the same batch: one job, one created event.
TEST_F(WriterTest, IdempotencyKeyTwiceInOneBatch) {
  open_store(/*gated=*/true);
  gate_.hold();
  std::promise<Result<CommandOutcome>> filler, a, b, c;
  auto fill = filler.get_future();
  store_->writer().submit(create_request(JobId::generate()),
                          [&](Result<CommandOutcome> r) { filler.set_value(std::move(r)); });
  ASSERT_TRUE(gate_.wait_until_blocked());
  store_->writer().submit(keyed_create(JobId::generate(), "same", "fp"),
                          [&](Result<CommandOutcome> r) { a.set_value(std::move(r)); });
  store_->writer().submit(keyed_create(JobId::generate(), "same", "fp"),
                          [&](Result<CommandOutcome> r) { b.set_value(std::move(r)); });
  store_->writer().submit(keyed_create(JobId::generate(), "same", "other-fp"),
                          [&](Result<CommandOutcome> r) { c.set_value(std::move(r)); });
  ASSERT_TRUE(wait_for_building(store_->writer(), 3));
  gate_.release();
  ASSERT_OK(fill.get());
  auto ra = a.get_future().get();
  auto rb = b.get_future().get();
  auto rc = c.get_future().get();
  ASSERT_OK(ra);
  ASSERT_OK(rb);
  EXPECT_EQ(ra->state().id, rb->state().id);
  EXPECT_FALSE(ra->idempotent_replay);
  EXPECT_TRUE(rb->idempotent_replay);
  EXPECT_TRUE(rb->events.empty());
  EXPECT_ERROR_CODE(rc, ErrorCode::kIdempotencyKeyReused);
  EXPECT_EQ(head_seq(), 2u);
  EXPECT_EQ(gate_.attempts(), 2) << "the three keyed creates shared one batch";
}

// A write that fails: every command that would have appended gets
// kUnavailable; nothing becomes visible; the head stays; reads go on; the
// writer's memory forgets the batch; later writes succeed without a gap.
TEST_F(WriterTest, FailedWriteAcknowledgesNothingAndTheStoreRecovers) {
  open_store(/*gated=*/true);
  const JobId a = JobId::generate();
  must(create_request(a));
  must(request(a, StartJob{"w"}));
  const LogHead head = store_->writer().committed_head();
  auto row_before = store_->projection().row(a);
  ASSERT_OK(row_before);

  // Hold the writer in a failing write, queue a second batch behind it that
  // creates a job and starts it, then let both fail.
  gate_.set_fail(true);
  gate_.hold();
  const JobId b = JobId::generate();
  std::promise<Result<CommandOutcome>> p1, p2, p3, p4;
  store_->writer().submit(request(a, Heartbeat{{{"fraction", 0.9}}}),
                          [&](Result<CommandOutcome> r) { p1.set_value(std::move(r)); });
  ASSERT_TRUE(gate_.wait_until_blocked());
  store_->writer().submit(create_request(b),
                          [&](Result<CommandOutcome> r) { p2.set_value(std::move(r)); });
  store_->writer().submit(request(b, StartJob{"w2"}),
                          [&](Result<CommandOutcome> r) { p3.set_value(std::move(r)); });
  // Refused on its own merits: keeps its own error.
  store_->writer().submit(request(JobId::generate(), Heartbeat{nullptr}),
                          [&](Result<CommandOutcome> r) { p4.set_value(std::move(r)); });
  ASSERT_TRUE(wait_for_building(store_->writer(), 3));

  // Reads work while the writer is stuck.
  EXPECT_EQ(store_->log().head()->seq, head.seq);
  EXPECT_OK(store_->projection().row(a));

  gate_.release();
  EXPECT_ERROR_CODE(p1.get_future().get(), ErrorCode::kUnavailable);
  EXPECT_ERROR_CODE(p2.get_future().get(), ErrorCode::kUnavailable);
  EXPECT_ERROR_CODE(p3.get_future().get(), ErrorCode::kUnavailable);
  EXPECT_ERROR_CODE(p4.get_future().get(), ErrorCode::kJobNotFound);

  // Nothing is visible, the head did not move, reads still answer.
  EXPECT_EQ(store_->writer().committed_head(), head);
  auto log_head = store_->log().head();
  ASSERT_OK(log_head);
  EXPECT_EQ(*log_head, head);
  auto none = store_->log().events_after(head.seq, 100);
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  auto row_b = store_->projection().row(b);
  ASSERT_OK(row_b);
  EXPECT_FALSE(row_b->has_value());
  auto row_a = store_->projection().row(a);
  ASSERT_OK(row_a);
  EXPECT_EQ((*row_a)->json_text, (*row_before)->json_text);

  // Still failing: a plain execute fails too and changes nothing.
  EXPECT_ERROR_CODE(exec(request(a, SucceedJob{nullptr})), ErrorCode::kUnavailable);
  EXPECT_EQ(store_->log().head()->seq, head.seq);

  // The disk recovers. The writer must not remember the failed batches: b
  // does not exist, a is still running at version 2.
  gate_.set_fail(false);
  EXPECT_ERROR_CODE(exec(request(b, StartJob{"w2"})), ErrorCode::kJobNotFound);
  auto hb = must(request(a, Heartbeat{nullptr}, 2));
  ASSERT_EQ(hb.events.size(), 1u);
  EXPECT_EQ(hb.events[0].seq, head.seq + 1) << "no gap where the failed batches were";
  EXPECT_EQ(hb.events[0].version, 3u);
  EXPECT_EQ(hb.events[0].hash, chain_hash(head.hash, canonical_event_json(hb.events[0])));
  auto created_b = must(create_request(b));
  EXPECT_EQ(created_b.events.at(0).version, 1u);
  must(request(b, StartJob{"w2"}));

  close_store();
  open_store();
  EXPECT_TRUE(testing::log_is_intact(store_->db()));
  EXPECT_EQ(store_->log().head()->seq, head.seq + 3);
  RebuildOptions check;
  check.check_only = true;
  EXPECT_OK(rebuild_projections(store_->db(), check));
}

// The sequencer builds the next batch while the committer writes the one
// before. When that write fails, the next batch must not rest on it: its
// commands run again from the durable state.
TEST_F(WriterTest, ABatchBuiltOnAFailedWriteRunsAgainFromTheDurableState) {
  open_store(/*gated=*/true);
  const LogHead head = store_->writer().committed_head();
  const JobId x = JobId::generate();
  const JobId y = JobId::generate();
  gate_.fail_attempt(gate_.attempts() + 1);
  gate_.hold();
  std::promise<Result<CommandOutcome>> p1, p2, p3;
  store_->writer().submit(create_request(x),
                          [&](Result<CommandOutcome> r) { p1.set_value(std::move(r)); });
  ASSERT_TRUE(gate_.wait_until_blocked());
  // Built on x's creation, which is about to fail.
  store_->writer().submit(request(x, StartJob{"w"}),
                          [&](Result<CommandOutcome> r) { p2.set_value(std::move(r)); });
  store_->writer().submit(create_request(y),
                          [&](Result<CommandOutcome> r) { p3.set_value(std::move(r)); });
  ASSERT_TRUE(wait_for_queued(store_->writer(), 2));
  gate_.release();

  EXPECT_ERROR_CODE(p1.get_future().get(), ErrorCode::kUnavailable);
  // x was never written.
  EXPECT_ERROR_CODE(p2.get_future().get(), ErrorCode::kJobNotFound);
  auto created_y = p3.get_future().get();
  ASSERT_OK(created_y);
  ASSERT_EQ(created_y->events.size(), 1u);
  EXPECT_EQ(created_y->events[0].seq, head.seq + 1) << "no gap where the failed batch was";
  EXPECT_EQ(created_y->events[0].hash,
            chain_hash(head.hash, canonical_event_json(created_y->events[0])));

  auto row_x = store_->projection().row(x);
  ASSERT_OK(row_x);
  EXPECT_FALSE(row_x->has_value());
  auto row_y = store_->projection().row(y);
  ASSERT_OK(row_y);
  ASSERT_TRUE(row_y->has_value());
  EXPECT_EQ((*row_y)->status, JobStatus::kQueued);
  EXPECT_EQ(store_->log().head()->seq, head.seq + 1);
  EXPECT_TRUE(testing::log_is_intact(store_->db()));
}

// A refusal decided on top of a command whose write then fails would be a
// lie ("job is terminal" while it still runs): it fails with kUnavailable
// too. A refusal that owes nothing to the batch keeps its own error.
TEST_F(WriterTest, RefusalsThatRestOnAFailedWriteAreNotReported) {
  open_store(/*gated=*/true);
  const JobId a = JobId::generate();
  must(create_request(a));
  must(request(a, StartJob{"w"}));
  // Hold one successful write so the next three commands share one batch,
  // and make that batch's write fail.
  gate_.fail_attempt(gate_.attempts() + 2);
  gate_.hold();
  std::promise<Result<CommandOutcome>> p0, p1, p2, p3;
  store_->writer().submit(request(a, Heartbeat{nullptr}),
                          [&](Result<CommandOutcome> r) { p0.set_value(std::move(r)); });
  ASSERT_TRUE(gate_.wait_until_blocked());
  store_->writer().submit(request(a, SucceedJob{json{{"ok", true}}}),
                          [&](Result<CommandOutcome> r) { p1.set_value(std::move(r)); });
  store_->writer().submit(request(a, Heartbeat{nullptr}),
                          [&](Result<CommandOutcome> r) { p2.set_value(std::move(r)); });
  store_->writer().submit(request(JobId::generate(), Heartbeat{nullptr}),
                          [&](Result<CommandOutcome> r) { p3.set_value(std::move(r)); });
  ASSERT_TRUE(wait_for_building(store_->writer(), 3));
  gate_.release();

  EXPECT_OK(p0.get_future().get());
  EXPECT_ERROR_CODE(p1.get_future().get(), ErrorCode::kUnavailable);
  // Refused only because of the success that was never written.
  EXPECT_ERROR_CODE(p2.get_future().get(), ErrorCode::kUnavailable);
  EXPECT_ERROR_CODE(p3.get_future().get(), ErrorCode::kJobNotFound);

  // a is still running: the heartbeat the failed batch refused goes through now.
  auto hb = must(request(a, Heartbeat{nullptr}));
  EXPECT_EQ(hb.state().status, JobStatus::kRunning);
  EXPECT_EQ(hb.state().version, 4u);
}

TEST_F(WriterTest, StoppedWriterRefusesWithUnavailable) {
  open_store();
  const JobId a = JobId::generate();
  must(create_request(a));
  store_->writer().stop();
  std::optional<Result<CommandOutcome>> answer;
  store_->writer().submit(request(a, StartJob{"w"}),
                          [&](Result<CommandOutcome> r) { answer = std::move(r); });
  ASSERT_TRUE(answer.has_value()) << "a stopped writer answers at once, on the caller's thread";
  EXPECT_ERROR_CODE(*answer, ErrorCode::kUnavailable);
  EXPECT_ERROR_CODE(exec(request(a, StartJob{"w"})), ErrorCode::kUnavailable);
}

// A callback that stops the writer (say, a shutdown triggered by an answer)
// must not wait for its own thread: it asks, and the writer finishes what is
// queued and stops.
TEST_F(WriterTest, StopFromACallbackAsksWithoutWaiting) {
  open_store();
  const JobId a = JobId::generate();
  must(create_request(a));
  std::promise<void> stopped;
  std::promise<Result<CommandOutcome>> queued_behind;
  store_->writer().submit(request(a, StartJob{"w"}), [&](Result<CommandOutcome> r) {
    EXPECT_OK(r);
    store_->writer().stop();
    stopped.set_value();
  });
  ASSERT_EQ(stopped.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready)
      << "stop() from a callback hung";
  store_->writer().submit(request(a, Heartbeat{nullptr}), [&](Result<CommandOutcome> r) {
    queued_behind.set_value(std::move(r));
  });
  auto late = queued_behind.get_future();
  ASSERT_EQ(late.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_ERROR_CODE(late.get(), ErrorCode::kUnavailable);
  close_store();  // joins both threads
}

// The commit listener sees each durable batch with the head after it.
TEST_F(WriterTest, CommitListenerSeesDurableBatches) {
  std::mutex mu;
  std::vector<CommitInfo> commits;
  WriterOptions writer;
  writer.on_commit = [&](const CommitInfo& info) {
    std::lock_guard lock(mu);
    commits.push_back(info);
  };
  StoreTest::open_store(std::move(writer));
  ASSERT_TRUE(store_);
  const JobId a = JobId::generate();
  must(create_request(a));
  must(request(a, StartJob{"w"}));
  EXPECT_ERROR_CODE(exec(request(a, StartJob{"w"})), ErrorCode::kInvalidTransition);
  std::lock_guard lock(mu);
  ASSERT_EQ(commits.size(), 2u) << "a refused command commits nothing";
  EXPECT_EQ(commits[1].head, store_->log().head().value());
  ASSERT_EQ(commits[1].changed_jobs.size(), 1u);
  EXPECT_EQ(commits[1].changed_jobs[0]->status, JobStatus::kRunning);
}

// Waits (bounded: 10 s) until the writer's health is `state`.
bool wait_for_health(const Writer& w, WriteHealth::State state) {
  for (int i = 0; i < 1000; ++i) {
    if (w.write_health().state == state) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// The free-space guard: below the reserve a batch is refused before RocksDB
// sees it (kUnavailable, nothing written), the writer says disk-full and
// why, and once space returns it is ready again by itself (its probe) and
// takes writes, with no gap in the log. Three rounds.
TEST_F(WriterTest, TheFreeSpaceGuardRefusesBelowTheReserveAndRecoversByItself) {
  std::atomic<uint64_t> free_bytes{1ull << 30};
  WriterOptions writer;
  writer.min_free_bytes = 64u << 20;
  writer.recovery_probe_ms = 10;
  writer.free_bytes_for_test = [&]() -> Result<uint64_t> { return free_bytes.load(); };
  StoreTest::open_store(std::move(writer));
  ASSERT_TRUE(store_);
  Writer& w = store_->writer();
  const JobId a = JobId::generate();
  must(create_request(a));
  must(request(a, StartJob{"w"}));
  EXPECT_TRUE(w.write_health().ok());
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const LogHead head = w.committed_head();
    free_bytes = 10u << 20;
    const JobId b = JobId::generate();
    EXPECT_ERROR_CODE(exec(create_request(b)), ErrorCode::kUnavailable);
    EXPECT_ERROR_CODE(exec(request(a, Heartbeat{nullptr})), ErrorCode::kUnavailable);
    // A refusal on its own merits still says so.
    EXPECT_ERROR_CODE(exec(request(JobId::generate(), Heartbeat{nullptr})),
                      ErrorCode::kJobNotFound);
    const WriteHealth full = w.write_health();
    EXPECT_EQ(full.state, WriteHealth::State::kDiskFull);
    EXPECT_STREQ(write_health_name(full.state), "disk-full");
    EXPECT_NE(full.reason.find("10 MiB free"), std::string::npos) << full.reason;
    EXPECT_NE(full.reason.find("64 MiB"), std::string::npos) << full.reason;
    // Nothing written; reads answer.
    EXPECT_EQ(w.committed_head(), head);
    EXPECT_EQ(head_seq(), head.seq);
    auto row_b = store_->projection().row(b);
    ASSERT_OK(row_b);
    EXPECT_FALSE(row_b->has_value());
    // Still full after a while: still not ok (the probe looks, and refuses).
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(w.write_health().state, WriteHealth::State::kDiskFull);

    // Space returns a minute later: ready again without a write, then
    // writes are taken. Heartbeats were refused meanwhile: deadlines get the
    // grace of a restart from now (server_start_ms).
    clock_.advance_ms(60'000);
    free_bytes = 1ull << 30;
    EXPECT_TRUE(wait_for_health(w, WriteHealth::State::kOk)) << w.write_health().reason;
    EXPECT_TRUE(w.write_health().reason.empty());
    EXPECT_EQ(w.server_start_ms(), clock_.now_ms());
    auto created = must(create_request(b));
    ASSERT_EQ(created.events.size(), 1u);
    EXPECT_EQ(created.events[0].seq, head.seq + 1) << "no gap where the refused writes were";
    must(request(a, Heartbeat{nullptr}));
  }
  close_store();
  open_store();
  EXPECT_TRUE(testing::log_is_intact(store_->db()));
}

// A write RocksDB fails (here: the test seam) marks the writer write-failed
// until one succeeds again; the probe finds out without a client's write.
TEST_F(WriterTest, AFailedWriteMarksTheStoreNotWritableUntilWritesWorkAgain) {
  std::atomic<bool> fail{false};
  WriterOptions writer;
  writer.recovery_probe_ms = 10;
  writer.fail_write_for_test = [&] { return fail.load(); };
  StoreTest::open_store(std::move(writer));
  ASSERT_TRUE(store_);
  Writer& w = store_->writer();
  const JobId a = JobId::generate();
  must(create_request(a));
  fail = true;
  EXPECT_ERROR_CODE(exec(request(a, StartJob{"w"})), ErrorCode::kUnavailable);
  EXPECT_EQ(w.write_health().state, WriteHealth::State::kWriteFailed);
  EXPECT_FALSE(w.write_health().reason.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(w.write_health().state, WriteHealth::State::kWriteFailed) << "the probe fails too";
  fail = false;
  EXPECT_TRUE(wait_for_health(w, WriteHealth::State::kOk));
  must(request(a, StartJob{"w"}));
}

// 0: no guard, whatever the free space says.
TEST_F(WriterTest, AReserveOfZeroTurnsTheGuardOff) {
  WriterOptions writer;
  writer.min_free_bytes = 0;
  writer.free_bytes_for_test = []() -> Result<uint64_t> { return uint64_t{0}; };
  StoreTest::open_store(std::move(writer));
  ASSERT_TRUE(store_);
  must(create_request(JobId::generate()));
  EXPECT_TRUE(store_->writer().write_health().ok());
}

}  // namespace
}  // namespace jobstate
