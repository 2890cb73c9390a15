// JobId: a UUID v4 job identifier. Text form is the lowercase canonical
// 8-4-4-4-12 form only; the stored form is its 16 raw bytes.
#pragma once

#include <boost/uuid/uuid.hpp>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace jobstate {

class JobId {
 public:
  JobId() = default;  // the nil id; never a real job's id

  // A fresh random v4 id. Thread-safe.
  static JobId generate();
  // Strict: 36 chars, lowercase hex, dashes at 8-13-18-23, version nibble 4,
  // RFC 4122 variant. Anything else → nullopt (the API answers 400).
  static std::optional<JobId> parse(std::string_view text);
  // REQUIRES: bytes.size() == 16. Returns nullopt otherwise.
  static std::optional<JobId> from_bytes(std::string_view bytes);

  std::string to_string() const;
  // The 16 raw bytes, used in keys.
  std::string_view bytes() const {
    return {reinterpret_cast<const char*>(uuid_.data), 16};
  }
  bool is_nil() const { return uuid_.is_nil(); }

  friend bool operator==(const JobId& a, const JobId& b) { return a.uuid_ == b.uuid_; }
  friend bool operator<(const JobId& a, const JobId& b) { return a.uuid_ < b.uuid_; }

 private:
  explicit JobId(const boost::uuids::uuid& u) : uuid_(u) {}
  boost::uuids::uuid uuid_{};
};

}  // namespace jobstate

template <>
struct std::hash<jobstate::JobId> {
  size_t operator()(const jobstate::JobId& id) const noexcept {
    size_t h;
    std::memcpy(&h, id.bytes().data(), sizeof h);
    return h;
  }
};
