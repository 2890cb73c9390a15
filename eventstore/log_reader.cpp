#include "eventstore/log_reader.h"

#include <memory>

#include "store/hash_chain.h"
#include "store/byte_order.h"

namespace jobstate {

std::string job_event_key(const JobId& id, uint64_t version) {
  std::string k(id.bytes());
  put_u64_be(k, version);
  return k;
}

Result<LogHead> LogReader::head() const {
  LogHead h{0, std::string(kGenesisHash)};
  std::string seq, hash;
  auto* meta = db_.cf(kMetaCf);
  auto s = db_.db()->Get(rocksdb::ReadOptions(), meta, kMetaHeadSeq, &seq);
  if (s.IsNotFound()) return h;
  if (!s.ok()) return rocksdb_error(s, "reading the log head");
  s = db_.db()->Get(rocksdb::ReadOptions(), meta, kMetaHeadHash, &hash);
  if (!s.ok()) return rocksdb_error(s, "reading the log head hash");
  if (seq.size() != 8 || hash.size() != 32)
    return make_error(ErrorCode::kCorruption, "meta: malformed log head");
  h.seq = get_u64_be(seq);
  h.hash = raw_to_hex(hash);
  return h;
}

Status LogReader::scan(uint64_t after_seq, uint64_t until_seq,
                       const EventVisitor& fn) const {
  if (until_seq <= after_seq) return ok_status();
  rocksdb::ReadOptions ro;
  ro.readahead_size = 2 << 20;
  ro.fill_cache = false;
  const std::string upper = u64_be(until_seq == UINT64_MAX ? UINT64_MAX : until_seq + 1);
  rocksdb::Slice upper_slice(upper);
  if (until_seq != UINT64_MAX) ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_.db()->NewIterator(ro, db_.cf(kEventsCf)));
  for (it->Seek(u64_be(after_seq + 1)); it->Valid(); it->Next()) {
    auto key = it->key();
    if (key.size() != 8) return make_error(ErrorCode::kCorruption, "events: malformed key");
    uint64_t seq = get_u64_be(key.ToStringView());
    if (seq > until_seq) break;
    auto view = decode_stored_event(seq, it->value().ToStringView());
    if (!view) return view.error();
    if (!fn(*view)) break;
  }
  if (!it->status().ok()) return rocksdb_error(it->status(), "scanning events");
  return ok_status();
}

Status LogReader::scan_job(const JobId& id, uint64_t after_version, size_t limit,
                           const EventVisitor& fn) const {
  if (limit == 0) return ok_status();
  std::vector<std::string> seq_keys;
  {
    rocksdb::ReadOptions ro;
    const std::string upper = job_event_key(id, UINT64_MAX);
    rocksdb::Slice upper_slice(upper);
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db_.db()->NewIterator(ro, db_.cf(kJobEventsCf)));
    for (it->Seek(job_event_key(id, after_version + 1)); it->Valid() && seq_keys.size() < limit;
         it->Next())
      seq_keys.push_back(it->value().ToString());
    if (!it->status().ok()) return rocksdb_error(it->status(), "reading a job's events");
  }
  if (seq_keys.empty()) return ok_status();
  std::vector<rocksdb::Slice> keys(seq_keys.begin(), seq_keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_.db()->MultiGet(rocksdb::ReadOptions(), db_.cf(kEventsCf), keys.size(), keys.data(),
                     values.data(), statuses.data(), /*sorted_input=*/true);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (seq_keys[i].size() != 8)
      return make_error(ErrorCode::kCorruption, "job_events: malformed value");
    uint64_t seq = get_u64_be(seq_keys[i]);
    if (!statuses[i].ok())
      return statuses[i].IsNotFound()
                 ? make_error(ErrorCode::kCorruption,
                              "event seq " + std::to_string(seq) + " is indexed but missing")
                 : rocksdb_error(statuses[i], "reading event " + std::to_string(seq));
    auto view = decode_stored_event(seq, values[i].ToStringView());
    if (!view) return view.error();
    if (!fn(*view)) break;
  }
  return ok_status();
}

}  // namespace jobstate
