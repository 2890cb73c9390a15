// WebhookCursors: where each webhook endpoint's delivery stands, kept by the
// store so that it outlives the process. A cursor is the seq of the last
// event the endpoint has dealt with (delivered with a 2xx answer, or skipped
// by its filter); delivery resumes at the event after it. Keyed by the
// endpoint's URL as configured.
//
// Backends: a file per endpoint in the RocksDB store's directory
// (webhooks/file_cursors.h), a table on PostgreSQL
// (pgstore/pg_webhook_cursors.h: shared by every node). open_webhook_cursors
// (service/open_store.h) picks the one that goes with a store.
//
// Thread safety: every method may be called from any thread at once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "domain/result.h"

namespace jobstate {

class WebhookCursors {
 public:
  virtual ~WebhookCursors() = default;

  // The endpoint's cursor; nullopt when none was ever stored for it.
  virtual Result<std::optional<uint64_t>> load(const std::string& url) = 0;

  // The endpoint's cursor; when there is none, first stores `initial`
  // durably and returns it. On a store several nodes share, the first
  // node's `initial` wins and every node gets it.
  virtual Result<uint64_t> load_or_init(const std::string& url, uint64_t initial) = 0;

  // Durably records `seq` as the endpoint's cursor, unless the stored one is
  // already beyond it (a node that lost the lead must not move it back). An
  // error leaves the stored cursor as it was or at `seq`.
  virtual Status save(const std::string& url, uint64_t seq) = 0;
};

}  // namespace jobstate
