#pragma once
// Prometheus metrics in the text exposition format: HTTP requests by route template, method and
// status, a latency histogram per route, and whatever other modules register as collectors.
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace p2p::http {

class Metrics {
 public:
  static constexpr std::array<double, 13> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                             0.1,    0.25,  0.5,    1.0,   2.5,   5.0};

  // `route` is the route template (or "unmatched"), never the raw path, to bound the label set.
  void observe_request(std::string_view route, std::string_view method, int status, double seconds);

  // A collector appends complete exposition lines (with # HELP / # TYPE) to the output.
  using Collector = std::function<void(std::string& out)>;
  void add_collector(Collector collector);

  std::string render() const;

 private:
  struct Histogram {
    std::array<std::uint64_t, kLatencyBuckets.size()> buckets{};
    std::uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;
  std::map<std::pair<std::string, std::string>, Histogram> latency_;
  std::vector<Collector> collectors_;
};

// Formats one sample line: name{labels} value
std::string metric_line(std::string_view name, std::string_view labels, double value);

}  // namespace p2p::http
