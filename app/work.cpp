// jobstate work: claims jobs and runs a command for each (client/work.cpp
// does the work; this file parses flags).
#include <signal.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "domain/job.h"
#include "jobstate/run_command.h"

namespace jobstate::app {

namespace {
struct WorkFlags {
  std::string server;
  std::vector<std::string> types;
  int concurrency = 1;
  std::string worker;
  int64_t cancel_grace_s = 10;
  std::vector<std::string> command;
};
}  // namespace

void add_work_command(CLI::App& app) {
  auto flags = std::make_shared<WorkFlags>();
  const char* env_server = std::getenv("JOBSTATE_SERVER");
  flags->server = env_server && *env_server ? env_server : "http://127.0.0.1:8080";
  auto* cmd = app.add_subcommand(
      "work",
      "Claim jobs of the given types and run a command for each: params as JSON on stdin and in "
      "$JOBSTATE_PARAMS, heartbeats while it runs, 'PROGRESS <fraction> <message>' lines as "
      "progress, its exit status as the outcome. SIGTERM drains (a second one stops the commands). "
      "A server started with --tokens needs a worker token in $JOBSTATE_TOKEN.");
  cmd->add_option("--server", flags->server, "Server URL (default: $JOBSTATE_SERVER or this)")
      ->capture_default_str();
  // One value per --type, collected occurrence by occurrence: a list option
  // would take the "--" before the command as the end of its list, and parse
  // the command's own flags as jobstate's.
  cmd->add_option_function<std::string>(
         "--type", [flags](const std::string& t) { flags->types.push_back(t); },
         "A job type to claim (repeat for several)")
      ->required()
      ->trigger_on_parse()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--concurrency", flags->concurrency, "Commands run at once")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--worker", flags->worker, "The worker name jobs record (default: host/pid)");
  cmd->add_option("--cancel-grace", flags->cancel_grace_s,
                  "Seconds between SIGTERM and SIGKILL when a job is cancelled or the worker stops")
      ->check(CLI::Range(int64_t{0}, int64_t{3600}))
      ->capture_default_str();
  cmd->add_option("command", flags->command, "-- CMD ARGS...: the command and its arguments")
      ->required();
  cmd->callback([flags] {
    for (const auto& t : flags->types)
      if (!is_valid_job_type(t)) throw CLI::ValidationError("--type", "'" + t + "' is not a job type (1 to 128 of A-Za-z0-9._:-)");
    signal(SIGPIPE, SIG_IGN);
    client::WorkOptions options;
    options.client.base_url = flags->server;
    options.types = flags->types;
    options.concurrency = flags->concurrency;
    options.worker = flags->worker;
    options.cancel_grace_ms = flags->cancel_grace_s * 1000;
    options.argv = flags->command;
    exit_code() = client::work_on_claims(options);
  });
}

}  // namespace jobstate::app
