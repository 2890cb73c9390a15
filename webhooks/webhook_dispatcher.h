// WebhookDispatcher: delivers the log's events to the configured endpoints
// (webhook_config.h), signed by the Standard Webhooks scheme (signature.h).
//
// - One thread per endpoint reads the log (EventLog::scan) after the
//   endpoint's cursor (store/webhook_cursors.h), in seq order. It wakes on
//   each commit (on_commit, which only signals) and at least every
//   poll_interval_ms (another node's commits, a missed signal). The write
//   path never waits for it.
// - An event the endpoint's filter does not want only moves the cursor. An
//   event it wants is POSTed as {"event": <the API's event JSON>, "job": <the
//   job resource as it is at that attempt>} with webhook-id "evt_<seq>",
//   webhook-timestamp (unix seconds of the attempt) and webhook-signature.
//   Only a 2xx answer moves the cursor past it, and the cursor is saved
//   before the next event is sent: delivery is at least once and in seq
//   order. A failure (another status, no connection, no answer within
//   request_timeout_ms) retries the same event, with the same webhook-id,
//   after an exponential backoff with jitter, for as long as it takes.
// - A crash between a 2xx and the cursor's save sends that event again after
//   the restart; nothing else is sent twice, and nothing is skipped.
// - An endpoint the cursors have never seen starts at the log's head at that
//   moment: adding a webhook does not replay history.
// - Only the node holding `leadership` delivers (one node of a shared
//   store); the others follow the stored cursors for status().
//
// Thread safety: start/stop from one thread; on_commit and status from any.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "domain/result.h"
#include "store/job_writer.h"
#include "store/leadership.h"
#include "store/store.h"
#include "store/webhook_cursors.h"
#include "webhooks/webhook_config.h"

namespace jobstate::webhooks {

struct WebhookOptions {
  // An attempt with no complete answer within this fails. Default 10 s.
  long request_timeout_ms = 10'000;
  // The first retry waits about this long; each later one twice the one
  // before, up to max_backoff_ms; each wait is drawn between half and all of
  // that (jitter). Defaults 0.5 s and 60 s.
  int64_t initial_backoff_ms = 500;
  int64_t max_backoff_ms = 60'000;
  // Longest sleep without a commit signal before looking at the log (and at
  // the leadership) again. Default 1 s.
  int64_t poll_interval_ms = 1'000;
  // Most events read from the log per scan. Default 1000.
  size_t scan_batch = 1'000;
  // Least time between two scans of the log: under a stream of commits, one
  // scan takes all that came meanwhile instead of one scan per commit.
  // Default 10 ms.
  int64_t min_scan_interval_ms = 10;
};

class WebhookDispatcher {
 public:
  explicit WebhookDispatcher(std::vector<WebhookEndpoint> endpoints, WebhookOptions options = {});
  ~WebhookDispatcher();  // stop()

  // Starts one delivery thread per endpoint. REQUIRES: store, cursors and
  // leadership outlive the dispatcher (or its stop()); leadership is asked
  // from these threads, so it must allow several (see
  // service/shared_leadership.h). With no endpoints it starts nothing.
  void start(Store& store, WebhookCursors& cursors, Leadership& leadership);

  // Stops the threads; a delivery in flight is abandoned (the cursor still
  // names the event before it, so it is sent again on the next start).
  // Idempotent.
  void stop();

  // A commit listener: wakes the delivery threads. Quick; never blocks on I/O.
  void on_commit(const CommitInfo& info);

  // The body of GET /v1/webhooks: {"webhooks": [{"url", "cursor_seq",
  // "lag", "last_error"}]}. cursor_seq and lag are null until the cursor is
  // known. kUnavailable when the log's head cannot be read.
  Result<std::string> status_json() const;

  size_t endpoint_count() const { return endpoints_.size(); }

 private:
  struct Endpoint;
  void run(Endpoint& e);
  // Delivers one event until a 2xx, stop, or a lost lead. True on a 2xx.
  bool deliver(Endpoint& e, uint64_t seq, const JobId& job_id, const std::string& event_json);
  // Waits up to ms, or until stop (and, with on_commit, a commit signal).
  void wait_ms(int64_t ms, bool wake_on_commit, uint64_t seen_generation);
  bool stopping() const;

  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  WebhookOptions options_;
  Store* store_ = nullptr;
  WebhookCursors* cursors_ = nullptr;
  Leadership* leadership_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_requested_ = false;
  uint64_t commit_generation_ = 0;  // bumped by on_commit
  std::vector<std::thread> threads_;
};

}  // namespace jobstate::webhooks
