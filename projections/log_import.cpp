#include "projections/log_import.h"

#include <rocksdb/write_batch.h>

#include <filesystem>

#include "eventstore/event_codec.h"
#include "eventstore/log_reader.h"
#include "projections/job_store.h"
#include "projections/rebuild.h"
#include "store/byte_order.h"
#include "store/hash_chain.h"

namespace jobstate {

namespace {
class RocksImport final : public LogImport {
 public:
  explicit RocksImport(std::unique_ptr<Database> db) : db_(std::move(db)) {}

  Status append(const StoredEventView& v) override {
    if (v.seq != head_.seq + 1)
      return make_error(ErrorCode::kInvalidRequest,
                        "the source log goes from seq " + std::to_string(head_.seq) + " to " +
                            std::to_string(v.seq));
    Event e;
    e.seq = v.seq;
    e.job_id = v.job_id;
    e.version = v.version;
    e.type = v.type;
    e.at_ms = v.at_ms;
    e.hash = v.hash_hex();
    batch_.Put(db_->cf(kEventsCf), u64_be(v.seq), encode_stored_event(e, v.data));
    batch_.Put(db_->cf(kJobEventsCf), job_event_key(v.job_id, v.version), u64_be(v.seq));
    head_ = LogHead{v.seq, e.hash};
    if (batch_.Count() >= 20'000) return flush(false);
    return ok_status();
  }

  Status finish() override {
    batch_.Put(db_->cf(kMetaCf), kMetaHeadSeq, u64_be(head_.seq));
    batch_.Put(db_->cf(kMetaCf), kMetaHeadHash, hex_to_raw(head_.hash));
    if (auto s = flush(true); !s) return s;
    auto rebuilt = rebuild_projections(*db_);
    if (!rebuilt) return rebuilt.error();
    return ok_status();
  }

 private:
  Status flush(bool sync) {
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    auto s = db_->db()->Write(wo, &batch_);
    batch_.Clear();
    if (!s.ok()) return rocksdb_error(s, "writing the copy");
    return ok_status();
  }
  std::unique_ptr<Database> db_;
  rocksdb::WriteBatch batch_;
  LogHead head_{0, std::string(kGenesisHash)};
};
}  // namespace

Result<std::unique_ptr<LogImport>> open_rocksdb_import(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_empty(dir, ec))
    return make_error(ErrorCode::kInvalidRequest,
                      "'" + dir + "' is not empty: copy writes a new store only");
  DatabaseOptions o;
  o.path = dir;
  o.mode = OpenMode::kReadWrite;
  o.create_if_missing = true;
  o.required_column_families = log_column_families();
  auto db = Database::open(o);
  if (!db) return db.error();
  // The projection's (empty) families, as a new store has them.
  if (auto p = StatusProjection::open(**db); !p) return p.error();
  return std::unique_ptr<LogImport>(new RocksImport(std::move(*db)));
}

}  // namespace jobstate
