// The bytes of a connection as the server sees them: framed by
// api/http_framing (next_request), each framed request fed whole to
// Http::RequestParser (ParserImpl<Http::Request>) as api/server.cpp's
// handle_request does (feed, parse, reset), and for each request parsed, everything api/server.cpp reads
// from it: method, resource and its path segments, version, the headers it
// looks up raw and typed, the query values it decodes, and the body through
// parse_body and the endpoint's mapping.
//
// Input: one byte (unused; it chose read sizes before), then the
// connection's bytes.
#include <pistache/http.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "api/http_framing.h"
#include "api/open_access.h"
#include "api/request_json.h"
#include "api/request_parts.h"
#include "domain/job.h"
#include "domain/job_id.h"
#include "fuzz_check.h"

using namespace jobstate;
using namespace Pistache;
using api::has_json_content_type;
using api::header_text;
using api::split_path;

namespace {

// As api/server.cpp: the parser's limit, a whole request at most.
constexpr size_t kMaxRequestBytes = (64u << 10) + api::kMaxBodyBytes;

// The server frames every request itself (api/http_framing.h) and feeds
// Pistache's parser exactly one whole request at a time; what the framing
// refuses (400/413, then the connection closes) never reaches Pistache.
// That is what keeps Pistache 0.0.5's own framing bugs out of reach: its
// chunked decoder spins for ever on some inputs (regression seed
// fuzz/corpus/fuzz_http_request/pistache-chunked-hang: no Transfer-Encoding
// passes the framing), and it reserves whatever Content-Length announces
// (pistache-content-length-reserve: over 1 MiB is a 413 from the head).
// What the server reads from one request (api/server.cpp: onRequest,
// dispatch, the handlers' query and header helpers, json_body).
void read_like_the_server(const Http::Request& req) {
  if (auto c = req.headers().tryGet<Http::Header::Connection>()) (void)c->control();
  (void)req.version();
  (void)Http::methodString(req.method());
  const auto parts = split_path(req.resource());
  for (auto p : parts) (void)JobId::parse(p);

  api::OpenAccessRequest open;
  open.changes_state = req.method() != Http::Method::Get && req.method() != Http::Method::Head &&
                       req.method() != Http::Method::Options;
  open.host = header_text(req, "Host");
  open.origin = header_text(req, "Origin");
  open.content_type = header_text(req, "Content-Type");
  open.content_type_is_json = has_json_content_type(req);
  open.has_body = !req.body().empty();
  (void)api::open_access_refusal(open, false);
  (void)api::open_access_refusal(open, true);

  for (const char* name : {"Idempotency-Key", "Job-Lease", "Authorization"}) (void)header_text(req, name);
  for (const char* name : {"If-Match", "If-None-Match"})
    if (auto v = header_text(req, name)) (void)api::parse_etag_version(*v);

  for (const char* name : {"limit", "as_of_seq", "timeout_s", "after_version", "after_seq",
                           "wait_s", "page_token"}) {
    (void)req.query().has(name);
    if (auto raw = req.query().get(name))
      if (auto decoded = api::percent_decode(*raw)) (void)api::parse_int64(*decoded);
  }
  for (const char* name : {"state", "type"})
    if (auto raw = req.query().get(name))
      if (auto decoded = api::percent_decode(*raw)) {
        (void)parse_job_status(*decoded);
        (void)is_valid_job_type(*decoded);
      }

  const std::string& body = req.body();
  if (body.size() > api::kMaxBodyBytes) return;  // 413
  auto parsed = api::parse_body(body);
  if (!parsed) return;
  const std::string action = parts.size() == 4 ? std::string(parts[3]) : std::string("start");
  if (parts.size() == 2 && parts[1] == "claims") (void)api::claim_from_body(*parsed);
  else if (parts.size() == 2) (void)api::create_job_from_body(*parsed);
  else (void)api::transition_from_body(action, *parsed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first byte chose read sizes before the server framed requests
  // itself; it is skipped so the corpus stays valid.
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  // Pistache 0.0.5 reads one byte past what it was fed (its cursor peeks at
  // the end of its buffer: valgrind, "Invalid read of size 1 ... 0 bytes
  // after a block" in StreamCursor::next). The buffer is a vector grown by
  // push_back, so the byte is outside the allocation exactly when the bytes
  // fed are a power of two; under ASan that is sometimes an unmapped page.
  // In the server it is a harmless read of the allocator's padding; here
  // such requests are framed and checked, but not fed.
  auto power_of_two = [](size_t x) { return x != 0 && (x & (x - 1)) == 0; };
  Http::RequestParser parser(kMaxRequestBytes);
  while (!in.empty()) {
    const api::Frame f = api::next_request(in);
    if (f.kind != api::Frame::Kind::kRequest) break;  // incomplete, or refused and closed
    FUZZ_CHECK(f.size <= in.size() && f.head_size <= f.size, "frame beyond the bytes");
    FUZZ_CHECK(f.size - f.head_size <= api::kMaxBodyBytes, "a body over the limit was framed");
    const std::string_view request = in.substr(0, f.size);
    in.remove_prefix(f.size);
    if (power_of_two(request.size())) continue;
    // api/server.cpp handle_request: feed, parse, read; any error is a 4xx.
    try {
      if (parser.feed(request.data(), request.size()) &&
          parser.parse() == Http::Private::State::Done) {
        try {
          read_like_the_server(parser.request);
        } catch (const std::exception& e) {
          FUZZ_CHECK(false, e.what());  // would be a 500 internal-error for bad input
        }
      }
    } catch (...) {
      // HttpError (400, 405, 415, 505, ...): answered as problem+json.
    }
    parser.reset();
  }
  return 0;
}
