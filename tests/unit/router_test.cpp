#include <gtest/gtest.h>

#include "p2p/http/problem.hpp"
#include "p2p/http/router.hpp"

using p2p::http::PathParams;
using p2p::http::Request;
using p2p::http::Response;
using p2p::http::RouteMatch;
using p2p::http::Router;

namespace {

Router make_router() {
  Router router;
  auto handler = [](const Request&, const PathParams&) { return Response{}; };
  router.add("GET", "/", handler);
  router.add("GET", "/api/oidc_servers", handler);
  router.add("GET", "/api/oidc_servers/{server_id}", handler);
  router.add("POST", "/api/oidc_servers/{server_id}/batch_job", handler);
  router.add("GET", "/api/oidc_servers/{server_id}/batch_job", handler);
  router.add("GET", "/api/oidc_servers/{server_id}/batch_job/{batch_job_id}", handler);
  return router;
}

}  // namespace

TEST(Router, MatchesTemplatesAndDecodesParameters) {
  const auto router = make_router();
  auto match = router.match("GET", "/api/oidc_servers/42/batch_job/7");
  ASSERT_EQ(match.kind, RouteMatch::Kind::kFound);
  EXPECT_EQ(match.route->pattern, "/api/oidc_servers/{server_id}/batch_job/{batch_job_id}");
  EXPECT_EQ(match.params.at("server_id"), "42");
  EXPECT_EQ(match.params.at("batch_job_id"), "7");

  match = router.match("GET", "/api/oidc_servers/a%20b");
  ASSERT_EQ(match.kind, RouteMatch::Kind::kFound);
  EXPECT_EQ(match.params.at("server_id"), "a b");

  match = router.match("GET", "/");
  ASSERT_EQ(match.kind, RouteMatch::Kind::kFound);
  EXPECT_EQ(match.route->pattern, "/");
}

TEST(Router, HeadIsAnsweredByGet) {
  const auto router = make_router();
  const auto match = router.match("HEAD", "/api/oidc_servers");
  ASSERT_EQ(match.kind, RouteMatch::Kind::kFound);
  EXPECT_EQ(match.route->method, "GET");
}

TEST(Router, UnknownPathsAreNotFound) {
  const auto router = make_router();
  for (const char* path : {"/api", "/api/oidc_servers/", "/api/oidc_servers/1/extra/x", "/API/oidc_servers",
                           "/api/oidc_servers//batch_job"}) {
    EXPECT_EQ(router.match("GET", path).kind, RouteMatch::Kind::kNotFound) << path;
  }
}

TEST(Router, KnownPathWithOtherMethodListsTheAllowedOnes) {
  const auto router = make_router();
  auto match = router.match("DELETE", "/api/oidc_servers/1/batch_job");
  ASSERT_EQ(match.kind, RouteMatch::Kind::kMethodNotAllowed);
  EXPECT_EQ(match.allowed_methods, (std::vector<std::string>{"POST", "GET", "HEAD"}));
  match = router.match("PUT", "/api/oidc_servers");
  EXPECT_EQ(match.allowed_methods, (std::vector<std::string>{"GET", "HEAD"}));
}

TEST(Router, MalformedPercentEncodingIsABadRequest) {
  const auto router = make_router();
  try {
    router.match("GET", "/api/oidc_servers/%zz");
    FAIL() << "expected ApiError";
  } catch (const p2p::http::ApiError& error) {
    EXPECT_EQ(error.status(), 400);
    EXPECT_EQ(error.detail(), "the request path is not a valid absolute path: check its percent-encoding");
  }
}
