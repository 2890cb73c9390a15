#include "store/verify_log.h"

#include <chrono>
#include <optional>
#include <unordered_map>

#include "store/hash_chain.h"

namespace jobstate {

namespace {
Error corrupt(std::string message) { return make_error(ErrorCode::kCorruption, std::move(message)); }
}  // namespace

Result<VerifyReport> verify_log(const EventLog& log, const ReadModel& rows,
                                const std::function<void(uint64_t)>& on_progress) {
  const auto t0 = std::chrono::steady_clock::now();
  VerifyReport report;
  report.head = LogHead{0, std::string(kGenesisHash)};
  std::unordered_map<JobId, JobState> jobs;
  std::optional<Error> failure;
  Status scanned = log.scan(0, UINT64_MAX, [&](const StoredEventView& v) {
    if (v.seq != report.head.seq + 1) {
      failure = corrupt("seq " + std::to_string(report.head.seq + 1) + " is missing (the log goes on at " +
                        std::to_string(v.seq) + ")");
      return false;
    }
    const std::string hash = chain_hash(report.head.hash, v.canonical_json());
    if (hash != v.hash_hex()) {
      failure = corrupt("seq " + std::to_string(v.seq) +
                        ": the hash chain breaks here: this event or its stored hash was changed");
      return false;
    }
    auto e = v.to_event();
    if (!e) {
      failure = e.error();
      return false;
    }
    auto it = jobs.find(v.job_id);
    auto next = apply(it == jobs.end() ? nullptr : &it->second, *e);
    if (!next) {
      failure = corrupt("seq " + std::to_string(v.seq) + " (job " + v.job_id.to_string() +
                        "): " + next.error().message);
      return false;
    }
    jobs[v.job_id] = std::move(*next);
    report.head = LogHead{v.seq, hash};
    if (on_progress && v.seq % 100'000 == 0) on_progress(v.seq);
    return true;
  });
  if (failure) return *failure;
  if (!scanned) return scanned.error();
  report.events = report.head.seq;

  auto head = log.head();
  if (!head) return head.error();
  if (*head != report.head)
    return corrupt("the head (seq " + std::to_string(head->seq) +
                   ") is not the chain's last event (seq " + std::to_string(report.head.seq) + ")");

  for (auto& [id, state] : jobs) {
    auto row = rows.row(id);
    if (!row) return row.error();
    if (!*row) return corrupt("job " + id.to_string() + " has no status row");
    auto want = decode_status_row(encode_status_row(state));
    if (!want) return want.error();
    if (!same_status_row(**row, *want))
      return corrupt("the status row of job " + id.to_string() + " differs from a replay of the log");
  }
  uint64_t listed = 0;
  std::optional<uint64_t> before;
  for (;;) {
    auto page = rows.list(ListFilter{}, before, 1000);
    if (!page) return page.error();
    for (auto& r : page->jobs) {
      auto st = r.to_state();
      if (!st) return st.error();
      if (!jobs.count(st->id))
        return corrupt("job " + st->id.to_string() + " has a status row but no history");
      ++listed;
    }
    if (!page->next_before_seq) break;
    before = page->next_before_seq;
  }
  if (listed != jobs.size())
    return corrupt(std::to_string(listed) + " status rows for " + std::to_string(jobs.size()) +
                   " jobs");
  report.jobs = jobs.size();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace jobstate
