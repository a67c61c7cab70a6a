#pragma once
// The HTTP server's request metrics, declared in the service's metrics registry: requests by route
// template, method and status, and a latency histogram per route and method.
#include <array>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "p2p/metrics/registry.hpp"

namespace p2p::http {

class RequestMetrics {
 public:
  static constexpr std::array<double, 13> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                             0.1,    0.25,  0.5,    1.0,   2.5,   5.0};

  explicit RequestMetrics(metrics::Registry& registry);

  // `route` is the route template (or "unmatched"), never the raw path, to bound the label set.
  void observe(std::string_view route, std::string_view method, int status, double seconds);

 private:
  // Orders the keys by their parts seen as string views, so that a lookup by views needs no
  // std::string (std::less<> compares tuples of different types, which clang 14 with libstdc++ 12
  // refuses to compile: the fuzz build).
  struct ViewLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return views(a) < views(b);
    }

   private:
    static std::string_view view(const std::string& text) { return text; }
    static std::string_view view(std::string_view text) { return text; }
    static int view(int number) { return number; }
    template <typename... Parts>
    static auto views(const std::tuple<Parts...>& key) {
      return std::apply([](const auto&... part) { return std::make_tuple(view(part)...); }, key);
    }
  };

  metrics::Registry& registry_;
  std::mutex mutex_;
  // The registry's samples by their labels' parts, so a request costs no label formatting once seen.
  std::map<std::tuple<std::string, std::string_view, int>, metrics::Counter*, ViewLess> requests_;
  std::map<std::tuple<std::string, std::string_view>, metrics::Histogram*, ViewLess> latency_;
};

}  // namespace p2p::http
