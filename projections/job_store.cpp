#include "projections/job_store.h"

namespace jobstate {

std::vector<std::string> log_column_families() {
  return {kEventsCf, kJobEventsCf, kMetaCf, kIdempotencyCf};
}

Result<std::unique_ptr<JobStore>> JobStore::open(JobStoreOptions options) {
  if (!options.clock) return make_error(ErrorCode::kInvalidRequest, "JobStore needs a clock");
  std::unique_ptr<JobStore> store(new JobStore());
  store->clock_ = options.clock;
  DatabaseOptions dbo;
  dbo.path = options.data_dir;
  dbo.mode = OpenMode::kReadWrite;
  dbo.create_if_missing = options.create_if_missing;
  dbo.required_column_families = log_column_families();
  auto db = Database::open(dbo);
  if (!db) return db.error();
  store->db_ = std::move(*db);
  auto projection = StatusProjection::open(*store->db_);
  if (!projection) return projection.error();
  store->projection_ = std::move(*projection);
  store->log_ = std::make_unique<LogReader>(*store->db_);
  auto writer = Writer::start(*store->db_, *store->projection_, *options.clock,
                              std::move(options.writer));
  if (!writer) return writer.error();
  store->writer_ = std::move(*writer);
  store->projection_->set_as_of_seq(store->writer_->committed_head().seq);
  return store;
}

JobStore::~JobStore() {
  if (writer_) writer_->stop();
  writer_.reset();
}

void JobStore::collect_metrics(metrics::SampleWriter& out) const {
  // Summed over the column families (events, projection, meta).
  auto sum = [&](const std::string& property) {
    uint64_t total = 0;
    for (const auto& name : db_->column_family_names()) {
      uint64_t v = 0;
      if (auto* cf = db_->cf(name); cf && db_->db()->GetIntProperty(cf, property, &v)) total += v;
    }
    return static_cast<double>(total);
  };
  auto db_wide = [&](const std::string& property) {
    uint64_t v = 0;
    return db_->db()->GetIntProperty(property, &v) ? static_cast<double>(v) : 0.0;
  };
  using P = rocksdb::DB::Properties;
  const struct {
    const char* name;
    const char* help;
    double value;
  } figures[] = {
      {"jobstate_rocksdb_live_data_bytes", "RocksDB's estimate of the live data's size",
       sum(P::kEstimateLiveDataSize)},
      {"jobstate_rocksdb_sst_files_bytes", "Size of every SST file (live and obsolete not yet deleted)",
       sum(P::kTotalSstFilesSize)},
      {"jobstate_rocksdb_memtable_bytes", "Size of RocksDB's memtables", sum(P::kCurSizeAllMemTables)},
      {"jobstate_rocksdb_pending_compaction_bytes",
       "Bytes RocksDB estimates compaction must rewrite to bring every level under its target",
       sum(P::kEstimatePendingCompactionBytes)},
      {"jobstate_rocksdb_running_compactions", "Compactions running now", db_wide(P::kNumRunningCompactions)},
      {"jobstate_rocksdb_write_stopped",
       "1 while RocksDB stops writes (too many memtables or L0 files, or too much compaction debt)",
       db_wide(P::kIsWriteStopped)},
      {"jobstate_rocksdb_delayed_write_rate_bytes",
       "RocksDB's write rate limit while it slows writes down (0: not slowed)",
       db_wide(P::kActualDelayedWriteRate)},
  };
  for (const auto& f : figures) {
    out.declare(f.name, "gauge", f.help);
    out.sample(f.name, {}, f.value);
  }
  if (auto free = db_->free_bytes()) {
    out.declare("jobstate_store_free_bytes", "gauge",
                "Free bytes on the filesystem holding the store (what the disk-full guard checks)");
    out.sample("jobstate_store_free_bytes", {}, static_cast<double>(*free));
  }
}

}  // namespace jobstate
