#include "app/offline_store.h"

#include "pgstore/pg_store.h"

#include <fcntl.h>
#include <rocksdb/db.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
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
// Whether a write lock on the whole of `path` would conflict with a lock
// someone holds (`get`: F_GETLK for POSIX locks, F_OFD_GETLK for OFD locks):
// the conflicting lock (l_type != F_UNLCK) or none (F_UNLCK); nullopt when
// the file cannot be opened or probed.
std::optional<struct flock> probe_write_lock(const fs::path& path, int get) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  const int rc = ::fcntl(fd, get, &probe);
  ::close(fd);
  if (rc != 0) return std::nullopt;
  return probe;
}

pid_t lock_holder(const std::string& data_dir) {
  auto lock = probe_write_lock(fs::path(data_dir) / "LOCK", F_GETLK);
  if (!lock || lock->l_type == F_UNLCK) return 0;
  return lock->l_pid > 0 ? lock->l_pid : -1;
}

// Each secondary directory holds this file, and the process using the
// directory keeps an open file description lock on it (F_OFD_SETLK) for as
// long as it does. The kernel drops the lock when the process dies, however
// it dies, so a directory whose owner file is unlocked was abandoned: its
// process was killed (SIGKILL, OOM) before its destructor could remove it.
// OFD locks, unlike POSIX record locks, also conflict between two
// descriptors of one process, so a process with two stores open never takes
// its own live directory for an abandoned one.
constexpr const char* kSecondaryPrefix = "jobstate-secondary-";
constexpr const char* kOwnerFile = "owner";

bool owner_lock_held(const fs::path& owner) {
  auto lock = probe_write_lock(owner, F_OFD_GETLK);
  return !lock || lock->l_type != F_UNLCK;  // in doubt, the directory is in use
}

// Removes the secondary directories that killed processes left under `tmp`.
// A directory is only touched once it is a minute old, so one that another
// process created a moment ago and has not locked yet is safe. A directory
// without an owner file (made by an older jobstate) goes after a day.
void remove_abandoned_secondary_dirs(const fs::path& tmp) {
  const auto now = fs::file_time_type::clock::now();
  const auto older_than = [&](const fs::path& p, std::chrono::seconds age) {
    std::error_code ec;
    const auto t = fs::last_write_time(p, ec);
    return !ec && now - t > age;
  };
  std::error_code ec;
  for (fs::directory_iterator it(tmp, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path dir = it->path();
    std::error_code entry_ec;
    if (dir.filename().string().rfind(kSecondaryPrefix, 0) != 0 || !it->is_directory(entry_ec) ||
        it->is_symlink(entry_ec))
      continue;
    const fs::path owner = dir / kOwnerFile;
    const bool abandoned =
        fs::exists(owner, entry_ec)
            ? older_than(owner, std::chrono::minutes(1)) && !owner_lock_held(owner)
            : older_than(dir, std::chrono::hours(24));
    if (abandoned) fs::remove_all(dir, entry_ec);
  }
}

// A private directory for a secondary instance, locked as described above.
// Sets `owner_fd` to the descriptor that holds the lock.
Result<std::string> make_secondary_dir(int& owner_fd) {
  std::error_code ec;
  fs::path tmp = fs::temp_directory_path(ec);
  if (ec) tmp = "/tmp";
  remove_abandoned_secondary_dirs(tmp);
  std::string pattern = (tmp / (std::string(kSecondaryPrefix) + "XXXXXX")).string();
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  const auto cannot = [&] {
    return make_error(ErrorCode::kUnavailable,
                      "cannot create a private directory under " + tmp.string());
  };
  if (!mkdtemp(buf.data())) return cannot();
  const std::string dir(buf.data());
  const std::string owner = (fs::path(dir) / kOwnerFile).string();
  owner_fd = ::open(owner.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (owner_fd < 0 || ::fcntl(owner_fd, F_OFD_SETLK, &lock) != 0) {
    if (owner_fd >= 0) ::close(owner_fd);
    owner_fd = -1;
    fs::remove_all(dir, ec);
    return cannot();
  }
  return dir;
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
  auto dir = make_secondary_dir(store->owner_fd_);
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
  if (owner_fd_ >= 0) ::close(owner_fd_);
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

Result<std::unique_ptr<Store>> open_offline_postgres(const std::string& uri) {
  if (!is_postgres_uri(uri))
    return make_error(ErrorCode::kInvalidRequest,
                      "--store must be a postgresql:// URI, not '" + uri + "'");
  static SystemClock clock;
  PgStoreOptions o;
  o.uri = uri;
  o.clock = &clock;
  o.read_only = true;
  o.read_connections = 1;
  return open_pg_store(std::move(o));
}

Result<std::unique_ptr<OfflineSource>> OfflineSource::open(const std::string& data_dir,
                                                           const std::string& store_uri) {
  auto source = std::make_unique<OfflineSource>();
  if (!store_uri.empty()) {
    auto pg = open_offline_postgres(store_uri);
    if (!pg) return pg.error();
    source->pg_ = std::move(*pg);
  } else {
    auto dir = OfflineStore::open(data_dir, OfflineAccess::kFollow);
    if (!dir) return dir.error();
    source->dir_ = std::move(*dir);
    source->reader_ = std::make_unique<LogReader>(source->dir_->db());
  }
  return source;
}

}  // namespace jobstate::app
