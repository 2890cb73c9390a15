// Service: everything `jobstate serve` runs, wired once: the store (through
// open_store), the long-poll registry, the built-in executors and the
// webhook deliveries fed by the store's commits, the watchdog, and the HTTP
// API. `jobstate serve` and the
// tests' server fixture both start it, so they cannot drift apart.
//
// Thread safety: start, stop and the destructor from one thread; the
// accessors from any thread while the service runs.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "api/long_poll.h"
#include "api/server.h"
#include "domain/clock.h"
#include "domain/result.h"
#include "executors/executor_config.h"
#include "executors/executor_pool.h"
#include "service/shared_leadership.h"
#include "store/store.h"
#include "store/webhook_cursors.h"
#include "watchdog/watchdog.h"
#include "webhooks/webhook_config.h"
#include "webhooks/webhook_dispatcher.h"

namespace jobstate {

struct ServiceOptions {
  // The store's location (open_store): a directory for RocksDB.
  std::string store = "./jobstate-data";
  // Address, reactor threads, long-poll limit and request timeout of the API.
  api::ServerOptions server;
  // Most long-polls parked at once; beyond it they get 503.
  size_t max_parked = 10'000;
  WatchdogOptions watchdog;
  // Built-in executors (docs/executors.md). Empty: the pool runs nothing, but
  // it still fails the jobs a previous server's executors left running.
  executors::ExecutorConfig executors;
  // Webhook endpoints (docs/operations.md#webhooks) and how they are
  // delivered. Empty: nothing is delivered and no cursor is opened.
  std::vector<webhooks::WebhookEndpoint> webhooks;
  webhooks::WebhookOptions webhook_options;
  // The clock of events and deadlines; must outlive the service. Default:
  // the system clock.
  const Clock* clock = nullptr;
  // RocksDB: free space kept in reserve (StoreOptions::disk_reserve_bytes).
  uint64_t disk_reserve_bytes = 256u << 20;
  // Test seam: see StoreOptions::fail_writes_for_test.
  std::function<bool()> fail_writes_for_test;
};

class Service {
 public:
  // Opens the store and starts everything. On failure nothing keeps running
  // and the error says which part failed ("executors: ...", "webhooks: ...",
  // the store's or the listener's own message).
  static Result<std::unique_ptr<Service>> start(ServiceOptions options);
  ~Service();  // stop()

  // The shutdown order: stop taking writes, stop the executors (their
  // running commands are reported) and the watchdog, finish every write
  // already queued (each is answered), answer the parked long-polls, stop
  // serving, close the store. Idempotent.
  void stop();

  uint16_t port() const { return server_->port(); }
  Store& store() { return *store_; }
  api::LongPollRegistry& registry() { return *registry_; }
  Watchdog& watchdog() { return *watchdog_; }
  webhooks::WebhookDispatcher& webhooks() { return *webhooks_; }

 private:
  Service() = default;
  SystemClock system_clock_;
  std::unique_ptr<executors::ExecutorPool> executor_pool_;
  std::unique_ptr<api::LongPollRegistry> registry_;
  std::unique_ptr<webhooks::WebhookDispatcher> webhooks_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<SharedLeadership> leadership_;  // the store's, for the watchdog and webhooks
  std::unique_ptr<WebhookCursors> webhook_cursors_;
  std::unique_ptr<Watchdog> watchdog_;
  std::unique_ptr<api::ApiServer> server_;
  bool stopped_ = false;
};

}  // namespace jobstate
