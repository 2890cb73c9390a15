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
};

// kInvalidRequest for a location no backend takes; otherwise the backend's
// own error (a store another process holds, a corrupt store, ...).
Result<std::unique_ptr<Store>> open_store(StoreOptions options);

}  // namespace jobstate
