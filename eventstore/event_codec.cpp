#include "eventstore/event_codec.h"

#include <cstring>

#include "store/hash_chain.h"
#include "store/byte_order.h"

namespace jobstate {

namespace {
constexpr uint8_t kFormat = 1;
constexpr size_t kHeader = 1 + 32 + 8 + 1 + 8 + 16;
}  // namespace

std::string encode_stored_event(const Event& e, std::string_view data_canonical) {
  std::string v;
  v.reserve(kHeader + data_canonical.size());
  v.push_back(static_cast<char>(kFormat));
  v += hex_to_raw(e.hash);
  put_u64_be(v, e.version);
  v.push_back(static_cast<char>(e.type));
  put_u64_be(v, static_cast<uint64_t>(e.at_ms));
  v += e.job_id.bytes();
  v += data_canonical;
  return v;
}

Result<StoredEventView> decode_stored_event(uint64_t seq, std::string_view value) {
  auto corrupt = [seq](const char* why) {
    return make_error(ErrorCode::kCorruption, "event seq " + std::to_string(seq) + ": " + why);
  };
  if (value.size() < kHeader + 2) return corrupt("record too short");
  if (static_cast<uint8_t>(value[0]) != kFormat) return corrupt("unknown record format");
  StoredEventView v;
  v.seq = seq;
  v.hash_raw = value.substr(1, 32);
  v.version = get_u64_be(value.substr(33));
  auto type = event_type_from_byte(static_cast<uint8_t>(value[41]));
  if (!type) return corrupt("unknown event type");
  v.type = *type;
  v.at_ms = static_cast<TimeMs>(get_u64_be(value.substr(42)));
  v.job_id = *JobId::from_bytes(value.substr(50, 16));
  v.data = value.substr(kHeader);
  return v;
}

}  // namespace jobstate
