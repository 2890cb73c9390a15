// The process' log lines (docs/operations.md, "Logs"): text for a person at a
// terminal, or JSON (one object per line: time, level, message, then the
// line's fields) for a log pipeline. Every line the server writes goes
// through here, the "serving on" line and start-up errors included.
//
// A request's id (X-Request-Id, echoed or made up) rides along in a
// thread-local scope while its handler runs, and every line written in that
// scope carries it; lines written later for the same request (its access
// line, written when it is answered) name it as a field.
#pragma once

#include <spdlog/spdlog.h>

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "domain/clock.h"

namespace jobstate::logging {

enum class Format { kText, kJson };
std::optional<Format> parse_format(std::string_view name);  // "text", "json"

// Makes spdlog's default logger ours, at `level`: lines in `format` to stdout
// through a sink that keeps stdio's buffering (blocks flushed every second
// and at each warning; line by line on a terminal). Call once, before any
// other thread logs.
void configure(Format format, spdlog::level::level_enum level);

using Fields = std::initializer_list<std::pair<std::string_view, nlohmann::json>>;

// Whether a line at `level` would be written (to skip building its fields).
bool enabled(spdlog::level::level_enum level);

// One line with fields: in text, "message key=value ..."; in JSON, members.
void log(spdlog::level::level_enum level, std::string_view message, Fields fields = {});

// The line log() would write (without its newline), in `format`, at `at`,
// with this thread's request id: the formatting alone, for tests.
std::string format_line(Format format, TimeMs at, spdlog::level::level_enum level, std::string_view message,
                        Fields fields = {});

// One line on stdout in the configured format (the "serving on" line, which
// scripts wait for), flushed; in text, the message alone.
void stdout_line(std::string_view message, Fields fields = {});
// The same on stderr (a refusal to start), at `level`.
void stderr_line(spdlog::level::level_enum level, std::string_view message);

// The request id lines written on this thread carry while the scope lives.
class RequestScope {
 public:
  explicit RequestScope(std::string_view id);
  ~RequestScope();
  RequestScope(const RequestScope&) = delete;
  RequestScope& operator=(const RequestScope&) = delete;

 private:
  std::string previous_;
};
// The id of the request this thread handles now ("" outside any).
const std::string& current_request_id();

// A client's X-Request-Id when it is fit to echo and log: 1 to 128
// characters, printable ASCII without spaces (0x21-0x7E). nullopt otherwise
// (the server then makes one up).
std::optional<std::string> accept_request_id(std::string_view sent);
// A new id: 32 lowercase hex characters, random (not secret: it correlates lines).
std::string new_request_id();

}  // namespace jobstate::logging
