#pragma once
// Creating a batch job from a parsed body (batch_job_body.hpp): what POST .../batch_job and the member
// connect flow's callback share. Private to src/api.
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "batch_job_body.hpp"
#include "p2p/http/message.hpp"
#include "p2p/config/config.hpp"
#include "p2p/crypto/signing_keys.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/store/batch_job_repository.hpp"
#include "p2p/store/oidc_server_repository.hpp"

namespace p2p::store {
class Database;
}

namespace p2p::api {

struct BatchJobCreation {
  store::Database& database;
  const crypto::TokenCipher& cipher;
  const crypto::SigningKeys& signing_keys;
  const config::ExchangeConfig& exchange;
  std::function<void()> job_created;  // tells this instance's runner to look for work now
};

// 503 when the target FHIR server is not configured: the first check of create_batch_job().
void require_target_configured(const BatchJobCreation& creation);

// The checks of create_batch_job() on the definition: 409 when it has no usable fhirEndpoint, needs a signing key the service lacks, or (payer flow) has
// no clientId. Throws http::ApiError.
void check_can_create(const BatchJobCreation& creation, const store::OidcServerPublic& server, bool payer);

// Checks the definition (404 when unknown; 409 when it has no usable fhirEndpoint, needs a signing key
// the service lacks, or has no clientId for the payer flow), the configuration (503 without a target
// FHIR server) and the bundle request (400), then creates the job (blocking: call it on the blocking
// pool). Throws http::ApiError for those; returns what the store did (created, replayed, key reused,
// or the member's job that has not ended), and wakes the runner for a created job.
store::CreateOutcome create_batch_job(const BatchJobCreation& creation, int pid, const BatchJobBody& body,
                                      const std::optional<std::string>& idempotency_key, const std::string& request_hash);

// The job as the API shows it (GET .../batch_job/{id}).
nlohmann::ordered_json job_json(const store::BatchJob& job);

// The answer to a creation: 202 (created) or 200 (the same request again) with the job and its
// Location; throws ApiError 409 (the member's job that has not ended, with its Location) or 422 (an
// Idempotency-Key used for another body).
http::Response created_job_response(int pid, const store::CreateOutcome& outcome, bool payer);

}  // namespace p2p::api
