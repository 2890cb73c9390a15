#include "api/request_parts.h"

#include <sstream>

namespace jobstate::api {

using namespace Pistache;

std::optional<std::string> header_text(const Http::Request& req, const std::string& name) {
  if (auto raw = req.headers().tryGetRaw(name)) return raw->value();
  if (auto typed = req.headers().tryGet(name)) {
    std::ostringstream os;
    typed->write(os);
    return os.str();
  }
  return std::nullopt;
}

bool has_json_content_type(const Http::Request& req) {
  auto ct = req.headers().tryGet<Http::Header::ContentType>();
  return ct && ct->mime().top() == Http::Mime::Type::Application &&
         ct->mime().sub() == Http::Mime::Subtype::Json;
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  if (path.empty() || path[0] != '/') return parts;
  path.remove_prefix(1);
  while (true) {
    size_t slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

namespace {
// Every /v1/jobs/{id}/<action>: its route template, and whether it is a
// state transition (a POST through the decider) rather than a read.
struct JobAction {
  std::string_view name;
  const char* route;
  bool transition;
};
constexpr JobAction kJobActions[] = {
    {"wait", "/v1/jobs/{id}/wait", false},          {"events", "/v1/jobs/{id}/events", false},
    {"start", "/v1/jobs/{id}/start", true},         {"heartbeat", "/v1/jobs/{id}/heartbeat", true},
    {"succeed", "/v1/jobs/{id}/succeed", true},     {"fail", "/v1/jobs/{id}/fail", true},
    {"cancel", "/v1/jobs/{id}/cancel", true},       {"cancelled", "/v1/jobs/{id}/cancelled", true},
};
}  // namespace

bool is_transition(std::string_view action) {
  for (const JobAction& a : kJobActions)
    if (a.transition && action == a.name) return true;
  return false;
}

const char* route_template(const std::vector<std::string_view>& p) {
  const size_t n = p.size();
  if (n == 0) return "unmatched";
  if (n == 1) {
    if (p[0] == "healthz") return "/healthz";
    if (p[0] == "readyz") return "/readyz";
    if (p[0] == "metrics") return "/metrics";
    if (p[0] == "openapi.yaml") return "/openapi.yaml";
    if (p[0] == "ui") return "/ui";
    return "unmatched";
  }
  if (p[0] == "ui") return n == 2 ? (p[1].empty() ? "/ui" : "/ui/{file}") : "unmatched";
  if (p[0] != "v1") return "unmatched";
  if (n == 2) {
    if (p[1] == "jobs") return "/v1/jobs";
    if (p[1] == "events") return "/v1/events";
    if (p[1] == "claims") return "/v1/claims";
    if (p[1] == "webhooks") return "/v1/webhooks";
    return "unmatched";
  }
  if (n == 3 && p[1] == "audit" && p[2] == "head") return "/v1/audit/head";
  if (p[1] != "jobs") return "unmatched";
  if (n == 3) return "/v1/jobs/{id}";
  if (n != 4) return "unmatched";
  for (const JobAction& a : kJobActions)
    if (p[3] == a.name) return a.route;
  return "unmatched";
}

}  // namespace jobstate::api
