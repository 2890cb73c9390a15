// The private directories of offline commands on a live store
// ($TMPDIR/jobstate-secondary-*): a command killed with SIGKILL leaves its
// directory behind, and the next offline command removes it, while it
// leaves alone the directories of commands still running and ones made a
// moment ago.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "ops_test_util.h"

namespace jobstate::testing {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> secondary_dirs(const fs::path& tmp) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(tmp))
    if (e.path().filename().string().rfind("jobstate-secondary-", 0) == 0) out.push_back(e.path());
  return out;
}

// Makes `p` look `age` old.
void age(const fs::path& p, std::chrono::seconds by) {
  fs::last_write_time(p, fs::file_time_type::clock::now() - by);
}

// Sets TMPDIR for the commands this test runs, and restores it.
class TmpDirOverride {
 public:
  explicit TmpDirOverride(const std::string& dir) {
    if (const char* old = std::getenv("TMPDIR")) old_ = old;
    setenv("TMPDIR", dir.c_str(), 1);
  }
  ~TmpDirOverride() {
    if (old_.empty())
      unsetenv("TMPDIR");
    else
      setenv("TMPDIR", old_.c_str(), 1);
  }

 private:
  std::string old_;
};

TEST(OpsSecondaryDirTest, AKilledCommandsDirectoryIsRemovedByTheNextCommandAndLiveOnesStay) {
  TempDir dir;
  const std::string store = dir.sub("store");
  // Enough history that `replay` blocks on a pipe nobody reads.
  fill_varied_store(store, 400);
  const fs::path tmp = dir.sub("tmp");
  fs::create_directories(tmp);
  TmpDirOverride tmpdir(tmp.string());

  // 1. `jobstate replay`, stuck writing to a full pipe, is killed with SIGKILL.
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    int null_fd = ::open("/dev/null", O_WRONLY);
    dup2(null_fd, STDERR_FILENO);
    execl(JOBSTATE_BIN, JOBSTATE_BIN, "replay", "--data-dir", store.c_str(), nullptr);
    _exit(127);
  }
  ::close(out[1]);
  std::vector<fs::path> left;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    left = secondary_dirs(tmp);
    if (left.size() == 1 && fs::exists(left[0] / "owner")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(left.size(), 1u) << "replay never opened the store as a secondary";
  ASSERT_EQ(waitpid(pid, nullptr, WNOHANG), 0) << "replay finished before it could be killed";
  kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  ::close(out[0]);
  const fs::path killed = left[0];
  ASSERT_TRUE(fs::exists(killed)) << "nothing was left behind: the test proves nothing";
  age(killed / "owner", std::chrono::minutes(2));

  // 2. A command still running (its owner file locked) that started long ago,
  //    and an unlocked directory made a moment ago (its owner not locked yet).
  const fs::path live = tmp / "jobstate-secondary-live01";
  fs::create_directories(live);
  int live_fd = ::open((live / "owner").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(live_fd, 0);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  ASSERT_EQ(fcntl(live_fd, F_OFD_SETLK, &lock), 0);
  age(live / "owner", std::chrono::minutes(10));
  const fs::path fresh = tmp / "jobstate-secondary-new001";
  fs::create_directories(fresh);
  { std::ofstream(fresh / "owner").put('\n'); }

  // 3. The next offline command cleans up after the killed one only.
  auto r = run_jobstate({"verify", "--data-dir", store});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(killed));
  EXPECT_TRUE(fs::exists(live / "owner"));
  EXPECT_TRUE(fs::exists(fresh / "owner"));
  auto remaining = secondary_dirs(tmp);
  std::sort(remaining.begin(), remaining.end());
  EXPECT_EQ(remaining, (std::vector<fs::path>{live, fresh}))
      << "verify must remove its own directory when it ends";
  ::close(live_fd);
}

}  // namespace
}  // namespace jobstate::testing
