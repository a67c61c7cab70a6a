#include "p2p/store/oidc_server_repository.hpp"

namespace p2p::store {
namespace {

std::optional<std::string> optional_text(const pqxx::field& field) {
  if (field.is_null()) return std::nullopt;
  return field.as<std::string>();
}

// pqxx 6.4 sends a null `const char*` as SQL NULL.
const char* nullable(const std::optional<std::string>& value) { return value ? value->c_str() : nullptr; }

}  // namespace

std::vector<OidcServerSummary> OidcServerRepository::list_summaries() {
  pqxx::read_transaction tx(connection_);
  std::vector<OidcServerSummary> servers;
  for (const auto& row : tx.exec("SELECT pid, name FROM oidc_servers ORDER BY pid")) {
    servers.push_back({row["pid"].as<int>(), row["name"].as<std::string>()});
  }
  return servers;
}

std::optional<OidcServerPublic> OidcServerRepository::find_public(int pid) {
  pqxx::read_transaction tx(connection_);
  auto rows = tx.exec_params(
      "SELECT pid, name, issuer, client_id, scopes, custom_token_params, token_endpoint_auth_method, system_scopes,"
      " auth_well_known, token_endpoint,"
      " fhir_endpoint, response_type, patient_id_claim, organization_id, notes FROM oidc_servers WHERE pid = $1",
      pid);
  if (rows.empty()) return std::nullopt;
  const auto& row = rows[0];
  OidcServerPublic server;
  server.pid = row["pid"].as<int>();
  server.name = row["name"].as<std::string>();
  server.issuer = row["issuer"].as<std::string>();
  server.client_id = optional_text(row["client_id"]);
  server.scopes = optional_text(row["scopes"]);
  server.custom_token_params = optional_text(row["custom_token_params"]);
  server.token_endpoint_auth_method = row["token_endpoint_auth_method"].as<std::string>();
  server.system_scopes = optional_text(row["system_scopes"]);
  server.auth_well_known = optional_text(row["auth_well_known"]);
  server.token_endpoint = optional_text(row["token_endpoint"]);
  server.fhir_endpoint = optional_text(row["fhir_endpoint"]);
  server.response_type = row["response_type"].as<std::string>();
  server.patient_id_claim = row["patient_id_claim"].as<std::string>();
  server.organization_id = optional_text(row["organization_id"]);
  server.notes = optional_text(row["notes"]);
  return server;
}

std::optional<OidcServerForExchange> OidcServerRepository::find_for_exchange(int pid) {
  auto definition = find_public(pid);
  if (!definition) return std::nullopt;
  pqxx::read_transaction tx(connection_);
  const auto row = tx.exec_params1("SELECT client_secret, jwk_text, jwk_file FROM oidc_servers WHERE pid = $1", pid);
  return OidcServerForExchange{std::move(*definition), optional_text(row["client_secret"]),
                               optional_text(row["jwk_text"]), optional_text(row["jwk_file"])};
}

int OidcServerRepository::upsert_by_issuer(const config::OidcServerDefinition& d) {
  pqxx::work tx(connection_);
  auto row = tx.exec_params1(
      "INSERT INTO oidc_servers (name, issuer, client_id, client_secret, jwk_text, jwk_file, auth_well_known,"
      " scopes, fhir_endpoint, token_endpoint, custom_token_params, response_type, organization_id, notes,"
      " token_endpoint_auth_method, system_scopes, patient_id_claim)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
      " ON CONFLICT ((rtrim(issuer, '/'))) DO UPDATE SET"
      " name = EXCLUDED.name, issuer = EXCLUDED.issuer, client_id = EXCLUDED.client_id,"
      // Secrets the configuration leaves out are kept: an admin may have set them with SQL.
      " client_secret = coalesce(EXCLUDED.client_secret, oidc_servers.client_secret),"
      " jwk_text = CASE WHEN EXCLUDED.jwk_file IS NOT NULL THEN NULL"
      "            ELSE coalesce(EXCLUDED.jwk_text, oidc_servers.jwk_text) END,"
      " jwk_file = CASE WHEN EXCLUDED.jwk_text IS NOT NULL THEN NULL"
      "            ELSE coalesce(EXCLUDED.jwk_file, oidc_servers.jwk_file) END,"
      " auth_well_known = EXCLUDED.auth_well_known, scopes = EXCLUDED.scopes,"
      " fhir_endpoint = EXCLUDED.fhir_endpoint, token_endpoint = EXCLUDED.token_endpoint,"
      " custom_token_params = EXCLUDED.custom_token_params, response_type = EXCLUDED.response_type,"
      " organization_id = EXCLUDED.organization_id, notes = EXCLUDED.notes,"
      " token_endpoint_auth_method = EXCLUDED.token_endpoint_auth_method, system_scopes = EXCLUDED.system_scopes,"
      " patient_id_claim = EXCLUDED.patient_id_claim"
      " RETURNING pid",
      d.name, d.issuer, nullable(d.client_id), nullable(d.client_secret), nullable(d.jwk_text),
      nullable(d.jwk_file), nullable(d.auth_well_known), nullable(d.scopes), nullable(d.fhir_endpoint),
      nullable(d.token_endpoint), nullable(d.custom_token_params), d.response_type, nullable(d.organization_id),
      nullable(d.notes), d.token_endpoint_auth_method, nullable(d.system_scopes), d.patient_id_claim);
  tx.commit();
  return row["pid"].as<int>();
}

}  // namespace p2p::store
