// Client authentication at a real token endpoint (oidc-provider 9, tests/peers/oauth-server.mjs): the
// service's signing keys' JWKS registered inline as a private_key_jwt client, as a source payer
// registers a SMART Backend Services client; client_credentials and refresh_token grants with signed
// assertions (ES384 and RS384), refused with a key the payer never registered; client_secret_post.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "http_client.hpp"
#include "node_peer.hpp"
#include "p2p/crypto/signing_keys.hpp"
#include "p2p/http/client.hpp"
#include "p2p/oauth/token_refresher.hpp"

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using nlohmann::json;
using p2p::crypto::SigningKeys;
using p2p::oauth::ClientAuthentication;
using p2p::oauth::ClientCredentialsRequest;
using p2p::oauth::RefreshRequest;
using p2p::oauth::TokenRefreshError;
using p2p::oauth::Tokens;
using namespace std::chrono_literals;

constexpr const char* kSecretClient = "p2p-client";
constexpr const char* kSecret = "client-auth-test-secret-4411";
constexpr const char* kJwtClient = "p2p-backend";
constexpr const char* kScope = "system/*.read";

// A PEM private key file made with OpenSSL ("EC" with "P-384", or "RSA" with 2048 bits).
std::string write_key(const fs::path& path, const char* type) {
  EVP_PKEY* key = std::string(type) == "EC" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384")
                                            : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  FILE* file = std::fopen(path.c_str(), "w");
  if (key == nullptr || file == nullptr) throw std::runtime_error("cannot make a test key");
  PEM_write_PrivateKey(file, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(file);
  EVP_PKEY_free(key);
  return path.string();
}

template <class T>
T run(asio::io_context& io, asio::awaitable<T> work) {
  auto future = asio::co_spawn(io, std::move(work), asio::use_future);
  io.restart();
  while (future.wait_for(0s) != std::future_status::ready) {
    if (io.run_one_for(20s) == 0 && future.wait_for(0s) != std::future_status::ready) {
      throw std::runtime_error("the request did not finish");
    }
  }
  return future.get();
}

class ClientAuthPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("p2p-client-auth-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    ec_file_ = write_key(dir_ / "ec.pem", "EC");
    rsa_file_ = write_key(dir_ / "rsa.pem", "RSA");
    stranger_file_ = write_key(dir_ / "stranger.pem", "EC");
    // The payer registers both of the service's keys, as published (exchange.clientSigningKeys).
    registered_ = SigningKeys::load({ec_file_, rsa_file_});
    std::ofstream(dir_ / "jwks.json") << registered_.public_jwks();
    peer_ = std::make_unique<p2p::test::NodePeer>(
        "oauth-server.mjs",
        std::vector<std::string>{"--client-id", kSecretClient, "--client-secret", kSecret, "--jwt-client-id", kJwtClient,
                                 "--jwt-client-jwks", (dir_ / "jwks.json").string(), "--scope", kScope});
    token_endpoint_ = peer_->ready().at("token_endpoint").get<std::string>();
    issuer_ = peer_->ready().at("issuer").get<std::string>();
  }
  void TearDown() override {
    peer_.reset();
    fs::remove_all(dir_);
  }

  ClientAuthentication jwt_client(const SigningKeys& keys) const {
    return {.method = "private_key_jwt", .client_id = kJwtClient, .client_secret = std::nullopt, .signing_keys = &keys};
  }

  Tokens client_credentials(const SigningKeys& keys) {
    ClientCredentialsRequest request{.token_endpoint = token_endpoint_, .scope = kScope, .client = jwt_client(keys)};
    return run(io_, p2p::oauth::client_credentials_token(client_, std::move(request)));
  }

  // A refresh of tokens the payer issued to the private_key_jwt client for `member`, signed with `keys`.
  RefreshRequest member_refresh(const std::string& member, const SigningKeys& keys) const {
    const auto issued = p2p::test::http_request(
        "POST", issuer_ + "/__control/issue", {"Content-Type: application/json"},
        json{{"sub", member}, {"scope", "openid offline_access patient/*.read"}, {"clientId", kJwtClient}}.dump());
    if (issued.status != 200) throw std::runtime_error("the peer issued no tokens: " + issued.body);
    RefreshRequest request;
    request.token_endpoint = token_endpoint_;
    request.refresh_token = json::parse(issued.body).at("refresh_token").get<std::string>();
    request.client = jwt_client(keys);
    return request;
  }

  json token_requests() const {
    return json::parse(p2p::test::http_get(issuer_ + "/__control/token-requests").body);
  }

  json introspect(const std::string& token) const {
    const auto result = p2p::test::http_request(
        "POST", issuer_ + "/token/introspection", {"Content-Type: application/x-www-form-urlencoded"},
        std::string("token=") + token + "&client_id=" + kSecretClient + "&client_secret=" + kSecret);
    return json::parse(result.body);
  }

  fs::path dir_;
  std::string ec_file_, rsa_file_, stranger_file_;
  SigningKeys registered_;
  std::unique_ptr<p2p::test::NodePeer> peer_;
  std::string token_endpoint_, issuer_;
  asio::io_context io_;
  p2p::http::HttpClient client_{io_.get_executor(),
                                p2p::http::ClientOptions{.connect_timeout_seconds = 5, .read_timeout_seconds = 10}};
};

TEST_F(ClientAuthPeer, ClientCredentialsWithAnEs384AssertionGetsAnAccessToken) {
  const Tokens tokens = client_credentials(registered_);
  EXPECT_FALSE(tokens.access_token.empty());
  EXPECT_FALSE(tokens.refresh_token.has_value());  // client_credentials: ask again when it expires
  ASSERT_TRUE(tokens.expires_in.has_value());
  EXPECT_GT(*tokens.expires_in, 0);
  const json requests = token_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].at("grant_type"), "client_credentials");
  EXPECT_EQ(requests[0].at("client_id"), kJwtClient);
  EXPECT_EQ(requests[0].at("auth_method"), "private_key_jwt");
  EXPECT_EQ(requests[0].at("status"), 200);
  // A real token of that client with the system scope (introspected by the resource server's client).
  const json introspection = introspect(tokens.access_token);
  EXPECT_EQ(introspection.value("active", false), true) << introspection.dump();
  EXPECT_EQ(introspection.value("client_id", ""), kJwtClient);
  EXPECT_EQ(introspection.value("scope", ""), kScope);

  // A second request has a new jti (oidc-provider refuses a replayed one) and gets a new token.
  const Tokens again = client_credentials(registered_);
  EXPECT_NE(again.access_token, tokens.access_token);
}

TEST_F(ClientAuthPeer, AnRs384AssertionFromTheSecondPublishedKeyIsAcceptedOnceItSigns) {
  // The RSA key was published second; put first (the rotation's step 2), it signs RS384.
  const SigningKeys rotated = SigningKeys::load({rsa_file_, ec_file_});
  ASSERT_EQ(rotated.signing_algorithm(), "RS384");
  EXPECT_FALSE(client_credentials(rotated).access_token.empty());
}

TEST_F(ClientAuthPeer, AnAssertionSignedWithAKeyThePayerNeverRegisteredIsRefusedSayingWhatToCheck) {
  const SigningKeys stranger = SigningKeys::load({stranger_file_});
  try {
    (void)client_credentials(stranger);
    FAIL() << "the token endpoint accepted an assertion from an unregistered key";
  } catch (const TokenRefreshError& error) {
    EXPECT_FALSE(error.final()) << "the registration is an admin's to fix: a job pauses";
    const std::string message = error.what();
    EXPECT_NE(message.find("invalid_client"), std::string::npos) << message;
    EXPECT_NE(message.find("/.well-known/jwks.json"), std::string::npos) << message;
  }
  const json requests = token_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].at("status"), 401);
}

TEST_F(ClientAuthPeer, ARefreshGrantAuthenticatesWithTheSameAssertion) {
  RefreshRequest request = member_refresh("member-1", registered_);
  const Tokens refreshed = run(io_, p2p::oauth::refresh_tokens(client_, request));
  EXPECT_FALSE(refreshed.access_token.empty());
  ASSERT_TRUE(refreshed.refresh_token.has_value());  // rotated
  EXPECT_NE(*refreshed.refresh_token, request.refresh_token);
  const json requests = token_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].at("grant_type"), "refresh_token");
  EXPECT_EQ(requests[0].at("auth_method"), "private_key_jwt");
  EXPECT_EQ(requests[0].at("status"), 200);
}

TEST_F(ClientAuthPeer, ARefreshTheSourceRefusesAsInvalidClientKeepsTheRefreshTokenUsable) {
  const SigningKeys stranger = SigningKeys::load({stranger_file_});
  RefreshRequest request = member_refresh("member-3", stranger);
  try {
    (void)run(io_, p2p::oauth::refresh_tokens(client_, request));
    FAIL() << "the token endpoint accepted an assertion from an unregistered key";
  } catch (const TokenRefreshError& error) {
    EXPECT_FALSE(error.final()) << "the member's tokens must not be given up for an admin's mistake";
    const std::string message = error.what();
    EXPECT_NE(message.find("did not accept this service as its client"), std::string::npos) << message;
    EXPECT_EQ(message.find("sign in"), std::string::npos) << "not the member's to fix: " << message;
  }
  // The grant was not processed: once the registration is right, the same refresh token works.
  request.client = jwt_client(registered_);
  EXPECT_FALSE(run(io_, p2p::oauth::refresh_tokens(client_, request)).access_token.empty());
}

TEST_F(ClientAuthPeer, ClientSecretPostSendsTheSecretInTheForm) {
  const auto issued = p2p::test::http_request("POST", issuer_ + "/__control/issue", {"Content-Type: application/json"},
                                              json{{"sub", "member-2"}}.dump());
  ASSERT_EQ(issued.status, 200) << issued.body;
  RefreshRequest request;
  request.token_endpoint = token_endpoint_;
  request.refresh_token = json::parse(issued.body).at("refresh_token").get<std::string>();
  request.client = {.method = "client_secret_post", .client_id = kSecretClient, .client_secret = kSecret};
  EXPECT_FALSE(run(io_, p2p::oauth::refresh_tokens(client_, request)).access_token.empty());
  const json requests = token_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].at("auth_method"), "post");
  EXPECT_EQ(requests[0].at("status"), 200);
}

TEST_F(ClientAuthPeer, PrivateKeyJwtWithoutKeysIsRefusedBeforeAnythingIsSent) {
  const SigningKeys none;
  EXPECT_THROW((void)client_credentials(none), TokenRefreshError);
  EXPECT_EQ(token_requests().size(), 0u);
}

}  // namespace
