// The embedded runner: handlers run in-process on a real store; what the
// program sees through status() and history().
#include "embedded/embedded_runner.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "store/lease.h"
#include "store_fixture.h"

namespace jobstate::embedded {
namespace {

using jobstate::testing::StoreTest;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// A gate handlers wait on until the test opens it (bounded: 30 s).
class Gate {
 public:
  void open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool wait() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

class EmbeddedRunnerTest : public StoreTest {
 protected:
  EmbeddedRunnerTest() { use_clock(system_clock_); }  // handlers heartbeat in real time
  void SetUp() override { open_store(); }
  void TearDown() override {
    if (runner_) runner_->stop();
    runner_.reset();
    close_store();
  }
  EmbeddedRunner& make_runner(EmbeddedRunnerOptions options = {}) {
    runner_ = std::make_unique<EmbeddedRunner>(store(), std::move(options));
    return *runner_;
  }
  JobState wait_terminal(const JobId& id) {
    const auto end = SteadyClock::now() + std::chrono::seconds(30);
    while (SteadyClock::now() < end) {
      auto s = runner_->status(id);
      EXPECT_OK(s);
      if (s.ok() && s->has_value() && is_terminal((*s)->status)) return **s;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ADD_FAILURE() << "job " << id.to_string() << " did not finish";
    return {};
  }
  std::vector<std::string> history_types(const JobId& id) {
    auto h = runner_->history(id);
    EXPECT_OK(h);
    std::vector<std::string> out;
    if (h)
      for (const auto& e : *h) out.emplace_back(event_type_name(e.type));
    return out;
  }

  SystemClock system_clock_;
  std::unique_ptr<EmbeddedRunner> runner_;
};

TEST_F(EmbeddedRunnerTest, HandlerSucceedsWithProgressAndResult) {
  auto& runner = make_runner();
  ASSERT_OK(runner.register_handler("report", [](JobContext& job) {
    EXPECT_EQ(job.type(), "report");
    EXPECT_FALSE(job.cancel_requested());
    EXPECT_OK(job.progress(0.5, "half way"));
    EXPECT_FALSE(job.progress(1.5).ok());
    EXPECT_OK(job.succeed({{"pages", job.params()["pages"]}}));
    EXPECT_FALSE(job.succeed().ok());  // one outcome only
  }));
  ASSERT_OK(runner.start());
  auto id = runner.trigger("report", {{"pages", 12}});
  ASSERT_OK(id);
  JobState s = wait_terminal(*id);
  EXPECT_EQ(s.status, JobStatus::kSucceeded);
  EXPECT_EQ(s.result, json({{"pages", 12}}));
  EXPECT_EQ(s.progress["fraction"], 0.5);
  EXPECT_EQ(s.progress["message"], "half way");
  ASSERT_TRUE(s.worker.has_value());
  EXPECT_EQ(s.worker->rfind("jobstate-embedded/", 0), 0u);
  EXPECT_EQ(history_types(*id),
            (std::vector<std::string>{"created", "started", "heartbeat", "succeeded"}));
}

TEST_F(EmbeddedRunnerTest, HandlerThatThrowsIsFailedNamingTheException) {
  auto& runner = make_runner();
  ASSERT_OK(runner.register_handler("explode", [](JobContext& job) {
    throw std::runtime_error("disk quota exceeded while writing page 3");
  }));
  ASSERT_OK(runner.register_handler("odd-throw", [](JobContext&) { throw 42; }));
  ASSERT_OK(runner.start());
  auto id = runner.trigger("explode");
  ASSERT_OK(id);
  JobState s = wait_terminal(*id);
  ASSERT_EQ(s.status, JobStatus::kFailed);
  EXPECT_EQ(s.error["code"], "abandoned");
  const std::string message = s.error["message"];
  EXPECT_NE(message.find("disk quota exceeded while writing page 3"), std::string::npos) << message;
  EXPECT_EQ(s.error["details"]["exception"], "disk quota exceeded while writing page 3");

  auto odd = runner.trigger("odd-throw");
  ASSERT_OK(odd);
  JobState o = wait_terminal(*odd);
  EXPECT_EQ(o.error["code"], "abandoned");
  EXPECT_NE(o.error["message"].get<std::string>().find("not derived from std::exception"),
            std::string::npos);
}

TEST_F(EmbeddedRunnerTest, HandlerReturningWithoutOutcomeIsAbandoned) {
  auto& runner = make_runner();
  ASSERT_OK(
      runner.register_handler("forgetful", [](JobContext& job) { job.progress(0.9, "almost"); }));
  ASSERT_OK(runner.start());
  auto id = runner.trigger("forgetful");
  ASSERT_OK(id);
  JobState s = wait_terminal(*id);
  ASSERT_EQ(s.status, JobStatus::kFailed);
  EXPECT_EQ(s.error["code"], "abandoned");
  EXPECT_NE(s.error["message"].get<std::string>().find("returned without"), std::string::npos);
  EXPECT_EQ(s.progress["message"], "almost");  // the last progress went in first
}

TEST_F(EmbeddedRunnerTest, ExplicitFailureAndCancel) {
  auto& runner = make_runner();
  Gate started;
  ASSERT_OK(runner.register_handler("fails", [](JobContext& job) {
    EXPECT_OK(job.fail("bad_input", "row 7 is empty", {{"row", 7}}));
  }));
  ASSERT_OK(runner.register_handler("cancellable", [&](JobContext& job) {
    EXPECT_FALSE(job.cancelled("nothing asked").ok());  // no cancel pending yet
    started.open();
    const auto end = SteadyClock::now() + std::chrono::seconds(30);
    while (!job.cancel_requested() && SteadyClock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_OK(job.cancelled("stopped at the user's request"));
  }));
  ASSERT_OK(runner.start());
  auto f = runner.trigger("fails");
  ASSERT_OK(f);
  JobState failed = wait_terminal(*f);
  EXPECT_EQ(
      failed.error,
      json({{"code", "bad_input"}, {"message", "row 7 is empty"}, {"details", {{"row", 7}}}}));

  auto c = runner.trigger("cancellable");
  ASSERT_OK(c);
  ASSERT_TRUE(started.wait());
  CommandRequest cancel;
  cancel.job_id = *c;
  cancel.command = RequestCancel{"user"};
  ASSERT_OK(store().writer().execute(std::move(cancel)));
  EXPECT_EQ(wait_terminal(*c).status, JobStatus::kCancelled);
}

TEST_F(EmbeddedRunnerTest, TriggerReturnsBeforeTheHandlerRuns) {
  auto& runner = make_runner();
  Gate release;
  Gate entered;
  ASSERT_OK(runner.register_handler("slow", [&](JobContext& job) {
    entered.open();
    ASSERT_TRUE(release.wait());
    job.succeed();
  }));
  ASSERT_OK(runner.start());
  auto id = runner.trigger("slow");  // would block forever if it waited for the handler
  ASSERT_OK(id);
  auto s = runner.status(*id);
  ASSERT_OK(s);
  ASSERT_TRUE(s->has_value());  // durable at once
  EXPECT_FALSE(is_terminal((*s)->status));
  ASSERT_TRUE(entered.wait());
  release.open();
  EXPECT_EQ(wait_terminal(*id).status, JobStatus::kSucceeded);
}

TEST_F(EmbeddedRunnerTest, ThreadPoolBoundsConcurrency) {
  EmbeddedRunnerOptions options;
  options.threads = 2;
  auto& runner = make_runner(options);
  std::mutex mu;
  int now_running = 0, most = 0;
  Gate release;
  ASSERT_OK(runner.register_handler("work", [&](JobContext& job) {
    {
      std::lock_guard lock(mu);
      most = std::max(most, ++now_running);
    }
    release.wait();
    {
      std::lock_guard lock(mu);
      --now_running;
    }
    job.succeed();
  }));
  ASSERT_OK(runner.start());
  std::vector<JobId> ids;
  for (int i = 0; i < 6; ++i) {
    auto id = runner.trigger("work");
    ASSERT_OK(id);
    ids.push_back(*id);
  }
  // Two handlers hold both threads; four jobs wait, still queued in the store.
  const auto end = SteadyClock::now() + std::chrono::seconds(30);
  while (runner.running() < 2 && SteadyClock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(runner.running(), 2u);
  EXPECT_EQ(runner.waiting(), 4u);
  EXPECT_EQ((*runner.status(ids[5]))->status, JobStatus::kQueued);
  release.open();
  for (const auto& id : ids) EXPECT_EQ(wait_terminal(id).status, JobStatus::kSucceeded);
  EXPECT_EQ(most, 2);
}

TEST_F(EmbeddedRunnerTest, RefusesWhatItCannotRun) {
  auto& runner = make_runner();
  ASSERT_OK(runner.register_handler("a", [](JobContext& job) { job.succeed(); }));
  EXPECT_FALSE(runner.register_handler("a", [](JobContext&) {}).ok());
  EXPECT_FALSE(runner.register_handler("bad type!", [](JobContext&) {}).ok());
  EXPECT_ERROR_CODE(runner.trigger("a"), ErrorCode::kUnavailable);  // not started
  ASSERT_OK(runner.start());
  EXPECT_ERROR_CODE(runner.trigger("unregistered"), ErrorCode::kInvalidRequest);
  TriggerOptions bad;
  bad.heartbeat_timeout_s = 0;
  EXPECT_ERROR_CODE(runner.trigger("a", json::object(), bad), ErrorCode::kInvalidRequest);
  runner.stop();
  EXPECT_ERROR_CODE(runner.trigger("a"), ErrorCode::kUnavailable);
}

TEST_F(EmbeddedRunnerTest, RestartFailsLeftRunningJobsAndRunsQueuedOnes) {
  // A previous run of the program: one handler was running when it died,
  // one job was still waiting.
  JobId running = JobId::generate(), queued = JobId::generate();
  for (const JobId& id : {running, queued}) {
    CommandRequest create;
    create.job_id = id;
    create.command = CreateJob{"task", json::object(), 120, json::object()};
    ASSERT_OK(store().writer().execute(std::move(create)));
  }
  CommandRequest start;
  start.job_id = running;
  start.command = StartJob{"jobstate-embedded/999999", new_lease_hash()};
  ASSERT_OK(store().writer().execute(std::move(start)));
  reopen_store();

  auto& runner = make_runner();
  ASSERT_OK(runner.register_handler("task", [](JobContext& job) { job.succeed("done"); }));
  ASSERT_OK(runner.start());
  auto s = runner.status(running);
  ASSERT_OK(s);
  EXPECT_EQ((*s)->status, JobStatus::kFailed);
  EXPECT_EQ((*s)->error["code"], "abandoned");
  EXPECT_EQ(wait_terminal(queued).result, "done");
}

TEST_F(EmbeddedRunnerTest, HeartbeatsKeepALongHandlerAlive) {
  auto& runner = make_runner();
  Gate release;
  ASSERT_OK(runner.register_handler("long", [&](JobContext& job) {
    release.wait();
    job.succeed();
  }));
  ASSERT_OK(runner.start());
  TriggerOptions options;
  options.heartbeat_timeout_s = 1;  // heartbeats every ~333 ms
  auto id = runner.trigger("long", json::object(), options);
  ASSERT_OK(id);
  // Wait until at least three heartbeats were recorded, then finish.
  const auto end = SteadyClock::now() + std::chrono::seconds(30);
  size_t heartbeats = 0;
  while (heartbeats < 3 && SteadyClock::now() < end) {
    heartbeats = 0;
    for (const auto& t : history_types(*id)) heartbeats += t == "heartbeat";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(heartbeats, 3u);
  release.open();
  EXPECT_EQ(wait_terminal(*id).status, JobStatus::kSucceeded);
}

// The runner holds each attempt's lease, as an HTTP worker does: another
// part of the program (or an HTTP client) that knows the id cannot report on
// the job its handler runs.
TEST_F(EmbeddedRunnerTest, AHandlersAttemptHoldsItsLease) {
  auto& runner = make_runner();
  Gate release, running;
  ASSERT_OK(runner.register_handler("held", [&](JobContext& job) {
    running.open();
    release.wait();
    EXPECT_OK(job.succeed("mine"));
  }));
  ASSERT_OK(runner.start());
  auto id = runner.trigger("held", json::object());
  ASSERT_OK(id);
  ASSERT_TRUE(running.wait());
  auto s = runner.status(*id);
  ASSERT_OK(s);
  ASSERT_TRUE((*s)->lease_hash.has_value());
  EXPECT_EQ((*s)->lease_hash->size(), 64u);
  for (Command report : {Command(SucceedJob{"not mine"}), Command(Heartbeat{nullptr}),
                         Command(FailJob{json{{"code", "x"}, {"message", "y"}}})}) {
    CommandRequest r;
    r.job_id = *id;
    r.command = report;
    auto refused = store().writer().execute(std::move(r));
    ASSERT_FALSE(refused.ok()) << command_name(report);
    EXPECT_EQ(refused.error().code, ErrorCode::kLeaseMismatch) << command_name(report);
  }
  release.open();
  JobState done = wait_terminal(*id);
  EXPECT_EQ(done.status, JobStatus::kSucceeded);
  EXPECT_EQ(done.result, "mine");
}

}  // namespace
}  // namespace jobstate::embedded
