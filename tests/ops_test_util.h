// Helpers for the offline-operations tests (replay, verify, rebuild, backup):
// running the real `jobstate` binary, filling a store with every kind of job
// history, a second process that keeps a store open and appends (a live
// store), and raw RocksDB access to tamper with a copy of a store.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "child_process.h"
#include "store/byte_order.h"
#include "projections/job_store.h"
#include "store_fixture.h"
#include "test_util.h"

namespace jobstate::testing {

constexpr TimeMs kOpsT0 = 1'795'802'400'000;  // 2026-11-27T...

// What a run of the `jobstate` binary left behind.
struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal or timed out
  std::string out;
  std::string err;
  // stderr lines, without the empty one after the final newline.
  std::vector<std::string> err_lines() const { return lines_of(err); }
};

// Runs JOBSTATE_BIN with `args`, collecting stdout and stderr; killed after
// timeout_s.
inline CommandResult run_jobstate(const std::vector<std::string>& args, int timeout_s = 300) {
  std::vector<std::string> argv{JOBSTATE_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  CompletedRun run = run_to_completion(argv, std::chrono::seconds(timeout_s));
  CommandResult r;
  if (run.raw_status && WIFEXITED(*run.raw_status)) r.exit_code = WEXITSTATUS(*run.raw_status);
  r.out = std::move(run.out);
  r.err = std::move(run.err);
  return r;
}

// Submits all requests in order without waiting for each fsync (they share
// them), then waits for every outcome; fails the test on a refusal.
inline void execute_all(JobStore& store, std::vector<CommandRequest> requests) {
  std::mutex mu;
  std::vector<std::string> refusals;
  std::vector<std::future<void>> done;
  for (auto& req : requests) {
    auto promise = std::make_shared<std::promise<void>>();
    done.push_back(promise->get_future());
    const std::string what = command_name(req.command);
    store.writer().submit(std::move(req), [&, promise, what](Result<CommandOutcome> r) {
      if (!r.ok()) {
        std::lock_guard lock(mu);
        refusals.push_back(what + ": " + r.error().message);
      }
      promise->set_value();
    });
  }
  for (auto& f : done) f.wait();
  for (auto& r : refusals) ADD_FAILURE() << "refused: " << r;
}

inline CommandRequest request(const JobId& id, Command c) {
  CommandRequest r;
  r.job_id = id;
  r.command = std::move(c);
  return r;
}

struct FilledStore {
  std::vector<JobId> jobs;  // in creation order
  JobId succeeded_job;      // one that succeeded
  JobId running_job;        // one still running with a deadline
  LogHead head;
};

// `jobs` jobs with every kind of history and awkward content (unicode,
// escapes, control characters, numbers that canonical JSON treats specially),
// written through the Writer of a real JobStore; the store is closed again.
inline FilledStore fill_varied_store(const std::string& dir, int jobs = 48) {
  using nlohmann::json;
  ManualClock clock(kOpsT0);
  auto store = open_test_store(dir, clock);
  EXPECT_OK(store);
  FilledStore filled;
  if (!store.ok()) return filled;
  const std::vector<std::string> types = {"report.generate", "a:b-c_d.e", "x"};
  const std::vector<json> params = {
      json::object(),
      {{"n", 1e15},
       {"m", -2.5e-7},
       {"big", 18446744073709551615ull},
       {"neg", -42},
       {"shortest", 0.2485859740334425}},  // nlohmann alone printed 0.24858597403344251
      {{"s", "tab\there \"quoted\" back\\slash"}, {"u", "résumé ✓ 日本 \u0001"}},
      {{"arr", json::array({1, 2.5, "x", nullptr, true, json::object()})},
       {"nested", {{"a", {{"b", {}}}}}}}};
  const std::vector<json> labels = {
      json::object(), {{"team", "data"}, {"ünï", "cødé"}}, {{"env", "prod"}}};
  // Creates first, so list order and created_seq interleave with other jobs.
  std::vector<CommandRequest> batch;
  for (int i = 0; i < jobs; ++i) {
    JobId id = JobId::generate();
    filled.jobs.push_back(id);
    batch.push_back(request(id, CreateJob{types[i % types.size()], params[i % params.size()],
                                          10 + i % 7, labels[i % labels.size()]}));
  }
  execute_all(**store, std::move(batch));
  clock.advance_ms(1500);
  for (int i = 0; i < jobs; ++i) {
    const JobId& id = filled.jobs[i];
    switch (i % 9) {
      case 0:  // stays queued
        break;
      case 4:  // cancelled while queued
        batch.push_back(request(id, RequestCancel{"not needed"}));
        break;
      default:
        batch.push_back(request(
            id, StartJob{i % 2 ? "worker-" + std::to_string(i) : "w \"quoted\" \\ new\nline ✓"}));
    }
  }
  execute_all(**store, std::move(batch));
  for (int round = 0; round < 3; ++round) {
    clock.advance_ms(700);
    for (int i = 0; i < jobs; ++i) {
      if (i % 9 == 0 || i % 9 == 4) continue;
      json progress = nullptr;
      if (round != 2 || i % 3 == 0)
        progress = {
            {"fraction", (round + 1) / 4.0},
            {"message", i % 4
                            ? "step " + std::to_string(round)
                            : "brace } bracket ] \"quote\" back\\slash {" + std::to_string(round)},
            {"details", i % 2 ? json(nullptr) : json({{"rows", round * 1000}, {"eta_s", 12.75}})}};
      batch.push_back(request(filled.jobs[i], Heartbeat{progress}));
    }
    execute_all(**store, std::move(batch));
  }
  clock.advance_ms(900);
  for (int i = 0; i < jobs; ++i) {
    const JobId& id = filled.jobs[i];
    switch (i % 9) {
      case 1:
        batch.push_back(
            request(id, SucceedJob{{{"rows", i * 1000}, {"out", "s3://b/ü {x}"}, {"f", 1e16}}}));
        filled.succeeded_job = id;
        break;
      case 2:
        batch.push_back(request(id, SucceedJob{nullptr}));
        break;
      case 3:
        batch.push_back(request(
            id, FailJob{{{"code", "upstream"}, {"message", "bad\ninput"}, {"details", {1, 2}}}}));
        break;
      case 5:
        batch.push_back(request(id, RequestCancel{"user asked"}));
        batch.push_back(request(id, ConfirmCancelled{"stopped"}));
        break;
      case 6:
        batch.push_back(request(id, RequestCancel{"please stop"}));  // still running
        break;
      case 7:
        filled.running_job = id;  // still running, with a deadline
        break;
      default:
        break;  // 8: expires below
    }
  }
  execute_all(**store, std::move(batch));
  // The watchdog's failure for the 8s: past every deadline of those jobs.
  clock.advance_ms(120'000);
  for (int i = 0; i < jobs; ++i)
    if (i % 9 == 8) batch.push_back(request(filled.jobs[i], ExpireDeadlines{}));
  execute_all(**store, std::move(batch));
  filled.head = (*store)->writer().committed_head();
  return filled;
}

// Another process holding a store open read-write and appending to it, like
// a running server: the test binary itself, re-executed with
// JOBSTATE_OPS_LIVE_WRITER=<dir> (see run_live_writer_if_asked below).
class LiveWriter {
 public:
  explicit LiveWriter(const std::string& dir) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    // Everything the child needs is built before fork(): after it, only
    // async-signal-safe calls until exec.
    std::vector<std::string> env_store{"JOBSTATE_OPS_LIVE_WRITER=" + dir};
    for (char** e = environ; *e; ++e)
      if (std::string_view(*e).rfind("JOBSTATE_OPS_LIVE_WRITER=", 0) != 0)
        env_store.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& e : env_store) envp.push_back(e.data());
    envp.push_back(nullptr);
    char self[] = "/proc/self/exe";
    char* argv[] = {self, nullptr};
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      execve(self, argv, envp.data());
      _exit(127);
    }
    close(fds[1]);
    read_fd_ = fds[0];
    reader_ = std::thread([this] {
      std::string pending;
      char buf[4096];
      for (ssize_t n; (n = read(read_fd_, buf, sizeof buf)) > 0;) {
        pending.append(buf, static_cast<size_t>(n));
        for (size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1))
          seq_.store(std::strtoull(pending.substr(0, nl).c_str(), nullptr, 10));
      }
    });
  }
  ~LiveWriter() { stop(); }

  // The newest seq the writer has reported as committed.
  uint64_t seq() const { return seq_.load(); }
  // Waits (at most 60 s) until the writer has committed `seq`; false on timeout.
  bool wait_for_seq(uint64_t seq) const {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (seq_.load() < seq && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return seq_.load() >= seq;
  }
  // Kills the writer (as a crash would) and waits for it; the store stays
  // consistent (every batch is atomic).
  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (reader_.joinable()) reader_.join();
    if (read_fd_ >= 0) close(read_fd_);
    read_fd_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int read_fd_ = -1;
  std::atomic<uint64_t> seq_{0};
  std::thread reader_;
};

// The child side of LiveWriter, run by a gtest environment (so after every
// static initialiser, before any test) when the variable is set. Appends job
// histories one command at a time (each fsync'd) and prints the committed seq
// after each, until killed, its parent dies, 300 s pass or 200k commands are
// done; never returns.
class LiveWriterChild : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* dir = std::getenv("JOBSTATE_OPS_LIVE_WRITER");
    if (!dir || !*dir) return;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    SystemClock clock;
    auto store = open_test_store(dir, clock);
    if (!store.ok()) {
      std::fprintf(stderr, "live writer: %s\n", store.error().message.c_str());
      _exit(1);
    }
    auto report = [&] {
      std::printf("%llu\n",
                  static_cast<unsigned long long>((*store)->writer().committed_head().seq));
      std::fflush(stdout);
    };
    report();
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(300);
    for (int i = 0; i < 200'000 && std::chrono::steady_clock::now() < end; ++i) {
      JobId id = JobId::generate();
      std::vector<Command> steps = {CreateJob{"live.job", {{"i", i}}, 60, nlohmann::json::object()},
                                    StartJob{"live"}, Heartbeat{{{"fraction", 0.5}}},
                                    SucceedJob{{{"i", i}}}};
      for (auto& c : steps) {
        auto r = (*store)->writer().execute(request(id, std::move(c)));
        if (!r.ok()) _exit(2);
        report();
      }
    }
    store->reset();
    _exit(0);
  }
};
// Internal linkage, so that every test binary including this registers it.
[[maybe_unused]] static ::testing::Environment* const kLiveWriterChild =
    ::testing::AddGlobalTestEnvironment(new LiveWriterChild);

// Copies a closed store's directory (to tamper with the copy).
inline void copy_store(const std::string& from, const std::string& to) {
  std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
}

// Opens `dir` with the plain RocksDB API (every column family) and runs fn.
inline void with_raw_db(
    const std::string& dir,
    const std::function<void(rocksdb::DB*, std::map<std::string, rocksdb::ColumnFamilyHandle*>&)>&
        fn) {
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (auto& n : names) descs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(rocksdb::DBOptions(), dir, descs, &handles, &raw);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::map<std::string, rocksdb::ColumnFamilyHandle*> cfs;
  for (size_t i = 0; i < names.size(); ++i) cfs[names[i]] = handles[i];
  fn(raw, cfs);
  for (auto* h : handles) raw->DestroyColumnFamilyHandle(h);
  EXPECT_TRUE(raw->Close().ok());
  delete raw;
}

// The files of a directory, name → size (to show a command left it alone).
inline std::map<std::string, uintmax_t> directory_listing(const std::string& dir) {
  std::map<std::string, uintmax_t> out;
  std::error_code ec;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir, ec))
    out[e.path().string()] = e.is_regular_file() ? e.file_size() : 0;
  return out;
}

// A one-line error: exactly one line on stderr, mentioning `needle`, nothing
// that looks like a crash, nothing on stdout.
inline ::testing::AssertionResult is_one_line_error(const CommandResult& r,
                                                    const std::string& needle) {
  auto lines = r.err_lines();
  if (r.exit_code <= 0)
    return ::testing::AssertionFailure() << "exit code " << r.exit_code << ", stderr: " << r.err;
  if (lines.size() != 1)
    return ::testing::AssertionFailure() << lines.size() << " stderr lines: " << r.err;
  if (lines[0].find(needle) == std::string::npos)
    return ::testing::AssertionFailure() << "no '" << needle << "' in: " << lines[0];
  for (const char* crash : {"terminate", "Aborted", "Segmentation", "AddressSanitizer", "what():"})
    if (r.err.find(crash) != std::string::npos)
      return ::testing::AssertionFailure() << "looks like a crash: " << r.err;
  if (!r.out.empty()) return ::testing::AssertionFailure() << "stdout not empty: " << r.out;
  return ::testing::AssertionSuccess();
}

}  // namespace jobstate::testing
