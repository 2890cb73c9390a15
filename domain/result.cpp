#include "domain/result.h"

namespace jobstate {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidRequest: return "invalid_request";
    case ErrorCode::kJobNotFound: return "job_not_found";
    case ErrorCode::kInvalidTransition: return "invalid_transition";
    case ErrorCode::kJobTerminal: return "job_terminal";
    case ErrorCode::kVersionMismatch: return "version_mismatch";
    case ErrorCode::kLeaseMismatch: return "lease_mismatch";
    case ErrorCode::kIdempotencyKeyReused: return "idempotency_key_reused";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kCorruption: return "corruption";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

}  // namespace jobstate
