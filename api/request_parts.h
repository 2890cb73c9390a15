// What the handlers read from a Pistache request, in one place for the
// server (api/server.cpp) and the fuzzer that feeds it hostile bytes
// (fuzz/fuzz_http_request.cpp).
#pragma once

#include <pistache/http.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace jobstate::api {

// A header's value as sent (raw, or a typed header Pistache parsed, written
// back); nullopt when absent.
std::optional<std::string> header_text(const Pistache::Http::Request& req, const std::string& name);

// Content-Type: application/json, with or without parameters.
bool has_json_content_type(const Pistache::Http::Request& req);

// "/v1/jobs/x" → {"v1", "jobs", "x"}; empty for a path without a leading '/'.
std::vector<std::string_view> split_path(std::string_view path);

// The route a split path belongs to, as metrics and access logs name it:
// "/v1/jobs/{id}/heartbeat", "/ui/{file}", "unmatched" for anything else
// (so no request can invent a label value). A static string.
const char* route_template(const std::vector<std::string_view>& parts);

// Whether /v1/jobs/{id}/<action> is a state transition (start, heartbeat,
// succeed, fail, cancel, cancelled): one table with route_template's.
bool is_transition(std::string_view action);

}  // namespace jobstate::api
