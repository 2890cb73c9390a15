#include "store/event_log.h"

#include "store/hash_chain.h"

namespace jobstate {

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

namespace {
template <typename ScanFn>
Result<std::vector<Event>> collect(ScanFn&& scan) {
  std::vector<Event> out;
  std::optional<Error> err;
  Status s = scan([&](const StoredEventView& v) {
    auto e = v.to_event();
    if (!e) {
      err = e.error();
      return false;
    }
    out.push_back(std::move(*e));
    return true;
  });
  if (!s) return s.error();
  if (err) return *err;
  return out;
}
}  // namespace

Result<std::vector<Event>> EventLog::events_after(uint64_t after_seq, size_t limit) const {
  uint64_t until = limit >= UINT64_MAX - after_seq ? UINT64_MAX : after_seq + limit;
  return collect([&](auto&& fn) { return scan(after_seq, until, fn); });
}

Result<std::vector<Event>> EventLog::job_events(const JobId& id, uint64_t after_version,
                                                 size_t limit) const {
  return collect([&](auto&& fn) { return scan_job(id, after_version, limit, fn); });
}

Result<std::optional<Event>> EventLog::event(uint64_t seq) const {
  auto r = events_after(seq - 1, 1);
  if (!r) return r.error();
  if (r->empty()) return std::optional<Event>();
  return std::optional<Event>(std::move(r->front()));
}

}  // namespace jobstate
