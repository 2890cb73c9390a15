// A webhook receiver for tests: a tiny HTTP/1.1 server on 127.0.0.1 that
// records every request it reads completely (headers and body) and answers
// each with the status a test-chosen function picks (200 by default). It can
// be stopped (connections closed, nothing listening: connect is refused) and
// started again on the same port, to play an endpoint that dies and comes
// back. Every wait is bounded (100 ms polls, 5 s per request).
//
// Also: verify_standard_webhook(), the receiver's side of the signature.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"  // HeaderMap

namespace jobstate::testing {

struct ReceivedRequest {
  std::string method;
  std::string path;
  HeaderMap headers;
  std::string body;
  int answered = 0;  // the status sent back; 0 when the connection was dropped instead

  // The seq of the event the request carried (0 when the body is not one).
  uint64_t seq() const {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.contains("event")) return 0;
    return j["event"].value("seq", uint64_t{0});
  }
  // Whether the receiver acknowledged it (a 2xx).
  bool acked() const { return answered >= 200 && answered < 300; }
};

class WebhookReceiver {
 public:
  // How to answer the n-th request (0-based, counting every request read).
  // Returning 0 drops the connection without an answer.
  using Responder = std::function<int(const ReceivedRequest&, size_t n)>;

  WebhookReceiver() { start(); }
  ~WebhookReceiver() { stop(); }
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  void set_responder(Responder r) {
    std::lock_guard lock(mu_);
    responder_ = std::move(r);
  }
  uint16_t port() const { return port_; }
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  // Every request read so far, in arrival order.
  std::vector<ReceivedRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

  // Listens (again) on 127.0.0.1, on the same port as before if there was one.
  void start() {
    if (listen_fd_ >= 0) return;
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    bool bound = false;
    for (int i = 0; i < 100 && !bound; ++i) {  // the old port may linger briefly
      bound = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      if (!bound) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!bound || ::listen(listen_fd_, 64) != 0)
      throw std::runtime_error("receiver: cannot listen");
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    stopping_ = false;
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  // Closes the listener and every connection (a request being read or
  // answered is cut off), as a receiver that died would.
  void stop() {
    if (listen_fd_ < 0) return;
    stopping_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    std::vector<std::thread> conns;
    {
      std::lock_guard lock(mu_);
      conns.swap(connections_);
    }
    for (auto& t : conns) t.join();
    ::close(listen_fd_);
    listen_fd_ = -1;
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard lock(mu_);
      connections_.emplace_back([this, fd] { serve_connection(fd); });
    }
  }

  // Reads requests off one kept-alive connection until it closes or the
  // receiver stops.
  void serve_connection(int fd) {
    std::string buffer;
    while (!stopping_) {
      ReceivedRequest req;
      if (!read_request(fd, buffer, req)) break;
      Responder responder;
      size_t n;
      {
        std::lock_guard lock(mu_);
        responder = responder_;
        n = requests_.size();
        requests_.push_back(req);
      }
      const int status = responder ? responder(req, n) : 200;
      if (status == 0 || stopping_) break;
      const std::string answer =
          "HTTP/1.1 " + std::to_string(status) +
          " Answer\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
      {
        std::lock_guard lock(mu_);
        requests_[n].answered = status;
      }
      if (::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(answer.size()))
        break;
    }
    ::close(fd);
  }

  // One whole request (headers, then Content-Length bytes of body).
  bool read_request(int fd, std::string& buffer, ReceivedRequest& req) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    size_t header_end;
    while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      if (!read_some(fd, buffer, deadline)) return false;
    }
    const std::string head = buffer.substr(0, header_end);
    buffer.erase(0, header_end + 4);
    size_t line_end = head.find("\r\n");
    const std::string request_line = head.substr(0, line_end);
    const size_t sp1 = request_line.find(' ');
    const size_t sp2 = request_line.find(' ', sp1 + 1);
    req.method = request_line.substr(0, sp1);
    req.path = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t content_length = 0;
    while (line_end != std::string::npos) {
      const size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line =
          head.substr(start, line_end == std::string::npos ? std::string::npos : line_end - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      req.headers[name] = value;
      std::string lower = name;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      if (lower == "content-length") content_length = std::stoul(value);
    }
    while (buffer.size() < content_length)
      if (!read_some(fd, buffer, deadline)) return false;
    req.body = buffer.substr(0, content_length);
    buffer.erase(0, content_length);
    return true;
  }

  bool read_some(int fd, std::string& buffer, std::chrono::steady_clock::time_point deadline) {
    while (!stopping_ && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      const int r = ::poll(&p, 1, 100);
      if (r == 0) continue;
      if (r < 0) return false;
      char chunk[4096];
      const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
      if (got <= 0) return false;
      buffer.append(chunk, static_cast<size_t>(got));
      return true;
    }
    return false;
  }

  mutable std::mutex mu_;
  Responder responder_;
  std::vector<ReceivedRequest> requests_;
  std::vector<std::thread> connections_;
  std::atomic<bool> stopping_{false};
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread acceptor_;
};

// What a receiver does (Standard Webhooks), written apart from
// webhooks/signature.h with OpenSSL's own base64: decode the secret after
// "whsec_", HMAC-SHA256 "<webhook-id>.<webhook-timestamp>.<raw body>" with
// it, and find "v1,<base64 of that>" among the space-separated signatures
// of webhook-signature.
inline ::testing::AssertionResult verify_standard_webhook(const ReceivedRequest& r,
                                                          const std::string& secret) {
  for (const char* h : {"webhook-id", "webhook-timestamp", "webhook-signature"})
    if (!r.headers.count(h)) return ::testing::AssertionFailure() << "no " << h << " header";
  const std::string b64 = secret.substr(6);
  std::string key(b64.size(), '\0');
  const int decoded = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(key.data()),
                                      reinterpret_cast<const unsigned char*>(b64.data()),
                                      static_cast<int>(b64.size()));
  if (decoded < 0) return ::testing::AssertionFailure() << "bad test secret";
  key.resize(static_cast<size_t>(decoded) - std::count(b64.begin(), b64.end(), '='));
  const std::string signed_content =
      r.headers.at("webhook-id") + "." + r.headers.at("webhook-timestamp") + "." + r.body;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(signed_content.data()), signed_content.size(), mac,
       &mac_len);
  std::string encoded(4 * ((mac_len + 2) / 3) + 1, '\0');
  encoded.resize(static_cast<size_t>(EVP_EncodeBlock(
      reinterpret_cast<unsigned char*>(encoded.data()), mac, static_cast<int>(mac_len))));
  const std::string expected = "v1," + encoded;
  const std::string& got = r.headers.at("webhook-signature");
  size_t from = 0;
  while (from <= got.size()) {
    const size_t to = got.find(' ', from);
    if (got.substr(from, to - from) == expected) return ::testing::AssertionSuccess();
    if (to == std::string::npos) break;
    from = to + 1;
  }
  return ::testing::AssertionFailure() << "signature " << got << " != " << expected;
}

}  // namespace jobstate::testing
