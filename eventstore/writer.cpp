#include "eventstore/writer.h"

#include <future>

#include "eventstore/event_codec.h"
#include "eventstore/hash_chain.h"
#include "eventstore/keys.h"

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

Writer::Writer(Database& db, BatchProjector& projector, const Clock& clock, WriterOptions options)
    : db_(db), projector_(projector), clock_(clock), options_(std::move(options)) {}

Result<std::unique_ptr<Writer>> Writer::start(Database& db, BatchProjector& projector,
                                              const Clock& clock, WriterOptions options) {
  if (db.mode() != OpenMode::kReadWrite)
    return make_error(ErrorCode::kInvalidRequest, "the writer needs a read-write store");
  auto head = LogReader(db).head();
  if (!head) return head.error();
  std::unique_ptr<Writer> w(new Writer(db, projector, clock, std::move(options)));
  w->head_ = *head;
  w->head_seq_ = head->seq;
  w->head_hash_ = head->hash;
  w->server_start_ms_ = clock.now_ms();
  w->thread_ = std::thread([p = w.get()] { p->run(); });
  return w;
}

Writer::~Writer() { stop(); }

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

Result<CommandOutcome> Writer::execute(CommandRequest request) {
  std::promise<Result<CommandOutcome>> promise;
  auto future = promise.get_future();
  submit(std::move(request), [&promise](Result<CommandOutcome> r) { promise.set_value(std::move(r)); });
  return future.get();
}

void Writer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

LogHead Writer::committed_head() const {
  std::lock_guard lock(mu_);
  return head_;
}

size_t Writer::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void Writer::run() {
  std::vector<Pending> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued is done
      size_t n = std::min(queue_.size(), options_.max_batch_commands);
      batch.clear();
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    process(batch);
  }
}

void Writer::process(std::vector<Pending>& batch) {
  rocksdb::WriteBatch wb;
  std::vector<std::optional<Result<CommandOutcome>>> results(batch.size());
  std::unordered_map<JobId, JobState> changed;  // final state of jobs this batch changes
  std::unordered_map<std::string, std::string> new_idempotency;  // key → value
  uint64_t seq = head_seq_;
  std::string hash = head_hash_;
  const TimeMs now = clock_.now_ms();
  auto* events_cf = db_.cf(kEventsCf);
  auto* job_events_cf = db_.cf(kJobEventsCf);
  auto* idem_cf = db_.cf(kIdempotencyCf);

  // The job's state as this batch has left it so far.
  auto current = [&](const JobId& id) -> Result<std::optional<JobState>> {
    if (auto it = changed.find(id); it != changed.end()) return std::optional<JobState>(it->second);
    if (auto it = cache_.find(id); it != cache_.end()) return std::optional<JobState>(it->second);
    return projector_.load(id);
  };

  for (size_t i = 0; i < batch.size(); ++i) {
    auto& req = batch[i].request;
    auto& result = results[i];
    JobId job_id = req.job_id;

    // Idempotency: a known key answers with the job it created.
    if (req.idempotency_key && std::holds_alternative<CreateJob>(req.command)) {
      std::string stored;
      if (auto it = new_idempotency.find(*req.idempotency_key); it != new_idempotency.end()) {
        stored = it->second;
      } else {
        auto s = db_.db()->Get(rocksdb::ReadOptions(), idem_cf, *req.idempotency_key, &stored);
        if (!s.ok() && !s.IsNotFound()) {
          result = rocksdb_error(s, "reading an idempotency key");
          continue;
        }
      }
      if (!stored.empty()) {
        if (stored.size() < 16 || stored.substr(16) != req.request_fingerprint) {
          result = make_error(ErrorCode::kIdempotencyKeyReused,
                              "this Idempotency-Key was used with a different request");
          continue;
        }
        auto state = current(*JobId::from_bytes(stored.substr(0, 16)));
        if (!state || !*state) {
          result = state ? make_error(ErrorCode::kCorruption, "idempotency record names a missing job")
                         : state.error();
          continue;
        }
        result = CommandOutcome{std::move(**state), {}, true};
        continue;
      }
    }

    auto state = current(job_id);
    if (!state) {
      result = state.error();
      continue;
    }
    const JobState* before = *state ? &**state : nullptr;
    DecideContext ctx{now, server_start_ms_, req.expected_version};
    auto decided = decide(before, req.command, ctx);
    if (!decided) {
      result = decided.error();
      continue;
    }

    // Build this command's events completely before touching the batch, so a
    // refusal half-way leaves nothing behind.
    CommandOutcome outcome;
    std::optional<JobState> cur = *state;
    std::vector<std::string> encoded;
    uint64_t s = seq;
    std::string h = hash;
    std::optional<Error> failure;
    for (auto& ne : *decided) {
      Event e;
      e.seq = ++s;
      e.job_id = job_id;
      e.version = cur ? cur->version + 1 : 1;
      e.type = ne.type;
      e.at_ms = now;
      e.data = std::move(ne.data);
      std::string data_text;
      try {
        data_text = canonical_dump(e.data);
      } catch (const nlohmann::json::exception&) {
        failure = make_error(ErrorCode::kInvalidRequest, "strings must be valid UTF-8");
        break;
      }
      h = chain_hash(h, canonical_event_json(e.seq, e.job_id, e.version, e.type, e.at_ms, data_text));
      e.hash = h;
      auto next = apply(cur ? &*cur : nullptr, e);
      if (!next) {
        failure = make_error(ErrorCode::kInternal, "decide/apply disagree: " + next.error().message);
        break;
      }
      encoded.push_back(encode_stored_event(e, data_text));
      cur = std::move(*next);
      outcome.events.push_back(std::move(e));
    }
    if (failure) {
      result = *failure;
      continue;
    }
    if (!cur) {  // create refused above; defensive
      result = make_error(ErrorCode::kInternal, "no state after command");
      continue;
    }
    for (size_t k = 0; k < outcome.events.size(); ++k) {
      const Event& e = outcome.events[k];
      wb.Put(events_cf, u64_be(e.seq), encoded[k]);
      wb.Put(job_events_cf, job_event_key(e.job_id, e.version), u64_be(e.seq));
    }
    if (!outcome.events.empty()) {
      projector_.project(wb, before, *cur);
      if (req.idempotency_key && std::holds_alternative<CreateJob>(req.command)) {
        std::string v = idempotency_value(job_id, req.request_fingerprint);
        wb.Put(idem_cf, *req.idempotency_key, v);
        new_idempotency[*req.idempotency_key] = std::move(v);
      }
      changed[job_id] = *cur;
      seq = s;
      hash = h;
    }
    outcome.job = std::move(*cur);
    result = std::move(outcome);
  }

  if (seq != head_seq_) {
    auto* meta = db_.cf(kMetaCf);
    wb.Put(meta, kMetaHeadSeq, u64_be(seq));
    wb.Put(meta, kMetaHeadHash, hex_to_raw(hash));
    rocksdb::Status ws;
    if (options_.write_for_test) {
      ws = options_.write_for_test(wb);
    } else {
      rocksdb::WriteOptions wo;
      wo.sync = true;
      ws = db_.db()->Write(wo, &wb);
    }
    projector_.batch_finished(ws.ok());
    if (!ws.ok()) {
      // Nothing of this batch is acknowledged; the head stays where it was.
      Error err = rocksdb_error(ws, "writing to the store");
      err.code = ErrorCode::kUnavailable;
      for (auto& r : results)
        if (r && r->ok()) r = err;
      for (size_t i = 0; i < batch.size(); ++i) finish(batch[i].done, std::move(*results[i]));
      return;
    }
    head_seq_ = seq;
    head_hash_ = hash;
    if (cache_.size() + changed.size() > options_.state_cache_entries) cache_.clear();
    for (auto& [id, st] : changed) cache_[id] = st;
    {
      std::lock_guard lock(mu_);
      head_ = LogHead{seq, hash};
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) finish(batch[i].done, std::move(*results[i]));
  if (options_.on_commit && !changed.empty()) {
    CommitInfo info{LogHead{head_seq_, head_hash_}, {}};
    info.changed_jobs.reserve(changed.size());
    for (auto& [id, st] : changed) info.changed_jobs.push_back(std::move(st));
    options_.on_commit(info);
  }
}

}  // namespace jobstate
