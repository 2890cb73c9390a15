// CommandTemplate: one argv element (or env value) of an executor's command
// with placeholders filled from the job when the job is started.
//
//   "{params.path}"      the job's params.path (nested: "{params.a.b}",
//                        array elements: "{params.files.0}")
//   "{params}"           the whole params object as JSON
//   "{job.id}"           the job id; "{job.type}" its type
//   "{{" and "}}"        a literal "{" and "}"
//
// A string value is inserted as is, any other value (number, bool, object,
// array) as compact JSON. The filled string becomes exactly one argv element:
// nothing is split or interpreted by a shell, so params cannot inject
// arguments or commands. A placeholder whose value is missing or null makes
// render() fail, and so does a NUL byte (argv cannot carry it).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "domain/job.h"
#include "domain/result.h"

namespace jobstate::executors {

class CommandTemplate {
 public:
  // kInvalidRequest naming the problem (unbalanced brace, unknown name).
  static Result<CommandTemplate> parse(std::string_view text);

  // The filled string. kInvalidRequest naming the placeholder when its value
  // is missing or null, or when the result contains a NUL byte.
  Result<std::string> render(const JobState& job) const;

  bool has_placeholders() const;
  const std::string& source() const { return source_; }

 private:
  struct Piece {
    bool placeholder = false;
    std::string text;               // literal text, or the placeholder as written
    std::vector<std::string> path;  // placeholder: "params", then the keys below it
  };
  std::string source_;
  std::vector<Piece> pieces_;
};

}  // namespace jobstate::executors
