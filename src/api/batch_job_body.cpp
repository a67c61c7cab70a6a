#include "batch_job_body.hpp"

#include <nlohmann/json.hpp>

#include "p2p/fhir/source_url.hpp"
#include "p2p/http/problem.hpp"

namespace p2p::api {
namespace {

using nlohmann::json;

// A string member of `object` at `path`; nullopt when absent or null. ApiError(400) for other types.
std::optional<std::string> string_field(const json& object, const char* name, const std::string& path) {
  const auto found = object.find(name);
  if (found == object.end() || found->is_null()) return std::nullopt;
  if (!found->is_string()) throw http::ApiError(400, path + " must be a string");
  return found->get<std::string>();
}

const json& object_field(const json& body, const char* name) {
  const auto found = body.find(name);
  if (found == body.end() || !found->is_object()) {
    throw http::ApiError(400, std::string(name) + " is required and must be an object (see the request body in /api/openapi.json)");
  }
  return *found;
}

}  // namespace

BatchJobBody parse_batch_job_body(std::string_view text) {
  const auto body = json::parse(text, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    throw http::ApiError(400, "the body must be a JSON object with sourcePayer and targetPayer (see /api/openapi.json)");
  }
  const json& source = object_field(body, "sourcePayer");
  const json& target = object_field(body, "targetPayer");
  BatchJobBody parsed;
  const auto token = string_field(source, "oidcToken", "sourcePayer.oidcToken");
  if (!token || token->empty()) {
    throw http::ApiError(400, "sourcePayer.oidcToken is required: the member's access token at the source payer");
  }
  parsed.access_token = *token;
  parsed.refresh_token = string_field(source, "oidcRefreshToken", "sourcePayer.oidcRefreshToken");
  if (parsed.refresh_token && parsed.refresh_token->empty()) parsed.refresh_token.reset();
  parsed.bundle_request = string_field(source, "fhirBundleRequest", "sourcePayer.fhirBundleRequest");
  parsed.source_patient_id = string_field(source, "patientId", "sourcePayer.patientId").value_or("");
  if (!fhir::is_fhir_id(parsed.source_patient_id)) {
    throw http::ApiError(400, "sourcePayer.patientId is required: the member's Patient id at the source payer "
                              "(a FHIR id: 1-64 of A-Z a-z 0-9 - .)");
  }
  parsed.target_patient_id = string_field(target, "patientId", "targetPayer.patientId").value_or("");
  if (!fhir::is_fhir_id(parsed.target_patient_id)) {
    throw http::ApiError(400, "targetPayer.patientId is required: the member's Patient id at the new payer "
                              "(a FHIR id: 1-64 of A-Z a-z 0-9 - .)");
  }
  parsed.target_organization_id = string_field(target, "organizationId", "targetPayer.organizationId");
  return parsed;
}

}  // namespace p2p::api
