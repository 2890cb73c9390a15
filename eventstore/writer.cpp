#include "eventstore/writer.h"

#include <pthread.h>
#include <time.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <future>

#include "domain/json_text.h"
#include "eventstore/event_codec.h"
#include "store/decided_command.h"
#include "store/hash_chain.h"
#include "store/write_metrics.h"
#include "store/byte_order.h"

namespace jobstate {

std::string idempotency_value(const JobId& id, std::string_view fingerprint) {
  std::string v(id.bytes());
  v += fingerprint;
  return v;
}

namespace {
// A callback that throws must not take the writer thread (and every later
// write) down with it.
void finish(const CommandCallback& done, Result<CommandOutcome> result) {
  try {
    done(std::move(result));
  } catch (...) {
  }
}
}  // namespace

struct Writer::Batch {
  uint64_t number = 0;
  rocksdb::WriteBatch wb;
  std::vector<Pending> pending;
  std::vector<Result<CommandOutcome>> results;  // one per pending
  // Per pending: its outcome rests on an earlier command of this batch, so a
  // failed write takes its refusal away too.
  std::vector<bool> rests_on_batch;
  std::unordered_map<JobId, StatePtr> changed;  // final state of jobs the batch changes
  std::unordered_map<std::string, std::string> new_idempotency;  // key → value
  bool has_events = false;
  bool durable = false;  // set by the committer
  LogHead head;          // after the batch (when has_events)
};

Writer::Writer(Database& db, BatchProjector& projector, const Clock& clock, WriterOptions options)
    : db_(db), projector_(projector), clock_(clock), options_(std::move(options)) {}

Result<std::unique_ptr<Writer>> Writer::start(Database& db, BatchProjector& projector,
                                              const Clock& clock, WriterOptions options) {
  if (db.mode() != OpenMode::kReadWrite)
    return make_error(ErrorCode::kInvalidRequest, "the writer needs a read-write store");
  auto head = LogReader(db).head();
  if (!head) return head.error();
  options.max_batch_commands = std::max<size_t>(options.max_batch_commands, 1);
  std::unique_ptr<Writer> w(new Writer(db, projector, clock, std::move(options)));
  w->head_ = *head;
  w->head_seq_ = head->seq;
  w->head_hash_ = head->hash;
  w->server_start_ms_ = clock.now_ms();
  w->commit_thread_ = std::thread([p = w.get()] { p->run_committer(); });
  w->thread_ = std::thread([p = w.get()] { p->run_sequencer(); });
  return w;
}

Writer::~Writer() {
  stop();
}

void Writer::submit(CommandRequest request, CommandCallback done) {
  {
    std::unique_lock lock(mu_);
    if (!stopping_ && queue_.size() < options_.max_queued_commands) {
      queue_.push_back(Pending{std::move(request), std::move(done)});
      lock.unlock();
      cv_.notify_one();
      return;
    }
  }
  done(make_error(ErrorCode::kUnavailable, "the store is not taking writes right now"));
}

void Writer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    // The sequencer never started (a failed start): nobody else tells the committer.
    if (!thread_.joinable()) committer_exit_ = true;
  }
  cv_.notify_all();
  commit_cv_.notify_all();
  // From a callback, a listener or the write hook (on a writer thread):
  // joining would wait for this very thread. The writer stops by itself
  // once everything queued is done.
  const auto self = std::this_thread::get_id();
  if (self == thread_.get_id() || self == commit_thread_.get_id()) return;
  if (thread_.joinable()) thread_.join();
  if (commit_thread_.joinable()) commit_thread_.join();
}

LogHead Writer::committed_head() const {
  std::lock_guard lock(mu_);
  return head_;
}

size_t Writer::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size() + open_commands_;
}

size_t Writer::building() const {
  std::lock_guard lock(mu_);
  return open_commands_;
}

std::unique_ptr<Writer::Batch> Writer::new_batch() {
  auto b = std::make_unique<Batch>();
  b->number = next_batch_no_++;
  return b;
}

void Writer::run_sequencer() {
  pthread_setname_np(pthread_self(), "js-sequencer");  // for top -H and perf
  // Commands taken from the queue at a time. After each chunk the open batch
  // is parked, so an idle committer starts writing at once and what arrives
  // meanwhile forms the next batch. With bigger chunks, a burst of requests
  // (the answers of one batch come back together) lands in one batch that
  // the committer waits for and then writes alone, with nothing to overlap:
  // 64 requests in flight then ran one batch of 64 at a time (55k events/s)
  // instead of two alternating batches of 32 (80k). A chunk costs two
  // uncontended lock round trips.
  constexpr size_t kChunk = 1;
  std::unique_ptr<Batch> open;  // held while adding to it; otherwise parked in ready_
  std::vector<Pending> taken;
  for (;;) {
    std::optional<LogHead> failed_at;  // the durable head, when a write failed
    std::unique_ptr<Batch> written;    // committed (or failed): to answer
    {
      std::unique_lock lock(mu_);
      const auto room = [&] {
        return options_.max_batch_commands - (ready_ ? ready_->pending.size() : 0);
      };
      cv_.wait(lock, [&] {
        return commit_failed_ || !written_.empty() || (!queue_.empty() && room() > 0) ||
               (stopping_ && queue_.empty() && !ready_ && !committing_);
      });
      note_taken();
      if (commit_failed_) {
        // The open batch was built on the failed one: it is run again below.
        commit_failed_ = false;
        failed_at = head_;
        if (ready_) open = std::move(ready_);
      } else if (!written_.empty()) {
        written = std::move(written_.front());
        written_.pop_front();
      } else if (!queue_.empty() && room() > 0) {
        if (ready_) open = std::move(ready_);  // not taken yet: it grows
        parked_ = nullptr;
        const size_t n = std::min({queue_.size(), room(), kChunk});
        for (size_t i = 0; i < n; ++i) {
          taken.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        open_commands_ += n;
      } else {
        break;  // stopping, and everything is written and answered
      }
    }
    if (failed_at) {
      restart_from(*failed_at, open);
    } else if (written) {
      answer(*written);
    } else {
      if (!open) open = new_batch();
      for (auto& p : taken) add(*open, std::move(p));
      taken.clear();
    }
    if (open && !open->pending.empty()) {
      // Park it: the committer takes it the moment it is free, without
      // waiting for this thread to wake up and hand it over.
      bool committer_idle;
      {
        std::lock_guard lock(mu_);
        parked_ = open.get();
        ready_ = std::move(open);
        committer_idle = !committing_;
      }
      if (committer_idle) commit_cv_.notify_one();
    }
  }
  {
    std::lock_guard lock(mu_);
    committer_exit_ = true;
  }
  commit_cv_.notify_one();
}

void Writer::note_taken() {
  if (!parked_ || ready_.get() == parked_) return;
  // The committer took the parked batch. Until it is durable, its
  // idempotency records and job states cannot be read from the store. The
  // committer does not touch these members of the batch, and the batch
  // lives until this thread answers it.
  committing_idempotency_ = std::move(parked_->new_idempotency);
  committing_states_.clear();
  for (auto& [id, st] : parked_->changed) committing_states_.push_back(st);
  parked_ = nullptr;
}

std::unique_ptr<Writer::Batch> Writer::take_ready() {
  committing_ = true;
  open_commands_ = 0;
  return std::move(ready_);
}

void Writer::restart_from(const LogHead& durable, std::unique_ptr<Batch>& open) {
  head_seq_ = durable.seq;
  head_hash_ = durable.hash;
  cache_.clear();
  claims_loaded_ = false;
  committing_idempotency_.clear();
  committing_states_.clear();
  parked_ = nullptr;
  if (!open) return;
  projector_.batch_finished(open->number, /*durable=*/false, 0);
  std::vector<Pending> again = std::move(open->pending);
  open = new_batch();
  for (auto& p : again) add(*open, std::move(p));
}

void Writer::run_committer() {
  pthread_setname_np(pthread_self(), "js-committer");
  std::unique_ptr<Batch> b;
  for (;;) {
    if (!b) {
      bool queue_waits;
      {
        std::unique_lock lock(mu_);
        const auto has_work = [&] { return (ready_ && !commit_failed_) || committer_exit_; };
        if (unhealthy_.load()) {
          // Writes fail: look now and then whether they would work again,
          // so /readyz recovers without waiting for a client's write.
          if (!commit_cv_.wait_for(lock, std::chrono::milliseconds(options_.recovery_probe_ms),
                                   has_work)) {
            lock.unlock();
            probe_recovery();
            continue;
          }
        } else {
          commit_cv_.wait(lock, has_work);
        }
        if (!ready_ || commit_failed_) return;
        b = take_ready();
        queue_waits = !queue_.empty();
      }
      if (queue_waits) cv_.notify_all();  // a full batch was parked: the next one can start
    }
    const bool durable = commit(*b);
    {
      std::lock_guard lock(mu_);
      committing_ = false;
      // Nothing built on a failed batch is written: the sequencer runs it again.
      if (!durable) commit_failed_ = true;
      written_.push_back(std::move(b));
      if (!commit_failed_ && ready_) b = take_ready();  // straight on, no hand-over
    }
    cv_.notify_all();
  }
}

bool Writer::commit(Batch& b) {
  if (!b.has_events) {
    projector_.batch_finished(b.number, true, 0);
    b.durable = true;
    return true;
  }
  auto* meta = db_.cf(kMetaCf);
  b.wb.Put(meta, kMetaHeadSeq, u64_be(b.head.seq));
  b.wb.Put(meta, kMetaHeadHash, hex_to_raw(b.head.hash));
  rocksdb::Status ws;
  if (auto room = check_free_space(); !room) {
    // Refused before RocksDB sees it: a write that fails for want of space
    // leaves RocksDB stopped (and, in Debian's 7.8, its files' writers one
    // append away from an assertion), and recovering from that takes a
    // flush of every memtable.
    projector_.batch_finished(b.number, false, b.head.seq);
    for (size_t i = 0; i < b.results.size(); ++i)
      if (b.results[i].ok() || b.rests_on_batch[i]) b.results[i] = room.error();
    return false;
  }
  if (unhealthy_.load()) {
    // A write failed before: RocksDB may have stopped taking writes until
    // it is asked to resume (nothing when it did not stop, or recovers by itself).
    if (auto s = db_.db()->Resume(); !s.ok() && !s.IsBusy())
      spdlog::debug("store: resuming writes: {}", s.ToString());
  }
  const auto write_start = std::chrono::steady_clock::now();
  if (options_.fail_write_for_test && options_.fail_write_for_test()) {
    ws = rocksdb::Status::IOError("injected failure at /secret/disk/path");
  } else if (options_.write_for_test) {
    ws = options_.write_for_test(b.wb);
  } else {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ws = db_.db()->Write(wo, &b.wb);
  }
  projector_.batch_finished(b.number, ws.ok(), b.head.seq);
  if (!ws.ok()) {
    write_metrics::failed_write();
    // Nothing of this batch is acknowledged, and nothing that rests on it.
    Error err = rocksdb_error(ws, "writing to the store");
    err.code = ErrorCode::kUnavailable;
    const bool no_space =
        ws.IsNoSpace() || ws.ToString().find("No space left") != std::string::npos;
    if (!unhealthy_.load()) spdlog::error("store: a write failed: {}", err.message);
    if (no_space)
      set_health(WriteHealth::State::kDiskFull,
                 "the disk holding the store is full (RocksDB could not write); writes "
                 "resume by themselves once space is freed");
    else
      set_health(WriteHealth::State::kWriteFailed,
                 "the store failed a write (I/O error); writes are refused, and retried "
                 "every second until one succeeds");
    for (size_t i = 0; i < b.results.size(); ++i)
      if (b.results[i].ok() || b.rests_on_batch[i]) b.results[i] = err;
    return false;
  }
  b.durable = true;
  write_metrics::durable_batch(
      b.pending.size(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - write_start).count());
  for (const auto& r : b.results)
    if (r.ok())
      for (const Event& e : r->events) write_metrics::appended(e.type);
  if (unhealthy_.load()) set_health(WriteHealth::State::kOk, {});
  std::lock_guard lock(mu_);
  head_ = b.head;
  return true;
}

namespace {
// "1.9 MiB", "180 MiB": rounded down, so that less free never reads as equal.
std::string mib(uint64_t bytes) {
  if (bytes >= (10u << 20)) return std::to_string(bytes >> 20) + " MiB";
  const uint64_t tenths = bytes * 10 >> 20;
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " MiB";
}
}  // namespace

Status Writer::check_free_space() {
  if (options_.min_free_bytes == 0) return ok_status();
  auto free = options_.free_bytes_for_test ? options_.free_bytes_for_test() : db_.free_bytes();
  // statvfs itself failing is no reason to refuse: RocksDB's write will tell.
  if (!free || *free >= options_.min_free_bytes) return ok_status();
  set_health(WriteHealth::State::kDiskFull,
             "the disk holding the store has " + mib(*free) + " free, less than the " +
                 mib(options_.min_free_bytes) +
                 " kept in reserve: writes are refused until space is freed, then "
                 "resume by themselves");
  return make_error(ErrorCode::kUnavailable,
                    "the disk holding the store is full: " + mib(*free) + " free, reserve " +
                        mib(options_.min_free_bytes));
}

void Writer::probe_recovery() {
  if (!check_free_space()) return;
  Status s = ok_status();
  if (options_.fail_write_for_test && options_.fail_write_for_test())
    s = make_error(ErrorCode::kUnavailable, "injected failure");
  else if (!options_.write_for_test)
    s = db_.probe_write();
  if (s) {
    set_health(WriteHealth::State::kOk, {});
    return;
  }
  // Space is back (the guard passed) but RocksDB does not write yet: its own
  // recovery may still be running. The next probe looks again.
  spdlog::debug("store: writes still fail: {}", s.error().message);
}

void Writer::set_health(WriteHealth::State state, std::string reason) {
  std::lock_guard lock(health_mu_);
  if (health_.state != state) {
    if (state == WriteHealth::State::kOk) {
      // Workers' heartbeats were refused too: a deadline that passed meanwhile
      // gets the grace it would get after a restart (effective_deadline_ms).
      server_start_ms_ = clock_.now_ms();
      spdlog::warn("store: writes resumed");
    }
    else
      spdlog::error("store: not taking writes ({}): {}", write_health_name(state), reason);
  }
  health_.state = state;
  health_.reason = std::move(reason);
  unhealthy_.store(state != WriteHealth::State::kOk);
}

WriteHealth Writer::write_health() const {
  std::lock_guard lock(health_mu_);
  return health_;
}

void Writer::answer(Batch& b) {
  for (size_t i = 0; i < b.pending.size(); ++i) finish(b.pending[i].done, std::move(b.results[i]));
  if (options_.on_commit && b.durable && !b.changed.empty()) {
    CommitInfo info{b.head, {}};
    info.changed_jobs.reserve(b.changed.size());
    for (auto& [id, st] : b.changed) info.changed_jobs.push_back(st);
    try {
      options_.on_commit(info);
    } catch (...) {
      // A listener's failure must not stop the writer.
    }
  }
}

int64_t Writer::cpu_time_ns() const {
  int64_t total = 0;
  for (const std::thread* t : {&thread_, &commit_thread_}) {
    if (!t->joinable()) continue;  // stopped: its clock is gone
    clockid_t clock;
    timespec ts{};
    if (pthread_getcpuclockid(const_cast<std::thread*>(t)->native_handle(), &clock) == 0 &&
        clock_gettime(clock, &ts) == 0)
      total += int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  }
  return total;
}

Result<Writer::StatePtr> Writer::current(const JobId& id) {
  if (auto it = cache_.find(id); it != cache_.end()) return it->second;
  // Not in the cache: nothing in flight changed it, so the store is current.
  auto loaded = projector_.load(id);
  if (!loaded) return loaded.error();
  if (!*loaded) return StatePtr();
  auto state = std::make_shared<const JobState>(std::move(**loaded));
  if (cache_.size() < options_.state_cache_entries) cache_[id] = state;
  return state;
}

void Writer::add(Batch& b, Pending p) {
  bool rests_on_batch = false;
  auto result = run_command(b, p.request, rests_on_batch);
  b.pending.push_back(std::move(p));
  b.results.push_back(std::move(result));
  b.rests_on_batch.push_back(rests_on_batch);
}

Result<CommandOutcome> Writer::run_command(Batch& b, const CommandRequest& req,
                                           bool& rests_on_batch) {
  JobId job_id = req.job_id;
  const bool create = std::holds_alternative<CreateJob>(req.command);
  const TimeMs now = clock_.now_ms();

  if (req.claim_types) {
    if (!claims_loaded_) {
      claims_.clear();
      if (auto s = projector_.for_each_queued([&](const JobState& s) { claims_.update(s); }); !s)
        return s.error();
      // The open batch's changes are not in the store yet.
      for (auto& [id, st] : b.changed) claims_.update(*st);
      for (auto& st : committing_states_) claims_.update(*st);
      claims_loaded_ = true;
    }
    auto best = claims_.best(*req.claim_types, now);
    if (!best) {
      CommandOutcome none;
      none.next_claimable_ms = claims_.next_claimable_ms(*req.claim_types, now);
      return none;
    }
    job_id = *best;
  }

  // Idempotency: a known key answers with the job it created.
  if (req.idempotency_key && create) {
    std::string stored;
    if (auto it = b.new_idempotency.find(*req.idempotency_key); it != b.new_idempotency.end()) {
      stored = it->second;
      rests_on_batch = true;
    } else if (auto c = committing_idempotency_.find(*req.idempotency_key);
               c != committing_idempotency_.end()) {
      stored = c->second;
    } else {
      auto s = db_.db()->Get(rocksdb::ReadOptions(), db_.cf(kIdempotencyCf), *req.idempotency_key,
                             &stored);
      if (!s.ok() && !s.IsNotFound()) return rocksdb_error(s, "reading an idempotency key");
    }
    if (!stored.empty()) {
      if (stored.size() < 16 || stored.substr(16) != req.request_fingerprint)
        return make_error(ErrorCode::kIdempotencyKeyReused,
                          "this Idempotency-Key was used with a different request");
      auto state = current(*JobId::from_bytes(stored.substr(0, 16)));
      if (!state) return state.error();
      if (!*state)
        return make_error(ErrorCode::kCorruption, "idempotency record names a missing job");
      return CommandOutcome{std::move(*state), {}, true};
    }
  }

  if (b.changed.count(job_id)) rests_on_batch = true;
  auto state = current(job_id);
  if (!state) return state.error();
  const StatePtr before = std::move(*state);
  const DecideContext ctx = decide_context(req, now, server_start_ms_);
  auto decided =
      decide_command(before.get(), job_id, req.command, ctx, LogHead{head_seq_, head_hash_});
  if (!decided) return decided.error();
  if (decided->events.empty()) return CommandOutcome{before, {}, false};

  auto* events_cf = db_.cf(kEventsCf);
  auto* job_events_cf = db_.cf(kJobEventsCf);
  for (size_t k = 0; k < decided->events.size(); ++k) {
    const Event& e = decided->events[k];
    b.wb.Put(events_cf, u64_be(e.seq), encode_stored_event(e, decided->data_texts[k]));
    b.wb.Put(job_events_cf, job_event_key(e.job_id, e.version), u64_be(e.seq));
  }
  CommandOutcome outcome;
  outcome.events = std::move(decided->events);
  std::shared_ptr<const JobState> after = std::move(decided->after);
  projector_.project(b.wb, b.number, before.get(), *after, decided->progress_text);
  if (req.idempotency_key && create) {
    std::string v = idempotency_value(job_id, req.request_fingerprint);
    b.wb.Put(db_.cf(kIdempotencyCf), *req.idempotency_key, v);
    b.new_idempotency[*req.idempotency_key] = std::move(v);
  }
  head_seq_ = decided->head.seq;
  head_hash_ = decided->head.hash;
  b.has_events = true;
  b.head = std::move(decided->head);
  b.changed[job_id] = after;
  if (claims_loaded_) claims_.update(*after);
  if (cache_.size() >= options_.state_cache_entries) {
    // Jobs changed by batches not yet durable must stay: the store does not have them yet.
    cache_.clear();
    for (auto& [id, st] : b.changed) cache_.emplace(id, st);
    for (auto& st : committing_states_) cache_.emplace(st->id, st);
  }
  cache_[job_id] = after;
  outcome.job = std::move(after);
  return outcome;
}

}  // namespace jobstate
