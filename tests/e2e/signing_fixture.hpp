#pragma once
// The service with a signing key of its own (exchange.clientSigningKeys), made by `openssl genpkey`
// for each test, and registered at the source payer's oidc-provider by dynamic client registration
// (RFC 7591) with the JWK Set the service publishes, as PDex asks a requesting payer to register.
// Shared by client_auth_test.cpp and payer_mediated_test.cpp.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include <gtest/gtest.h>

#include "exchange_fixture.hpp"

namespace p2p::test {

class SigningKeyTest : public ExchangeTest {
 protected:
  void SetUp() override {
    ExchangeTest::SetUp();
    dir_ = std::filesystem::temp_directory_path() / ("p2p-e2e-signing-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    key_ = (dir_ / "signing-key.pem").string();
    const std::string command = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out " + key_ + " 2>&1";
    ASSERT_EQ(std::system(command.c_str()), 0);
    // The private key is a secret like any other: scripts/check-secrets.sh looks for its PEM body in
    // the service's logs and responses.
    if (const char* log_dir = std::getenv("P2P_TEST_LOG_DIR"); log_dir != nullptr && *log_dir != '\0') {
      std::ofstream secrets(std::string(log_dir) + "/secrets-signing-" + std::to_string(::getpid()) + ".txt",
                            std::ios::app);
      std::ifstream pem(key_);
      for (std::string line; std::getline(pem, line);) {
        if (!line.starts_with("-----") && line.size() >= 32) secrets << line << "\n";
      }
    }
  }
  void TearDown() override {
    ExchangeTest::TearDown();
    std::filesystem::remove_all(dir_);
  }

  // Registers the service at the source's oidc-provider as a private_key_jwt client with the JWK Set
  // it publishes; returns the client id the provider gave it.
  std::string register_service(ServiceProcess& service) {
    const auto published = http_get(service.url("/.well-known/jwks.json"));
    EXPECT_EQ(published.status, 200) << published.body;
    const auto registered = http_request(
        "POST", issuer() + "/reg", {kJson},
        json({{"client_name", "New payer (p2p-exchange)"},
              {"redirect_uris", {"http://127.0.0.1/callback"}},
              {"grant_types", {"authorization_code", "refresh_token", "client_credentials"}},
              {"response_types", {"code"}},
              {"token_endpoint_auth_method", "private_key_jwt"},
              {"token_endpoint_auth_signing_alg", "ES384"},
              {"jwks", json::parse(published.body)}})
            .dump());
    EXPECT_EQ(registered.status, 201) << registered.body;
    return parse(registered).value("client_id", "");
  }

  std::filesystem::path dir_;
  std::string key_;
};

}  // namespace p2p::test
