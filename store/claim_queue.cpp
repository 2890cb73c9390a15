#include "store/claim_queue.h"

namespace jobstate {

void ClaimQueue::update(const JobState& s) {
  remove(s.id);
  if (s.status != JobStatus::kQueued) return;
  Filed f{s.type, Key{s.priority, s.created_seq, s.id}, s.not_before_ms.value_or(0)};
  Type& t = types_[s.type];
  if (f.not_before_ms > 0)
    t.delayed.emplace(f.not_before_ms, f.key);
  else
    t.ready.insert(f.key);
  jobs_.emplace(s.id, std::move(f));
}

void ClaimQueue::clear() {
  types_.clear();
  jobs_.clear();
}

void ClaimQueue::remove(const JobId& id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  const Filed& f = it->second;
  auto t = types_.find(f.type);
  if (t != types_.end()) {
    t->second.ready.erase(f.key);
    t->second.delayed.erase({f.not_before_ms, f.key});
    if (t->second.ready.empty() && t->second.delayed.empty()) types_.erase(t);
  }
  jobs_.erase(it);
}

void ClaimQueue::promote(Type& t, TimeMs now_ms) {
  while (!t.delayed.empty() && t.delayed.begin()->first <= now_ms) {
    t.ready.insert(t.delayed.begin()->second);
    t.delayed.erase(t.delayed.begin());
  }
}

std::optional<JobId> ClaimQueue::best(const std::vector<std::string>& types, TimeMs now_ms) {
  const Key* best = nullptr;
  for (const std::string& name : types) {
    auto it = types_.find(name);
    if (it == types_.end()) continue;
    promote(it->second, now_ms);
    if (it->second.ready.empty()) continue;
    const Key& first = *it->second.ready.begin();
    if (!best || first < *best) best = &first;
  }
  if (!best) return std::nullopt;
  return best->id;
}

std::optional<TimeMs> ClaimQueue::next_claimable_ms(const std::vector<std::string>& types,
                                                    TimeMs now_ms) const {
  std::optional<TimeMs> next;
  for (const std::string& name : types) {
    auto it = types_.find(name);
    if (it == types_.end()) continue;
    for (const auto& [at, key] : it->second.delayed)
      if (at > now_ms) {
        if (!next || at < *next) next = at;
        break;
      }
  }
  return next;
}

}  // namespace jobstate
