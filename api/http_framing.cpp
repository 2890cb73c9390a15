#include "api/http_framing.h"

#include <cstdint>
#include <cstring>

namespace jobstate::api {

namespace {

bool iequals(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

Frame refuse(int status, const char* detail) {
  Frame f;
  f.kind = Frame::Kind::kRefused;
  f.status = status;
  f.detail = detail;
  return f;
}

}  // namespace

Frame next_request(std::string_view bytes, const FramingLimits& limits) {
  // The end of the head. Only the first max_head bytes (+3 for a CRLF CRLF
  // straddling the limit) are searched: a client cannot make us rescan more.
  const std::string_view window = bytes.substr(0, limits.max_head);
  const size_t end = window.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (bytes.size() >= limits.max_head)
      return refuse(400, "the request line and headers are limited to 64 KiB");
    return {};
  }
  const size_t head_size = end + 4;
  const std::string_view head = bytes.substr(0, end + 2);  // each line with its CRLF

  bool has_length = false;
  uint64_t length = 0;
  size_t pos = head.find("\r\n") + 2;  // past the request line
  while (pos < head.size()) {
    const size_t eol = head.find("\r\n", pos);
    const std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.front() == ' ' || line.front() == '\t')
      return refuse(400, "folded header lines (obs-fold) are not accepted");
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return refuse(400, "a header line has no ':'");
    const std::string_view name = line.substr(0, colon);
    if (name.empty() || name.back() == ' ' || name.back() == '\t')
      return refuse(400, "a header name is empty or followed by whitespace");
    if (iequals(name, "transfer-encoding"))
      return refuse(400, "Transfer-Encoding is not supported: send the body with a Content-Length");
    if (!iequals(name, "content-length")) continue;
    if (has_length) return refuse(400, "more than one Content-Length");
    has_length = true;
    const std::string_view value = trim_ows(line.substr(colon + 1));
    if (value.empty()) return refuse(400, "Content-Length is empty");
    if (value.size() > 18) return refuse(400, "Content-Length is out of range");
    for (char c : value) {
      if (c < '0' || c > '9')
        return refuse(400, "Content-Length must be a single number of decimal digits, without a sign");
      length = length * 10 + static_cast<uint64_t>(c - '0');
    }
  }
  if (length > limits.max_body) return refuse(413, "request bodies are limited to 1 MiB");
  if (bytes.size() - head_size < length) return {};
  Frame f;
  f.kind = Frame::Kind::kRequest;
  f.head_size = head_size;
  f.size = head_size + static_cast<size_t>(length);
  return f;
}

}  // namespace jobstate::api
