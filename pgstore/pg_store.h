// PgStore: the postgres backend of Store (store/store.h), for several
// `jobstate serve` nodes on one PostgreSQL database (a Patroni cluster in
// production). Beyond the contracts of job_writer.h, event_log.h and
// read_model.h:
//
// - Each node groups its queued commands into one transaction per write
//   cycle, like the RocksDB writer's batch: it locks the single head row
//   (SELECT ... FOR UPDATE), reads the batch's job rows, decides every
//   command (store/decided_command.h), inserts the events, upserts the status
//   rows, moves the head and commits. Nodes serialise on the head row once
//   per cycle, so seq stays global and gapless and the chain linear. A
//   command is answered only after COMMIT returned (synchronous_commit on:
//   on the synchronous standby too when the cluster has one). A cycle that
//   fails answers kUnavailable to every command in it; nothing of it is
//   committed.
// - Job states are read inside the cycle's transaction: another node may
//   have written the job since, so nothing is cached across cycles.
// - Reads go to the database (a small connection pool): a write acknowledged
//   by any node is visible to a read on every node right after.
// - Each commit sends NOTIFY jobstate_commits; every node LISTENs, and calls
//   its commit listener for other nodes' commits too (reading the events it
//   has not seen), so long-polls and executors wake within milliseconds of a
//   commit made anywhere.
//
// Tables (schema version 1, created and upgraded by open(), in a
// transaction, under an advisory lock): jobstate_schema, jobstate_head (one
// row), jobstate_events, jobstate_jobs (status rows: the header fields as
// columns, the job's JSON as text), jobstate_idempotency. Hashed bytes stay
// text: an event's data is stored exactly as hashed.
#pragma once

#include <memory>
#include <string>

#include "domain/clock.h"
#include "domain/result.h"
#include "store/log_import.h"
#include "store/store.h"

namespace jobstate {

struct PgStoreOptions {
  // A libpq connection URI (postgresql://user@host:port/db?...). For a
  // Patroni cluster: every member's host:port and target_session_attrs=read-write.
  std::string uri;
  // REQUIRED: the clock for event timestamps and deadlines; outlives the store.
  const Clock* clock = nullptr;
  // Called after every durable batch, this node's and other nodes'.
  CommitListener on_commit;
  // Most commands in one transaction. Default 1024.
  size_t max_batch_commands = 1024;
  // Most commands waiting; submit() beyond it fails at once with kUnavailable.
  size_t max_queued_commands = 100'000;
  // Connections for reads. Default 4.
  size_t read_connections = 4;
  // For the offline tools (replay, verify): reads only. Creates no schema (a
  // database without one is an error), starts no writer (every command gets
  // kUnavailable) and listens to nothing.
  bool read_only = false;
  // Test seam: while it returns true, every cycle fails before COMMIT as if
  // the database did. Default: none.
  std::function<bool()> fail_writes_for_test;
};

// True for a location open_store hands to this backend.
bool is_postgres_uri(const std::string& location);

// Connects, creates or upgrades the schema, and starts the writer and the
// listener. kInvalidRequest when the database holds a newer schema than this
// jobstate knows; kUnavailable when it cannot be reached.
Result<std::unique_ptr<Store>> open_pg_store(PgStoreOptions options);

// Recomputes every status row of a postgres store from its log, in one
// transaction that holds the head's lock (writes on every node wait for it;
// reads go on and see the old rows until it commits). Returns the number of
// jobs. kCorruption naming the seq when the log breaks the state machine;
// nothing changes then.
Result<uint64_t> rebuild_pg_rows(const std::string& uri);

// The postgres backend's LogImport (store/log_import.h), for `jobstate copy`:
// into a database without a jobstate store, or with an empty one (schema
// created on open). Everything goes in one transaction, committed by
// finish(): a copy that fails leaves the database's store empty.
Result<std::unique_ptr<LogImport>> open_pg_import(const std::string& uri);

}  // namespace jobstate
