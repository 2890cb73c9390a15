// How the offline commands (replay, verify, rebuild, backup) open a data
// directory, parse their arguments and report errors: one line on stderr,
// never a stack trace.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "domain/result.h"
#include "eventstore/database.h"
#include "eventstore/log_reader.h"
#include "store/store.h"

namespace jobstate::app {

enum class OfflineAccess {
  // A consistent read of the store as of open(), whether or not a server has
  // it open: a RocksDB secondary instance with a private directory under the
  // system temp directory ($TMPDIR/jobstate-secondary-*). Never writes to the
  // data directory, never blocks the server. Directories that killed
  // processes left behind are removed by the next open (see
  // offline_store.cpp).
  kFollow,
  // Read-write: takes the LOCK file. Fails with kUnavailable and one line
  // ("... is in use by process N (is a jobstate server running?)") when
  // another process holds it, before touching anything in the directory.
  kExclusive,
};

class OfflineStore {
 public:
  // Checks that `data_dir` is a jobstate store (it exists, is a RocksDB
  // database and has the log's column families) before opening it, so that a
  // wrong path is never turned into a store, then opens it. kFollow also
  // catches up with a live primary once: the view stays fixed after that.
  static Result<std::unique_ptr<OfflineStore>> open(const std::string& data_dir,
                                                    OfflineAccess access);
  ~OfflineStore();  // closes the database, then removes the private secondary directory

  OfflineStore(const OfflineStore&) = delete;
  OfflineStore& operator=(const OfflineStore&) = delete;

  Database& db() { return *db_; }

 private:
  OfflineStore() = default;
  std::string secondary_dir_;
  int owner_fd_ = -1;  // holds the lock that marks secondary_dir_ as in use
  std::unique_ptr<Database> db_;
};

// A postgres store (a postgresql:// URI, as `--store` takes it) opened for
// reading only: no schema is created, nothing is written, and a database
// without a jobstate store is an error.
Result<std::unique_ptr<Store>> open_offline_postgres(const std::string& uri);

// A store to read, named the way the offline commands name one: `--store
// URI` (opened by open_offline_postgres, which refuses anything but a
// postgresql:// URI) when given, else `--data-dir DIR` (an OfflineStore,
// kFollow). Exactly one of directory() and postgres() is set.
class OfflineSource {
 public:
  static Result<std::unique_ptr<OfflineSource>> open(const std::string& data_dir,
                                                     const std::string& store_uri);
  const EventLog& log() const { return pg_ ? pg_->log() : *reader_; }
  OfflineStore* directory() { return dir_.get(); }
  Store* postgres() { return pg_.get(); }

 private:
  std::unique_ptr<OfflineStore> dir_;
  std::unique_ptr<LogReader> reader_;
  std::unique_ptr<Store> pg_;
};

// Prints "jobstate <command>: <message>" on stderr as one line (newlines in
// the message become spaces).
void print_error(std::string_view command, std::string_view message);

// A decimal u64 with nothing else around it ("12"; not "-1", "+1", "1e3", "").
std::optional<uint64_t> parse_u64(std::string_view text);

// Runs a command body, turning any escaping exception into one error line
// and kExitFailure, so that no command ends in std::terminate.
int run_guarded(std::string_view command, const std::function<int()>& body);

// Whether stderr is a terminal (progress lines are only drawn there).
bool stderr_is_terminal();

}  // namespace jobstate::app
