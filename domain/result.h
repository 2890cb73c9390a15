// Result<T>: a value or an Error, the way modules report failure to each other
// (exceptions never cross a module boundary).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace jobstate {

// What went wrong, in terms a caller can act on. The API maps each code to one
// problem slug and HTTP status (api/problem.cpp); nothing else does.
enum class ErrorCode {
  kInvalidRequest,        // malformed input
  kJobNotFound,           // no job with that id
  kInvalidTransition,     // command not allowed in the job's current state
  kJobTerminal,           // job already succeeded / failed / cancelled
  kVersionMismatch,       // If-Match / expected version differs from the job's version
  kLeaseMismatch,         // a worker's report does not carry the running attempt's lease
  kIdempotencyKeyReused,  // same Idempotency-Key, different request
  kUnavailable,           // storage cannot take writes (or shutting down); nothing was acknowledged
  kCorruption,            // a stored record cannot be decoded or fails a check
  kInternal,              // a bug or an unexpected library error
};

const char* error_code_name(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}      // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  // REQUIRES: ok()
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  // REQUIRES: !ok()
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Status: a Result with no value.
struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() { return Status(Ok{}); }

inline Error make_error(ErrorCode code, std::string message) { return Error{code, std::move(message)}; }

}  // namespace jobstate
