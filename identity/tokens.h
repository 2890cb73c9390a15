// Tokens: who may do what (API.md, "Identity").
//
// A token is a random secret handed out once by `jobstate token add`; the
// tokens file keeps only its SHA-256, with the token's name (which events
// record as `data.by`), its role and an optional pattern of job types it is
// limited to. `serve --tokens FILE` loads the file at start and again on
// SIGHUP.
//
// Roles: reader (every GET), submitter (create, cancel), worker (claims,
// start and a worker's reports), admin (everything). Every role may read:
// a submitter polls the jobs it made, a worker reads the job it runs.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/clock.h"
#include "domain/result.h"

namespace jobstate::identity {

enum class Role { kReader, kSubmitter, kWorker, kAdmin };
const char* role_name(Role r);
std::optional<Role> parse_role(std::string_view name);

// What a request asks to do.
enum class Action {
  kRead,    // any GET
  kSubmit,  // create a job, cancel one
  kWork,    // claim, start, heartbeat, succeed, fail, cancelled
};
bool role_allows(Role r, Action a);
// "reader", "submitter or admin", ...: the roles that allow `a`, for a 403.
std::string roles_allowing(Action a);

// A pattern of job types: one or more comma-separated globs in which `*`
// stands for any run of characters ("email.*", "report,export.*"); the
// empty pattern allows every type.
bool is_valid_types_pattern(std::string_view pattern);
bool types_pattern_matches(std::string_view pattern, std::string_view type);

// Names: 1 to 64 of A-Za-z0-9._-
bool is_valid_token_name(std::string_view name);

struct TokenEntry {
  std::string name;
  Role role = Role::kReader;
  std::string types;   // "" : every type
  std::string sha256;  // of the token, 64 lowercase hex
  TimeMs created_at_ms = 0;
};

// The tokens file: JSON, {"tokens": [{"name", "role", "types", "sha256",
// "created_at"}]}. Reading a missing or malformed file is an error naming
// the file and the problem.
Result<std::vector<TokenEntry>> read_tokens_file(const std::string& path);
// Replaces the file atomically (a temporary, fsync, rename), mode 0600.
Status write_tokens_file(const std::string& path, const std::vector<TokenEntry>& tokens);

// `token add`: draws a token (jst_ and 64 hex characters), adds its entry
// to the file (creating the file when missing), returns the token. The name
// must be new.
Result<std::string> add_token(const std::string& path, const std::string& name, Role role,
                              const std::string& types, TimeMs now_ms);
// `token revoke`: removes the named entry; an error when there is none.
Status revoke_token(const std::string& path, const std::string& name);

// The tokens a server accepts, swapped as a whole on reload. Thread-safe.
class TokenSet {
 public:
  // Reads `path`; an error when it cannot (the server then does not start).
  static Result<std::shared_ptr<TokenSet>> open(std::string path);

  // Reads the file again; on an error keeps the tokens it had.
  Result<size_t> reload();

  // The entry whose token this is, or null. Hashes the token and compares
  // with every entry in constant time. The entry is shared with the set it
  // was found in (nothing is copied per request) and outlives a reload.
  std::shared_ptr<const TokenEntry> authenticate(std::string_view token) const;

  const std::string& path() const { return path_; }

 private:
  explicit TokenSet(std::string path) : path_(std::move(path)) {}
  std::shared_ptr<const std::vector<TokenEntry>> current() const;

  std::string path_;
  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<TokenEntry>> tokens_;
};

}  // namespace jobstate::identity
