// JobStore: a read-write store wired together — the database, the status
// projection, the writer that appends to both, and a log reader. What the
// server, the embedded runner and the tests open.
#pragma once

#include <memory>
#include <string>

#include "domain/clock.h"
#include "eventstore/database.h"
#include "eventstore/log_reader.h"
#include "eventstore/writer.h"
#include "projections/status_projection.h"

namespace jobstate {

// The column families of the log, which every store has.
std::vector<std::string> log_column_families();

struct JobStoreOptions {
  std::string data_dir = "./jobstate-data";
  // REQUIRED: the clock for event timestamps and deadlines; outlives the store.
  const Clock* clock = nullptr;
  WriterOptions writer;
  bool create_if_missing = true;
};

class JobStore {
 public:
  static Result<std::unique_ptr<JobStore>> open(JobStoreOptions options);
  ~JobStore();  // stops the writer (finishing queued commands), then closes

  Database& db() { return *db_; }
  StatusProjection& projection() { return *projection_; }
  Writer& writer() { return *writer_; }
  const LogReader& log() const { return *log_; }
  const Clock& clock() const { return *clock_; }

 private:
  JobStore() = default;
  const Clock* clock_ = nullptr;
  std::unique_ptr<Database> db_;
  std::unique_ptr<StatusProjection> projection_;
  std::unique_ptr<LogReader> log_;
  std::unique_ptr<Writer> writer_;
};

}  // namespace jobstate
