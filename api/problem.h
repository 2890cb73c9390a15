// Problem responses (RFC 9457 application/problem+json). The one place that
// maps an error to a slug, an HTTP status and a title; no handler builds its
// own. Internal error text never reaches a client: kInternal and kCorruption
// get a generic detail.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "domain/result.h"

namespace jobstate::api {

struct Problem {
  int status = 500;
  std::string slug;  // "job-not-found", ...
  std::string title;
  std::string detail;
  nlohmann::json extra = nlohmann::json::object();  // job_id, state, version, ...

  std::string body() const;
};

// Problem for a named slug of API.md (invalid-request, not-found, ...).
Problem problem(const std::string& slug, std::string detail);
// Problem for a domain/store error.
Problem problem_from_error(const Error& error);

}  // namespace jobstate::api
