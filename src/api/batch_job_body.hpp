#pragma once
// The body of POST /api/oidc_servers/{server_id}/batch_job, parsed and validated without touching the
// database: what the caller sends about the source and target payers. Two forms: the seed's
// (member-mediated: the member's own tokens and Patient id at the source) and the payer-mediated one
// (sourcePayer.memberMatch: the service authenticates as itself and finds the member with HRex
// $member-match). Private to src/api (the route and the fuzzer use it).
#include <optional>
#include <string>
#include <string_view>

namespace p2p::api {

struct BatchJobBody {
  // The payer-mediated form: the HRex $member-match Parameters built from sourcePayer.memberMatch
  // (JSON text), and sourcePayer.since (a FHIR instant) when given. The member-mediated members below
  // are then empty.
  std::optional<std::string> member_match_parameters;
  std::optional<std::string> since;
  std::string retrieval = "everything";  // sourcePayer.retrieval: "everything" or "export"
  // Scheduled re-pulls (payer-mediated only): every repeatEveryDays days (1-366), until repeatUntil
  // (YYYY-MM-DD, after today): both or neither.
  std::optional<int> repeat_every_days;
  std::optional<std::string> repeat_until;

  std::string access_token;                           // sourcePayer.oidcToken, non-empty
  std::optional<std::string> refresh_token;           // sourcePayer.oidcRefreshToken; empty counts as absent
  std::optional<std::string> bundle_request;          // sourcePayer.fhirBundleRequest, not yet checked
  std::string source_patient_id;                      // sourcePayer.patientId, a FHIR id
  std::string target_patient_id;                      // targetPayer.patientId, a FHIR id
  std::optional<std::string> target_organization_id;  // targetPayer.organizationId
};

// The body of POST /api/oidc_servers/{server_id}/authorizations (the member connect flow).
struct AuthorizationBody {
  std::string target_patient_id;                      // targetPayer.patientId, a FHIR id
  std::optional<std::string> target_organization_id;  // targetPayer.organizationId
  std::string return_url;                             // not yet checked against connect.allowedReturnUrls
  std::optional<std::string> bundle_request;          // fhirBundleRequest, not yet checked
};
AuthorizationBody parse_authorization_body(std::string_view body);
// The body of POST .../authorizations/{authorization_id}/batch_job: {"completionCode": "..."}, 1-128
// characters; the code.
std::string parse_completion_body(std::string_view body);

// Throws http::ApiError(400) saying which member is missing or wrong. The fhirBundleRequest is checked
// later, against the source payer's FHIR endpoint (fhir::resolve_bundle_request).
BatchJobBody parse_batch_job_body(std::string_view body);

}  // namespace p2p::api
