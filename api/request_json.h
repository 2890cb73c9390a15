// Request bodies: JSON parsing under the limits of API.md, and the mapping
// from a body to a domain command. Pure functions; no Pistache here.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>
#include <string_view>

#include "domain/job.h"
#include "domain/result.h"

namespace jobstate::api {

constexpr size_t kMaxBodyBytes = 1u << 20;  // 413 beyond
constexpr int kMaxJsonDepth = 64;           // arrays and objects, the outermost counting as one

// Parses a request body. Empty body → nullopt (for endpoints where it is
// optional). kInvalidRequest for malformed JSON, invalid UTF-8, nesting
// deeper than kMaxJsonDepth, or an object with a member twice (which one a
// reader would see is not defined, so neither is taken). REQUIRES: body.size() <= kMaxBodyBytes (checked by the caller: 413).
Result<std::optional<nlohmann::json>> parse_body(std::string_view body);

// POST /v1/jobs body → command. Validation of values is the domain's (decide).
Result<CreateJob> create_job_from_body(const std::optional<nlohmann::json>& body);
// The body of POST /v1/jobs/{id}/<action> → command. action is one of
// start, heartbeat, succeed, fail, cancel, cancelled.
Result<Command> transition_from_body(std::string_view action,
                                     const std::optional<nlohmann::json>& body);

// The body of POST /v1/claims: {"types": [1–100 job types], "worker":
// "...", "wait_s": 0–60}. Types are deduplicated, in the order given.
struct ClaimRequest {
  std::vector<std::string> types;
  std::string worker;
  int64_t wait_s = 0;
};
Result<ClaimRequest> claim_from_body(const std::optional<nlohmann::json>& body);

// A fingerprint of a create request for Idempotency-Key comparison: SHA-256
// (raw 32 bytes) of the canonical JSON of what the job is created with.
std::string create_fingerprint(const CreateJob& c);

// A query value with its %XX escapes decoded (RFC 3986; '+' stays '+').
// nullopt when a '%' is not followed by two hex digits.
std::optional<std::string> percent_decode(std::string_view text);

// Strict decimal integer: optional '-', digits only, fits in int64.
std::optional<int64_t> parse_int64(std::string_view text);
// `"<version>"` or `<version>` (If-Match / If-None-Match). nullopt when malformed.
std::optional<uint64_t> parse_etag_version(std::string_view text);

}  // namespace jobstate::api
