// Durable append throughput: heartbeats on running jobs through the Writer of
// a real JobStore (every event fsync'd before it is acknowledged), next to a
// raw RocksDB baseline of synced WriteBatches measured in the same run.
//
// Benchmarks (items_per_second = durable events/s, or puts/s for RocksDB):
//   BM_Writer_OneEventPerFsync     one appender, execute() and wait: one fsync per event
//   BM_Writer_Threads/threads:N    N threads, each execute()-ing heartbeats on its own job
//   BM_Writer_InFlight/N           one thread keeping N async submit()s in flight (the
//                                  way the HTTP layer uses the writer), each slot its own job
//   BM_RocksDB_SyncBatch/N         raw DB::Write(sync=true) of a WriteBatch of N small puts
//   BM_Cpu_*                       CPU-only pieces of one heartbeat in the writer (no I/O),
//                                  to see where writer_cpu_us_per_event goes
// Writer benchmarks also report fsyncs_per_second (durable batches/s, counted
// through WriterOptions::on_commit), events_per_fsync, and
// writer_cpu_us_per_event: CPU time of the writer's two threads (sequencer
// and committer) per event, read in on_commit. Each thread can use at most
// one core: when writer_cpu_us_per_event times items_per_second approaches
// 2e6, the writer is CPU-bound (on a 2-core machine, so is everything else).
//
// The stores live in $JOBSTATE_BENCH_DIR (default: the system temp directory),
// which must be a real disk: on tmpfs an fsync costs nothing and the numbers
// mean nothing, so the benchmarks refuse to run there.
#include <benchmark/benchmark.h>
#include <linux/magic.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "eventstore/event_codec.h"
#include "store/hash_chain.h"
#include "store/byte_order.h"
#include "projections/job_store.h"

namespace jobstate {
namespace {

namespace fs = std::filesystem;

// A fresh, empty directory for one benchmark run; removed on destruction.
class ScratchDir {
 public:
  ScratchDir() {
    static std::atomic<int> counter{0};
    const char* env = std::getenv("JOBSTATE_BENCH_DIR");
    fs::path root = env && *env ? fs::path(env) : fs::temp_directory_path();
    fs::create_directories(root);
    struct statfs st{};
    if (statfs(root.c_str(), &st) == 0 && st.f_type == TMPFS_MAGIC)
      error_ = root.string() + " is tmpfs: set JOBSTATE_BENCH_DIR to a directory on a real disk";
    path_ = root / ("jobstate-bench-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  // Non-empty when the directory is unfit for a durability benchmark.
  const std::string& error() const { return error_; }

 private:
  fs::path path_;
  std::string error_;
};

CommandRequest heartbeat(const JobId& id) {
  CommandRequest r;
  r.job_id = id;
  r.command = Heartbeat{{{"fraction", 0.5}, {"message", "working"}}};
  return r;
}

// A JobStore with `jobs` running jobs, counting durable batches.
struct BenchStore {
  ScratchDir dir;
  SystemClock clock;
  std::atomic<uint64_t> batches{0};
  std::atomic<int64_t> writer_cpu_ns{0};  // the writer threads' CPU time at the last commit
  std::atomic<uint64_t> on_commit_seq{0};  // head seq of the last batch on_commit saw
  std::unique_ptr<JobStore> store;
  std::vector<JobId> jobs;
  uint64_t start_seq = 0;  // head seq once the jobs are running
  uint64_t start_batches = 0;
  int64_t start_writer_cpu_ns = 0;
  // Runs on the writer thread after each durable batch, when set before open().
  std::function<void()> after_commit;

  // Empty string on success, else why the store could not be set up.
  std::string open(size_t running_jobs) {
    if (!dir.error().empty()) return dir.error();
    JobStoreOptions o;
    o.data_dir = dir.path().string();
    o.clock = &clock;
    o.writer.on_commit = [this](const CommitInfo& info) {
      batches.fetch_add(1, std::memory_order_relaxed);
      writer_cpu_ns.store(store->writer().cpu_time_ns(), std::memory_order_relaxed);
      on_commit_seq.store(info.head.seq);
      if (after_commit) after_commit();
    };
    auto opened = JobStore::open(std::move(o));
    if (!opened) return opened.error().message;
    store = std::move(*opened);
    for (size_t i = 0; i < running_jobs; ++i) {
      CommandRequest create;
      create.job_id = JobId::generate();
      create.command = CreateJob{"bench", nlohmann::json::object(), kDefaultHeartbeatTimeoutS,
                                 nlohmann::json::object()};
      if (auto r = store->writer().execute(create); !r) return r.error().message;
      CommandRequest start;
      start.job_id = create.job_id;
      start.command = StartJob{"bench/" + std::to_string(i)};
      if (auto r = store->writer().execute(start); !r) return r.error().message;
      jobs.push_back(create.job_id);
    }
    start_seq = settle();
    start_batches = batches.load();
    start_writer_cpu_ns = writer_cpu_ns.load();
    return {};
  }

  // on_commit of a batch runs after the batch's callbacks: waits (at most
  // ~1 s) until it has run for the newest batch, so the counters agree with
  // the head. Returns the head seq.
  uint64_t settle() {
    const uint64_t head = store->writer().committed_head().seq;
    for (int i = 0; i < 10'000 && on_commit_seq.load() != head; ++i)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    return head;
  }

  // Sets fsyncs_per_second, events_per_fsync and writer_cpu_us_per_event from
  // what the writer committed since open(). Call once per run (on one thread only).
  void report(benchmark::State& state) {
    const double events = static_cast<double>(settle() - start_seq);
    const double fsyncs = static_cast<double>(batches.load() - start_batches);
    state.counters["fsyncs_per_second"] = benchmark::Counter(fsyncs, benchmark::Counter::kIsRate);
    state.counters["events_per_fsync"] = benchmark::Counter(fsyncs > 0 ? events / fsyncs : 0);
    const double cpu_us = static_cast<double>(writer_cpu_ns.load() - start_writer_cpu_ns) / 1e3;
    state.counters["writer_cpu_us_per_event"] = benchmark::Counter(events > 0 ? cpu_us / events : 0);
  }
};

// (a) One event per fsync: a single appender that waits for each result.
void BM_Writer_OneEventPerFsync(benchmark::State& state) {
  BenchStore s;
  if (auto err = s.open(1); !err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }
  for (auto _ : state) {
    auto r = s.store->writer().execute(heartbeat(s.jobs[0]));
    if (!r) {
      state.SkipWithError(r.error().message.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  s.report(state);
}
BENCHMARK(BM_Writer_OneEventPerFsync)->UseRealTime()->Unit(benchmark::kMicrosecond);

// (b1) N appender threads. Google Benchmark runs the loop on N threads; thread
// 0 sets the store up before the start barrier and tears it down after the
// stop barrier, so the others only touch it inside the loop.
std::unique_ptr<BenchStore> g_threads_store;

void BM_Writer_Threads(benchmark::State& state) {
  if (state.thread_index() == 0) {
    g_threads_store = std::make_unique<BenchStore>();
    if (auto err = g_threads_store->open(state.threads()); !err.empty()) {
      g_threads_store.reset();
      state.SkipWithError(err.c_str());
    }
  }
  for (auto _ : state) {
    if (!g_threads_store) {
      state.SkipWithError("store setup failed on thread 0");
      break;
    }
    auto r = g_threads_store->store->writer().execute(
        heartbeat(g_threads_store->jobs[state.thread_index()]));
    if (!r) {
      state.SkipWithError(r.error().message.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0 && g_threads_store) {
    g_threads_store->report(state);
    g_threads_store.reset();
  }
}
BENCHMARK(BM_Writer_Threads)
    ->Threads(1)
    ->Threads(16)
    ->Threads(64)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// (b2) N appenders as async submits from one thread: each iteration takes a
// free slot (one of N jobs with no request in flight) and submits a heartbeat
// for it; the callback frees the slot. This is how the HTTP layer drives the
// writer (submit + callback, no thread per request). Callbacks only push the
// slot; the submitter is woken once per durable batch (from on_commit), so
// the writer thread spends its time writing, not waking threads.
void BM_Writer_InFlight(benchmark::State& state) {
  const auto in_flight = static_cast<size_t>(state.range(0));
  BenchStore s;
  std::mutex mu;
  std::condition_variable freed;
  std::vector<size_t> free_slots;  // guarded by mu
  std::string failure;             // guarded by mu
  for (size_t i = 0; i < in_flight; ++i) free_slots.push_back(i);
  s.after_commit = [&] { freed.notify_one(); };
  if (auto err = s.open(in_flight); !err.empty()) {
    state.SkipWithError(err.c_str());
    return;
  }

  std::vector<size_t> ready;  // slots taken from free_slots, not yet submitted
  for (auto _ : state) {
    if (ready.empty()) {
      std::unique_lock lock(mu);
      freed.wait(lock, [&] { return !free_slots.empty() || !failure.empty(); });
      if (!failure.empty()) {
        state.SkipWithError(failure.c_str());
        break;
      }
      ready.swap(free_slots);
    }
    const size_t slot = ready.back();
    ready.pop_back();
    s.store->writer().submit(heartbeat(s.jobs[slot]), [&, slot](Result<CommandOutcome> r) {
      std::lock_guard lock(mu);
      free_slots.push_back(slot);
      if (!r && failure.empty()) {
        failure = r.error().message;
        freed.notify_one();  // no on_commit follows a failed batch
      }
    });
  }
  {  // Drain: every submitted event is durable before the timer stops.
    std::unique_lock lock(mu);
    freed.wait(lock, [&] { return free_slots.size() + ready.size() == in_flight; });
  }
  state.SetItemsProcessed(state.iterations());
  s.report(state);
}
BENCHMARK(BM_Writer_InFlight)
    ->Arg(1)
    ->Arg(16)
    ->Arg(64)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Baseline: raw RocksDB (default options, same disk), one WriteBatch of N
// small puts (8-byte big-endian key, 128-byte value) per synced write.
void BM_RocksDB_SyncBatch(benchmark::State& state) {
  const auto puts_per_batch = static_cast<uint64_t>(state.range(0));
  ScratchDir dir;
  if (!dir.error().empty()) {
    state.SkipWithError(dir.error().c_str());
    return;
  }
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(options, dir.path().string(), &raw);
  if (!s.ok()) {
    state.SkipWithError(s.ToString().c_str());
    return;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions synced;
  synced.sync = true;
  const std::string value(128, 'x');
  uint64_t key = 0;
  for (auto _ : state) {
    rocksdb::WriteBatch batch;
    for (uint64_t i = 0; i < puts_per_batch; ++i) batch.Put(u64_be(++key), value);
    if (auto ws = db->Write(synced, &batch); !ws.ok()) {
      state.SkipWithError(ws.ToString().c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * puts_per_batch));
  state.counters["fsyncs_per_second"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  db->Close();
}
BENCHMARK(BM_RocksDB_SyncBatch)->Arg(1)->Arg(64)->UseRealTime()->Unit(benchmark::kMicrosecond);

// A running job after a few heartbeats, as the writer's cache holds it.
JobState running_job() {
  const TimeMs t0 = 1'800'000'000'000;
  const JobId id = JobId::generate();
  JobState s;
  s.id = id;
  s.type = "bench";
  s.status = JobStatus::kRunning;
  s.version = 5;
  s.created_seq = 1;
  s.created_at_ms = t0;
  s.started_at_ms = t0 + 10;
  s.last_heartbeat_at_ms = t0 + 20;
  s.heartbeat_timeout_s = kDefaultHeartbeatTimeoutS;
  s.deadline_ms = t0 + 20 + kDefaultHeartbeatTimeoutS * 1000;
  s.progress = {{"fraction", 0.5}, {"message", "working"}};
  s.worker = "bench/0";
  return s;
}

// The status row value written for every event.
void BM_Cpu_EncodeStatusRow(benchmark::State& state) {
  const JobState s = running_job();
  for (auto _ : state) benchmark::DoNotOptimize(encode_status_row(s));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Cpu_EncodeStatusRow);

// decide() a heartbeat, then apply() its event.
void BM_Cpu_DecideApplyHeartbeat(benchmark::State& state) {
  const JobState s = running_job();
  const Command hb = heartbeat(s.id).command;
  DecideContext ctx;
  ctx.now_ms = *s.last_heartbeat_at_ms + 1000;
  ctx.server_start_ms = *s.started_at_ms;
  for (auto _ : state) {
    auto decided = decide(&s, hb, ctx);
    Event e;
    e.seq = 6;
    e.job_id = s.id;
    e.version = s.version + 1;
    e.type = (*decided)[0].type;
    e.at_ms = ctx.now_ms;
    e.data = std::move((*decided)[0].data);
    benchmark::DoNotOptimize(apply(&s, e));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Cpu_DecideApplyHeartbeat);

// Canonical data text, chain hash and stored encoding of one heartbeat event.
void BM_Cpu_HashAndEncodeEvent(benchmark::State& state) {
  const JobState s = running_job();
  Event e;
  e.seq = 6;
  e.job_id = s.id;
  e.version = 6;
  e.type = EventType::kHeartbeat;
  e.at_ms = *s.last_heartbeat_at_ms + 1000;
  e.data = {{"progress", s.progress}};
  const std::string previous(kGenesisHash);
  for (auto _ : state) {
    std::string data_text = canonical_dump(e.data);
    e.hash = chain_hash(previous, canonical_event_json(e.seq, e.job_id, e.version, e.type,
                                                       e.at_ms, data_text));
    benchmark::DoNotOptimize(encode_stored_event(e, data_text));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Cpu_HashAndEncodeEvent);

// One copy of a JobState (the writer copies states between its cache, the
// batch and the outcome).
void BM_Cpu_CopyJobState(benchmark::State& state) {
  const JobState s = running_job();
  for (auto _ : state) {
    JobState copy = s;
    benchmark::DoNotOptimize(copy);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Cpu_CopyJobState);

}  // namespace
}  // namespace jobstate

BENCHMARK_MAIN();
