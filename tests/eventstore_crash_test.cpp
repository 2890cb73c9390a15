// The crash test: a child process appends from several threads and reports
// every acknowledged seq through a pipe; the parent SIGKILLs it at a random
// moment, reopens the store and checks that every acknowledged event is there,
// that seq is gapless from 1 to the head, that the hash chain verifies from
// the genesis hash, and that the projection equals a replay of the log. Then
// the next round's child appends to the same store.
//
// The child is this binary re-executed with --crash-child (not a bare fork):
// the parent has RocksDB's background threads running by then, and a forked
// copy of a multi-threaded process may not use them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "projections/job_store.h"
#include "projections/rebuild.h"
#include "store_fixture.h"
#include "test_util.h"

namespace jobstate {
namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr int kRounds = 24;
constexpr int kChildThreads = 6;
// The child gives up on its own after this long (the parent kills it long before).
constexpr auto kChildLifetime = std::chrono::seconds(60);
// How long the parent waits for a child to open the store.
constexpr auto kReadyTimeout = std::chrono::seconds(30);
constexpr uint64_t kReadyMarker = 0;  // seqs start at 1

bool write_u64(int fd, uint64_t v) {
  return ::write(fd, &v, sizeof v) == static_cast<ssize_t>(sizeof v);
}

// One appending thread of the child: whole job lives, each command through
// submit(); the seqs of a command are reported from its callback, once the
// writer says they are durable.
void child_appender(JobStore& store, int fd, int thread_index, SteadyClock::time_point stop_at) {
  std::mt19937 rng(static_cast<unsigned>(thread_index * 7919 + ::getpid()));
  auto send = [&](const JobId& id, Command c, std::optional<std::string> key = {}) -> bool {
    CommandRequest r;
    r.job_id = id;
    r.command = std::move(c);
    if (key) {
      r.idempotency_key = key;
      r.request_fingerprint = *key;
    }
    std::promise<bool> done;
    auto answered = done.get_future();
    store.writer().submit(std::move(r), [&done, fd](Result<CommandOutcome> out) {
      if (out.ok())
        for (const auto& e : out->events)
          if (!write_u64(fd, e.seq)) _exit(5);
      done.set_value(out.ok());
    });
    return answered.get();
  };
  for (uint64_t n = 0; n < 1'000'000 && SteadyClock::now() < stop_at; ++n) {
    const JobId id = JobId::generate();
    std::optional<std::string> key;
    if (n % 4 == 0) key = "k-" + id.to_string();
    if (!send(id,
              CreateJob{"crash." + std::to_string(thread_index),
                        {{"n", n}, {"s", "ü"}},
                        30,
                        {{"thread", std::to_string(thread_index)}}},
              key))
      _exit(6);
    if (key && !send(JobId::generate(),
                     CreateJob{"crash." + std::to_string(thread_index),
                               {{"n", n}, {"s", "ü"}},
                               30,
                               {{"thread", std::to_string(thread_index)}}},
                     key))
      _exit(7);  // an idempotent replay: appends nothing, reports nothing
    if (rng() % 5 == 0) {
      if (!send(id, RequestCancel{"not needed"})) _exit(8);
      continue;
    }
    if (!send(id, StartJob{"child/" + std::to_string(thread_index)})) _exit(9);
    const int beats = static_cast<int>(rng() % 4);
    for (int b = 0; b < beats; ++b)
      if (!send(id, Heartbeat{{{"fraction", b / 4.0}, {"message", "beat"}}})) _exit(10);
    bool ok = true;
    switch (rng() % 4) {
      case 0:
        ok = send(id, SucceedJob{{{"n", n}}});
        break;
      case 1:
        ok = send(id, FailJob{{{"code", "child_error"}}});
        break;
      case 2:
        ok = send(id, RequestCancel{"stop"}) && send(id, ConfirmCancelled{"stopped"});
        break;
      default:
        break;  // left running
    }
    if (!ok) _exit(11);
  }
}

// Runs in the re-executed child. Never returns: it is killed, or _exit()s
// (no atexit handlers, no leak check: the parent judges only the store).
[[noreturn]] void child_main(const char* data_dir, int fd) {
  ::signal(SIGPIPE, SIG_DFL);
  SystemClock clock;
  auto store = testing::open_test_store(data_dir, clock);
  if (!store.ok()) {
    std::fprintf(stderr, "crash child: %s\n", store.error().message.c_str());
    _exit(3);
  }
  if (!write_u64(fd, kReadyMarker)) _exit(4);
  const auto stop_at = SteadyClock::now() + kChildLifetime;
  std::vector<std::thread> threads;
  for (int t = 0; t < kChildThreads; ++t)
    threads.emplace_back([&, t] { child_appender(**store, fd, t, stop_at); });
  for (auto& th : threads) th.join();
  _exit(0);
}

// Kills and reaps the child on every way out of a round.
class ChildProcess {
 public:
  ChildProcess(const std::string& data_dir) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    const std::string fd_arg = std::to_string(fds[1]);
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls until exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::fcntl(fds[1], F_SETFD, 0);  // keep the write end across exec
      ::execl("/proc/self/exe", "/proc/self/exe", "--crash-child", data_dir.c_str(), fd_arg.c_str(),
              static_cast<char*>(nullptr));
      _exit(127);
    }
    ::close(fds[1]);
    read_fd_ = fds[0];
  }
  ~ChildProcess() {
    kill_and_reap();
    if (read_fd_ >= 0) ::close(read_fd_);
  }
  bool started() const { return pid_ > 0 && read_fd_ >= 0; }

  // Reads what arrived until `until`; false on EOF (the child is gone).
  bool read_until(SteadyClock::time_point until, std::vector<uint64_t>& out) {
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
      if (left.count() <= 0) return true;
      pollfd p{read_fd_, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return true;
      if (!drain_once(out)) return false;
    }
  }
  // After the child is dead: everything still in the pipe.
  void read_rest(std::vector<uint64_t>& out) {
    for (int i = 0; i < 1'000'000 && drain_once(out); ++i) {
    }
  }
  // Status from waitpid.
  int kill_and_reap() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
    return status_;
  }

 private:
  // One read(); appends whole u64s. False on EOF or error.
  bool drain_once(std::vector<uint64_t>& out) {
    char buf[4096];
    ssize_t n = ::read(read_fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) return false;
    pending_.append(buf, static_cast<size_t>(n));
    size_t whole = pending_.size() / 8 * 8;
    for (size_t i = 0; i < whole; i += 8) {
      uint64_t v;
      std::memcpy(&v, pending_.data() + i, 8);
      out.push_back(v);
    }
    pending_.erase(0, whole);
    return true;
  }

  pid_t pid_ = -1;
  int read_fd_ = -1;
  int status_ = 0;
  std::string pending_;
};

TEST(EventstoreCrash, AcknowledgedEventsSurviveSigkill) {
  testing::TempDir dir;
  const std::string data_dir = dir.sub("store");
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> delay_ms(20, 300);
  ManualClock clock(1'795'802'400'000);

  std::unordered_set<uint64_t> acknowledged;
  uint64_t head = 0;
  int rounds_with_appends = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::vector<uint64_t> acks;
    {
      ChildProcess child(data_dir);
      ASSERT_TRUE(child.started()) << std::strerror(errno);
      // Every fourth round the kill may land while the child is still
      // opening (recovering) the store; the others kill it mid-append.
      const bool early = round % 4 == 3;
      if (!early) {
        const auto ready_by = SteadyClock::now() + kReadyTimeout;
        while (SteadyClock::now() < ready_by && (acks.empty() || acks.front() != kReadyMarker)) {
          if (!child.read_until(
                  std::min(ready_by, SteadyClock::now() + std::chrono::milliseconds(50)), acks))
            break;
        }
        ASSERT_FALSE(acks.empty()) << "the child never opened the store";
        ASSERT_EQ(acks.front(), kReadyMarker);
      }
      const auto kill_at =
          SteadyClock::now() + std::chrono::milliseconds(delay_ms(rng) / (early ? 4 : 1));
      const bool alive = child.read_until(kill_at, acks);
      const int status = child.kill_and_reap();
      child.read_rest(acks);
      ASSERT_TRUE(alive) << "the child ended before it was killed";
      ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
          << "child status " << status << " (exited: " << WIFEXITED(status)
          << ", code: " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << ")";
    }

    // Reopen as the server would after the crash.
    auto store = testing::open_test_store(data_dir, clock);
    ASSERT_TRUE(store.ok()) << testing::describe_error(store);
    uint64_t new_head = 0;
    ASSERT_TRUE(testing::log_is_intact((*store)->db(), &new_head));
    ASSERT_GE(new_head, head) << "the log lost events that were there before this round";
    uint64_t newest_ack = 0;
    for (uint64_t seq : acks) {
      if (seq == kReadyMarker) continue;
      ASSERT_GT(seq, head) << "acknowledged twice across rounds, or reported a stale seq";
      ASSERT_LE(seq, new_head) << "acknowledged seq " << seq << " is not in the log";
      ASSERT_TRUE(acknowledged.insert(seq).second) << "seq " << seq << " acknowledged twice";
      newest_ack = std::max(newest_ack, seq);
    }
    if (newest_ack) {
      ++rounds_with_appends;
      auto e = (*store)->log().event(newest_ack);
      ASSERT_OK(e);
      ASSERT_TRUE(e->has_value());
    }
    RebuildOptions check;
    check.check_only = true;
    auto checked = rebuild_projections((*store)->db(), check);
    ASSERT_TRUE(checked.ok()) << testing::describe_error(checked);
    ASSERT_EQ(checked->events, new_head);
    EXPECT_EQ((*store)->writer().committed_head().seq, new_head);
    head = new_head;
  }
  RecordProperty("events", std::to_string(head));
  RecordProperty("acknowledged", std::to_string(acknowledged.size()));
  std::printf("crash test: %d rounds, %d with appends, %zu acknowledged, %llu events in the log\n",
              kRounds, rounds_with_appends, acknowledged.size(),
              static_cast<unsigned long long>(head));
  EXPECT_GT(rounds_with_appends, 0) << "no round appended anything: the test proved nothing";
}

}  // namespace
}  // namespace jobstate

int main(int argc, char** argv) {
  if (argc == 4 && std::string_view(argv[1]) == "--crash-child")
    jobstate::child_main(argv[2], std::atoi(argv[3]));
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
