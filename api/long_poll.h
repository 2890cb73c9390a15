// LongPollRegistry: requests parked until a commit satisfies them or their
// timeout passes (GET /v1/jobs/{id}/wait, GET /v1/events?wait_s=, POST
// /v1/claims with wait_s: a claim wakes when a job of its types is queued,
// and tries again). No thread
// per waiting client: one service thread handles both the commit
// notifications (handed over by the writer, so the writer never renders or
// sends) and the timeouts.
//
// Every waiter is answered exactly once: claim() decides who answers.
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "domain/job.h"
#include "store/job_writer.h"

namespace jobstate::api {

struct Waiter {
  enum class Kind { kJob, kFeed, kClaim } kind = Kind::kJob;
  JobId job_id;                          // kJob
  std::optional<uint64_t> after_version;  // kJob: also wake when version exceeds it
  uint64_t after_seq = 0;                // kFeed: wake when the head passes it
  std::vector<std::string> types;        // kClaim: wake when a job of these types is queued
  std::chrono::steady_clock::time_point deadline;
  // Sends the response. `committed` is the job's state from the commit that
  // woke it (kJob), or nullptr (timeout, feed, shutdown: read the store).
  std::function<void(const JobState* committed)> answer;
  // True once the client went away (its connection closed): nobody is left
  // to answer, and a full registry frees the waiter's slot. Unset: never.
  std::function<bool()> gone;

  std::atomic<bool> claimed{false};
};

// Whether a job waiter is satisfied by state `s`.
bool job_wait_satisfied(const JobState& s, std::optional<uint64_t> after_version);

class LongPollRegistry {
 public:
  explicit LongPollRegistry(size_t max_parked);
  ~LongPollRegistry();  // answers every parked request, joins

  // Parks `w`. When max_parked requests are parked, first frees the slots of
  // those whose client went away (Waiter::gone); false when none had (503).
  bool park(const std::shared_ptr<Waiter>& w);
  // True for exactly one caller per waiter; that caller answers it.
  bool claim(Waiter& w);
  // From the writer's on_commit: queues the wake-ups; returns at once.
  void on_commit(const CommitInfo& info);
  // Answers every parked request now (shutdown).
  void answer_all();
  size_t parked() const { return parked_.load(); }

 private:
  void run();
  // Claims (unanswered) and forgets every waiter whose client went away;
  // how many. Cost: one pass over the parked waiters.
  size_t evict_gone();
  void wake(const CommitInfo& info);
  void answer(const std::shared_ptr<Waiter>& w, const JobState* committed);

  const size_t max_parked_;
  std::atomic<size_t> parked_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<CommitInfo> commits_;
  std::unordered_map<JobId, std::vector<std::shared_ptr<Waiter>>> by_job_;
  std::vector<std::shared_ptr<Waiter>> feed_;
  std::vector<std::shared_ptr<Waiter>> claims_;
  // The waiters of `w`'s kind (kFeed or kClaim).
  std::vector<std::shared_ptr<Waiter>>& list_of(const Waiter& w) {
    return w.kind == Waiter::Kind::kFeed ? feed_ : claims_;
  }
  using Timed = std::pair<std::chrono::steady_clock::time_point, std::weak_ptr<Waiter>>;
  struct Later {
    bool operator()(const Timed& a, const Timed& b) const { return a.first > b.first; }
  };
  std::priority_queue<Timed, std::vector<Timed>, Later> timeouts_;
  std::thread thread_;
};

}  // namespace jobstate::api
