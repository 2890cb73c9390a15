// jobstate::client::Client against a real `jobstate serve`: every endpoint of
// API.md, the problems it decodes, and what happens without a server.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "jobstate/client.h"
#include "tests/client_test_support.h"

namespace jobstate::client {
namespace {

using nlohmann::json;

class ClientApiTest : public jobstate::testing::SharedServerTest {
 protected:
  Job created(const std::string& type = "client-test", int64_t heartbeat_timeout_s = 120) {
    CreateJobRequest r;
    r.type = type;
    r.heartbeat_timeout_s = heartbeat_timeout_s;
    auto job = client_->create(r);
    EXPECT_TRUE(job.ok()) << (job ? "" : job.problem().describe());
    return job ? *job : Job{};
  }
  Job running(const std::string& type = "client-test") {
    Job job = created(type);
    auto started = client_->start(job.id, "test-host/1");
    EXPECT_TRUE(started.ok()) << (started ? "" : started.problem().describe());
    return started ? *started : Job{};
  }
};

TEST_F(ClientApiTest, HealthAndReadiness) {
  EXPECT_TRUE(client_->healthz().ok());
  EXPECT_TRUE(client_->readyz().ok());
}

TEST_F(ClientApiTest, CreateDecodesTheWholeJobResource) {
  CreateJobRequest r;
  r.type = "thumbnail";
  r.params = {{"width", 64}};
  r.heartbeat_timeout_s = 30;
  r.labels = {{"team", "media"}};
  auto job = client_->create(r);
  ASSERT_TRUE(job.ok()) << job.problem().describe();
  EXPECT_EQ(job->id.size(), 36u);
  EXPECT_EQ(job->type, "thumbnail");
  EXPECT_EQ(job->state, "queued");
  EXPECT_EQ(job->version, 1u);
  EXPECT_FALSE(job->created_at.empty());
  EXPECT_FALSE(job->started_at.has_value());
  EXPECT_EQ(job->heartbeat_timeout_s, 30);
  EXPECT_EQ(job->params, (json{{"width", 64}}));
  EXPECT_EQ(job->labels, (json{{"team", "media"}}));
  EXPECT_TRUE(job->result.is_null());
  EXPECT_TRUE(job->error.is_null());
  EXPECT_FALSE(job->terminal());
  EXPECT_EQ(job->raw.at("id"), job->id);
}

TEST_F(ClientApiTest, IdempotencyKeyReturnsTheSameJobAndRefusesADifferentBody) {
  CreateJobRequest r;
  r.type = "idem";
  const std::string key = random_uuid();
  auto first = client_->create(r, key);
  auto second = client_->create(r, key);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->id, second->id);
  r.params = {{"other", true}};
  auto third = client_->create(r, key);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.problem().status, 422);
  EXPECT_EQ(third.problem().slug, "idempotency-key-reused");
  EXPECT_FALSE(third.problem().retryable());
}

TEST_F(ClientApiTest, InvalidCreateIsA400Problem) {
  CreateJobRequest r;
  r.type = "bad type with spaces";
  auto job = client_->create(r);
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.problem().status, 400);
  EXPECT_EQ(job.problem().slug, "invalid-request");
  EXPECT_FALSE(job.problem().detail.empty());
}

TEST_F(ClientApiTest, GetKnownUnknownAndMalformedIds) {
  Job job = created();
  auto got = client_->get(job.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->id, job.id);

  auto missing = client_->get(random_uuid());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.problem().status, 404);
  EXPECT_EQ(missing.problem().slug, "job-not-found");

  // Characters that would change the URL are escaped, so this reaches the
  // job route and is refused as an id.
  auto malformed = client_->get("../../healthz");
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.problem().status, 400);
}

TEST_F(ClientApiTest, GetAsOfSeqShowsAnEarlierState) {
  Job job = created();
  auto head = client_->audit_head();
  ASSERT_TRUE(head.ok());
  ASSERT_TRUE(client_->start(job.id, "w/1").ok());
  auto then = client_->get(job.id, head->seq);
  ASSERT_TRUE(then.ok()) << then.problem().describe();
  EXPECT_EQ(then->state, "queued");
  auto now = client_->get(job.id);
  EXPECT_EQ(now->state, "running");
}

TEST_F(ClientApiTest, FullLifecycleWithProgressAndResult) {
  Job job = created();
  auto started = client_->start(job.id, "host-a/42");
  ASSERT_TRUE(started.ok()) << started.problem().describe();
  EXPECT_EQ(started->state, "running");
  EXPECT_EQ(started->worker, "host-a/42");
  EXPECT_TRUE(started->deadline_at.has_value());

  Progress p;
  p.fraction = 0.5;
  p.message = "half";
  p.details = {{"pages", 50}};
  auto beat = client_->heartbeat(job.id, p);
  ASSERT_TRUE(beat.ok()) << beat.problem().describe();
  EXPECT_EQ(beat->progress.at("fraction"), 0.5);
  EXPECT_EQ(beat->progress.at("message"), "half");
  EXPECT_EQ(beat->progress.at("details"), (json{{"pages", 50}}));
  // A heartbeat without progress keeps it.
  auto bare = client_->heartbeat(job.id);
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->progress.at("message"), "half");
  EXPECT_TRUE(bare->last_heartbeat_at.has_value());

  auto done = client_->succeed(job.id, {{"url", "/out.png"}});
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state, "succeeded");
  EXPECT_TRUE(done->terminal());
  EXPECT_EQ(done->result, (json{{"url", "/out.png"}}));
  EXPECT_TRUE(done->finished_at.has_value());

  auto events = client_->job_events(job.id);
  ASSERT_TRUE(events.ok());
  std::vector<std::string> types;
  for (const auto& e : events->events) types.push_back(e.type);
  EXPECT_EQ(types, (std::vector<std::string>{"created", "started", "heartbeat", "heartbeat",
                                             "succeeded"}));
  EXPECT_FALSE(events->next_after_version.has_value());
  EXPECT_EQ(events->events[0].job_id, job.id);
  EXPECT_EQ(events->events[0].hash.size(), 64u);
}

TEST_F(ClientApiTest, JobEventsPage) {
  Job job = running();
  auto page = client_->job_events(job.id, 0, 1);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 1u);
  ASSERT_TRUE(page->next_after_version.has_value());
  EXPECT_EQ(*page->next_after_version, 1u);
  auto rest = client_->job_events(job.id, *page->next_after_version);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->events.size(), 1u);
  EXPECT_EQ(rest->events[0].type, "started");
}

TEST_F(ClientApiTest, ReportOnATerminalJobNamesItsState) {
  Job job = running();
  ASSERT_TRUE(client_->fail(job.id, "boom", "it broke", {{"step", 2}}).ok());
  auto again = client_->heartbeat(job.id);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.problem().status, 409);
  EXPECT_EQ(again.problem().slug, "job-terminal");
  EXPECT_EQ(again.problem().body.value("state", ""), "failed");
  auto got = client_->get(job.id);
  EXPECT_EQ(got->error.at("code"), "boom");
  EXPECT_EQ(got->error.at("details"), (json{{"step", 2}}));
}

TEST_F(ClientApiTest, IfMatchMismatchIs412) {
  Job job = created();
  auto stale = client_->start(job.id, "w/1", job.version + 5);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.problem().status, 412);
  EXPECT_EQ(stale.problem().slug, "version-mismatch");
  auto fresh = client_->start(job.id, "w/1", job.version);
  EXPECT_TRUE(fresh.ok());
}

TEST_F(ClientApiTest, CancelQueuedAndRunningJobs) {
  Job queued = created();
  auto c1 = client_->cancel(queued.id, "not needed");
  ASSERT_TRUE(c1.ok());
  EXPECT_EQ(c1->state, "cancelled");

  Job run = running();
  auto c2 = client_->cancel(run.id, "stop please");
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(c2->state, "running");
  EXPECT_TRUE(c2->cancel_requested);
  auto beat = client_->heartbeat(run.id);
  ASSERT_TRUE(beat.ok());
  EXPECT_TRUE(beat->cancel_requested);
  auto confirmed = client_->cancelled(run.id, "stopped at page 3");
  ASSERT_TRUE(confirmed.ok());
  EXPECT_EQ(confirmed->state, "cancelled");
}

TEST_F(ClientApiTest, ClaimStartsAJobWhoseReportsCarryItsLease) {
  const std::string type = "client-claim-" + std::to_string(getpid());
  auto none = client_->claim({type}, "w", 0);
  ASSERT_TRUE(none.ok()) << none.problem().describe();
  EXPECT_FALSE(none->has_value());
  Job job = created(type);
  auto claimed = client_->claim({type}, "host-2/9", 5);
  ASSERT_TRUE(claimed.ok()) << claimed.problem().describe();
  ASSERT_TRUE(claimed->has_value());
  const Job& got = **claimed;
  EXPECT_EQ(got.id, job.id);
  EXPECT_EQ(got.state, "running");
  ASSERT_TRUE(got.lease.has_value());
  // This client sends the lease by itself; another one without it is refused.
  EXPECT_TRUE(client_->heartbeat(job.id).ok());
  Client other(client_->options());
  auto refused = other.succeed(job.id, 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.problem().slug, "lease-mismatch");
  EXPECT_TRUE(client_->succeed(job.id, 2).ok());
}

TEST_F(ClientApiTest, WaitAnswersOnChangeOrAfterTimeout) {
  Job job = running();
  // Nothing changes: answered after the timeout with the current job.
  auto idle = client_->wait(job.id, 1, job.version);
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(idle->version, job.version);

  ASSERT_TRUE(job.lease.has_value());
  std::thread finisher([&] {
    Client other(client_->options());
    other.use_lease(job.id, *job.lease);  // the attempt's lease, handed to another client
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_TRUE(other.succeed(job.id, 7).ok());
  });
  auto done = client_->wait(job.id, 30);
  finisher.join();
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state, "succeeded");
  EXPECT_EQ(done->result, 7);
}

TEST_F(ClientApiTest, ListFiltersAndPages) {
  const std::string type = "list-" + random_uuid().substr(0, 8);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(created(type).id);
  ListQuery q;
  q.type = type;
  q.limit = 2;
  auto first = client_->list(q);
  ASSERT_TRUE(first.ok()) << first.problem().describe();
  ASSERT_EQ(first->jobs.size(), 2u);
  EXPECT_EQ(first->jobs[0].id, ids[2]);  // newest first
  ASSERT_TRUE(first->next_page_token.has_value());
  q.page_token = *first->next_page_token;
  auto second = client_->list(q);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->jobs.size(), 1u);
  EXPECT_EQ(second->jobs[0].id, ids[0]);

  ListQuery by_state;
  by_state.type = type;
  by_state.state = "running";
  auto none = client_->list(by_state);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->jobs.empty());
  EXPECT_FALSE(none->next_page_token.has_value());
}

TEST_F(ClientApiTest, FeedAndAuditHead) {
  auto head = client_->audit_head();
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->hash.size(), 64u);
  Job job = created();
  auto page = client_->feed(head->seq);
  ASSERT_TRUE(page.ok());
  ASSERT_FALSE(page->events.empty());
  EXPECT_EQ(page->events[0].seq, head->seq + 1);
  EXPECT_EQ(page->events[0].job_id, job.id);
  EXPECT_EQ(page->events[0].type, "created");
  EXPECT_EQ(page->next_after_seq, page->events.back().seq);

  // Long-poll: answered as soon as something newer commits.
  std::thread writer([&] {
    Client other(client_->options());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CreateJobRequest r;
    r.type = "feed-wakeup";
    EXPECT_TRUE(other.create(r).ok());
  });
  auto waited = client_->feed(page->next_after_seq, std::nullopt, 30);
  writer.join();
  ASSERT_TRUE(waited.ok());
  ASSERT_FALSE(waited->events.empty());
  EXPECT_EQ(waited->events[0].seq, page->next_after_seq + 1);
}

TEST_F(ClientApiTest, UnknownPathsAreProblemsToo) {
  ClientOptions o = client_->options();
  o.base_url = server_->url() + "/nothing-here";
  Client misconfigured(o);
  auto h = misconfigured.healthz();
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.problem().status, 404);
  EXPECT_EQ(h.problem().slug, "not-found");
}

TEST_F(ClientApiTest, OneClientSharedByManyThreads) {
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<std::string> ids;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        CreateJobRequest r;
        r.type = "threads";
        auto job = client_->create(r);
        if (!job) continue;
        auto got = client_->get(job->id);
        if (got && got->id == job->id) ++ok;
        std::lock_guard<std::mutex> lock(mu);
        ids.insert(job->id);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_EQ(ids.size(), 40u);
}

// A TCP socket bound to a free port on 127.0.0.1, closed at scope exit.
class LoopbackPort {
 public:
  // With `listening`, the kernel accepts connections on the port and nobody
  // ever reads them.
  explicit LoopbackPort(bool listening) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        (listening && listen(fd_, 16) != 0)) {
      close();
      return;
    }
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    url_ = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  }
  ~LoopbackPort() { close(); }
  LoopbackPort(const LoopbackPort&) = delete;
  LoopbackPort& operator=(const LoopbackPort&) = delete;

  // Frees the port; url() stays as it was.
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // "http://127.0.0.1:PORT"; empty when bind or listen failed.
  const std::string& url() const { return url_; }

 private:
  int fd_ = -1;
  std::string url_;
};

TEST(ClientWithoutServerTest, RefusedConnectionIsARetryableTransportProblem) {
  // A port that was just free: bind, read the number, close.
  LoopbackPort port(/*listening=*/false);
  ASSERT_FALSE(port.url().empty());
  port.close();
  ClientOptions o;
  o.base_url = port.url();
  Client c(o);
  auto job = c.get(random_uuid());
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.problem().status, 0);
  EXPECT_EQ(job.problem().slug, "transport");
  EXPECT_TRUE(job.problem().retryable());
  EXPECT_NE(job.problem().describe().find("127.0.0.1"), std::string::npos);
}

TEST(ClientWithoutServerTest, SilentServerHitsTheRequestTimeout) {
  // Listening but never answering: the kernel accepts, nobody reads.
  LoopbackPort silent(/*listening=*/true);
  ASSERT_FALSE(silent.url().empty());
  ClientOptions o;
  o.base_url = silent.url();
  o.request_timeout_ms = 300;
  Client c(o);
  auto h = c.healthz();
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.problem().slug, "transport");
}

TEST(ClientWithoutServerTest, AbortEndsABlockedCall) {
  LoopbackPort silent(/*listening=*/true);
  ASSERT_FALSE(silent.url().empty());
  ClientOptions o;
  o.base_url = silent.url();
  o.request_timeout_ms = 120000;  // only abort_calls() can end it in time
  Client c(o);
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    c.abort_calls();
  });
  auto h = c.healthz();
  aborter.join();
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.problem().slug, "aborted");
  EXPECT_FALSE(h.problem().retryable());
  EXPECT_EQ(c.healthz().problem().slug, "aborted");  // and every later call
}

TEST(ClientHelpersTest, RandomUuidIsCanonicalV4) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string u = random_uuid();
    ASSERT_EQ(u.size(), 36u);
    EXPECT_EQ(u[14], '4');
    EXPECT_NE(std::string("89ab").find(u[19]), std::string::npos) << u;
    for (size_t k : {8, 13, 18, 23}) EXPECT_EQ(u[k], '-');
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_NE(default_worker_name().find('/'), std::string::npos);
}

}  // namespace
}  // namespace jobstate::client
