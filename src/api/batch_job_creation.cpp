// Creating a batch job from a parsed request body: the checks against the source payer's definition
// and the service's configuration, then the insert (idempotent, one active job per member). Shared by
// POST .../batch_job and the member connect flow's callback.
#include "batch_job_creation.hpp"

#include "database_call.hpp"
#include "p2p/fhir/member_match.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/http/problem.hpp"

namespace p2p::api {

void require_target_configured(const BatchJobCreation& creation) {
  if (creation.exchange.fhir_persistence_url.empty()) {
    throw http::ApiError(503, "batch jobs are not available: the target FHIR server is not configured "
                              "(exchange.fhirPersistenceUrl / P2P_FHIR_PERSISTENCE_URL)");
  }
}

void check_can_create(const BatchJobCreation& creation, const store::OidcServerPublic& server, bool payer) {
  const int pid = server.pid;
  const std::string named = "OIDC server " + std::to_string(pid);
  switch (fhir::source_endpoint_problem(server.fhir_endpoint, creation.exchange.allow_plain_http)) {
    case fhir::SourceEndpointProblem::kNone:
      break;
    case fhir::SourceEndpointProblem::kMissing:
      throw http::ApiError(409, named + " has no fhirEndpoint; an admin must set it first");
    case fhir::SourceEndpointProblem::kNotAbsoluteHttp:
      throw http::ApiError(409, named + "'s fhirEndpoint is not an absolute http(s) URL; an admin must correct it");
    case fhir::SourceEndpointProblem::kPlainHttp:
      throw http::ApiError(409, named + "'s fhirEndpoint uses plain http://, which is refused "
                                        "(P2P_ALLOW_PLAIN_HTTP=true allows it for local tests only)");
  }
  if (server.token_endpoint_auth_method == "private_key_jwt" && creation.signing_keys.empty()) {
    // The job could not refresh the member's tokens: refused before the tokens are stored.
    throw http::ApiError(409, named + " authenticates with private_key_jwt, but this service has no "
                                      "signing key: an admin must set exchange.clientSigningKeys "
                                      "(P2P_CLIENT_SIGNING_KEYS)");
  }
  if (payer && !server.client_id) {
    throw http::ApiError(409, named + " has no clientId: the payer-mediated exchange authenticates this "
                                      "service to the source payer as a client (client_credentials); "
                                      "an admin must set the client id the source payer registered");
  }
}

store::CreateOutcome create_batch_job(const BatchJobCreation& creation, int pid, const BatchJobBody& body,
                                      const std::optional<std::string>& idempotency_key, const std::string& request_hash) {
  const bool payer = body.member_match_parameters.has_value();
  require_target_configured(creation);
  const auto server = require_oidc_server(creation.database, pid);
  check_can_create(creation, server, payer);
  store::NewBatchJob job{.idempotency_key = idempotency_key,
                         .request_hash = request_hash,
                         .server_pid = pid,
                         .source_patient_id = body.source_patient_id,
                         .target_patient_id = body.target_patient_id,
                         .target_organization_id = body.target_organization_id,
                         .first_url = "",
                         .access_token = body.access_token,
                         .refresh_token = body.refresh_token,
                         .member_match_request = body.member_match_parameters,
                         .since = body.since,
                         .repeat_every_days = body.repeat_every_days,
                         .repeat_until = body.repeat_until,
                         .retrieval = body.retrieval};
  try {
    job.first_url = payer ? fhir::member_match_url(*server.fhir_endpoint)
                          : fhir::resolve_bundle_request(*server.fhir_endpoint, body.bundle_request.value_or(""),
                                                         job.source_patient_id);
  } catch (const fhir::SourceUrlError& error) {
    throw http::ApiError(400, std::string("sourcePayer.") + error.what());
  }
  const auto outcome = with_database(creation.database, [&](pqxx::connection& connection) {
    return store::BatchJobRepository(connection, creation.cipher).create(job);
  });
  if (outcome.kind == store::CreateOutcome::Kind::kCreated && creation.job_created) creation.job_created();
  return outcome;
}

}  // namespace p2p::api
