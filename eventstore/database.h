// Database: the one RocksDB instance behind a store, with its column
// families. Opened read-write by one process (the server, or an offline
// tool), and read-only or as a secondary by any number of others.
//
// Thread safety: all methods are safe to call concurrently, except that
// create_column_family / drop_column_family must not race with users of the
// family being dropped.
#pragma once

#include <rocksdb/db.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "domain/result.h"

namespace jobstate {

enum class OpenMode {
  kReadWrite,  // takes the LOCK file: one such process per directory
  kReadOnly,   // a fixed snapshot of what was durable at open time
  kSecondary,  // follows a live primary via catch_up(); needs secondary_dir
};

struct DatabaseOptions {
  std::string path;
  OpenMode mode = OpenMode::kReadWrite;
  // kReadWrite only: create the directory and an empty store if missing.
  bool create_if_missing = true;
  // kSecondary only: a private directory for the secondary's own info log.
  std::string secondary_dir;
  // Column families that must exist (created in kReadWrite mode when missing).
  std::vector<std::string> required_column_families;
  // Block cache for reads, bytes. Default 64 MiB.
  size_t block_cache_bytes = 64u << 20;
};

// Column families of the log itself (eventstore/). Projections add theirs.
inline constexpr const char* kEventsCf = "events";          // seq → stored event
inline constexpr const char* kJobEventsCf = "job_events";   // job id + version → seq
inline constexpr const char* kMetaCf = "meta";              // head, schema version, ...
inline constexpr const char* kIdempotencyCf = "idempotency";  // key → job id + fingerprint

// Keys in the meta column family.
inline constexpr const char* kMetaHeadSeq = "head_seq";    // u64 BE
inline constexpr const char* kMetaHeadHash = "head_hash";  // 32 raw bytes
inline constexpr const char* kMetaSchemaVersion = "schema_version";

class Database {
 public:
  // Opens the store. On failure returns an Error whose message is one line fit
  // for an operator: kUnavailable when another process holds the lock,
  // kInvalidRequest when the path is not a jobstate store.
  static Result<std::unique_ptr<Database>> open(const DatabaseOptions& options);
  ~Database();

  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  rocksdb::DB* db() const { return db_.get(); }
  OpenMode mode() const { return mode_; }
  const std::string& path() const { return path_; }
  // nullptr when the family does not exist.
  rocksdb::ColumnFamilyHandle* cf(const std::string& name) const;
  std::vector<std::string> column_family_names() const;

  // kReadWrite only.
  Result<rocksdb::ColumnFamilyHandle*> create_column_family(const std::string& name);
  Status drop_column_family(const std::string& name);

  // Bytes an unprivileged writer may still use on the filesystem holding
  // the store (statvfs f_bavail): what the writer's free-space guard checks.
  Result<uint64_t> free_bytes() const;
  // kReadWrite: asks RocksDB to resume after a write failure stopped it
  // (DB::Resume; nothing when it did not stop), then makes one small synced
  // write that changes nothing. ok when the store takes durable writes again.
  Status probe_write();

  // kSecondary: reads what the primary has written since. No-op otherwise.
  Status catch_up();

  // The options column family `name` is opened with (empty name: the
  // options every family shares).
  static rocksdb::ColumnFamilyOptions column_family_options(size_t block_cache_bytes,
                                                           const std::string& name = {});

 private:
  Database() = default;
  std::unique_ptr<rocksdb::DB> db_;
  OpenMode mode_ = OpenMode::kReadWrite;
  std::string path_;
  size_t block_cache_bytes_ = 0;
  int dir_fd_ = -1;  // kReadWrite: the directory, for free_bytes()
  mutable std::mutex mu_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> cfs_;
};

// One-line Error from a RocksDB status, prefixed with what was being done.
Error rocksdb_error(const rocksdb::Status& s, const std::string& doing);

}  // namespace jobstate
