#include "api/server.h"

#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <fcntl.h>
#include <pistache/peer.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cctype>
#include <cmath>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "api/http_framing.h"
#include "api/open_access.h"
#include "api/outbox.h"
#include "api/problem.h"
#include "api/request_parts.h"
#include "assets/assets.h"
#include "logging/logging.h"
#include "metrics/metrics.h"
#include "domain/json_text.h"
#include "api/request_json.h"
#include "store/lease.h"
#include "store/write_metrics.h"

namespace jobstate::api {

using namespace Pistache;

// Connections open now, the most allowed (set by start()), and whether the
// limit was logged since the count was last below it. Shared: connections
// may be let go after the server.
struct ConnectionGauge {
  std::atomic<int64_t> open{0};
  int64_t max = 1 << 30;
  std::atomic<bool> at_cap{false};
};

struct ApiServer::Context {
  JobWriter& writer;
  const ReadModel& jobs;
  const EventLog& log;
  LongPollRegistry& registry;
  const Watchdog* watchdog;
  const ServerOptions& options;
  const std::atomic<bool>& accepting_writes;
  const Store& store;
  // Writes the answers. Shared: a late answer may come after the server is gone.
  std::shared_ptr<Outbox> outbox = std::make_shared<Outbox>();
  // Connections open now, the most allowed (set by start()), and whether the
  // limit was logged since the count was last below it.
  std::shared_ptr<ConnectionGauge> gauge = std::make_shared<ConnectionGauge>();

  TimeMs server_start_ms() const { return writer.server_start_ms(); }
};

namespace {

using Context = ApiServer::Context;
constexpr size_t kDefaultListLimit = 50;
constexpr size_t kDefaultEventLimit = 100;
constexpr size_t kMaxLimit = 1000;
constexpr int64_t kDefaultWaitS = 30;
// An event page stops growing once its body passes this (docs/api.md).
constexpr size_t kPageBytes = 4u << 20;
// The longest request: its head (api/http_framing.h) and the longest body.
// Longer ones are refused from their head (413 or 400) before being read.
constexpr size_t kMaxRequestBytes = (64u << 10) + kMaxBodyBytes;

const char* const kJsonType = "application/json";
const char* const kProblemType = "application/problem+json";

// True on a reactor thread while it handles a request: answers given then
// are written at once, on that thread; all others go through the outbox's thread.
thread_local bool t_in_handler = false;

const char* const kLinkData = "jobstate.link";
const char* const kGuardData = "jobstate.guard";

// GET /metrics' HTTP figures. Children are found once per thread and kept:
// a request pays a thread-local lookup and two atomic adds.
struct HttpFamilies {
  metrics::CounterFamily& requests = metrics::process().counter(
      "jobstate_http_requests_total", "HTTP requests answered, by method, route template and status code",
      {"method", "route", "code"});
  metrics::HistogramFamily& durations = metrics::process().histogram(
      "jobstate_http_request_duration_seconds",
      "From a request's arrival to its answer (a long-poll's wait included), by method and route template",
      metrics::request_seconds_buckets(), {"method", "route"});
};
HttpFamilies& http_families() {
  static HttpFamilies* f = new HttpFamilies();  // never destroyed: threads may answer at exit
  return *f;
}

void record_http(const char* method, const char* route, int status, double seconds) {
  auto& [requests, durations] = http_families();
  struct Key {
    const char* method;
    const char* route;
    int status;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<const void*>()(k.method) * 31 + std::hash<const void*>()(k.route) * 7 + k.status;
    }
  };
  thread_local std::unordered_map<Key, std::pair<metrics::Counter*, metrics::Histogram*>, KeyHash> cache;
  auto [it, fresh] = cache.try_emplace(Key{method, route, status});
  if (fresh) {
    const std::string code = std::to_string(status);
    it->second = {&requests.with({method, route, code}), &durations.with({method, route})};
  }
  it->second.first->inc();
  it->second.second->observe(seconds);
}

// A request in flight: answered exactly once, from whichever thread finishes it.
class Call {
 public:
  // `request_timeout`: Pistache closes a connection whose answer is later
  // than that (after a 408) without telling the handler.
  Call(const std::shared_ptr<Tcp::Peer>& peer, std::shared_ptr<Link> link, Http::Version version,
       bool head, bool keep_alive, std::chrono::seconds request_timeout,
       std::shared_ptr<Outbox> outbox)
      : peer_(peer),
        link_(std::move(link)),
        version_(version),
        head_(head),
        keep_alive_(keep_alive),
        deadline_(std::chrono::steady_clock::now() + request_timeout - std::chrono::seconds(1)),
        outbox_(std::move(outbox)) {}

  void header(std::string_view name, std::string_view value) {
    headers_ += name;
    headers_ += ": ";
    headers_ += value;
    headers_ += "\r\n";
  }

  // What GET /metrics and the access line file this request under: static
  // strings (the method as Pistache names it, api/request_parts.h's
  // route_template).
  void measure_as(const char* method, const char* route) {
    method_ = method;
    route_ = route;
  }
  // The request's id (X-Request-Id): echoed on the answer, named by its
  // access line (written only when `access_log`).
  void set_request_id(std::string id, bool access_log) {
    header("X-Request-Id", id);
    request_id_ = std::move(id);
    access_log_ = access_log;
  }

  void send(int status, std::string_view body, const char* content_type = kJsonType) {
    if (sent_.exchange(true)) return;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    record_http(method_, route_, status, seconds);
    if (access_log_ && logging::enabled(spdlog::level::info)) {
      // Possibly on another thread than the handler's (a long-poll, a write
      // answered by the writer): the line names the request itself.
      logging::RequestScope scope(request_id_);
      logging::log(spdlog::level::info, "request",
                   {{"method", method_},
                    {"route", route_},
                    {"status", status},
                    {"duration_ms", std::round(seconds * 1e6) / 1e3},
                    {"bytes", head_ ? 0 : body.size()}});
    }
    Answer a{peer_, link_, {}, !keep_alive_, deadline_};
    std::string& wire = a.wire;
    const std::string_view payload = head_ ? std::string_view() : body;
    wire.reserve(160 + headers_.size() + payload.size());
    wire += Http::versionString(version_);
    wire += ' ';
    wire += std::to_string(status);
    wire += ' ';
    wire += Http::codeString(static_cast<Http::Code>(status));
    wire += "\r\n";
    if (status != 304 && status != 204) {
      wire += "Content-Type: ";
      wire += content_type;
      wire += "\r\n";
    }
    wire += headers_;
    // Pistache answers "Connection: Close" to requests without a Connection
    // header, which makes every HTTP/1.1 client reconnect: keep-alive is the default.
    wire += keep_alive_ ? "Connection: Keep-Alive\r\n" : "Connection: Close\r\n";
    if (status != 204) {  // a 204 has no body and no Content-Length (RFC 9110)
      wire += "Content-Length: ";
      wire += std::to_string(payload.size());
      wire += "\r\n";
    }
    wire += "\r\n";
    wire += payload;
    if (t_in_handler)
      outbox_->write_now(std::move(a));
    else
      outbox_->post(std::move(a));
  }

  void problem(const Problem& p) {
    if (p.status == 405) header("Allow", allow_);
    // After a refused body Pistache's parser is out of step with the stream.
    if (p.status == 413) keep_alive_ = false;
    send(p.status, p.body(), kProblemType);
  }
  void error(const Error& e) { problem(problem_from_error(e)); }

  bool sent() const { return sent_.load(); }
  // For Waiter::gone: whether the client's connection has closed.
  // Called when the request parks: a client that leaves now gives it up.
  std::function<bool()> gone_check() const {
    {
      std::lock_guard lock(link_->mu);
      link_->parked = true;
    }
    return [link = link_] {
      std::lock_guard lock(link->mu);
      return !link->open;
    };
  }
  void set_allow(std::string allow) { allow_ = std::move(allow); }
  const std::string& request_id() const { return request_id_; }

 private:
  std::weak_ptr<Tcp::Peer> peer_;
  std::shared_ptr<Link> link_;
  Http::Version version_;
  bool head_;
  bool keep_alive_;
  std::chrono::steady_clock::time_point deadline_;
  std::shared_ptr<Outbox> outbox_;
  std::string headers_;
  std::atomic<bool> sent_{false};
  std::string allow_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  const char* method_ = "unknown";
  const char* route_ = "unparsed";  // refused before it could be routed
  std::string request_id_;
  bool access_log_ = false;
};
using CallPtr = std::shared_ptr<Call>;

// Thrown inside this file only, for bad input found while parsing a request.
struct BadRequest {
  Problem problem;
};
[[noreturn]] void bad_request(std::string detail) {
  throw BadRequest{api::problem("invalid-request", std::move(detail))};
}

// Who sent the request: the token that authenticated it, or none (open
// access). Its name goes into every event the request makes (data.by).
struct Caller {
  std::shared_ptr<const identity::TokenEntry> token;

  std::optional<std::string> by() const {
    if (!token) return std::nullopt;
    return token->name;
  }
  // Whether the token's types pattern lets it touch jobs of this type.
  bool may_touch(std::string_view type) const {
    return !token || identity::types_pattern_matches(token->types, type);
  }
  bool limited_to_types() const { return token && !token->types.empty(); }
};

[[noreturn]] void forbidden_type(const Caller& caller, std::string_view type) {
  throw BadRequest{problem("forbidden", "token '" + caller.token->name + "' may only touch jobs of types '" +
                                            caller.token->types + "', not '" + std::string(type) + "'")};
}

// A query parameter's value, its %XX escapes decoded; 400 for a bad escape.
std::optional<std::string> query_text(const Http::Request& req, const std::string& name) {
  auto raw = req.query().get(name);
  if (!raw) return std::nullopt;
  auto decoded = percent_decode(*raw);
  if (!decoded) bad_request(name + " has a '%' that is not followed by two hex digits");
  return decoded;
}

std::optional<int64_t> query_int(const Http::Request& req, const std::string& name) {
  auto v = query_text(req, name);
  if (!v) return std::nullopt;
  auto n = parse_int64(*v);
  if (!n) bad_request(name + " must be an integer");
  return n;
}

size_t query_limit(const Http::Request& req, size_t default_limit) {
  auto limit = query_int(req, "limit");
  if (!limit) return default_limit;
  if (*limit <= 0) bad_request("limit must be at least 1");
  return static_cast<size_t>(std::min<int64_t>(*limit, kMaxLimit));
}

uint64_t query_non_negative(const Http::Request& req, const std::string& name, uint64_t dflt) {
  auto v = query_int(req, name);
  if (!v) return dflt;
  if (*v < 0) bad_request(name + " must not be negative");
  return static_cast<uint64_t>(*v);
}

int64_t query_wait_s(const Context& ctx, const Http::Request& req, const std::string& name,
                     int64_t dflt) {
  auto v = query_int(req, name);
  if (!v) return dflt;
  if (*v < 0) bad_request(name + " must not be negative");
  return std::min(*v, ctx.options.max_wait_s);
}

JobId path_job_id(std::string_view segment) {
  auto id = JobId::parse(segment);
  if (!id) bad_request("job ids are lowercase UUID v4 (8-4-4-4-12)");
  return *id;
}

std::optional<uint64_t> if_match(const Http::Request& req, const char* name) {
  auto v = header_text(req, name);
  if (!v) return std::nullopt;
  auto version = parse_etag_version(*v);
  if (!version) bad_request(std::string(name) + " must be a quoted job version, e.g. \"3\"");
  return version;
}

std::string etag(uint64_t version) { return "\"" + std::to_string(version) + "\""; }

// Headers every job response carries.
void job_headers(Call& call, uint64_t version, JobStatus status) {
  call.header("ETag", etag(version));
  if (!is_terminal(status)) call.header("Retry-After", "1");
}

void send_job(Call& call, int status, const JobState& s, TimeMs server_start_ms) {
  job_headers(call, s.version, s.status);
  call.send(status, canonical_dump(job_to_json(s, server_start_ms)));
}

void send_row(Call& call, const StatusRow& row, TimeMs server_start_ms, int status = 200) {
  job_headers(call, row.version, row.status);
  if (row.renders_as_stored(server_start_ms)) return call.send(status, row.json_text);
  call.send(status, row.render(server_start_ms));
}

// The answer to a write, from the writer thread. The read model already holds
// the job's row as this batch left it (encoded once, in the batch) in memory:
// use it unless a later command of the same batch moved the job on. Never a
// read that could wait (on PostgreSQL, a round trip per answer on the
// writer's thread).
void send_written(const Context& ctx, Call& call, int status, const JobState& job) {
  auto row = ctx.jobs.recent_row(job.id);
  if (row && row->version == job.version) return send_row(call, *row, ctx.server_start_ms(), status);
  send_job(call, status, job, ctx.server_start_ms());
}

// The job's row (shared, not copied), or nullptr with a 404 already sent.
std::shared_ptr<const StatusRow> row_or_404(const Context& ctx, Call& call, const JobId& id) {
  auto row = ctx.jobs.shared_row(id);
  if (!row) {
    call.error(row.error());
    return nullptr;
  }
  if (!*row) {
    Problem p = problem("job-not-found", "no job with this id");
    p.extra["job_id"] = id.to_string();
    call.problem(p);
    return nullptr;
  }
  return std::move(*row);
}

std::optional<nlohmann::json> json_body(const Http::Request& req) {
  const std::string& body = req.body();
  if (body.size() > kMaxBodyBytes) throw BadRequest{problem("payload-too-large", "request bodies are limited to 1 MiB")};
  if (!body.empty() && !has_json_content_type(req))
    throw BadRequest{problem("unsupported-media-type", "send bodies as Content-Type: application/json")};
  auto parsed = parse_body(body);
  if (!parsed) bad_request(parsed.error().message);
  return std::move(*parsed);
}

// A refused command: the problem, plus the job's current state and version.
void send_refusal(const Context& ctx, Call& call, const JobId& id, const Error& e) {
  Problem p = problem_from_error(e);
  p.extra["job_id"] = id.to_string();
  if (e.code == ErrorCode::kJobTerminal || e.code == ErrorCode::kVersionMismatch ||
      e.code == ErrorCode::kInvalidTransition || e.code == ErrorCode::kLeaseMismatch) {
    if (auto row = ctx.jobs.row(id); row && *row) {
      p.extra["state"] = job_status_name((*row)->status);
      p.extra["version"] = (*row)->version;
    }
  }
  call.problem(p);
}

bool refuse_write_if_stopping(const Context& ctx, Call& call) {
  if (ctx.accepting_writes.load()) return false;
  call.problem(problem("unavailable", "the server is shutting down"));
  return true;
}

// POST /v1/jobs
void create_job(const Context& ctx, const Http::Request& req, const CallPtr& call,
                const Caller& caller) {
  auto cmd = create_job_from_body(json_body(req));
  if (!cmd) bad_request(cmd.error().message);
  if (!caller.may_touch(cmd->type)) forbidden_type(caller, cmd->type);
  if (refuse_write_if_stopping(ctx, *call)) return;
  CommandRequest r;
  r.job_id = JobId::generate();
  r.by = caller.by();
  if (auto key = header_text(req, "Idempotency-Key")) {
    if (key->empty() || key->size() > 255) bad_request("Idempotency-Key must be 1 to 255 characters");
    r.idempotency_key = *key;
    r.request_fingerprint = create_fingerprint(*cmd);
  }
  r.command = std::move(*cmd);
  ctx.writer.submit(std::move(r), [&ctx, call](Result<CommandOutcome> out) {
    if (!out) return call->error(out.error());
    call->header("Location", "/v1/jobs/" + out->state().id.to_string());
    send_written(ctx, *call, 202, out->state());
  });
}

// POST /v1/jobs/{id}/<action>
void transition(const Context& ctx, const Http::Request& req, const CallPtr& call,
                const JobId& id, std::string_view action, const Caller& caller) {
  auto cmd = transition_from_body(action, json_body(req));
  if (!cmd) bad_request(cmd.error().message);
  auto expected = if_match(req, "If-Match");
  if (refuse_write_if_stopping(ctx, *call)) return;
  CommandRequest r{id, std::move(*cmd), expected, std::nullopt, {}};
  r.by = caller.by();
  // A worker's reports carry its attempt's lease; a start makes a new one.
  if (action != "cancel")
    if (auto lease = header_text(req, "Job-Lease")) {
      if (lease->empty() || lease->size() > 128) bad_request("Job-Lease must be 1 to 128 characters");
      r.lease_hash = lease_hash(*lease);
    }
  std::optional<std::string> lease;
  if (auto* start = std::get_if<StartJob>(&r.command)) {
    lease = new_lease();
    start->lease_hash = lease_hash(*lease);
  }
  ctx.writer.submit(std::move(r), [&ctx, call, id, lease](Result<CommandOutcome> out) {
    if (!out) return send_refusal(ctx, *call, id, out.error());
    if (lease) call->header("Job-Lease", *lease);
    send_written(ctx, *call, 200, out->state());
  });
}

// GET /v1/jobs/{id}
void get_job(const Context& ctx, const Http::Request& req, const CallPtr& call, const JobId& id) {
  if (auto as_of = query_int(req, "as_of_seq")) {
    if (*as_of < 0) bad_request("as_of_seq must not be negative");
    const uint64_t n = static_cast<uint64_t>(*as_of);
    // This node's writer may not have heard of another node's newest commit
    // yet: only the log's own head can say a seq is beyond the newest event.
    if (n > ctx.writer.committed_head().seq) {
      auto head = ctx.log.head();
      if (!head) return call->error(head.error());
      if (n > head->seq) bad_request("as_of_seq is beyond the newest event");
    }
    std::optional<JobState> state;
    std::optional<Error> err;
    Status s = ctx.log.scan_job(id, 0, SIZE_MAX, [&](const StoredEventView& v) {
      if (v.seq > n) return false;
      auto e = v.to_event();
      auto next = e ? apply(state ? &*state : nullptr, *e) : Result<JobState>(e.error());
      if (!next) {
        err = next.error();
        return false;
      }
      state = std::move(*next);
      return true;
    });
    if (!s) return call->error(s.error());
    if (err) return call->error(*err);
    if (!state) {
      Problem p = problem("job-not-found", "the job did not exist at as_of_seq");
      p.extra["job_id"] = id.to_string();
      return call->problem(p);
    }
    return send_job(*call, 200, *state, 0);
  }
  auto row = row_or_404(ctx, *call, id);
  if (!row) return;
  if (auto none_match = if_match(req, "If-None-Match"); none_match && *none_match == row->version) {
    job_headers(*call, row->version, row->status);
    return call->send(304, "");
  }
  send_row(*call, *row, ctx.server_start_ms());
}

// GET /v1/jobs/{id}/wait
void wait_job(const Context& ctx, const Http::Request& req, const CallPtr& call, const JobId& id) {
  const int64_t timeout_s = query_wait_s(ctx, req, "timeout_s", kDefaultWaitS);
  std::optional<uint64_t> after_version;
  if (req.query().has("after_version")) after_version = query_non_negative(req, "after_version", 0);
  auto row = row_or_404(ctx, *call, id);
  if (!row) return;
  auto satisfied = [&](const StatusRow& r) {
    return is_terminal(r.status) || (after_version && r.version > *after_version);
  };
  if (satisfied(*row) || timeout_s == 0) return send_row(*call, *row, ctx.server_start_ms());

  auto w = std::make_shared<Waiter>();
  w->gone = call->gone_check();
  w->kind = Waiter::Kind::kJob;
  w->job_id = id;
  w->after_version = after_version;
  w->deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  w->answer = [&ctx, call, id](const JobState* committed) {
    if (committed) return send_job(*call, 200, *committed, ctx.server_start_ms());
    if (auto fresh = row_or_404(ctx, *call, id)) send_row(*call, *fresh, ctx.server_start_ms());
  };
  if (!ctx.registry.park(w))
    return call->problem(problem("unavailable", "too many requests are waiting; retry later"));
  // A commit between the first read and park() would have been missed: look again.
  auto again = ctx.jobs.shared_row(id);
  if (again && *again && satisfied(**again) && ctx.registry.claim(*w))
    send_row(*call, **again, ctx.server_start_ms());
}

// GET /v1/jobs
void list_jobs(const Context& ctx, const Http::Request& req, const CallPtr& call) {
  ListFilter filter;
  if (auto s = query_text(req, "state")) {
    filter.status = parse_job_status(*s);
    if (!filter.status) bad_request("state must be one of queued, running, succeeded, failed, cancelled");
  }
  if (auto t = query_text(req, "type")) {
    if (!is_valid_job_type(*t)) bad_request("type must be 1 to 128 of A-Za-z0-9._:-");
    filter.type = *t;
  }
  const size_t limit = query_limit(req, kDefaultListLimit);
  std::optional<uint64_t> before;
  if (auto token = query_text(req, "page_token")) {
    auto n = parse_int64(*token);
    if (!n || *n < 1) bad_request("page_token is not one this server issued");
    before = static_cast<uint64_t>(*n);
  }
  auto page = ctx.jobs.list(filter, before, limit);
  if (!page) return call->error(page.error());
  std::string body = "{\"jobs\":[";
  for (size_t i = 0; i < page->jobs.size(); ++i) {
    if (i) body += ',';
    body += page->jobs[i].render(ctx.server_start_ms());
  }
  body += "],\"next_page_token\":";
  body += page->next_before_seq ? "\"" + std::to_string(*page->next_before_seq) + "\"" : "null";
  body += '}';
  call->send(200, body);
}

// GET /v1/jobs/{id}/events
void job_events(const Context& ctx, const Http::Request& req, const CallPtr& call, const JobId& id) {
  const uint64_t after = query_non_negative(req, "after_version", 0);
  const size_t limit = query_limit(req, kDefaultEventLimit);
  if (!row_or_404(ctx, *call, id)) return;
  // Bounded by bytes as well as count: events may be up to 1 MiB each.
  std::string body = "{\"events\":[";
  uint64_t last_version = after;
  size_t taken = 0;
  bool more = false;
  Status s = ctx.log.scan_job(id, after, limit + 1, [&](const StoredEventView& v) {
    if (taken == limit || (taken > 0 && body.size() >= kPageBytes)) {
      more = true;
      return false;
    }
    if (taken++) body += ',';
    body += v.json_text();
    last_version = v.version;
    return true;
  });
  if (!s) return call->error(s.error());
  body += "],\"next_after_version\":";
  body += more ? std::to_string(last_version) : "null";
  body += '}';
  call->send(200, body);
}

// The body of GET /v1/events for (after_seq, after_seq + limit].
Result<std::string> feed_page(const Context& ctx, uint64_t after_seq, size_t limit) {
  std::string body = "{\"events\":[";
  uint64_t last = after_seq;
  bool first = true;
  const uint64_t until = after_seq + limit;
  Status s = ctx.log.scan(after_seq, until, [&](const StoredEventView& v) {
    // Bounded by bytes as well as count (at least one event a page): the
    // client goes on from next_after_seq.
    if (!first && body.size() >= kPageBytes) return false;
    if (!first) body += ',';
    first = false;
    body += v.json_text();
    last = v.seq;
    return true;
  });
  if (!s) return s.error();
  body += "],\"next_after_seq\":" + std::to_string(last) + "}";
  return body;
}

// GET /v1/events
void feed(const Context& ctx, const Http::Request& req, const CallPtr& call) {
  const uint64_t after = query_non_negative(req, "after_seq", 0);
  const size_t limit = query_limit(req, kDefaultEventLimit);
  const int64_t wait_s = query_wait_s(ctx, req, "wait_s", 0);
  auto answer = [&ctx, call, after, limit] {
    auto body = feed_page(ctx, after, limit);
    if (!body) return call->error(body.error());
    call->send(200, *body);
  };
  if (wait_s == 0 || ctx.writer.committed_head().seq > after) return answer();
  auto w = std::make_shared<Waiter>();
  w->gone = call->gone_check();
  w->kind = Waiter::Kind::kFeed;
  w->after_seq = after;
  w->deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
  w->answer = [answer](const JobState*) { answer(); };
  if (!ctx.registry.park(w))
    return call->problem(problem("unavailable", "too many requests are waiting; retry later"));
  if (ctx.writer.committed_head().seq > after && ctx.registry.claim(*w)) answer();
}

// POST /v1/claims: one attempt to claim; parks the claim (no thread) while
// nothing is claimable and its wait lasts, and tries again when a job of its
// types is queued or the earliest not_before among them comes.
struct ClaimSpec {
  std::vector<std::string> types;
  std::string worker;
  std::optional<std::string> by;
  std::chrono::steady_clock::time_point until;
};

void try_claim(const Context& ctx, const CallPtr& call, std::shared_ptr<const ClaimSpec> spec) {
  if (refuse_write_if_stopping(ctx, *call)) return;
  CommandRequest r;
  r.claim_types = spec->types;
  r.by = spec->by;
  const std::string lease = new_lease();
  r.command = StartJob{spec->worker, lease_hash(lease)};
  ctx.writer.submit(std::move(r), [&ctx, call, spec, lease](Result<CommandOutcome> out) {
    if (!out) return call->error(out.error());
    if (out->job) {
      call->header("Job-Lease", lease);
      return send_written(ctx, *call, 200, *out->job);
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= spec->until) return call->send(204, "");
    const uint64_t seen = ctx.writer.committed_head().seq;
    auto w = std::make_shared<Waiter>();
    w->gone = call->gone_check();
    w->kind = Waiter::Kind::kClaim;
    w->types = spec->types;
    w->deadline = spec->until;
    if (out->next_claimable_ms) {
      const auto wait = std::chrono::milliseconds(
          std::max<TimeMs>(0, *out->next_claimable_ms - SystemClock().now_ms()));
      w->deadline = std::min(w->deadline, now + wait);
    }
    w->answer = [&ctx, call, spec](const JobState*) { try_claim(ctx, call, spec); };
    if (!ctx.registry.park(w))
      return call->problem(problem("unavailable", "too many requests are waiting; retry later"));
    // A job queued after this attempt but before the park woke nobody: try
    // again at once (callbacks may submit: they run outside the writer's lock).
    if (ctx.writer.committed_head().seq > seen && ctx.registry.claim(*w))
      try_claim(ctx, call, spec);
  });
}

void claim_job(const Context& ctx, const Http::Request& req, const CallPtr& call,
               const Caller& caller) {
  auto claim = claim_from_body(json_body(req));
  if (!claim) bad_request(claim.error().message);
  for (const auto& type : claim->types)
    if (!caller.may_touch(type)) forbidden_type(caller, type);
  for (const auto& type : claim->types)
    for (const auto& e : ctx.options.executor_types)
      if (e == type)
        bad_request("jobs of type '" + type + "' are run by a built-in executor: claims never take them");
  auto spec = std::make_shared<ClaimSpec>();
  spec->types = std::move(claim->types);
  spec->worker = std::move(claim->worker);
  spec->by = caller.by();
  spec->until = std::chrono::steady_clock::now() +
                std::chrono::seconds(std::min(claim->wait_s, ctx.options.max_wait_s));
  try_claim(ctx, call, std::move(spec));
}

// The store's head, read from the log: on a store several nodes share, this
// node's writer may not have heard of the newest commit yet, and the head an
// auditor publishes must cover every acknowledged write, wherever it was made.
void audit_head(const Context& ctx, const CallPtr& call) {
  auto head = ctx.log.head();
  if (!head) return call->error(head.error());
  call->send(200, nlohmann::json{{"seq", head->seq}, {"hash", head->hash}}.dump());
}

// GET /v1/webhooks: each endpoint's cursor, lag and last error.
void webhooks_status(const Context& ctx, const CallPtr& call) {
  if (!ctx.options.webhooks_status) return call->send(200, "{\"webhooks\":[]}");
  auto body = ctx.options.webhooks_status();
  if (!body) return call->error(body.error());
  call->send(200, *body);
}

// GET /metrics: the process' counters and histograms, then gauges read now.
void send_metrics(const Context& ctx, Call& call) {
  std::string out = metrics::process().render();
  metrics::SampleWriter w(out);
  w.declare("jobstate_jobs", "gauge", "Jobs by state and type, as the status projection has them now");
  if (auto counts = ctx.jobs.count_jobs()) {
    for (const JobCount& c : *counts)
      w.sample("jobstate_jobs", {{"state", job_status_name(c.status)}, {"type", c.type}},
               static_cast<double>(c.count));
  } else {
    spdlog::warn("metrics: counting jobs failed: {}", counts.error().message);
  }
  w.declare("jobstate_log_head_seq", "gauge", "seq of the newest durable event (the audit head)");
  w.sample("jobstate_log_head_seq", {}, static_cast<double>(ctx.writer.committed_head().seq));
  w.declare("jobstate_store_writable", "gauge",
            "1 while the store takes writes; 0 while it refuses them (disk full, a failed write)");
  w.sample("jobstate_store_writable", {},
           ctx.writer.write_health().state == WriteHealth::State::kOk ? 1.0 : 0.0);
  w.declare("jobstate_long_polls_parked", "gauge",
            "Requests parked in a long-poll (/wait, /events?wait_s, claims with wait_s)");
  w.sample("jobstate_long_polls_parked", {}, static_cast<double>(ctx.registry.parked()));
  w.declare("jobstate_http_connections_open", "gauge", "HTTP connections open now");
  w.sample("jobstate_http_connections_open", {}, static_cast<double>(ctx.gauge->open.load()));
  w.declare("jobstate_http_connections_max", "gauge", "The most HTTP connections served at once (--max-connections)");
  w.sample("jobstate_http_connections_max", {}, static_cast<double>(ctx.gauge->max));
  ctx.store.collect_metrics(w);
  call.send(200, out, "text/plain; version=0.0.4; charset=utf-8");
}

void readiness(const Context& ctx, const CallPtr& call) {
  const bool watchdog_ok = ctx.watchdog && ctx.watchdog->running();
  const bool accepting = ctx.accepting_writes.load();
  const WriteHealth store = ctx.writer.write_health();
  const bool ready = watchdog_ok && accepting && store.ok();
  nlohmann::json body = {{"status", ready ? "ready" : "not-ready"},
                         {"store", write_health_name(store.state)},
                         {"watchdog", watchdog_ok ? "running" : "stopped"},
                         {"accepting_writes", accepting && store.ok()}};
  if (!ready) {
    std::string reason = !store.ok() ? store.reason
                         : !accepting ? "the server is shutting down"
                                      : "the watchdog is not running";
    body["reason"] = std::move(reason);
  }
  call->send(ready ? 200 : 503, body.dump());
}

// The token of an `Authorization: Bearer <token>` value (scheme in any
// case), or nullopt when the header is something else.
std::optional<std::string_view> bearer_token(std::string_view header) {
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size()) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return std::nullopt;
  auto token = header.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

// With tokens: who the request comes from, or nullopt with a 401 sent.
std::optional<Caller> authenticate(const Context& ctx, const Http::Request& req, Call& call) {
  auto header = header_text(req, "Authorization");
  auto token = header ? bearer_token(*header) : std::nullopt;
  if (!token) {
    call.header("WWW-Authenticate", "Bearer realm=\"jobstate\"");
    call.problem(problem("unauthorized", "send a token: Authorization: Bearer <token>"));
    return std::nullopt;
  }
  auto entry = ctx.options.tokens->authenticate(*token);
  if (!entry) {
    call.header("WWW-Authenticate", "Bearer realm=\"jobstate\", error=\"invalid_token\"");
    call.problem(problem("unauthorized", "this token is not one the server knows (or it was revoked)"));
    return std::nullopt;
  }
  return Caller{std::move(entry)};
}

// The 403 detail when the caller's role does not allow `action`, or nullopt.
std::optional<std::string> role_refusal(const Caller& caller, identity::Action action) {
  if (!caller.token || identity::role_allows(caller.token->role, action)) return std::nullopt;
  return "this request needs the " + identity::roles_allowing(action) + " role; token '" +
         caller.token->name + "' has role " + identity::role_name(caller.token->role);
}

// A file compiled into the binary (the dashboard, the OpenAPI contract):
// open like the probes (it holds no data; the dashboard's own API calls
// carry the user's token), revalidated by ETag, never sniffed or framed.
void send_asset(const Http::Request& req, Call& call) {
  const assets::Asset* a = assets::find(req.resource());
  if (!a) return call.problem(problem("not-found", "no resource at this path"));
  call.header("ETag", a->etag);
  call.header("Cache-Control", "no-cache");
  call.header("X-Content-Type-Options", "nosniff");
  if (a->content_type.starts_with("text/html")) {
    call.header("Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                "frame-ancestors 'none'");
    call.header("X-Frame-Options", "DENY");
    call.header("Referrer-Policy", "no-referrer");
  }
  auto inm = header_text(req, "If-None-Match");
  if (inm && inm->find(a->etag) != std::string_view::npos) return call.send(304, "");
  const std::string type(a->content_type);
  call.send(200, a->body, type.c_str());
}

// Routes a request. Returns the Allow value when the path exists but the
// method does not fit ("" for unknown paths), after answering otherwise.
void dispatch(const Context& ctx, const Http::Request& req, const CallPtr& call) {
  const auto m = req.method();
  const bool get = m == Http::Method::Get || m == Http::Method::Head;
  const bool post = m == Http::Method::Post;
  auto p = split_path(req.resource());
  auto not_allowed = [&](const char* allow) {
    call->set_allow(allow);
    call->problem(problem("method-not-allowed", "this resource allows " + std::string(allow)));
  };
  auto n = p.size();
  if (n == 1 && (p[0] == "healthz" || p[0] == "readyz")) {
    if (!get) return not_allowed("GET, HEAD");
    if (p[0] == "healthz") return call->send(200, "{\"status\":\"ok\"}");
    return readiness(ctx, call);
  }
  if ((n >= 1 && p[0] == "ui") || (n == 1 && p[0] == "openapi.yaml")) {
    if (!get) return not_allowed("GET, HEAD");
    return send_asset(req, *call);
  }
  const bool metrics_path = n == 1 && p[0] == "metrics";
  if (metrics_path && ctx.options.open_metrics) {  // serve --open-metrics: no token needed
    if (!get) return not_allowed("GET, HEAD");
    return send_metrics(ctx, *call);
  }
  Caller caller;
  if (ctx.options.tokens) {
    auto who = authenticate(ctx, req, *call);
    if (!who) return;
    caller = std::move(*who);
  } else {
    // Open access (no tokens): the probes above answer anyone who reaches
    // them; everything else only what no browser page could have sent.
    OpenAccessRequest open;
    open.changes_state = !get && m != Http::Method::Options;
    open.host = header_text(req, "Host");
    open.origin = header_text(req, "Origin");
    open.content_type = header_text(req, "Content-Type");
    open.content_type_is_json = has_json_content_type(req);
    open.has_body = !req.body().empty();
    if (auto why = open_access_refusal(open, ctx.options.any_host))
      return call->problem(problem("forbidden", *why));
  }
  // True when the caller may do `action`; else answers 403.
  auto permitted = [&](identity::Action action) {
    auto why = role_refusal(caller, action);
    if (why) call->problem(problem("forbidden", *why));
    return !why;
  };
  // A token limited to some types touches a job only if its type fits; an
  // unknown job is left to the handler's 404.
  auto job_in_reach = [&](const JobId& id) {
    if (!caller.limited_to_types()) return;
    auto row = ctx.jobs.shared_row(id);
    if (!row || !*row) return;
    const std::string type = (*row)->type();
    if (!caller.may_touch(type)) forbidden_type(caller, type);
  };
  using identity::Action;
  if (metrics_path) {  // every role may read
    if (!get) return not_allowed("GET, HEAD");
    return send_metrics(ctx, *call);
  }
  if (n >= 2 && p[0] == "v1") {
    if (n == 2 && p[1] == "jobs") {
      if (post) return permitted(Action::kSubmit) ? create_job(ctx, req, call, caller) : void();
      if (get) {
        if (caller.limited_to_types()) {
          auto type = query_text(req, "type");
          if (!type) bad_request("token '" + caller.token->name + "' may only list jobs of types '" +
                                 caller.token->types + "': add ?type=");
          if (!caller.may_touch(*type)) forbidden_type(caller, *type);
        }
        return list_jobs(ctx, req, call);
      }
      return not_allowed("GET, HEAD, POST");
    }
    if (n == 2 && p[1] == "events") {
      if (!get) return not_allowed("GET, HEAD");
      if (caller.limited_to_types())
        return call->problem(problem("forbidden", "token '" + caller.token->name +
                                                      "' is limited to some job types: the "
                                                      "whole event feed is not for it"));
      return feed(ctx, req, call);
    }
    if (n == 2 && p[1] == "claims") {
      if (!post) return not_allowed("POST");
      return permitted(Action::kWork) ? claim_job(ctx, req, call, caller) : void();
    }
    if (n == 3 && p[1] == "audit" && p[2] == "head") {
      if (!get) return not_allowed("GET, HEAD");
      return audit_head(ctx, call);
    }
    if (n == 2 && p[1] == "webhooks") {
      if (!get) return not_allowed("GET, HEAD");
      return webhooks_status(ctx, call);
    }
    if (p[1] == "jobs" && (n == 3 || n == 4)) {
      if (n == 3) {
        if (!get) return not_allowed("GET, HEAD");
        const JobId id = path_job_id(p[2]);
        job_in_reach(id);
        return get_job(ctx, req, call, id);
      }
      if (p[3] == "wait" || p[3] == "events") {
        if (!get) return not_allowed("GET, HEAD");
        const JobId id = path_job_id(p[2]);
        job_in_reach(id);
        return p[3] == "wait" ? wait_job(ctx, req, call, id) : job_events(ctx, req, call, id);
      }
      if (is_transition(p[3])) {
        if (!post) return not_allowed("POST");
        const JobId id = path_job_id(p[2]);
        if (!permitted(p[3] == "cancel" ? Action::kSubmit : Action::kWork)) return;
        job_in_reach(id);
        return transition(ctx, req, call, id, p[3], caller);
      }
    }
  }
  call->problem(problem("not-found", "no resource at this path"));
}

// A connection: its Link, plus what its requests need off the reactor thread.
struct Connection : Link {
  const Context* ctx = nullptr;
  std::weak_ptr<Tcp::Peer> peer;
  // The parser for requests resumed off the reactor thread (Pistache's own
  // parser for the peer is read by its reaper on the reactor thread).
  std::unique_ptr<Http::RequestParser> own_parser;

  void resume(const std::shared_ptr<Link>& self) override;
};

bool is_connection_close(const Http::Request& req) {
  auto c = req.headers().tryGet<Http::Header::Connection>();
  if (c) return c->control() == Http::ConnectionControl::Close;
  return req.version() == Http::Version::Http10;
}

// The problem for a request Pistache's parser refused (its text is not ours
// to show).
Problem parse_refusal(int code) {
  if (code == 415) return problem("unsupported-media-type", "the Content-Type header could not be read");
  if (code == 413) return problem("payload-too-large", "request bodies are limited to 1 MiB");
  return problem("invalid-request",
                 "the request line or a header is malformed (methods: GET, HEAD, POST, ...; versions: "
                 "HTTP/1.0, HTTP/1.1)");
}

// A static name per method, for labels.
const char* method_label(Http::Method m) {
  switch (m) {
    case Http::Method::Get: return "GET";
    case Http::Method::Head: return "HEAD";
    case Http::Method::Post: return "POST";
    case Http::Method::Put: return "PUT";
    case Http::Method::Delete: return "DELETE";
    case Http::Method::Patch: return "PATCH";
    case Http::Method::Options: return "OPTIONS";
    default: return "other";
  }
}

// Answers a refusal that ends the connection (nothing after it can be framed).
void refuse(const Context& ctx, const std::shared_ptr<Connection>& conn,
            const std::shared_ptr<Tcp::Peer>& peer, const Problem& p) {
  auto call = std::make_shared<Call>(peer, conn, Http::Version::Http11, false, false,
                                     std::chrono::seconds(ctx.options.request_timeout_s), ctx.outbox);
  call->set_request_id(logging::new_request_id(), ctx.options.access_log);
  call->problem(p);
}

// One whole request: parse it with Pistache's parser and dispatch it.
void handle_request(const Context& ctx, const std::shared_ptr<Connection>& conn,
                    const std::shared_ptr<Tcp::Peer>& peer, Http::RequestParser& parser,
                    std::string_view bytes) {
  // Afterwards the parser lets go of the request (an idle connection keeps
  // no buffer), and its clock restarts (Pistache's idle and 408 timeouts).
  struct Reset {
    Http::RequestParser& p;
    ~Reset() { p.reset(); }
  } reset{parser};
  Http::Private::State state = Http::Private::State::Again;
  try {
    if (parser.feed(bytes.data(), bytes.size())) state = parser.parse();
  } catch (const Http::HttpError& e) {
    return refuse(ctx, conn, peer, parse_refusal(e.code()));
  } catch (const std::exception&) {
    return refuse(ctx, conn, peer, parse_refusal(400));
  }
  if (state != Http::Private::State::Done) return refuse(ctx, conn, peer, parse_refusal(400));
  const Http::Request& req = parser.request;
  if (peer) peer->setIdle(false);
  auto call = std::make_shared<Call>(peer, conn, req.version(), req.method() == Http::Method::Head,
                                     !is_connection_close(req),
                                     std::chrono::seconds(ctx.options.request_timeout_s), ctx.outbox);
  call->measure_as(method_label(req.method()), route_template(split_path(req.resource())));
  auto sent_id = header_text(req, "X-Request-Id");
  auto id = sent_id ? logging::accept_request_id(*sent_id) : std::nullopt;
  call->set_request_id(id ? std::move(*id) : logging::new_request_id(), ctx.options.access_log);
  logging::RequestScope scope(call->request_id());
  // The one place where anything thrown while handling becomes a response.
  try {
    dispatch(ctx, req, call);
  } catch (const BadRequest& e) {
    call->problem(e.problem);
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", Http::methodString(req.method()), req.resource(), e.what());
    call->problem(problem("internal-error", "the server failed to handle this request"));
  } catch (...) {
    call->problem(problem("internal-error", "the server failed to handle this request"));
  }
}

// Frames and dispatches the requests in `in` (then in conn->pending), one at
// a time. REQUIRES: the caller holds conn->busy. `in` may point into
// `storage`, which this may reuse.
void serve_requests(const Context& ctx, const std::shared_ptr<Connection>& conn,
                    const std::shared_ptr<Tcp::Peer>& peer, Http::RequestParser& parser, std::string_view in,
                    std::string& storage) {
  // Answers given while this runs are written at once, on this thread.
  struct InHandler {
    bool before = t_in_handler;
    InHandler() { t_in_handler = true; }
    ~InHandler() { t_in_handler = before; }
  } in_handler;
  FramingLimits limits;
  limits.max_body = kMaxBodyBytes;
  for (;;) {
    const Frame f = next_request(in, limits);
    if (f.kind == Frame::Kind::kIncomplete) {
      std::lock_guard lock(conn->mu);
      if (conn->closed) {
        conn->pending.clear();
        conn->busy = false;
        return;
      }
      if (conn->pending.empty()) {
        // Keep the bytes without copying them again when they are storage's tail.
        if (!storage.empty() && in.data() >= storage.data() && in.data() <= storage.data() + storage.size()) {
          storage.erase(0, static_cast<size_t>(in.data() - storage.data()));
          conn->pending.swap(storage);
        } else {
          conn->pending.assign(in);
        }
        conn->busy = false;
        return;
      }
      // More arrived while we were busy: go on with it.
      std::string more;
      more.reserve(in.size() + conn->pending.size());
      more.append(in);
      more.append(conn->pending);
      conn->pending.clear();
      storage.swap(more);
      in = storage;
      continue;
    }
    if (f.kind == Frame::Kind::kRefused) {
      {
        std::lock_guard lock(conn->mu);
        conn->unanswered = true;
      }
      Problem p = f.status == 413 ? problem("payload-too-large", f.detail) : problem("invalid-request", f.detail);
      refuse(ctx, conn, peer, p);
      std::lock_guard lock(conn->mu);
      conn->pending.clear();
      if (conn->unanswered && !conn->closed) {
        conn->waiting = true;  // its writer closes the connection
        return;
      }
      conn->busy = false;
      return;
    }
    {
      std::lock_guard lock(conn->mu);
      conn->unanswered = true;
    }
    handle_request(ctx, conn, peer, parser, in.substr(0, f.size));
    in.remove_prefix(f.size);
    std::lock_guard lock(conn->mu);
    if (conn->closed) {
      conn->pending.clear();
      conn->busy = false;
      return;
    }
    if (conn->unanswered) {
      // Answered later: the rest waits for that answer (Outbox, Link::resume).
      if (!in.empty()) conn->pending.insert(0, in);
      conn->waiting = true;
      return;
    }
    if (in.empty() && conn->pending.empty()) {
      conn->busy = false;
      return;
    }
  }
}

void Connection::resume(const std::shared_ptr<Link>& self) {
  auto conn = std::static_pointer_cast<Connection>(self);
  std::string storage;
  {
    std::lock_guard lock(mu);
    storage.swap(pending);
  }
  if (!own_parser) own_parser = std::make_unique<Http::RequestParser>(kMaxRequestBytes);
  serve_requests(*ctx, conn, peer.lock(), *own_parser, storage, storage);
}

// Lives in the peer's data, so it dies with Pistache's peer, however the
// connection ends: the client's close (onDisconnection), or Pistache's idle
// and 408 reapers, which close the descriptor without telling the handler
// (the peer goes just before its descriptor is closed).
struct PeerGuard {  // (never copied: made in place)
  std::shared_ptr<ConnectionGauge> gauge;
  std::shared_ptr<Link> link;
  ~PeerGuard() {
    {
      std::lock_guard lock(link->mu);
      link->open = false;
      if (!link->owns_fd) link->fd = -1;  // never write to a descriptor Pistache closed
    }
    const int64_t n = --gauge->open;
    if (n < gauge->max * 9 / 10 && gauge->at_cap.exchange(false))
      spdlog::info("{} connections open: below the limit again", n);
  }
};

class Handler : public Http::Handler {
 public:
  HTTP_PROTOTYPE(Handler)
  explicit Handler(Context* ctx) : ctx_(ctx) {}

  // Requests never reach Pistache's own framing (onInput below).
  void onRequest(const Http::Request&, Http::ResponseWriter) override {}

  // On the reactor thread that owns the connection, before it is polled.
  void onConnection(const std::shared_ptr<Tcp::Peer>& peer) override {
    // What Pistache's own onConnection does: its reaper reads every peer's parser.
    peer->putData(ParserData, std::make_shared<Http::RequestParser>(kMaxRequestBytes));
    auto conn = std::make_shared<Connection>();
    conn->ctx = ctx_;
    conn->peer = peer;
    conn->fd = peer->fd();
    peer->putData(kLinkData, conn);
    ++ctx_->gauge->open;
    peer->putData(kGuardData, std::shared_ptr<PeerGuard>(new PeerGuard{ctx_->gauge, conn}));
    // Not in a request: the idle (keep-alive) timeout applies, not the 408 one.
    peer->setIdle(true);
    if (ctx_->gauge->open.load() <= ctx_->gauge->max) return;
    if (!ctx_->gauge->at_cap.exchange(true))
      spdlog::warn("{} connections open, the limit (--max-connections): new connections get 503 until some close",
                   ctx_->gauge->max);
    // Refused at once: a 503 if the socket takes it, and the descriptor back.
    static const std::string wire = [] {
      const std::string body =
          problem("unavailable", "too many connections are open; retry later").body();
      return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nRetry-After: "
             "1\r\nConnection: Close\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\n\r\n" + body;
    }();
    (void)!::send(peer->fd(), wire.data(), wire.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(peer->fd(), SHUT_RDWR);
    std::lock_guard lock(conn->mu);
    conn->closed = true;
  }

  // On the reactor thread: the bytes Pistache read from the connection.
  void onInput(const char* buffer, size_t len, const std::shared_ptr<Tcp::Peer>& peer) override {
    auto conn = std::static_pointer_cast<Connection>(peer->tryGetData(kLinkData));
    if (!conn) return;
    std::string_view in(buffer, len);
    std::string storage;
    {
      std::lock_guard lock(conn->mu);
      if (conn->closed) return;  // refused: what follows is not read
      if (conn->busy) {
        // A request is in hand: this waits for its answer. Bounded like one
        // request (beyond that the client is not waiting for answers).
        if (conn->pending.size() + len > kMaxRequestBytes) {
          conn->pending.clear();
          conn->closed = true;
          if (conn->fd >= 0) ::shutdown(conn->fd, SHUT_RDWR);
          return;
        }
        conn->pending.append(in);
        return;
      }
      conn->busy = true;
      if (!conn->pending.empty()) {
        storage.swap(conn->pending);
        storage.append(in);
        in = storage;
      }
    }
    serve_requests(*ctx_, conn, peer, *getParser(peer), in, storage);
  }

  // On the reactor thread, just before Pistache closes the descriptor.
  void onDisconnection(const std::shared_ptr<Tcp::Peer>& peer) override {
    if (auto conn = std::static_pointer_cast<Link>(peer->tryGetData(kLinkData))) {
      std::lock_guard lock(conn->mu);
      conn->open = false;
      // An answer still owed (a half-closed request): keep a descriptor of our own.
      int own = conn->busy && !conn->parked && !conn->closed && conn->fd >= 0
                    ? ::fcntl(conn->fd, F_DUPFD_CLOEXEC, 0)
                    : -1;
      conn->fd = own;
      conn->owns_fd = own >= 0;
    }
    Http::Handler::onDisconnection(peer);
  }

 private:
  Context* ctx_;
};

// What Pistache itself has to say (warnings and worse), as lines of the
// server's log in its format (logging/logging.h), not raw text on stderr.
class PistacheLines final : public Pistache::Log::StringLogger {
 public:
  void log(Pistache::Log::Level level, const std::string& message) override {
    logging::log(level >= Pistache::Log::Level::ERROR ? spdlog::level::err : spdlog::level::warn,
                 "pistache: " + message);
  }
  bool isEnabledFor(Pistache::Log::Level level) const override {
    return level >= Pistache::Log::Level::WARN;
  }
};

}  // namespace

ApiServer::ApiServer(Store& store, LongPollRegistry& registry, const Watchdog* watchdog,
                     ServerOptions options)
    : options_(std::move(options)) {
  ctx_.reset(new Context{store.writer(), store.read_model(), store.log(), registry, watchdog,
                         options_, accepting_writes_, store});
  // Every family exists before the first scrape, so a scraper sees them all.
  http_families();
  write_metrics::declare();
}

ApiServer::~ApiServer() { shutdown(); }

uint64_t raise_descriptor_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  return rl.rlim_cur == RLIM_INFINITY ? uint64_t{1} << 20 : static_cast<uint64_t>(rl.rlim_cur);
}

int64_t connection_limit(int64_t requested, uint64_t descriptor_limit) {
  // Descriptors kept for the store, its files, clients, webhooks and timers.
  const uint64_t reserve = std::max<uint64_t>(128, descriptor_limit / 4);
  const int64_t fit =
      descriptor_limit > reserve + 16 ? static_cast<int64_t>(descriptor_limit - reserve) : 16;
  if (requested <= 0) return std::min<int64_t>(fit, 10000);
  return std::min(requested, fit);
}

Status ApiServer::start() {
  rlimit rl{};
  const uint64_t descriptors = ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                                   ? static_cast<uint64_t>(rl.rlim_cur)
                                   : uint64_t{1} << 20;
  ctx_->gauge->max = connection_limit(options_.max_connections, descriptors);
  if (options_.max_connections > ctx_->gauge->max)
    spdlog::warn("--max-connections {} does not fit the descriptor limit ({}): at most {} connections",
                 options_.max_connections, descriptors, ctx_->gauge->max);
  try {
    Address addr(options_.host, Port(options_.port));
    endpoint_ = std::make_unique<Http::Endpoint>(addr);
    auto opts = Http::Endpoint::options()
                    .threads(options_.threads)
                    .flags(Tcp::Options::ReuseAddr)
                    .maxRequestSize(kMaxRequestBytes)
                    .maxResponseSize(64u << 20)
                    .headerTimeout(std::chrono::seconds(options_.request_timeout_s))
                    .bodyTimeout(std::chrono::seconds(options_.request_timeout_s))
                    .keepaliveTimeout(std::chrono::seconds(options_.idle_timeout_s))
                    .logger(std::make_shared<PistacheLines>());
    endpoint_->init(opts);
    endpoint_->setHandler(Http::make_handler<Handler>(ctx_.get()));
    endpoint_->serveThreaded();
  } catch (const std::exception& e) {
    endpoint_.reset();
    return make_error(ErrorCode::kUnavailable, "cannot listen on " + options_.host + ":" +
                                                   std::to_string(options_.port) + ": " + e.what());
  }
  return ok_status();
}

uint16_t ApiServer::port() const { return endpoint_ ? static_cast<uint16_t>(endpoint_->getPort()) : 0; }

void ApiServer::shutdown() {
  accepting_writes_ = false;
  if (endpoint_) {
    // Write the answers already given (a bounded wait: a client that stopped
    // reading must not hold up the exit).
    ctx_->outbox->close(std::chrono::seconds(2));
    endpoint_->shutdown();
    endpoint_.reset();
  }
}

}  // namespace jobstate::api
