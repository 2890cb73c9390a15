// The RocksDB backend's LogImport (store/log_import.h): into a directory
// that does not exist yet or is empty. The events go in batches without
// fsync; finish() writes the head with one synced write and then builds the
// projection with rebuild_projections, so the directory is a complete store
// only once finish() returned.
#pragma once

#include <memory>
#include <string>

#include "domain/result.h"
#include "store/log_import.h"

namespace jobstate {

// kInvalidRequest when `dir` exists and is not empty.
Result<std::unique_ptr<LogImport>> open_rocksdb_import(const std::string& dir);

}  // namespace jobstate
