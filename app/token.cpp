// jobstate token add|list|revoke: the tokens file of `serve --tokens`
// (identity/tokens.h). The file keeps only each token's SHA-256: a token is
// shown once, by `add`. A running server picks changes up on SIGHUP.
#include <cstdio>
#include <memory>
#include <string>

#include "app/commands.h"
#include "domain/clock.h"
#include "identity/tokens.h"

namespace jobstate::app {

namespace {
struct TokenFlags {
  std::string file;
  std::string role;
  std::string types;
  std::string name;
};

int fail(const char* what, const std::string& message) {
  std::fprintf(stderr, "jobstate token %s: %s\n", what, message.c_str());
  return kExitFailure;
}
}  // namespace

void add_token_command(CLI::App& app) {
  auto flags = std::make_shared<TokenFlags>();
  auto* cmd = app.add_subcommand("token", "Manage the bearer tokens of serve --tokens FILE");
  cmd->require_subcommand(1);

  auto* add = cmd->add_subcommand(
      "add", "Add a token and print it (alone on the last line) once; the file keeps its SHA-256");
  add->add_option("--tokens", flags->file, "The tokens file (created when missing)")->required();
  add->add_option("--role", flags->role, "reader, submitter, worker or admin")
      ->required()
      ->check(CLI::IsMember({"reader", "submitter", "worker", "admin"}));
  add->add_option("--types", flags->types,
                  "Limit the token to these job types: comma-separated, '*' matching any run "
                  "of characters (e.g. 'email.*,report')");
  add->add_option("--name", flags->name, "A unique name; events record it as data.by")->required();
  add->callback([flags] {
    auto token = identity::add_token(flags->file, flags->name, *identity::parse_role(flags->role),
                                     flags->types, SystemClock().now_ms());
    if (!token) {
      exit_code() = fail("add", token.error().message);
      return;
    }
    std::printf("added token '%s' (role %s%s%s) to %s; it is shown only now:\n%s\n",
                flags->name.c_str(), flags->role.c_str(), flags->types.empty() ? "" : ", types ",
                flags->types.c_str(), flags->file.c_str(), token->c_str());
    exit_code() = kExitOk;
  });

  auto* list = cmd->add_subcommand("list", "List the tokens' names, roles and types (never the tokens)");
  list->add_option("--tokens", flags->file, "The tokens file")->required();
  list->callback([flags] {
    auto tokens = identity::read_tokens_file(flags->file);
    if (!tokens) {
      exit_code() = fail("list", tokens.error().message);
      return;
    }
    std::printf("%-24s %-10s %-24s %s\n", "NAME", "ROLE", "TYPES", "CREATED");
    for (const auto& t : *tokens)
      std::printf("%-24s %-10s %-24s %s\n", t.name.c_str(), identity::role_name(t.role),
                  t.types.empty() ? "*" : t.types.c_str(), format_rfc3339_ms(t.created_at_ms).c_str());
    exit_code() = kExitOk;
  });

  auto* revoke = cmd->add_subcommand("revoke", "Remove a token by name");
  revoke->add_option("--tokens", flags->file, "The tokens file")->required();
  revoke->add_option("name", flags->name, "The token's name")->required();
  revoke->callback([flags] {
    if (auto s = identity::revoke_token(flags->file, flags->name); !s) {
      exit_code() = fail("revoke", s.error().message);
      return;
    }
    std::printf("revoked token '%s' (a running server forgets it on SIGHUP)\n", flags->name.c_str());
    exit_code() = kExitOk;
  });
}

}  // namespace jobstate::app
