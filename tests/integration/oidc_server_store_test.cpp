// The oidc_servers table against a real PostgreSQL: upserts from config, SQL edits, and the rules the
// database itself enforces on admins' SQL.
#include <gtest/gtest.h>

#include "p2p/store/migrations.hpp"
#include "p2p/store/oidc_server_repository.hpp"
#include "migrated_database_test.hpp"

using p2p::store::OidcServerRepository;

namespace {

class OidcServerStore : public p2p::test::MigratedDatabaseTest {
 protected:
  // The SQL error text of `sql`, or "" when it succeeds.
  std::string error_of(const std::string& sql) {
    try {
      exec(sql);
    } catch (const pqxx::sql_error& error) {
      return error.what();
    }
    return "";
  }

};

p2p::config::OidcServerDefinition definition(std::string issuer) {
  p2p::config::OidcServerDefinition d;
  d.name = "P2P Source Payer A";
  d.issuer = std::move(issuer);
  d.client_id = "p2pexchangeclientId";
  d.client_secret = "top-secret-value";
  d.scopes = "openid profile offline_access";
  d.custom_token_params = "memberId";
  d.auth_well_known = "https://sourcepayerA.com/.well-known/openid-configuration";
  d.token_endpoint = "https://sourcepayerA.com/token-endpoint";
  d.fhir_endpoint = "https://sourcepayerA.com/fhir-endpoint";
  d.response_type = "code";
  d.organization_id = "ABCD";
  return d;
}

}  // namespace

TEST_F(OidcServerStore, UpsertByIssuerIsIdempotentAndIgnoresTrailingSlashes) {
  OidcServerRepository repository(*connection_);
  const int pid = repository.upsert_by_issuer(definition("https://sourcepayerA.com/issuer"));
  EXPECT_EQ(repository.upsert_by_issuer(definition("https://sourcepayerA.com/issuer")), pid);
  auto renamed = definition("https://sourcepayerA.com/issuer/");
  renamed.name = "Payer A (renamed)";
  EXPECT_EQ(repository.upsert_by_issuer(renamed), pid);

  const auto servers = repository.list_summaries();
  ASSERT_EQ(servers.size(), 1u);
  EXPECT_EQ(servers[0].pid, pid);
  EXPECT_EQ(servers[0].name, "Payer A (renamed)");
  const auto server = repository.find_public(pid);
  ASSERT_TRUE(server.has_value());
  EXPECT_EQ(server->issuer, "https://sourcepayerA.com/issuer/");
  EXPECT_EQ(server->client_id, "p2pexchangeclientId");
  EXPECT_EQ(server->fhir_endpoint, "https://sourcepayerA.com/fhir-endpoint");
  EXPECT_EQ(server->organization_id, "ABCD");
  EXPECT_EQ(server->notes, std::nullopt);
}

TEST_F(OidcServerStore, UpsertKeepsSecretsThatTheConfigurationLeavesOut) {
  OidcServerRepository repository(*connection_);
  auto without_secret = definition("https://sourcepayerA.com/issuer");
  without_secret.client_secret.reset();
  const int pid = repository.upsert_by_issuer(without_secret);
  exec("UPDATE oidc_servers SET client_secret = 'set-with-sql', jwk_file = '/etc/p2p/a.jwk'");
  repository.upsert_by_issuer(without_secret);
  auto secret_and_jwk = [&] {
    pqxx::read_transaction tx(*connection_);
    auto row = tx.exec_params1("SELECT client_secret, jwk_file, jwk_text FROM oidc_servers WHERE pid = $1", pid);
    return std::string(row[0].c_str()) + "|" + row[1].c_str() + "|" + (row[2].is_null() ? "null" : row[2].c_str());
  };
  EXPECT_EQ(secret_and_jwk(), "set-with-sql|/etc/p2p/a.jwk|null");

  auto with_secret = definition("https://sourcepayerA.com/issuer");
  with_secret.jwk_text = R"({"kty":"EC"})";
  repository.upsert_by_issuer(with_secret);
  EXPECT_EQ(secret_and_jwk(), "top-secret-value||{\"kty\":\"EC\"}");
}

TEST_F(OidcServerStore, SqlEditsAreSeenByTheNextRead) {
  OidcServerRepository repository(*connection_);
  exec("INSERT INTO oidc_servers (name, issuer, fhir_endpoint) VALUES ('B', 'https://b.example.com', "
       "'https://b.example.com/fhir'), ('C', 'https://c.example.com', NULL)");
  auto servers = repository.list_summaries();
  ASSERT_EQ(servers.size(), 2u);
  EXPECT_EQ(servers[0].name, "B");
  EXPECT_EQ(servers[1].name, "C");
  EXPECT_LT(servers[0].pid, servers[1].pid);

  exec("UPDATE oidc_servers SET fhir_endpoint = 'https://b.example.com/r4', response_type = 'code id_token' "
       "WHERE issuer = 'https://b.example.com'");
  const auto b = repository.find_public(servers[0].pid);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->fhir_endpoint, "https://b.example.com/r4");
  EXPECT_EQ(b->response_type, "code id_token");

  exec("DELETE FROM oidc_servers WHERE issuer = 'https://c.example.com'");
  EXPECT_EQ(repository.find_public(servers[1].pid), std::nullopt);
  EXPECT_EQ(repository.list_summaries().size(), 1u);
}

TEST_F(OidcServerStore, TheDatabaseRejectsInvalidDefinitionsFromSql) {
  exec("INSERT INTO oidc_servers (name, issuer) VALUES ('A', 'https://a.example.com/issuer')");
  struct Case {
    std::string sql;
    std::string constraint;
  };
  const std::vector<Case> cases = {
      {"INSERT INTO oidc_servers (name, issuer) VALUES ('dup', 'https://a.example.com/issuer/')",
       "oidc_servers_issuer_normalized_key"},
      {"INSERT INTO oidc_servers (name, issuer) VALUES ('x', 'a.example.com')", "oidc_servers_issuer_is_http_url"},
      {"INSERT INTO oidc_servers (name, issuer) VALUES ('x', 'https://user:pw@x.example.com')",
       "oidc_servers_issuer_is_http_url"},
      {"INSERT INTO oidc_servers (name, issuer) VALUES ('x', 'https://x.example.com/a b')",
       "oidc_servers_issuer_is_http_url"},
      {"INSERT INTO oidc_servers (name, issuer, fhir_endpoint) VALUES ('x', 'https://x.example.com', "
       "'ftp://x.example.com/fhir')",
       "oidc_servers_fhir_endpoint_is_http_url"},
      {"INSERT INTO oidc_servers (name, issuer, token_endpoint) VALUES ('x', 'https://x.example.com', '/token')",
       "oidc_servers_token_endpoint_is_http_url"},
      {"INSERT INTO oidc_servers (name, issuer, auth_well_known) VALUES ('x', 'https://x.example.com', '')",
       "oidc_servers_auth_well_known_is_http_url"},
      {"INSERT INTO oidc_servers (name, issuer, response_type) VALUES ('x', 'https://x.example.com', 'code_token')",
       "oidc_servers_response_type_known"},
      {"INSERT INTO oidc_servers (name, issuer) VALUES ('  ', 'https://x.example.com')",
       "oidc_servers_name_not_blank"},
      {"INSERT INTO oidc_servers (name, issuer, jwk_text, jwk_file) VALUES ('x', 'https://x.example.com', "
       "'{\"kty\":\"RSA\"}', '/etc/p2p/x.jwk')",
       "oidc_servers_one_jwk_source"},
      {"INSERT INTO oidc_servers (name, issuer, jwk_text) VALUES ('x', 'https://x.example.com', '[1,2]')",
       "oidc_servers_jwk_text_is_json_object"},
      {"UPDATE oidc_servers SET issuer = 'mailto:a@example.com'", "oidc_servers_issuer_is_http_url"},
  };
  for (const auto& c : cases) {
    const auto error = error_of(c.sql);
    EXPECT_NE(error.find(c.constraint), std::string::npos) << c.sql << "\n  gave: " << error;
  }
  EXPECT_NE(error_of("INSERT INTO oidc_servers (issuer) VALUES ('https://x.example.com')").find("null value in column \"name\""),
            std::string::npos);
  // All eight response types of the seed are accepted, and IPv6 hosts with ports are valid URLs.
  for (const char* type : {"code", "token", "id_token", "id_token token", "code id_token", "code token",
                           "code id_token token", "none"}) {
    EXPECT_EQ(error_of(std::string("INSERT INTO oidc_servers (name, issuer, response_type) VALUES ('t', "
                                   "'https://t.example.com/' || replace('") + type + "', ' ', '-'), '" + type + "')"),
              "")
        << type;
  }
  EXPECT_EQ(error_of("INSERT INTO oidc_servers (name, issuer, fhir_endpoint) VALUES ('v6', 'http://[::1]:8080/issuer', "
                     "'http://localhost:8080/fhir?x=1')"),
            "");
}
