// SharedLeadership: one store's Leadership (store/leadership.h) asked by
// several duties of this node, each from its own thread: the watchdog's
// sweep and every webhook endpoint's delivery loop. A Leadership is asked
// from one thread at a time; this takes turns. All duties follow the same
// lead, so on a shared store one node sweeps and delivers.
//
// Thread safety: holds_lead() from any thread.
#pragma once

#include <mutex>

#include "store/leadership.h"

namespace jobstate {

class SharedLeadership final : public Leadership {
 public:
  // REQUIRES: inner outlives this.
  explicit SharedLeadership(Leadership& inner) : inner_(inner) {}
  bool holds_lead() override {
    std::lock_guard lock(mu_);
    return inner_.holds_lead();
  }

 private:
  Leadership& inner_;
  std::mutex mu_;
};

}  // namespace jobstate
