// Abandoned-job recovery (workers/abandoned_jobs.h) on a real store through
// the store's interfaces: which running jobs it fails, and how.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <string>

#include "store/lease.h"
#include "store_fixture.h"
#include "workers/abandoned_jobs.h"

namespace jobstate::workers {
namespace {

using jobstate::testing::StoreTest;
using nlohmann::json;

class AbandonedJobsTest : public StoreTest {
 protected:
  void SetUp() override { open_store(); }

  // A job of type "t", started by `worker` unless it is empty (then queued).
  JobId job(const std::string& worker) {
    const JobId id = JobId::generate();
    CommandRequest create;
    create.job_id = id;
    create.command = CreateJob{"t"};
    EXPECT_OK(store().writer().execute(std::move(create)));
    if (!worker.empty()) start(id, worker);
    return id;
  }
  void start(const JobId& id, const std::string& worker) {
    CommandRequest request;
    request.job_id = id;
    // As the executors and the embedded runner start: with a lease of their own.
    request.command = StartJob{worker, new_lease_hash()};
    EXPECT_OK(store().writer().execute(std::move(request)));
  }
  JobState state(const JobId& id) {
    auto row = store().read_model().row(id);
    EXPECT_OK(row);
    auto s = (*row)->to_state();
    EXPECT_OK(s);
    return *s;
  }
};

TEST_F(AbandonedJobsTest, FailsOnlyRunningJobsOfThePrefix) {
  struct Case {
    std::string worker;  // "" = queued, never started
    bool failed;
  };
  const Case cases[] = {
      {"jobstate-executor/999999", true},
      {"jobstate-executor/1", true},
      {"jobstate-embedded/999999", false},
      {"host-7/4242", false},
      {"xjobstate-executor/1", false},  // a prefix, not a substring
      {"", false},
  };
  std::vector<JobId> ids;
  for (const auto& c : cases) ids.push_back(job(c.worker));

  auto failed = fail_abandoned_jobs(store().read_model(), store().writer(), "jobstate-executor/");
  ASSERT_OK(failed);
  EXPECT_EQ(*failed, 2u);
  for (size_t i = 0; i < ids.size(); ++i) {
    const Case& c = cases[i];
    JobState s = state(ids[i]);
    if (!c.failed) {
      EXPECT_EQ(s.status, c.worker.empty() ? JobStatus::kQueued : JobStatus::kRunning) << c.worker;
      continue;
    }
    ASSERT_EQ(s.status, JobStatus::kFailed) << c.worker;
    EXPECT_EQ(s.error["code"], "abandoned");
    EXPECT_EQ(s.error["message"],
              "the jobstate server that ran this job's command (" + c.worker +
                  ") stopped before the command finished; its outcome is unknown");
    EXPECT_EQ(s.error["details"], (json{{"worker", c.worker}}));
  }
  // Nothing left to recover: a second pass fails nothing.
  auto again = fail_abandoned_jobs(store().read_model(), store().writer(), "jobstate-executor/");
  ASSERT_OK(again);
  EXPECT_EQ(*again, 0u);
}

TEST_F(AbandonedJobsTest, PagesThroughManyRunningJobs) {
  // More than one page of the running list (1000 a page), submitted at once
  // so that group commit writes them in a few batches.
  constexpr int kJobs = 1005;
  std::promise<void> all_done;
  std::atomic<int> answered{0}, refused{0};
  for (int i = 0; i < kJobs; ++i) {
    const JobId id = JobId::generate();
    for (int step = 0; step < 2; ++step) {
      CommandRequest request;
      request.job_id = id;
      if (step == 0) {
        request.command = CreateJob{"t"};
      } else {
        request.command = StartJob{"jobstate-embedded/7"};
      }
      store().writer().submit(std::move(request), [&](const Result<CommandOutcome>& r) {
        if (!r) ++refused;
        if (++answered == 2 * kJobs) all_done.set_value();
      });
    }
  }
  all_done.get_future().wait();
  ASSERT_EQ(refused.load(), 0);
  job("other/1");
  auto failed = fail_abandoned_jobs(store().read_model(), store().writer(), "jobstate-embedded/");
  ASSERT_OK(failed);
  EXPECT_EQ(*failed, static_cast<size_t>(kJobs));
  auto running =
      store().read_model().list(ListFilter{JobStatus::kRunning, std::nullopt}, std::nullopt, 10);
  ASSERT_OK(running);
  EXPECT_EQ(running->jobs.size(), 1u);
}

TEST_F(AbandonedJobsTest, AStoppedWriterIsAnError) {
  job("jobstate-executor/1");
  store_->writer().stop();
  auto failed = fail_abandoned_jobs(store().read_model(), store().writer(), "jobstate-executor/");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace jobstate::workers
