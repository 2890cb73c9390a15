// The stored formats: the event record (eventstore/event_codec), the status
// row (store/status_row) and the hash chain's hex (store/hash_chain).
// Decoding arbitrary bytes never crashes, and what decodes re-encodes to the
// same bytes; a value built from the input survives encode then decode.
//
// Input: one byte choosing the codec, then its bytes.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "domain/event.h"
#include "domain/job.h"
#include "eventstore/event_codec.h"
#include "fuzz_check.h"
#include "state_checks.h"
#include "store/hash_chain.h"
#include "store/status_row.h"

using namespace jobstate;

namespace {

void stored_event_bytes(uint64_t seq, std::string_view value) {
  auto v = decode_stored_event(seq, value);
  if (!v) {
    FUZZ_CHECK(v.error().code == ErrorCode::kCorruption);
    return;
  }
  FUZZ_CHECK(v->seq == seq && v->hash_raw.size() == 32);
  Event e;
  e.seq = seq;
  e.job_id = v->job_id;
  e.version = v->version;
  e.type = v->type;
  e.at_ms = v->at_ms;
  e.hash = v->hash_hex();
  FUZZ_CHECK(encode_stored_event(e, v->data) == value);
  // Replay, verify and the API read these; whatever the data holds.
  (void)v->canonical_json();
  (void)v->json_text();
  auto event = v->to_event();
  if (event) {
    FUZZ_CHECK(event->data.is_object());
    FUZZ_CHECK(event->hash == e.hash);
  } else {
    FUZZ_CHECK(event.error().code == ErrorCode::kCorruption);
  }
}

void status_row_bytes(std::string_view value) {
  auto row = decode_status_row(value);
  if (!row) {
    FUZZ_CHECK(row.error().code == ErrorCode::kCorruption);
    return;
  }
  FUZZ_CHECK(row->json_text == value.substr(kStatusRowHeaderBytes));
  (void)same_status_row(*row, *row);
  (void)row->render(0);
  (void)row->render(1'795'802'400'000);  // a server started in 2026
  // A row whose JSON reads as a job: that job's own row round-trips.
  auto s = row->to_state();
  if (s) {
    fuzz::check_state(*s);
  } else {
    FUZZ_CHECK(s.error().code == ErrorCode::kCorruption ||
               s.error().code == ErrorCode::kInvalidRequest, s.error().message);
  }
}

void hex_text(std::string_view text) {
  const std::string raw = hex_to_raw(text);
  if (!raw.empty()) FUZZ_CHECK(raw_to_hex(raw) == text);
  FUZZ_CHECK(hex_to_raw(raw_to_hex(text)) == text);
  FUZZ_CHECK(sha256_hex(text).size() == 64);
  FUZZ_CHECK(chain_hash(kGenesisHash, text) == sha256_hex(std::string(kGenesisHash) + std::string(text)));
}

// An event built from the input: decode(encode(e)) gives e back.
void event_round_trip(FuzzedDataProvider& in) {
  Event e;
  e.seq = in.ConsumeIntegral<uint64_t>();
  e.version = in.ConsumeIntegral<uint64_t>();
  e.type = static_cast<EventType>(in.ConsumeIntegralInRange<uint8_t>(1, 8));
  e.at_ms = in.ConsumeIntegral<int64_t>();
  std::string id = in.ConsumeBytesAsString(16);
  id.resize(16, '\0');
  e.job_id = *JobId::from_bytes(id);
  std::string hash_raw = in.ConsumeBytesAsString(32);
  hash_raw.resize(32, '\0');
  e.hash = raw_to_hex(hash_raw);
  const std::string data_text = in.ConsumeRemainingBytesAsString();
  const std::string value = encode_stored_event(e, data_text);
  auto v = decode_stored_event(e.seq, value);
  if (data_text.size() < 2) {  // a record needs at least "{}" of data
    FUZZ_CHECK(!v.ok());
    return;
  }
  FUZZ_CHECK(v.ok(), v.ok() ? "" : v.error().message);
  FUZZ_CHECK(v->seq == e.seq && v->version == e.version && v->type == e.type &&
             v->at_ms == e.at_ms && v->job_id == e.job_id && v->hash_hex() == e.hash &&
             v->data == data_text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0:
      stored_event_bytes(size, rest);
      break;
    case 1:
      status_row_bytes(rest);
      break;
    case 2:
      hex_text(rest);
      break;
    case 3: {
      FuzzedDataProvider in(data + 1, size - 1);
      event_round_trip(in);
      break;
    }
  }
  return 0;
}
