// Backup: a consistent copy of a store in a new directory. The copy is a
// store of its own: the same column families and records, so the same log
// and audit head, and a server can serve it as is (`jobstate serve
// --data-dir COPY`).
#pragma once

#include <cstdint>
#include <string>

#include "domain/result.h"
#include "eventstore/database.h"
#include "eventstore/log_reader.h"

namespace jobstate {

enum class BackupMethod {
  kCheckpoint,  // RocksDB Checkpoint of a read-write open: a flush, then hard links
  kCopy,        // every record copied out of a secondary's (or read-only) view
};

struct BackupResult {
  BackupMethod method = BackupMethod::kCheckpoint;
  LogHead head;        // the copy's audit head, read back from the copy
  uint64_t bytes = 0;  // size of the copy's files (hard links count in full)
};

// Writes a consistent copy of the store open in `db` to `to_dir`.
//   kReadWrite: a RocksDB Checkpoint (consistent even while a Writer appends;
//     table files are hard-linked when on the same file system).
//   kSecondary / kReadOnly (RocksDB cannot checkpoint those): every column
//     family as of db's current view — a secondary's last catch_up(), a single
//     cut across families — written as table files into a new database. This
//     is how a store held open by a running server is backed up.
// The copy is built under a temporary name beside `to_dir` and renamed into
// place when complete, so `to_dir` either does not exist or holds a whole
// store; it is then opened read-only and its head checked against db's.
// REQUIRES: `to_dir` does not exist and its parent directory does.
// Errors: kInvalidRequest for a bad `to_dir`; kCorruption when the copy's
// head does not match; kUnavailable for I/O failures. Nothing is left at
// `to_dir` on failure.
Result<BackupResult> backup_store(Database& db, const std::string& to_dir);

}  // namespace jobstate
