// FileWebhookCursors: WebhookCursors (store/webhook_cursors.h) as one small
// file per endpoint in a directory; for the RocksDB store, whose one process
// owns its directory (open_webhook_cursors puts them in <data-dir>/webhooks).
//
// Each file is named after the SHA-256 of the endpoint's URL and holds
// {"seq": N, "url": "..."}. A save writes a temporary file, fsyncs it,
// renames it over the old one and fsyncs the directory: a crash leaves the
// old cursor or the new one, never a torn file.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "domain/result.h"
#include "store/webhook_cursors.h"

namespace jobstate::webhooks {

class FileWebhookCursors final : public WebhookCursors {
 public:
  // Creates `dir` when missing. kUnavailable when it cannot.
  static Result<std::unique_ptr<FileWebhookCursors>> open(const std::string& dir);

  Result<std::optional<uint64_t>> load(const std::string& url) override;
  Result<uint64_t> load_or_init(const std::string& url, uint64_t initial) override;
  Status save(const std::string& url, uint64_t seq) override;

  // The file that holds url's cursor.
  std::string path_of(const std::string& url) const;

 private:
  explicit FileWebhookCursors(std::string dir) : dir_(std::move(dir)) {}
  Result<std::optional<uint64_t>> load_locked(const std::string& url);
  Status write_locked(const std::string& url, uint64_t seq);

  std::string dir_;
  std::mutex mu_;
  std::map<std::string, uint64_t> saved_;  // what this process last wrote or read
};

}  // namespace jobstate::webhooks
