#include "api/problem.h"

#include <map>

namespace jobstate::api {

namespace {
struct SlugInfo {
  int status;
  const char* title;
};

const std::map<std::string, SlugInfo>& slugs() {
  static const std::map<std::string, SlugInfo> kSlugs = {
      {"invalid-request", {400, "The request is invalid"}},
      {"unauthorized", {401, "Authentication is required"}},
      {"forbidden", {403, "Not allowed"}},
      {"job-not-found", {404, "No such job"}},
      {"not-found", {404, "No such resource"}},
      {"method-not-allowed", {405, "Method not allowed on this resource"}},
      {"invalid-transition", {409, "The job cannot make this transition in its current state"}},
      {"job-terminal", {409, "The job has already finished"}},
      {"version-mismatch", {412, "The job has changed since the given version"}},
      {"lease-mismatch", {409, "The report does not carry the running attempt's lease"}},
      {"payload-too-large", {413, "The request body is too large"}},
      {"unsupported-media-type", {415, "Request bodies must be application/json"}},
      {"idempotency-key-reused", {422, "The Idempotency-Key was used with a different request"}},
      {"internal-error", {500, "Internal error"}},
      {"unavailable", {503, "The service cannot take this request right now"}},
  };
  return kSlugs;
}
}  // namespace

std::string Problem::body() const {
  nlohmann::json j = extra;
  j["type"] = "/problems/" + slug;
  j["title"] = title;
  j["status"] = status;
  j["detail"] = detail;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Problem problem(const std::string& slug, std::string detail) {
  auto it = slugs().find(slug);
  if (it == slugs().end()) it = slugs().find("internal-error");
  return Problem{it->second.status, it->first, it->second.title, std::move(detail), nlohmann::json::object()};
}

Problem problem_from_error(const Error& error) {
  switch (error.code) {
    case ErrorCode::kInvalidRequest: return problem("invalid-request", error.message);
    case ErrorCode::kJobNotFound: return problem("job-not-found", "no job with this id");
    case ErrorCode::kInvalidTransition: return problem("invalid-transition", error.message);
    case ErrorCode::kJobTerminal: return problem("job-terminal", error.message);
    case ErrorCode::kVersionMismatch: return problem("version-mismatch", error.message);
    case ErrorCode::kLeaseMismatch: return problem("lease-mismatch", error.message);
    case ErrorCode::kIdempotencyKeyReused: return problem("idempotency-key-reused", error.message);
    case ErrorCode::kUnavailable:
      return problem("unavailable", "the store cannot take writes right now; retry later");
    case ErrorCode::kCorruption:
    case ErrorCode::kInternal: break;
  }
  return problem("internal-error", "the server failed to handle this request");
}

}  // namespace jobstate::api
