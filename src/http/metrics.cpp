#include "p2p/http/metrics.hpp"

#include <cmath>

#include <fmt/format.h>

namespace p2p::http {
namespace {

std::string_view method_label(std::string_view method) {
  static constexpr std::string_view kKnown[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
  for (auto known : kKnown) {
    if (method == known) return known;
  }
  return "OTHER";
}

std::string format_value(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) return fmt::format("{}", static_cast<long long>(value));
  return fmt::format("{}", value);
}

}  // namespace

std::string metric_line(std::string_view name, std::string_view labels, double value) {
  if (labels.empty()) return fmt::format("{} {}\n", name, format_value(value));
  return fmt::format("{}{{{}}} {}\n", name, labels, format_value(value));
}

void Metrics::observe_request(std::string_view route, std::string_view method, int status, double seconds) {
  const auto label = method_label(method);
  std::lock_guard lock(mutex_);
  ++requests_[{std::string(route), std::string(label), status}];
  auto& histogram = latency_[{std::string(route), std::string(label)}];
  for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    if (seconds <= kLatencyBuckets[i]) ++histogram.buckets[i];
  }
  ++histogram.count;
  histogram.sum += seconds;
}

void Metrics::add_collector(Collector collector) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collector));
}

std::string Metrics::render() const {
  std::string out;
  std::vector<Collector> collectors;
  {
    std::lock_guard lock(mutex_);
    out += "# HELP p2p_http_requests_total HTTP requests answered, by route template, method and status.\n";
    out += "# TYPE p2p_http_requests_total counter\n";
    for (const auto& [key, count] : requests_) {
      const auto& [route, method, status] = key;
      out += metric_line("p2p_http_requests_total",
                         fmt::format("route=\"{}\",method=\"{}\",status=\"{}\"", route, method, status),
                         static_cast<double>(count));
    }
    out += "# HELP p2p_http_request_duration_seconds Time from a request's last byte read until its response is ready to send.\n";
    out += "# TYPE p2p_http_request_duration_seconds histogram\n";
    for (const auto& [key, histogram] : latency_) {
      const auto labels = fmt::format("route=\"{}\",method=\"{}\"", key.first, key.second);
      for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i) {
        out += metric_line("p2p_http_request_duration_seconds_bucket",
                           fmt::format("{},le=\"{}\"", labels, kLatencyBuckets[i]),
                           static_cast<double>(histogram.buckets[i]));
      }
      out += metric_line("p2p_http_request_duration_seconds_bucket", labels + ",le=\"+Inf\"",
                         static_cast<double>(histogram.count));
      out += metric_line("p2p_http_request_duration_seconds_sum", labels, histogram.sum);
      out += metric_line("p2p_http_request_duration_seconds_count", labels, static_cast<double>(histogram.count));
    }
    collectors = collectors_;
  }
  for (const auto& collector : collectors) collector(out);
  return out;
}

}  // namespace p2p::http
