#include "projections/rebuild.h"

#include <chrono>
#include <cstdio>
#include <string>

#include "app/commands.h"
#include "app/offline_store.h"
#include "pgstore/pg_store.h"
#include "store/verify_log.h"

namespace jobstate::app {

namespace {

struct RebuildFlags {
  std::string data_dir;
  std::string store;  // a postgresql:// URI instead
  bool check_only = false;
};

// Draws "\rrebuild: N events replayed (R events/s)" on a terminal once the
// run has taken longer than a second; erases it when done.
class ProgressLine {
 public:
  ProgressLine() : enabled_(stderr_is_terminal()), start_(std::chrono::steady_clock::now()) {}
  ~ProgressLine() {
    if (drawn_) std::fputs("\r\033[K", stderr);
  }
  void update(uint64_t events) {
    if (!enabled_) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (s < 1.0) return;
    std::fprintf(stderr, "\rrebuild: %llu events replayed (%.0f events/s)",
                 static_cast<unsigned long long>(events), events / s);
    std::fflush(stderr);
    drawn_ = true;
  }

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

// --store: the postgres backend's rows, recomputed (or, --check, compared by
// verify_log's row check).
int run_rebuild_postgres(const RebuildFlags& flags) {
  const char* cmd = "rebuild";
  if (flags.check_only) {
    auto store = open_offline_postgres(flags.store);
    if (!store) {
      print_error(cmd, store.error().message);
      return kExitFailure;
    }
    auto report = verify_log((*store)->log(), (*store)->read_model());
    if (!report) {
      print_error(cmd, report.error().message);
      return kExitFailure;
    }
    std::printf("status rows match the log: %llu events replayed, %llu jobs\n",
                static_cast<unsigned long long>(report->events),
                static_cast<unsigned long long>(report->jobs));
    return kExitOk;
  }
  if (!is_postgres_uri(flags.store)) {
    print_error(cmd, "--store must be a postgresql:// URI, not '" + flags.store + "'");
    return kExitUsage;
  }
  auto jobs = rebuild_pg_rows(flags.store);
  if (!jobs) {
    print_error(cmd, jobs.error().message + " (the rows were not changed)");
    return kExitFailure;
  }
  std::printf("status rows rebuilt: %llu jobs\n", static_cast<unsigned long long>(*jobs));
  return kExitOk;
}

int run_rebuild(const RebuildFlags& flags) {
  const char* cmd = "rebuild";
  if (flags.data_dir.empty() == flags.store.empty()) {
    print_error(cmd, "give one of --data-dir DIR or --store URI");
    return kExitUsage;
  }
  if (!flags.store.empty()) return run_rebuild_postgres(flags);
  auto store = OfflineStore::open(
      flags.data_dir, flags.check_only ? OfflineAccess::kFollow : OfflineAccess::kExclusive);
  if (!store) {
    if (!flags.check_only && store.error().message.find("in use by") != std::string::npos) {
      print_error(
          cmd, store.error().message +
                   ": stop the server before rebuilding (rebuild --check works on a live store)");
    } else {
      print_error(cmd, store.error().message);
    }
    return kExitFailure;
  }
  Result<RebuildStats> stats = RebuildStats{};
  {
    ProgressLine progress;
    RebuildOptions options;
    options.check_only = flags.check_only;
    options.on_progress = [&progress](uint64_t events) { progress.update(events); };
    stats = rebuild_projections((*store)->db(), options);
  }
  if (!stats) {
    // A failed rebuild switches nothing: the projection in use is untouched.
    print_error(cmd, flags.check_only
                         ? stats.error().message
                         : stats.error().message + " (the projection was not changed)");
    return kExitFailure;
  }
  const double rate = stats->seconds > 0 ? static_cast<double>(stats->events) / stats->seconds : 0;
  std::printf(
      "%s: %llu events replayed, %llu jobs, %.3f s, %.0f events/s (projection generation %llu)\n",
      flags.check_only ? "projection matches the log" : "projection rebuilt",
      static_cast<unsigned long long>(stats->events), static_cast<unsigned long long>(stats->jobs),
      stats->seconds, rate, static_cast<unsigned long long>(stats->generation));
  return kExitOk;
}

}  // namespace

void add_rebuild_command(CLI::App& app) {
  auto flags = std::make_shared<RebuildFlags>();
  auto* cmd = app.add_subcommand(
      "rebuild",
      "Rebuild the status projection from the log (needs the server stopped); --check only "
      "compares, and works on a live store");
  auto* dir = cmd->add_option("--data-dir", flags->data_dir, "The store's directory");
  cmd->add_option("--store", flags->store,
                  "A postgresql:// URI: recompute (or --check) a PostgreSQL store's status rows; "
                  "writes wait while it runs")
      ->excludes(dir);
  cmd->add_flag("--check", flags->check_only,
                "Compare the stored projection with a replay; exit 1 on a difference");
  cmd->callback(
      [flags] { exit_code() = run_guarded("rebuild", [&] { return run_rebuild(*flags); }); });
}

}  // namespace jobstate::app
