#include "app/offline_store.h"

#include <fcntl.h>
#include <rocksdb/db.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <vector>

#include "app/commands.h"
#include "projections/job_store.h"

namespace jobstate::app {

namespace fs = std::filesystem;

namespace {

// The path is a RocksDB database holding the log's column families. Done
// before any read-write open, because such an open creates missing column
// families and would turn some other RocksDB database into half a store.
Status check_is_store(const std::string& data_dir) {
  std::error_code ec;
  if (!fs::exists(data_dir, ec))
    return make_error(ErrorCode::kInvalidRequest, "no such directory: " + data_dir);
  if (!fs::is_directory(data_dir, ec))
    return make_error(ErrorCode::kInvalidRequest, "not a directory: " + data_dir);
  if (!fs::exists(fs::path(data_dir) / "CURRENT", ec))
    return make_error(ErrorCode::kInvalidRequest, "not a jobstate store: " + data_dir);
  std::vector<std::string> names;
  auto s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), data_dir, &names);
  if (!s.ok()) return rocksdb_error(s, "reading " + data_dir);
  for (const auto& required : log_column_families())
    if (std::find(names.begin(), names.end(), required) == names.end())
      return make_error(ErrorCode::kInvalidRequest,
                        "not a jobstate store (no column family '" + required + "'): " + data_dir);
  return ok_status();
}

// The pid of another process holding the store's LOCK file (RocksDB takes a
// POSIX write lock on it for a read-write open), or 0. Probed before a
// read-write open because a refused DB::Open still rotates the holder's info
// LOG. Only sound in a process that does not have the store open itself:
// closing any descriptor of the file drops that process's own POSIX locks,
// which is why this lives in the CLI and not in the libraries.
pid_t lock_holder(const std::string& data_dir) {
  const std::string lock_path = (fs::path(data_dir) / "LOCK").string();
  int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 0;
  const int rc = ::fcntl(fd, F_GETLK, &probe);
  ::close(fd);
  if (rc != 0 || probe.l_type == F_UNLCK) return 0;
  return probe.l_pid > 0 ? probe.l_pid : -1;
}

Result<std::string> make_secondary_dir() {
  std::error_code ec;
  fs::path tmp = fs::temp_directory_path(ec);
  if (ec) tmp = "/tmp";
  std::string pattern = (tmp / "jobstate-secondary-XXXXXX").string();
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data()))
    return make_error(ErrorCode::kUnavailable,
                      "cannot create a private directory under " + tmp.string());
  return std::string(buf.data());
}

}  // namespace

Result<std::unique_ptr<OfflineStore>> OfflineStore::open(const std::string& data_dir,
                                                         OfflineAccess access) {
  if (auto s = check_is_store(data_dir); !s) return s.error();
  std::unique_ptr<OfflineStore> store(new OfflineStore());
  DatabaseOptions o;
  o.path = data_dir;
  o.create_if_missing = false;
  o.required_column_families = log_column_families();
  if (access == OfflineAccess::kExclusive) {
    if (pid_t holder = lock_holder(data_dir); holder != 0)
      return make_error(ErrorCode::kUnavailable,
                        data_dir + " is in use by " +
                            (holder > 0 ? "process " + std::to_string(holder) : "another process") +
                            " (is a jobstate server running?)");
    o.mode = OpenMode::kReadWrite;
    auto db = Database::open(o);
    if (!db) return db.error();
    store->db_ = std::move(*db);
    return store;
  }
  auto dir = make_secondary_dir();
  if (!dir) return dir.error();
  store->secondary_dir_ = *dir;  // removed by the destructor, whatever happens next
  o.mode = OpenMode::kSecondary;
  o.secondary_dir = *dir;
  // A live primary may delete a WAL or table file between the secondary
  // listing and opening it; a fresh attempt then sees the newer state.
  Error last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto db = Database::open(o);
    if (!db) {
      last = db.error();
      if (last.code == ErrorCode::kInvalidRequest) return last;
      continue;
    }
    if (auto s = (*db)->catch_up(); !s) {
      last = s.error();
      continue;
    }
    store->db_ = std::move(*db);
    return store;
  }
  return last;
}

OfflineStore::~OfflineStore() {
  db_.reset();
  if (!secondary_dir_.empty()) {
    std::error_code ec;
    fs::remove_all(secondary_dir_, ec);
  }
}

void print_error(std::string_view command, std::string_view message) {
  std::string line = "jobstate ";
  line += command;
  line += ": ";
  line += message;
  std::replace(line.begin(), line.end(), '\n', ' ');
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

std::optional<uint64_t> parse_u64(std::string_view text) {
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

int run_guarded(std::string_view command, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    print_error(command, std::string("internal error: ") + e.what());
  } catch (...) {
    print_error(command, "internal error");
  }
  return kExitFailure;
}

bool stderr_is_terminal() {
  return isatty(STDERR_FILENO) == 1;
}

}  // namespace jobstate::app
