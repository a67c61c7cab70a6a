#include "p2p/http/metrics.hpp"

#include <fmt/format.h>

namespace p2p::http {
namespace {

constexpr std::string_view kRequests = "p2p_http_requests_total";
constexpr std::string_view kRequestsHelp = "HTTP requests answered, by route template, method and status.";
constexpr std::string_view kLatency = "p2p_http_request_duration_seconds";
constexpr std::string_view kLatencyHelp = "Time from a request's last byte read until its response is ready to send.";

std::string_view method_label(std::string_view method) {
  static constexpr std::string_view kKnown[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
  for (auto known : kKnown) {
    if (method == known) return known;
  }
  return "OTHER";
}

}  // namespace

RequestMetrics::RequestMetrics(metrics::Registry& registry) : registry_(registry) {
  // Declared now, so /metrics lists both families (empty) before the first request.
  registry_.declare(kRequests, kRequestsHelp, "counter");
  registry_.declare(kLatency, kLatencyHelp, "histogram");
}

void RequestMetrics::observe(std::string_view route, std::string_view method, int status, double seconds) {
  const auto label = method_label(method);
  std::lock_guard lock(mutex_);
  auto request = requests_.find(std::make_tuple(route, label, status));
  if (request == requests_.end()) {
    auto& counter = registry_.counter(kRequests, kRequestsHelp,
                                      fmt::format("route=\"{}\",method=\"{}\",status=\"{}\"", route, label, status));
    request = requests_.emplace(std::make_tuple(std::string(route), label, status), &counter).first;
  }
  request->second->inc();
  auto histogram = latency_.find(std::make_tuple(route, label));
  if (histogram == latency_.end()) {
    auto& declared = registry_.histogram(kLatency, kLatencyHelp, kLatencyBuckets,
                                         fmt::format("route=\"{}\",method=\"{}\"", route, label));
    histogram = latency_.emplace(std::make_tuple(std::string(route), label), &declared).first;
  }
  histogram->second->observe(seconds);
}

}  // namespace p2p::http
