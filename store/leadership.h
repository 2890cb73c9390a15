// Leadership: which node runs the duties that only one node may run at a
// time (the watchdog's sweep). A store that one process owns always leads; a
// store that several nodes share lets one node at a time hold the lead, and
// another take it over when that node dies (each backend states how soon).
//
// Thread safety: holds_lead() from one thread at a time (the watchdog's).
#pragma once

namespace jobstate {

class Leadership {
 public:
  virtual ~Leadership() = default;
  // True while this node holds the lead; when nobody holds it, tries to take
  // it. Cheap enough to ask before every sweep. A node that loses its
  // connection to the store loses the lead.
  virtual bool holds_lead() = 0;
};

// For a store that one process owns.
class SoleLeader final : public Leadership {
 public:
  bool holds_lead() override { return true; }
};

}  // namespace jobstate
