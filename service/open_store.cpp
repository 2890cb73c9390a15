#include "service/open_store.h"

#include "pgstore/pg_store.h"
#include "pgstore/pg_webhook_cursors.h"
#include "projections/job_store.h"
#include "webhooks/file_cursors.h"

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
  o.writer.min_free_bytes = options.disk_reserve_bytes;
  auto store = JobStore::open(std::move(o));
  if (!store) return store.error();
  return std::unique_ptr<Store>(std::move(*store));
}

bool store_is_shared(const std::string& location) { return is_postgres_uri(location); }

Result<std::unique_ptr<WebhookCursors>> open_webhook_cursors(const std::string& location) {
  if (is_postgres_uri(location)) return open_pg_webhook_cursors(location);
  auto cursors = webhooks::FileWebhookCursors::open(location + "/webhooks");
  if (!cursors) return cursors.error();
  return std::unique_ptr<WebhookCursors>(std::move(*cursors));
}

}  // namespace jobstate
