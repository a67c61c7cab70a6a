#pragma once
// Table oidc_servers: the source payers. Reads return the public view only (no client secret, no
// JWK), so nothing that serves the API can leak them by accident.
#include <optional>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "p2p/config/config.hpp"

namespace p2p::store {

struct OidcServerSummary {
  int pid = 0;
  std::string name;
};

// Everything about a definition that may be shown to a caller.
struct OidcServerPublic {
  int pid = 0;
  std::string name;
  std::string issuer;
  std::optional<std::string> client_id;
  std::optional<std::string> scopes;
  std::optional<std::string> custom_token_params;
  std::string token_endpoint_auth_method = "client_secret_basic";
  std::optional<std::string> system_scopes;
  std::optional<std::string> auth_well_known;
  std::optional<std::string> token_endpoint;
  std::optional<std::string> fhir_endpoint;
  std::string response_type;
  std::string patient_id_claim = "fhirUser";  // the connect flow: "fhirUser" or "sub" of the id token
  std::optional<std::string> organization_id;
  std::optional<std::string> notes;
};

// What the job runner needs to call the source payer, secret included. Never serialised to a response.
struct OidcServerForExchange {
  OidcServerPublic definition;
  std::optional<std::string> client_secret;
  std::optional<std::string> jwk_text;  // the payer's JWK (or JWK Set): verifies its id tokens
  std::optional<std::string> jwk_file;  // the same, as a file the service reads
};

class OidcServerRepository {
 public:
  explicit OidcServerRepository(pqxx::connection& connection) : connection_(connection) {}

  std::vector<OidcServerSummary> list_summaries();
  std::optional<OidcServerPublic> find_public(int pid);
  std::optional<OidcServerForExchange> find_for_exchange(int pid);

  // Inserts the definition, or updates the one whose issuer matches after trailing-slash
  // normalisation. Returns its pid. Idempotent. A client secret or JWK the definition leaves out is
  // kept (an admin may have set it with SQL); one it sets replaces the stored one.
  int upsert_by_issuer(const config::OidcServerDefinition& definition);

 private:
  pqxx::connection& connection_;
};

}  // namespace p2p::store
