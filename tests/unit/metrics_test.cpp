// The metrics registry (metrics/registry.hpp) and the HTTP server's request metrics declared in it.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "p2p/http/metrics.hpp"
#include "p2p/metrics/registry.hpp"

using p2p::metrics::Registry;

TEST(Metrics, CountsRequestsByRouteTemplateMethodAndStatus) {
  Registry registry;
  p2p::http::RequestMetrics metrics(registry);
  metrics.observe("/api/oidc_servers/{server_id}", "GET", 200, 0.002);
  metrics.observe("/api/oidc_servers/{server_id}", "GET", 200, 0.2);
  metrics.observe("/api/oidc_servers/{server_id}", "GET", 404, 0.001);
  metrics.observe("unmatched", "BREW", 405, 0.0001);
  const auto text = registry.render();
  EXPECT_NE(text.find("p2p_http_requests_total{route=\"/api/oidc_servers/{server_id}\",method=\"GET\",status=\"200\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("p2p_http_requests_total{route=\"/api/oidc_servers/{server_id}\",method=\"GET\",status=\"404\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("p2p_http_requests_total{route=\"unmatched\",method=\"OTHER\",status=\"405\"} 1\n"),
            std::string::npos);
  // 0.001 and 0.002 fall in le=0.0025; 0.2 only from le=0.25 on.
  EXPECT_NE(text.find("p2p_http_request_duration_seconds_bucket{route=\"/api/oidc_servers/{server_id}\",method=\"GET\",le=\"0.0025\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("p2p_http_request_duration_seconds_bucket{route=\"/api/oidc_servers/{server_id}\",method=\"GET\",le=\"0.1\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("p2p_http_request_duration_seconds_bucket{route=\"/api/oidc_servers/{server_id}\",method=\"GET\",le=\"0.25\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("p2p_http_request_duration_seconds_bucket{route=\"/api/oidc_servers/{server_id}\",method=\"GET\",le=\"+Inf\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("p2p_http_request_duration_seconds_count{route=\"/api/oidc_servers/{server_id}\",method=\"GET\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("p2p_http_request_duration_seconds_sum{route=\"/api/oidc_servers/{server_id}\",method=\"GET\"} 0.203\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE p2p_http_request_duration_seconds histogram\n"), std::string::npos);
}

TEST(Metrics, FamiliesAreListedBeforeTheirFirstSample) {
  Registry registry;
  p2p::http::RequestMetrics metrics(registry);
  const auto text = registry.render();
  EXPECT_NE(text.find("# TYPE p2p_http_requests_total counter\n"), std::string::npos);
  EXPECT_EQ(text.find("p2p_http_requests_total{"), std::string::npos);
}

TEST(Metrics, OneHelpAndTypePerNameWithASamplePerLabelSetInDeclarationOrder) {
  Registry registry;
  auto& completed = registry.counter("p2p_jobs_total", "Jobs ended, by result.", "result=\"completed\"");
  auto& failed = registry.counter("p2p_jobs_total", "Jobs ended, by result.", "result=\"failed\"");
  auto& pending = registry.gauge("p2p_pending", "Waiting now.");
  int open = 3;
  registry.gauge_reader("p2p_pool", "Connections, by state.", "state=\"open\"", [&open] { return double(open); });
  registry.gauge_reader("p2p_pool", "Connections, by state.", "state=\"max\"", [] { return 8.0; });
  completed.inc();
  completed.inc(2);
  failed.inc();
  pending.set(7.5);
  open = 4;  // read when rendered
  EXPECT_EQ(registry.render(),
            "# HELP p2p_jobs_total Jobs ended, by result.\n"
            "# TYPE p2p_jobs_total counter\n"
            "p2p_jobs_total{result=\"completed\"} 3\n"
            "p2p_jobs_total{result=\"failed\"} 1\n"
            "# HELP p2p_pending Waiting now.\n"
            "# TYPE p2p_pending gauge\n"
            "p2p_pending 7.5\n"
            "# HELP p2p_pool Connections, by state.\n"
            "# TYPE p2p_pool gauge\n"
            "p2p_pool{state=\"open\"} 4\n"
            "p2p_pool{state=\"max\"} 8\n");  // as declared, not sorted
  EXPECT_EQ(&registry.counter("p2p_jobs_total", "Jobs ended, by result.", "result=\"failed\""), &failed)
      << "declared again, the same counter";
}

TEST(Metrics, ANameDeclaredAgainDifferentlyIsAProgrammingError) {
  Registry registry;
  registry.counter("p2p_x_total", "Xs.");
  EXPECT_THROW(registry.gauge("p2p_x_total", "Xs."), std::logic_error);
  EXPECT_THROW(registry.counter("p2p_x_total", "Other help."), std::logic_error);
  registry.gauge_reader("p2p_y", "Ys.", "", [] { return 1.0; });
  EXPECT_THROW(registry.gauge_reader("p2p_y", "Ys.", "", [] { return 2.0; }), std::logic_error);
  EXPECT_THROW(registry.gauge("p2p_y", "Ys."), std::logic_error) << "a reader's sample is not a gauge to set";
}
