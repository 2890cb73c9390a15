// StatusProjection: the read side the API and the watchdog use, folded from
// the log and written in the same batch as the events (so it never lags):
//
//   jobs.g<N>       job id (16 bytes) → status row (see StatusRow)
//   job_list.g<N>   list indexes, newest first (~created_seq, big-endian):
//                     'a' ~seq                      all jobs
//                     's' status ~seq               by state
//                     't' type 0x00 ~seq            by type
//                     'x' status type 0x00 ~seq     by state and type
//                   value: job id (16 bytes)
//   deadlines.g<N>  big-endian due ms + job id → "" (running jobs only). The
//                   due ms is the job's deadline rounded down to a multiple of
//                   a quarter of its heartbeat timeout (DeadlineRule), so a
//                   heartbeat moves the key only when the deadline crosses
//                   such a step, not on every heartbeat. A key can thus come
//                   due up to a quarter timeout before the deadline itself:
//                   readers check the row's deadline.
//
// <N> is the projection generation (meta key "projection_generation"):
// rebuild writes generation N+1 from the log and switches to it atomically.
//
// Thread safety: all methods are safe to call concurrently.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "domain/job.h"
#include "eventstore/database.h"
#include "eventstore/writer.h"
#include "store/read_model.h"
#include "store/status_row.h"

namespace jobstate {

inline constexpr const char* kMetaProjectionGeneration = "projection_generation";
// Which DeadlineRule the deadline index follows (one byte); absent: kExact.
inline constexpr const char* kMetaDeadlineRule = "deadline_rule";

// How a running job's key in the deadline index follows from its deadline.
enum class DeadlineRule : uint8_t {
  // The deadline itself: every heartbeat moved the key (stores written
  // before kMetaDeadlineRule existed; opening one read-write converts it).
  kExact = 1,
  // The deadline rounded down to a multiple of heartbeat_timeout / 4.
  kQuarterTimeout = 2,
};
Result<DeadlineRule> read_deadline_rule(const Database& db);
// Adds the meta record of `rule` to `batch` (read back by read_deadline_rule).
void put_deadline_rule(rocksdb::WriteBatch& batch, const Database& db, DeadlineRule rule);
// The millisecond a running job with this deadline is filed under.
TimeMs deadline_due_ms(TimeMs deadline_ms, int64_t heartbeat_timeout_s, DeadlineRule rule);


// Which projection keys a job in state `s` has: used both by the inline
// projection and by rebuild, so the two cannot disagree.
struct ProjectionEntry {
  enum Family { kJobs, kList, kDeadlines } family;
  std::string key;
  std::string value;
};
// with_row = false leaves the status row's value empty (only keys wanted).
std::vector<ProjectionEntry> projection_entries(const JobState& s, bool with_row = true,
                                                DeadlineRule rule = DeadlineRule::kQuarterTimeout);

class StatusProjection final : public BatchProjector, public ReadModel {
 public:
  // Finds the current generation's column families; in kReadWrite mode
  // creates them when missing (a new store), and rewrites a kExact deadline
  // index as kQuarterTimeout (one synced batch). Fails with kInvalidRequest
  // when a read-only store has no projection (run `jobstate rebuild`).
  static Result<std::unique_ptr<StatusProjection>> open(Database& db);

  // BatchProjector
  Result<std::optional<JobState>> load(const JobId& id) override;
  Status for_each_queued(const std::function<void(const JobState&)>& fn) override;
  void project(rocksdb::WriteBatch& batch, uint64_t batch_no, const JobState* before,
               const JobState& after, std::string_view progress_text) override;
  void batch_finished(uint64_t batch_no, bool durable, uint64_t head_seq) override;

  // ReadModel. A recently written row comes from memory without a copy;
  // expired() reads the due range of deadlines.g<N> (whose keys may come due
  // up to a quarter timeout before the row's deadline, see above).
  Result<std::optional<StatusRow>> row(const JobId& id) const override;
  Result<std::shared_ptr<const StatusRow>> shared_row(const JobId& id) const override;
  std::shared_ptr<const StatusRow> recent_row(const JobId& id) const override;
  Result<ListPage> list(const ListFilter& filter, std::optional<uint64_t> before_seq,
                        size_t limit) const override;
  Result<std::vector<ExpiredDeadline>> expired(TimeMs now_ms, size_t limit,
                                               const ExpiredDeadline* after = nullptr) const override;
  uint64_t as_of_seq() const override { return as_of_seq_.load(std::memory_order_acquire); }
  Result<std::vector<JobCount>> count_jobs() const override;
  // Where as_of_seq starts: the log's durable head when the store opens.
  void set_as_of_seq(uint64_t seq) { as_of_seq_.store(seq, std::memory_order_release); }

  uint64_t generation() const { return generation_; }
  DeadlineRule deadline_rule() const { return rule_; }

  static std::string jobs_cf_name(uint64_t generation);
  static std::string list_cf_name(uint64_t generation);
  static std::string deadlines_cf_name(uint64_t generation);

 private:
  StatusProjection(Database& db, uint64_t generation) : db_(db), generation_(generation) {}
  rocksdb::ColumnFamilyHandle* family(ProjectionEntry::Family f) const;
  // Read-write open: files every running job by kQuarterTimeout and records it.
  Status convert_deadline_index();
  // Read-write open, before any write: counts the rows by state and type.
  Status seed_counts();
  Database& db_;
  uint64_t generation_;
  DeadlineRule rule_ = DeadlineRule::kQuarterTimeout;
  rocksdb::ColumnFamilyHandle* jobs_ = nullptr;
  rocksdb::ColumnFamilyHandle* list_ = nullptr;
  rocksdb::ColumnFamilyHandle* deadlines_ = nullptr;
  std::atomic<uint64_t> as_of_seq_{0};

  // Rows of recently written jobs, so status reads of busy jobs skip
  // RocksDB (a memtable full of row versions makes point reads slow). Only
  // the writer fills it, after a batch is durable and before its callbacks
  // run, so an entry is always the newest committed row; a miss reads RocksDB.
  static constexpr size_t kRecentRows = 100'000;
  mutable std::mutex recent_mu_;
  std::unordered_map<JobId, std::shared_ptr<const StatusRow>> recent_;
  // Rows of batches not yet durable, oldest batch first.
  struct StagedRow {
    uint64_t batch_no = 0;
    JobId id;
    std::shared_ptr<const StatusRow> row;
    // When the state or type changes: the count this row leaves (nullopt
    // for a new job) and the one it joins.
    bool moves_count = false;
    std::optional<JobStatus> left_status;
    std::string left_type, joined_type;
  };
  // Jobs by (state, type): moved by durable batches only, under staged_mu_.
  // seeded_ is false in read-only opens (count_jobs() then scans).
  std::map<std::pair<JobStatus, std::string>, uint64_t> counts_;
  bool seeded_ = false;
  mutable std::mutex staged_mu_;
  std::deque<StagedRow> staged_;
};

// The stored generation (1 when the store has none yet).
Result<uint64_t> read_projection_generation(const Database& db);

}  // namespace jobstate
