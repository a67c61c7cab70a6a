#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "p2p/http/api_key_auth.hpp"
#include "p2p/http/problem.hpp"
#include "p2p/http/request_id.hpp"

using p2p::http::ApiKeyAuth;

TEST(Problem, IsRfc9457JsonWithTheRequestId) {
  const auto response = p2p::http::problem_response(404, "there is no OIDC server with pid 9", "/api/oidc_servers/9", "req-1");
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.header("content-type"), "application/problem+json");
  EXPECT_EQ(response.body,
            R"({"type":"about:blank","title":"Not Found","status":404,"detail":"there is no OIDC server with pid 9",)"
            R"("instance":"/api/oidc_servers/9","requestId":"req-1"})");
}

TEST(Problem, TitlesAreTheStandardReasonPhrases) {
  EXPECT_EQ(p2p::http::reason_phrase(400), "Bad Request");
  EXPECT_EQ(p2p::http::reason_phrase(405), "Method Not Allowed");
  EXPECT_EQ(p2p::http::reason_phrase(413), "Content Too Large");
  EXPECT_EQ(p2p::http::reason_phrase(415), "Unsupported Media Type");
  EXPECT_EQ(p2p::http::reason_phrase(503), "Service Unavailable");
}

TEST(ApiKeyAuth, AcceptsOnlyConfiguredBearerKeys) {
  const ApiKeyAuth auth(true, {"key-one-0123456789", "key-two-0123456789"});
  EXPECT_EQ(auth.check("Bearer key-one-0123456789"), ApiKeyAuth::Outcome::kAccepted);
  EXPECT_EQ(auth.check("bearer key-two-0123456789"), ApiKeyAuth::Outcome::kAccepted);
  EXPECT_EQ(auth.check("Bearer  key-two-0123456789 "), ApiKeyAuth::Outcome::kAccepted);
  EXPECT_EQ(auth.check(std::nullopt), ApiKeyAuth::Outcome::kMissing);
  EXPECT_EQ(auth.check("Bearer key-one-012345678"), ApiKeyAuth::Outcome::kInvalid);
  EXPECT_EQ(auth.check("Basic a2V5LW9uZQ=="), ApiKeyAuth::Outcome::kInvalid);
  EXPECT_EQ(auth.check("key-one-0123456789"), ApiKeyAuth::Outcome::kInvalid);
  EXPECT_EQ(auth.check("Bearer "), ApiKeyAuth::Outcome::kInvalid);
}

TEST(ApiKeyAuth, OffAcceptsEveryone) {
  const ApiKeyAuth auth(false, {});
  EXPECT_EQ(auth.check(std::nullopt), ApiKeyAuth::Outcome::kAccepted);
  EXPECT_FALSE(auth.enabled());
}

TEST(RequestId, EchoesSafeIdsAndReplacesOthers) {
  EXPECT_EQ(p2p::http::request_id_for("portal-7f3a.1_b"), "portal-7f3a.1_b");
  for (const std::string& unsafe : std::vector<std::string>{"", "has space", "new\nline", "quote\"", std::string(129, 'a')}) {
    const auto id = p2p::http::request_id_for(std::string_view(unsafe));
    EXPECT_NE(id, unsafe);
    EXPECT_EQ(id.size(), 32u);
    EXPECT_TRUE(p2p::http::is_valid_request_id(id));
  }
  EXPECT_NE(p2p::http::request_id_for(std::nullopt), p2p::http::request_id_for(std::nullopt));
}

TEST(Request, ReadsHeadersCaseInsensitivelyAndDecodesQueryParameters) {
  p2p::http::Request request;
  request.headers = {{"content-type", "application/json"}, {"x-request-id", "abc"}};
  request.query = "limit=20&beforeId=17&name=a%20b";
  EXPECT_EQ(request.header("Content-Type"), "application/json");
  EXPECT_EQ(request.header("Authorization"), std::nullopt);
  EXPECT_EQ(request.query_param("limit"), "20");
  EXPECT_EQ(request.query_param("name"), "a b");
  EXPECT_EQ(request.query_param("missing"), std::nullopt);
}
