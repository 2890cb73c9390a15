#include "api/long_poll.h"

#include <algorithm>

namespace jobstate::api {

bool job_wait_satisfied(const JobState& s, std::optional<uint64_t> after_version) {
  return is_terminal(s.status) || (after_version && s.version > *after_version);
}

LongPollRegistry::LongPollRegistry(size_t max_parked) : max_parked_(max_parked) {
  thread_ = std::thread([this] { run(); });
}

LongPollRegistry::~LongPollRegistry() {
  answer_all();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool LongPollRegistry::park(const std::shared_ptr<Waiter>& w) {
  auto take_slot = [this] {
    if (parked_.fetch_add(1) < max_parked_) return true;
    parked_.fetch_sub(1);
    return false;
  };
  // Clients that connected, asked and left must not hold their slots until
  // their timeouts (up to 60 s): a loop of them would lock everyone out.
  if (!take_slot() && (evict_gone() == 0 || !take_slot())) return false;
  {
    std::lock_guard lock(mu_);
    if (w->kind == Waiter::Kind::kJob)
      by_job_[w->job_id].push_back(w);
    else
      list_of(*w).push_back(w);
    timeouts_.emplace(w->deadline, w);
  }
  cv_.notify_all();  // the earliest timeout may have changed
  return true;
}

size_t LongPollRegistry::evict_gone() {
  size_t evicted = 0;
  auto sweep = [&](std::vector<std::shared_ptr<Waiter>>& list) {
    std::erase_if(list, [&](const std::shared_ptr<Waiter>& w) {
      if (w->claimed.load()) return true;  // answered already; only the entry was left
      if (!w->gone || !w->gone()) return false;
      if (claim(*w)) ++evicted;
      return true;
    });
  };
  std::lock_guard lock(mu_);
  for (auto it = by_job_.begin(); it != by_job_.end();) {
    sweep(it->second);
    it = it->second.empty() ? by_job_.erase(it) : std::next(it);
  }
  sweep(feed_);
  sweep(claims_);
  return evicted;
}

bool LongPollRegistry::claim(Waiter& w) {
  if (w.claimed.exchange(true)) return false;
  parked_.fetch_sub(1);
  return true;
}

void LongPollRegistry::on_commit(const CommitInfo& info) {
  {
    std::lock_guard lock(mu_);
    // Nobody waits: keep the writer's cost at zero.
    if (by_job_.empty() && feed_.empty() && claims_.empty()) return;
    commits_.push_back(info);
  }
  cv_.notify_all();
}

void LongPollRegistry::answer(const std::shared_ptr<Waiter>& w, const JobState* committed) {
  try {
    w->answer(committed);
  } catch (...) {
    // The client may be gone; nothing else to do for it.
  }
}

void LongPollRegistry::answer_all() {
  std::vector<std::shared_ptr<Waiter>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, ws] : by_job_) all.insert(all.end(), ws.begin(), ws.end());
    all.insert(all.end(), feed_.begin(), feed_.end());
    all.insert(all.end(), claims_.begin(), claims_.end());
    by_job_.clear();
    feed_.clear();
    claims_.clear();
  }
  for (auto& w : all)
    if (claim(*w)) answer(w, nullptr);
}

void LongPollRegistry::wake(const CommitInfo& info) {
  std::vector<std::pair<std::shared_ptr<Waiter>, const JobState*>> due;
  {
    std::lock_guard lock(mu_);
    for (auto& changed : info.changed_jobs) {
      const JobState& st = *changed;
      auto it = by_job_.find(st.id);
      if (it == by_job_.end()) continue;
      auto& ws = it->second;
      std::erase_if(ws, [&](const std::shared_ptr<Waiter>& w) {
        if (w->claimed) return true;
        if (!job_wait_satisfied(st, w->after_version)) return false;
        due.emplace_back(w, &st);
        return true;
      });
      if (ws.empty()) by_job_.erase(it);
    }
    std::erase_if(feed_, [&](const std::shared_ptr<Waiter>& w) {
      if (w->claimed) return true;
      if (info.head.seq <= w->after_seq) return false;
      due.emplace_back(w, nullptr);
      return true;
    });
    if (!claims_.empty()) {
      std::vector<const std::string*> queued;  // types of the jobs the batch queued
      for (auto& changed : info.changed_jobs)
        if (changed->status == JobStatus::kQueued) queued.push_back(&changed->type);
      if (!queued.empty())
        std::erase_if(claims_, [&](const std::shared_ptr<Waiter>& w) {
          if (w->claimed) return true;
          for (const std::string* t : queued)
            if (std::find(w->types.begin(), w->types.end(), *t) != w->types.end()) {
              due.emplace_back(w, nullptr);
              return true;
            }
          return false;
        });
    }
  }
  for (auto& [w, st] : due)
    if (claim(*w)) answer(w, st);
}

void LongPollRegistry::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    while (!commits_.empty()) {
      CommitInfo info = std::move(commits_.front());
      commits_.pop_front();
      lock.unlock();
      wake(info);
      lock.lock();
    }
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<Waiter>> expired;
    while (!timeouts_.empty() && timeouts_.top().first <= now) {
      if (auto w = timeouts_.top().second.lock()) expired.push_back(std::move(w));
      timeouts_.pop();
    }
    if (!expired.empty()) {
      for (auto& w : expired) {
        if (w->kind == Waiter::Kind::kJob) {
          auto it = by_job_.find(w->job_id);
          if (it != by_job_.end()) {
            std::erase(it->second, w);
            if (it->second.empty()) by_job_.erase(it);
          }
        } else {
          std::erase(list_of(*w), w);
        }
      }
      lock.unlock();
      for (auto& w : expired)
        if (claim(*w)) answer(w, nullptr);
      lock.lock();
      continue;
    }
    if (!commits_.empty()) continue;
    if (timeouts_.empty())
      cv_.wait(lock);
    else {
      // A copy: wait_until re-reads its deadline after waking, and a park()
      // meanwhile may reallocate the heap under a reference to top().
      const auto next_timeout = timeouts_.top().first;
      cv_.wait_until(lock, next_timeout);
    }
  }
}

}  // namespace jobstate::api
