#include "p2p/oauth/id_token.hpp"

#include <nlohmann/json.hpp>

#include "p2p/fhir/source_url.hpp"
#include "p2p/util/crypto.hpp"
#include "p2p/util/url_rules.hpp"

namespace p2p::oauth {
namespace {

long long number_claim(const nlohmann::json& claims, const char* name) {
  const auto found = claims.find(name);
  if (found == claims.end() || !found->is_number()) {
    throw IdTokenError(std::string("the id token has no numeric ") + name + " claim");
  }
  // Seconds since 1970, within ten thousand years: anything else is not a time (and must not overflow).
  constexpr double kLimit = 3.2e11;
  const double value = found->get<double>();
  if (!(value > -kLimit && value < kLimit)) throw IdTokenError(std::string("the id token's ") + name + " is not a time");
  return static_cast<long long>(value);
}

std::optional<std::string> string_claim(const nlohmann::json& claims, const char* name) {
  const auto found = claims.find(name);
  if (found == claims.end() || !found->is_string()) return std::nullopt;
  return found->get<std::string>();
}

}  // namespace

void check_id_token_claims(const nlohmann::json& claims, const IdTokenExpectations& expected) {
  if (!string_claim(claims, "sub")) throw IdTokenError("the id token has no sub claim");
  const auto issuer = string_claim(claims, "iss");
  if (!issuer) throw IdTokenError("the id token has no iss claim");
  if (util::normalize_issuer(*issuer) != util::normalize_issuer(expected.issuer)) {
    throw IdTokenError("the id token's issuer is not the definition's issuer " + expected.issuer);
  }
  const auto aud = claims.find("aud");
  bool audience = false;
  std::size_t audiences = 0;
  if (aud != claims.end() && aud->is_string()) {
    audience = aud->get<std::string>() == expected.client_id;
    audiences = 1;
  } else if (aud != claims.end() && aud->is_array()) {
    for (const auto& item : *aud) {
      if (item.is_string() && item.get<std::string>() == expected.client_id) audience = true;
    }
    audiences = aud->size();
  }
  if (!audience) throw IdTokenError("the id token is not meant for this service (its aud is not the definition's clientId)");
  const auto azp = string_claim(claims, "azp");
  if ((azp && *azp != expected.client_id) || (!azp && audiences > 1)) {
    throw IdTokenError("the id token was issued to another party (azp)");
  }
  if (number_claim(claims, "exp") + expected.leeway_seconds < expected.now) throw IdTokenError("the id token has expired");
  if (number_claim(claims, "iat") > expected.now + expected.leeway_seconds) {
    throw IdTokenError("the id token was issued in the future (check the clocks)");
  }
  const auto nonce = string_claim(claims, "nonce");
  if (!nonce) throw IdTokenError("the id token has no nonce");
  const auto digest = util::sha256(*nonce);
  if (util::to_hex(digest.data(), digest.size()) != expected.nonce_hash) {
    throw IdTokenError("the id token's nonce is not the one this authorization sent (a replayed token)");
  }
}

std::optional<std::string> patient_of_fhir_user(std::string_view fhir_user) {
  const auto slash = fhir_user.rfind('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view id = fhir_user.substr(slash + 1);
  const std::string_view before = fhir_user.substr(0, slash);
  const bool patient = before == "Patient" || before.ends_with("/Patient");
  if (!patient || !fhir::is_patient_id(id)) return std::nullopt;
  if (before != "Patient" && util::check_absolute_http_url(fhir_user)) return std::nullopt;
  return std::string(id);
}

std::optional<std::string> member_patient_id(const std::optional<std::string>& token_patient,
                                             const nlohmann::json* id_token_claims, std::string_view claim) {
  if (token_patient) {
    if (fhir::is_patient_id(*token_patient)) return token_patient;
    return std::nullopt;
  }
  if (id_token_claims == nullptr) return std::nullopt;
  if (claim == "sub") {
    auto sub = string_claim(*id_token_claims, "sub");
    if (sub && fhir::is_patient_id(*sub)) return sub;
    return std::nullopt;
  }
  const auto fhir_user = string_claim(*id_token_claims, "fhirUser");
  if (!fhir_user) return std::nullopt;
  return patient_of_fhir_user(*fhir_user);
}

}  // namespace p2p::oauth
