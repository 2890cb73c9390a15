#include "projections/verify.h"

#include <chrono>
#include <cstdio>
#include <string>

#include "app/commands.h"
#include "app/offline_store.h"

namespace jobstate::app {

namespace {

struct VerifyFlags {
  std::string data_dir;
  std::string store;  // a postgresql:// URI instead
};

int run_verify(const VerifyFlags& flags) {
  const char* cmd = "verify";
  if (flags.data_dir.empty() == flags.store.empty()) {
    print_error(cmd, "give one of --data-dir DIR or --store URI");
    return kExitUsage;
  }
  auto source = OfflineSource::open(flags.data_dir, flags.store);
  if (!source) {
    print_error(cmd, source.error().message);
    return kExitFailure;
  }
  Store* pg = (*source)->postgres();
  const bool terminal = stderr_is_terminal();
  const auto start = std::chrono::steady_clock::now();
  bool drawn = false;
  VerifyOptions options;
  options.on_progress = [&](uint64_t events) {
    if (!terminal) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (s < 1.0) return;
    std::fprintf(stderr, "\rverify: %llu events checked", static_cast<unsigned long long>(events));
    std::fflush(stderr);
    drawn = true;
  };
  auto report = pg ? verify_log(pg->log(), pg->read_model(), options.on_progress)
                   : verify_store((*source)->directory()->db(), options);
  if (drawn) std::fputs("\r\033[K", stderr);
  if (!report) {
    print_error(cmd, (report.error().code == ErrorCode::kCorruption ? "FAILED: " : "") +
                         report.error().message);
    return kExitFailure;
  }
  std::printf("ok: %llu events, %llu jobs; head seq %llu hash %s (%.3f s)\n",
              static_cast<unsigned long long>(report->events),
              static_cast<unsigned long long>(report->jobs),
              static_cast<unsigned long long>(report->head.seq), report->head.hash.c_str(),
              report->seconds);
  return kExitOk;
}

}  // namespace

void add_verify_command(CLI::App& app) {
  auto flags = std::make_shared<VerifyFlags>();
  auto* cmd = app.add_subcommand(
      "verify",
      "Check the hash chain, gapless seq, every job's history and the stored projection; works on "
      "a live store");
  auto* dir = cmd->add_option("--data-dir", flags->data_dir, "The store's directory");
  cmd->add_option("--store", flags->store, "A postgresql:// URI: verify a PostgreSQL store")
      ->excludes(dir);
  cmd->callback(
      [flags] { exit_code() = run_guarded("verify", [&] { return run_verify(*flags); }); });
}

}  // namespace jobstate::app
