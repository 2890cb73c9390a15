#include <cstdio>

#include "app/commands.h"

namespace jobstate::app {
int& exit_code() {
  static int code = kExitOk;
  return code;
}
}  // namespace jobstate::app

int main(int argc, char** argv) {
  using namespace jobstate::app;
  CLI::App app{"jobstate: durable job status, event-sourced"};
  app.require_subcommand(1);
  add_serve_command(app);
  add_replay_command(app);
  add_verify_command(app);
  add_rebuild_command(app);
  add_backup_command(app);
  add_copy_command(app);
  add_run_command(app);
  add_work_command(app);
  add_token_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "jobstate: %s (see jobstate --help)\n", e.what());
    return kExitUsage;
  }
  return exit_code();
}
