#include "eventstore/database.h"

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>

#include <algorithm>
#include <filesystem>

#include "store/byte_order.h"

namespace jobstate {

namespace {
constexpr uint64_t kSchemaVersion = 1;

rocksdb::CompressionType best_compression() {
  auto supported = rocksdb::GetSupportedCompressions();
  for (auto c : {rocksdb::kLZ4Compression, rocksdb::kSnappyCompression, rocksdb::kZSTD})
    if (std::find(supported.begin(), supported.end(), c) != supported.end()) return c;
  return rocksdb::kNoCompression;
}
}  // namespace

Error rocksdb_error(const rocksdb::Status& s, const std::string& doing) {
  std::string msg = s.ToString();
  ErrorCode code = ErrorCode::kUnavailable;
  if (s.IsCorruption()) code = ErrorCode::kCorruption;
  if (s.IsIOError() && msg.find("lock") != std::string::npos)
    msg = "the data directory is in use by another process (is a jobstate server running?)";
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  return make_error(code, doing + ": " + msg);
}

namespace {
// The writer inserts a batch's keys into the memtables one by one, and a
// skiplist insert searches from the top level each time: with a memtable of
// ~100k row versions that search was a quarter of the writer's CPU. A hint
// (the position of the previous insert with the same key prefix) makes the
// common inserts nearly free: `events` keys only grow (prefix: none, one
// hint), and `job_events` and the status rows (`jobs.g<N>`) are keyed by
// job id, whose next key sits right beside its previous one (prefix: the id).
// A heartbeat moves its job's key in `deadlines.g<N>` (big-endian ms + id)
// from one recent deadline to a newer one: each lands among the keys of its
// own millisecond (prefix: the 8-byte deadline; one hint per millisecond).
// Other families get no hint: their keys land far from the previous insert.
// A hint costs about 250 bytes per distinct prefix in a memtable (mostly in
// its arena, so a memtable of many new jobs fills and flushes a little sooner).
std::shared_ptr<const rocksdb::SliceTransform> insert_hint_prefix(const std::string& name) {
  static const std::shared_ptr<const rocksdb::SliceTransform> none(rocksdb::NewFixedPrefixTransform(0));
  static const std::shared_ptr<const rocksdb::SliceTransform> job_id(rocksdb::NewFixedPrefixTransform(16));
  if (name == kEventsCf) return none;
  static const std::shared_ptr<const rocksdb::SliceTransform> deadline(rocksdb::NewFixedPrefixTransform(8));
  if (name == kJobEventsCf || name.rfind("jobs.g", 0) == 0) return job_id;
  if (name.rfind("deadlines.g", 0) == 0) return deadline;
  return nullptr;
}
}  // namespace

rocksdb::ColumnFamilyOptions Database::column_family_options(size_t block_cache_bytes,
                                                             const std::string& name) {
  rocksdb::ColumnFamilyOptions cf;
  cf.memtable_insert_with_hint_prefix_extractor = insert_hint_prefix(name);
  cf.level_compaction_dynamic_level_bytes = true;
  cf.compression = best_compression();
  rocksdb::BlockBasedTableOptions table;
  static std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(block_cache_bytes);
  table.block_cache = cache;
  table.cache_index_and_filter_blocks = true;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

Result<std::unique_ptr<Database>> Database::open(const DatabaseOptions& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool exists = fs::exists(fs::path(o.path) / "CURRENT", ec);
  if (!exists && (o.mode != OpenMode::kReadWrite || !o.create_if_missing)) {
    if (!fs::exists(o.path, ec))
      return make_error(ErrorCode::kInvalidRequest, "no such directory: " + o.path);
    return make_error(ErrorCode::kInvalidRequest, "not a jobstate store: " + o.path);
  }

  rocksdb::DBOptions dbo;
  dbo.create_if_missing = o.mode == OpenMode::kReadWrite && o.create_if_missing;
  dbo.create_missing_column_families = o.mode == OpenMode::kReadWrite;
  dbo.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  dbo.paranoid_checks = true;
  dbo.max_background_jobs = 2;
  dbo.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  dbo.keep_log_file_num = 5;
  // Small column families (meta, deadlines, idempotency) rarely fill a
  // memtable, so without a cap every WAL stays until ~4 GiB of them pile up,
  // and each open (server restart, replay/verify/backup as a secondary)
  // replays them all: 20 s for 1.5 GiB here. Past this size RocksDB flushes
  // the families holding the oldest WAL instead.
  dbo.max_total_wal_size = 256u << 20;
  if (o.mode == OpenMode::kSecondary) dbo.max_open_files = -1;  // required by secondaries

  std::vector<std::string> names;
  if (exists) {
    auto s = rocksdb::DB::ListColumnFamilies(dbo, o.path, &names);
    if (!s.ok()) return rocksdb_error(s, "listing column families of " + o.path);
  } else {
    names.push_back(rocksdb::kDefaultColumnFamilyName);
  }
  if (o.mode == OpenMode::kReadWrite)
    for (auto& r : o.required_column_families)
      if (std::find(names.begin(), names.end(), r) == names.end()) names.push_back(r);

  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (auto& n : names) descs.emplace_back(n, column_family_options(o.block_cache_bytes, n));
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s;
  switch (o.mode) {
    case OpenMode::kReadWrite:
      s = rocksdb::DB::Open(dbo, o.path, descs, &handles, &raw);
      break;
    case OpenMode::kReadOnly:
      s = rocksdb::DB::OpenForReadOnly(dbo, o.path, descs, &handles, &raw);
      break;
    case OpenMode::kSecondary:
      fs::create_directories(o.secondary_dir, ec);
      s = rocksdb::DB::OpenAsSecondary(dbo, o.path, o.secondary_dir, descs, &handles, &raw);
      break;
  }
  if (!s.ok()) return rocksdb_error(s, "opening " + o.path);

  std::unique_ptr<Database> d(new Database());
  d->db_.reset(raw);
  d->mode_ = o.mode;
  d->path_ = o.path;
  d->block_cache_bytes_ = o.block_cache_bytes;
  for (size_t i = 0; i < names.size(); ++i) d->cfs_[names[i]] = handles[i];

  for (auto& r : o.required_column_families)
    if (!d->cf(r))
      return make_error(ErrorCode::kInvalidRequest,
                        "not a jobstate store (no column family '" + r + "'): " + o.path);

  if (auto* meta = d->cf(kMetaCf)) {
    std::string v;
    auto gs = raw->Get(rocksdb::ReadOptions(), meta, kMetaSchemaVersion, &v);
    if (gs.IsNotFound() && o.mode == OpenMode::kReadWrite) {
      rocksdb::WriteOptions wo;
      wo.sync = true;
      gs = raw->Put(wo, meta, kMetaSchemaVersion, u64_be(kSchemaVersion));
      if (!gs.ok()) return rocksdb_error(gs, "initialising " + o.path);
    } else if (gs.ok()) {
      if (v.size() != 8 || get_u64_be(v) != kSchemaVersion)
        return make_error(ErrorCode::kInvalidRequest,
                          "unsupported store schema version in " + o.path);
    } else if (!gs.IsNotFound()) {
      return rocksdb_error(gs, "reading " + o.path);
    }
  }
  return d;
}

Database::~Database() {
  if (!db_) return;
  for (auto& [name, h] : cfs_) db_->DestroyColumnFamilyHandle(h);
  cfs_.clear();
  db_->Close();
}

rocksdb::ColumnFamilyHandle* Database::cf(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = cfs_.find(name);
  return it == cfs_.end() ? nullptr : it->second;
}

std::vector<std::string> Database::column_family_names() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (auto& [n, h] : cfs_) out.push_back(n);
  return out;
}

Result<rocksdb::ColumnFamilyHandle*> Database::create_column_family(const std::string& name) {
  if (auto* existing = cf(name)) return existing;
  rocksdb::ColumnFamilyHandle* h = nullptr;
  auto s = db_->CreateColumnFamily(column_family_options(block_cache_bytes_, name), name, &h);
  if (!s.ok()) return rocksdb_error(s, "creating column family " + name);
  std::lock_guard lock(mu_);
  cfs_[name] = h;
  return h;
}

Status Database::drop_column_family(const std::string& name) {
  rocksdb::ColumnFamilyHandle* h = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = cfs_.find(name);
    if (it == cfs_.end()) return ok_status();
    h = it->second;
    cfs_.erase(it);
  }
  auto s = db_->DropColumnFamily(h);
  db_->DestroyColumnFamilyHandle(h);
  if (!s.ok()) return rocksdb_error(s, "dropping column family " + name);
  return ok_status();
}

Status Database::catch_up() {
  if (mode_ != OpenMode::kSecondary) return ok_status();
  auto s = db_->TryCatchUpWithPrimary();
  if (!s.ok()) return rocksdb_error(s, "catching up with the primary");
  return ok_status();
}

}  // namespace jobstate
