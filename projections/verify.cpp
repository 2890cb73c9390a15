#include "projections/verify.h"

#include <chrono>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "store/hash_chain.h"
#include "store/byte_order.h"
#include "projections/rebuild.h"

namespace jobstate {

namespace {

Error corrupt(std::string message) {
  return make_error(ErrorCode::kCorruption, std::move(message));
}

std::string short_hash(std::string_view hex) {
  return std::string(hex.substr(0, 12)) + "…";
}

// The job_events index is checked without holding it in memory: the events
// and the index entries each add up to an order-independent digest of their
// (job id, version, seq) triples, and the two must agree. Only when they do
// not is the index walked entry by entry to name the first wrong one.
struct IndexDigest {
  uint64_t sum = 0;
  uint64_t count = 0;

  static uint64_t mix(uint64_t x) {  // splitmix64's finaliser
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }
  void add(std::string_view job_id_bytes, uint64_t version, uint64_t seq) {
    uint64_t h = mix(get_u64_be(job_id_bytes));
    h = mix(h ^ get_u64_be(job_id_bytes.substr(8)));
    h = mix(h ^ version);
    h = mix(h ^ seq);
    sum += h;
    ++count;
  }
  bool operator==(const IndexDigest&) const = default;
};

struct LogPass {
  uint64_t last_seq = 0;
  std::string last_hash = std::string(kGenesisHash);
  IndexDigest digest;
};

// Pass 1: decode, gapless seq, hash chain; digests the (job, version, seq) triples.
Result<LogPass> check_chain(const Database& db, const VerifyOptions& options) {
  LogPass pass;
  std::optional<Error> failure;
  Status scanned = LogReader(db).scan(0, UINT64_MAX, [&](const StoredEventView& v) {
    if (v.seq != pass.last_seq + 1) {
      failure = corrupt("seq " + std::to_string(pass.last_seq + 1) +
                        " is missing (the next event is seq " + std::to_string(v.seq) +
                        "): events were removed");
      return false;
    }
    std::string hash = chain_hash(pass.last_hash, v.canonical_json());
    const std::string stored = v.hash_hex();
    if (hash != stored) {
      failure = corrupt("seq " + std::to_string(v.seq) + " (job " + v.job_id.to_string() +
                        "): the hash chain breaks here: this event or its stored hash was "
                        "changed, or the previous event's hash was (recomputed " +
                        short_hash(hash) + ", stored " + short_hash(stored) + ")");
      return false;
    }
    pass.last_seq = v.seq;
    pass.last_hash = std::move(hash);
    pass.digest.add(v.job_id.bytes(), v.version, v.seq);
    if (options.on_progress && v.seq % 100'000 == 0) options.on_progress(v.seq);
    return true;
  });
  if (failure) return *failure;
  if (!scanned) return scanned.error();
  return pass;
}

Status check_head(const Database& db, const LogPass& pass) {
  auto head = LogReader(db).head();
  if (!head) return head.error();
  if (head->seq > pass.last_seq)
    return corrupt("the meta head names seq " + std::to_string(head->seq) +
                   " but the log ends at seq " + std::to_string(pass.last_seq) +
                   ": events after seq " + std::to_string(pass.last_seq) + " were removed");
  if (head->seq < pass.last_seq)
    return corrupt("seq " + std::to_string(head->seq + 1) + " is past the meta head (seq " +
                   std::to_string(head->seq) + "): events were added behind the writer's back");
  if (head->hash != pass.last_hash)
    return corrupt("seq " + std::to_string(head->seq) + ": the meta head hash " +
                   short_hash(head->hash) + " is not the chain's " + short_hash(pass.last_hash));
  return ok_status();
}

std::string describe_index_key(std::string_view key) {
  if (key.size() != 24) return "a malformed job_events key";
  return "the job_events entry for job " + JobId::from_bytes(key.substr(0, 16))->to_string() +
         " version " + std::to_string(get_u64_be(key.substr(16)));
}

// Names the first index entry that points nowhere or at the wrong event, then
// the first event without its entry. Only run when the digests disagree.
Status find_index_problem(const Database& db) {
  std::unique_ptr<rocksdb::Iterator> it(
      db.db()->NewIterator(rocksdb::ReadOptions(), db.cf(kJobEventsCf)));
  auto check_batch = [&](std::vector<std::pair<std::string, std::string>>& batch) -> Status {
    std::vector<rocksdb::Slice> keys;
    for (auto& [k, seq_key] : batch) keys.emplace_back(seq_key);
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    db.db()->MultiGet(rocksdb::ReadOptions(), db.cf(kEventsCf), keys.size(), keys.data(),
                      values.data(), statuses.data());
    for (size_t i = 0; i < batch.size(); ++i) {
      const auto& [key, seq_key] = batch[i];
      const uint64_t seq = get_u64_be(seq_key);
      if (statuses[i].IsNotFound())
        return corrupt(describe_index_key(key) + " points at seq " + std::to_string(seq) +
                       ", which is not in the log");
      if (!statuses[i].ok())
        return rocksdb_error(statuses[i], "reading event " + std::to_string(seq));
      auto v = decode_stored_event(seq, values[i].ToStringView());
      if (!v) return v.error();
      if (v->job_id.bytes() != std::string_view(key).substr(0, 16) ||
          v->version != get_u64_be(std::string_view(key).substr(16)))
        return corrupt(describe_index_key(key) + " points at seq " + std::to_string(seq) +
                       ", which is job " + v->job_id.to_string() + " version " +
                       std::to_string(v->version));
    }
    batch.clear();
    return ok_status();
  };
  std::vector<std::pair<std::string, std::string>> batch;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 24 || it->value().size() != 8)
      return corrupt("job_events holds a malformed entry");
    batch.emplace_back(it->key().ToString(), it->value().ToString());
    if (batch.size() == 1024)
      if (auto s = check_batch(batch); !s) return s;
  }
  if (!it->status().ok()) return rocksdb_error(it->status(), "reading job_events");
  if (auto s = check_batch(batch); !s) return s;

  std::optional<Error> failure;
  Status scanned = LogReader(db).scan(0, UINT64_MAX, [&](const StoredEventView& v) {
    std::string seq_key;
    auto s = db.db()->Get(rocksdb::ReadOptions(), db.cf(kJobEventsCf),
                          job_event_key(v.job_id, v.version), &seq_key);
    if (s.IsNotFound()) {
      failure = corrupt("seq " + std::to_string(v.seq) + " (job " + v.job_id.to_string() +
                        " version " + std::to_string(v.version) + ") has no job_events entry");
      return false;
    }
    if (!s.ok()) {
      failure = rocksdb_error(s, "reading job_events");
      return false;
    }
    if (seq_key.size() != 8 || get_u64_be(seq_key) != v.seq) {
      failure =
          corrupt("seq " + std::to_string(v.seq) + " (job " + v.job_id.to_string() + " version " +
                  std::to_string(v.version) + "): its job_events entry points elsewhere");
      return false;
    }
    return true;
  });
  if (failure) return *failure;
  if (!scanned) return scanned.error();
  // Digests differ but every entry matches an event and vice versa: an entry
  // appears twice under different keys, which the checks above would name.
  return corrupt("the job_events index does not match the log");
}

Status check_index(const Database& db, const LogPass& pass) {
  IndexDigest index;
  rocksdb::ReadOptions ro;
  ro.readahead_size = 2 << 20;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db.db()->NewIterator(ro, db.cf(kJobEventsCf)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto k = it->key().ToStringView();
    auto v = it->value().ToStringView();
    if (k.size() != 24 || v.size() != 8) return find_index_problem(db);
    index.add(k.substr(0, 16), get_u64_be(k.substr(16)), get_u64_be(v));
  }
  if (!it->status().ok()) return rocksdb_error(it->status(), "reading job_events");
  if (index == pass.digest) return ok_status();
  return find_index_problem(db);
}

}  // namespace

Result<VerifyReport> verify_store(Database& db, const VerifyOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  // Checks 4 and 5 (a replay through apply() compared with the stored
  // projection) only read, like checks 1 to 3: they run at the same time,
  // and their result counts only once 1 to 3 have passed.
  std::optional<Result<RebuildStats>> replayed;
  std::thread replay_thread([&] {
    RebuildOptions replay;
    replay.check_only = true;
    replay.parse_every_event = true;
    replayed = rebuild_projections(db, replay);
  });
  struct Join {
    std::thread& t;
    ~Join() {
      if (t.joinable()) t.join();
    }
  } join{replay_thread};

  auto pass = check_chain(db, options);
  if (!pass) return pass.error();
  if (auto s = check_head(db, *pass); !s) return s.error();
  if (auto s = check_index(db, *pass); !s) return s.error();
  replay_thread.join();
  const Result<RebuildStats>& stats = *replayed;
  if (!stats) return stats.error();

  VerifyReport report;
  report.events = pass->last_seq;
  report.jobs = stats->jobs;
  report.head = LogHead{pass->last_seq, pass->last_hash};
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace jobstate
