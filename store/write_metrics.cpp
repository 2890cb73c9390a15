#include "store/write_metrics.h"

#include <array>

#include "metrics/metrics.h"

namespace jobstate::write_metrics {
namespace {

struct Families {
  metrics::Histogram& batch_commands = metrics::process()
      .histogram("jobstate_store_batch_commands",
                 "Commands per durable write batch (one synced write each)",
                 metrics::batch_size_buckets())
      .with({});
  metrics::Histogram& sync_seconds = metrics::process()
      .histogram("jobstate_store_fsync_seconds",
                 "How long each batch's synced write took (RocksDB: the fsync'd write; "
                 "PostgreSQL: the pipeline ending in COMMIT)",
                 metrics::disk_seconds_buckets())
      .with({});
  metrics::Counter& failed = metrics::process()
      .counter("jobstate_store_write_failures_total",
               "Batches the store failed to write (none of their commands was acknowledged)")
      .with({});
  metrics::CounterFamily& events = metrics::process().counter(
      "jobstate_events_appended_total", "Events appended to the log, by type", {"type"});
  // One child per event type, found once: appended() takes no lock.
  std::array<metrics::Counter*, 9> by_type{};

  Families() {
    for (int t = 1; t <= 8; ++t)
      by_type[t] = &events.with({event_type_name(static_cast<EventType>(t))});
  }
};

Families& families() {
  static Families* f = new Families();  // never destroyed: writer threads may outlive statics
  return *f;
}

}  // namespace

void durable_batch(size_t commands, double write_seconds) {
  auto& f = families();
  f.batch_commands.observe(static_cast<double>(commands));
  f.sync_seconds.observe(write_seconds);
}

void appended(EventType type) {
  const auto t = static_cast<size_t>(type);
  if (t >= 1 && t <= 8) families().by_type[t]->inc();
}

void failed_write() { families().failed.inc(); }

void declare() { families(); }

}  // namespace jobstate::write_metrics
