// Time: an injected clock (so tests drive time) and RFC 3339 UTC timestamps
// with milliseconds, e.g. 2026-11-27T18:00:00.123Z.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace jobstate {

// Milliseconds since the Unix epoch, UTC.
using TimeMs = int64_t;

// Thread-safe source of the current time.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimeMs now_ms() const = 0;
};

// Wall-clock time (std::chrono::system_clock).
class SystemClock final : public Clock {
 public:
  TimeMs now_ms() const override;
};

// A clock that moves only when told to. For tests.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimeMs start_ms) : now_ms_(start_ms) {}
  TimeMs now_ms() const override { return now_ms_.load(); }
  void set_ms(TimeMs t) { now_ms_.store(t); }
  void advance_ms(TimeMs delta) { now_ms_.fetch_add(delta); }

 private:
  std::atomic<TimeMs> now_ms_;
};

// "YYYY-MM-DDTHH:MM:SS.mmmZ". Valid for years 0000–9999.
std::string format_rfc3339_ms(TimeMs t);
// Appends format_rfc3339_ms(t) to `out` (no allocation of its own).
void append_rfc3339_ms(std::string& out, TimeMs t);
// Parses exactly the form format_rfc3339_ms produces. nullopt otherwise.
std::optional<TimeMs> parse_rfc3339_ms(std::string_view text);
// Parses any RFC 3339 date-time a client may send: "2026-12-06T18:00:00Z",
// with a fraction of a second (kept to the millisecond, the rest cut), 't'
// or 'T', and 'Z', 'z' or an offset such as "+01:00". nullopt otherwise.
std::optional<TimeMs> parse_rfc3339(std::string_view text);

}  // namespace jobstate
