// ApiServer: the REST API of API.md on Pistache 0.0.5, hardened against the
// pitfalls in DESIGN.md:
// - our own dispatch (no Pistache Router: no per-method map races, #1238);
// - HTTP/1.1 keep-alive unless the client asks to close;
// - one place turns any exception into a generic problem response;
// - explicit size limits and timeouts (header/body timeouts above the
//   longest long-poll);
// - writes are answered from the writer thread once durable; long-polls from
//   the LongPollRegistry thread: reactor threads never wait on fsync;
// - answers bypass Pistache's per-response write queue: one send() on the
//   reactor, or on the outbox's thread for the writer's and registry's
//   answers (api/outbox.h).
//
// Thread safety: start/stop from one thread; the rest is internal.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "api/long_poll.h"
#include "identity/tokens.h"
#include "store/store.h"
#include "watchdog/watchdog.h"

namespace Pistache::Http {
class Endpoint;
}

namespace jobstate::api {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0: an ephemeral port (see ApiServer::port())
  int threads = 2;       // Pistache reactor threads
  // The body of GET /v1/webhooks (webhooks/webhook_dispatcher.h's
  // status_json). Unset: {"webhooks":[]}.
  std::function<Result<std::string>()> webhooks_status;
  // Longest accepted wait of /wait and /events?wait_s=, seconds (API.md: 60).
  int64_t max_wait_s = 60;
  // A request that has not fully arrived after this is answered 408; also
  // bounds how long a response may stay pending. Must exceed max_wait_s.
  int64_t request_timeout_s = 75;
  // A connection with no request in flight is closed this long after its
  // last request arrived (or after it was opened).
  int64_t idle_timeout_s = 90;
  // Connections open at once; beyond, a new one gets 503 and is closed.
  // 0: as many as the descriptor limit allows (at most 10000). Always kept
  // below RLIMIT_NOFILE's soft limit (a quarter, at least 128, stays free).
  int64_t max_connections = 0;
  // Types run by built-in executors: claims never take them.
  std::vector<std::string> executor_types;
  // Without tokens, every request passes api/open_access.h: only loopback
  // Host names, no writes a browser page could make. true: any Host
  // (`serve --insecure-no-auth`); the browser checks stay.
  bool any_host = false;
  // `serve --tokens FILE`: every request but /healthz and /readyz needs
  // `Authorization: Bearer <token>` of a role that allows it (API.md
  // "Identity"), and open access's checks are off. nullptr: open access.
  std::shared_ptr<const identity::TokenSet> tokens;
  // `serve --open-metrics`: GET /metrics needs no token (for a Prometheus
  // that cannot send one). Without tokens it is open anyway, to loopback Hosts.
  bool open_metrics = false;
  // One log line per answered request (method, route, status, duration,
  // bytes, request id), at info (`serve --no-access-log` turns it off).
  bool access_log = true;
};

// Raises RLIMIT_NOFILE's soft limit to its hard limit (once, at start);
// returns the soft limit in force.
uint64_t raise_descriptor_limit();
// The connection cap for `requested` (0: automatic) under a descriptor limit.
int64_t connection_limit(int64_t requested, uint64_t descriptor_limit);

class ApiServer {
 public:
  // REQUIRES: store, registry and watchdog (may be null) outlive the server.
  ApiServer(Store& store, LongPollRegistry& registry, const Watchdog* watchdog,
            ServerOptions options);
  ~ApiServer();

  // Binds and serves on background threads. kUnavailable when the address
  // cannot be bound.
  Status start();
  // The bound port (after start()).
  uint16_t port() const;
  // From now on, writes get 503 unavailable (shutdown begins).
  void stop_accepting_writes() { accepting_writes_ = false; }
  // Stops serving. Call after the writer was drained and parked requests answered.
  void shutdown();

  // Used by the request handler.
  struct Context;

 private:
  std::unique_ptr<Context> ctx_;
  std::unique_ptr<Pistache::Http::Endpoint> endpoint_;
  std::atomic<bool> accepting_writes_{true};
  ServerOptions options_;
};

}  // namespace jobstate::api
