#include "projections/rebuild.h"

#include <rocksdb/sst_file_writer.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "domain/json_text.h"
#include "store/byte_order.h"
#include "eventstore/log_reader.h"
#include "projections/status_projection.h"

// How the replay is made fast (measured in docs/performance.md, "Rebuild rate"):
// - The calling thread reads the log through one iterator and hands the
//   events, in chunks, to two folder threads; a job's events always go to the
//   same folder, in seq order.
// - A folder runs every event through apply(), so the state machine is
//   checked exactly as the writer checks it. Outside exact mode
//   (parse_every_event) it keeps apply()'s copy of the state small (a job's
//   params and labels are held aside), and parses only the data the final
//   state needs: not the heartbeats a later one replaces, not a succeeded
//   event's result (its canonical text goes into the row as is).
// - A job's entries are encoded as soon as it reaches a terminal state (it
//   never changes again): the encoding overlaps the scan, and only open jobs
//   are kept in memory. Status rows are encoded with the canonical texts of
//   params, labels, progress and result as stored (RowTexts).
// - Entries live in large blocks; each folder sorts its own, and the two
//   sorted runs are merged straight into SST files that are ingested into the
//   fresh column families (no memtable, no WAL), or compared with the stored
//   families in check mode.

namespace jobstate {

namespace {

namespace fs = std::filesystem;

constexpr size_t kFamilies = 3;  // indexed by ProjectionEntry::Family
constexpr size_t kFolders = 2;
constexpr size_t kChunkEvents = 4096;
constexpr size_t kChunksInFlight = 8;  // per folder: bounds how far the scan runs ahead

// A problem found while replaying; the one with the smallest seq is reported.
struct Failure {
  uint64_t seq;
  Error error;
};

void keep_first(std::optional<Failure>& slot, Failure f) {
  if (!slot || f.seq < slot->seq) slot = std::move(f);
}

// An event as the folders need it: the decoded header and where its data is.
struct EventRecord {
  uint64_t seq;
  uint64_t version;
  TimeMs at_ms;
  JobId job_id;
  EventType type;
  uint32_t data_offset;
  uint32_t data_size;
};

struct Chunk {
  std::vector<EventRecord> events;
  std::string data;  // every event's data text, back to back

  void add(const StoredEventView& v) {
    events.push_back(EventRecord{v.seq, v.version, v.at_ms, v.job_id, v.type,
                                 static_cast<uint32_t>(data.size()),
                                 static_cast<uint32_t>(v.data.size())});
    data += v.data;
  }
  std::string_view data_of(const EventRecord& r) const {
    return std::string_view(data).substr(r.data_offset, r.data_size);
  }
  void clear() {
    events.clear();
    data.clear();
  }
};

// Chunks from the scanning thread to one folder, and empty ones back.
class ChunkQueue {
 public:
  // Blocks while kChunksInFlight chunks wait.
  void push(std::unique_ptr<Chunk> c) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return full_.size() < kChunksInFlight; });
    full_.push_back(std::move(c));
    cv_.notify_all();
  }
  // The next chunk; nullptr once close()d and drained.
  std::unique_ptr<Chunk> pop() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !full_.empty(); });
    if (full_.empty()) return nullptr;
    auto c = std::move(full_.front());
    full_.pop_front();
    cv_.notify_all();
    return c;
  }
  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  void recycle(std::unique_ptr<Chunk> c) {
    c->clear();
    std::lock_guard lock(mu_);
    free_.push_back(std::move(c));
  }
  std::unique_ptr<Chunk> fresh() {
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        auto c = std::move(free_.back());
        free_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<Chunk>();
    c->events.reserve(kChunkEvents);
    return c;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Chunk>> full_;
  std::vector<std::unique_ptr<Chunk>> free_;
  bool closed_ = false;
};

// One family's entries. Keys and values are copied into large blocks rather
// than kept as two strings each, so that adding, sorting and freeing a few
// million of them stays cheap.
class FamilyEntries {
 public:
  void add(std::string_view key, std::string_view value) {
    const size_t n = key.size() + value.size();
    if (block_left_ < n) new_block(n);
    char* p = block_pos_;
    std::memcpy(p, key.data(), key.size());
    std::memcpy(p + key.size(), value.data(), value.size());
    block_pos_ += n;
    block_left_ -= n;
    refs_.push_back(Ref{prefix_of(key, 0), prefix_of(key, 8), p, static_cast<uint32_t>(key.size()),
                        static_cast<uint32_t>(value.size())});
  }
  // Byte order, as RocksDB's default comparator.
  void sort() { std::sort(refs_.begin(), refs_.end(), less); }
  size_t size() const { return refs_.size(); }
  std::string_view key(size_t i) const { return refs_[i].key(); }
  std::string_view value(size_t i) const { return refs_[i].value(); }
  // Whether entry i of a sorts before entry j of b.
  static bool key_less(const FamilyEntries& a, size_t i, const FamilyEntries& b, size_t j) {
    return less(a.refs_[i], b.refs_[j]);
  }
  // The first entry whose key is not below `key`. REQUIRES: sorted.
  size_t lower_bound(std::string_view key) const {
    const Ref probe{prefix_of(key, 0), prefix_of(key, 8), key.data(),
                    static_cast<uint32_t>(key.size()), 0};
    return static_cast<size_t>(std::lower_bound(refs_.begin(), refs_.end(), probe, less) -
                               refs_.begin());
  }

 private:
  static constexpr size_t kBlockBytes = 4 << 20;
  struct Ref {
    // The key's first 16 bytes, big-endian, zero-padded: most comparisons
    // end here without touching the key itself.
    uint64_t prefix_hi;
    uint64_t prefix_lo;
    const char* data;
    uint32_t key_size;
    uint32_t value_size;
    std::string_view key() const { return {data, key_size}; }
    std::string_view value() const { return {data + key_size, value_size}; }
  };
  static bool less(const Ref& a, const Ref& b) {
    if (a.prefix_hi != b.prefix_hi) return a.prefix_hi < b.prefix_hi;
    if (a.prefix_lo != b.prefix_lo) return a.prefix_lo < b.prefix_lo;
    return a.key() < b.key();
  }
  static uint64_t prefix_of(std::string_view key, size_t from) {
    uint64_t p = 0;
    for (size_t i = from; i < from + 8; ++i)
      p = p << 8 | (i < key.size() ? static_cast<uint8_t>(key[i]) : 0u);
    return p;
  }
  void new_block(size_t at_least) {
    const size_t size = std::max(kBlockBytes, at_least);
    blocks_.push_back(std::make_unique<char[]>(size));
    block_pos_ = blocks_.back().get();
    block_left_ = size;
  }
  std::vector<std::unique_ptr<char[]>> blocks_;
  char* block_pos_ = nullptr;
  size_t block_left_ = 0;
  std::vector<Ref> refs_;
};

// The first job, and one in kRowCheckEvery, has its row checked against
// encode_status_row_reference: a row encoder that drifted from job_to_json
// stops the rebuild instead of writing different bytes.
constexpr uint64_t kRowCheckEvery = 64;

// Open-addressing map from job id to a slot number: the one lookup every
// event needs, without a node allocation per job.
class JobIndex {
 public:
  static constexpr uint32_t kAbsent = UINT32_MAX;

  // The slot of `id`; when absent, records `new_slot` for it and returns kAbsent.
  uint32_t find_or_add(const JobId& id, uint32_t new_slot) {
    if ((size_ + 1) * 4 > table_.size() * 3) grow();
    uint64_t a, b;
    std::memcpy(&a, id.bytes().data(), 8);
    std::memcpy(&b, id.bytes().data() + 8, 8);
    for (size_t i = hash(a, b) & (table_.size() - 1);; i = (i + 1) & (table_.size() - 1)) {
      Entry& e = table_[i];
      if (e.slot == kAbsent) {
        e = Entry{a, b, new_slot};
        ++size_;
        return kAbsent;
      }
      if (e.a == a && e.b == b) return e.slot;
    }
  }

 private:
  struct Entry {
    uint64_t a = 0, b = 0;
    uint32_t slot = kAbsent;
  };
  static size_t hash(uint64_t a, uint64_t b) {
    uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ULL)) * 0xbf58476d1ce4e5b9ULL;
    return static_cast<size_t>(h ^ (h >> 29));
  }
  void grow() {
    std::vector<Entry> old = std::move(table_);
    table_.assign(old.empty() ? 1024 : old.size() * 2, Entry{});
    for (const Entry& e : old) {
      if (e.slot == kAbsent) continue;
      size_t i = hash(e.a, e.b) & (table_.size() - 1);
      while (table_[i].slot != kAbsent) i = (i + 1) & (table_.size() - 1);
      table_[i] = e;
    }
  }
  std::vector<Entry> table_;
  size_t size_ = 0;
};

// Folds the events of the jobs assigned to it into final states and encodes
// their projection entries.
class JobFolder {
 public:
  JobFolder(bool parse_every_event, DeadlineRule rule) : exact_(parse_every_event), rule_(rule) {}

  // Folds one event. After the first failure the rest is ignored.
  void fold(const EventRecord& r, std::string_view data) {
    if (failure) return;
    event_.seq = r.seq;
    event_.job_id = r.job_id;
    event_.version = r.version;
    event_.type = r.type;
    event_.at_ms = r.at_ms;
    const uint32_t slot = index_.find_or_add(r.job_id, static_cast<uint32_t>(slots_.size()));
    if (slot == JobIndex::kAbsent) {
      slots_.emplace_back();
      fold_first(slots_.back(), r, data);
      return;
    }
    JobSlot& job = slots_[slot];
    if (!job.open) {
      fold_after_terminal(job, r, data);
      return;
    }
    OpenJob& open = *job.open;
    if (!exact_ && r.type == EventType::kHeartbeat && defer_progress(open, r, data)) {
      clear_data();
    } else if (!exact_ && r.type == EventType::kSucceeded && defer_result(open, data)) {
      clear_data();
    } else {
      set_data(data);
      // A heartbeat applied with its data sets progress itself: no older
      // deferred progress may replace it later.
      if (r.type == EventType::kHeartbeat && has_non_null_progress(event_.data))
        open.progress_data.clear();
    }
    auto next = apply(&open.state, event_);
    if (!next) {
      fail(r.job_id, r.seq, next.error());
      return;
    }
    open.state = std::move(*next);
    if (is_terminal(open.state.status)) {
      job.version = open.state.version;
      job.status = open.state.status;
      emit(open);
      job.open.reset();
    }
  }

  // Encodes the jobs still open, sorts the entries and frees the states.
  // Call once, after the last fold().
  void finish() {
    for (auto& job : slots_) {
      if (failure) break;
      if (job.open) emit(*job.open);
    }
    slots_ = std::vector<JobSlot>();
    index_ = JobIndex();
    for (auto& f : out) f.sort();
  }

  std::optional<Failure> failure;
  std::array<FamilyEntries, kFamilies> out;
  uint64_t jobs = 0;

 private:
  // A job that has not reached a terminal state. apply() copies the state for
  // every event but never reads params or labels after `created`, so outside
  // exact mode those are held here instead (only to check the row encoder),
  // and the row takes them from the created event's canonical text.
  struct OpenJob {
    JobState state;
    bool check_row = false;         // compare the row with encode_status_row_reference
    nlohmann::json params, labels;  // only when check_row
    std::string created_data;
    std::string_view params_text, labels_text;  // into created_data; empty: use the JSON
    // The data of the newest heartbeat with a non-null progress object, not
    // parsed (its seq names it if it turns out malformed).
    std::string progress_data;
    uint64_t progress_seq = 0;
    std::string result_data;  // a succeeded event's data, not parsed
  };
  // A job: open, or finished with what apply() needs to refuse later events.
  struct JobSlot {
    std::unique_ptr<OpenJob> open;
    uint64_t version = 0;
    JobStatus status = JobStatus::kQueued;
  };

  static bool has_non_null_progress(const nlohmann::json& data) {
    if (!data.is_object()) return false;
    auto p = data.find("progress");
    return p != data.end() && !p->is_null();
  }

  void set_data(std::string_view data) {
    event_.data = nlohmann::json::parse(data.begin(), data.end(), nullptr,
                                        /*allow_exceptions=*/false);
  }
  void clear_data() {
    if (!event_.data.is_object() || !event_.data.empty()) event_.data = nlohmann::json::object();
  }

  // The writer stores a heartbeat's data as canonical text, either exactly
  // {"progress":null} (progress unchanged) or {"progress":{...}}. Those are
  // applied without parsing; the second is kept as the job's newest progress
  // and checked when the job is emitted. False: parse and apply it as stored.
  bool defer_progress(OpenJob& job, const EventRecord& r, std::string_view data) {
    if (data == R"({"progress":null})") return true;
    auto progress = only_member_text(data, "progress");
    if (!progress || progress->front() != '{') return false;
    job.progress_data.assign(data);
    job.progress_seq = r.seq;
    return true;
  }

  // A succeeded event's data {"result":...}, when valid JSON, goes into the
  // row as text; apply() then needs no data. False: parse it.
  bool defer_result(OpenJob& job, std::string_view data) {
    if (!only_member_text(data, "result") || !nlohmann::json::accept(data)) return false;
    job.result_data.assign(data);
    return true;
  }

  // The job's first event, which must be `created`.
  void fold_first(JobSlot& job, const EventRecord& r, std::string_view data) {
    set_data(data);
    auto created = apply(nullptr, event_);
    if (!created) {
      fail(r.job_id, r.seq, created.error());
      return;
    }
    job.open = std::make_unique<OpenJob>();
    OpenJob& open = *job.open;
    open.state = std::move(*created);
    // Exact mode folds the state exactly as stored, relying on nothing
    // about apply() beyond its contract.
    if (exact_) return;
    open.check_row = created_jobs_++ % kRowCheckEvery == 0;
    open.created_data.assign(data);
    open.params_text = member_text(open.created_data, "params").value_or("");
    open.labels_text = member_text(open.created_data, "labels").value_or("");
    if (open.check_row || open.params_text.empty()) open.params = std::move(open.state.params);
    if (open.check_row || open.labels_text.empty()) open.labels = std::move(open.state.labels);
    open.state.params = nullptr;
    open.state.labels = nullptr;
  }

  // An event of a finished job: apply() names what is wrong with it.
  void fold_after_terminal(const JobSlot& job, const EventRecord& r, std::string_view data) {
    set_data(data);
    JobState finished;
    finished.id = r.job_id;
    finished.version = job.version;
    finished.status = job.status;
    auto next = apply(&finished, event_);
    fail(r.job_id, r.seq,
         next ? make_error(ErrorCode::kCorruption,
                           "seq " + std::to_string(r.seq) + ": event after a terminal event")
              : next.error());
  }

  // Puts the job's final state together and encodes its projection entries.
  void emit(OpenJob& job) {
    JobState& s = job.state;
    try {
      if (exact_) {
        for (auto& e : projection_entries(s, /*with_row=*/true, rule_))
          out[e.family].add(e.key, e.value);
        ++jobs;
        return;
      }
      s.params = std::move(job.params);
      s.labels = std::move(job.labels);
      RowTexts texts{job.params_text, job.labels_text, {}, {}};
      if (!job.progress_data.empty()) {
        if (!nlohmann::json::accept(job.progress_data)) {
          fail(s.id, job.progress_seq,
               make_error(ErrorCode::kCorruption, "seq " + std::to_string(job.progress_seq) +
                                                      " (heartbeat): data is not an object"));
          return;
        }
        texts.progress = *only_member_text(job.progress_data, "progress");
      }
      if (!job.result_data.empty()) texts.result = *only_member_text(job.result_data, "result");
      std::string row = encode_status_row(s, texts);
      if (job.check_row) {
        // The encoder is checked on the parsed values: the texts copied from
        // the log are the log's, and in a store written before floats were
        // printed as Python prints them they may hold a longer float text.
        if (!texts.progress.empty()) s.progress = nlohmann::json::parse(texts.progress);
        if (!texts.result.empty()) s.result = nlohmann::json::parse(texts.result);
        if (encode_status_row(s) != encode_status_row_reference(s)) {
          fail(s.id, s.created_seq,
               make_error(ErrorCode::kInternal,
                          "the rebuilt status row differs from encode_status_row_reference: "
                          "encode_status_row (projections/status_projection.cpp) needs updating"));
          return;
        }
      }
      for (auto& e : projection_entries(s, /*with_row=*/false, rule_))
        out[e.family].add(e.key, e.family == ProjectionEntry::kJobs ? std::string_view(row)
                                                                    : std::string_view(e.value));
      ++jobs;
    } catch (const nlohmann::json::exception& e) {
      // Invalid UTF-8 cannot get past the parser; this is a guard, not a path.
      fail(s.id, s.created_seq,
           make_error(ErrorCode::kCorruption, std::string("cannot encode the job: ") + e.what()));
    }
  }

  // Failures name the job as well as the seq apply() names.
  void fail(const JobId& job, uint64_t seq, Error e) {
    e.message = "job " + job.to_string() + ": " + e.message;
    keep_first(failure, Failure{seq, std::move(e)});
  }

  const bool exact_;  // parse every event; rows by encode_status_row
  const DeadlineRule rule_;
  uint64_t created_jobs_ = 0;
  Event event_;  // reused: its members keep their allocations between events
  JobIndex index_;
  std::vector<JobSlot> slots_;
};

using Folders = std::array<std::unique_ptr<JobFolder>, kFolders>;

// The folders' sorted entries of one family, merged in key order; only
// those from `from_key` (inclusive) to `to_key` (exclusive) when given.
class MergedEntries {
 public:
  MergedEntries(const Folders& folders, size_t family,
                std::optional<std::string_view> from_key = std::nullopt,
                std::optional<std::string_view> to_key = std::nullopt) {
    for (auto& f : folders) {
      const FamilyEntries& e = f->out[family];
      runs_.push_back({&e, from_key ? e.lower_bound(*from_key) : 0,
                       to_key ? e.lower_bound(*to_key) : e.size()});
    }
  }
  // The next entry; false at the end.
  bool next(std::string_view& key, std::string_view& value) {
    Run* best = nullptr;
    for (auto& r : runs_)
      if (r.pos < r.end &&
          (!best || FamilyEntries::key_less(*r.entries, r.pos, *best->entries, best->pos)))
        best = &r;
    if (!best) return false;
    key = best->entries->key(best->pos);
    value = best->entries->value(best->pos);
    ++best->pos;
    return true;
  }

 private:
  struct Run {
    const FamilyEntries* entries;
    size_t pos;
    size_t end;
  };
  std::vector<Run> runs_;
};

std::string describe_key(const std::string& family_name, std::string_view key) {
  std::string d = family_name + " key ";
  if (family_name.rfind("jobs.", 0) == 0) {
    if (auto id = JobId::from_bytes(key)) return d + "of job " + id->to_string();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char c : key) {
    d.push_back(kHex[c >> 4]);
    d.push_back(kHex[c & 0xF]);
  }
  return d;
}

// Whether a stored row and a replayed one say the same (same_status_row):
// only status rows may differ in their bytes.
bool same_row_values(const std::string& family_name, std::string_view stored,
                     std::string_view replayed) {
  if (family_name.rfind("jobs.", 0) != 0) return false;
  auto a = decode_status_row(stored);
  auto b = decode_status_row(replayed);
  return a && b && same_status_row(*a, *b);
}

// First difference between the replayed entries and a stored column family.
Status compare_family(const Database& db, rocksdb::ColumnFamilyHandle* cf, MergedEntries want,
                      const std::string& name) {
  if (!cf) return make_error(ErrorCode::kCorruption, "projection '" + name + "' is missing");
  rocksdb::ReadOptions ro;
  ro.readahead_size = 2 << 20;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db.db()->NewIterator(ro, cf));
  it->SeekToFirst();
  std::string_view k, v;
  while (want.next(k, v)) {
    if (!it->Valid() || it->key().ToStringView() > k) {
      if (!it->status().ok()) break;
      return make_error(ErrorCode::kCorruption,
                        describe_key(name, k) + " is missing from the stored projection");
    }
    if (it->key().ToStringView() < k)
      return make_error(ErrorCode::kCorruption,
                        describe_key(name, it->key().ToStringView()) +
                            " is in the stored projection but not in a replay");
    if (it->value().ToStringView() != v && !same_row_values(name, it->value().ToStringView(), v))
      return make_error(ErrorCode::kCorruption,
                        describe_key(name, k) + " differs from a replay of the log");
    it->Next();
  }
  if (!it->status().ok()) return rocksdb_error(it->status(), "reading " + name);
  if (it->Valid())
    return make_error(ErrorCode::kCorruption,
                      describe_key(name, it->key().ToStringView()) +
                          " is in the stored projection but not in a replay");
  return ok_status();
}

// Writes a family's entries into an SST file at `path`. False (and no file)
// when there are no entries.
Result<bool> write_sst(MergedEntries entries, const std::string& path) {
  std::string_view k, v;
  if (!entries.next(k, v)) return false;
  rocksdb::Options options(rocksdb::DBOptions(),
                           Database::column_family_options(/*block_cache_bytes=*/64u << 20));
  rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), options);
  if (auto s = writer.Open(path); !s.ok()) return rocksdb_error(s, "creating " + path);
  do {
    if (auto s = writer.Put(rocksdb::Slice(k.data(), k.size()), rocksdb::Slice(v.data(), v.size()));
        !s.ok())
      return rocksdb_error(s, "writing " + path);
  } while (entries.next(k, v));
  if (auto s = writer.Finish(); !s.ok()) return rocksdb_error(s, "finishing " + path);
  return true;
}

// Runs fn(family) for every family: the status rows on this thread, the
// smaller indexes on another. Returns the failure of the first family in
// family order.
Status for_each_family(const std::function<Status(size_t)>& fn) {
  std::array<std::optional<Status>, kFamilies> results;
  std::thread other([&] {
    for (size_t f = 1; f < kFamilies; ++f) results[f] = fn(f);
  });
  results[0] = fn(0);
  other.join();
  for (auto& r : results)
    if (!*r) return *r;
  return ok_status();
}

std::array<std::string, kFamilies> family_names(uint64_t generation) {
  return {StatusProjection::jobs_cf_name(generation), StatusProjection::list_cf_name(generation),
          StatusProjection::deadlines_cf_name(generation)};
}

// Reads the log once, on the calling thread, and folds it on kFolders
// threads. Returns the number of events.
Result<uint64_t> replay_log(const Database& db, const RebuildOptions& options, DeadlineRule rule,
                            Folders& folders) {
  std::array<ChunkQueue, kFolders> queues;
  std::vector<std::thread> threads;
  // Lowest seq a folder has failed at: the scan need not go further.
  std::atomic<uint64_t> stop_after_seq{UINT64_MAX};
  for (size_t i = 0; i < kFolders; ++i) {
    folders[i] = std::make_unique<JobFolder>(options.parse_every_event, rule);
    threads.emplace_back([&, i] {
      JobFolder& folder = *folders[i];
      while (auto chunk = queues[i].pop()) {
        for (const auto& r : chunk->events) folder.fold(r, chunk->data_of(r));
        if (folder.failure) {
          uint64_t seen = stop_after_seq.load();
          while (folder.failure->seq < seen &&
                 !stop_after_seq.compare_exchange_weak(seen, folder.failure->seq)) {
          }
        }
        queues[i].recycle(std::move(chunk));
      }
      folder.finish();
    });
  }

  std::array<std::unique_ptr<Chunk>, kFolders> filling;
  for (size_t i = 0; i < kFolders; ++i) filling[i] = queues[i].fresh();
  std::optional<Failure> scan_failure;
  uint64_t events = 0;
  Status scanned = LogReader(db).scan(0, UINT64_MAX, [&](const StoredEventView& v) {
    if (v.seq != events + 1) {
      scan_failure = Failure{
          events + 1, make_error(ErrorCode::kCorruption, "seq " + std::to_string(events + 1) +
                                                             " is missing (next is " +
                                                             std::to_string(v.seq) + ")")};
      return false;
    }
    if (v.seq > stop_after_seq.load(std::memory_order_relaxed)) return false;
    if (v.data.size() > (1u << 30)) {
      scan_failure =
          Failure{v.seq, make_error(ErrorCode::kCorruption,
                                    "event seq " + std::to_string(v.seq) + ": data too large")};
      return false;
    }
    const size_t i = std::hash<JobId>()(v.job_id) % kFolders;
    filling[i]->add(v);
    if (filling[i]->events.size() >= kChunkEvents) {
      queues[i].push(std::move(filling[i]));
      filling[i] = queues[i].fresh();
    }
    ++events;
    if (options.on_progress && events % 100'000 == 0) options.on_progress(events);
    return true;
  });
  for (size_t i = 0; i < kFolders; ++i) {
    if (!filling[i]->events.empty()) queues[i].push(std::move(filling[i]));
    queues[i].close();
  }
  for (auto& t : threads) t.join();

  // A record that does not decode stops the scan right after the last good
  // one, so it sits at events + 1; a folder may have failed before it.
  if (!scanned) keep_first(scan_failure, Failure{events + 1, scanned.error()});
  std::optional<Failure> first = std::move(scan_failure);
  for (auto& f : folders)
    if (f->failure) keep_first(first, *f->failure);
  if (first) return first->error;
  return events;
}

// Writes generation current_gen + 1 from the folders' entries, switches meta
// to it in one synced write, then drops generation current_gen.
Status write_generation(Database& db, uint64_t current_gen, const Folders& folders) {
  const uint64_t next_gen = current_gen + 1;
  const auto fresh = family_names(next_gen);
  const fs::path tmp_dir = fs::path(db.path()) / "rebuild.tmp";
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);  // leftovers of an interrupted rebuild
  fs::create_directories(tmp_dir, ec);
  if (ec)
    return make_error(ErrorCode::kUnavailable,
                      "creating " + tmp_dir.string() + ": " + ec.message());
  struct RemoveTmp {
    fs::path dir;
    ~RemoveTmp() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } remove_tmp{tmp_dir};

  // Table files written by two threads: the status rows (most of the bytes)
  // and the list index (most of the entries) each in two halves, split at
  // the middle key of one folder's entries, then the small deadline index.
  // Each family's files are ingested together.
  struct SstTask {
    size_t family;
    std::optional<std::string> from_key, to_key;
    std::string file;
    bool written = false;
  };
  std::vector<SstTask> first_thread, second_thread;
  for (size_t f : {ProjectionEntry::kJobs, ProjectionEntry::kList}) {
    const FamilyEntries& some = folders[0]->out[f];
    if (some.size() == 0) {
      first_thread.push_back(SstTask{f, std::nullopt, std::nullopt, std::string(), false});
      continue;
    }
    const std::string middle(some.key(some.size() / 2));
    first_thread.push_back(SstTask{f, std::nullopt, middle, std::string(), false});
    second_thread.push_back(SstTask{f, middle, std::nullopt, std::string(), false});
  }
  second_thread.push_back(
      SstTask{ProjectionEntry::kDeadlines, std::nullopt, std::nullopt, std::string(), false});
  auto write_tasks = [&](std::vector<SstTask>& tasks, const std::string& tag) -> Status {
    for (size_t i = 0; i < tasks.size(); ++i) {
      SstTask& t = tasks[i];
      t.file = (tmp_dir / (fresh[t.family] + "." + tag + std::to_string(i) + ".sst")).string();
      auto w = write_sst(MergedEntries(folders, t.family, t.from_key, t.to_key), t.file);
      if (!w) return w.error();
      t.written = *w;
    }
    return ok_status();
  };
  Status second = ok_status();
  std::thread other([&] { second = write_tasks(second_thread, "b"); });
  Status first = write_tasks(first_thread, "a");
  other.join();
  if (!first) return first;
  if (!second) return second;

  for (size_t f = 0; f < kFamilies; ++f) {
    // Leftovers of an interrupted rebuild are dropped, never reused.
    if (auto s = db.drop_column_family(fresh[f]); !s) return s;
    auto h = db.create_column_family(fresh[f]);
    if (!h) return h.error();
    std::vector<std::string> files;
    for (auto* tasks : {&first_thread, &second_thread})
      for (auto& t : *tasks)
        if (t.family == f && t.written) files.push_back(t.file);
    if (files.empty()) continue;
    rocksdb::IngestExternalFileOptions ingest;
    ingest.move_files = true;  // the files are synced and linked in, not copied
    if (auto s = db.db()->IngestExternalFile(*h, files, ingest); !s.ok())
      return rocksdb_error(s, "loading the rebuilt " + fresh[f]);
  }
  rocksdb::WriteOptions synced;
  synced.sync = true;
  rocksdb::WriteBatch switch_batch;
  switch_batch.Put(db.cf(kMetaCf), kMetaProjectionGeneration, u64_be(next_gen));
  put_deadline_rule(switch_batch, db, DeadlineRule::kQuarterTimeout);
  if (auto s = db.db()->Write(synced, &switch_batch); !s.ok())
    return rocksdb_error(s, "switching to the rebuilt projection");
  for (auto& old : family_names(current_gen))
    if (auto s = db.drop_column_family(old); !s) return s;
  return ok_status();
}

}  // namespace

Result<RebuildStats> rebuild_projections(Database& db, const RebuildOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!options.check_only && db.mode() != OpenMode::kReadWrite)
    return make_error(ErrorCode::kInvalidRequest, "rebuild needs the store opened read-write");
  auto gen = read_projection_generation(db);
  if (!gen) return gen.error();

  // A check compares with the index as the store files it; a rebuild writes
  // the current rule (and records it in the same write as the switch).
  auto rule = options.check_only ? read_deadline_rule(db) : DeadlineRule::kQuarterTimeout;
  if (!rule) return rule.error();
  Folders folders;
  auto events = replay_log(db, options, *rule, folders);
  if (!events) return events.error();
  RebuildStats stats;
  stats.events = *events;
  for (auto& f : folders) stats.jobs += f->jobs;

  if (options.check_only) {
    const auto current = family_names(*gen);
    Status same = for_each_family([&](size_t f) {
      return compare_family(db, db.cf(current[f]), MergedEntries(folders, f), current[f]);
    });
    if (!same) return same.error();
    stats.generation = *gen;
  } else {
    if (auto s = write_generation(db, *gen, folders); !s) return s.error();
    stats.generation = *gen + 1;
  }
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

}  // namespace jobstate
