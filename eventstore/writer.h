// Writer: the single thread that owns sequencing. Every change to the store
// goes through submit(). The writer drains its queue, runs each command
// through the domain's decide(), assigns gapless seqs, versions and the hash
// chain, and commits everything a batch touches (events, the job_events
// index, idempotency records, the projections, the head) in one WriteBatch
// with sync = true. Concurrent submitters share one fsync: that is where
// throughput comes from, and a request waits at most about one fsync.
//
// Thread safety: submit(), committed_head() and stop() may be called from any
// thread. Callbacks run on the writer thread, after the batch is durable (or
// failed): they must be quick and must not call submit() synchronously waiting
// for its result.
#pragma once

#include <rocksdb/write_batch.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "domain/clock.h"
#include "domain/job.h"
#include "domain/result.h"
#include "eventstore/database.h"
#include "eventstore/log_reader.h"

namespace jobstate {

// What is written beside the events in the same batch. Implemented by
// projections/ (the status rows and indexes).
class BatchProjector {
 public:
  virtual ~BatchProjector() = default;
  // The job's committed state; nullopt when there is no such job.
  virtual Result<std::optional<JobState>> load(const JobId& id) = 0;
  // Adds to `batch` what changes in the projections when a job moves from
  // `before` (nullptr: it did not exist) to `after`.
  virtual void project(rocksdb::WriteBatch& batch, const JobState* before,
                       const JobState& after) = 0;
  // After each batch that project() contributed to: whether it became
  // durable. Called before any of the batch's callbacks run.
  virtual void batch_finished(bool durable) {}
};

struct CommandRequest {
  JobId job_id;
  Command command;
  // If-Match: refuse with kVersionMismatch unless the job is at this version.
  std::optional<uint64_t> expected_version;
  // CreateJob only: the same key with the same fingerprint returns the job it
  // created before; with another fingerprint, kIdempotencyKeyReused.
  std::optional<std::string> idempotency_key;
  std::string request_fingerprint;
};

struct CommandOutcome {
  JobState job;               // the job after the command
  std::vector<Event> events;  // appended by this command (empty: nothing changed)
  bool idempotent_replay = false;  // an earlier request with the same Idempotency-Key
};

using CommandCallback = std::function<void(Result<CommandOutcome>)>;

// One durable batch, for listeners (long-polls, tests).
struct CommitInfo {
  LogHead head;                       // newest event after the batch
  std::vector<JobState> changed_jobs;  // final state of each job the batch changed
};

struct WriterOptions {
  // Most commands in one batch (one fsync). Default 1024.
  size_t max_batch_commands = 1024;
  // Most commands waiting; submit() beyond it fails at once with kUnavailable.
  size_t max_queued_commands = 100'000;
  // Job states kept in memory so decide() needs no read. Default 200k.
  size_t state_cache_entries = 200'000;
  // Called on the writer thread after every durable batch.
  std::function<void(const CommitInfo&)> on_commit;
  // Test seam: replaces db->Write(batch). Default: a synced write.
  std::function<rocksdb::Status(rocksdb::WriteBatch&)> write_for_test;
};

class Writer {
 public:
  // Loads the head from `db` and starts the thread. REQUIRES: db is kReadWrite
  // and outlives the writer; so do projector and clock.
  static Result<std::unique_ptr<Writer>> start(Database& db, BatchProjector& projector,
                                               const Clock& clock, WriterOptions options = {});
  ~Writer();  // stop()

  // Queues a command; `done` runs exactly once with its outcome. When the
  // writer is stopped or the queue is full, `done` runs at once on the calling
  // thread with kUnavailable. A success means the events are fsync'd.
  void submit(CommandRequest request, CommandCallback done);

  // Submits and waits. For tests, tools and the embedded runner: never from a
  // writer callback.
  Result<CommandOutcome> execute(CommandRequest request);

  // Refuses new commands, finishes every queued one, joins the thread. Idempotent.
  void stop();

  LogHead committed_head() const;
  // When this writer started: the watchdog's grace after a restart counts from here.
  TimeMs server_start_ms() const { return server_start_ms_; }
  size_t queued() const;

 private:
  struct Pending {
    CommandRequest request;
    CommandCallback done;
  };
  Writer(Database& db, BatchProjector& projector, const Clock& clock, WriterOptions options);
  void run();
  void process(std::vector<Pending>& batch);

  Database& db_;
  BatchProjector& projector_;
  const Clock& clock_;
  WriterOptions options_;
  TimeMs server_start_ms_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  LogHead head_;  // guarded by mu_

  // Writer-thread only.
  uint64_t head_seq_ = 0;
  std::string head_hash_;
  std::unordered_map<JobId, JobState> cache_;
  std::thread thread_;
};

// The idempotency record for a key: job id bytes + fingerprint.
std::string idempotency_value(const JobId& id, std::string_view fingerprint);

}  // namespace jobstate
