// The service as a private_key_jwt client (issue #12, part 1), end to end: started with a signing key
// made by `openssl genpkey`, it publishes the public key at /.well-known/jwks.json; the source payer's
// oidc-provider registers the service with that JWK Set by dynamic client registration (RFC 7591),
// and a job whose access token expired refreshes the member's tokens with a signed assertion.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "signing_fixture.hpp"

namespace p2p::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

using ClientAuthTest = SigningKeyTest;

TEST_F(ClientAuthTest, TheSourceRegistersThePublishedKeysAndARefreshIsAuthenticatedWithASignedAssertion) {
  seed_source("k1", 10);
  auto& service = start_service({{"P2P_CLIENT_SIGNING_KEYS", key_}});

  // The JWKS: open (no API key), cacheable, the public key only.
  const auto published = http_get(service.url("/.well-known/jwks.json"));
  ASSERT_EQ(published.status, 200) << published.body;
  EXPECT_EQ(published.header("content-type"), "application/jwk-set+json");
  EXPECT_EQ(published.header("cache-control"), "public, max-age=300");
  const json jwks = json::parse(published.body);
  ASSERT_EQ(jwks["keys"].size(), 1u);
  const json& key = jwks["keys"][0];
  EXPECT_EQ(key["kty"], "EC");
  EXPECT_EQ(key["crv"], "P-384");
  EXPECT_EQ(key["alg"], "ES384");
  EXPECT_FALSE(key.contains("d")) << "a private key member was published";
  EXPECT_TRUE(service.wait_for_log("signed ES384 with key " + key["kid"].get<std::string>()));

  // The source payer registers the service as a private_key_jwt client with that JWK Set.
  const std::string client_id = register_service(service);
  ASSERT_FALSE(client_id.empty());
  exec_sql(database_url(), "UPDATE oidc_servers SET client_id = '" + client_id +
                               "', client_secret = NULL, token_endpoint_auth_method = 'private_key_jwt'");

  // The member's tokens, issued to that client; the access token has expired when the job starts.
  const json tokens = parse(http_request("POST", issuer() + "/__control/issue", {kJson},
                                         json({{"sub", "k1"}, {"clientId", client_id}}).dump()));
  ASSERT_TRUE(tokens.contains("refresh_token")) << tokens.dump();
  http_request("POST", issuer() + "/__control/expire-access", {kJson}, json({{"access_token", tokens["access_token"]}}).dump());
  http_request("DELETE", issuer() + "/__control/token-requests");

  const auto done = wait_for_end(service, start_job(service, tokens, "k1"));
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["resourcesWritten"], 12);
  const auto requests = parse(http_get(issuer() + "/__control/token-requests"));
  ASSERT_EQ(requests.size(), 1u) << requests.dump();
  EXPECT_EQ(requests[0]["grant_type"], "refresh_token");
  EXPECT_EQ(requests[0]["client_id"], client_id);
  EXPECT_EQ(requests[0]["auth_method"], "private_key_jwt");
  EXPECT_EQ(requests[0]["status"], 200);

  // The definition says how it authenticates; the key itself is nowhere but in the process.
  const auto definition = parse(http_get(service.url("/api/oidc_servers/1"), {kAuthHeader}));
  EXPECT_EQ(definition["tokenEndpointAuthMethod"], "private_key_jwt");
  service.send_signal(SIGTERM);
  EXPECT_EQ(service.wait_exit(30s), 0);
  // A line of the PEM body that holds the private scalar (the first one is a prefix every P-384
  // PKCS#8 key shares): not in the log (scripts/check-secrets.sh searches every body line too).
  std::ifstream pem(key_);
  std::vector<std::string> lines;
  for (std::string line; std::getline(pem, line);) {
    if (!line.starts_with("-----")) lines.push_back(line);
  }
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(service.log().find(lines[1]), std::string::npos);
}

TEST_F(ClientAuthTest, ANewJobIsRefusedWhenTheDefinitionNeedsASigningKeyThisServiceDoesNotHave) {
  auto& service = start_service();  // no P2P_CLIENT_SIGNING_KEYS
  exec_sql(database_url(), "UPDATE oidc_servers SET token_endpoint_auth_method = 'private_key_jwt'");
  const auto result = post_job(service, {{"sourcePayer", {{"oidcToken", "a"}, {"oidcRefreshToken", "r"}, {"patientId", "k2"}}},
                                         {"targetPayer", {{"patientId", "t-k2"}, {"organizationId", "TGT"}}}});
  EXPECT_EQ(result.status, 409) << result.body;
  EXPECT_NE(result.body.find("exchange.clientSigningKeys"), std::string::npos) << result.body;
  // The database refuses the method without a client id.
  EXPECT_THROW(exec_sql(database_url(), "UPDATE oidc_servers SET client_id = NULL"), std::exception);
}

TEST_F(ClientAuthTest, AnUnusableSigningKeyStopsTheStartNamingTheFileAndWhatToDo) {
  const std::string weak = (dir_ / "weak.pem").string();
  const std::string command = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + weak + " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0);
  auto& service = launch({{"P2P_CLIENT_SIGNING_KEYS", weak}, {"P2P_FHIR_PERSISTENCE_URL", target_base()}}, json::object(),
                         /*wait_ready=*/false);
  EXPECT_NE(service.wait_exit(30s), 0);
  const std::string log = service.log();
  EXPECT_NE(log.find("exchange.clientSigningKeys"), std::string::npos) << log;
  EXPECT_NE(log.find(weak), std::string::npos) << log;
  EXPECT_NE(log.find("ES384 needs P-384"), std::string::npos) << log;
}

}  // namespace
}  // namespace p2p::test
