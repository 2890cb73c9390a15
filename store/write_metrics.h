// What every backend's writer reports to GET /metrics, in one place so the
// two backends cannot name or measure it differently.
#pragma once

#include <cstddef>

#include "domain/event.h"

namespace jobstate::write_metrics {

// A batch the store made durable: how many commands it answered and how
// long its synced write took (RocksDB: the fsync'd write; PostgreSQL: the
// round trip that ends in COMMIT, which waits for the WAL flush).
void durable_batch(size_t commands, double write_seconds);
// One event appended by a durable batch.
void appended(EventType type);
// A write the store failed (nothing of it acknowledged).
void failed_write();
// Creates the families (zero) before anything was written: a scraper sees
// them from the first scrape.
void declare();

}  // namespace jobstate::write_metrics
