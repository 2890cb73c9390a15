#include "jobstate/client.h"

#include <curl/curl.h>

#include <cstdlib>
#include <unistd.h>

#include <cctype>
#include <mutex>
#include <random>
#include <unordered_map>

namespace jobstate::client {

using nlohmann::json;

namespace {

// Bodies larger than this are not kept: no endpoint answers with more
// (a list page of 1000 jobs with 1 MiB params each would be the worst case
// and is not what a client wants to buffer anyway).
constexpr size_t kMaxResponseBytes = 64u << 20;

// Problem slugs the client makes up itself (status 0 unless noted).
const char* const kTransport = "transport";
const char* const kAborted = "aborted";
const char* const kBadResponse = "bad-response";

Problem client_problem(int status, const char* slug, std::string detail) {
  Problem p;
  p.status = status;
  p.slug = slug;
  p.detail = std::move(detail);
  return p;
}

// Percent-encodes everything but RFC 3986 unreserved characters: ids and
// query values are caller data and must not change the URL's structure.
std::string url_escape(const std::string& text) {
  static const char* const kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// "?a=1&b=x" from the pairs with a non-empty value.
std::string query_string(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params) {
    if (v.empty()) continue;
    q += q.empty() ? '?' : '&';
    q += k + "=" + url_escape(v);
  }
  return q;
}

std::string job_path(const std::string& job_id) {
  return "/v1/jobs/" + url_escape(job_id);
}

std::string if_match_header(std::optional<uint64_t> version) {
  return version ? "If-Match: \"" + std::to_string(*version) + "\"" : std::string();
}

std::optional<std::string> opt_string(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<std::string>();
}

json member_or_null(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? json() : *it;
}

Job decode_job(const json& j) {
  Job job;
  job.id = j.at("id").get<std::string>();
  job.type = j.at("type").get<std::string>();
  job.state = j.at("state").get<std::string>();
  job.version = j.at("version").get<uint64_t>();
  job.created_at = opt_string(j, "created_at").value_or("");
  job.started_at = opt_string(j, "started_at");
  job.last_heartbeat_at = opt_string(j, "last_heartbeat_at");
  job.finished_at = opt_string(j, "finished_at");
  job.deadline_at = opt_string(j, "deadline_at");
  job.heartbeat_timeout_s = j.value("heartbeat_timeout_s", int64_t{0});
  job.progress = member_or_null(j, "progress");
  job.params = member_or_null(j, "params");
  job.labels = member_or_null(j, "labels");
  job.worker = opt_string(j, "worker");
  job.cancel_requested = j.value("cancel_requested", false);
  job.result = member_or_null(j, "result");
  job.error = member_or_null(j, "error");
  job.raw = j;
  return job;
}

Event decode_event(const json& j) {
  Event e;
  e.seq = j.at("seq").get<uint64_t>();
  e.job_id = j.at("job_id").get<std::string>();
  e.version = j.at("version").get<uint64_t>();
  e.type = j.at("type").get<std::string>();
  e.at = opt_string(j, "at").value_or("");
  e.data = member_or_null(j, "data");
  e.hash = opt_string(j, "hash").value_or("");
  e.raw = j;
  return e;
}

std::vector<Event> decode_events(const json& j) {
  std::vector<Event> events;
  for (const auto& e : j.at("events")) events.push_back(decode_event(e));
  return events;
}

// The answer to one request.
struct HttpAnswer {
  int status = 0;
  std::string body;
  std::string lease;  // the Job-Lease header, when the answer has one
};

// Keeps the Job-Lease header of an answer.
size_t read_header(char* data, size_t size, size_t count, void* user) {
  const size_t n = size * count;
  std::string_view line(data, n);
  constexpr std::string_view kName = "job-lease:";
  if (line.size() > kName.size()) {
    bool match = true;
    for (size_t i = 0; i < kName.size() && match; ++i)
      match = std::tolower(static_cast<unsigned char>(line[i])) == kName[i];
    if (match) {
      line.remove_prefix(kName.size());
      while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
      while (!line.empty() && (line.back() == '\r' || line.back() == '\n' || line.back() == ' '))
        line.remove_suffix(1);
      static_cast<HttpAnswer*>(user)->lease = std::string(line);
    }
  }
  return n;
}

size_t append_body(char* data, size_t size, size_t count, void* user) {
  auto* body = static_cast<std::string*>(user);
  const size_t n = size * count;
  if (body->size() + n > kMaxResponseBytes) return 0;  // makes curl fail the transfer
  body->append(data, n);
  return n;
}

int check_abort(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(user)->load() ? 1 : 0;
}

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

bool Problem::retryable() const {
  if (status == 0) return slug != kAborted;
  return status == 502 || status == 503 || status == 504;
}

std::string Problem::describe() const {
  std::string out = status ? std::to_string(status) + " " : std::string();
  out += slug.empty() ? "error" : slug;
  if (!detail.empty()) out += ": " + detail;
  return out;
}

bool Job::terminal() const {
  return state == "succeeded" || state == "failed" || state == "cancelled";
}

struct Client::Impl {
  ClientOptions options;
  std::string base;  // base_url without a trailing '/'
  std::string authorization;  // the Authorization header line, or ""
  std::atomic<bool> aborted{false};
  std::mutex mu;
  std::vector<CURL*> idle;  // guarded by mu; each keeps its connection alive

  ~Impl() {
    for (CURL* h : idle) curl_easy_cleanup(h);
  }

  CURL* take() {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!idle.empty()) {
        CURL* h = idle.back();
        idle.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }
  void give_back(CURL* h) {
    std::lock_guard<std::mutex> lock(mu);
    idle.push_back(h);
  }

  // One exchange. body: nullopt for GET, the JSON text for POST.
  // extra_wait_ms extends the timeout for long-polls.
  Result<HttpAnswer> perform(const std::string& path, const std::optional<std::string>& body,
                             const std::vector<std::string>& headers, int64_t extra_wait_ms = 0) {
    if (aborted.load()) return client_problem(0, kAborted, "the client was aborted");
    CURL* h = take();
    if (!h) return client_problem(0, kTransport, "curl_easy_init failed");
    curl_easy_reset(h);  // keeps the live connection
    HttpAnswer answer;
    char error_text[CURL_ERROR_SIZE] = {0};
    const std::string url = base + path;
    curl_slist* list = nullptr;
    // Pistache ignores "Expect: 100-continue": without this curl would wait
    // a second before sending any body over 1 KiB.
    list = curl_slist_append(list, "Expect:");
    list = curl_slist_append(list, "Accept: application/json, application/problem+json");
    if (body) list = curl_slist_append(list, "Content-Type: application/json");
    if (!authorization.empty()) list = curl_slist_append(list, authorization.c_str());
    for (const auto& hdr : headers)
      if (!hdr.empty()) list = curl_slist_append(list, hdr.c_str());

    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM from timeouts in threaded programs
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout_ms));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(options.request_timeout_ms + extra_wait_ms));
    curl_easy_setopt(h, CURLOPT_USERAGENT, options.user_agent.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_text);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer.body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, read_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &answer);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, check_abort);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &aborted);
    if (body) {
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->c_str());
    } else {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    const CURLcode rc = curl_easy_perform(h);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(list);
    if (rc != CURLE_OK) {
      // A handle whose transfer failed may hold a half-used connection: drop it.
      curl_easy_cleanup(h);
      if (rc == CURLE_ABORTED_BY_CALLBACK)
        return client_problem(0, kAborted, "the client was aborted");
      std::string why = error_text[0] ? error_text : curl_easy_strerror(rc);
      return client_problem(0, kTransport, url + ": " + why);
    }
    give_back(h);
    answer.status = static_cast<int>(status);
    return answer;
  }

  // A non-2xx answer as a Problem.
  static Problem problem_from(const HttpAnswer& a) {
    Problem p;
    p.status = a.status;
    json j = json::parse(a.body, nullptr, false);
    if (!j.is_discarded() && j.is_object()) {
      p.body = j;
      const std::string type = j.value("type", "");
      const auto slash = type.rfind('/');
      p.slug = slash == std::string::npos ? type : type.substr(slash + 1);
      if (auto t = j.find("title"); t != j.end() && t->is_string()) p.title = *t;
      if (auto d = j.find("detail"); d != j.end() && d->is_string()) p.detail = *d;
    }
    if (p.slug.empty()) {
      p.slug = kBadResponse;
      p.detail = "HTTP " + std::to_string(a.status) + ": " + a.body.substr(0, 200);
    }
    return p;
  }

  // Sends, then decodes a 2xx JSON body with `decode`.
  template <typename T, typename Decode>
  Result<T> call(const std::string& path, const std::optional<std::string>& body,
                 const std::vector<std::string>& headers, int64_t extra_wait_ms, Decode decode,
                 std::string* lease = nullptr) {
    auto a = perform(path, body, headers, extra_wait_ms);
    if (!a) return a.problem();
    if (lease) *lease = a->lease;
    if (a->status < 200 || a->status > 299) return problem_from(*a);
    try {
      json j = json::parse(a->body);
      return decode(j);
    } catch (const json::exception& e) {
      return client_problem(a->status, kBadResponse,
                            std::string("cannot decode the answer to ") + path + ": " + e.what());
    }
  }

  Result<Job> job_call(const std::string& path, const std::optional<std::string>& body,
                       const std::vector<std::string>& headers = {}, int64_t extra_wait_ms = 0) {
    std::string lease;
    auto job = call<Job>(path, body, headers, extra_wait_ms, [](const json& j) {
      return decode_job(j);
    }, &lease);
    if (job && !lease.empty()) job->lease = lease;
    return job;
  }

  // The leases of the attempts this client started, by job id: its reports
  // carry them (Job-Lease) until the job ends.
  std::mutex leases_mu;
  std::unordered_map<std::string, std::string> leases;

  void remember_lease(const std::string& job_id, const Result<Job>& job) {
    if (!job || !job->lease) return;
    std::lock_guard<std::mutex> lock(leases_mu);
    leases[job_id] = *job->lease;
  }
  // A worker's report on job_id: with its lease when this client holds one.
  Result<Job> report(const std::string& job_id, const std::string& action, const json& body,
                     std::optional<uint64_t> if_match);

  Status status_call(const std::string& path) {
    auto a = perform(path, std::nullopt, {});
    if (!a) return a.problem();
    if (a->status != 200) return problem_from(*a);
    return Ok{};
  }
};

std::string ClientOptions::token_from_environment() {
  const char* t = std::getenv("JOBSTATE_TOKEN");
  return t ? std::string(t) : std::string();
}

namespace {
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}
}  // namespace

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>()) {
  global_init_once();
  impl_->options = std::move(options);
  impl_->base = impl_->options.base_url;
  if (!impl_->options.token.empty()) impl_->authorization = "Authorization: Bearer " + impl_->options.token;
  while (!impl_->base.empty() && impl_->base.back() == '/') impl_->base.pop_back();
}

Client::~Client() = default;

const ClientOptions& Client::options() const {
  return impl_->options;
}

void Client::abort_calls() {
  impl_->aborted = true;
}

Result<Job> Client::create(const CreateJobRequest& request, const std::string& idempotency_key) {
  json body = {{"type", request.type}, {"params", request.params}, {"labels", request.labels}};
  if (request.heartbeat_timeout_s) body["heartbeat_timeout_s"] = *request.heartbeat_timeout_s;
  if (request.execution_timeout_s) body["execution_timeout_s"] = *request.execution_timeout_s;
  if (request.queue_timeout_s) body["queue_timeout_s"] = *request.queue_timeout_s;
  if (request.not_before) body["not_before"] = *request.not_before;
  if (request.priority) body["priority"] = *request.priority;
  if (!request.retry.is_null()) body["retry"] = request.retry;
  std::vector<std::string> headers;
  if (!idempotency_key.empty()) headers.push_back("Idempotency-Key: " + idempotency_key);
  return impl_->job_call("/v1/jobs", dump(body), headers);
}

Result<Job> Client::get(const std::string& job_id, std::optional<uint64_t> as_of_seq) {
  std::string q = query_string({{"as_of_seq", as_of_seq ? std::to_string(*as_of_seq) : ""}});
  return impl_->job_call(job_path(job_id) + q, std::nullopt);
}

Result<Job> Client::wait(const std::string& job_id, int64_t timeout_s,
                         std::optional<uint64_t> after_version) {
  if (timeout_s < 0) timeout_s = 0;
  std::string q =
      query_string({{"timeout_s", std::to_string(timeout_s)},
                    {"after_version", after_version ? std::to_string(*after_version) : ""}});
  return impl_->job_call(job_path(job_id) + "/wait" + q, std::nullopt, {}, timeout_s * 1000);
}

Result<JobPage> Client::list(const ListQuery& query) {
  std::string q = query_string({{"state", query.state},
                                {"type", query.type},
                                {"limit", query.limit ? std::to_string(*query.limit) : ""},
                                {"page_token", query.page_token}});
  return impl_->call<JobPage>("/v1/jobs" + q, std::nullopt, {}, 0, [](const json& j) {
    JobPage page;
    for (const auto& job : j.at("jobs")) page.jobs.push_back(decode_job(job));
    page.next_page_token = opt_string(j, "next_page_token");
    return page;
  });
}

Result<JobEventPage> Client::job_events(const std::string& job_id, uint64_t after_version,
                                        std::optional<int> limit) {
  std::string q = query_string({{"after_version", std::to_string(after_version)},
                                {"limit", limit ? std::to_string(*limit) : ""}});
  return impl_->call<JobEventPage>(job_path(job_id) + "/events" + q, std::nullopt, {}, 0,
                                   [](const json& j) {
                                     JobEventPage page;
                                     page.events = decode_events(j);
                                     auto next = j.find("next_after_version");
                                     if (next != j.end() && !next->is_null())
                                       page.next_after_version = next->get<uint64_t>();
                                     return page;
                                   });
}

Result<FeedPage> Client::feed(uint64_t after_seq, std::optional<int> limit, int64_t wait_s) {
  if (wait_s < 0) wait_s = 0;
  std::string q = query_string({{"after_seq", std::to_string(after_seq)},
                                {"limit", limit ? std::to_string(*limit) : ""},
                                {"wait_s", wait_s ? std::to_string(wait_s) : ""}});
  return impl_->call<FeedPage>("/v1/events" + q, std::nullopt, {}, wait_s * 1000,
                               [](const json& j) {
                                 FeedPage page;
                                 page.events = decode_events(j);
                                 page.next_after_seq = j.at("next_after_seq").get<uint64_t>();
                                 return page;
                               });
}

Result<Job> Client::start(const std::string& job_id, const std::string& worker,
                          std::optional<uint64_t> if_match) {
  auto job = impl_->job_call(job_path(job_id) + "/start", dump({{"worker", worker}}),
                             {if_match_header(if_match)});
  impl_->remember_lease(job_id, job);
  return job;
}

Result<Job> Client::Impl::report(const std::string& job_id, const std::string& action,
                                 const json& body, std::optional<uint64_t> if_match) {
  std::string lease_header;
  {
    std::lock_guard<std::mutex> lock(leases_mu);
    if (auto it = leases.find(job_id); it != leases.end()) lease_header = "Job-Lease: " + it->second;
  }
  auto job = job_call(job_path(job_id) + "/" + action, dump(body),
                      {if_match_header(if_match), lease_header});
  const bool ended = job ? job->terminal() || job->state == "queued"
                         : job.problem().slug == "job-terminal" ||
                               job.problem().slug == "lease-mismatch";
  if (ended) {
    std::lock_guard<std::mutex> lock(leases_mu);
    leases.erase(job_id);
  }
  return job;
}

Result<Job> Client::heartbeat(const std::string& job_id, const std::optional<Progress>& progress,
                              std::optional<uint64_t> if_match) {
  json body = json::object();
  if (progress) {
    json p = {{"fraction", nullptr}, {"message", nullptr}, {"details", progress->details}};
    if (progress->fraction) p["fraction"] = *progress->fraction;
    if (progress->message) p["message"] = *progress->message;
    body["progress"] = std::move(p);
  }
  return impl_->report(job_id, "heartbeat", body, if_match);
}

Result<Job> Client::succeed(const std::string& job_id, const nlohmann::json& result,
                            std::optional<uint64_t> if_match) {
  return impl_->report(job_id, "succeed", {{"result", result}}, if_match);
}

Result<Job> Client::fail(const std::string& job_id, const std::string& code,
                         const std::string& message, const nlohmann::json& details,
                         std::optional<uint64_t> if_match) {
  json error = {{"code", code}, {"message", message}, {"details", details}};
  return impl_->report(job_id, "fail", {{"error", error}}, if_match);
}

Result<Job> Client::cancel(const std::string& job_id, const std::string& reason,
                           std::optional<uint64_t> if_match) {
  return impl_->job_call(job_path(job_id) + "/cancel", dump({{"reason", reason}}),
                         {if_match_header(if_match)});
}

Result<Job> Client::cancelled(const std::string& job_id, const std::string& reason,
                              std::optional<uint64_t> if_match) {
  return impl_->report(job_id, "cancelled", {{"reason", reason}}, if_match);
}

Result<std::optional<Job>> Client::claim(const std::vector<std::string>& types,
                                         const std::string& worker, int64_t wait_s) {
  const json body = {{"types", types}, {"worker", worker}, {"wait_s", wait_s}};
  auto a = impl_->perform("/v1/claims", dump(body), {}, wait_s * 1000);
  if (!a) return a.problem();
  if (a->status == 204) return std::optional<Job>();
  if (a->status != 200) return Impl::problem_from(*a);
  try {
    Job job = decode_job(json::parse(a->body));
    if (!a->lease.empty()) {
      job.lease = a->lease;
      use_lease(job.id, a->lease);
    }
    return std::optional<Job>(std::move(job));
  } catch (const json::exception& e) {
    return client_problem(a->status, kBadResponse,
                          std::string("cannot decode the answer to a claim: ") + e.what());
  }
}

void Client::use_lease(const std::string& job_id, const std::string& lease) {
  std::lock_guard<std::mutex> lock(impl_->leases_mu);
  impl_->leases[job_id] = lease;
}

Result<AuditHead> Client::audit_head() {
  return impl_->call<AuditHead>("/v1/audit/head", std::nullopt, {}, 0, [](const json& j) {
    return AuditHead{j.at("seq").get<uint64_t>(), j.at("hash").get<std::string>()};
  });
}

Status Client::healthz() {
  return impl_->status_call("/healthz");
}
Status Client::readyz() {
  return impl_->status_call("/readyz");
}

std::string default_worker_name() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0 || !host[0])
    std::snprintf(host, sizeof host, "localhost");
  return std::string(host) + "/" + std::to_string(getpid());
}

std::string random_uuid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t hi = rng(), lo = rng();
  hi = (hi & ~0xF000ull) | 0x4000ull;                  // version 4
  lo = (lo & ~(0xC000ull << 48)) | (0x8000ull << 48);  // RFC 4122 variant
  char text[37];
  std::snprintf(text, sizeof text, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xFFFF), static_cast<unsigned>(hi & 0xFFFF),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFull));
  return text;
}

}  // namespace jobstate::client
