// open_store: opens a Store (store/store.h) on the backend its location
// names. The one place that knows every backend; everything above it names
// only the interfaces.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "domain/clock.h"
#include "domain/result.h"
#include "store/store.h"
#include "store/webhook_cursors.h"

namespace jobstate {

struct StoreOptions {
  // Where the store lives: a postgresql:// (or postgres://) URI names the
  // postgres backend (pgstore/pg_store.h: several nodes on one database);
  // anything else is a directory holding the embedded RocksDB store (created
  // when missing). Default: ./jobstate-data.
  std::string location = "./jobstate-data";
  // REQUIRED: the clock for event timestamps and deadlines; outlives the store.
  const Clock* clock = nullptr;
  // Called after every durable batch (long-polls, executors). Default: none.
  CommitListener on_commit;
  // Test seam: while it returns true, every batch's durable write fails as a
  // full or broken disk would (its commands get kUnavailable). Default: none.
  std::function<bool()> fail_writes_for_test;
  // RocksDB: the free space kept in reserve on the store's disk; below it
  // writes get kUnavailable before RocksDB sees them (WriterOptions::
  // min_free_bytes; 0: no guard). Default 256 MiB. Not used by postgres.
  uint64_t disk_reserve_bytes = 256u << 20;
};

// kInvalidRequest for a location no backend takes; otherwise the backend's
// own error (a store another process holds, a corrupt store, ...).
Result<std::unique_ptr<Store>> open_store(StoreOptions options);

// True when other processes may serve the store at `location` at the same
// time (a postgres store: any number of nodes); false when one process owns
// it (a RocksDB directory is locked by its opener).
bool store_is_shared(const std::string& location);

// The webhook cursors (store/webhook_cursors.h) that go with the store at
// `location`: a table in a postgres store's database, or files in
// <location>/webhooks next to a RocksDB store (open the store first: it
// creates the directory). kUnavailable when they cannot be reached.
Result<std::unique_ptr<WebhookCursors>> open_webhook_cursors(const std::string& location);

}  // namespace jobstate
