// Open access: a server without tokens (API.md "Identity") trusts every
// client that reaches it, so it must be reachable only from this machine,
// and no web page a browser on this machine shows may drive it:
// - a DNS rebinding points a name the page controls at 127.0.0.1; the
//   browser then sends that name in Host, so only Host values naming
//   loopback are answered;
// - a page may POST a form (or text/plain) to any address without asking
//   (no CORS preflight), so a write must say Content-Type: application/json
//   (or send no body and no type), and must not carry a foreign Origin.
// What a browser cannot forge (Host, Origin, a JSON Content-Type without a
// preflight) is exactly what these checks read.
//
// Pure functions of the request's headers: no Pistache type here.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace jobstate::api {

// True when `host` — a Host header's value or a --listen host, with or
// without ":port" — names this machine's loopback: "localhost" (any case,
// a trailing dot allowed) or a name under ".localhost" (RFC 6761), an IPv4
// address in 127.0.0.0/8, or "[::1]" / "::1".
bool names_loopback(std::string_view host);

// Stricter, for a --listen host, which the resolver turns into an address:
// exactly "localhost" (which Pistache maps to 127.0.0.1 itself), an IPv4
// address in 127.0.0.0/8, or "[::1]" / "::1". Any other name is resolved by
// DNS and could name anything.
bool is_loopback_listen_host(std::string_view host);

// True when an Origin header's value ("http://127.0.0.1:8080") is an http
// or https origin whose host names loopback. "null" and anything else: false.
bool origin_names_loopback(std::string_view origin);

// The headers open access looks at. nullopt: the header is absent.
struct OpenAccessRequest {
  bool changes_state = false;  // any method but GET, HEAD and OPTIONS
  std::optional<std::string> host;
  std::optional<std::string> origin;
  std::optional<std::string> content_type;  // as sent
  bool content_type_is_json = false;        // application/json, parameters allowed
  bool has_body = false;
};

// Why open access refuses this request (the detail of a 403 `forbidden`),
// or nullopt when it may be served. `any_host`: the operator exposed the
// server on purpose (--insecure-no-auth), so Host is not checked; the
// browser checks stay.
std::optional<std::string> open_access_refusal(const OpenAccessRequest& r, bool any_host);

}  // namespace jobstate::api
