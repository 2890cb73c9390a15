// A bare TCP client on 127.0.0.1, for what libcurl will not send or will not
// show: broken HTTP, slow readers, and whether the server closes a connection.
#pragma once

#include <arpa/inet.h>
#include <cctype>
#include <cstdlib>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace jobstate::testing {

class RawSocket {
 public:
  // `receive_buffer_bytes` > 0 shrinks the socket's receive buffer (and so
  // the window the server may fill) before connecting.
  explicit RawSocket(uint16_t port, int receive_buffer_bytes = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer_bytes > 0)
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof receive_buffer_bytes);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~RawSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  bool connected() const { return connected_; }
  void send(const std::string& s) { (void)!::send(fd_, s.data(), s.size(), MSG_NOSIGNAL); }
  // Whatever arrives within `wait_ms`, or until the server closes the
  // connection (then peer_closed() is true).
  std::string read_for(int wait_ms) {
    std::string out;
    char buf[4096];
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        peer_closed_ = n == 0;
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  // Reads until `count` whole responses arrived (see parse_responses), the
  // server closed the connection, or `wait_ms` passed.
  std::string read_responses(size_t count, int wait_ms);
  bool peer_closed() const { return peer_closed_; }
  // Half-closes: the server sees the end of the request stream.
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  void close() {
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool peer_closed_ = false;
};

// One HTTP response read off the wire; header names in lower case.
struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
};

// The whole responses at the front of `wire` (each with a Content-Length,
// as the server's are); `rest`, when given, gets what follows them.
inline std::vector<RawResponse> parse_responses(const std::string& wire, std::string* rest = nullptr) {
  std::vector<RawResponse> out;
  size_t pos = 0;
  for (;;) {
    const size_t end = wire.find("\r\n\r\n", pos);
    if (end == std::string::npos || wire.compare(pos, 5, "HTTP/") != 0) break;
    RawResponse r;
    r.status = std::atoi(wire.c_str() + pos + 9);
    size_t line = wire.find("\r\n", pos) + 2;
    while (line < end + 2) {
      const size_t eol = wire.find("\r\n", line);
      const size_t colon = wire.find(':', line);
      if (colon < eol) {
        std::string name = wire.substr(line, colon - line);
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        size_t v = colon + 1;
        while (v < eol && wire[v] == ' ') ++v;
        r.headers[name] = wire.substr(v, eol - v);
      }
      line = eol + 2;
    }
    const size_t length = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
    if (wire.size() < end + 4 + length) break;
    r.body = wire.substr(end + 4, length);
    out.push_back(std::move(r));
    pos = end + 4 + length;
  }
  if (rest) *rest = wire.substr(pos);
  return out;
}

inline std::string RawSocket::read_responses(size_t count, int wait_ms) {
  std::string out;
  char buf[65536];
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (std::chrono::steady_clock::now() < end && parse_responses(out).size() < count) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      peer_closed_ = n == 0;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace jobstate::testing
