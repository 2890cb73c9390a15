#include "pgstore/pg.h"

#include <errno.h>
#include <poll.h>

#include <chrono>

#include <charconv>

namespace jobstate::pg {

namespace {
// SQLSTATE classes that mean "try again, maybe on another node": connection
// exceptions (08), a server shutting down or a standby (57P, 25006 read-only
// transaction), serialization failures and deadlocks (40).
bool is_unavailable(const char* sqlstate) {
  if (!sqlstate) return true;  // no server answer: the connection broke
  std::string_view s(sqlstate);
  return s.rfind("08", 0) == 0 || s.rfind("57P", 0) == 0 || s == "25006" || s.rfind("40", 0) == 0 ||
         s == "53300";
}

Error error_of(PGconn* c, const PGresult* r, std::string_view what) {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  std::string message = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return make_error(is_unavailable(state) || PQstatus(c) != CONNECTION_OK
                        ? ErrorCode::kUnavailable
                        : ErrorCode::kInternal,
                    "postgres: " + std::string(what) + ": " + message);
}
Error no_answer(int deadline_ms) {
  return make_error(ErrorCode::kUnavailable, "postgres: no answer within " +
                                                 std::to_string(deadline_ms) +
                                                 " ms (cancelled, outcome unknown)");
}
}  // namespace

int64_t Rows::i64(int row, int col) const {
  auto t = text(row, col);
  int64_t v = 0;
  std::from_chars(t.data(), t.data() + t.size(), v);
  return v;
}

Result<std::unique_ptr<Connection>> Connection::open(const std::string& uri) {
  std::string target = uri;
  if (target.find("connect_timeout") == std::string::npos &&
      target.rfind("postgres", 0) == 0)  // a URI, not key=value pairs
    target += (target.find('?') == std::string::npos ? "?" : "&") + std::string("connect_timeout=5");
  PGconn* c = PQconnectdb(target.c_str());
  if (!c) return make_error(ErrorCode::kUnavailable, "postgres: out of memory");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string message = PQerrorMessage(c);
    PQfinish(c);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
      message.pop_back();
    return make_error(ErrorCode::kUnavailable, "postgres: cannot connect: " + message);
  }
  std::unique_ptr<Connection> conn(new Connection(c));
  // Quiet NOTICEs (CREATE ... IF NOT EXISTS) instead of printing them.
  PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
  return conn;
}

Connection::~Connection() {
  if (conn_) PQfinish(conn_);
}

bool Connection::ok() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

PGresult* Connection::run(const std::string& sql, const std::vector<Param>& params,
                          bool& timed_out) {
  timed_out = false;
  if (!conn_) return nullptr;
  std::vector<const char*> values(params.size());
  for (size_t i = 0; i < params.size(); ++i) values[i] = params[i] ? params[i]->c_str() : nullptr;
  const int sent = params.empty() ? PQsendQuery(conn_, sql.c_str())
                                  : PQsendQueryParams(conn_, sql.c_str(),
                                                      static_cast<int>(params.size()), nullptr,
                                                      values.data(), nullptr, nullptr, 0);
  if (!sent) return nullptr;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(deadline_ms_);
  // The last result of the statement (a script's last statement); earlier
  // ones are freed, an error among them wins.
  PGresult* last = nullptr;
  for (;;) {
    if (!wait_result(deadline, timed_out)) {
      if (last) PQclear(last);
      return nullptr;
    }
    PGresult* r = PQgetResult(conn_);
    if (!r) break;
    if (last && PQresultStatus(last) == PGRES_FATAL_ERROR) {
      PQclear(r);
      continue;
    }
    if (last) PQclear(last);
    last = r;
  }
  return last;
}

bool Connection::wait_result(std::chrono::steady_clock::time_point deadline, bool& timed_out) {
  while (PQisBusy(conn_)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      timed_out = true;
      if (PGcancel* cancel = PQgetCancel(conn_)) {
        char err[256];
        PQcancel(cancel, err, sizeof err);
        PQfreeCancel(cancel);
      }
      // Whatever the cancelled statement did is unknown to the caller: the
      // connection is not used again.
      PQfinish(conn_);
      conn_ = nullptr;
      return false;
    }
    pollfd p{PQsocket(conn_), POLLIN, 0};
    if (p.fd < 0) return false;
    if (poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000))) < 0 && errno != EINTR)
      return false;
    if (!PQconsumeInput(conn_)) return false;
  }
  return true;
}

Result<std::vector<Rows>> Connection::exec_pipeline(const std::vector<Statement>& statements) {
  if (!conn_) return make_error(ErrorCode::kUnavailable, "postgres: no connection");
  // A pipeline left half-read cannot be used again: close the connection.
  auto broken = [&](Error e) {
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
    prepared_.clear();
    return e;
  };
  if (PQenterPipelineMode(conn_) != 1) return broken(error_of(conn_, nullptr, "pipeline"));
  // What the server answers, in order: a Parse's result for each statement
  // prepared now, each statement's result, and the sync point.
  enum class Answer { kParse, kStatement, kSync };
  std::vector<Answer> answers;
  std::vector<std::pair<std::string, std::string>> parsing;  // text, name
  for (const Statement& st : statements) {
    std::vector<const char*> values(st.params.size());
    for (size_t i = 0; i < st.params.size(); ++i)
      values[i] = st.params[i] ? st.params[i]->c_str() : nullptr;
    const int n = static_cast<int>(st.params.size());
    int sent = 0;
    if (!st.prepared) {
      sent = PQsendQueryParams(conn_, st.sql.c_str(), n, nullptr, values.data(), nullptr, nullptr,
                               0);
    } else {
      std::string name;
      if (auto it = prepared_.find(st.sql); it != prepared_.end()) name = it->second;
      for (auto& [text, pending] : parsing)
        if (text == st.sql) name = pending;
      if (name.empty()) {
        name = "s" + std::to_string(prepared_.size() + parsing.size());
        if (!PQsendPrepare(conn_, name.c_str(), st.sql.c_str(), n, nullptr))
          return broken(error_of(conn_, nullptr, "sending"));
        answers.push_back(Answer::kParse);
        parsing.emplace_back(st.sql, name);
      }
      sent = PQsendQueryPrepared(conn_, name.c_str(), n, values.data(), nullptr, nullptr, 0);
    }
    if (!sent) return broken(error_of(conn_, nullptr, "sending"));
    answers.push_back(Answer::kStatement);
  }
  if (!PQpipelineSync(conn_)) return broken(error_of(conn_, nullptr, "sending"));
  answers.push_back(Answer::kSync);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(deadline_ms_);
  std::vector<Rows> out;
  std::optional<Error> failure;
  bool timed_out = false;
  size_t parsed = 0;
  for (Answer answer : answers) {
    if (!wait_result(deadline, timed_out))
      return broken(timed_out ? no_answer(deadline_ms_) : error_of(conn_, nullptr, "reading"));
    PGresult* r = PQgetResult(conn_);
    if (!r) return broken(error_of(conn_, nullptr, "reading"));
    const auto status = PQresultStatus(r);
    if (answer == Answer::kSync) {
      PQclear(r);
      break;
    }
    if (answer == Answer::kParse) {
      // A prepared statement outlives the transaction it was made in.
      if (status == PGRES_COMMAND_OK) prepared_.insert(parsing[parsed]);
      ++parsed;
      if (status != PGRES_COMMAND_OK && !failure && status != PGRES_PIPELINE_ABORTED)
        failure = error_of(conn_, r, "statement failed");
      PQclear(r);
    } else if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
      out.emplace_back(r);
    } else {
      if (!failure && status != PGRES_PIPELINE_ABORTED)
        failure = error_of(conn_, r, "statement failed");
      PQclear(r);
    }
    // Each statement's results end with a null.
    if (!wait_result(deadline, timed_out))
      return broken(timed_out ? no_answer(deadline_ms_) : error_of(conn_, nullptr, "reading"));
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
  }
  PQexitPipelineMode(conn_);
  if (failure) return *failure;
  return out;
}

Result<Rows> Connection::exec_prepared(const std::string& sql, const std::vector<Param>& params) {
  auto r = exec_pipeline({{sql, params, true}});
  if (!r) return r.error();
  return std::move(r->front());
}

Result<Rows> Connection::exec(const std::string& sql, const std::vector<Param>& params) {
  bool timed_out = false;
  PGresult* r = run(sql, params, timed_out);
  if (timed_out) return no_answer(deadline_ms_);
  const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    Error e = error_of(conn_, r, "statement failed");
    if (r) PQclear(r);
    return e;
  }
  return Rows(r);
}

Status Connection::exec_script(const std::string& sql) {
  auto r = exec(sql);  // without parameters: several statements may go at once
  if (!r) return r.error();
  return ok_status();
}

Result<std::vector<std::string>> Connection::wait_notifications(int timeout_ms) {
  std::vector<std::string> out;
  if (!conn_) return make_error(ErrorCode::kUnavailable, "postgres: listening: no connection");
  auto drain = [&] {
    while (PGnotify* n = PQnotifies(conn_)) {
      out.emplace_back(n->extra);
      PQfreemem(n);
    }
  };
  if (!PQconsumeInput(conn_)) return error_of(conn_, nullptr, "listening");
  drain();
  if (!out.empty()) return out;
  pollfd p{PQsocket(conn_), POLLIN, 0};
  if (p.fd < 0) return make_error(ErrorCode::kUnavailable, "postgres: listening: no connection");
  if (poll(&p, 1, timeout_ms) > 0) {
    if (!PQconsumeInput(conn_)) return error_of(conn_, nullptr, "listening");
    drain();
  }
  return out;
}

Pool::Stats Pool::stats() const {
  std::lock_guard lock(mu_);
  return Stats{open_, open_ - idle_.size(), size_, acquires_, wait_seconds_};
}

Result<Pool::Lease> Pool::acquire() {
  std::unique_ptr<Connection> c;
  {
    const auto asked = std::chrono::steady_clock::now();
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty() || open_ < size_; });
    ++acquires_;
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count();
    if (!idle_.empty()) {
      c = std::move(idle_.back());
      idle_.pop_back();
    } else {
      ++open_;
    }
  }
  if (!c || !c->ok()) {
    c.reset();
    auto opened = Connection::open(uri_);
    if (!opened) {
      std::lock_guard lock(mu_);
      --open_;
      cv_.notify_one();
      return opened.error();
    }
    c = std::move(*opened);
  }
  return Lease(this, std::move(c));
}

void Pool::release(std::unique_ptr<Connection> c) {
  std::lock_guard lock(mu_);
  if (c->ok()) {
    idle_.push_back(std::move(c));
  } else {
    --open_;  // a broken connection is dropped; the next acquire opens a new one
  }
  cv_.notify_one();
}

}  // namespace jobstate::pg
