// Store: one opened job store, whatever its backend. The rest of jobstate
// (api/, watchdog/, executors/, embedded/, service/) sees only this and the
// three interfaces it hands out; which backend serves them is chosen once,
// by open_store() (service/open_store.h).
//
// Backends: the embedded RocksDB store (eventstore/ and projections/, one
// process per directory; the default). Each states in its header what it
// adds to the contracts of job_writer.h, event_log.h and read_model.h.
//
// Thread safety: the accessors may be called from any thread; the objects
// they return state their own. Destroying a Store stops its writer
// (finishing queued commands) and closes it.
#pragma once

#include "domain/clock.h"
#include "metrics/metrics.h"
#include "store/event_log.h"
#include "store/job_writer.h"
#include "store/leadership.h"
#include "store/read_model.h"

namespace jobstate {

class Store {
 public:
  virtual ~Store() = default;

  virtual JobWriter& writer() = 0;
  virtual const EventLog& log() const = 0;
  virtual const ReadModel& read_model() const = 0;
  // The clock the store stamps events and deadlines with.
  virtual const Clock& clock() const = 0;
  // Who runs the watchdog's sweep among the nodes sharing this store.
  virtual Leadership& leadership() = 0;
  // The backend's own figures for GET /metrics (RocksDB's sizes and stalls,
  // PostgreSQL's connection pool), written at each scrape.
  virtual void collect_metrics(metrics::SampleWriter& out) const {}
};

}  // namespace jobstate
