// Metrics in Prometheus' text format (GET /metrics; docs/operations.md,
// "Metrics"). Pure: no I/O, no other jobstate library.
//
// A Registry holds families, each one metric name with fixed label names:
// counters and histograms that the code updates as things happen, and
// collectors that produce gauges when a scrape renders the registry (jobs by
// state, parked long-polls, the store's own figures). Updates are lock-free
// once a child (one set of label values) exists; finding a child takes a
// mutex, so hot paths keep the child they use.
//
// Names follow Prometheus' conventions (promtool check metrics): prefix
// jobstate_, base units (seconds, bytes), counters end in _total.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace jobstate::metrics {

class Counter {
 public:
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds);
  void observe(double v);
  // Cumulative counts per bound (then +Inf), the sum and the count, as a
  // scrape sees them.
  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

// Bucket bounds in seconds.
// HTTP requests: 0.5 ms to a minute (a long-poll waits up to 60 s).
const std::vector<double>& request_seconds_buckets();
// fsync and other disk waits: 0.1 ms to 10 s.
const std::vector<double>& disk_seconds_buckets();
// Jobs and the watchdog: 0.1 s to a day (jobs run for hours).
const std::vector<double>& job_seconds_buckets();
// Counts (commands per batch): 1 to 4096, powers of two.
const std::vector<double>& batch_size_buckets();

// Writes gauges (and any other sample) during a scrape.
class SampleWriter {
 public:
  explicit SampleWriter(std::string& out) : out_(out) {}
  // HELP and TYPE, once per name per scrape (later calls for a name that was
  // already declared write nothing).
  void declare(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name,
              std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
              double value);
  void sample(std::string_view name, const std::vector<std::pair<std::string, std::string>>& labels,
              double value);

 private:
  std::string& out_;
  std::vector<std::string> declared_;
};

template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::function<std::unique_ptr<T>()> make)
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)),
        make_(std::move(make)) {}
  // The child for these label values (one per label name, in order),
  // created on first use. The reference stays valid as long as the family.
  T& with(std::initializer_list<std::string_view> values);

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Every child, sorted by label values.
  void for_each(const std::function<void(const std::vector<std::string>&, const T&)>& fn) const;

 private:
  T& find(std::vector<std::string> key);
  const std::string name_, help_;
  const std::vector<std::string> label_names_;
  const std::function<std::unique_ptr<T>()> make_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;
};

using CounterFamily = Family<Counter>;
using HistogramFamily = Family<Histogram>;

class Registry {
 public:
  // Names must be new. A family lives as long as the registry.
  CounterFamily& counter(std::string name, std::string help, std::vector<std::string> label_names = {});
  HistogramFamily& histogram(std::string name, std::string help, const std::vector<double>& bounds,
                             std::vector<std::string> label_names = {});
  // A function that writes samples at each scrape. The returned id removes
  // it (a server that stops removes its own before the objects it reads go).
  using Collector = std::function<void(SampleWriter&)>;
  uint64_t add_collector(Collector c);
  void remove_collector(uint64_t id);

  // The whole registry in the text exposition format 0.0.4.
  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<CounterFamily>> counters_;
  std::vector<std::unique_ptr<HistogramFamily>> histograms_;
  std::map<uint64_t, Collector> collectors_;
  uint64_t next_collector_ = 1;
};

// The process' registry: what GET /metrics renders. Families are created
// once and live for the process (tests that start several servers in one
// process see the sum of their counters, as Prometheus would).
Registry& process();

// Label values are escaped (\\, \", \n) when rendered; a value is at most
// 128 bytes (longer ones are cut), so no request can blow up a scrape.
std::string escape_label_value(std::string_view v);

}  // namespace jobstate::metrics
