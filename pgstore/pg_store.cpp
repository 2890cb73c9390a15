#include "pgstore/pg_store.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <set>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "pgstore/pg.h"
#include "store/decided_command.h"
#include "store/hash_chain.h"
#include "store/write_metrics.h"

namespace jobstate {

namespace {

constexpr int kSchemaVersion = 2;
// Any fixed number: the advisory lock that serialises schema changes.
constexpr const char* kSchemaLock = "SELECT pg_advisory_xact_lock(7239001)";
constexpr const char* kChannel = "jobstate_commits";

constexpr const char* kSchemaV1 = R"SQL(
CREATE TABLE jobstate_head (
  id integer PRIMARY KEY CHECK (id = 1),
  seq bigint NOT NULL,
  hash text NOT NULL
);
CREATE TABLE jobstate_events (
  seq bigint PRIMARY KEY,
  job_id uuid NOT NULL,
  version bigint NOT NULL,
  type smallint NOT NULL,
  at_ms bigint NOT NULL,
  data text NOT NULL,
  hash text NOT NULL,
  UNIQUE (job_id, version)
);
CREATE TABLE jobstate_jobs (
  id uuid PRIMARY KEY,
  version bigint NOT NULL,
  status smallint NOT NULL,
  type text NOT NULL,
  created_seq bigint NOT NULL,
  deadline_ms bigint NOT NULL,
  due_ms bigint NOT NULL,
  heartbeat_timeout_s bigint NOT NULL,
  job text NOT NULL
) WITH (fillfactor = 70);
CREATE INDEX jobstate_jobs_all ON jobstate_jobs (created_seq DESC);
CREATE INDEX jobstate_jobs_status ON jobstate_jobs (status, created_seq DESC);
CREATE INDEX jobstate_jobs_type ON jobstate_jobs (type, created_seq DESC);
CREATE INDEX jobstate_jobs_status_type ON jobstate_jobs (status, type, created_seq DESC);
CREATE INDEX jobstate_jobs_due ON jobstate_jobs (due_ms, id) WHERE status = 2 AND due_ms > 0;
CREATE TABLE jobstate_idempotency (
  key text PRIMARY KEY,
  job_id uuid NOT NULL,
  fingerprint text NOT NULL
);
)SQL";

// Version 2 (issue 13): the watchdog's index covers every job with a
// deadline (queued jobs have queue timeouts), and claims find the best
// queued job of a type by priority, then age, among those claimable now.
constexpr const char* kSchemaV2 = R"SQL(
ALTER TABLE jobstate_jobs ADD COLUMN priority integer NOT NULL DEFAULT 0;
ALTER TABLE jobstate_jobs ADD COLUMN not_before_ms bigint NOT NULL DEFAULT 0;
DROP INDEX jobstate_jobs_due;
CREATE INDEX jobstate_jobs_due ON jobstate_jobs (due_ms, id) WHERE due_ms > 0;
CREATE INDEX jobstate_jobs_claimable ON jobstate_jobs (type, priority DESC, created_seq)
  WHERE status = 1;
CREATE INDEX jobstate_jobs_delayed ON jobstate_jobs (type, not_before_ms)
  WHERE status = 1 AND not_before_ms > 0;
)SQL";

constexpr const char* kRowColumns =
    "version, status, created_seq, deadline_ms, heartbeat_timeout_s, job, id";

// One array parameter in PostgreSQL's literal form ({1,2}, {"a","b\\"c"}):
// a column of a multi-row statement. Statements unnest their columns, so a
// statement's text is the same for one row or thousands, and is parsed and
// planned once per connection (Statement::prepared).
class Column {
 public:
  void number(int64_t v) { next() += std::to_string(v); }
  // A value with no character that needs quoting (a uuid).
  void bare(std::string_view v) { next() += v; }
  void text(std::string_view v) {
    std::string& out = next();
    out.push_back('"');
    for (char c : v) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  // The literal; the column is empty again afterwards.
  std::string take() {
    std::string out = std::move(literal_) + "}";
    literal_ = "{";
    return out;
  }

 private:
  std::string& next() {
    if (literal_.size() > 1) literal_.push_back(',');
    return literal_;
  }
  std::string literal_ = "{";
};

std::string text_array(const std::vector<std::string>& values) {
  Column c;
  for (auto& v : values) c.text(v);
  return c.take();
}

// "$first::t0[], $first+1::t1[], ...": the placeholders of unnested columns.
std::string unnest_columns(int first, std::initializer_list<const char*> types) {
  std::string out = "unnest(";
  for (const char* t : types) {
    if (out.size() > 7) out += ", ";
    out += "$" + std::to_string(first++) + "::" + t + "[]";
  }
  return out + ")";
}

// Events, column by column: their INSERT takes seven array parameters from
// `first`. The writer and copy both append through it.
struct EventColumns {
  static constexpr int kParams = 7;
  static std::string insert_sql(int first) {
    return "INSERT INTO jobstate_events (seq, job_id, version, type, at_ms, data, hash) "
           "SELECT * FROM " +
           unnest_columns(first,
                          {"bigint", "uuid", "bigint", "smallint", "bigint", "text", "text"});
  }
  void add(uint64_t s, const JobId& id, uint64_t v, EventType t, TimeMs at, std::string_view d,
           std::string_view h) {
    seq.number(static_cast<int64_t>(s));
    job_id.bare(id.to_string());
    version.number(static_cast<int64_t>(v));
    type.number(static_cast<int>(t));
    at_ms.number(at);
    data.text(d);
    hash.text(h);
    ++rows;
  }
  void take_into(std::vector<pg::Param>& params) {
    for (Column* c : {&seq, &job_id, &version, &type, &at_ms, &data, &hash})
      params.push_back(c->take());
    rows = 0;
  }
  Column seq, job_id, version, type, at_ms, data, hash;
  size_t rows = 0;
};

// Status rows, column by column: their upsert takes eleven array parameters
// from `first`. The writer, copy and rebuild all write rows through it.
// due_ms is the quarter-timeout step the job's next deadline falls in
// (next_deadline_ms, quarter_timeout_due_ms): a heartbeat that does not cross a step changes
// no indexed column, so PostgreSQL updates the row in place (a HOT update,
// with the table's fillfactor 70) instead of adding an entry to each of its
// five indexes.
struct JobColumns {
  static constexpr int kParams = 11;
  static std::string upsert_sql(int first) {
    return "INSERT INTO jobstate_jobs (id, version, status, type, created_seq, deadline_ms, "
           "due_ms, heartbeat_timeout_s, job, priority, not_before_ms) SELECT * FROM " +
           unnest_columns(first, {"uuid", "bigint", "smallint", "text", "bigint", "bigint",
                                  "bigint", "bigint", "text", "integer", "bigint"}) +
           " ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, status = "
           "EXCLUDED.status, type = EXCLUDED.type, created_seq = EXCLUDED.created_seq, "
           "deadline_ms = EXCLUDED.deadline_ms, due_ms = EXCLUDED.due_ms, heartbeat_timeout_s = "
           "EXCLUDED.heartbeat_timeout_s, job = EXCLUDED.job, priority = EXCLUDED.priority, "
           "not_before_ms = EXCLUDED.not_before_ms";
  }
  void add(const JobState& st, std::string_view json) {
    const TimeMs deadline = next_deadline_ms(st);
    const TimeMs due = deadline > 0 ? quarter_timeout_due_ms(deadline, st.heartbeat_timeout_s) : 0;
    id.bare(st.id.to_string());
    version.number(static_cast<int64_t>(st.version));
    status.number(static_cast<int>(st.status));
    type.text(st.type);
    created_seq.number(static_cast<int64_t>(st.created_seq));
    deadline_ms.number(deadline);
    due_ms.number(due);
    heartbeat_timeout_s.number(st.heartbeat_timeout_s);
    job.text(json);
    priority.number(st.priority);
    not_before_ms.number(st.not_before_ms.value_or(0));
    ++rows;
  }
  void take_into(std::vector<pg::Param>& params) {
    for (Column* c : {&id, &version, &status, &type, &created_seq, &deadline_ms, &due_ms,
                      &heartbeat_timeout_s, &job, &priority, &not_before_ms})
      params.push_back(c->take());
    rows = 0;
  }
  Column id, version, status, type, created_seq, deadline_ms, due_ms, heartbeat_timeout_s, job,
      priority, not_before_ms;
  size_t rows = 0;
};

// Writes (and empties) `rows` with one statement; copy and rebuild use it.
Status upsert_rows(pg::Connection& c, JobColumns& rows) {
  if (!rows.rows) return ok_status();
  std::vector<pg::Param> params;
  rows.take_into(params);
  if (auto r = c.exec_prepared(JobColumns::upsert_sql(1), params); !r) return r.error();
  return ok_status();
}

std::string hex(std::string_view raw) { return raw_to_hex(raw); }

// A status row from row r of a SELECT of kRowColumns.
Result<StatusRow> row_at(const pg::Rows& rows, int r) {
  StatusRow row;
  row.version = static_cast<uint64_t>(rows.i64(r, 0));
  const int64_t st = rows.i64(r, 1);
  if (st < 1 || st > 5) return make_error(ErrorCode::kCorruption, "status row: unknown state");
  row.status = static_cast<JobStatus>(st);
  row.created_seq = static_cast<uint64_t>(rows.i64(r, 2));
  row.deadline_ms = rows.i64(r, 3);
  row.heartbeat_timeout_s = rows.i64(r, 4);
  row.json_text = std::string(rows.text(r, 5));
  return row;
}

Status create_or_upgrade_schema(pg::Connection& c) {
  if (auto s = c.exec_script("BEGIN"); !s) return s;
  auto rollback = [&](Error e) -> Status {
    (void)c.exec_script("ROLLBACK");
    return e;
  };
  if (auto s = c.exec(kSchemaLock); !s) return rollback(s.error());
  if (auto s = c.exec_script("CREATE TABLE IF NOT EXISTS jobstate_schema (version integer NOT NULL)");
      !s)
    return rollback(s.error());
  auto v = c.exec("SELECT max(version) FROM jobstate_schema");
  if (!v) return rollback(v.error());
  const int64_t version = v->null(0, 0) ? 0 : v->i64(0, 0);
  if (version > kSchemaVersion)
    return rollback(make_error(
        ErrorCode::kInvalidRequest,
        "the database holds jobstate schema version " + std::to_string(version) +
            ", newer than this jobstate knows (" + std::to_string(kSchemaVersion) +
            "): run a newer jobstate"));
  if (version < 1) {
    if (auto s = c.exec_script(kSchemaV1); !s) return rollback(s.error());
    if (auto s = c.exec("INSERT INTO jobstate_head VALUES (1, 0, $1)", {std::string(kGenesisHash)});
        !s)
      return rollback(s.error());
    if (auto s = c.exec("INSERT INTO jobstate_schema VALUES (1)"); !s) return rollback(s.error());
  }
  if (version < 2) {
    if (auto s = c.exec_script(kSchemaV2); !s) return rollback(s.error());
    if (auto s = c.exec("INSERT INTO jobstate_schema VALUES (2)"); !s) return rollback(s.error());
  }
  // Later versions: `if (version < 3) { ... }`, each step in this transaction.
  return c.exec_script("COMMIT");
}

class PgEventLog final : public EventLog {
 public:
  explicit PgEventLog(pg::Pool& pool) : pool_(pool) {}

  Result<LogHead> head() const override {
    auto c = pool_.acquire();
    if (!c) return c.error();
    auto r = (*c)->exec_prepared("SELECT seq, hash FROM jobstate_head WHERE id = 1");
    if (!r) return r.error();
    if (r->size() != 1) return make_error(ErrorCode::kCorruption, "postgres: no head row");
    return LogHead{static_cast<uint64_t>(r->i64(0, 0)), std::string(r->text(0, 1))};
  }

  Status scan(uint64_t after_seq, uint64_t until_seq, const EventVisitor& fn) const override {
    const uint64_t until = std::min<uint64_t>(until_seq, INT64_MAX);
    for (uint64_t after = after_seq; after < until;) {
      auto c = pool_.acquire();
      if (!c) return c.error();
      auto r = (*c)->exec_prepared(
          "SELECT seq, job_id, version, type, at_ms, data, hash FROM jobstate_events "
          "WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT 1000",
          {pg::num(static_cast<int64_t>(after)), pg::num(static_cast<int64_t>(until))});
      if (!r) return r.error();
      bool more = true;
      if (auto s = visit(*r, fn, more); !s) return s;
      if (!more || r->size() < 1000) break;
      after = static_cast<uint64_t>(r->i64(r->size() - 1, 0));
    }
    return ok_status();
  }

  Status scan_job(const JobId& id, uint64_t after_version, size_t limit,
                  const EventVisitor& fn) const override {
    auto c = pool_.acquire();
    if (!c) return c.error();
    auto r = (*c)->exec_prepared(
        "SELECT seq, job_id, version, type, at_ms, data, hash FROM jobstate_events "
        "WHERE job_id = $1 AND version > $2 ORDER BY version LIMIT $3",
        {id.to_string(), pg::num(static_cast<int64_t>(std::min<uint64_t>(after_version, INT64_MAX))),
         pg::num(static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)))});
    if (!r) return r.error();
    bool more = true;
    return visit(*r, fn, more);
  }

 private:
  static Status visit(const pg::Rows& r, const EventVisitor& fn, bool& more) {
    for (int i = 0; i < r.size(); ++i) {
      StoredEventView v;
      v.seq = static_cast<uint64_t>(r.i64(i, 0));
      auto corrupt = [&](const char* why) {
        return make_error(ErrorCode::kCorruption, "event seq " + std::to_string(v.seq) + ": " + why);
      };
      auto id = JobId::parse(r.text(i, 1));
      if (!id) return corrupt("bad job id");
      v.job_id = *id;
      v.version = static_cast<uint64_t>(r.i64(i, 2));
      auto type = event_type_from_byte(static_cast<uint8_t>(r.i64(i, 3)));
      if (!type) return corrupt("unknown event type");
      v.type = *type;
      v.at_ms = r.i64(i, 4);
      v.data = r.text(i, 5);
      const std::string raw = hex_to_raw(r.text(i, 6));
      if (raw.size() != 32) return corrupt("bad hash");
      v.hash_raw = raw;
      if (!fn(v)) {
        more = false;
        break;
      }
    }
    return ok_status();
  }
  pg::Pool& pool_;
};

// Hands commits to the store's listener, this node's and other nodes', one
// at a time, keeps the newest head this node knows, and the rows this node's
// writer wrote last (for ReadModel::recent_row).
class CommitFeed {
 public:
  void remember_rows(std::vector<std::pair<JobId, std::shared_ptr<const StatusRow>>> rows) {
    std::lock_guard lock(rows_mu_);
    if (recent_.size() + rows.size() > 100'000) recent_.clear();
    for (auto& [id, row] : rows) recent_[id] = std::move(row);
  }
  std::shared_ptr<const StatusRow> recent_row(const JobId& id) const {
    std::lock_guard lock(rows_mu_);
    auto it = recent_.find(id);
    return it == recent_.end() ? nullptr : it->second;
  }

  explicit CommitFeed(CommitListener listener) : listener_(std::move(listener)) {}

  void set_head(const LogHead& head) {
    std::lock_guard lock(mu_);
    if (head.seq >= head_.seq) head_ = head;
  }
  LogHead head() const {
    std::lock_guard lock(mu_);
    return head_;
  }
  void deliver(const CommitInfo& info) {
    set_head(info.head);
    if (!listener_) return;
    std::lock_guard lock(deliver_mu_);
    try {
      listener_(info);
    } catch (...) {
    }
  }
  // This node's writer is about to commit seqs [first, last]: the listener
  // must not deliver them again when their NOTIFY arrives.
  void mark_local(uint64_t first, uint64_t last) {
    std::lock_guard lock(mu_);
    local_.emplace_back(first, last);
  }
  void unmark_local(uint64_t first, uint64_t last) {
    std::lock_guard lock(mu_);
    for (auto it = local_.begin(); it != local_.end(); ++it)
      if (it->first == first && it->second == last) {
        local_.erase(it);
        return;
      }
  }
  bool is_local(uint64_t seq) {
    std::lock_guard lock(mu_);
    for (auto& [a, b] : local_)
      if (seq >= a && seq <= b) return true;
    return false;
  }
  // Ranges wholly at or below `seq` are no longer needed.
  void forget_local_upto(uint64_t seq) {
    std::lock_guard lock(mu_);
    while (!local_.empty() && local_.front().second <= seq) local_.pop_front();
  }

 private:
  CommitListener listener_;
  mutable std::mutex mu_;
  LogHead head_;
  std::deque<std::pair<uint64_t, uint64_t>> local_;
  std::mutex deliver_mu_;
  mutable std::mutex rows_mu_;
  std::unordered_map<JobId, std::shared_ptr<const StatusRow>> recent_;
};

class PgReadModel final : public ReadModel {
 public:
  PgReadModel(pg::Pool& pool, const JobWriter& writer, const CommitFeed& feed)
      : pool_(pool), writer_(writer), feed_(feed) {}

  std::shared_ptr<const StatusRow> recent_row(const JobId& id) const override {
    return feed_.recent_row(id);
  }

  Result<std::optional<StatusRow>> row(const JobId& id) const override {
    auto c = pool_.acquire();
    if (!c) return c.error();
    auto r = (*c)->exec_prepared(
        std::string("SELECT ") + kRowColumns + " FROM jobstate_jobs WHERE id = $1",
        {id.to_string()});
    if (!r) return r.error();
    if (r->size() == 0) return std::optional<StatusRow>();
    auto row = row_at(*r, 0);
    if (!row) return row.error();
    return std::optional<StatusRow>(std::move(*row));
  }

  Result<std::shared_ptr<const StatusRow>> shared_row(const JobId& id) const override {
    auto r = row(id);
    if (!r) return r.error();
    if (!*r) return std::shared_ptr<const StatusRow>();
    return std::shared_ptr<const StatusRow>(std::make_shared<StatusRow>(std::move(**r)));
  }

  Result<ListPage> list(const ListFilter& filter, std::optional<uint64_t> before_seq,
                        size_t limit) const override {
    std::string sql = std::string("SELECT ") + kRowColumns + " FROM jobstate_jobs WHERE true";
    std::vector<pg::Param> params;
    if (filter.status) {
      params.push_back(pg::num(static_cast<int>(*filter.status)));
      sql += " AND status = $" + std::to_string(params.size());
    }
    if (filter.type) {
      params.push_back(*filter.type);
      sql += " AND type = $" + std::to_string(params.size());
    }
    if (before_seq) {
      params.push_back(pg::num(static_cast<int64_t>(std::min<uint64_t>(*before_seq, INT64_MAX))));
      sql += " AND created_seq < $" + std::to_string(params.size());
    }
    params.push_back(pg::num(static_cast<int64_t>(std::min<size_t>(limit, 100'000)) + 1));
    sql += " ORDER BY created_seq DESC LIMIT $" + std::to_string(params.size());
    auto c = pool_.acquire();
    if (!c) return c.error();
    auto r = (*c)->exec(sql, params);
    if (!r) return r.error();
    ListPage page;
    for (int i = 0; i < r->size() && page.jobs.size() < limit; ++i) {
      auto row = row_at(*r, i);
      if (!row) return row.error();
      page.jobs.push_back(std::move(*row));
    }
    if (static_cast<size_t>(r->size()) > limit && !page.jobs.empty())
      page.next_before_seq = page.jobs.back().created_seq;
    return page;
  }

  Result<std::vector<ExpiredDeadline>> expired(TimeMs now_ms, size_t limit,
                                               const ExpiredDeadline* after) const override {
    std::vector<pg::Param> params = {pg::num(now_ms)};
    std::string sql =
        "SELECT due_ms, id FROM jobstate_jobs WHERE due_ms > 0 AND due_ms <= $1";
    if (after) {
      params.push_back(pg::num(after->due_ms));
      params.push_back(after->job_id.to_string());
      sql += " AND (due_ms, id) > ($2, $3::uuid)";
    }
    params.push_back(pg::num(static_cast<int64_t>(std::min<size_t>(limit, 100'000))));
    sql += " ORDER BY due_ms, id LIMIT $" + std::to_string(params.size());
    auto c = pool_.acquire();
    if (!c) return c.error();
    auto r = (*c)->exec(sql, params);
    if (!r) return r.error();
    std::vector<ExpiredDeadline> out;
    for (int i = 0; i < r->size(); ++i) {
      auto id = JobId::parse(r->text(i, 1));
      if (!id) return make_error(ErrorCode::kCorruption, "postgres: bad job id in jobstate_jobs");
      out.push_back(ExpiredDeadline{r->i64(i, 0), *id});
    }
    return out;
  }

  uint64_t as_of_seq() const override { return writer_.committed_head().seq; }

  // The table counted (an index-only scan of jobstate_jobs_status_type):
  // every node of a shared store sees the same figures.
  Result<std::vector<JobCount>> count_jobs() const override {
    auto c = pool_.acquire();
    if (!c) return c.error();
    auto r = (*c)->exec("SELECT status, type, count(*) FROM jobstate_jobs GROUP BY status, type", {});
    if (!r) return r.error();
    std::vector<JobCount> out;
    for (int i = 0; i < r->size(); ++i) {
      const int64_t status = r->i64(i, 0);
      if (status < 1 || status > static_cast<int64_t>(JobStatus::kCancelled))
        return make_error(ErrorCode::kCorruption, "jobstate_jobs: unknown status " + std::to_string(status));
      out.push_back(JobCount{static_cast<JobStatus>(status), std::string(r->text(i, 1)),
                             static_cast<uint64_t>(r->i64(i, 2))});
    }
    return out;
  }

 private:
  pg::Pool& pool_;
  const JobWriter& writer_;
  const CommitFeed& feed_;
};

class PgWriter final : public JobWriter {
 public:
  PgWriter(PgStoreOptions& options, CommitFeed& feed)
      : options_(options), feed_(feed), server_start_ms_(options.clock->now_ms()) {}
  ~PgWriter() override { stop(); }

  Status start(std::unique_ptr<pg::Connection> conn) {
    if (auto s = configure_session(*conn); !s) return s;
    conn_ = std::move(conn);
    thread_ = std::thread([this] { run(); });
    return ok_status();
  }

  void submit(CommandRequest request, CommandCallback done) override {
    bool stopping = false;
    {
      std::lock_guard lock(mu_);
      stopping = stopping_;
      if (!stopping && queue_.size() < options_.max_queued_commands) {
        queue_.push_back({std::move(request), std::move(done)});
        cv_.notify_one();
        return;
      }
    }
    done(make_error(ErrorCode::kUnavailable,
                    stopping ? "the store is shutting down" : "too many writes queued"));
  }

  void stop() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }

  LogHead committed_head() const override { return feed_.head(); }
  TimeMs server_start_ms() const override { return server_start_ms_; }

 private:
  struct Pending {
    CommandRequest request;
    CommandCallback done;
  };
  using StatePtr = std::shared_ptr<const JobState>;

  void run() {
    pthread_setname_np(pthread_self(), "js-pg-writer");
    for (;;) {
      std::vector<Pending> batch;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;
        while (!queue_.empty() && batch.size() < options_.max_batch_commands) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      cycle(batch);
    }
  }

  // One transaction for the whole batch; answers every command.
  void cycle(std::vector<Pending>& batch) {
    std::vector<Result<CommandOutcome>> results;
    std::vector<bool> rests_on_batch(batch.size(), false);
    CommitInfo info;
    const auto t0 = std::chrono::steady_clock::now();
    Status written = write(batch, results, rests_on_batch, info);
    spdlog::debug("postgres write cycle: {} commands, head {}, {} us", batch.size(), info.head.seq,
                  std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count());
    if (!written) {
      Error e = written.error();
      if (e.code != ErrorCode::kUnavailable) {
        spdlog::error("postgres write cycle failed: {}", e.message);
        e.code = ErrorCode::kUnavailable;
      }
      if (results.size() != batch.size()) results.assign(batch.size(), e);
      for (size_t i = 0; i < results.size(); ++i)
        if (results[i].ok() || rests_on_batch[i]) results[i] = e;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      try {
        batch[i].done(std::move(results[i]));
      } catch (...) {
      }
    }
    if (written && !info.changed_jobs.empty()) feed_.deliver(info);
  }

  // The writer's session, on every connection it opens (the first one too).
  static Status configure_session(pg::Connection& c) {
    // The cycle's statements look up rows by arrays of keys, which one plan
    // fits whatever the values: skip PostgreSQL's first five custom plans.
    // No JIT: it compiles for tens of milliseconds a plan that runs in one.
    // And every statement of the cycle is meant to walk an index in its
    // order. The plan is made once per connection, from the statistics of
    // that moment: made right after a burst of creates, before autovacuum
    // had analysed them, the claim read became a bitmap scan that sorted
    // every queued job of the type, in every cycle from then on (300
    // claims/s instead of 5,000). With sorts and bitmap scans priced out
    // on this session, the plans walk their indexes in order.
    return c.exec_script(
        "SET plan_cache_mode = force_generic_plan; SET jit = off; "
        "SET enable_sort = off; SET enable_bitmapscan = off");
  }

  Status connect() {
    if (conn_ && conn_->ok()) return ok_status();
    conn_.reset();
    auto c = pg::Connection::open(options_.uri);
    if (!c) return c.error();
    if (auto s = configure_session(**c); !s) return s;
    conn_ = std::move(*c);
    return ok_status();
  }

  Status write(std::vector<Pending>& batch, std::vector<Result<CommandOutcome>>& results,
               std::vector<bool>& rests_on_batch, CommitInfo& info) {
    if (auto s = connect(); !s) return s;
    pg::Connection& c = *conn_;
    bool committed = false;
    struct Rollback {
      pg::Connection& c;
      bool& committed;
      ~Rollback() {
        if (!committed) (void)c.exec_script("ROLLBACK");
      }
    } rollback{c, committed};

    // Round trip 1 (a pipeline): the transaction, the head's lock, the
    // idempotency records of the batch's creates, and the rows of every job
    // the batch names (or an idempotency record names).
    std::vector<std::string> keys;
    for (auto& p : batch)
      if (p.request.idempotency_key && std::holds_alternative<CreateJob>(p.request.command))
        keys.push_back(*p.request.idempotency_key);
    std::unordered_set<std::string> ids;
    for (auto& p : batch)
      if (!p.request.claim_types) ids.insert(p.request.job_id.to_string());
    Column id_column;
    for (auto& id : ids) id_column.bare(id);
    const std::string id_array = id_column.take();
    const std::string key_array = text_array(keys);
    const TimeMs now = options_.clock->now_ms();
    // Claims: for each set of types the batch's claims name, the best
    // claimable jobs in claim order (one per command of the batch: enough
    // for its claims even when its other commands, or the claims of an
    // overlapping set, take some), and the next not_before ahead. The
    // head's lock serialises every node's cycles, so no two claims (on any
    // node) see the same job queued.
    std::set<std::vector<std::string>> claim_sets;
    for (auto& p : batch)
      if (p.request.claim_types) claim_sets.insert(*p.request.claim_types);
    std::vector<pg::Connection::Statement> reads = {
        {"BEGIN", {}},
         {"SELECT seq, hash FROM jobstate_head WHERE id = 1 FOR UPDATE", {}, true},
         {"SELECT key, job_id, fingerprint FROM jobstate_idempotency WHERE key = ANY($1::text[])",
          {key_array}, true},
         {std::string("SELECT ") + kRowColumns +
              // One array, so the primary key's index answers (an OR with a
              // subquery made this a scan of the whole table, once per cycle).
              " FROM jobstate_jobs WHERE id = ANY($1::uuid[] || ARRAY(SELECT job_id FROM "
              "jobstate_idempotency WHERE key = ANY($2::text[])))",
          {id_array, key_array}, true}};
    for (auto& types : claim_sets) {
      const std::string type_array = text_array(types);
      // Per type, the claimable index in its own order (a LATERAL join): a
      // plain "type = ANY(...) ORDER BY" would fetch and sort every queued
      // job of the types, once per cycle.
      reads.push_back({std::string("SELECT ") + kRowColumns +
                           " FROM unnest($1::text[]) AS t(name) CROSS JOIN LATERAL (SELECT * FROM "
                           "jobstate_jobs j WHERE j.status = 1 AND j.type = t.name AND "
                           "j.not_before_ms <= $2 ORDER BY j.priority DESC, j.created_seq LIMIT "
                           "$3) c ORDER BY priority DESC, created_seq LIMIT $3",
                       {type_array, pg::num(now), pg::num(static_cast<int64_t>(batch.size()))},
                       true});
      reads.push_back({"SELECT min(d.not_before_ms) FROM unnest($1::text[]) AS t(name) CROSS JOIN "
                       "LATERAL (SELECT j.not_before_ms FROM jobstate_jobs j WHERE j.status = 1 AND "
                       "j.type = t.name AND j.not_before_ms > 0 AND j.not_before_ms > $2 ORDER BY j.not_before_ms "
                       "LIMIT 1) d",
                       {type_array, pg::num(now)}, true});
    }
    auto read = c.exec_pipeline(reads);
    if (!read) return read.error();
    const pg::Rows& head_rows = (*read)[1];
    if (head_rows.size() != 1) return make_error(ErrorCode::kCorruption, "postgres: no head row");
    LogHead head{static_cast<uint64_t>(head_rows.i64(0, 0)), std::string(head_rows.text(0, 1))};
    const uint64_t first_seq = head.seq + 1;
    std::unordered_map<std::string, std::pair<std::string, std::string>> known_keys;  // key → id, fp hex
    const pg::Rows& key_rows = (*read)[2];
    for (int i = 0; i < key_rows.size(); ++i)
      known_keys[std::string(key_rows.text(i, 0))] = {std::string(key_rows.text(i, 1)),
                                                       std::string(key_rows.text(i, 2))};
    std::unordered_map<JobId, StatePtr> states;
    auto load_rows = [&](const pg::Rows& rows, std::vector<JobId>* order) -> Status {
      for (int i = 0; i < rows.size(); ++i) {
        auto row = row_at(rows, i);
        if (!row) return row.error();
        auto st = row->to_state();
        if (!st) return st.error();
        if (order) order->push_back(st->id);
        if (!states.count(st->id)) states[st->id] = std::make_shared<const JobState>(std::move(*st));
      }
      return ok_status();
    };
    if (auto s = load_rows((*read)[3], nullptr); !s) return s;
    struct ClaimCandidates {
      std::vector<JobId> order;
      size_t next = 0;
      std::optional<TimeMs> next_claimable_ms;
    };
    std::map<std::vector<std::string>, ClaimCandidates> candidates;
    size_t at = 4;
    for (auto& types : claim_sets) {
      ClaimCandidates& cc = candidates[types];
      if (auto s = load_rows((*read)[at], &cc.order); !s) return s;
      const pg::Rows& next = (*read)[at + 1];
      if (next.size() == 1 && !next.null(0, 0)) cc.next_claimable_ms = next.i64(0, 0);
      at += 2;
    }

    // Decide every command in order, each on the state the ones before left.
    struct EventRow {
      Event event;
      std::string data;
    };
    std::vector<EventRow> event_rows;
    std::unordered_map<JobId, std::string> row_json;  // final row JSON of each changed job
    std::unordered_map<JobId, StatePtr> changed;
    std::vector<std::array<std::string, 3>> new_keys;
    results.clear();
    for (size_t i = 0; i < batch.size(); ++i) {
      const CommandRequest& req = batch[i].request;
      const bool create = std::holds_alternative<CreateJob>(req.command);
      auto state_of = [&](const JobId& id) -> StatePtr {
        auto it = states.find(id);
        return it == states.end() ? nullptr : it->second;
      };
      JobId job_id = req.job_id;
      if (req.claim_types) {
        // The first candidate still queued and claimable after the commands before.
        ClaimCandidates& cc = candidates[*req.claim_types];
        std::optional<JobId> pick;
        for (; cc.next < cc.order.size() && !pick; ++cc.next) {
          StatePtr st = state_of(cc.order[cc.next]);
          if (st && st->status == JobStatus::kQueued && st->not_before_ms.value_or(0) <= now)
            pick = st->id;
        }
        if (!pick) {
          CommandOutcome none;
          none.next_claimable_ms = cc.next_claimable_ms;
          results.push_back(std::move(none));
          continue;
        }
        job_id = *pick;
      }
      if (req.idempotency_key && create) {
        if (auto it = known_keys.find(*req.idempotency_key); it != known_keys.end()) {
          for (auto& k : new_keys)
            if (k[0] == *req.idempotency_key) rests_on_batch[i] = true;
          if (it->second.second != hex(req.request_fingerprint)) {
            results.push_back(make_error(ErrorCode::kIdempotencyKeyReused,
                                         "this Idempotency-Key was used with a different request"));
            continue;
          }
          auto id = JobId::parse(it->second.first);
          StatePtr st = id ? state_of(*id) : nullptr;
          if (!st) {
            results.push_back(make_error(ErrorCode::kCorruption,
                                         "idempotency record names a missing job"));
            continue;
          }
          results.push_back(CommandOutcome{st, {}, true});
          continue;
        }
      }
      if (changed.count(job_id)) rests_on_batch[i] = true;
      StatePtr before = state_of(job_id);
      const DecideContext ctx = decide_context(req, now, server_start_ms_);
      auto decided = decide_command(before.get(), job_id, req.command, ctx, head);
      if (!decided) {
        results.push_back(decided.error());
        continue;
      }
      if (decided->events.empty()) {
        results.push_back(CommandOutcome{before, {}, false});
        continue;
      }
      RowTexts texts;
      texts.progress = decided->progress_text;
      std::string row = encode_status_row(*decided->after, texts);
      row_json[job_id] = row.substr(kStatusRowHeaderBytes);
      for (size_t k = 0; k < decided->events.size(); ++k)
        event_rows.push_back({decided->events[k], std::move(decided->data_texts[k])});
      head = decided->head;
      states[job_id] = decided->after;
      changed[job_id] = decided->after;
      if (req.idempotency_key && create) {
        new_keys.push_back({*req.idempotency_key, req.job_id.to_string(),
                            hex(req.request_fingerprint)});
        known_keys[*req.idempotency_key] = {req.job_id.to_string(), hex(req.request_fingerprint)};
      }
      CommandOutcome outcome;
      outcome.events = std::move(decided->events);
      outcome.job = decided->after;
      results.push_back(std::move(outcome));
    }

    std::optional<pg::Connection::Statement> write_all;
    if (!event_rows.empty()) {
      // One prepared statement for everything the cycle writes: the events,
      // the rows, the idempotency records, the head and the NOTIFY.
      static const std::string kWriteAll = [] {
        int p = 1;
        std::string sql = "WITH ev AS (" + EventColumns::insert_sql(p) + ")";
        p += EventColumns::kParams;
        sql += ", jb AS (" + JobColumns::upsert_sql(p) + ")";
        p += JobColumns::kParams;
        sql += ", ik AS (INSERT INTO jobstate_idempotency SELECT * FROM " +
               unnest_columns(p, {"text", "uuid", "text"}) + ")";
        p += 3;
        sql += ", hd AS (UPDATE jobstate_head SET seq = $" + std::to_string(p) + ", hash = $" +
               std::to_string(p + 1) + " WHERE id = 1) SELECT pg_notify('" + kChannel + "', $" +
               std::to_string(p + 2) + ")";
        return sql;
      }();
      EventColumns events;
      for (auto& r : event_rows) {
        const Event& e = r.event;
        events.add(e.seq, e.job_id, e.version, e.type, e.at_ms, r.data, e.hash);
      }
      JobColumns jobs;
      for (auto& [id, st] : changed) jobs.add(*st, row_json.at(id));
      Column key, key_job, key_fingerprint;
      for (auto& k : new_keys) {
        key.text(k[0]);
        key_job.bare(k[1]);
        key_fingerprint.text(k[2]);
      }
      std::vector<pg::Param> params;
      events.take_into(params);
      jobs.take_into(params);
      params.push_back(key.take());
      params.push_back(key_job.take());
      params.push_back(key_fingerprint.take());
      params.push_back(pg::num(static_cast<int64_t>(head.seq)));
      params.push_back(head.hash);
      params.push_back(std::to_string(head.seq));
      write_all = pg::Connection::Statement{kWriteAll, std::move(params), true};
      if (options_.fail_writes_for_test && options_.fail_writes_for_test())
        return make_error(ErrorCode::kUnavailable, "injected failure at /secret/disk/path");
      feed_.mark_local(first_seq, head.seq);
    }
    // Round trip 2 (a pipeline): everything the cycle writes, and COMMIT.
    std::vector<pg::Connection::Statement> finish;
    if (write_all) finish.push_back(std::move(*write_all));
    finish.push_back({"COMMIT", {}});
    const auto write_start = std::chrono::steady_clock::now();
    if (auto s = c.exec_pipeline(finish); !s) {
      write_metrics::failed_write();
      // These seqs were not written (or, after a COMMIT that timed out,
      // perhaps were): either way the listener must not skip them when
      // another node's (or this) commit holds them.
      if (!event_rows.empty()) feed_.unmark_local(first_seq, head.seq);
      return s.error();
    }
    committed = true;
    write_metrics::durable_batch(
        results.size(),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - write_start).count());
    for (const auto& r : event_rows) write_metrics::appended(r.event.type);
    std::vector<std::pair<JobId, std::shared_ptr<const StatusRow>>> rows;
    rows.reserve(changed.size());
    for (auto& [id, st] : changed) {
      auto row = std::make_shared<StatusRow>();
      row->version = st->version;
      row->status = st->status;
      row->created_seq = st->created_seq;
      row->deadline_ms = next_deadline_ms(*st);
      row->heartbeat_timeout_s = st->heartbeat_timeout_s;
      row->json_text = std::move(row_json[id]);
      rows.emplace_back(id, std::move(row));
    }
    feed_.remember_rows(std::move(rows));
    feed_.set_head(head);
    info.head = head;
    for (auto& [id, st] : changed) info.changed_jobs.push_back(st);
    return ok_status();
  }

  PgStoreOptions& options_;
  CommitFeed& feed_;
  TimeMs server_start_ms_;
  std::unique_ptr<pg::Connection> conn_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

// The lead is a session-level advisory lock held on a connection of its
// own. PostgreSQL releases it when that session ends: at once when the node's
// process dies (its kernel closes the socket), and within the session's TCP
// keepalive bound (5 s idle + 3 probes 2 s apart, set below) when the whole
// machine or its network goes. Another node's next sweep then takes it.
class PgLeadership final : public Leadership {
 public:
  explicit PgLeadership(std::string uri) : uri_(std::move(uri)) {}

  bool holds_lead() override {
    if (conn_ && conn_->ok() && held_) {
      if (conn_->exec("SELECT 1")) return true;  // the session (and its lock) still lives
    }
    held_ = false;
    if (!conn_ || !conn_->ok()) {
      conn_.reset();
      auto c = pg::Connection::open(uri_);
      if (!c) return false;
      if (!(*c)->exec_script(
              "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
              "SET tcp_keepalives_count = 3"))
        return false;
      conn_ = std::move(*c);
    }
    auto r = conn_->exec("SELECT pg_try_advisory_lock(7239002)");
    held_ = r && r->size() == 1 && r->text(0, 0) == "t";
    return held_;
  }

 private:
  std::string uri_;
  std::unique_ptr<pg::Connection> conn_;
  bool held_ = false;
};

class PgStore final : public Store {
 public:
  explicit PgStore(PgStoreOptions options)
      : options_(std::move(options)),
        feed_(options_.on_commit),
        pool_(options_.uri, std::max<size_t>(1, options_.read_connections)),
        log_(pool_),
        writer_(options_, feed_),
        read_model_(pool_, writer_, feed_),
        leadership_(options_.uri) {}

  ~PgStore() override {
    writer_.stop();
    {
      std::lock_guard lock(listen_mu_);
      stop_listening_ = true;
    }
    if (listener_.joinable()) listener_.join();
  }

  Status open() {
    auto c = pg::Connection::open(options_.uri);
    if (!c) return c.error();
    if (options_.read_only) {
      auto v = (*c)->exec(
          "SELECT CASE WHEN to_regclass('jobstate_schema') IS NULL THEN -1 "
          "ELSE (SELECT coalesce(max(version), -1) FROM jobstate_schema) END");
      if (!v) return v.error();
      const int64_t version = v->i64(0, 0);
      if (version < 1)
        return make_error(ErrorCode::kInvalidRequest, "this database holds no jobstate store");
      if (version > kSchemaVersion)
        return make_error(ErrorCode::kInvalidRequest,
                          "the database holds jobstate schema version " + std::to_string(version) +
                              ", newer than this jobstate knows (" +
                              std::to_string(kSchemaVersion) + ")");
      auto head = log_.head();
      if (!head) return head.error();
      feed_.set_head(*head);
      writer_.stop();
      return ok_status();
    }
    if (auto s = create_or_upgrade_schema(**c); !s) return s;
    auto head = log_.head();
    if (!head) return head.error();
    feed_.set_head(*head);
    cursor_ = head->seq;
    auto listen = pg::Connection::open(options_.uri);
    if (!listen) return listen.error();
    if (auto s = (*listen)->exec_script(std::string("LISTEN ") + kChannel); !s) return s;
    listen_conn_ = std::move(*listen);
    listener_ = std::thread([this] { listen_loop(); });
    return writer_.start(std::move(*c));
  }

  JobWriter& writer() override { return writer_; }
  const EventLog& log() const override { return log_; }
  const ReadModel& read_model() const override { return read_model_; }
  const Clock& clock() const override { return *options_.clock; }
  Leadership& leadership() override { return leadership_; }

  // The read pool (the writer keeps its own connection).
  void collect_metrics(metrics::SampleWriter& out) const override {
    const auto s = pool_.stats();
    out.declare("jobstate_postgres_pool_connections", "gauge",
                "Read connections to PostgreSQL, by state (idle or in_use)");
    out.sample("jobstate_postgres_pool_connections", {{"state", "in_use"}}, static_cast<double>(s.in_use));
    out.sample("jobstate_postgres_pool_connections", {{"state", "idle"}},
               static_cast<double>(s.open - s.in_use));
    out.declare("jobstate_postgres_pool_max_connections", "gauge", "The read pool's size");
    out.sample("jobstate_postgres_pool_max_connections", {}, static_cast<double>(s.size));
    out.declare("jobstate_postgres_pool_acquires_total", "counter", "Read connections taken from the pool");
    out.sample("jobstate_postgres_pool_acquires_total", {}, static_cast<double>(s.acquires));
    out.declare("jobstate_postgres_pool_wait_seconds_total", "counter",
                "Time spent waiting for a free read connection");
    out.sample("jobstate_postgres_pool_wait_seconds_total", {}, s.wait_seconds);
  }

 private:
  bool stopping() {
    std::lock_guard lock(listen_mu_);
    return stop_listening_;
  }

  // Other nodes' commits: on each NOTIFY (and every second, in case one was
  // missed while reconnecting), read the events past the cursor that this
  // node did not write, and tell the listener about their jobs.
  void listen_loop() {
    pthread_setname_np(pthread_self(), "js-pg-listen");
    while (!stopping()) {
      if (!listen_conn_ || !listen_conn_->ok()) {
        listen_conn_.reset();
        auto c = pg::Connection::open(options_.uri);
        if (!c || !(*c)->exec_script(std::string("LISTEN ") + kChannel)) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          continue;
        }
        listen_conn_ = std::move(*c);
      }
      auto got = listen_conn_->wait_notifications(1000);
      if (!got) continue;  // reconnects above
      if (auto s = catch_up(); !s) spdlog::warn("postgres: reading other nodes' commits: {}",
                                                s.error().message);
    }
  }

  Status catch_up() {
    auto head = log_.head();
    if (!head) return head.error();
    if (head->seq <= cursor_) return ok_status();
    std::unordered_set<std::string> job_ids;
    Status s = log_.scan(cursor_, head->seq, [&](const StoredEventView& v) {
      if (!feed_.is_local(v.seq)) job_ids.insert(v.job_id.to_string());
      return true;
    });
    if (!s) return s;
    CommitInfo info;
    info.head = *head;
    for (auto& id : job_ids) {
      auto row = read_model_.row(*JobId::parse(id));
      if (!row) return row.error();
      if (!*row) continue;
      auto st = (*row)->to_state();
      if (!st) return st.error();
      info.changed_jobs.push_back(std::make_shared<const JobState>(std::move(*st)));
    }
    cursor_ = head->seq;
    feed_.forget_local_upto(cursor_);
    if (info.changed_jobs.empty())
      feed_.set_head(info.head);
    else
      feed_.deliver(info);
    return ok_status();
  }

  PgStoreOptions options_;
  CommitFeed feed_;
  pg::Pool pool_;
  PgEventLog log_;
  PgWriter writer_;
  PgReadModel read_model_;
  PgLeadership leadership_;
  std::unique_ptr<pg::Connection> listen_conn_;
  uint64_t cursor_ = 0;  // listener thread only, after open()
  std::mutex listen_mu_;
  bool stop_listening_ = false;
  std::thread listener_;
};

class PgImport final : public LogImport {
 public:
  explicit PgImport(std::unique_ptr<pg::Connection> c) : c_(std::move(c)) {}
  ~PgImport() override {
    if (!done_) (void)c_->exec_script("ROLLBACK");
  }

  Status begin() {
    c_->set_deadline_ms(600'000);  // a large copy's statements take a while
    if (auto s = create_or_upgrade_schema(*c_); !s) return s;
    auto h = c_->exec("BEGIN; SELECT seq FROM jobstate_head WHERE id = 1 FOR UPDATE");
    if (!h) return h.error();
    if (h->size() != 1 || h->i64(0, 0) != 0)
      return make_error(ErrorCode::kInvalidRequest,
                        "the database already holds a jobstate store with events: copy writes "
                        "into an empty one only");
    return ok_status();
  }

  Status append(const StoredEventView& v) override {
    if (v.seq != head_.seq + 1)
      return make_error(ErrorCode::kInvalidRequest,
                        "the source log goes from seq " + std::to_string(head_.seq) + " to " +
                            std::to_string(v.seq));
    auto e = v.to_event();
    if (!e) return e.error();
    auto it = jobs_.find(v.job_id);
    auto next = apply(it == jobs_.end() ? nullptr : &it->second, *e);
    if (!next)
      return make_error(ErrorCode::kCorruption,
                        "seq " + std::to_string(v.seq) + ": " + next.error().message);
    jobs_[v.job_id] = std::move(*next);
    head_ = LogHead{v.seq, e->hash};
    events_.add(v.seq, v.job_id, v.version, v.type, v.at_ms, v.data, e->hash);
    if (events_.rows >= 5000) return flush_events();
    return ok_status();
  }

  Status finish() override {
    if (auto s = flush_events(); !s) return s;
    JobColumns rows;
    for (auto& [id, st] : jobs_) {
      rows.add(st, encode_status_row(st).substr(kStatusRowHeaderBytes));
      if (rows.rows >= 4000)
        if (auto s = upsert_rows(*c_, rows); !s) return s;
    }
    if (auto s = upsert_rows(*c_, rows); !s) return s;
    auto h = c_->exec("UPDATE jobstate_head SET seq = $1, hash = $2 WHERE id = 1",
                      {pg::num(static_cast<int64_t>(head_.seq)), head_.hash});
    if (!h) return h.error();
    if (auto s = c_->exec_script("COMMIT"); !s) return s;
    done_ = true;
    return ok_status();
  }

 private:
  Status flush_events() {
    if (!events_.rows) return ok_status();
    std::vector<pg::Param> params;
    events_.take_into(params);
    if (auto r = c_->exec_prepared(EventColumns::insert_sql(1), params); !r) return r.error();
    return ok_status();
  }
  std::unique_ptr<pg::Connection> c_;
  std::unordered_map<JobId, JobState> jobs_;
  LogHead head_{0, std::string(kGenesisHash)};
  EventColumns events_;
  bool done_ = false;
};

}  // namespace

bool is_postgres_uri(const std::string& location) {
  return location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0;
}

Result<std::unique_ptr<Store>> open_pg_store(PgStoreOptions options) {
  if (!options.clock) return make_error(ErrorCode::kInvalidRequest, "the store needs a clock");
  auto store = std::make_unique<PgStore>(std::move(options));
  if (auto s = store->open(); !s) return s.error();
  return std::unique_ptr<Store>(std::move(store));
}

Result<std::unique_ptr<LogImport>> open_pg_import(const std::string& uri) {
  auto c = pg::Connection::open(uri);
  if (!c) return c.error();
  auto import = std::make_unique<PgImport>(std::move(*c));
  if (auto s = import->begin(); !s) return s.error();
  return std::unique_ptr<LogImport>(std::move(import));
}

Result<uint64_t> rebuild_pg_rows(const std::string& uri) {
  auto opened = pg::Connection::open(uri);
  if (!opened) return opened.error();
  pg::Connection& c = **opened;
  c.set_deadline_ms(600'000);
  auto head = c.exec("BEGIN; SELECT seq FROM jobstate_head WHERE id = 1 FOR UPDATE");
  if (!head) return head.error();
  if (head->size() != 1) return make_error(ErrorCode::kCorruption, "postgres: no head row");
  std::unordered_map<JobId, JobState> jobs;
  for (int64_t after = 0;;) {
    auto r = c.exec(
        "SELECT seq, job_id, version, type, at_ms, data, hash FROM jobstate_events WHERE seq > $1 "
        "ORDER BY seq LIMIT 10000",
        {pg::num(after)});
    if (!r) return r.error();
    for (int i = 0; i < r->size(); ++i) {
      Event e;
      e.seq = static_cast<uint64_t>(r->i64(i, 0));
      auto id = JobId::parse(r->text(i, 1));
      auto type = event_type_from_byte(static_cast<uint8_t>(r->i64(i, 3)));
      e.data = nlohmann::json::parse(r->text(i, 5), nullptr, false);
      if (!id || !type || !e.data.is_object())
        return make_error(ErrorCode::kCorruption,
                          "event seq " + std::to_string(e.seq) + " does not decode");
      e.job_id = *id;
      e.version = static_cast<uint64_t>(r->i64(i, 2));
      e.type = *type;
      e.at_ms = r->i64(i, 4);
      auto it = jobs.find(e.job_id);
      auto next = apply(it == jobs.end() ? nullptr : &it->second, e);
      if (!next)
        return make_error(ErrorCode::kCorruption,
                          "seq " + std::to_string(e.seq) + ": " + next.error().message);
      jobs[e.job_id] = std::move(*next);
    }
    if (r->size() < 10000) break;
    after = r->i64(r->size() - 1, 0);
  }
  if (auto d = c.exec("DELETE FROM jobstate_jobs"); !d) return d.error();
  JobColumns rows;
  for (auto& [id, st] : jobs) {
    rows.add(st, encode_status_row(st).substr(kStatusRowHeaderBytes));
    if (rows.rows >= 4000)
      if (auto s = upsert_rows(c, rows); !s) return s.error();
  }
  if (auto s = upsert_rows(c, rows); !s) return s.error();
  if (auto s = c.exec_script("COMMIT"); !s) return s.error();
  return static_cast<uint64_t>(jobs.size());
}

}  // namespace jobstate
