#include "eventstore/database.h"

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <cstring>
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
// RocksDB's info log (the LOG file), written without RocksDB's file writer.
// That writer, once an append failed (ENOSPC), aborts the process on its
// next append in builds that keep assertions, as Debian's librocksdb7.8 does
// (WritableFileWriter::AssertFalseAndGetStatusForPrevError: "Assertion
// `sync_without_flush_called_' failed"). On a full disk the next line comes
// at once: the SstFileManager's recovery thread logs that it waits for
// space. Here a line that cannot be written is dropped, nothing else. Errors
// also go to the server's log (spdlog), where an operator looks first.
class InfoLog final : public rocksdb::Logger {
 public:
  explicit InfoLog(const std::string& dir) : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {
    const std::string path = dir + "/LOG";
    // One older file is kept, as RocksDB's own logger would roll it.
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && st.st_size > (8 << 20))
      ::rename(path.c_str(), (path + ".old").c_str());
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }
  ~InfoLog() override {
    if (fd_ >= 0) ::close(fd_);
  }
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char text[2048];
    std::vsnprintf(text, sizeof text, format, ap);
    std::string_view line_text(text);
    while (!line_text.empty() && line_text.back() == '\n') line_text.remove_suffix(1);
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL && level != rocksdb::InfoLogLevel::HEADER_LEVEL)
      to_server_log(line_text);
    if (fd_ < 0) return;
    char stamp[32];
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(stamp, sizeof stamp, "%Y/%m/%d-%H:%M:%S ", &tm);
    std::string line = stamp;
    line += line_text;
    line += '\n';
    // Best effort: on a full disk the line is lost, and that is all.
    [[maybe_unused]] auto n = ::write(fd_, line.data(), line.size());
  }

 private:
  // RocksDB repeats some errors while it waits (the SstFileManager: every
  // 5 s until space returns): each place ("[file.cc:line]") at most once a minute.
  void to_server_log(std::string_view text) {
    const std::string where(text.substr(0, text.find(']') + 1));
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mu_);
      auto [it, fresh] = last_logged_.try_emplace(where, now);
      if (!fresh && now - it->second < std::chrono::minutes(1)) return;
      it->second = now;
    }
    spdlog::error("rocksdb: {}", text);
  }

  int fd_ = -1;
  std::mutex mu_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_logged_;
};

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
  // See InfoLog. Read-only and secondary opens keep RocksDB's own (they
  // write no data, and a secondary logs into its own directory).
  if (o.mode == OpenMode::kReadWrite) {
    std::error_code mk;
    fs::create_directories(o.path, mk);
    dbo.info_log = std::make_shared<InfoLog>(o.path);
  }
  dbo.keep_log_file_num = 5;
  // Small column families (meta, deadlines, idempotency) rarely fill a
  // memtable, so without a cap every WAL stays until ~4 GiB of them pile up,
  // and each open (server restart, replay/verify/backup as a secondary)
  // replays them all: 20 s for 1.5 GiB here. Past this size RocksDB flushes
  // the families holding the oldest WAL instead.
  dbo.max_total_wal_size = 256u << 20;
  // Opening replays the WAL into memtables and keeps them there (its WAL
  // files stay until a normal flush) instead of writing them out as new
  // files first: a store whose disk filled up can be opened again, and
  // serve reads, without the room for that flush.
  dbo.avoid_flush_during_recovery = true;
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
  if (o.mode == OpenMode::kReadWrite)
    d->dir_fd_ = ::open(o.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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
  if (dir_fd_ >= 0) ::close(dir_fd_);
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

Result<uint64_t> Database::free_bytes() const {
  // On a descriptor held open: no path lookup per batch (statvfs by path
  // cost 4-10 µs here, fstatvfs 1.5-3.5).
  struct statvfs st {};
  if ((dir_fd_ >= 0 ? ::fstatvfs(dir_fd_, &st) : ::statvfs(path_.c_str(), &st)) != 0)
    return make_error(ErrorCode::kUnavailable,
                      std::string("checking free disk space: ") + std::strerror(errno));
  return uint64_t{st.f_bavail} * uint64_t{st.f_frsize};
}

Status Database::probe_write() {
  if (mode_ != OpenMode::kReadWrite)
    return make_error(ErrorCode::kInvalidRequest, "a read-only store takes no writes");
  // Nothing to do unless RocksDB stopped writes after a failure; Busy while
  // its own recovery (the SstFileManager's, after ENOSPC) runs.
  auto s = db_->Resume();
  if (!s.ok()) return rocksdb_error(s, "resuming writes");
  // The schema version again, unchanged: a real durable write that changes nothing.
  rocksdb::WriteOptions wo;
  wo.sync = true;
  s = db_->Put(wo, cf(kMetaCf), kMetaSchemaVersion, u64_be(kSchemaVersion));
  if (!s.ok()) return rocksdb_error(s, "writing to the store");
  return ok_status();
}

Status Database::catch_up() {
  if (mode_ != OpenMode::kSecondary) return ok_status();
  auto s = db_->TryCatchUpWithPrimary();
  if (!s.ok()) return rocksdb_error(s, "catching up with the primary");
  return ok_status();
}

}  // namespace jobstate
