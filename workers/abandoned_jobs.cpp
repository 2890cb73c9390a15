#include "workers/abandoned_jobs.h"

#include <spdlog/spdlog.h>

#include <optional>
#include <vector>

namespace jobstate::workers {

using nlohmann::json;

Result<size_t> fail_abandoned_jobs(const ReadModel& jobs, JobWriter& writer,
                                   const std::string& worker_prefix) {
  struct Abandoned {
    JobId id;
    uint64_t version;
    std::string worker;
    std::optional<std::string> lease_hash;
  };
  std::vector<Abandoned> found;
  std::optional<uint64_t> before;
  // Bounded: each page moves `before` strictly down.
  while (true) {
    auto page = jobs.list(ListFilter{JobStatus::kRunning, std::nullopt}, before, 1000);
    if (!page) return page.error();
    for (const auto& row : page->jobs) {
      auto state = row.to_state();
      if (!state) return state.error();
      if (state->worker && state->worker->rfind(worker_prefix, 0) == 0)
        found.push_back({state->id, state->version, *state->worker, state->lease_hash});
    }
    if (!page->next_before_seq) break;
    before = page->next_before_seq;
  }
  size_t failed = 0;
  for (const auto& a : found) {
    CommandRequest request;
    request.job_id = a.id;
    request.expected_version = a.version;
    // The attempt's owner is gone with its lease; the store, which keeps the
    // lease's hash, reports for it.
    request.lease_hash = a.lease_hash;
    request.command = FailJob{
        json{{"code", "abandoned"},
             {"message", "the jobstate server that ran this job's command (" + a.worker +
                             ") stopped before the command finished; its outcome is unknown"},
             {"details", {{"worker", a.worker}}}}};
    auto r = writer.execute(std::move(request));
    if (r) {
      ++failed;
      spdlog::warn("workers: job {} failed as abandoned (worker {})", a.id.to_string(), a.worker);
    } else if (r.error().code == ErrorCode::kUnavailable) {
      return r.error();
    }
    // Anything else: the job moved on meanwhile (a worker finished it); fine.
  }
  return failed;
}

}  // namespace jobstate::workers
