#include "eventstore/backup.h"

#include <cstdio>
#include <string>

#include "app/commands.h"
#include "app/offline_store.h"

namespace jobstate::app {

namespace {

struct BackupFlags {
  std::string data_dir;
  std::string to_dir;
};

int run_backup(const BackupFlags& flags) {
  const char* cmd = "backup";
  // A stopped store is checkpointed (hard links, a consistent cut); one a
  // server holds is copied out of a secondary's consistent view instead.
  auto store = OfflineStore::open(flags.data_dir, OfflineAccess::kExclusive);
  if (!store && store.error().code == ErrorCode::kUnavailable)
    store = OfflineStore::open(flags.data_dir, OfflineAccess::kFollow);
  if (!store) {
    print_error(cmd, store.error().message);
    return kExitFailure;
  }
  auto result = backup_store((*store)->db(), flags.to_dir);
  if (!result) {
    print_error(cmd, result.error().message);
    return result.error().code == ErrorCode::kInvalidRequest ? kExitUsage : kExitFailure;
  }
  std::printf("backup written to %s (%s, %.1f MiB): head seq %llu hash %s\n", flags.to_dir.c_str(),
              result->method == BackupMethod::kCheckpoint ? "checkpoint of a stopped store"
                                                          : "copy of a live store",
              static_cast<double>(result->bytes) / (1 << 20),
              static_cast<unsigned long long>(result->head.seq), result->head.hash.c_str());
  return kExitOk;
}

}  // namespace

void add_backup_command(CLI::App& app) {
  auto flags = std::make_shared<BackupFlags>();
  auto* cmd = app.add_subcommand(
      "backup", "Write a consistent copy of the store to a new directory; works on a live store");
  cmd->add_option("--data-dir", flags->data_dir, "The store's directory")->required();
  cmd->add_option("--to", flags->to_dir, "Where to write the copy (must not exist)")->required();
  cmd->callback(
      [flags] { exit_code() = run_guarded("backup", [&] { return run_backup(*flags); }); });
}

}  // namespace jobstate::app
