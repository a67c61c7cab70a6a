#pragma once
// Prometheus metrics, declared once. Each module declares its counters, gauges and histograms in the
// service's one Registry when it is built (name, help, type, labels) and keeps the references it
// updates; the registry alone writes the text exposition format for GET /metrics. A name declared
// twice with the same type and help is the same family (one # HELP / # TYPE, a sample per label set);
// with another type or help it is a programming error (std::logic_error at start).
//
// Thread-safe. Counters and gauges are atomics; a family's label sets and a histogram take a mutex.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace p2p::metrics {

class Counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);

  struct Snapshot {
    std::vector<std::uint64_t> cumulative;  // one per upper bound, then +Inf
    double sum = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& upper_bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<std::uint64_t> counts_;  // per bucket (not cumulative), then above the last bound
  double sum_ = 0;
};

// Labels are written as Prometheus writes them, without braces: `result="completed"`, or empty.
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // A family whose label sets are known only as they come (say, routes): listed, with no sample yet.
  // `type` is "counter", "gauge" or "histogram".
  void declare(std::string_view name, std::string_view help, std::string_view type);

  Counter& counter(std::string_view name, std::string_view help, std::string_view labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, std::string_view labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, std::span<const double> upper_bounds,
                       std::string_view labels = {});
  // A value owned elsewhere (open connections, the database pool), read when /metrics is rendered,
  // under the registry's lock: a reader must not call the registry, and must stay callable for as
  // long as /metrics can be rendered.
  void counter_reader(std::string_view name, std::string_view help, std::string_view labels,
                      std::function<double()> read);
  void gauge_reader(std::string_view name, std::string_view help, std::string_view labels,
                    std::function<double()> read);

  // The text exposition format: families, and their samples, in the order they were declared.
  std::string render() const;

 private:
  struct Family;
  Family& family(std::string_view name, std::string_view help, std::string_view type);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Family>> families_;  // in declaration order
};

// One sample line: name{labels} value
std::string sample_line(std::string_view name, std::string_view labels, double value);

}  // namespace p2p::metrics
