// JobStore: the embedded RocksDB backend of Store (store/store.h), opened
// read-write and wired together: the database, the status projection (its
// ReadModel), the writer that appends to both (its JobWriter), and a log
// reader (its EventLog). One process per directory: a second read-write open
// fails on RocksDB's LOCK file. The accessors give the concrete types, for
// tools and tests that need more than the interfaces (rebuild, backup).
#pragma once

#include <memory>
#include <string>

#include "domain/clock.h"
#include "eventstore/database.h"
#include "eventstore/log_reader.h"
#include "eventstore/writer.h"
#include "projections/status_projection.h"
#include "store/store.h"

namespace jobstate {

// The column families of the log, which every store has.
std::vector<std::string> log_column_families();

struct JobStoreOptions {
  std::string data_dir = "./jobstate-data";
  // REQUIRED: the clock for event timestamps and deadlines; outlives the store.
  const Clock* clock = nullptr;
  // The writer's tuning and its commit listener (WriterOptions::on_commit).
  WriterOptions writer;
  bool create_if_missing = true;
};

class JobStore final : public Store {
 public:
  static Result<std::unique_ptr<JobStore>> open(JobStoreOptions options);
  ~JobStore();  // stops the writer (finishing queued commands), then closes

  Database& db() { return *db_; }
  StatusProjection& projection() { return *projection_; }

  // Store
  Writer& writer() override { return *writer_; }
  const LogReader& log() const override { return *log_; }
  const StatusProjection& read_model() const override { return *projection_; }
  const Clock& clock() const override { return *clock_; }
  // One process per directory: it always leads.
  Leadership& leadership() override { return sole_leader_; }
  // RocksDB's sizes, compaction debt and write stalls.
  void collect_metrics(metrics::SampleWriter& out) const override;

 private:
  JobStore() = default;
  const Clock* clock_ = nullptr;
  SoleLeader sole_leader_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<StatusProjection> projection_;
  std::unique_ptr<LogReader> log_;
  std::unique_ptr<Writer> writer_;
};

}  // namespace jobstate
