#include "metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace jobstate::metrics {

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) {
  if (std::isnan(v)) return;
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  // The count is the +Inf bucket, so the two always agree within a scrape.
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

const std::vector<double>& request_seconds_buckets() {
  static const std::vector<double> b{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,   0.5,   1,      2.5,   5,    10,    30,    60};
  return b;
}
const std::vector<double>& disk_seconds_buckets() {
  static const std::vector<double> b{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5, 10};
  return b;
}
const std::vector<double>& job_seconds_buckets() {
  static const std::vector<double> b{0.1,  0.5,  1,    2.5,   5,     10,    30,   60,
                                     120,  300,  600,  1800,  3600,  7200,  14400, 28800,
                                     43200, 86400};
  return b;
}
const std::vector<double>& batch_size_buckets() {
  static const std::vector<double> b{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
  return b;
}

std::string escape_label_value(std::string_view v) {
  if (v.size() > 128) v = v.substr(0, 128);
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

namespace {
void append_number(std::string& out, double v) {
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  char buf[32];
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.9g", v);
  out += buf;
}

template <typename Pairs>
void append_labels(std::string& out, const Pairs& labels) {
  bool first = true;
  for (const auto& [k, v] : labels) {
    out += first ? '{' : ',';
    first = false;
    out += k;
    out += "=\"";
    out += escape_label_value(v);
    out += '"';
  }
  if (!first) out += '}';
}

std::vector<std::pair<std::string, std::string>> zip(const std::vector<std::string>& names,
                                                     const std::vector<std::string>& values) {
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) out.emplace_back(names[i], values[i]);
  return out;
}
}  // namespace

void SampleWriter::declare(std::string_view name, std::string_view type, std::string_view help) {
  if (std::find(declared_.begin(), declared_.end(), name) != declared_.end()) return;
  declared_.emplace_back(name);
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += help;
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void SampleWriter::sample(std::string_view name,
                          std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
                          double value) {
  out_ += name;
  append_labels(out_, labels);
  out_ += ' ';
  append_number(out_, value);
  out_ += '\n';
}

void SampleWriter::sample(std::string_view name,
                          const std::vector<std::pair<std::string, std::string>>& labels, double value) {
  out_ += name;
  append_labels(out_, labels);
  out_ += ' ';
  append_number(out_, value);
  out_ += '\n';
}

template <typename T>
T& Family<T>::with(std::initializer_list<std::string_view> values) {
  std::vector<std::string> key;
  key.reserve(values.size());
  for (auto v : values) key.emplace_back(v.substr(0, 128));
  return find(std::move(key));
}

template <typename T>
T& Family<T>::find(std::vector<std::string> key) {
  key.resize(label_names_.size());
  std::lock_guard lock(mu_);
  auto& slot = children_[std::move(key)];
  if (!slot) slot = make_();
  return *slot;
}

template <typename T>
void Family<T>::for_each(
    const std::function<void(const std::vector<std::string>&, const T&)>& fn) const {
  std::lock_guard lock(mu_);
  for (const auto& [k, v] : children_) fn(k, *v);
}

template class Family<Counter>;
template class Family<Histogram>;

CounterFamily& Registry::counter(std::string name, std::string help,
                                 std::vector<std::string> label_names) {
  std::lock_guard lock(mu_);
  counters_.push_back(std::make_unique<CounterFamily>(std::move(name), std::move(help),
                                                      std::move(label_names),
                                                      [] { return std::make_unique<Counter>(); }));
  return *counters_.back();
}

HistogramFamily& Registry::histogram(std::string name, std::string help,
                                     const std::vector<double>& bounds,
                                     std::vector<std::string> label_names) {
  std::lock_guard lock(mu_);
  histograms_.push_back(std::make_unique<HistogramFamily>(
      std::move(name), std::move(help), std::move(label_names),
      [bounds] { return std::make_unique<Histogram>(bounds); }));
  return *histograms_.back();
}

uint64_t Registry::add_collector(Collector c) {
  std::lock_guard lock(mu_);
  const uint64_t id = next_collector_++;
  collectors_.emplace(id, std::move(c));
  return id;
}

void Registry::remove_collector(uint64_t id) {
  std::lock_guard lock(mu_);
  collectors_.erase(id);
}

std::string Registry::render() const {
  std::string out;
  out.reserve(16 * 1024);
  SampleWriter w(out);
  std::lock_guard lock(mu_);
  for (const auto& f : counters_) {
    w.declare(f->name(), "counter", f->help());
    const std::string& base = f->name();
    f->for_each([&](const std::vector<std::string>& values, const Counter& c) {
      w.sample(base, zip(f->label_names(), values), static_cast<double>(c.value()));
    });
  }
  for (const auto& f : histograms_) {
    w.declare(f->name(), "histogram", f->help());
    const std::string bucket = f->name() + "_bucket", sum = f->name() + "_sum",
                      count = f->name() + "_count";
    f->for_each([&](const std::vector<std::string>& values, const Histogram& h) {
      auto labels = zip(f->label_names(), values);
      const auto snap = h.snapshot();
      const auto& bounds = h.bounds();
      labels.emplace_back("le", "");
      for (size_t i = 0; i <= bounds.size(); ++i) {
        std::string le;
        if (i == bounds.size()) {
          le = "+Inf";
        } else {
          append_number(le, bounds[i]);
        }
        labels.back().second = le;
        w.sample(bucket, labels, static_cast<double>(snap.cumulative[i]));
      }
      labels.pop_back();
      w.sample(sum, labels, snap.sum);
      w.sample(count, labels, static_cast<double>(snap.count));
    });
  }
  for (const auto& [id, c] : collectors_) c(w);
  return out;
}

Registry& process() {
  static Registry* r = new Registry();  // never destroyed: threads may update it at exit
  return *r;
}

}  // namespace jobstate::metrics
