// jobstate copy --from SRC --to DST: the whole log of one store into a new,
// empty one, each SRC and DST a data directory (RocksDB) or a postgresql://
// URI, keeping every seq, hash and data text; DST's read model is built from
// it. GET /v1/audit/head and `verify` give the same head on both.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "app/commands.h"
#include "app/offline_store.h"
#include "pgstore/pg_store.h"
#include "projections/log_import.h"

namespace jobstate::app {

namespace {

struct CopyFlags {
  std::string from;
  std::string to;
};

int run_copy(const CopyFlags& flags) {
  const char* cmd = "copy";
  auto source = is_postgres_uri(flags.from) ? OfflineSource::open("", flags.from)
                                             : OfflineSource::open(flags.from, "");
  if (!source) {
    print_error(cmd, "--from: " + source.error().message);
    return kExitFailure;
  }
  auto import = is_postgres_uri(flags.to) ? open_pg_import(flags.to) : open_rocksdb_import(flags.to);
  if (!import) {
    print_error(cmd, "--to: " + import.error().message);
    return import.error().code == ErrorCode::kInvalidRequest ? kExitUsage : kExitFailure;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<Error> failure;
  LogHead head;
  Status scanned = (*source)->log().scan(0, UINT64_MAX, [&](const StoredEventView& v) {
    if (auto s = (*import)->append(v); !s) {
      failure = s.error();
      return false;
    }
    head = LogHead{v.seq, v.hash_hex()};
    return true;
  });
  if (!failure && !scanned) failure = scanned.error();
  if (!failure)
    if (auto s = (*import)->finish(); !s) failure = s.error();
  if (failure) {
    print_error(cmd, failure->message);
    return kExitFailure;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("copied %llu events; head seq %llu hash %s (%.3f s, %.0f events/s)\n",
              static_cast<unsigned long long>(head.seq), static_cast<unsigned long long>(head.seq),
              head.seq ? head.hash.c_str() : "", s, s > 0 ? head.seq / s : 0.0);
  return kExitOk;
}

}  // namespace

void add_copy_command(CLI::App& app) {
  auto flags = std::make_shared<CopyFlags>();
  auto* cmd = app.add_subcommand(
      "copy",
      "Copy a whole store into a new, empty one (a directory or a postgresql:// URI), keeping "
      "every seq and hash; works on a live source");
  cmd->add_option("--from", flags->from, "The source: a data directory or a postgresql:// URI")
      ->required();
  cmd->add_option("--to", flags->to,
                  "The destination: a new or empty directory, or a postgresql:// URI of a "
                  "database without jobstate events")
      ->required();
  cmd->callback([flags] { exit_code() = run_guarded("copy", [&] { return run_copy(*flags); }); });
}

}  // namespace jobstate::app
