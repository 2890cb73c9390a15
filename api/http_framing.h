// HTTP/1.1 request framing: where each request on a connection ends, decided
// from the bytes alone, before any parser sees them (RFC 9112 §6).
//
// Pistache 0.0.5 frames requests itself but takes only the first of several
// that arrive together, trusts any Content-Length (signed, negative, repeated
// or 20 digits long reach std::stoull and the client), and turns a body over
// its buffer into "new requests". The server frames every request here, and
// hands Pistache's parser exactly one whole request at a time.
//
// Rules (strict on purpose; docs/api.md "The HTTP edge"):
// - the head (request line and headers) ends at the first CRLF CRLF and is
//   at most `max_head` bytes;
// - at most one Content-Length, 1 to 18 ASCII digits, no sign, no list;
// - no Transfer-Encoding at all (chunked included): bodies need a length;
// - a Content-Length over `max_body` is refused with 413 from the head
//   alone: the body is never read;
// - no whitespace before a header's colon, no obsolete line folding.
// A refusal is final for the connection: the bytes after it cannot be
// framed.
//
// Pure, allocation-free, thread-safe.
#pragma once

#include <cstddef>
#include <string_view>

namespace jobstate::api {

struct FramingLimits {
  size_t max_head = 64u << 10;
  size_t max_body = 1u << 20;
};

struct Frame {
  enum class Kind {
    kIncomplete,  // more bytes needed (nothing can be said yet)
    kRequest,     // bytes [0, size) are one whole request
    kRefused,     // answer `status` with `detail` and close the connection
  };
  Kind kind = Kind::kIncomplete;
  size_t head_size = 0;  // kRequest: the head, with its final CRLF CRLF
  size_t size = 0;       // kRequest: head and body
  int status = 0;        // kRefused: 400 or 413
  const char* detail = "";
};

// The first request in `bytes` (which start at a request's first byte).
Frame next_request(std::string_view bytes, const FramingLimits& limits = {});

}  // namespace jobstate::api
