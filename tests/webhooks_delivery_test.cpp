// Webhook delivery (webhooks/webhook_dispatcher.h) against a real store and
// a real receiver on 127.0.0.1 (webhook_receiver.h), in this process with
// short backoffs: signed bodies, the default and "*" filters, retries that
// keep their webhook-id, a receiver that dies mid-stream and comes back, a
// restart that resumes from the durable cursor, where a new endpoint
// starts, and status_json(). On RocksDB; on PostgreSQL too with
// JOBSTATE_TEST_STORE=postgres (ctest's pg.webhooks_delivery_test).
//
// The check that matters, everywhere: walking the receiver's requests in
// arrival order, each one carries the next event not yet acknowledged (a
// retry repeats it; an acknowledged event is never sent again, no event is
// skipped).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "api_test_server.h"  // eventually()
#include "domain/clock.h"
#include "postgres_fixture.h"
#include "service/open_store.h"
#include "service/shared_leadership.h"
#include "test_util.h"
#include "webhook_receiver.h"
#include "webhooks/signature.h"
#include "webhooks/webhook_dispatcher.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;
using webhooks::WebhookDispatcher;
using webhooks::WebhookEndpoint;
using webhooks::WebhookOptions;

constexpr const char* kSecret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

// One PostgreSQL for the whole binary when JOBSTATE_TEST_STORE=postgres.
class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (testing_postgres()) postgres() = std::make_unique<TestPostgres>();
  }
  void TearDown() override { postgres().reset(); }
  static std::unique_ptr<TestPostgres>& postgres() {
    static std::unique_ptr<TestPostgres> p;
    return p;
  }
};
[[maybe_unused]] auto* const kEnv = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment());

WebhookOptions fast_options() {
  WebhookOptions o;
  o.initial_backoff_ms = 20;
  o.max_backoff_ms = 200;
  o.poll_interval_ms = 200;
  o.request_timeout_ms = 5'000;
  return o;
}


class WebhookDeliveryTest : public ::testing::Test {
 protected:
  ~WebhookDeliveryTest() override { close(); }

  std::string location() const {
    auto& pg = PostgresEnvironment::postgres();
    return pg ? pg->uri() : dir_.sub("data");
  }

  // An endpoint of the receiver, at a path no other test uses (on a shared
  // database, a URL seen before would bring its old cursor).
  WebhookEndpoint endpoint(std::vector<std::string> events = {}) {
    static std::atomic<int> n{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    WebhookEndpoint e;
    e.url =
        receiver_.url("/" + std::string(info->name()) + "/" + std::to_string(n++) + "/" +
                      std::to_string(std::chrono::system_clock::now().time_since_epoch().count()));
    e.shown_url = e.url;
    e.secret_env = "TEST_SECRET";
    e.key = *webhooks::decode_webhook_secret(kSecret);
    if (events.empty()) events = {"succeeded", "failed", "cancelled"};
    if (events == std::vector<std::string>{"*"})
      e.all_events = true;
    else
      e.events.insert(events.begin(), events.end());
    return e;
  }

  // Opens the store and starts delivering; waits until every endpoint's
  // cursor is known (a new one starts at the head: events before that are
  // not delivered).
  void open(std::vector<WebhookEndpoint> endpoints) {
    dispatcher_ = std::make_unique<WebhookDispatcher>(std::move(endpoints), fast_options());
    StoreOptions so;
    so.location = location();
    so.clock = &clock_;
    so.on_commit = [d = dispatcher_.get()](const CommitInfo& info) { d->on_commit(info); };
    auto store = open_store(std::move(so));
    ASSERT_OK(store);
    store_ = std::move(*store);
    auto cursors = open_webhook_cursors(location());
    ASSERT_OK(cursors);
    cursors_ = std::move(*cursors);
    leadership_ = std::make_unique<SharedLeadership>(store_->leadership());
    dispatcher_->start(*store_, *cursors_, *leadership_);
    ASSERT_TRUE(eventually([&] {
      const json s = status();
      for (const auto& w : s["webhooks"])
        if (w["cursor_seq"].is_null()) return false;
      return true;
    })) << status().dump();
  }

  void close() {
    if (dispatcher_) dispatcher_->stop();
    cursors_.reset();
    leadership_.reset();
    store_.reset();  // before the dispatcher its commit listener points at
    dispatcher_.reset();
  }

  json status() const {
    auto s = dispatcher_->status_json();
    EXPECT_OK(s);
    return s ? json::parse(*s) : json();
  }

  uint64_t head() const { return store_->log().head()->seq; }

  void run(const JobId& id, Command command) {
    CommandRequest r;
    r.job_id = id;
    r.command = std::move(command);
    auto outcome = store_->writer().execute(std::move(r));
    EXPECT_OK(outcome);
  }
  JobId create() {
    const JobId id = JobId::generate();
    CreateJob c;
    c.type = "hooked";
    run(id, c);
    return id;
  }
  // created, started, heartbeat, succeeded.
  JobId succeed() {
    const JobId id = create();
    run(id, StartJob{"w/1"});
    Heartbeat h;
    h.progress = json{{"fraction", 0.5}, {"message", "half"}};
    run(id, h);
    run(id, SucceedJob{json{{"url", "https://cdn.example/x"}}});
    return id;
  }

  // The log's events with after < seq <= head, as the API shows them.
  std::vector<json> events_after(uint64_t after) const {
    std::vector<json> out;
    EXPECT_OK(store_->log().scan(after, UINT64_MAX, [&](const StoredEventView& v) {
      out.push_back(json::parse(v.json_text()));
      return true;
    }));
    return out;
  }

  // Waits until the receiver has acknowledged the event at `seq`.
  bool wait_acked(uint64_t seq, std::chrono::seconds limit = std::chrono::seconds(30)) {
    return eventually(
        [&] {
          for (const auto& r : receiver_.requests())
            if (r.acked() && r.seq() == seq) return true;
          return false;
        },
        limit);
  }

  // Walks the requests in order: each carries `expected`'s next event not
  // acknowledged yet. Returns how many of `expected` were acknowledged.
  size_t check_order(const std::vector<uint64_t>& expected) {
    size_t next = 0;
    for (const auto& r : receiver_.requests()) {
      const uint64_t seq = r.seq();
      EXPECT_LT(next, expected.size()) << "an extra delivery of seq " << seq;
      if (next >= expected.size()) break;
      EXPECT_EQ(seq, expected[next]) << "out of order, skipped or sent again after its 2xx";
      if (seq != expected[next]) break;
      if (r.acked()) ++next;
    }
    return next;
  }

  TempDir dir_;
  SystemClock clock_;
  WebhookReceiver receiver_;
  std::unique_ptr<WebhookDispatcher> dispatcher_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<WebhookCursors> cursors_;
  std::unique_ptr<SharedLeadership> leadership_;  // one per endpoint thread asks it
};

TEST_F(WebhookDeliveryTest, TerminalEventsOnlyByDefaultSignedWithTheEventAndTheJob) {
  open({endpoint()});
  const uint64_t start = head();
  const JobId a = succeed();
  const JobId b = create();
  run(b, FailJob{json{{"code", "oops"}, {"message", "it broke"}, {"details", nullptr}}});
  const JobId c = create();
  run(c, RequestCancel{"not needed"});
  const uint64_t last = head();
  ASSERT_TRUE(wait_acked(last));

  std::vector<json> terminal;
  for (const auto& e : events_after(start))
    if (e["type"] == "succeeded" || e["type"] == "failed" || e["type"] == "cancelled")
      terminal.push_back(e);
  ASSERT_EQ(terminal.size(), 3u);
  const auto requests = receiver_.requests();
  ASSERT_EQ(requests.size(), 3u);
  const std::vector<std::pair<JobId, std::string>> jobs = {
      {a, "succeeded"}, {b, "failed"}, {c, "cancelled"}};
  for (size_t i = 0; i < 3; ++i) {
    const ReceivedRequest& r = requests[i];
    EXPECT_EQ(r.method, "POST");
    EXPECT_TRUE(verify_standard_webhook(r, kSecret));
    EXPECT_EQ(r.headers.at("Content-Type"), "application/json");
    const json body = json::parse(r.body);
    ASSERT_TRUE(body.is_object());
    EXPECT_EQ(body.size(), 2u) << r.body;
    // The event exactly as GET /v1/events shows it, and the job as it is now.
    EXPECT_EQ(body["event"], terminal[i]);
    EXPECT_EQ(r.headers.at("webhook-id"),
              "evt_" + std::to_string(terminal[i]["seq"].get<uint64_t>()));
    EXPECT_EQ(body["job"]["id"], jobs[i].first.to_string());
    EXPECT_EQ(body["job"]["state"], jobs[i].second);
    auto row = store_->read_model().row(jobs[i].first);
    ASSERT_OK(row);
    EXPECT_EQ(body["job"], json::parse((*row)->json_text));
    EXPECT_GT(std::stoll(r.headers.at("webhook-timestamp")), 1'600'000'000);
  }
  ASSERT_TRUE(eventually([&] { return status()["webhooks"][0]["lag"] == 0; })) << status().dump();
  const json w = status()["webhooks"][0];
  EXPECT_EQ(w["cursor_seq"], last);
  EXPECT_TRUE(w["last_error"].is_null());
}

TEST_F(WebhookDeliveryTest, StarDeliversEveryEventInSeqOrder) {
  open({endpoint({"*"})});
  const uint64_t start = head();
  succeed();
  const JobId b = create();
  run(b, RequestCancel{"stop"});
  succeed();
  ASSERT_TRUE(wait_acked(head()));
  std::vector<uint64_t> expected;
  for (const auto& e : events_after(start)) expected.push_back(e["seq"]);
  EXPECT_EQ(expected.size(), 10u);
  EXPECT_EQ(check_order(expected), expected.size());
  for (const auto& r : receiver_.requests()) EXPECT_TRUE(verify_standard_webhook(r, kSecret));
}

TEST_F(WebhookDeliveryTest, AChosenListOfEventTypes) {
  open({endpoint({"created", "succeeded"})});
  const uint64_t start = head();
  succeed();
  ASSERT_TRUE(wait_acked(head()));
  std::vector<uint64_t> expected;
  for (const auto& e : events_after(start))
    if (e["type"] == "created" || e["type"] == "succeeded") expected.push_back(e["seq"]);
  ASSERT_EQ(expected.size(), 2u);
  EXPECT_EQ(check_order(expected), 2u);
  EXPECT_EQ(receiver_.requests().size(), 2u);
}

TEST_F(WebhookDeliveryTest, FailedDeliveriesRetryWithTheSameIdThenGoOnInOrder) {
  receiver_.set_responder([](const ReceivedRequest&, size_t n) { return n < 3 ? 500 : 200; });
  open({endpoint()});
  const uint64_t start = head();
  succeed();
  succeed();
  ASSERT_TRUE(wait_acked(head()));
  std::vector<uint64_t> expected;
  for (const auto& e : events_after(start))
    if (e["type"] == "succeeded") expected.push_back(e["seq"]);
  ASSERT_EQ(expected.size(), 2u);
  EXPECT_EQ(check_order(expected), 2u);
  const auto requests = receiver_.requests();
  ASSERT_EQ(requests.size(), 5u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(requests[i].headers.at("webhook-id"), "evt_" + std::to_string(expected[0]));
    EXPECT_EQ(requests[i].answered, i < 3 ? 500 : 200);
    EXPECT_TRUE(verify_standard_webhook(requests[i], kSecret));
  }
  EXPECT_EQ(requests[4].headers.at("webhook-id"), "evt_" + std::to_string(expected[1]));
  // last_error is the last failure, also after a later success.
  ASSERT_TRUE(eventually([&] { return status()["webhooks"][0]["lag"] == 0; }));
  EXPECT_EQ(status()["webhooks"][0]["last_error"], "HTTP 500");
}

TEST_F(WebhookDeliveryTest, AReceiverThatDiesMidStreamGetsEverythingWhenBack) {
  std::atomic<bool> died{false};
  std::atomic<bool> revived{false};
  // From the 6th request on, each is cut off with no answer, as if the
  // receiver was killed while handling it; then nothing listens until the
  // test starts it again.
  receiver_.set_responder([&](const ReceivedRequest&, size_t n) {
    if (n >= 5 && !revived) {
      died = true;
      return 0;
    }
    return 200;
  });
  open({endpoint({"*"})});
  const uint64_t start = head();
  for (int i = 0; i < 4; ++i) succeed();
  ASSERT_TRUE(eventually([&] { return died.load(); }, std::chrono::seconds(30)));
  receiver_.stop();
  // Deliveries fail on connect while it is down; more events come meanwhile.
  ASSERT_TRUE(eventually(
      [&] {
        const json e = status()["webhooks"][0]["last_error"];
        return e.is_string() && e.get<std::string>().rfind("connect: ", 0) == 0;
      },
      std::chrono::seconds(30)))
      << status().dump();
  EXPECT_EQ(status()["webhooks"][0]["last_error"], "connect: Connection refused");
  succeed();
  EXPECT_GT(status()["webhooks"][0]["lag"].get<uint64_t>(), 0u);
  revived = true;
  receiver_.start();
  ASSERT_TRUE(wait_acked(head()));

  std::vector<uint64_t> expected;
  for (const auto& e : events_after(start)) expected.push_back(e["seq"]);
  ASSERT_EQ(expected.size(), 20u);
  EXPECT_EQ(check_order(expected), expected.size());
  // Only the event cut off was sent more than once.
  std::map<uint64_t, int> times;
  for (const auto& r : receiver_.requests()) ++times[r.seq()];
  EXPECT_GT(times[expected[5]], 1);
  for (const auto& [seq, n] : times) {
    if (seq != expected[5]) {
      EXPECT_EQ(n, 1) << "seq " << seq;
    }
  }
}

TEST_F(WebhookDeliveryTest, ARestartResumesAtTheFirstUndeliveredEvent) {
  // Acknowledges the first three deliveries, then refuses everything.
  std::atomic<bool> accept{false};
  receiver_.set_responder(
      [&](const ReceivedRequest&, size_t n) { return n < 3 || accept ? 200 : 503; });
  const WebhookEndpoint hook = endpoint({"*"});
  open({hook});
  const uint64_t start = head();
  succeed();
  succeed();
  std::vector<uint64_t> expected;
  for (const auto& e : events_after(start)) expected.push_back(e["seq"]);
  ASSERT_EQ(expected.size(), 8u);
  ASSERT_TRUE(
      eventually([&] { return receiver_.requests().size() >= 5; }, std::chrono::seconds(30)));
  close();
  const size_t before_restart = receiver_.requests().size();
  EXPECT_EQ(check_order(expected), 3u);

  accept = true;
  open({hook});
  ASSERT_TRUE(wait_acked(expected.back()));
  const auto requests = receiver_.requests();
  // The first delivery after the restart is the 4th event: none of the three
  // acknowledged ones again, none skipped.
  ASSERT_GT(requests.size(), before_restart);
  EXPECT_EQ(requests[before_restart].seq(), expected[3]);
  EXPECT_EQ(check_order(expected), expected.size());
}

TEST_F(WebhookDeliveryTest, ANewEndpointStartsAtTheHeadAndDoesNotReplayHistory) {
  open({endpoint({"*"})});
  succeed();
  succeed();
  const uint64_t history = head();
  close();
  const WebhookEndpoint added = endpoint({"*"});
  open({added});
  EXPECT_EQ(status()["webhooks"][0]["cursor_seq"], history);
  EXPECT_EQ(status()["webhooks"][0]["lag"], 0);
  const JobId id = create();
  ASSERT_TRUE(wait_acked(head()));
  // Only the event after the head, to the new endpoint's path.
  std::vector<ReceivedRequest> to_added;
  for (const auto& r : receiver_.requests())
    if (added.url.find(r.path) != std::string::npos) to_added.push_back(r);
  ASSERT_EQ(to_added.size(), 1u);
  EXPECT_EQ(to_added[0].seq(), history + 1);
  EXPECT_EQ(json::parse(to_added[0].body)["job"]["id"], id.to_string());
}

TEST_F(WebhookDeliveryTest, StatusShowsCursorLagAndLastError) {
  std::atomic<int> answer{500};
  receiver_.set_responder([&](const ReceivedRequest&, size_t) { return answer.load(); });
  open({endpoint(), endpoint({"*"})});
  const json before = status();
  ASSERT_EQ(before["webhooks"].size(), 2u);
  const uint64_t start = head();
  for (const auto& w : before["webhooks"]) {
    EXPECT_EQ(w["cursor_seq"], start);
    EXPECT_EQ(w["lag"], 0);
    EXPECT_TRUE(w["last_error"].is_null());
    EXPECT_EQ(w["url"].get<std::string>().rfind(receiver_.url("/"), 0), 0u);
  }
  succeed();
  const uint64_t last = head();
  ASSERT_TRUE(eventually([&] {
    const json s = status();
    for (const auto& w : s["webhooks"])
      if (w["last_error"] != "HTTP 500") return false;
    return true;
  })) << status().dump();
  json s = status();
  // The default endpoint skipped three events and is stuck on the fourth;
  // "*" is stuck on the first.
  EXPECT_EQ(s["webhooks"][0]["cursor_seq"], start + 3);
  EXPECT_EQ(s["webhooks"][0]["lag"], 1);
  EXPECT_EQ(s["webhooks"][1]["cursor_seq"], start);
  EXPECT_EQ(s["webhooks"][1]["lag"], last - start);
  answer = 204;
  ASSERT_TRUE(eventually([&] {
    const json s = status();
    for (const auto& w : s["webhooks"])
      if (w["lag"] != 0) return false;
    return true;
  })) << status().dump();
  const json after = status();
  for (const auto& w : after["webhooks"]) EXPECT_EQ(w["cursor_seq"], last);
}

// Two nodes on one PostgreSQL database, each with the same endpoint: only
// the node that leads delivers, the other follows the stored cursor; when
// the leader stops, the other takes over where it left off.
// (Only pg.webhooks_delivery_test runs the *PgOnly suites: a RocksDB store
// has one node.)
class WebhookDeliveryPgOnly : public WebhookDeliveryTest {};

TEST_F(WebhookDeliveryPgOnly, OnASharedStoreOneNodeDeliversAndAnotherTakesOver) {
  ASSERT_TRUE(PostgresEnvironment::postgres()) << "runs with JOBSTATE_TEST_STORE=postgres";
  const WebhookEndpoint hook = endpoint({"*"});
  open({hook});  // this node asks first: it leads
  auto other =
      std::make_unique<WebhookDispatcher>(std::vector<WebhookEndpoint>{hook}, fast_options());
  StoreOptions so;
  so.location = location();
  so.clock = &clock_;
  so.on_commit = [d = other.get()](const CommitInfo& info) { d->on_commit(info); };
  auto other_store = open_store(std::move(so));
  ASSERT_OK(other_store);
  auto other_cursors = open_webhook_cursors(location());
  ASSERT_OK(other_cursors);
  SharedLeadership other_lead((*other_store)->leadership());
  other->start(**other_store, **other_cursors, other_lead);
  auto other_status = [&] { return json::parse(*other->status_json())["webhooks"][0]; };

  const uint64_t start = head();
  succeed();
  ASSERT_TRUE(wait_acked(head()));
  // The follower shows the stored cursor.
  ASSERT_TRUE(eventually([&] { return other_status()["cursor_seq"] == head(); }))
      << other_status().dump();

  close();  // the leader goes; its session (and lock) with it
  JobId id = JobId::generate();
  CreateJob c;
  c.type = "hooked";
  CommandRequest r;
  r.job_id = id;
  r.command = c;
  ASSERT_OK((*other_store)->writer().execute(std::move(r)));
  const uint64_t last = (*other_store)->log().head()->seq;
  ASSERT_TRUE(wait_acked(last, std::chrono::seconds(60)));
  std::vector<uint64_t> expected;
  for (uint64_t seq = start + 1; seq <= last; ++seq) expected.push_back(seq);
  EXPECT_EQ(check_order(expected), expected.size());
  EXPECT_EQ(receiver_.requests().size(), expected.size());  // nothing twice
  other->stop();
  other_cursors->reset();
  other_store->reset();
}

}  // namespace
}  // namespace jobstate::testing
