#include "batch_job_body.hpp"

#include <chrono>
#include <regex>

#include <nlohmann/json.hpp>

#include "p2p/fhir/member_match.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/http/problem.hpp"
#include "p2p/util/time.hpp"

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

std::string target_patient_id(const json& target) {
  const auto id = string_field(target, "patientId", "targetPayer.patientId").value_or("");
  if (!fhir::is_fhir_id(id)) {
    throw http::ApiError(400, "targetPayer.patientId is required: the member's Patient id at the new payer "
                              "(a FHIR id: 1-64 of A-Z a-z 0-9 - .)");
  }
  return id;
}

// repeatEveryDays and repeatUntil (the payer-mediated form's scheduled re-pulls).
void read_repeat(const json& body, BatchJobBody& parsed) {
  const auto every = body.find("repeatEveryDays");
  const auto until = body.find("repeatUntil");
  const bool has_every = every != body.end() && !every->is_null();
  const bool has_until = until != body.end() && !until->is_null();
  if (!has_every && !has_until) return;
  if (has_every != has_until) {
    throw http::ApiError(400, "repeatEveryDays and repeatUntil go together: a re-pull every so many days, until a date");
  }
  if (!every->is_number_integer() || every->get<long long>() < 1 || every->get<long long>() > 366) {
    throw http::ApiError(400, "repeatEveryDays must be a whole number of days from 1 to 366 (CMS: at least every "
                              "quarter while coverage is concurrent, e.g. 90)");
  }
  static const std::regex date(R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))");
  if (!until->is_string() || !std::regex_match(until->get_ref<const std::string&>(), date)) {
    throw http::ApiError(400, "repeatUntil must be a date (YYYY-MM-DD)");
  }
  const std::string today = util::iso8601_utc(std::chrono::system_clock::now()).substr(0, 10);
  if (until->get<std::string>() <= today) throw http::ApiError(400, "repeatUntil must be after today (" + today + ")");
  parsed.repeat_every_days = every->get<int>();
  parsed.repeat_until = until->get<std::string>();
}

// The payer-mediated form: {"sourcePayer": {"memberMatch": {...}, "retrieval", "since"}, "targetPayer"}.
BatchJobBody parse_payer_mediated(const json& body, const json& source, const json& target) {
  for (const char* member_only : {"oidcToken", "oidcRefreshToken", "patientId", "fhirBundleRequest"}) {
    if (source.contains(member_only)) {
      throw http::ApiError(400, std::string("sourcePayer.") + member_only + " is not used with sourcePayer.memberMatch: "
                                "in the payer-mediated exchange the service authenticates as itself and finds the "
                                "member with $member-match; send one form or the other");
    }
  }
  BatchJobBody parsed;
  read_repeat(body, parsed);
  try {
    parsed.member_match_parameters = fhir::member_match_parameters(source["memberMatch"]).dump();
  } catch (const fhir::MemberMatchInputError& error) {
    throw http::ApiError(400, error.what());
  }
  // A consent that has already ended would only be refused by the old payer.
  const json& consent = source["memberMatch"]["consent"];
  const std::string today = util::iso8601_utc(std::chrono::system_clock::now()).substr(0, 10);
  if (!consent.contains("resourceType") && consent.value("end", "") < today) {
    throw http::ApiError(400, "sourcePayer.memberMatch.consent.end must not be in the past (today is " + today + ")");
  }
  parsed.retrieval = string_field(source, "retrieval", "sourcePayer.retrieval").value_or("everything");
  if (parsed.retrieval != "everything" && parsed.retrieval != "export") {
    throw http::ApiError(400, "sourcePayer.retrieval must be \"everything\" (Patient/{id}/$everything, the default) or "
                              "\"export\" (bulk Patient/{id}/$export)");
  }
  parsed.since = string_field(source, "since", "sourcePayer.since");
  if (parsed.since && !util::is_fhir_instant(*parsed.since)) {
    throw http::ApiError(400, "sourcePayer.since must be a FHIR instant with a time zone, e.g. 2026-09-01T00:00:00Z");
  }
  parsed.target_patient_id = target_patient_id(target);
  parsed.target_organization_id = string_field(target, "organizationId", "targetPayer.organizationId");
  return parsed;
}

// Copying and writing JSON recurse once per level (the payer-mediated form copies the caller's
// resources): deeper bodies are refused while they are read, before anything recurses. `shape` says
// what the body must be.
json parse_object(std::string_view text, const std::string& shape) {
  constexpr int kMaxDepth = 64;
  const json::parser_callback_t limit_depth = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxDepth) {
      throw http::ApiError(400, "the body is nested more than " + std::to_string(kMaxDepth) + " levels deep");
    }
    return true;
  };
  auto body = json::parse(text, limit_depth, false);
  if (body.is_discarded() || !body.is_object()) {
    throw http::ApiError(400, "the body must be a JSON object with " + shape + " (see /api/openapi.json)");
  }
  return body;
}

}  // namespace

AuthorizationBody parse_authorization_body(std::string_view text) {
  const json body = parse_object(text, "targetPayer and returnUrl");
  const json& target = object_field(body, "targetPayer");
  AuthorizationBody parsed;
  parsed.target_patient_id = target_patient_id(target);
  parsed.target_organization_id = string_field(target, "organizationId", "targetPayer.organizationId");
  const auto return_url = string_field(body, "returnUrl", "returnUrl");
  if (!return_url || return_url->empty()) {
    throw http::ApiError(400, "returnUrl is required: the portal page the member's browser comes back to, on "
                              "connect.allowedReturnUrls");
  }
  parsed.return_url = *return_url;
  parsed.bundle_request = string_field(body, "fhirBundleRequest", "fhirBundleRequest");
  return parsed;
}

std::string parse_completion_body(std::string_view text) {
  const json body = parse_object(text, "completionCode");
  const auto code = string_field(body, "completionCode", "completionCode");
  if (!code || code->empty() || code->size() > 128) {
    throw http::ApiError(400, "completionCode is required: the code the member connect flow's callback added to "
                              "your returnUrl");
  }
  return *code;
}

BatchJobBody parse_batch_job_body(std::string_view text) {
  const json body = parse_object(text, "sourcePayer and targetPayer");
  const json& source = object_field(body, "sourcePayer");
  const json& target = object_field(body, "targetPayer");
  if (source.contains("memberMatch")) return parse_payer_mediated(body, source, target);
  if (body.contains("repeatEveryDays") || body.contains("repeatUntil")) {
    throw http::ApiError(400, "repeatEveryDays and repeatUntil need the payer-mediated form (sourcePayer.memberMatch): "
                              "a member's tokens are deleted when their job ends, so there is nothing to re-pull with");
  }
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
  parsed.target_patient_id = target_patient_id(target);
  parsed.target_organization_id = string_field(target, "organizationId", "targetPayer.organizationId");
  return parsed;
}

}  // namespace p2p::api
