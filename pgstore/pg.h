// A thin layer over libpq for the postgres backend: owned connections and
// results, parameters as text, errors as Result values (never exceptions).
// Connection failures and a server that is shutting down or read-only map to
// kUnavailable, so a client sees 503 while a cluster fails over; anything
// else the server refuses maps to kInternal with the server's message kept
// out of API answers by the problem layer.
//
// Thread safety: a PgConnection is used by one thread at a time; PgPool may
// be used from any thread.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "domain/result.h"

namespace jobstate::pg {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};

// The rows of one statement, read as text.
class Rows {
 public:
  explicit Rows(PGresult* r) : r_(r) {}
  int size() const { return PQntuples(r_.get()); }
  bool null(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  std::string_view text(int row, int col) const {
    return {PQgetvalue(r_.get(), row, col),
            static_cast<size_t>(PQgetlength(r_.get(), row, col))};
  }
  int64_t i64(int row, int col) const;

 private:
  std::unique_ptr<PGresult, ResultDeleter> r_;
};

// A statement parameter: text, or SQL NULL.
using Param = std::optional<std::string>;

class Connection {
 public:
  // Connects with `uri` (a libpq connection string or URI). kUnavailable
  // when the server cannot be reached or is not a primary that takes writes
  // (when the URI asks target_session_attrs=read-write). A URI without
  // connect_timeout gets connect_timeout=5, so a host that does not answer
  // costs seconds, not the TCP default of minutes.
  static Result<std::unique_ptr<Connection>> open(const std::string& uri);
  ~Connection();

  // Runs one statement with text parameters ($1, $2, ...). A statement that
  // has no answer within the deadline (set_deadline_ms) is cancelled and
  // fails with kUnavailable, and the connection is closed (ok() is then
  // false): its outcome is unknown. That bounds a COMMIT that waits for a
  // synchronous standby that is gone, which PostgreSQL would wait for forever
  // (and, cancelled, report as a success with only a warning).
  Result<Rows> exec(const std::string& sql, const std::vector<Param>& params = {});
  // Default 10,000 ms.
  void set_deadline_ms(int ms) { deadline_ms_ = ms; }

  struct Statement {
    std::string sql;  // one statement
    std::vector<Param> params;
    // Parse and plan the text once per connection and reuse the plan (a
    // named prepared statement). For fixed texts that run often; the first
    // use sends the Parse in the same round trip.
    bool prepared = false;
  };
  // Sends all statements at once and reads their results (libpq's pipeline
  // mode): one round trip for the lot. The first statement that fails fails
  // the call, and the server skips the ones after it. The deadline covers
  // the whole call.
  Result<std::vector<Rows>> exec_pipeline(const std::vector<Statement>& statements);
  // exec() of a prepared statement (see Statement::prepared).
  Result<Rows> exec_prepared(const std::string& sql, const std::vector<Param>& params = {});
  // Runs statements without parameters (may hold several, separated by ';').
  Status exec_script(const std::string& sql);
  // Whether the connection is still good; a broken one should be replaced.
  bool ok() const;
  // Waits up to timeout_ms for a notification on a LISTENed channel; returns
  // the payloads received (empty on timeout). kUnavailable when the
  // connection broke.
  Result<std::vector<std::string>> wait_notifications(int timeout_ms);
  PGconn* raw() { return conn_; }

 private:
  explicit Connection(PGconn* c) : conn_(c) {}
  // Sends, then waits for the results up to the deadline.
  PGresult* run(const std::string& sql, const std::vector<Param>& params, bool& timed_out);
  // Waits until a result can be read without blocking. False when the
  // deadline passed (the statement is then cancelled and the connection
  // closed) or the connection broke.
  bool wait_result(std::chrono::steady_clock::time_point deadline, bool& timed_out);
  PGconn* conn_;
  int deadline_ms_ = 10'000;
  // The statements prepared on this connection: text → name.
  std::unordered_map<std::string, std::string> prepared_;
};

// A few connections shared by reader threads. acquire() waits for a free one
// and reconnects a broken one.
class Pool {
 public:
  Pool(std::string uri, size_t size) : uri_(std::move(uri)), size_(size) {}

  class Lease {
   public:
    Lease(Pool* pool, std::unique_ptr<Connection> c) : pool_(pool), c_(std::move(c)) {}
    Lease(Lease&&) = default;
    ~Lease() {
      if (c_) pool_->release(std::move(c_));
    }
    Connection& operator*() { return *c_; }
    Connection* operator->() { return c_.get(); }

   private:
    Pool* pool_;
    std::unique_ptr<Connection> c_;
  };
  Result<Lease> acquire();

  // For GET /metrics: connections open (idle or lent), lent now, the most
  // allowed, acquires so far and how long they waited for a connection.
  struct Stats {
    size_t open = 0, in_use = 0, size = 0;
    uint64_t acquires = 0;
    double wait_seconds = 0;
  };
  Stats stats() const;

 private:
  void release(std::unique_ptr<Connection> c);
  std::string uri_;
  size_t size_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;
  size_t open_ = 0;
  uint64_t acquires_ = 0;
  double wait_seconds_ = 0;
};

// A text parameter from an integer.
inline Param num(int64_t v) { return std::to_string(v); }

}  // namespace jobstate::pg
