// A small blocking HTTP client for the API tests, on libcurl.
//
// One HttpClient owns one CURL easy handle and reuses it for every request,
// so consecutive requests travel on the same kept-alive connection when the
// server allows it (that is what the keep-alive test checks). Not
// thread-safe: give each thread its own client.
//
// With JOBSTATE_CONTRACT_LOG=<dir> set, every response is also appended to
// the contract log (see ContractLog below), which the contract test
// validates against docs/openapi.yaml.
//
// Requests never carry `Expect: 100-continue` (Pistache ignores it and the
// client would stall for a second on large bodies) and carry no Connection
// header unless the caller adds one: the server must keep the connection open
// by default.
#pragma once

#include <curl/curl.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace jobstate::testing {

// Header names compare case-insensitively (RFC 9110).
struct CaseInsensitiveLess {
  bool operator()(const std::string& a, const std::string& b) const {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
      return std::tolower(static_cast<unsigned char>(x)) < std::tolower(static_cast<unsigned char>(y));
    });
  }
};
using HeaderMap = std::map<std::string, std::string, CaseInsensitiveLess>;

struct HttpResponse {
  // 0 when the transfer failed (curl_error says why).
  long status = 0;
  HeaderMap headers;  // the last value of each header of the final response
  std::string body;
  std::string curl_error;
  // libcurl's view of the connection that carried the request.
  long new_connections = 0;  // CURLINFO_NUM_CONNECTS: 0 when an open one was reused
  long local_port = 0;       // CURLINFO_LOCAL_PORT

  bool has_header(const std::string& name) const { return headers.count(name) != 0; }
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
  // The body parsed as JSON; a null json (and a test failure) when it is not JSON.
  nlohmann::json json() const {
    auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      ADD_FAILURE() << "response body is not JSON (status " << status << "): " << body.substr(0, 300);
      return nlohmann::json();
    }
    return j;
  }
};

// The contract log: when JOBSTATE_CONTRACT_LOG names a directory, one JSON
// line per response, {test, method, path (without the query), status,
// content_type, headers (names in lowercase), body}, appended to
// <dir>/responses-<pid>.jsonl. tests/contract/validate.mjs checks each
// against docs/openapi.yaml (ctest: contract.responses_match_openapi).
// Thread-safe and cheap: the file is opened once per process with O_APPEND
// and each line is one write(2), so lines of concurrent threads and
// processes never interleave.
class ContractLog {
 public:
  static void record(const std::string& method, const std::string& path, long status,
                     const HeaderMap& headers, const std::string& body) {
    const int fd = descriptor();
    if (fd < 0 || status == 0) return;
    nlohmann::json line;
    if (const auto* test = ::testing::UnitTest::GetInstance()->current_test_info())
      line["test"] = std::string(test->test_suite_name()) + "." + test->name();
    line["method"] = method;
    line["path"] = path.substr(0, path.find_first_of("?#"));
    line["status"] = status;
    nlohmann::json lower = nlohmann::json::object();
    std::string content_type;
    for (const auto& [name, value] : headers) {
      std::string n = name;
      for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (n == "content-type") content_type = value;
      lower[n] = value;
    }
    line["content_type"] = content_type;
    line["headers"] = std::move(lower);
    line["body"] = body;
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text += '\n';
    if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      ADD_FAILURE() << "contract log: short write";
  }

 private:
  // The log's descriptor, or -1 when JOBSTATE_CONTRACT_LOG is not set.
  static int descriptor() {
    static const int fd = [] {
      const char* dir = std::getenv("JOBSTATE_CONTRACT_LOG");
      if (!dir || !*dir) return -1;
      const std::string file = std::string(dir) + "/responses-" + std::to_string(::getpid()) + ".jsonl";
      const int f = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (f < 0) ADD_FAILURE() << "contract log: cannot open " << file;
      return f;
    }();
    return fd;
  }
};

class HttpClient {
 public:
  // base_url: "http://127.0.0.1:PORT".
  explicit HttpClient(std::string base_url) : base_url_(std::move(base_url)) {
    static std::once_flag init;
    std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    curl_ = curl_easy_init();
    if (!curl_) throw std::runtime_error("curl_easy_init failed");
  }
  ~HttpClient() { curl_easy_cleanup(curl_); }
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Every request then carries `Authorization: Bearer <token>` (unless it
  // passes its own Authorization header); "" for none.
  void set_token(std::string token) { token_ = std::move(token); }

  // Longest a single request may take, in seconds (long-polls need more than the default).
  void set_timeout_s(long seconds) { timeout_s_ = seconds; }
  const std::string& base_url() const { return base_url_; }

  // `headers` are "Name: value" lines. A non-empty body without an explicit
  // Content-Type header is sent as application/json; pass "Content-Type:" to
  // send none at all.
  HttpResponse request(const std::string& method, const std::string& path,
                       const std::vector<std::string>& headers = {},
                       const std::optional<std::string>& body = std::nullopt) {
    HttpResponse r;
    curl_easy_reset(curl_);  // keeps the connection cache: reuse still happens
    const std::string url = base_url_ + path;
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT, timeout_s_);
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl_, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(curl_, CURLOPT_PATH_AS_IS, 1L);
    if (method == "HEAD") {
      curl_easy_setopt(curl_, CURLOPT_NOBODY, 1L);
    } else if (method != "GET") {
      curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method.c_str());
    }
    if (body) {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    } else if (method == "POST") {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, "");
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
    }

    curl_slist* list = nullptr;
    bool has_content_type = false;
    bool has_lease = false;
    bool has_authorization = false;
    for (const auto& h : headers) {
      list = curl_slist_append(list, h.c_str());
      has_content_type = has_content_type || starts_with_ci(h, "content-type:");
      has_lease = has_lease || starts_with_ci(h, "job-lease:");
      has_authorization = has_authorization || starts_with_ci(h, "authorization:");
    }
    if (!token_.empty() && !has_authorization)
      list = curl_slist_append(list, ("Authorization: Bearer " + token_).c_str());
    // Like a worker, a report carries the lease its attempt was started with
    // (unless the test passes its own Job-Lease, or "Job-Lease:" for none).
    const std::string report_of = reported_job(method, path);
    if (!report_of.empty() && !has_lease)
      if (auto lease = leases().find(report_of); !lease.empty())
        list = curl_slist_append(list, ("Job-Lease: " + lease).c_str());
    if (body && !body->empty() && !has_content_type)
      list = curl_slist_append(list, "Content-Type: application/json");
    // An empty POST: no type at all (curl's default is a form's, which a
    // server without tokens refuses as a browser page's write).
    if ((!body || body->empty()) && method == "POST" && !has_content_type)
      list = curl_slist_append(list, "Content-Type:");
    list = curl_slist_append(list, "Expect:");  // no 100-continue
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, list);

    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &HttpClient::on_body);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &HttpClient::on_header);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &r.headers);

    CURLcode rc = curl_easy_perform(curl_);
    curl_slist_free_all(list);
    if (rc != CURLE_OK) {
      r.curl_error = curl_easy_strerror(rc);
      r.status = 0;
      curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
      return r;
    }
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(curl_, CURLINFO_NUM_CONNECTS, &r.new_connections);
    curl_easy_getinfo(curl_, CURLINFO_LOCAL_PORT, &r.local_port);
    remember_lease(method, path, r);
    ContractLog::record(method, path, r.status, r.headers, r.body);
    return r;
  }

  // The leases the server handed out (Job-Lease on start and claim
  // answers), by job id, shared by every HttpClient of the process.
  class LeaseBook {
   public:
    std::string find(const std::string& id) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = leases_.find(id);
      return it == leases_.end() ? std::string() : it->second;
    }
    void put(const std::string& id, const std::string& lease) {
      std::lock_guard<std::mutex> lock(mu_);
      leases_[id] = lease;
    }

   private:
    std::mutex mu_;
    std::map<std::string, std::string> leases_;
  };
  static LeaseBook& leases() {
    static LeaseBook book;
    return book;
  }

  HttpResponse get(const std::string& path, const std::vector<std::string>& headers = {}) {
    return request("GET", path, headers);
  }
  HttpResponse post(const std::string& path, const std::optional<std::string>& body = std::nullopt,
                    const std::vector<std::string>& headers = {}) {
    return request("POST", path, headers, body);
  }
  HttpResponse post_json(const std::string& path, const nlohmann::json& body,
                         const std::vector<std::string>& headers = {}) {
    return request("POST", path, headers, body.dump());
  }

 private:
  static bool starts_with_ci(const std::string& s, const std::string& prefix) {
    if (s.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    return true;
  }

  // The job id when method and path are a worker's report on it.
  static std::string reported_job(const std::string& method, const std::string& path) {
    if (method != "POST" || path.rfind("/v1/jobs/", 0) != 0) return {};
    const size_t slash = path.find('/', 9);
    if (slash == std::string::npos) return {};
    std::string action = path.substr(slash + 1);
    action = action.substr(0, action.find('?'));
    for (const char* a : {"heartbeat", "succeed", "fail", "cancelled"})
      if (action == a) return path.substr(9, slash - 9);
    return {};
  }

  static void remember_lease(const std::string& method, const std::string& path,
                             const HttpResponse& r) {
    if (method != "POST" || r.status != 200 || !r.has_header("Job-Lease")) return;
    if (path.rfind("/v1/jobs/", 0) == 0) {
      const size_t slash = path.find('/', 9);
      if (slash != std::string::npos) leases().put(path.substr(9, slash - 9), r.header("Job-Lease"));
    } else if (path == "/v1/claims") {
      auto j = nlohmann::json::parse(r.body, nullptr, false);
      if (j.is_object() && j.contains("id")) leases().put(j["id"].get<std::string>(), r.header("Job-Lease"));
    }
  }

  static size_t on_body(char* data, size_t size, size_t n, void* user) {
    static_cast<std::string*>(user)->append(data, size * n);
    return size * n;
  }

  // Keeps the headers of the final response only (a new status line clears them).
  static size_t on_header(char* data, size_t size, size_t n, void* user) {
    auto* headers = static_cast<HeaderMap*>(user);
    std::string line(data, size * n);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
    if (line.rfind("HTTP/", 0) == 0) {
      headers->clear();
      return size * n;
    }
    auto colon = line.find(':');
    if (colon == std::string::npos) return size * n;
    std::string name = line.substr(0, colon);
    std::string value = line.substr(colon + 1);
    size_t first = value.find_first_not_of(" \t");
    value = first == std::string::npos ? std::string() : value.substr(first);
    (*headers)[name] = value;
    return size * n;
  }

  std::string base_url_;
  CURL* curl_ = nullptr;
  long timeout_s_ = 20;
  std::string token_;
};

// An RFC 9457 problem response with this status and slug.
inline ::testing::AssertionResult is_problem(const HttpResponse& r, long status, const std::string& slug) {
  if (r.status != status)
    return ::testing::AssertionFailure() << "status " << r.status << " (want " << status << "), body "
                                         << r.body << (r.curl_error.empty() ? "" : ", curl: " + r.curl_error);
  if (r.header("Content-Type").rfind("application/problem+json", 0) != 0)
    return ::testing::AssertionFailure() << "Content-Type '" << r.header("Content-Type") << "'";
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return ::testing::AssertionFailure() << "body " << r.body;
  if (j.value("type", "") != "/problems/" + slug)
    return ::testing::AssertionFailure() << "type " << j.value("type", "") << " (want " << slug << ")";
  if (j.value("status", 0) != status) return ::testing::AssertionFailure() << "status member " << j["status"];
  if (!j.contains("title") || !j["title"].is_string() || !j.contains("detail") || !j["detail"].is_string())
    return ::testing::AssertionFailure() << "title/detail missing: " << r.body;
  return ::testing::AssertionSuccess();
}

}  // namespace jobstate::testing
