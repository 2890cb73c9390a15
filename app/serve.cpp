// jobstate serve: parses its flags, starts the Service (service/service.h:
// the store, the watchdog, the executors, the webhooks and the HTTP API), and stops it
// cleanly on SIGTERM/SIGINT; SIGHUP reloads the --tokens file.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <string>

#include "api/open_access.h"
#include "api/request_json.h"
#include "api/server.h"
#include "logging/logging.h"
#include "app/commands.h"
#include "executors/executor_config.h"
#include "service/service.h"
#include "webhooks/webhook_config.h"

namespace jobstate::app {

namespace {
struct ServeFlags {
  std::string data_dir = "./jobstate-data";
  std::string store;  // --store: a postgresql:// URI instead of --data-dir
  std::string listen = "127.0.0.1:8080";
  int threads = 2;
  size_t max_parked = 10'000;
  int64_t watchdog_interval_ms = 200;
  std::string log_level = "info";
  std::string config_file;  // --config: built-in executors (docs/executors.md)
  bool insecure_no_auth = false;  // --insecure-no-auth: listen beyond loopback without tokens
  std::string tokens_file;        // --tokens: bearer tokens and their roles
  uint64_t disk_reserve_mb = 256;  // --disk-reserve-mb: the free-space guard (RocksDB)
  int64_t max_connections = 0;    // --max-connections (0: from the descriptor limit)
  int64_t idle_timeout_s = 90;    // --idle-timeout
  bool open_metrics = false;      // --open-metrics: GET /metrics without a token
  std::string log_format = "text";  // --log-format text|json
  bool access_log = true;           // --access-log / --no-access-log
};

bool parse_listen(const std::string& listen, std::string& host, uint16_t& port) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = listen.substr(0, colon);
  auto p = api::parse_int64(listen.substr(colon + 1));
  if (!p || *p < 0 || *p > 65535) return false;
  port = static_cast<uint16_t>(*p);
  return true;
}

int serve(const ServeFlags& f) {
  // Every line from here on is in --log-format, the refusals below included.
  const auto format = logging::parse_format(f.log_format).value_or(logging::Format::kText);
  logging::configure(format, spdlog::level::from_str(f.log_level));
  // A refusal to start: one line on stderr ("jobstate serve: ..." in text).
  auto say_error = [](const std::string& message) {
    logging::stderr_line(spdlog::level::err, "jobstate serve: " + message);
  };
  api::ServerOptions server_options;
  if (!parse_listen(f.listen, server_options.host, server_options.port)) {
    say_error(fmt::format("--listen must be HOST:PORT, got '{}'", f.listen));
    return kExitUsage;
  }
  std::shared_ptr<identity::TokenSet> tokens;  // reloaded below on SIGHUP
  if (!f.tokens_file.empty()) {
    if (f.insecure_no_auth) {
      say_error("--insecure-no-auth and --tokens exclude each other");
      return kExitUsage;
    }
    auto opened = identity::TokenSet::open(f.tokens_file);
    if (!opened) {
      say_error(fmt::format("--tokens: {}", opened.error().message));
      return kExitUsage;
    }
    tokens = std::move(*opened);
    server_options.tokens = tokens;
  }
  // Without tokens anyone who reaches the server may change any job: only
  // this machine may, unless the operator says otherwise in so many words.
  const bool loopback = api::is_loopback_listen_host(server_options.host);
  if (!loopback && !f.insecure_no_auth && !server_options.tokens) {
    say_error(fmt::format("--listen {} is not a loopback address, and without tokens "
                 "anyone who reaches it could change any job; give --tokens FILE, listen on "
                 "127.0.0.1 (behind a proxy that authenticates) or pass --insecure-no-auth",
                 f.listen));
    return kExitUsage;
  }
  // Any Host only where other machines may send one: on loopback, a
  // rebinding's name is still refused.
  server_options.any_host = f.insecure_no_auth && !loopback;
  server_options.threads = f.threads;
  server_options.open_metrics = f.open_metrics;
  server_options.max_connections = f.max_connections;
  server_options.idle_timeout_s = f.idle_timeout_s;
  server_options.access_log = f.access_log;
  // Every connection takes a descriptor: use all the hard limit allows (the
  // connection cap stays below it, so accept() never runs out).
  const uint64_t descriptors = api::raise_descriptor_limit();
  spdlog::info("descriptor limit {}: at most {} connections", descriptors,
               api::connection_limit(f.max_connections, descriptors));

  // Signals are taken by sigwait() below, never by a random thread; a client
  // that hangs up must not kill the server with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);  // reload the tokens file
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  ServiceOptions options;
  options.store = f.store.empty() ? f.data_dir : f.store;
  options.server = server_options;
  options.max_parked = f.max_parked;
  options.watchdog.interval_ms = f.watchdog_interval_ms;
  options.disk_reserve_bytes = f.disk_reserve_mb << 20;
  if (!f.config_file.empty()) {
    auto loaded = executors::load_executor_config(f.config_file);
    if (!loaded) {
      say_error(fmt::format("--config: {}", loaded.error().message));
      return kExitUsage;
    }
    options.executors = std::move(*loaded);
    auto webhooks = webhooks::load_webhook_config(f.config_file);
    if (!webhooks) {
      say_error(fmt::format("--config: {}", webhooks.error().message));
      return kExitUsage;
    }
    options.webhooks = std::move(*webhooks);
  }
  auto service = Service::start(std::move(options));
  if (!service) {
    say_error(service.error().message);
    return kExitFailure;
  }
  const std::string url =
      "http://" + server_options.host + ":" + std::to_string((*service)->port());
  const std::string where = f.store.empty() ? "data: " + f.data_dir : "store: postgres";
  logging::stdout_line("jobstate serving on " + url + " (" + where + ")",
                       {{"url", url}, {"store", f.store.empty() ? "rocksdb" : "postgres"}});

  int sig = 0;
  while (sigwait(&stop_signals, &sig) == 0 && sig == SIGHUP) {
    if (!tokens) {
      spdlog::info("SIGHUP: no --tokens file to reload");
      continue;
    }
    if (auto n = tokens->reload())
      spdlog::info("SIGHUP: reloaded {} ({} tokens)", tokens->path(), *n);
    else
      spdlog::error("SIGHUP: kept the tokens loaded before: {}", n.error().message);
  }
  spdlog::info("{}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*service)->stop();
  logging::stdout_line("jobstate stopped");
  return kExitOk;
}
}  // namespace

void add_serve_command(CLI::App& app) {
  auto flags = std::make_shared<ServeFlags>();
  auto* cmd = app.add_subcommand("serve", "Serve the HTTP API on a store");
  auto* data_dir =
      cmd->add_option("--data-dir", flags->data_dir, "Store directory (created when missing)")
          ->capture_default_str();
  cmd->add_option("--store", flags->store,
                  "A postgresql:// URI: serve a PostgreSQL store instead of --data-dir "
                  "(several nodes may serve one database)")
      ->excludes(data_dir);
  cmd->add_option("--listen", flags->listen, "HOST:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  cmd->add_option("--threads", flags->threads, "HTTP reactor threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--max-connections", flags->max_connections,
                  "Most client connections open at once (503 and close beyond); 0: from the "
                  "descriptor limit, at most 10000")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--idle-timeout", flags->idle_timeout_s,
                  "Seconds after its last request arrived that a connection with no request in "
                  "flight is closed")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}))
      ->capture_default_str();
  cmd->add_option("--max-waiting", flags->max_parked,
                  "Most long-poll requests parked at once (503 beyond)")
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}))
      ->capture_default_str();
  cmd->add_option("--watchdog-interval-ms", flags->watchdog_interval_ms,
                  "Time between watchdog sweeps")
      ->check(CLI::Range(int64_t{10}, int64_t{1000}))
      ->capture_default_str();
  cmd->add_option("--config", flags->config_file,
                  "JSON file of built-in executors (docs/executors.md) and webhooks "
                  "(docs/operations.md#webhooks)");
  cmd->add_option("--tokens", flags->tokens_file,
                  "Tokens file (jobstate token add): every request but /healthz and /readyz "
                  "needs a bearer token of a role that allows it; reloaded on SIGHUP");
  cmd->add_option("--disk-reserve-mb", flags->disk_reserve_mb,
                  "Free disk space kept in reserve (RocksDB store): below it writes get 503 "
                  "and /readyz says disk-full, until space is freed (0: no guard)")
      ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 30))
      ->capture_default_str();
  cmd->add_flag("--insecure-no-auth", flags->insecure_no_auth,
               "Serve a non-loopback --listen without tokens, to any Host (anyone who "
               "reaches it may change any job; browser pages still may not)");
  cmd->add_flag("--open-metrics", flags->open_metrics,
               "With --tokens: GET /metrics needs no token (for a Prometheus that cannot send one)");
  cmd->add_option("--log-format", flags->log_format,
                  "text (for a terminal) or json (one object per line: time, level, message, "
                  "fields; every line the server writes)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_flag("--access-log,!--no-access-log", flags->access_log,
                "One info line per answered request: method, route, status, duration, bytes, "
                "request id (default on)");
  cmd->add_option("--log-level", flags->log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  cmd->callback([flags] { exit_code() = serve(*flags); });
}

}  // namespace jobstate::app
