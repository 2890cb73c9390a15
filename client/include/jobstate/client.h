// jobstate::client::Client: one C++ call per endpoint of the jobstate HTTP API
// (API.md, v1), over libcurl.
//
// Every call returns a Result: the decoded value on a 2xx answer, otherwise a
// Problem carrying the HTTP status, the problem slug and detail the server
// sent (RFC 9457), or status 0 and slug "transport" when no answer arrived
// (connection refused, timeout). Nothing throws out of this header's calls,
// except std::bad_alloc.
//
// Every call is bounded: ClientOptions::request_timeout_ms for the whole
// exchange (connect included), plus the requested wait for the long-polls
// (wait(), feed() with wait_s).
//
// Thread safety: a Client is safe for concurrent use from many threads
// without external synchronization. Idle connections are pooled and reused
// (HTTP/1.1 keep-alive), one per concurrent call at most.
//
// This library depends on libcurl and nlohmann_json only; it does not link
// the server's storage or HTTP server.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace jobstate::client {

// Why a call did not produce its value.
struct Problem {
  // The HTTP status of the answer; 0 when there was no answer (see slug).
  int status = 0;
  // The last segment of the problem's "type" ("job-terminal", "unavailable",
  // ...). Client-side slugs, with status 0: "transport" (no answer: refused,
  // reset, timed out), "aborted" (Client::abort_calls() was called).
  // "bad-response" when an answer came but could not be decoded.
  std::string slug;
  std::string title;
  std::string detail;
  // The whole problem document (members such as "state", "version",
  // "job_id"); null when the server sent none.
  nlohmann::json body;

  // True when trying the same call again later may succeed: no answer at all,
  // or 502/503/504. Writes are safe to retry: a transition that already
  // landed answers 409, a create with an Idempotency-Key returns the same job.
  bool retryable() const;
  // "409 job-terminal: job is already failed" (for logs and messages).
  std::string describe() const;
};

// A value or a Problem.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}            // NOLINT(google-explicit-constructor)
  Result(Problem problem) : v_(std::move(problem)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  // REQUIRES: ok()
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  // REQUIRES: !ok()
  const Problem& problem() const { return std::get<1>(v_); }

 private:
  std::variant<T, Problem> v_;
};

struct Ok {};
using Status = Result<Ok>;

// The job resource (API.md "The job resource"). Timestamps stay RFC 3339
// strings as the server sent them; unset ones are nullopt / JSON null.
struct Job {
  std::string id;
  std::string type;
  std::string state;  // queued, running, succeeded, failed, cancelled
  uint64_t version = 0;
  std::string created_at;
  std::optional<std::string> started_at;
  std::optional<std::string> last_heartbeat_at;
  std::optional<std::string> finished_at;
  std::optional<std::string> deadline_at;
  int64_t heartbeat_timeout_s = 0;
  nlohmann::json progress;  // null or {"fraction", "message", "details"}
  nlohmann::json params;
  nlohmann::json labels;
  std::optional<std::string> worker;
  bool cancel_requested = false;
  nlohmann::json result;
  nlohmann::json error;  // null or {"code", "message", "details"}
  // The attempt's lease (the Job-Lease header) on the answer to a start: the
  // attempt's reports must carry it. A Client sends it by itself for the
  // attempts it started.
  std::optional<std::string> lease;
  // The resource exactly as received, including members this version of
  // the library does not know.
  nlohmann::json raw;

  // succeeded, failed or cancelled: nothing will change this job any more.
  bool terminal() const;
};

// One event of a job's history or of the global feed (API.md "Events").
struct Event {
  uint64_t seq = 0;
  std::string job_id;
  uint64_t version = 0;
  std::string type;  // created, started, heartbeat, succeeded, failed, cancel_requested, cancelled
  std::string at;
  nlohmann::json data;
  std::string hash;
  nlohmann::json raw;
};

struct JobPage {
  std::vector<Job> jobs;
  std::optional<std::string> next_page_token;  // pass to ListQuery::page_token; nullopt: last page
};

struct JobEventPage {
  std::vector<Event> events;
  std::optional<uint64_t> next_after_version;  // nullopt: no more events for now
};

struct FeedPage {
  std::vector<Event> events;
  uint64_t next_after_seq = 0;  // pass back as after_seq
};

struct AuditHead {
  uint64_t seq = 0;
  std::string hash;
};

// POST /v1/jobs body.
struct CreateJobRequest {
  std::string type;                                  // required: 1-128 of A-Za-z0-9._:-
  nlohmann::json params = nlohmann::json::object();  // any JSON
  std::optional<int64_t> heartbeat_timeout_s = {};   // 1-86400; nullopt: the server's default (120)
  nlohmann::json labels = nlohmann::json::object();  // at most 32 string pairs
  // Optional (API.md "Workers, timeouts, retries, webhooks"); unset members
  // are not sent.
  std::optional<int64_t> execution_timeout_s = {};  // 1-604800: an attempt may run this long
  std::optional<int64_t> queue_timeout_s = {};      // 1-604800: it may wait this long to start
  std::optional<std::string> not_before = {};       // RFC 3339: not claimable before
  std::optional<int64_t> priority = {};             // -1000..1000; claims take the highest
  // {"max_attempts", "initial_backoff_s", "max_backoff_s"}; null: no retry.
  nlohmann::json retry = nullptr;
};

// GET /v1/jobs filters; empty / nullopt members are not sent.
struct ListQuery {
  std::string state;
  std::string type;
  std::optional<int> limit;  // server default 50, max 1000
  std::string page_token;
};

// Progress as a heartbeat carries it. Unset members are sent as null.
struct Progress {
  std::optional<double> fraction;  // 0..1
  std::optional<std::string> message;
  nlohmann::json details;  // any JSON; null when unset
};

struct ClientOptions {
  // scheme://host:port of the server, without /v1 (a trailing '/' is ignored).
  std::string base_url = "http://127.0.0.1:8080";
  // Bound on establishing a connection. Default 3 s.
  int64_t connect_timeout_ms = 3000;
  // Bound on a whole call, connect included. Long-polls get their wait on
  // top of this. Default 10 s.
  int64_t request_timeout_ms = 10000;
  std::string user_agent = "jobstate-client/0.1";
  // The bearer token for a server started with --tokens (sent as
  // `Authorization: Bearer <token>`). Default: $JOBSTATE_TOKEN, or none.
  std::string token = token_from_environment();

  static std::string token_from_environment();
};

class Client {
 public:
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientOptions& options() const;

  // POST /v1/jobs. With a non-empty idempotency_key, the same key and body
  // return the same job (safe to retry); the same key with another body
  // answers 422 idempotency-key-reused.
  Result<Job> create(const CreateJobRequest& request, const std::string& idempotency_key = "");
  // GET /v1/jobs/{id}; with as_of_seq, the job as of that global event.
  Result<Job> get(const std::string& job_id, std::optional<uint64_t> as_of_seq = std::nullopt);
  // GET /v1/jobs/{id}/wait: answers when the job is terminal (or, with
  // after_version, when its version exceeds it), else after timeout_s
  // (server caps it at 60) with the current job.
  Result<Job> wait(const std::string& job_id, int64_t timeout_s,
                   std::optional<uint64_t> after_version = std::nullopt);
  // GET /v1/jobs, newest first.
  Result<JobPage> list(const ListQuery& query = {});
  // GET /v1/jobs/{id}/events, oldest first, versions after after_version.
  Result<JobEventPage> job_events(const std::string& job_id, uint64_t after_version = 0,
                                  std::optional<int> limit = std::nullopt);
  // GET /v1/events: the global feed after after_seq; wait_s > 0 long-polls
  // while nothing newer exists.
  Result<FeedPage> feed(uint64_t after_seq, std::optional<int> limit = std::nullopt,
                        int64_t wait_s = 0);

  // POST /v1/claims: starts the best claimable job of `types` as `worker`
  // (highest priority, then oldest), waiting up to wait_s (0–60) for one.
  // nullopt when none came (204). The job's lease is in Job::lease, and
  // this client sends it with the job's reports.
  Result<std::optional<Job>> claim(const std::vector<std::string>& types, const std::string& worker,
                                   int64_t wait_s = 0);

  // Transitions. if_match: the version the caller last saw; the server
  // answers 412 version-mismatch when the job moved on. A report on a
  // finished job answers 409 job-terminal with the job's "state" in
  // Problem::body.
  Result<Job> start(const std::string& job_id, const std::string& worker,
                    std::optional<uint64_t> if_match = std::nullopt);
  // Without progress the job keeps the progress it had.
  Result<Job> heartbeat(const std::string& job_id,
                        const std::optional<Progress>& progress = std::nullopt,
                        std::optional<uint64_t> if_match = std::nullopt);
  Result<Job> succeed(const std::string& job_id, const nlohmann::json& result = nullptr,
                      std::optional<uint64_t> if_match = std::nullopt);
  Result<Job> fail(const std::string& job_id, const std::string& code, const std::string& message,
                   const nlohmann::json& details = nullptr,
                   std::optional<uint64_t> if_match = std::nullopt);
  Result<Job> cancel(const std::string& job_id, const std::string& reason = "",
                     std::optional<uint64_t> if_match = std::nullopt);
  Result<Job> cancelled(const std::string& job_id, const std::string& reason = "",
                        std::optional<uint64_t> if_match = std::nullopt);

  // Sends `lease` as Job-Lease with this client's reports on job_id (a
  // client does so by itself for the attempts it started).
  void use_lease(const std::string& job_id, const std::string& lease);

  // GET /v1/audit/head.
  Result<AuditHead> audit_head();
  // GET /healthz and GET /readyz: ok on 200.
  Status healthz();
  Status readyz();

  // Makes every call in flight and every later call return promptly with
  // Problem slug "aborted" (calls in flight notice within about a second).
  // For shutting down a thread blocked in a call. Irreversible.
  void abort_calls();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// "host/pid": how this process names itself as a worker by default.
std::string default_worker_name();

// A random UUID v4 in canonical lowercase form (for Idempotency-Key values).
std::string random_uuid();

}  // namespace jobstate::client
