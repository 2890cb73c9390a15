// A full disk, for real: `jobstate serve` on a small tmpfs is written to until
// it answers 503, says why on /readyz, keeps serving reads, and takes writes
// again by itself once space is freed, in rounds of fill, fail, free, resume.
// Afterwards every acknowledged job is there and `jobstate verify` passes.
//
// Mounting a tmpfs needs root. CI runs as root; anywhere else these tests
// fail with a message saying so rather than pass without running.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"
#include "ops_test_util.h"
#include "serve_process.h"
#include "test_util.h"

namespace jobstate::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

// A tmpfs of `bytes` mounted on `dir` (created) for the object's lifetime:
// unmounted on every path out of the test, the failing ones included.
class TmpfsMount {
 public:
  TmpfsMount(std::string dir, size_t bytes) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    const std::string opts = "size=" + std::to_string(bytes) + ",mode=0755";
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, opts.c_str()) == 0)
      mounted_ = true;
    else
      error_ = std::strerror(errno);
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string error_;
};

// Writes `bytes` to a new file (tmpfs keeps every page written, zeros included).
::testing::AssertionResult write_filler(const std::string& path, size_t bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return ::testing::AssertionFailure() << path << ": " << std::strerror(errno);
  const std::string chunk(64 << 10, 'f');
  for (size_t done = 0; done < bytes; done += chunk.size()) {
    if (::write(fd, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) {
      ::close(fd);
      return ::testing::AssertionFailure() << path << ": " << std::strerror(errno);
    }
  }
  ::close(fd);
  return ::testing::AssertionSuccess();
}

// Polls /readyz until it answers `status`, for at most `limit`.
HttpResponse wait_for_readyz(HttpClient& c, long status, seconds limit) {
  const auto end = SteadyClock::now() + limit;
  HttpResponse r = c.get("/readyz");
  while (r.status != status && SteadyClock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    r = c.get("/readyz");
  }
  return r;
}

constexpr size_t kMiB = 1u << 20;
constexpr size_t kTmpfsBytes = 24 * kMiB;
constexpr size_t kFillerBytes = 3 * kMiB;  // freed one at a time, one per round

// A job's padding: random hex, so that RocksDB's compression does not shrink it.
std::string random_pad(size_t bytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string s(bytes, '0');
  uint64_t x = 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(::getpid());
  for (auto& c : s) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = kHex[x & 15];
  }
  return s;
}

struct Scenario {
  std::string reserve_mb;  // serve --disk-reserve-mb
  int rounds = 1;
  int fillers = 0;  // filler files written before the server starts
  // Frees space for round `round` (the server is not touched).
  std::function<void(const std::string& mnt, int round)> free_space;
};

// Rounds of fill (until a write gets 503), fail (writes refused, reads
// served, /readyz says why), free (by `free_space`), resume (ready again
// without a write or a restart; writes taken). Then every acknowledged job
// is there, `jobstate verify` passes, and a restarted server has them all.
void fill_fail_free_resume(const Scenario& scenario) {
  if (::geteuid() != 0)
    FAIL() << "this test mounts a tmpfs and needs root (CI runs as root); run it as root, "
              "e.g. sudo ctest -R DiskFull";
  TempDir dir;
  const std::string mnt = dir.sub("mnt");
  TmpfsMount tmpfs(mnt, kTmpfsBytes);
  ASSERT_TRUE(tmpfs.mounted()) << "mount -t tmpfs on " << mnt << ": " << tmpfs.error();
  for (int i = 0; i < scenario.fillers; ++i)
    ASSERT_TRUE(write_filler(mnt + "/filler-" + std::to_string(i), kFillerBytes));

  const std::string data = mnt + "/data";
  const std::vector<std::string> flags = {"--log-level", "warn", "--disk-reserve-mb",
                                          scenario.reserve_mb};
  ServeProcess server({.data_dir = data,
                       .output_path = dir.sub("serve.log"),
                       .flags = flags,
                       .teardown = Teardown::kTerminate});
  ASSERT_FALSE(server.url().empty()) << server.output();
  HttpClient c(server.url());
  ASSERT_EQ(c.get("/readyz").status, 200);

  // A running job, to see a worker's report refused too.
  auto created = c.post_json("/v1/jobs", {{"type", "worker"}, {"heartbeat_timeout_s", 3600}});
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string running_path = "/v1/jobs/" + created.json()["id"].get<std::string>();
  ASSERT_EQ(c.post_json(running_path + "/start", {{"worker", "w"}}).status, 200);

  std::set<std::string> acknowledged;
  const std::string pad = random_pad(16 << 10);
  for (int round = 0; round < scenario.rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Fill: write until the store refuses. A 24 MiB tmpfs holds well under
    // 2,000 of these.
    HttpResponse refused;
    size_t accepted = 0;
    for (int i = 0; i < 2000 && refused.status == 0; ++i) {
      auto r = c.post_json("/v1/jobs", {{"type", "fill"}, {"params", {{"pad", pad}, {"i", i}}}});
      if (r.status == 202) {
        acknowledged.insert(r.json()["id"].get<std::string>());
        ++accepted;
      } else {
        refused = r;
      }
    }
    ASSERT_TRUE(is_problem(refused, 503, "unavailable")) << refused.status << " " << refused.body;
    EXPECT_GT(accepted, 0u) << "the freed space took no write";
    EXPECT_EQ(refused.body.find("space"), std::string::npos) << "internal text: " << refused.body;

    // Fail: writes are refused with 503, reads are served, /readyz says why.
    EXPECT_TRUE(is_problem(c.post_json("/v1/jobs", {{"type", "fill"}, {"params", {{"pad", pad}}}}),
                           503, "unavailable"));
    EXPECT_TRUE(is_problem(c.post(running_path + "/heartbeat"), 503, "unavailable"));
    EXPECT_EQ(c.get("/v1/jobs/" + *acknowledged.rbegin()).status, 200);
    EXPECT_EQ(c.get(running_path).json()["state"], "running");
    EXPECT_EQ(c.get("/v1/jobs?type=fill&limit=1").status, 200);
    EXPECT_EQ(c.get("/healthz").status, 200);
    auto ready = c.get("/readyz");
    ASSERT_EQ(ready.status, 503) << ready.body;
    json why = ready.json();
    EXPECT_EQ(why["status"], "not-ready");
    EXPECT_EQ(why["store"], "disk-full") << ready.body;
    EXPECT_EQ(why["accepting_writes"], false);
    ASSERT_TRUE(why.contains("reason") && why["reason"].is_string()) << ready.body;
    EXPECT_NE(why["reason"].get<std::string>().find("disk"), std::string::npos) << ready.body;

    // Free: the server is not touched; it sees the space by itself.
    scenario.free_space(mnt, round);
    auto again = wait_for_readyz(c, 200, seconds(30));
    ASSERT_EQ(again.status, 200) << "not ready again after space was freed: " << again.body
                                 << "\n" << server.output();
    EXPECT_EQ(again.json()["store"], "open");
    // Resume: writes are taken again, workers' reports too.
    auto resumed = c.post_json("/v1/jobs", {{"type", "fill"}, {"params", {{"pad", "x"}}}});
    ASSERT_EQ(resumed.status, 202) << resumed.body;
    acknowledged.insert(resumed.json()["id"].get<std::string>());
    EXPECT_EQ(c.post(running_path + "/heartbeat").status, 200);
  }

  // Nothing acknowledged is lost: every 2xx job is there, on this server...
  for (const auto& id : acknowledged) {
    auto r = c.get("/v1/jobs/" + id);
    ASSERT_EQ(r.status, 200) << id;
    EXPECT_EQ(r.json()["type"], "fill");
  }
  EXPECT_EQ(server.output().find("Assertion"), std::string::npos) << server.output();
  server.stop();
  // ...the log verifies offline (hash chain, projections)...
  auto verified = run_jobstate({"verify", "--data-dir", data}, 120);
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  // ...and a server restarted on the still nearly full disk comes up and
  // has them all (opening writes no flush: there is no room for one).
  ServeProcess restarted({.data_dir = data,
                          .output_path = dir.sub("serve2.log"),
                          .flags = flags,
                          .teardown = Teardown::kTerminate});
  ASSERT_FALSE(restarted.url().empty()) << restarted.output();
  HttpClient c2(restarted.url());
  size_t found = 0;
  for (const auto& id : acknowledged) found += c2.get("/v1/jobs/" + id).status == 200;
  EXPECT_EQ(found, acknowledged.size());
}

// The free-space guard: 3 rounds, each freeing one filler file.
TEST(DiskFull, BelowTheReserveWritesGet503AndResumeWhenSpaceIsFreed) {
  fill_fail_free_resume({.reserve_mb = "2",
                         .rounds = 3,
                         .fillers = 3,
                         .free_space = [](const std::string& mnt, int round) {
                           std::filesystem::remove(mnt + "/filler-" + std::to_string(round));
                         }});
}

// No reserve: RocksDB meets ENOSPC itself (once, in Debian's 7.8, an abort),
// stops writing, and recovers once the filesystem has room for its flush
// (its SstFileManager waits for a write buffer's worth, 64 MiB, free): here
// the tmpfs grows by 96 MiB.
TEST(DiskFull, WithoutAReserveRocksDbsOwnFailureGets503AndRecovers) {
  fill_fail_free_resume(
      {.reserve_mb = "0", .rounds = 1, .fillers = 0, .free_space = [](const std::string& mnt, int) {
         const std::string opts = "size=" + std::to_string(kTmpfsBytes + 96 * kMiB);
         ASSERT_EQ(::mount("tmpfs", mnt.c_str(), "tmpfs", MS_REMOUNT, opts.c_str()), 0)
             << std::strerror(errno);
       }});
}

}  // namespace
}  // namespace jobstate::testing
