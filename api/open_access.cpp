#include "api/open_access.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace jobstate::api {

namespace {
std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// An IPv4 address in dotted decimal (four parts, each 0–255) whose first
// part is 127.
bool is_loopback_ipv4(std::string_view s) {
  int parts = 0;
  int first = -1;
  while (true) {
    const size_t dot = s.find('.');
    const std::string_view part = s.substr(0, dot);
    if (!all_digits(part) || part.size() > 3) return false;
    int v = 0;
    std::from_chars(part.data(), part.data() + part.size(), v);
    if (v > 255) return false;
    if (first < 0) first = v;
    ++parts;
    if (dot == std::string_view::npos) break;
    s.remove_prefix(dot + 1);
  }
  return parts == 4 && first == 127;
}
}  // namespace

bool names_loopback(std::string_view host) {
  std::string h = lower(host);
  if (h.empty()) return false;
  if (h.front() == '[') {  // [v6] or [v6]:port
    const size_t close = h.find(']');
    if (close == std::string::npos) return false;
    const std::string_view rest = std::string_view(h).substr(close + 1);
    if (!rest.empty() && !(rest.front() == ':' && all_digits(rest.substr(1)))) return false;
    const std::string_view v6 = std::string_view(h).substr(1, close - 1);
    return v6 == "::1" || v6 == "0:0:0:0:0:0:0:1";
  }
  if (h == "::1") return true;
  if (const size_t colon = h.rfind(':'); colon != std::string::npos) {
    if (!all_digits(std::string_view(h).substr(colon + 1))) return false;
    h.resize(colon);
  }
  if (!h.empty() && h.back() == '.') h.pop_back();
  if (h == "localhost") return true;
  constexpr std::string_view kSuffix = ".localhost";
  if (h.size() > kSuffix.size() && h.compare(h.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0)
    return true;
  return is_loopback_ipv4(h);
}

bool is_loopback_listen_host(std::string_view host) {
  const std::string h = lower(host);
  return h == "localhost" || h == "::1" || h == "[::1]" || is_loopback_ipv4(h);
}

bool origin_names_loopback(std::string_view origin) {
  const std::string o = lower(origin);
  std::string_view rest;
  if (o.rfind("http://", 0) == 0) {
    rest = std::string_view(o).substr(7);
  } else if (o.rfind("https://", 0) == 0) {
    rest = std::string_view(o).substr(8);
  } else {
    return false;
  }
  if (rest.find_first_of("/?#@") != std::string_view::npos) return false;  // not an origin
  return names_loopback(rest);
}

std::optional<std::string> open_access_refusal(const OpenAccessRequest& r, bool any_host) {
  if (!any_host && r.host && !names_loopback(*r.host))
    return "without tokens this server answers only requests addressed to loopback "
           "(Host localhost, 127.0.0.1 or [::1]), not '" + *r.host + "'";
  if (!r.changes_state) return std::nullopt;
  if (r.origin && !origin_names_loopback(*r.origin))
    return "without tokens this server refuses writes from web pages of another origin ('" +
           *r.origin + "')";
  if (r.content_type && !r.content_type_is_json)
    return "without tokens a write must send Content-Type: application/json (or no body and "
           "no Content-Type), not '" + *r.content_type + "'";
  if (!r.content_type && r.has_body)
    return "without tokens a write with a body must send Content-Type: application/json";
  return std::nullopt;
}

}  // namespace jobstate::api
