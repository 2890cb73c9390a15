#include "webhooks/file_cursors.h"

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "store/durable_file.h"

namespace jobstate::webhooks {

namespace {

Error io_error(const std::string& what, const std::string& path) {
  return make_error(ErrorCode::kUnavailable, what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

Result<std::unique_ptr<FileWebhookCursors>> FileWebhookCursors::open(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return io_error("mkdir", dir);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return make_error(ErrorCode::kUnavailable, dir + " is not a directory");
  return std::unique_ptr<FileWebhookCursors>(new FileWebhookCursors(dir));
}

std::string FileWebhookCursors::path_of(const std::string& url) const {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(url.data()), url.size(), digest);
  static const char* const kHex = "0123456789abcdef";
  std::string name;
  for (int i = 0; i < 16; ++i) {
    name += kHex[digest[i] >> 4];
    name += kHex[digest[i] & 15];
  }
  return dir_ + "/" + name + ".cursor";
}

Result<std::optional<uint64_t>> FileWebhookCursors::load_locked(const std::string& url) {
  const std::string path = path_of(url);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::optional<uint64_t>();
    return io_error("stat", path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error("read", path);
  std::ostringstream text;
  text << in.rdbuf();
  auto doc = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("seq") ||
      !doc["seq"].is_number_unsigned() || doc.value("url", "") != url)
    return make_error(ErrorCode::kCorruption, path + ": not a webhook cursor for this URL");
  const uint64_t seq = doc["seq"].get<uint64_t>();
  saved_[url] = seq;
  return std::optional<uint64_t>(seq);
}

Status FileWebhookCursors::write_locked(const std::string& url, uint64_t seq) {
  const std::string text = nlohmann::json{{"seq", seq}, {"url", url}}.dump() + "\n";
  if (auto s = write_file_durably(path_of(url), text, 0644); !s) return s;
  saved_[url] = seq;
  return ok_status();
}

Result<std::optional<uint64_t>> FileWebhookCursors::load(const std::string& url) {
  std::lock_guard lock(mu_);
  return load_locked(url);
}

Result<uint64_t> FileWebhookCursors::load_or_init(const std::string& url, uint64_t initial) {
  std::lock_guard lock(mu_);
  auto loaded = load_locked(url);
  if (!loaded) return loaded.error();
  if (*loaded) return **loaded;
  if (auto s = write_locked(url, initial); !s) return s.error();
  return initial;
}

Status FileWebhookCursors::save(const std::string& url, uint64_t seq) {
  std::lock_guard lock(mu_);
  if (auto it = saved_.find(url); it != saved_.end() && it->second >= seq) return ok_status();
  return write_locked(url, seq);
}

}  // namespace jobstate::webhooks
