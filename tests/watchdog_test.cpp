// The watchdog: logic on a ManualClock (a JobStore and Watchdog::sweep_once(),
// no server), then one real-time test through a real server.
#include "watchdog/watchdog.h"

#include <gtest/gtest.h>

#include "api_test_server.h"
#include "store_fixture.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;

constexpr TimeMs kT0 = 1'800'000'000'000;  // 2027-01-15T08:00:00.000Z

[[maybe_unused]] auto* const kEnv = ::testing::AddGlobalTestEnvironment(new ServerEnvironment());

// A store on a ManualClock, with the watchdog (not started: tests sweep).
class WatchdogLogic : public StoreTest {
 protected:
  WatchdogLogic() : StoreTest(kT0) {}
  void SetUp() override { open(); }
  void TearDown() override { close(); }

  void open() {
    ASSERT_NO_FATAL_FAILURE(open_store());
    watchdog_ =
        std::make_unique<Watchdog>(store_->projection(), store_->writer(), clock_, options_);
  }
  void close() {
    watchdog_.reset();
    close_store();
  }

  Result<CommandOutcome> run(const JobId& id, Command cmd,
                             std::optional<uint64_t> expected = std::nullopt) {
    CommandRequest r;
    r.job_id = id;
    r.command = std::move(cmd);
    r.expected_version = expected;
    return store_->writer().execute(std::move(r));
  }
  // A running job with this heartbeat timeout, started now.
  JobId running_job(int64_t timeout_s) {
    JobId id = JobId::generate();
    EXPECT_OK(run(id, CreateJob{"wd", json::object(), timeout_s, json::object()}));
    EXPECT_OK(run(id, StartJob{"w/1"}));
    return id;
  }
  JobState state(const JobId& id) {
    auto row = store_->projection().row(id);
    EXPECT_TRUE(row.ok() && row->has_value());
    auto s = (*row)->to_state();
    EXPECT_OK(s);
    return *s;
  }
  json rendered(const JobId& id) {
    auto row = store_->projection().row(id);
    return json::parse((*row)->render(store_->writer().server_start_ms()));
  }

  WatchdogOptions options_;
  std::unique_ptr<Watchdog> watchdog_;
};

TEST_F(WatchdogLogic, FailsASilentJobWithHeartbeatTimeoutAndWhatItKnew) {
  JobId id = running_job(10);
  clock_.advance_ms(4'000);
  json progress = {{"fraction", 0.25}, {"message", "page 25/100"}, {"details", {{"page", 25}}}};
  ASSERT_OK(run(id, Heartbeat{progress}));
  const TimeMs deadline = kT0 + 4'000 + 10'000;
  EXPECT_EQ(rendered(id)["deadline_at"], format_rfc3339_ms(deadline));

  clock_.set_ms(deadline - 1);
  EXPECT_EQ(watchdog_->sweep_once(), 0u);
  EXPECT_EQ(state(id).status, JobStatus::kRunning);

  clock_.set_ms(deadline);
  EXPECT_EQ(watchdog_->sweep_once(), 1u);
  JobState s = state(id);
  ASSERT_EQ(s.status, JobStatus::kFailed);
  EXPECT_EQ(s.finished_at_ms, deadline);
  EXPECT_EQ(s.error["code"], "heartbeat_timeout");
  EXPECT_TRUE(s.error["message"].is_string());
  EXPECT_EQ(s.error["details"]["last_heartbeat_at"], format_rfc3339_ms(kT0 + 4'000));
  EXPECT_EQ(s.error["details"]["deadline_at"], format_rfc3339_ms(deadline));
  EXPECT_EQ(s.error["details"]["progress"]["message"], "page 25/100");
  EXPECT_EQ(s.error["details"]["progress"]["fraction"], 0.25);
  EXPECT_EQ(s.progress, s.error["details"]["progress"]);
  EXPECT_TRUE(rendered(id)["deadline_at"].is_null());

  // One failed event, the last; later reports are refused as terminal.
  auto events = store_->log().job_events(id);
  ASSERT_OK(events);
  ASSERT_EQ(events->size(), 4u);
  EXPECT_EQ(events->back().type, EventType::kFailed);
  EXPECT_ERROR_CODE(run(id, Heartbeat{}), ErrorCode::kJobTerminal);
  EXPECT_ERROR_CODE(run(id, SucceedJob{1}), ErrorCode::kJobTerminal);
  EXPECT_ERROR_CODE(run(id, FailJob{json{{"code", "late"}}}), ErrorCode::kJobTerminal);
  // Sweeping again finds nothing: the deadline left the index.
  clock_.advance_ms(60'000);
  EXPECT_EQ(watchdog_->sweep_once(), 0u);
  EXPECT_TRUE(log_is_intact(store_->db()));
}

TEST_F(WatchdogLogic, AJobThatNeverBeatReportsNoLastHeartbeat) {
  JobId id = running_job(5);
  clock_.advance_ms(5'000);
  EXPECT_EQ(watchdog_->sweep_once(), 1u);
  JobState s = state(id);
  ASSERT_EQ(s.status, JobStatus::kFailed);
  EXPECT_TRUE(s.error["details"]["last_heartbeat_at"].is_null());
  EXPECT_EQ(s.error["details"]["deadline_at"], format_rfc3339_ms(kT0 + 5'000));
  EXPECT_TRUE(s.error["details"]["progress"].is_null());
}

TEST_F(WatchdogLogic, AHeartbeatJustBeforeTheDeadlineKeepsTheJobAlive) {
  JobId id = running_job(10);
  clock_.set_ms(kT0 + 9'999);
  ASSERT_OK(run(id, Heartbeat{}));
  clock_.set_ms(kT0 + 10'000);  // the old deadline
  EXPECT_EQ(watchdog_->sweep_once(), 0u);
  clock_.set_ms(kT0 + 19'998);
  // The index files the job under its deadline rounded down to a quarter
  // timeout (kT0 + 17.5 s): it is due, but the row's deadline decides.
  auto due = store_->projection().expired(clock_.now_ms(), 10);
  ASSERT_OK(due);
  EXPECT_EQ(due->size(), 1u);
  EXPECT_EQ(watchdog_->sweep_once(), 0u);
  EXPECT_EQ(state(id).status, JobStatus::kRunning);
  clock_.set_ms(kT0 + 19'999);  // the new one
  EXPECT_EQ(watchdog_->sweep_once(), 1u);
  EXPECT_EQ(state(id).status, JobStatus::kFailed);
  EXPECT_EQ(state(id).error["details"]["deadline_at"], format_rfc3339_ms(kT0 + 19'999));
}

TEST_F(WatchdogLogic, OnlyRunningJobsExpire) {
  JobId queued = JobId::generate();
  ASSERT_OK(run(queued, CreateJob{"wd", json::object(), 1, json::object()}));
  JobId succeeded = running_job(1);
  ASSERT_OK(run(succeeded, SucceedJob{json("done")}));
  JobId cancelled = running_job(1);
  ASSERT_OK(run(cancelled, RequestCancel{"stop"}));
  ASSERT_OK(run(cancelled, ConfirmCancelled{"stopped"}));
  JobId asked = running_job(1);
  ASSERT_OK(run(asked, RequestCancel{"stop"}));  // still running: it can still time out
  clock_.advance_ms(3'600'000);
  EXPECT_EQ(watchdog_->sweep_once(), 1u);
  EXPECT_EQ(state(queued).status, JobStatus::kQueued);
  EXPECT_EQ(state(succeeded).status, JobStatus::kSucceeded);
  EXPECT_EQ(state(cancelled).status, JobStatus::kCancelled);
  EXPECT_EQ(state(asked).status, JobStatus::kFailed);
}

TEST_F(WatchdogLogic, ASweepTakesOnlyTheExpiredRangeAndAtMostItsLimit) {
  options_.max_per_sweep = 10;
  close();
  open();
  std::vector<JobId> early, late;
  for (int i = 0; i < 25; ++i) early.push_back(running_job(10));
  for (int i = 0; i < 5; ++i) late.push_back(running_job(100));
  clock_.advance_ms(10'000);
  EXPECT_EQ(watchdog_->sweep_once(), 10u);
  EXPECT_EQ(watchdog_->sweep_once(), 10u);
  EXPECT_EQ(watchdog_->sweep_once(), 5u);
  EXPECT_EQ(watchdog_->sweep_once(), 0u);
  for (auto& id : early) EXPECT_EQ(state(id).status, JobStatus::kFailed);
  for (auto& id : late) EXPECT_EQ(state(id).status, JobStatus::kRunning);
}

TEST_F(WatchdogLogic, AHeartbeatThatCommitsFirstWinsOverTheWatchdogsCommand) {
  // What the watchdog sends: ExpireDeadlines at the version it read. A
  // heartbeat that lands in between makes that command a version mismatch.
  JobId id = running_job(10);
  const uint64_t seen = state(id).version;
  clock_.set_ms(kT0 + 10'000);
  ASSERT_OK(run(id, Heartbeat{}));  // the worker was just in time
  EXPECT_ERROR_CODE(run(id, ExpireDeadlines{}, seen), ErrorCode::kVersionMismatch);
  // At the current version the expiry re-checks the (new) deadline: nothing to do.
  auto again = run(id, ExpireDeadlines{}, state(id).version);
  ASSERT_OK(again);
  EXPECT_TRUE(again->events.empty());
  EXPECT_EQ(state(id).status, JobStatus::kRunning);
}

TEST_F(WatchdogLogic, ADeadlineThatPassedWhileDownGetsGraceFromStartUp) {
  JobId id = running_job(30);
  JobId long_one = running_job(3'600);
  ASSERT_EQ(rendered(id)["deadline_at"], format_rfc3339_ms(kT0 + 30'000));
  close();

  // Down for 10 minutes: the stored deadline passed long ago.
  const TimeMs restart = kT0 + 600'000;
  clock_.set_ms(restart);
  open();
  EXPECT_EQ(store_->writer().server_start_ms(), restart);
  // The job shows the new deadline, start-up + its timeout.
  EXPECT_EQ(rendered(id)["deadline_at"], format_rfc3339_ms(restart + 30'000));
  // A deadline still in the future is never moved earlier (the server may
  // give it the same grace: start-up + timeout).
  EXPECT_GE(ms_of(rendered(long_one)["deadline_at"]), kT0 + 3'600'000);
  EXPECT_EQ(watchdog_->sweep_once(), 0u);
  clock_.set_ms(restart + 29'999);
  EXPECT_EQ(watchdog_->sweep_once(), 0u);
  EXPECT_EQ(state(id).status, JobStatus::kRunning);

  clock_.set_ms(restart + 30'000);
  EXPECT_EQ(watchdog_->sweep_once(), 1u);
  JobState s = state(id);
  ASSERT_EQ(s.status, JobStatus::kFailed);
  EXPECT_EQ(s.error["details"]["deadline_at"], format_rfc3339_ms(restart + 30'000));
  EXPECT_EQ(s.finished_at_ms, restart + 30'000);
  EXPECT_EQ(state(long_one).status, JobStatus::kRunning);
}

TEST_F(WatchdogLogic, AHeartbeatDuringTheGraceMovesTheDeadlineOn) {
  JobId id = running_job(30);
  close();
  const TimeMs restart = kT0 + 600'000;
  clock_.set_ms(restart);
  open();
  clock_.set_ms(restart + 20'000);
  ASSERT_OK(run(id, Heartbeat{}));
  EXPECT_EQ(rendered(id)["deadline_at"], format_rfc3339_ms(restart + 50'000));
  clock_.set_ms(restart + 30'000);
  EXPECT_EQ(watchdog_->sweep_once(), 0u);
  clock_.set_ms(restart + 50'000);
  EXPECT_EQ(watchdog_->sweep_once(), 1u);
  EXPECT_EQ(state(id).status, JobStatus::kFailed);
}

TEST_F(WatchdogLogic, StartAndStopAreIdempotentAndTheThreadSweeps) {
  JobId id = running_job(1);
  clock_.advance_ms(1'000);
  options_.interval_ms = 10;
  watchdog_ = std::make_unique<Watchdog>(store_->projection(), store_->writer(), clock_, options_);
  watchdog_->start();
  watchdog_->start();
  EXPECT_TRUE(watchdog_->running());
  EXPECT_TRUE(eventually([&] { return state(id).status == JobStatus::kFailed; }));
  watchdog_->stop();
  watchdog_->stop();
  EXPECT_FALSE(watchdog_->running());
}

// ---- one real-time test through a real server ------------------------------------

TEST(WatchdogRealTime, ASilentJobIsFailedAndItsWorkerLearnsIt) {
  HttpClient c(ServerEnvironment::server().url());
  json j = create_job(c, {{"type", unique_type("silent")}, {"heartbeat_timeout_s", 1}});
  json started = act(c, j, "start", json{{"worker", "dies-at-once/1"}});
  ASSERT_TRUE(started["deadline_at"].is_string());
  const auto begin = std::chrono::steady_clock::now();

  json now;
  ASSERT_TRUE(eventually(
      [&] {
        now = c.get(job_path(j)).json();
        return now["state"] != "running";
      },
      std::chrono::seconds(20)));
  const auto took = std::chrono::steady_clock::now() - begin;
  ASSERT_TRUE(is_job_resource(now));
  EXPECT_EQ(now["state"], "failed");
  EXPECT_EQ(now["error"]["code"], "heartbeat_timeout");
  EXPECT_EQ(now["error"]["details"]["deadline_at"], started["deadline_at"]);
  EXPECT_TRUE(now["error"]["details"]["last_heartbeat_at"].is_null());
  std::printf(
      "[ info ] failed %lld ms after start; finished_at - deadline_at = %lld ms\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()),
      static_cast<long long>(ms_of(now["finished_at"]) - ms_of(started["deadline_at"])));

  // The worker comes back: every report says the job is over, and how.
  for (const char* action : {"heartbeat", "succeed", "start", "cancelled"}) {
    auto r = c.post(job_path(j) + "/" + action);
    ASSERT_TRUE(is_problem(r, 409, "job-terminal")) << action;
    EXPECT_EQ(r.json()["state"], "failed");
  }
  auto fail = c.post_json(job_path(j) + "/fail", {{"error", {{"code", "crash"}}}});
  EXPECT_TRUE(is_problem(fail, 409, "job-terminal"));
  EXPECT_EQ(job_history(c, j).size(), 3u);
}

}  // namespace
}  // namespace jobstate::testing
