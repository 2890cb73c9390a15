#include "identity/tokens.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "store/durable_file.h"
#include "store/hash_chain.h"

namespace jobstate::identity {

namespace {

using nlohmann::json;

constexpr size_t kTokenBytes = 32;
constexpr std::string_view kTokenPrefix = "jst_";

Error file_error(const std::string& path, const std::string& what) {
  return make_error(ErrorCode::kInvalidRequest, path + ": " + what);
}

// '*' matches any run of characters (none included); everything else itself.
bool glob_matches(std::string_view glob, std::string_view s) {
  size_t g = 0, i = 0, star = std::string_view::npos, mark = 0;
  while (i < s.size()) {
    if (g < glob.size() && glob[g] == '*') {
      star = g++;
      mark = i;
    } else if (g < glob.size() && glob[g] == s[i]) {
      ++g;
      ++i;
    } else if (star != std::string_view::npos) {
      g = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (g < glob.size() && glob[g] == '*') ++g;
  return g == glob.size();
}

template <typename F>
void for_each_glob(std::string_view pattern, F&& f) {
  while (true) {
    const size_t comma = pattern.find(',');
    f(pattern.substr(0, comma));
    if (comma == std::string_view::npos) return;
    pattern.remove_prefix(comma + 1);
  }
}

bool is_type_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

}  // namespace

const char* role_name(Role r) {
  switch (r) {
    case Role::kReader:
      return "reader";
    case Role::kSubmitter:
      return "submitter";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
  }
  return "reader";
}

std::optional<Role> parse_role(std::string_view name) {
  for (Role r : {Role::kReader, Role::kSubmitter, Role::kWorker, Role::kAdmin})
    if (name == role_name(r)) return r;
  return std::nullopt;
}

bool role_allows(Role r, Action a) {
  switch (a) {
    case Action::kRead:
      return true;
    case Action::kSubmit:
      return r == Role::kSubmitter || r == Role::kAdmin;
    case Action::kWork:
      return r == Role::kWorker || r == Role::kAdmin;
  }
  return false;
}

std::string roles_allowing(Action a) {
  switch (a) {
    case Action::kRead:
      return "reader, submitter, worker or admin";
    case Action::kSubmit:
      return "submitter or admin";
    case Action::kWork:
      return "worker or admin";
  }
  return "admin";
}

bool is_valid_types_pattern(std::string_view pattern) {
  if (pattern.empty()) return true;
  if (pattern.size() > 1024) return false;
  bool ok = true;
  for_each_glob(pattern, [&](std::string_view glob) {
    if (glob.empty()) ok = false;
    for (char c : glob)
      if (c != '*' && !is_type_char(c)) ok = false;
  });
  return ok;
}

bool types_pattern_matches(std::string_view pattern, std::string_view type) {
  if (pattern.empty()) return true;
  bool matched = false;
  for_each_glob(pattern, [&](std::string_view glob) { matched = matched || glob_matches(glob, type); });
  return matched;
}

bool is_valid_token_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return false;
  return true;
}

Result<std::vector<TokenEntry>> read_tokens_file(const std::string& path) {
  auto text = read_whole_file(path);
  if (!text) return text.error();
  json doc = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("tokens") || !doc["tokens"].is_array())
    return file_error(path, "not a tokens file (expected {\"tokens\": [...]})");
  std::vector<TokenEntry> out;
  for (const auto& t : doc["tokens"]) {
    const size_t n = out.size() + 1;
    auto bad = [&](const std::string& what) {
      return file_error(path, "token " + std::to_string(n) + ": " + what);
    };
    if (!t.is_object()) return bad("not an object");
    TokenEntry e;
    auto text_member = [&](const char* key, std::string& into) {
      auto it = t.find(key);
      if (it == t.end() || !it->is_string()) return false;
      into = it->get<std::string>();
      return true;
    };
    std::string role, created;
    if (!text_member("name", e.name) || !is_valid_token_name(e.name)) return bad("bad or missing name");
    if (!text_member("role", role) || !parse_role(role)) return bad("bad or missing role");
    e.role = *parse_role(role);
    if (t.contains("types") && (!text_member("types", e.types) || !is_valid_types_pattern(e.types)))
      return bad("bad types pattern");
    if (!text_member("sha256", e.sha256) || hex_to_raw(e.sha256).size() != 32 ||
        raw_to_hex(hex_to_raw(e.sha256)) != e.sha256)
      return bad("sha256 must be 64 lowercase hex characters");
    if (text_member("created_at", created))
      if (auto at = parse_rfc3339_ms(created)) e.created_at_ms = *at;
    for (const auto& other : out)
      if (other.name == e.name) return bad("the name '" + e.name + "' appears twice");
    out.push_back(std::move(e));
  }
  return out;
}

Status write_tokens_file(const std::string& path, const std::vector<TokenEntry>& tokens) {
  json list = json::array();
  for (const auto& t : tokens) {
    json e = {{"name", t.name},
              {"role", role_name(t.role)},
              {"sha256", t.sha256},
              {"created_at", format_rfc3339_ms(t.created_at_ms)}};
    if (!t.types.empty()) e["types"] = t.types;
    list.push_back(std::move(e));
  }
  return write_file_durably(path, json{{"tokens", list}}.dump(2) + "\n", 0600);
}

Result<std::string> add_token(const std::string& path, const std::string& name, Role role,
                              const std::string& types, TimeMs now_ms) {
  if (!is_valid_token_name(name))
    return make_error(ErrorCode::kInvalidRequest, "token names are 1 to 64 of A-Za-z0-9._-");
  if (!is_valid_types_pattern(types))
    return make_error(ErrorCode::kInvalidRequest,
                      "--types is a comma-separated list of job types, '*' matching any run of characters");
  std::vector<TokenEntry> tokens;
  if (auto existing = read_tokens_file(path)) {
    tokens = std::move(*existing);
  } else if (errno != ENOENT) {
    return existing.error();
  }
  for (const auto& t : tokens)
    if (t.name == name)
      return make_error(ErrorCode::kInvalidRequest, "a token named '" + name + "' already exists");
  unsigned char raw[kTokenBytes];
  if (RAND_bytes(raw, sizeof raw) != 1) return make_error(ErrorCode::kInternal, "RAND_bytes failed");
  std::string token(kTokenPrefix);
  token += raw_to_hex(std::string_view(reinterpret_cast<const char*>(raw), sizeof raw));
  tokens.push_back(TokenEntry{name, role, types, sha256_hex(token), now_ms});
  if (auto s = write_tokens_file(path, tokens); !s) return s.error();
  return token;
}

Status revoke_token(const std::string& path, const std::string& name) {
  auto tokens = read_tokens_file(path);
  if (!tokens) return tokens.error();
  const size_t before = tokens->size();
  std::erase_if(*tokens, [&](const TokenEntry& t) { return t.name == name; });
  if (tokens->size() == before)
    return make_error(ErrorCode::kInvalidRequest, "no token named '" + name + "' in " + path);
  return write_tokens_file(path, *tokens);
}

Result<std::shared_ptr<TokenSet>> TokenSet::open(std::string path) {
  std::shared_ptr<TokenSet> set(new TokenSet(std::move(path)));
  auto n = set->reload();
  if (!n) return n.error();
  return set;
}

Result<size_t> TokenSet::reload() {
  auto tokens = read_tokens_file(path_);
  if (!tokens) return tokens.error();
  auto fresh = std::make_shared<const std::vector<TokenEntry>>(std::move(*tokens));
  std::lock_guard lock(mu_);
  tokens_ = std::move(fresh);
  return tokens_->size();
}

std::shared_ptr<const std::vector<TokenEntry>> TokenSet::current() const {
  std::lock_guard lock(mu_);
  return tokens_;
}

std::shared_ptr<const TokenEntry> TokenSet::authenticate(std::string_view token) const {
  const std::string digest = sha256_hex(token);
  auto tokens = current();
  const TokenEntry* found = nullptr;
  // Every entry is compared, whatever matched: the time taken says nothing
  // about which stored hash shares a prefix with the presented one.
  for (const auto& t : *tokens) {
    if (t.sha256.size() == digest.size() &&
        CRYPTO_memcmp(t.sha256.data(), digest.data(), digest.size()) == 0)
      found = &t;
  }
  if (!found) return nullptr;
  return std::shared_ptr<const TokenEntry>(std::move(tokens), found);  // aliases the set
}

}  // namespace jobstate::identity
