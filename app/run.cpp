// jobstate run: runs a command as a job (client/run_command.h does the work;
// this file parses flags).
#include <signal.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "jobstate/run_command.h"

namespace jobstate::app {

namespace {
struct RunFlags {
  std::string server;
  std::string type = "command";
  int64_t heartbeat_timeout_s = 120;
  int64_t execution_timeout_s = 0;
  std::vector<std::string> command;
};
}  // namespace

void add_run_command(CLI::App& app) {
  auto flags = std::make_shared<RunFlags>();
  const char* env_server = std::getenv("JOBSTATE_SERVER");
  flags->server = env_server && *env_server ? env_server : "http://127.0.0.1:8080";
  auto* cmd = app.add_subcommand(
      "run",
      "Run a command as a job: create and start it, heartbeat while it runs, report its outcome, "
      "exit with its status. Stdout lines 'PROGRESS <fraction> <message>' set the job's progress.");
  cmd->add_option("--server", flags->server, "Server URL (default: $JOBSTATE_SERVER or this)")
      ->capture_default_str();
  cmd->add_option("--type", flags->type, "The job's type")->capture_default_str();
  cmd->add_option("--heartbeat-timeout", flags->heartbeat_timeout_s,
                  "Seconds without a heartbeat after which the server fails the job")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}))
      ->capture_default_str();
  cmd->add_option("--execution-timeout", flags->execution_timeout_s,
                  "Seconds after its start at which the server fails the job (code "
                  "execution_timeout), heartbeats or not; 0: none")
      ->check(CLI::Range(int64_t{0}, int64_t{604800}))
      ->capture_default_str();
  cmd->add_option("command", flags->command, "-- CMD ARGS...: the command and its arguments")
      ->required();
  cmd->footer(
      "Exit status: the command's; 128+N when signal N killed it; 127 when it could not be "
      "started; 125 when the job could not be created or started (the command did not run). A "
      "server started with --tokens needs a token that may create and start jobs (admin) in "
      "$JOBSTATE_TOKEN.");
  cmd->callback([flags] {
    // A closed stdout must end the command's output, not the runner.
    signal(SIGPIPE, SIG_IGN);
    client::RunCommandOptions options;
    options.client.base_url = flags->server;
    options.type = flags->type;
    options.heartbeat_timeout_s = flags->heartbeat_timeout_s;
    if (flags->execution_timeout_s > 0) options.execution_timeout_s = flags->execution_timeout_s;
    options.argv = flags->command;
    exit_code() = client::run_command_as_job(options);
  });
}

}  // namespace jobstate::app
