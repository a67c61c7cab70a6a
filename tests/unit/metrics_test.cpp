#include <gtest/gtest.h>

#include "p2p/http/metrics.hpp"

TEST(Metrics, CountsRequestsByRouteTemplateMethodAndStatus) {
  p2p::http::Metrics metrics;
  metrics.observe_request("/api/oidc_servers/{server_id}", "GET", 200, 0.002);
  metrics.observe_request("/api/oidc_servers/{server_id}", "GET", 200, 0.2);
  metrics.observe_request("/api/oidc_servers/{server_id}", "GET", 404, 0.001);
  metrics.observe_request("unmatched", "BREW", 405, 0.0001);
  const auto text = metrics.render();
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
  EXPECT_NE(text.find("p2p_http_request_duration_seconds_count{route=\"/api/oidc_servers/{server_id}\",method=\"GET\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE p2p_http_request_duration_seconds histogram\n"), std::string::npos);
}

TEST(Metrics, AppendsCollectorOutput) {
  p2p::http::Metrics metrics;
  metrics.add_collector([](std::string& out) { out += p2p::http::metric_line("p2p_db_pool_connections", "state=\"open\"", 3); });
  EXPECT_NE(metrics.render().find("p2p_db_pool_connections{state=\"open\"} 3\n"), std::string::npos);
}
