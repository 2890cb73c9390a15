#include <cstdio>
#include <optional>
#include <string>

#include "app/commands.h"
#include "app/offline_store.h"
#include "eventstore/log_reader.h"

namespace jobstate::app {

namespace {

struct ReplayFlags {
  std::string data_dir;
  std::string store;  // a postgresql:// URI instead
  std::string job;
  std::string after_seq;
  std::string until_seq;
};

// Collects output lines and writes them in large chunks: one write per MiB
// instead of one per event.
class LineWriter {
 public:
  LineWriter() { buf_.reserve(kChunkBytes + 4096); }
  void add(const std::string& line) {
    buf_ += line;
    buf_ += '\n';
    if (buf_.size() >= kChunkBytes) flush();
  }
  // False once a write failed (a full disk, a closed pipe with SIGPIPE ignored).
  bool flush() {
    if (!buf_.empty() && ok_) ok_ = std::fwrite(buf_.data(), 1, buf_.size(), stdout) == buf_.size();
    buf_.clear();
    return ok_;
  }
  bool finish() { return flush() && std::fflush(stdout) == 0 && ok_; }

 private:
  static constexpr size_t kChunkBytes = 1 << 20;
  std::string buf_;
  bool ok_ = true;
};

int run_replay(const ReplayFlags& flags) {
  const char* cmd = "replay";
  std::optional<JobId> job;
  if (!flags.job.empty()) {
    job = JobId::parse(flags.job);
    if (!job) {
      print_error(cmd, "--job must be a job id (a lowercase UUID v4), not '" + flags.job + "'");
      return kExitUsage;
    }
  }
  uint64_t after = 0, until = UINT64_MAX;
  if (!flags.after_seq.empty()) {
    auto v = parse_u64(flags.after_seq);
    if (!v) {
      print_error(cmd, "--after-seq must be a non-negative integer, not '" + flags.after_seq + "'");
      return kExitUsage;
    }
    after = *v;
  }
  if (!flags.until_seq.empty()) {
    auto v = parse_u64(flags.until_seq);
    if (!v) {
      print_error(cmd, "--until-seq must be a non-negative integer, not '" + flags.until_seq + "'");
      return kExitUsage;
    }
    until = *v;
  }
  if (until < after) {
    print_error(cmd, "empty range: --until-seq " + std::to_string(until) +
                         " is below --after-seq " + std::to_string(after));
    return kExitUsage;
  }

  if (flags.data_dir.empty() == flags.store.empty()) {
    print_error(cmd, "give one of --data-dir DIR or --store URI");
    return kExitUsage;
  }
  auto source = OfflineSource::open(flags.data_dir, flags.store);
  if (!source) {
    print_error(cmd, source.error().message);
    return kExitFailure;
  }
  const EventLog& log = (*source)->log();
  LineWriter out;
  Status scanned = ok_status();
  bool job_seen = false;
  if (job) {
    // A job's history through the job_events index; seq bounds filter it.
    scanned = log.scan_job(*job, 0, SIZE_MAX, [&](const StoredEventView& v) {
      job_seen = true;
      if (v.seq <= after) return true;
      if (v.seq > until) return false;
      out.add(v.json_text());
      return true;
    });
  } else {
    scanned = log.scan(after, until, [&](const StoredEventView& v) {
      out.add(v.json_text());
      return true;
    });
  }
  if (!out.finish()) {
    print_error(cmd, "writing to standard output failed");
    return kExitFailure;
  }
  if (!scanned) {
    print_error(cmd, scanned.error().message);
    return kExitFailure;
  }
  if (job && !job_seen) {
    print_error(cmd, "no job " + job->to_string() + " in " + flags.data_dir);
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

void add_replay_command(CLI::App& app) {
  auto flags = std::make_shared<ReplayFlags>();
  auto* cmd = app.add_subcommand(
      "replay",
      "Print events as JSON lines (the API's event JSON) in seq order; works on a live store");
  auto* dir = cmd->add_option("--data-dir", flags->data_dir, "The store's directory");
  cmd->add_option("--store", flags->store, "A postgresql:// URI: replay a PostgreSQL store")
      ->excludes(dir);
  cmd->add_option("--job", flags->job, "Only this job's events");
  cmd->add_option("--after-seq", flags->after_seq, "Only events with seq > N");
  cmd->add_option("--until-seq", flags->until_seq, "Only events with seq <= N");
  cmd->callback(
      [flags] { exit_code() = run_guarded("replay", [&] { return run_replay(*flags); }); });
}

}  // namespace jobstate::app
