// Writer: the one place that changes the store. Every change goes through
// submit(). Two threads form a pipeline:
//
//   sequencer  drains the queue, runs each command through the domain's
//              decide(), assigns gapless seqs, versions and the hash chain,
//              and builds the batch's WriteBatch (events, the job_events
//              index, idempotency records, the projections). It alone owns
//              sequencing.
//   committer  writes each batch (and the head) with sync = true, and hands
//              it back to the sequencer, which runs its callbacks and
//              on_commit (in batch order, between its own steps), so the
//              committer does nothing but I/O.
//
// While the committer fsyncs batch N, the sequencer builds batch N+1 on top
// of N's (not yet durable) result. Between commands it parks N+1 where the
// committer takes it the moment N is written, without waiting for the
// sequencer to wake up: the CPU work of one batch overlaps the I/O of the
// previous one, and a request waits at most about two fsyncs. Nothing is
// answered before its batch is durable, refusals included (they may rest on
// the batch before). When a write fails, that batch's commands fail with
// kUnavailable (a refusal that did not rest on the batch's own changes keeps
// its error), and the batch being built on top of it is run again from the
// durable state.
//
// Thread safety: submit(), committed_head(), queued() and stop() may be
// called from any thread. Callbacks run on the sequencer thread, after the
// batch is durable (or failed): they must be quick and must not call
// execute() (or otherwise wait for another command's result). stop() from a
// callback or listener only asks the writer to stop; it does not wait.
#pragma once

#include <rocksdb/write_batch.h>

#include <atomic>
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
#include "store/claim_queue.h"
#include "store/job_writer.h"

namespace jobstate {

// What is written beside the events in the same batch. Implemented by
// projections/ (the status rows and indexes).
class BatchProjector {
 public:
  virtual ~BatchProjector() = default;
  // The job's committed state; nullopt when there is no such job. Called
  // on the sequencer thread.
  virtual Result<std::optional<JobState>> load(const JobId& id) = 0;
  // Calls fn with every committed queued job (claims keep them in memory).
  // Called on the sequencer thread.
  virtual Status for_each_queued(const std::function<void(const JobState&)>& fn) = 0;
  // Adds to `batch` (the writer's batch number `batch_no`, increasing) what
  // changes in the projections when a job moves from `before` (nullptr: it
  // did not exist) to `after`. `progress_text`, when not empty, is the
  // canonical JSON text of after.progress (a heartbeat's, already encoded
  // for its event). Called on the sequencer thread.
  virtual void project(rocksdb::WriteBatch& batch, uint64_t batch_no, const JobState* before,
                       const JobState& after, std::string_view progress_text) = 0;
  // Once per batch number that project() contributed to, in increasing
  // order: whether it became durable, and the log's head seq after it (0 when
  // the batch appended no event). Called before any of the batch's callbacks
  // run, on the committer thread (or, for a batch that is dropped and run
  // again, on the sequencer while nothing is being committed).
  virtual void batch_finished(uint64_t batch_no, bool durable, uint64_t head_seq) {}
};

struct WriterOptions {
  // Most commands in one batch (one fsync). Default 1024.
  size_t max_batch_commands = 1024;
  // Most commands waiting; submit() beyond it fails at once with kUnavailable.
  size_t max_queued_commands = 100'000;
  // Job states kept in memory so decide() needs no read. Default 200k.
  size_t state_cache_entries = 200'000;
  // Called on the sequencer thread after every durable batch, after its callbacks.
  CommitListener on_commit;
  // Test seam: replaces db->Write(batch) (on the committer thread). Default: a synced write.
  std::function<rocksdb::Status(rocksdb::WriteBatch&)> write_for_test;
  // Test seam: while it returns true, each batch's write fails with an I/O
  // error instead of being written. Default: none.
  std::function<bool()> fail_write_for_test;
  // The free-space guard: a batch is written only while the filesystem
  // holding the store has at least this many bytes free (statvfs, once per
  // batch); below it the batch's commands get kUnavailable before RocksDB
  // sees them, and write_health() says disk-full. 0: no guard. Default 256 MiB,
  // room for RocksDB's own flushes and compactions.
  uint64_t min_free_bytes = 256u << 20;
  // While writes fail: how often the idle committer looks whether they would
  // work again (free space, DB::Resume, one small synced write), so the store
  // becomes ready again without a client's write. Default 1000 ms.
  int64_t recovery_probe_ms = 1000;
  // Test seam: the free bytes instead of statvfs. Default: none.
  std::function<Result<uint64_t>()> free_bytes_for_test;
};

// The RocksDB backend's JobWriter (store/job_writer.h). Beyond that contract:
// one process per store, so the sequencer's head and job cache stay valid
// between batches and batch N+1 is built while N is written.
class Writer final : public JobWriter {
 public:
  // Loads the head from `db` and starts the threads. REQUIRES: db is kReadWrite
  // and outlives the writer; so do projector and clock.
  static Result<std::unique_ptr<Writer>> start(Database& db, BatchProjector& projector,
                                               const Clock& clock, WriterOptions options = {});
  ~Writer();  // stop()

  // Queues a command; `done` runs exactly once with its outcome. When the
  // writer is stopped or the queue is full, `done` runs at once on the calling
  // thread with kUnavailable. A success means the events are fsync'd.
  void submit(CommandRequest request, CommandCallback done) override;

  // Refuses new commands, finishes every queued one, joins the threads.
  // Idempotent. From a callback or listener it only asks (see above).
  void stop() override;

  LogHead committed_head() const override;
  // When this writer started: the watchdog's grace after a restart counts from here.
  // Also moves to when writes resume after the store refused them (a full
  // disk): workers' heartbeats were refused meanwhile, as if it were down.
  TimeMs server_start_ms() const override { return server_start_ms_.load(std::memory_order_relaxed); }
  // Commands submitted and not yet handed to the committer.
  size_t queued() const;
  // Of those, the ones the sequencer has already taken into the batch it is
  // building (tests use it to know which commands share a batch).
  size_t building() const;
  // disk-full while the free-space guard refuses writes; write-failed after
  // RocksDB failed one, until a write (or the committer's probe) succeeds.
  WriteHealth write_health() const override;
  // CPU time the writer's two threads have used (for benchmarks).
  int64_t cpu_time_ns() const;

 private:
  struct Pending {
    CommandRequest request;
    CommandCallback done;
  };
  struct Batch;
  using StatePtr = std::shared_ptr<const JobState>;

  Writer(Database& db, BatchProjector& projector, const Clock& clock, WriterOptions options);
  void run_sequencer();
  void run_committer();
  // Sequencer: runs one command against the state so far and adds its
  // changes to `b`.
  void add(Batch& b, Pending p);
  Result<CommandOutcome> run_command(Batch& b, const CommandRequest& req, bool& rests_on_batch);
  // The job's state as the sequencer has left it; nullptr: no such job.
  Result<StatePtr> current(const JobId& id);
  // Sequencer: the committer failed a batch. Forgets everything not durable
  // and runs `open`'s commands again from the durable state.
  void restart_from(const LogHead& durable, std::unique_ptr<Batch>& open);
  std::unique_ptr<Batch> new_batch();
  // Sequencer, under mu_: if the committer took the parked batch, keeps what
  // later commands need from it until it is durable.
  void note_taken();
  // Under mu_: the committer takes ready_.
  std::unique_ptr<Batch> take_ready();
  // Committer: writes `b`; false when the write failed (the results then say so).
  bool commit(Batch& b);
  // Committer: kUnavailable when the free-space guard refuses a write now.
  Status check_free_space();
  // Committer, while writes fail and nothing is to be written: whether they
  // would work again (see recovery_probe_ms).
  void probe_recovery();
  // Committer: records the write health, with a log line when it changes.
  void set_health(WriteHealth::State state, std::string reason);
  // Sequencer: runs the callbacks of a written batch, then on_commit.
  void answer(Batch& b);

  Database& db_;
  BatchProjector& projector_;
  const Clock& clock_;
  WriterOptions options_;
  std::atomic<TimeMs> server_start_ms_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;         // the sequencer waits on it
  std::condition_variable commit_cv_;  // the committer waits on it
  std::deque<Pending> queue_;
  size_t open_commands_ = 0;  // in the sequencer's open batch
  bool stopping_ = false;
  bool committing_ = false;     // the committer has a batch
  bool commit_failed_ = false;  // a write failed since the sequencer last looked
  bool committer_exit_ = false;
  // The sequencer's open batch while it is not adding to it: the committer
  // takes it from here as soon as it is free.
  std::unique_ptr<Batch> ready_;
  std::deque<std::unique_ptr<Batch>> written_;  // committed or failed, to answer
  LogHead head_;                                // durable head

  // Sequencer only: the batch it last parked in ready_ (to notice that the
  // committer took it).
  Batch* parked_ = nullptr;
  // Sequencer only: the head and job states including batches not yet durable.
  uint64_t head_seq_ = 0;
  std::string head_hash_;
  uint64_t next_batch_no_ = 1;
  std::unordered_map<JobId, StatePtr> cache_;
  // The queued jobs claims pick from, as this sequencer decided them (the
  // durable ones plus the open batch's); loaded from the store on first use
  // and again after a failed write.
  ClaimQueue claims_;
  bool claims_loaded_ = false;
  // Idempotency records of the batch being committed (not yet readable).
  std::unordered_map<std::string, std::string> committing_idempotency_;
  // Job states of the batch being committed: kept when the cache is cleared.
  std::vector<StatePtr> committing_states_;
  std::thread thread_;
  std::thread commit_thread_;

  mutable std::mutex health_mu_;
  WriteHealth health_;                   // under health_mu_; set by the committer
  std::atomic<bool> unhealthy_{false};   // !health_.ok(), read without the lock
};

// The idempotency record for a key: job id bytes + fingerprint.
std::string idempotency_value(const JobId& id, std::string_view fingerprint);

}  // namespace jobstate
