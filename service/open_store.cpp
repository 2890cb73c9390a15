#include "service/open_store.h"

#include "pgstore/pg_store.h"
#include "projections/job_store.h"

namespace jobstate {

Result<std::unique_ptr<Store>> open_store(StoreOptions options) {
  if (options.location.empty())
    return make_error(ErrorCode::kInvalidRequest, "the store location is empty");
  if (is_postgres_uri(options.location)) {
    PgStoreOptions o;
    o.uri = options.location;
    o.clock = options.clock;
    o.on_commit = std::move(options.on_commit);
    o.fail_writes_for_test = std::move(options.fail_writes_for_test);
    return open_pg_store(std::move(o));
  }
  JobStoreOptions o;
  o.data_dir = options.location;
  o.clock = options.clock;
  o.writer.on_commit = std::move(options.on_commit);
  o.writer.fail_write_for_test = std::move(options.fail_writes_for_test);
  auto store = JobStore::open(std::move(o));
  if (!store) return store.error();
  return std::unique_ptr<Store>(std::move(*store));
}

}  // namespace jobstate
