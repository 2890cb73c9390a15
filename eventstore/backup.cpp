#include "eventstore/backup.h"

#include <fcntl.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/utilities/checkpoint.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <vector>

namespace jobstate {

namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxSstBytes = 256u << 20;  // one table file per this much of a family

Error io_error(const std::string& doing, const std::error_code& ec) {
  return make_error(ErrorCode::kUnavailable, doing + ": " + ec.message());
}

// Makes a rename inside `dir` durable.
void sync_directory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

uint64_t directory_bytes(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec))
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  return total;
}

// Copies one column family into table files under `tmp_dir` and ingests them
// into `dst_cf`.
Status copy_family(const Database& src, const std::string& name, rocksdb::DB* dst,
                   rocksdb::ColumnFamilyHandle* dst_cf, const fs::path& tmp_dir) {
  rocksdb::ReadOptions ro;
  ro.readahead_size = 2 << 20;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(src.db()->NewIterator(ro, src.cf(name)));
  const rocksdb::Options options(rocksdb::DBOptions(), Database::column_family_options(64u << 20));
  std::vector<std::string> files;
  std::unique_ptr<rocksdb::SstFileWriter> writer;
  auto finish = [&]() -> Status {
    if (!writer) return ok_status();
    auto s = writer->Finish();
    writer.reset();
    if (!s.ok()) return rocksdb_error(s, "writing the copy of " + name);
    return ok_status();
  };
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!writer) {
      files.push_back((tmp_dir / (name + "." + std::to_string(files.size()) + ".sst")).string());
      writer = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(), options);
      if (auto s = writer->Open(files.back()); !s.ok())
        return rocksdb_error(s, "creating " + files.back());
    }
    if (auto s = writer->Put(it->key(), it->value()); !s.ok())
      return rocksdb_error(s, "writing the copy of " + name);
    if (writer->FileSize() >= kMaxSstBytes)
      if (auto s = finish(); !s) return s;
  }
  if (!it->status().ok()) return rocksdb_error(it->status(), "reading " + name);
  if (auto s = finish(); !s) return s;
  if (files.empty()) return ok_status();
  rocksdb::IngestExternalFileOptions ingest;
  ingest.move_files = true;
  if (auto s = dst->IngestExternalFile(dst_cf, files, ingest); !s.ok())
    return rocksdb_error(s, "loading the copy of " + name);
  return ok_status();
}

// A new database at `path` holding every column family of `src` as `src`
// currently sees it.
Status copy_store(const Database& src, const fs::path& path) {
  const fs::path tmp_dir = path / "backup.tmp";
  std::error_code ec;
  fs::create_directories(tmp_dir, ec);
  if (ec) return io_error("creating " + tmp_dir.string(), ec);

  rocksdb::DBOptions dbo;
  dbo.create_if_missing = true;
  dbo.create_missing_column_families = true;
  dbo.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  const auto names = src.column_family_names();
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const auto& n : names) descs.emplace_back(n, Database::column_family_options(64u << 20));
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  if (auto s = rocksdb::DB::Open(dbo, path.string(), descs, &handles, &raw); !s.ok())
    return rocksdb_error(s, "creating the copy");
  std::unique_ptr<rocksdb::DB> dst(raw);
  Status copied = ok_status();
  for (size_t i = 0; i < names.size() && copied; ++i)
    copied = copy_family(src, names[i], dst.get(), handles[i], tmp_dir);
  for (auto* h : handles) dst->DestroyColumnFamilyHandle(h);
  if (auto s = dst->Close(); !s.ok() && copied) copied = rocksdb_error(s, "closing the copy");
  dst.reset();
  fs::remove_all(tmp_dir, ec);
  return copied;
}

Result<LogHead> head_of_copy(const std::string& dir) {
  DatabaseOptions o;
  o.path = dir;
  o.mode = OpenMode::kReadOnly;
  o.required_column_families = {kEventsCf, kMetaCf};
  auto copy = Database::open(o);
  if (!copy) return copy.error();
  return LogReader(**copy).head();
}

}  // namespace

Result<BackupResult> backup_store(Database& db, const std::string& to_dir) {
  std::error_code ec;
  const fs::path target = fs::absolute(to_dir, ec);
  if (ec || target.empty())
    return make_error(ErrorCode::kInvalidRequest, "bad backup path: " + to_dir);
  if (fs::exists(fs::symlink_status(target, ec)))
    return make_error(ErrorCode::kInvalidRequest,
                      to_dir + " already exists (a backup is written to a new directory)");
  const fs::path parent = target.parent_path();
  if (!fs::is_directory(parent, ec))
    return make_error(ErrorCode::kInvalidRequest, "no such directory: " + parent.string());

  auto before = LogReader(db).head();
  if (!before) return before.error();
  BackupResult result;
  // Built beside the target and renamed into place once complete.
  const fs::path partial =
      parent / (target.filename().string() + ".partial-" + std::to_string(::getpid()));
  fs::remove_all(partial, ec);
  struct RemovePartial {
    fs::path dir;
    ~RemovePartial() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } remove_partial{partial};

  if (db.mode() == OpenMode::kReadWrite) {
    result.method = BackupMethod::kCheckpoint;
    rocksdb::Checkpoint* raw = nullptr;
    if (auto s = rocksdb::Checkpoint::Create(db.db(), &raw); !s.ok())
      return rocksdb_error(s, "starting a checkpoint");
    std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
    if (auto s = checkpoint->CreateCheckpoint(partial.string()); !s.ok())
      return rocksdb_error(s, "writing the checkpoint");
  } else {
    result.method = BackupMethod::kCopy;
    if (auto s = copy_store(db, partial); !s) return s.error();
  }
  sync_directory(partial);

  auto copied = head_of_copy(partial.string());
  if (!copied) return copied.error();
  // A checkpoint of a store whose writer is running may include newer events.
  const bool same_cut = copied->seq == before->seq ? copied->hash == before->hash
                                                   : copied->seq > before->seq &&
                                                         result.method == BackupMethod::kCheckpoint;
  if (!same_cut)
    return make_error(ErrorCode::kCorruption,
                      "the copy's head (seq " + std::to_string(copied->seq) +
                          ") does not match the store's (seq " + std::to_string(before->seq) + ")");
  result.head = *copied;
  result.bytes = directory_bytes(partial);

  if (fs::exists(fs::symlink_status(target, ec)))
    return make_error(ErrorCode::kInvalidRequest, to_dir + " appeared while the backup ran");
  fs::rename(partial, target, ec);
  if (ec) return io_error("renaming the backup to " + target.string(), ec);
  sync_directory(parent);
  return result;
}

}  // namespace jobstate
