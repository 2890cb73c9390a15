// fill_store: fills a new store with a realistic mix of job histories through
// the Writer of a real JobStore (so every byte is what a server would have
// written), quickly: commands are submitted asynchronously and many share one
// fsync. Used to measure `jobstate rebuild`, `verify` and `replay` on big
// stores (docs/performance.md, "Rebuild rate (issue 4)").
//
//   fill_store DIR EVENTS [HEARTBEATS_PER_JOB]
//
// Each job: created, started, 0..2*HEARTBEATS_PER_JOB heartbeats with
// progress (default average 5), then succeeded (~85%), failed (~10%) or a
// cancel request and cancelled (~5%); one job in 50 stays running. 512 jobs
// are in flight at once, so a job's events are spread over the log.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "projections/job_store.h"

using namespace jobstate;

namespace {

struct PlannedJob {
  JobId id = JobId::generate();
  int heartbeats = 0;
  int outcome = 0;  // 0 succeed, 1 fail, 2 cancel, 3 stay running
  int step = 0;     // next command
};

// The next command of `job`, or nullopt when its history is complete.
std::optional<Command> next_command(PlannedJob& job, uint64_t n) {
  const int s = job.step++;
  if (s == 0)
    return CreateJob{"report.generate",
                     {{"input", "s3://reports/2026/11/input-" + std::to_string(n) + ".csv"},
                      {"priority", static_cast<int>(n % 5)}},
                     120,
                     {{"team", "data"}, {"env", "prod"}}};
  if (s == 1) return StartJob{"worker-" + std::to_string(n % 16)};
  if (s < 2 + job.heartbeats) {
    const double fraction = static_cast<double>(s - 1) / (job.heartbeats + 1);
    return Heartbeat{{{"fraction", fraction}, {"message", "step " + std::to_string(s - 1)}}};
  }
  const int t = s - 2 - job.heartbeats;
  switch (job.outcome) {
    case 0:
      if (t == 0)
        return SucceedJob{{{"rows", n * 7}, {"output", "s3://reports/out-" + std::to_string(n)}}};
      break;
    case 1:
      if (t == 0) return FailJob{{{"code", "upstream_error"}, {"message", "input not found"}}};
      break;
    case 2:
      if (t == 0) return RequestCancel{"user asked"};
      if (t == 1) return ConfirmCancelled{"stopped at a checkpoint"};
      break;
    default:
      break;
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: fill_store DIR EVENTS [HEARTBEATS_PER_JOB]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const uint64_t target_events = std::strtoull(argv[2], nullptr, 10);
  const int avg_heartbeats = argc > 3 ? std::atoi(argv[3]) : 5;
  SystemClock clock;
  JobStoreOptions o;
  o.data_dir = dir;
  o.clock = &clock;
  auto store = JobStore::open(o);
  if (!store) {
    std::fprintf(stderr, "fill_store: %s\n", store.error().message.c_str());
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::mt19937_64 rng(42);
  std::mutex mu;
  std::condition_variable cv;
  uint64_t in_flight = 0;
  std::atomic<uint64_t> failures{0};
  constexpr uint64_t kMaxInFlight = 20'000;
  constexpr size_t kActiveJobs = 512;
  std::deque<PlannedJob> active;
  uint64_t jobs = 0, submitted = 0;
  auto new_job = [&] {
    PlannedJob j;
    j.heartbeats = avg_heartbeats > 0 ? static_cast<int>(rng() % (2 * avg_heartbeats + 1)) : 0;
    const auto r = rng() % 100;
    j.outcome = r < 2 ? 3 : r < 7 ? 2 : r < 17 ? 1 : 0;
    ++jobs;
    return j;
  };
  while (submitted < target_events || !active.empty()) {
    if (active.size() < kActiveJobs && submitted < target_events) active.push_back(new_job());
    PlannedJob job = std::move(active.front());
    active.pop_front();
    auto command = next_command(job, jobs);
    if (!command) continue;  // history complete; a new job takes its slot
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight < kMaxInFlight; });
      ++in_flight;
    }
    CommandRequest req;
    req.job_id = job.id;
    req.command = std::move(*command);
    (*store)->writer().submit(std::move(req), [&](Result<CommandOutcome> r) {
      if (!r) {
        if (failures.fetch_add(1) == 0)
          std::fprintf(stderr, "fill_store: %s\n", r.error().message.c_str());
      }
      std::lock_guard lock(mu);
      --in_flight;
      cv.notify_one();
    });
    ++submitted;
    active.push_back(std::move(job));
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return in_flight == 0; });
  }
  const auto head = (*store)->writer().committed_head();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "fill_store: %llu events, %llu jobs in %.1f s (%.0f events/s); head %llu %s; %llu refused\n",
      static_cast<unsigned long long>(head.seq), static_cast<unsigned long long>(jobs), s,
      head.seq / s, static_cast<unsigned long long>(head.seq), head.hash.c_str(),
      static_cast<unsigned long long>(failures.load()));
  return failures.load() == 0 ? 0 : 1;
}
