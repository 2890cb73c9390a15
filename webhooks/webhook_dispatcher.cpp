#include "webhooks/webhook_dispatcher.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <random>

#include "webhooks/http_poster.h"
#include "webhooks/signature.h"

namespace jobstate::webhooks {

struct WebhookDispatcher::Endpoint {
  Endpoint(WebhookEndpoint c, long timeout_ms) : config(std::move(c)), poster(timeout_ms) {}
  WebhookEndpoint config;
  HttpPoster poster;  // its delivery thread's

  // For status_json(), written by the delivery thread.
  mutable std::mutex mu;
  std::optional<uint64_t> cursor;
  std::optional<std::string> last_error;

  void show_cursor(uint64_t seq) {
    std::lock_guard lock(mu);
    cursor = seq;
  }
  void show_error(std::string error) {
    std::lock_guard lock(mu);
    last_error = std::move(error);
  }
};

namespace {

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

WebhookDispatcher::WebhookDispatcher(std::vector<WebhookEndpoint> endpoints, WebhookOptions options)
    : options_(options) {
  for (auto& e : endpoints)
    endpoints_.push_back(std::make_unique<Endpoint>(std::move(e), options_.request_timeout_ms));
}

WebhookDispatcher::~WebhookDispatcher() {
  stop();
}

void WebhookDispatcher::start(Store& store, WebhookCursors& cursors, Leadership& leadership) {
  if (!threads_.empty() || endpoints_.empty()) return;
  store_ = &store;
  cursors_ = &cursors;
  leadership_ = &leadership;
  {
    std::lock_guard lock(mu_);
    stop_requested_ = false;
  }
  for (auto& e : endpoints_) threads_.emplace_back([this, ep = e.get()] { run(*ep); });
}

void WebhookDispatcher::stop() {
  {
    std::lock_guard lock(mu_);
    stop_requested_ = true;
  }
  cv_.notify_all();
  for (auto& e : endpoints_) e->poster.abort();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void WebhookDispatcher::on_commit(const CommitInfo& /*info*/) {
  {
    std::lock_guard lock(mu_);
    ++commit_generation_;
  }
  cv_.notify_all();
}

bool WebhookDispatcher::stopping() const {
  std::lock_guard lock(mu_);
  return stop_requested_;
}

void WebhookDispatcher::wait_ms(int64_t ms, bool wake_on_commit, uint64_t seen_generation) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] {
    return stop_requested_ || (wake_on_commit && commit_generation_ != seen_generation);
  });
}

Result<std::string> WebhookDispatcher::status_json() const {
  nlohmann::json list = nlohmann::json::array();
  std::optional<uint64_t> head;
  if (store_) {
    auto h = store_->log().head();
    if (!h) return h.error();
    head = h->seq;
  }
  for (const auto& e : endpoints_) {
    std::optional<uint64_t> cursor;
    std::optional<std::string> error;
    {
      std::lock_guard lock(e->mu);
      cursor = e->cursor;
      error = e->last_error;
    }
    nlohmann::json item = {{"url", e->config.shown_url},
                           {"cursor_seq", nullptr},
                           {"lag", nullptr},
                           {"last_error", nullptr}};
    if (cursor) {
      item["cursor_seq"] = *cursor;
      if (head) item["lag"] = *head > *cursor ? *head - *cursor : 0;
    }
    if (error) item["last_error"] = *error;
    list.push_back(std::move(item));
  }
  return nlohmann::json{{"webhooks", std::move(list)}}.dump();
}

void WebhookDispatcher::run(Endpoint& e) {
  pthread_setname_np(pthread_self(), "js-webhook");
  const std::string& url = e.config.url;
  const std::string& shown = e.config.shown_url;
  bool leading = false;
  int told_lead = -1;   // for the log line: 1 leads, 0 does not
  uint64_t cursor = 0;  // the last event dealt with
  uint64_t saved = 0;   // the cursor as stored
  auto last_lead_check = std::chrono::steady_clock::time_point();
  auto last_scan = std::chrono::steady_clock::time_point();
  while (!stopping()) {
    // The lead is asked at most once per poll interval while this node
    // delivers (on postgres each question is a round trip).
    const auto now = std::chrono::steady_clock::now();
    bool lead = true;
    if (!leading || now - last_lead_check >= std::chrono::milliseconds(options_.poll_interval_ms)) {
      lead = leadership_->holds_lead();
      last_lead_check = now;
    }
    if (static_cast<int>(lead) != told_lead) {
      if (!lead) spdlog::info("webhook {}: another node delivers", shown);
      told_lead = static_cast<int>(lead);
    }
    if (!lead) {
      leading = false;
      // Follow the node that delivers, for status_json().
      if (auto stored = cursors_->load(url); stored && *stored) e.show_cursor(**stored);
      wait_ms(options_.poll_interval_ms, false, 0);
      continue;
    }
    if (!leading) {
      // The stored cursor (another node may have moved it while this one did
      // not lead); a new endpoint starts at the head: no history replayed.
      auto head = store_->log().head();
      if (!head) {
        e.show_error("store: " + head.error().message);
        wait_ms(options_.poll_interval_ms, false, 0);
        continue;
      }
      auto loaded = cursors_->load_or_init(url, head->seq);
      if (!loaded) {
        e.show_error("cursor: " + loaded.error().message);
        wait_ms(options_.poll_interval_ms, false, 0);
        continue;
      }
      cursor = saved = *loaded;
      e.show_cursor(cursor);
      leading = true;
      spdlog::info("webhook {}: delivering the events after seq {}", shown, cursor);
    }

    struct Item {
      uint64_t seq;
      bool wanted;
      JobId job_id;
      std::string event_json;  // wanted events only
    };
    // Under a stream of commits, one scan per min_scan_interval_ms at most:
    // each reads all that came since.
    const auto next_scan = last_scan + std::chrono::milliseconds(options_.min_scan_interval_ms);
    if (const auto t = std::chrono::steady_clock::now(); t < next_scan)
      wait_ms(std::chrono::duration_cast<std::chrono::milliseconds>(next_scan - t).count() + 1,
              false, 0);
    last_scan = std::chrono::steady_clock::now();
    uint64_t generation;  // commits after this wake the wait after the scan
    {
      std::lock_guard lock(mu_);
      generation = commit_generation_;
    }
    std::vector<Item> items;
    Status scanned = store_->log().scan(cursor, UINT64_MAX, [&](const StoredEventView& v) {
      Item item{v.seq, e.config.wants(event_type_name(v.type)), v.job_id, {}};
      if (item.wanted) item.event_json = v.json_text();
      items.push_back(std::move(item));
      return items.size() < options_.scan_batch;
    });
    if (!scanned) {
      e.show_error("store: " + scanned.error().message);
      wait_ms(options_.poll_interval_ms, false, 0);
      continue;
    }
    for (const Item& item : items) {
      if (stopping()) break;
      if (item.wanted) {
        if (!deliver(e, item.seq, item.job_id, item.event_json)) {
          leading = false;  // stopping, or the lead is lost: reload the stored cursor next time
          break;
        }
        cursor = item.seq;
        e.show_cursor(cursor);
        // Saved before the next event goes out: after a crash only this one
        // can be sent twice.
        for (int64_t attempt = 0; !stopping(); ++attempt) {
          Status s = cursors_->save(url, cursor);
          if (s) {
            saved = cursor;
            break;
          }
          e.show_error("cursor: " + s.error().message);
          spdlog::warn("webhook {}: saving the cursor at seq {} failed: {}", shown, cursor,
                       s.error().message);
          wait_ms(std::min<int64_t>(options_.max_backoff_ms,
                                    options_.initial_backoff_ms << std::min<int64_t>(attempt, 16)),
                  false, 0);
        }
      } else {
        cursor = item.seq;
        e.show_cursor(cursor);
      }
    }
    if (!leading || stopping()) continue;
    if (cursor != saved) {
      // Skipped events: saving them is only an optimisation (after a crash
      // they would be read and skipped again).
      if (Status s = cursors_->save(url, cursor); s)
        saved = cursor;
      else
        e.show_error("cursor: " + s.error().message);
    }
    if (items.size() < options_.scan_batch)
      wait_ms(options_.poll_interval_ms, /*wake_on_commit=*/true, generation);
  }
}

bool WebhookDispatcher::deliver(Endpoint& e, uint64_t seq, const JobId& job_id,
                                const std::string& event_json) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const std::string id = "evt_" + std::to_string(seq);
  int64_t backoff_ms = std::max<int64_t>(1, options_.initial_backoff_ms);
  for (int attempt = 1;; ++attempt) {
    if (stopping()) return false;
    if (attempt > 1 && !leadership_->holds_lead()) return false;
    PostOutcome outcome;
    auto row = store_->read_model().shared_row(job_id);
    if (!row) {
      outcome.error = "store: " + row.error().message;
    } else {
      std::string body = "{\"event\":";
      body += event_json;
      body += ",\"job\":";
      if (!*row) {
        body += "null";
      } else {
        const TimeMs start = store_->writer().server_start_ms();
        body += (*row)->renders_as_stored(start) ? (*row)->json_text : (*row)->render(start);
      }
      body += '}';
      const int64_t timestamp = unix_seconds();
      outcome = e.poster.post(
          e.config.url,
          {"webhook-id: " + id, "webhook-timestamp: " + std::to_string(timestamp),
           "webhook-signature: " + webhook_signature(e.config.key, id, timestamp, body)},
          body);
    }
    if (outcome.ok()) return true;
    if (stopping()) return false;
    e.show_error(outcome.error);
    // Equal jitter: between half and all of the current backoff.
    const int64_t wait = backoff_ms / 2 + static_cast<int64_t>(rng() % (backoff_ms / 2 + 1));
    spdlog::warn("webhook {}: event {} not delivered (attempt {}: {}); retrying in {} ms",
                 e.config.shown_url, seq, attempt, outcome.error, wait);
    wait_ms(wait, false, 0);
    backoff_ms = std::min(options_.max_backoff_ms, backoff_ms * 2);
  }
}

}  // namespace jobstate::webhooks
