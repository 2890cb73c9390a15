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

}  // namespace jobstate
