#include "eventstore/event_codec.h"

#include <cstring>

#include "eventstore/hash_chain.h"
#include "eventstore/keys.h"

namespace jobstate {

namespace {
constexpr uint8_t kFormat = 1;
constexpr size_t kHeader = 1 + 32 + 8 + 1 + 8 + 16;
}  // namespace

std::string StoredEventView::hash_hex() const { return raw_to_hex(hash_raw); }

std::string StoredEventView::canonical_json() const {
  return canonical_event_json(seq, job_id, version, type, at_ms, data);
}

std::string StoredEventView::json_text() const {
  return event_json_text(seq, job_id, version, type, at_ms, data, hash_hex());
}

Result<Event> StoredEventView::to_event() const {
  Event e;
  e.seq = seq;
  e.job_id = job_id;
  e.version = version;
  e.type = type;
  e.at_ms = at_ms;
  e.hash = hash_hex();
  e.data = nlohmann::json::parse(data.begin(), data.end(), nullptr, /*allow_exceptions=*/false);
  if (!e.data.is_object())
    return make_error(ErrorCode::kCorruption,
                      "event seq " + std::to_string(seq) + ": data is not a JSON object");
  return e;
}

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
