// Subcommands of the `jobstate` binary. Each add_*_command registers its
// subcommand, flags and callback on `app`; the callback's return value is the
// process exit code (kExitOk, kExitFailure, kExitUsage).
#pragma once

#include <CLI/CLI.hpp>

namespace jobstate::app {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // the command ran and found a problem, or failed
constexpr int kExitUsage = 2;    // bad flags or arguments

// Where a subcommand's callback stores its exit code.
int& exit_code();

void add_serve_command(CLI::App& app);
void add_replay_command(CLI::App& app);
void add_verify_command(CLI::App& app);
void add_rebuild_command(CLI::App& app);
void add_backup_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_work_command(CLI::App& app);
void add_copy_command(CLI::App& app);
void add_token_command(CLI::App& app);

}  // namespace jobstate::app
