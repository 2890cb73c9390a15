// ClaimQueue: the queued jobs a claim may take, in the order claims take
// them: by type, highest priority first, then oldest (created_seq). Jobs
// whose not_before has not come wait aside until it does. A writer that
// decides claims itself (the RocksDB backend's sequencer) keeps one in
// memory, updated with every state it decides, so a claim costs a map
// lookup, not a scan of the store.
//
// Thread safety: none; the writer's sequencer thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "domain/job.h"

namespace jobstate {

class ClaimQueue {
 public:
  // Files `s` while it is queued; forgets it otherwise.
  void update(const JobState& s);
  void clear();
  size_t size() const { return jobs_.size(); }

  // The job a claim for `types` takes at now_ms, if any: the highest
  // priority, then the lowest created_seq, among the types' queued jobs
  // whose not_before has passed.
  std::optional<JobId> best(const std::vector<std::string>& types, TimeMs now_ms);
  // The earliest not_before still ahead among the types' queued jobs.
  std::optional<TimeMs> next_claimable_ms(const std::vector<std::string>& types,
                                          TimeMs now_ms) const;

 private:
  struct Key {
    int64_t priority;
    uint64_t created_seq;
    JobId id;
    // Highest priority first, then oldest.
    bool operator<(const Key& o) const {
      if (priority != o.priority) return priority > o.priority;
      if (created_seq != o.created_seq) return created_seq < o.created_seq;
      return id < o.id;
    }
  };
  struct Filed {
    std::string type;
    Key key;
    TimeMs not_before_ms;  // 0: claimable at once
  };
  struct Type {
    std::set<Key> ready;
    std::set<std::pair<TimeMs, Key>> delayed;  // by not_before
  };
  void remove(const JobId& id);
  // Moves the type's delayed jobs whose time has come to ready.
  static void promote(Type& t, TimeMs now_ms);

  std::unordered_map<std::string, Type> types_;
  std::unordered_map<JobId, Filed> jobs_;
};

}  // namespace jobstate
