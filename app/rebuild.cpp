#include "app/commands.h"

namespace jobstate::app {

// Placeholder until its issue lands; see the issue list.
void add_rebuild_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("rebuild", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([] {
    std::fprintf(stderr, "jobstate rebuild: not built yet\n");
    exit_code() = kExitFailure;
  });
}

}  // namespace jobstate::app
