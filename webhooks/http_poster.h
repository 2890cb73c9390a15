// HttpPoster: POSTs one webhook delivery with libcurl and says how it went.
// One per endpoint: it keeps its connection open between deliveries.
//
// Thread safety: one thread at a time per object; abort() from any thread.
#pragma once

#include <atomic>
#include <string>
#include <vector>

namespace jobstate::webhooks {

struct PostOutcome {
  long status = 0;    // the HTTP status; 0 when no answer came
  std::string error;  // empty on a 2xx; else a short reason ("HTTP 500",
                      // "connect: Connection refused", "timed out after 10 s")
  bool ok() const { return error.empty(); }
};

class HttpPoster {
 public:
  explicit HttpPoster(long timeout_ms);
  ~HttpPoster();
  HttpPoster(const HttpPoster&) = delete;
  HttpPoster& operator=(const HttpPoster&) = delete;

  // POSTs `body` as application/json with `headers` ("Name: value"). Follows
  // no redirect (a 3xx is a failure). Blocks for at most the timeout, or
  // until abort() is called.
  PostOutcome post(const std::string& url, const std::vector<std::string>& headers,
                   const std::string& body);

  // Makes the post in flight (and every later one) give up within about a
  // second.
  void abort() { aborted_ = true; }

 private:
  void* curl_;  // CURL*
  long timeout_ms_;
  std::atomic<bool> aborted_{false};
};

}  // namespace jobstate::webhooks
