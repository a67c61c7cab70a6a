#pragma once
// The second half of the member connect flow, pure: the checks an OpenID Connect id token's claims
// must pass once its signature is verified (crypto/jws_verify.hpp; OpenID Connect Core 3.1.3.7), and
// the member's Patient id at the source, from the token response (SMART's `patient`) or the id token
// (`fhirUser` or `sub`, as the definition says).
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace p2p::oauth {

class IdTokenError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct IdTokenExpectations {
  std::string issuer;      // compared without trailing slashes
  std::string client_id;   // must be in aud; azp, when present, must be it
  std::string nonce_hash;  // hex SHA-256 of the nonce sent
  long long now = 0;       // seconds since the epoch
  long long leeway_seconds = 120;
};

// Throws IdTokenError saying which claim failed (never its value, but for iss).
void check_id_token_claims(const nlohmann::json& claims, const IdTokenExpectations& expected);

// The Patient id of a fhirUser claim: "Patient/123", or an absolute URL ending in "/Patient/123".
// nullopt for any other resource type (a Practitioner or RelatedPerson signing in) or a malformed one.
std::optional<std::string> patient_of_fhir_user(std::string_view fhir_user);

// The member's Patient id at the source: the token response's `patient` when it has one, otherwise the
// id token's `fhirUser` (claim "fhirUser") or `sub` (claim "sub"); nullopt when that is absent or not
// a FHIR id.
std::optional<std::string> member_patient_id(const std::optional<std::string>& token_patient,
                                             const nlohmann::json* id_token_claims, std::string_view claim);

}  // namespace p2p::oauth
