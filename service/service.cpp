#include "service/service.h"

#include "service/open_store.h"

namespace jobstate {

Result<std::unique_ptr<Service>> Service::start(ServiceOptions options) {
  std::unique_ptr<Service> s(new Service());
  const Clock& clock = options.clock ? *options.clock : s->system_clock_;
  for (auto& [type, spec] : options.executors.executors)
    options.server.executor_types.push_back(type);
  executors::ExecutorPoolOptions pool_options;
  // Another node's executors may be running their jobs right now: only a
  // store this process owns may take every executor job for abandoned.
  pool_options.fail_abandoned_at_start = !store_is_shared(options.store);
  s->executor_pool_ = std::make_unique<executors::ExecutorPool>(std::move(options.executors),
                                                                std::move(pool_options));
  s->registry_ = std::make_unique<api::LongPollRegistry>(options.max_parked);
  s->webhooks_ = std::make_unique<webhooks::WebhookDispatcher>(std::move(options.webhooks),
                                                               options.webhook_options);

  StoreOptions so;
  so.location = options.store;
  so.clock = &clock;
  so.on_commit = [r = s->registry_.get(), e = s->executor_pool_.get(),
                  w = s->webhooks_.get()](const CommitInfo& info) {
    r->on_commit(info);
    e->on_commit(info);
    w->on_commit(info);
  };
  so.fail_writes_for_test = std::move(options.fail_writes_for_test);
  so.disk_reserve_bytes = options.disk_reserve_bytes;
  auto store = open_store(std::move(so));
  if (!store) return store.error();
  s->store_ = std::move(*store);
  s->leadership_ = std::make_unique<SharedLeadership>(s->store_->leadership());

  s->watchdog_ = std::make_unique<Watchdog>(s->store_->read_model(), s->store_->writer(), clock,
                                            options.watchdog, s->leadership_.get());
  s->watchdog_->start();
  if (s->webhooks_->endpoint_count() > 0) {
    auto cursors = open_webhook_cursors(options.store);
    if (!cursors) {
      Error e = cursors.error();
      e.message = "webhooks: " + e.message;
      return e;
    }
    s->webhook_cursors_ = std::move(*cursors);
    s->webhooks_->start(*s->store_, *s->webhook_cursors_, *s->leadership_);
  }
  options.server.webhooks_status = [w = s->webhooks_.get()] { return w->status_json(); };
  if (auto started = s->executor_pool_->start(s->store_->read_model(), s->store_->writer());
      !started) {
    Error e = started.error();
    e.message = "executors: " + e.message;
    return e;
  }
  s->server_ = std::make_unique<api::ApiServer>(*s->store_, *s->registry_, s->watchdog_.get(),
                                                options.server);
  if (auto listening = s->server_->start(); !listening) {
    s->server_.reset();
    return listening.error();
  }
  return s;
}

Service::~Service() { stop(); }

void Service::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (server_) server_->stop_accepting_writes();
  if (executor_pool_) executor_pool_->stop();
  if (webhooks_) webhooks_->stop();  // a delivery in flight is sent again on the next start
  if (watchdog_) watchdog_->stop();
  if (store_) store_->writer().stop();
  if (registry_) registry_->answer_all();
  if (server_) server_->shutdown();
  server_.reset();
  watchdog_.reset();
  webhook_cursors_.reset();
  leadership_.reset();
  store_.reset();  // before the executors, registry and webhooks its listener points at
  executor_pool_.reset();
  registry_.reset();
  webhooks_.reset();
}

}  // namespace jobstate
