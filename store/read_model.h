// ReadModel: each job's current status, as the log's projection keeps it.
// The API, the watchdog, the executors and the embedded runner read jobs
// here, never by folding events.
//
// Guarantees of every implementation: the read model never lags the
// acknowledged log. Once JobWriter has answered a command, every read (on
// any node of a shared store) returns that job's row at least as new as the
// command left it; rows change all at once with their events.
//
// Thread safety: every method may be called from any thread at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "domain/job.h"
#include "domain/result.h"
#include "store/status_row.h"

namespace jobstate {

struct ListFilter {
  std::optional<JobStatus> status;
  std::optional<std::string> type;
};

struct ListPage {
  std::vector<StatusRow> jobs;
  // created_seq of the last job when more may follow; pass it as before_seq.
  std::optional<uint64_t> next_before_seq;
};

// A running job that is due for a look at due_ms. Its deadline (in its
// status row) may be later: an index may file a job up to a quarter of its
// heartbeat timeout early, so readers decide on the row's deadline.
struct ExpiredDeadline {
  TimeMs due_ms;
  JobId job_id;
};

// When a running job with this deadline is due for a look: its deadline
// rounded down to a multiple of a quarter of its heartbeat timeout. A
// backend that indexes jobs by it moves a job's index entry about four times
// per timeout instead of on every heartbeat; a job comes due up to a quarter
// timeout early, and the watchdog decides on the row's deadline.
inline TimeMs quarter_timeout_due_ms(TimeMs deadline_ms, int64_t heartbeat_timeout_s) {
  const TimeMs step = heartbeat_timeout_s * 250 > 1 ? heartbeat_timeout_s * 250 : 1;
  return deadline_ms - deadline_ms % step;
}

// How many jobs are in one state with one type (GET /metrics).
struct JobCount {
  JobStatus status;
  std::string type;
  uint64_t count = 0;
};

class ReadModel {
 public:
  virtual ~ReadModel() = default;

  // The job's status row; nullopt when there is no such job.
  virtual Result<std::optional<StatusRow>> row(const JobId& id) const = 0;
  // The same, shared (an implementation may hand out a cached row without a
  // copy); nullptr when there is no such job.
  virtual Result<std::shared_ptr<const StatusRow>> shared_row(const JobId& id) const = 0;
  // The job's row as this process last wrote it, from memory, without any
  // I/O; nullptr when none is at hand. It may be older than the store's
  // (another node may have written since): callers compare its version. The
  // API answers a write with it, on the writer's thread, which must not wait
  // for a read.
  virtual std::shared_ptr<const StatusRow> recent_row(const JobId& id) const = 0;
  // Newest first (by created_seq); only jobs created before `before_seq`
  // when given. REQUIRES: limit >= 1.
  virtual Result<ListPage> list(const ListFilter& filter, std::optional<uint64_t> before_seq,
                                size_t limit) const = 0;
  // Running jobs due for a look at or before now_ms, earliest first, at most
  // `limit`, starting after `after` when given (to page through the range).
  // The cost follows the due jobs, not the running ones.
  virtual Result<std::vector<ExpiredDeadline>> expired(
      TimeMs now_ms, size_t limit, const ExpiredDeadline* after = nullptr) const = 0;
  // The seq of the newest event the rows reflect: every row read after this
  // call is at least this new.
  virtual uint64_t as_of_seq() const = 0;
  // Jobs by state and type, as the rows are now (zero counts left out). The
  // embedded store keeps the counts in memory (seeded when it opens for
  // writing, moved with every durable batch); PostgreSQL counts its table.
  virtual Result<std::vector<JobCount>> count_jobs() const = 0;
};

}  // namespace jobstate
