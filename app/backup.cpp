#include "app/commands.h"

namespace jobstate::app {

// Placeholder until its issue lands; see the issue list.
void add_backup_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("backup", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([] {
    std::fprintf(stderr, "jobstate backup: not built yet\n");
    exit_code() = kExitFailure;
  });
}

}  // namespace jobstate::app
