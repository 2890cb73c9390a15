#include "webhooks/http_poster.h"

#include <curl/curl.h>

#include <cstring>
#include <mutex>

namespace jobstate::webhooks {

namespace {

size_t discard_body(char* /*data*/, size_t size, size_t count, void* /*user*/) {
  return size * count;
}

int check_abort(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<std::atomic<bool>*>(user)->load() ? 1 : 0;
}

// libcurl's own message may repeat the URL (and so a password in it): only
// the generic texts and errno are used.
std::string describe(CURLcode code, CURL* curl, long timeout_ms) {
  long os_errno = 0;
  curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
  switch (code) {
    case CURLE_COULDNT_CONNECT:
      return std::string("connect: ") +
             (os_errno ? std::strerror(static_cast<int>(os_errno)) : "cannot connect");
    case CURLE_COULDNT_RESOLVE_HOST:
      return "resolve: host not found";
    case CURLE_OPERATION_TIMEDOUT:
      return "timed out after " + std::to_string(timeout_ms / 1000) + " s";
    case CURLE_ABORTED_BY_CALLBACK:
      return "abandoned: stopping";
    default:
      if (os_errno)
        return std::string(curl_easy_strerror(code)) + ": " +
               std::strerror(static_cast<int>(os_errno));
      return curl_easy_strerror(code);
  }
}

}  // namespace

HttpPoster::HttpPoster(long timeout_ms) : timeout_ms_(timeout_ms) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  curl_ = curl_easy_init();
}

HttpPoster::~HttpPoster() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

PostOutcome HttpPoster::post(const std::string& url, const std::vector<std::string>& headers,
                             const std::string& body) {
  PostOutcome out;
  CURL* curl = static_cast<CURL*>(curl_);
  if (!curl) {
    out.error = "libcurl: cannot create a handle";
    return out;
  }
  if (aborted_) {
    out.error = "abandoned: stopping";
    return out;
  }
  curl_easy_reset(curl);  // keeps the connection cache
  curl_slist* list = nullptr;
  list = curl_slist_append(list, "Content-Type: application/json");
  list = curl_slist_append(list, "User-Agent: jobstate-webhooks");
  list = curl_slist_append(list, "Expect:");
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms_);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms_);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, check_abort);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &aborted_);
  const CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(list);
  if (code != CURLE_OK) {
    out.error = describe(code, curl, timeout_ms_);
    return out;
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
  if (out.status < 200 || out.status > 299) out.error = "HTTP " + std::to_string(out.status);
  return out;
}

}  // namespace jobstate::webhooks
