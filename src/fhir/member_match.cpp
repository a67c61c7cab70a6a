#include "p2p/fhir/member_match.hpp"

#include <algorithm>
#include <cctype>
#include <regex>

#include "p2p/fhir/source_url.hpp"

namespace p2p::fhir {
namespace {

using nlohmann::json;

const std::string kPrefix = "sourcePayer.memberMatch.";
const std::string kCoverageToMatchId = "coverage-to-match";
const std::string kCoverageToLinkId = "coverage-to-link";
const std::string kConsentId = "consent";

[[noreturn]] void refuse(const std::string& path, const std::string& what) {
  throw MemberMatchInputError(kPrefix + path + " " + what);
}

bool is_fhir_date(const std::string& text) {
  static const std::regex date(R"(\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?)");
  return std::regex_match(text, date);
}

bool is_full_date(const std::string& text) { return text.size() == 10 && is_fhir_date(text); }

std::string joined(const std::string& path, const char* name) { return path.empty() ? name : path + "." + name; }

const json& member(const json& object, const char* name, const std::string& path) {
  const auto found = object.find(name);
  if (found == object.end() || found->is_null()) refuse(joined(path, name), "is required");
  return *found;
}

std::string nonempty_string(const json& object, const char* name, const std::string& path) {
  const json& value = member(object, name, path);
  if (!value.is_string() || value.get_ref<const std::string&>().empty()) {
    refuse(joined(path, name), "must be a non-empty string");
  }
  return value.get<std::string>();
}

// The object at `name`, checked to be a resource of `type` (resourceType may be left out).
json resource(const json& object, const char* name, const std::string& type) {
  const json& value = member(object, name, "");
  const std::string path = std::string(name);
  if (!value.is_object()) refuse(path, "must be a FHIR " + type + " resource (a JSON object)");
  json copy = value;
  const auto declared = copy.find("resourceType");
  if (declared == copy.end()) {
    copy["resourceType"] = type;
  } else if (*declared != type) {
    refuse(path + ".resourceType", "must be \"" + type + "\"");
  }
  return copy;
}

void check_patient(json& patient) {
  const std::string path = "patient";
  const json& names = member(patient, "name", path);
  if (!names.is_array() || names.empty() || !names[0].is_object()) {
    refuse(path + ".name", "must be a non-empty array of HumanName, e.g. [{\"family\": \"Person\", \"given\": [\"Pat\"]}]");
  }
  nonempty_string(names[0], "family", path + ".name[0]");
  const auto given = names[0].find("given");
  if (given != names[0].end() && (!given->is_array() || !std::all_of(given->begin(), given->end(), [](const json& g) {
                                    return g.is_string() && !g.get_ref<const std::string&>().empty();
                                  }))) {
    refuse(path + ".name[0].given", "must be an array of non-empty strings");
  }
  if (!is_full_date(nonempty_string(patient, "birthDate", path))) {
    refuse(path + ".birthDate", "must be a FHIR date (YYYY-MM-DD)");
  }
  const std::string gender = nonempty_string(patient, "gender", path);
  if (gender != "male" && gender != "female" && gender != "other" && gender != "unknown") {
    refuse(path + ".gender", "must be one of male, female, other, unknown");
  }
  patient["id"] = kMemberPatientId;
}

// HRexCoverage: status, relationship, payor, and the member id as an identifier or subscriberId.
void check_coverage(json& coverage, const std::string& path, const std::string& id) {
  const std::string status = nonempty_string(coverage, "status", path);
  if (status != "active" && status != "cancelled" && status != "draft" && status != "entered-in-error") {
    refuse(path + ".status", "must be one of active, cancelled, draft, entered-in-error");
  }
  if (!member(coverage, "relationship", path).is_object()) {
    refuse(path + ".relationship", "must be a CodeableConcept (subscriber-relationship, e.g. self)");
  }
  const json& payors = member(coverage, "payor", path);
  if (!payors.is_array() || payors.empty() || !payors[0].is_object() || payors[0].empty()) {
    refuse(path + ".payor", "must be a non-empty array of references to the payer, e.g. "
                            "[{\"identifier\": {\"system\": \"http://hl7.org/fhir/sid/us-npi\", \"value\": \"...\"}}]");
  }
  const auto identifiers = coverage.find("identifier");
  const bool has_identifier = identifiers != coverage.end() && identifiers->is_array() &&
                              std::any_of(identifiers->begin(), identifiers->end(), [](const json& identifier) {
                                return identifier.is_object() && identifier.contains("value") &&
                                       identifier["value"].is_string() && !identifier["value"].get<std::string>().empty();
                              });
  const auto subscriber_id = coverage.find("subscriberId");
  const bool has_subscriber_id =
      subscriber_id != coverage.end() && subscriber_id->is_string() && !subscriber_id->get<std::string>().empty();
  if (!has_identifier && !has_subscriber_id) {
    refuse(path + ".identifier", "or " + path + ".subscriberId is required: the member id on that payer's card");
  }
  coverage["id"] = id;
  coverage["beneficiary"] = {{"reference", "Patient/" + std::string(kMemberPatientId)}};
}

json coding(const char* system, const char* code) { return {{"system", system}, {"code", code}}; }

// The HRex Consent of the short form {"policy": "regular"|"sensitive", "start": date, "end": date}:
// the member gives it, the old payer (performer) discloses to the new one (IRCP).
json consent_from_short_form(const json& short_form, const json& old_payer, const json& new_payer) {
  const std::string path = "consent";
  for (const auto& [key, value] : short_form.items()) {
    if (key != "policy" && key != "start" && key != "end") {
      refuse(path + "." + key, "is not a member of the short form (policy, start, end); send a complete HRex Consent "
                                "resource (with resourceType) for anything else");
    }
  }
  const std::string policy = nonempty_string(short_form, "policy", path);
  if (policy != "regular" && policy != "sensitive") {
    refuse(path + ".policy", "must be \"regular\" (all but sensitive data) or \"sensitive\" (everything)");
  }
  const std::string start = nonempty_string(short_form, "start", path);
  const std::string end = nonempty_string(short_form, "end", path);
  if (!is_full_date(start)) refuse(path + ".start", "must be a date (YYYY-MM-DD)");
  if (!is_full_date(end)) refuse(path + ".end", "must be a date (YYYY-MM-DD)");
  if (end < start) refuse(path + ".end", "must not be before " + path + ".start");
  const std::string member_reference = "Patient/" + std::string(kMemberPatientId);
  return {
      {"resourceType", "Consent"},
      {"status", "active"},
      {"scope", {{"coding", json::array({coding("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy")})}}},
      {"category", json::array({{{"coding", json::array({coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "IDSCL")})}}})},
      {"patient", {{"reference", member_reference}}},
      {"performer", json::array({{{"reference", member_reference}}})},
      {"policy", json::array({{{"uri", std::string(policy == "regular" ? kHrexConsentPolicyRegular
                                                                        : kHrexConsentPolicySensitive)}}})},
      {"provision",
       {{"type", "permit"},
        {"period", {{"start", start}, {"end", end}}},
        {"actor",
         json::array(
             {{{"role", {{"coding", json::array({coding("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "performer")})}}},
               {"reference", old_payer}},
              {{"role", {{"coding", json::array({coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP")})}}},
               {"reference", new_payer}}})},
        {"action", json::array({{{"coding", json::array({coding("http://terminology.hl7.org/CodeSystem/consentaction", "disclose")})}}})}}}};
}

// A complete HRex Consent: the policy is one of HRex's two, the period has both ends; its member
// references become local.
json check_consent_resource(json consent) {
  const std::string path = "consent";
  const std::string status = nonempty_string(consent, "status", path);
  if (status != "active") refuse(path + ".status", "must be active");
  const json& policies = member(consent, "policy", path);
  const bool known_policy =
      policies.is_array() && policies.size() == 1 && policies[0].is_object() && policies[0].contains("uri") &&
      (policies[0]["uri"] == kHrexConsentPolicyRegular || policies[0]["uri"] == kHrexConsentPolicySensitive);
  if (!known_policy) {
    refuse(path + ".policy", "must hold one policy whose uri is " + std::string(kHrexConsentPolicyRegular) + " or " +
                                 std::string(kHrexConsentPolicySensitive));
  }
  const json& provision = member(consent, "provision", path);
  if (!provision.is_object()) refuse(path + ".provision", "must be an object");
  const json& period = member(provision, "period", path + ".provision");
  if (!period.is_object()) refuse(path + ".provision.period", "must be a Period");
  const std::string start = nonempty_string(period, "start", path + ".provision.period");
  const std::string end = nonempty_string(period, "end", path + ".provision.period");
  if (!is_fhir_date(start.substr(0, 10))) refuse(path + ".provision.period.start", "must be a date or dateTime");
  if (!is_fhir_date(end.substr(0, 10))) refuse(path + ".provision.period.end", "must be a date or dateTime");
  if (end < start) refuse(path + ".provision.period.end", "must not be before the start");
  const std::string member_reference = "Patient/" + std::string(kMemberPatientId);
  consent["patient"] = {{"reference", member_reference}};
  if (!consent.contains("performer")) consent["performer"] = json::array({{{"reference", member_reference}}});
  return consent;
}

// What the job keeps of the source's MemberIdentifier (it is stored and shown in the job JSON): its
// type, system and value, each checked and bounded; null when it has no usable value.
json kept_identifier(const json& identifier) {
  const auto text = [&identifier](const char* key) -> std::optional<std::string> {
    const auto found = identifier.find(key);
    if (found == identifier.end() || !found->is_string()) return std::nullopt;
    const auto& value = found->get_ref<const std::string&>();
    if (value.empty() || value.size() > 256) return std::nullopt;
    return value;
  };
  const auto value = text("value");
  if (!value) return nullptr;
  json kept = json::object();
  const auto type = identifier.find("type");
  if (type != identifier.end() && type->is_object() && type->contains("coding") && (*type)["coding"].is_array() &&
      !(*type)["coding"].empty() && (*type)["coding"][0].is_object()) {
    const json& coding = (*type)["coding"][0];
    json kept_coding = json::object();
    for (const char* key : {"system", "code"}) {
      if (coding.contains(key) && coding[key].is_string() && coding[key].get_ref<const std::string&>().size() <= 256) {
        kept_coding[key] = coding[key];
      }
    }
    kept["type"] = {{"coding", json::array({kept_coding})}};
  }
  if (const auto system = text("system")) kept["system"] = *system;
  kept["value"] = *value;
  return kept;
}

json parameter(const char* name, json resource) { return {{"name", name}, {"resource", std::move(resource)}}; }

std::string outcome_lowercase(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower;
}

// Replaces {"reference": "Patient/member"} anywhere under `node` with the target's member.
void point_member_at(json& node, const std::string& target_reference) {
  if (node.is_object()) {
    const auto reference = node.find("reference");
    if (reference != node.end() && *reference == "Patient/" + std::string(kMemberPatientId)) *reference = target_reference;
    for (auto& [key, value] : node.items()) {
      if (value.is_structured()) point_member_at(value, target_reference);
    }
  } else if (node.is_array()) {
    for (auto& item : node) point_member_at(item, target_reference);
  }
}

}  // namespace

json member_match_parameters(const json& member_match) {
  if (!member_match.is_object()) {
    throw MemberMatchInputError("sourcePayer.memberMatch must be an object with patient, coverageToMatch, "
                                "coverageToLink and consent");
  }
  for (const auto& [key, value] : member_match.items()) {
    if (key != "patient" && key != "coverageToMatch" && key != "coverageToLink" && key != "consent") {
      refuse(key, "is not known (patient, coverageToMatch, coverageToLink, consent)");
    }
  }
  json patient = resource(member_match, "patient", "Patient");
  check_patient(patient);
  json to_match = resource(member_match, "coverageToMatch", "Coverage");
  check_coverage(to_match, "coverageToMatch", kCoverageToMatchId);
  json to_link = resource(member_match, "coverageToLink", "Coverage");
  check_coverage(to_link, "coverageToLink", kCoverageToLinkId);
  const json& given = member(member_match, "consent", "");
  if (!given.is_object()) refuse("consent", "must be an object: {\"policy\", \"start\", \"end\"} or an HRex Consent");
  json consent = given.contains("resourceType") ? check_consent_resource(resource(member_match, "consent", "Consent"))
                                                : consent_from_short_form(given, to_match["payor"][0], to_link["payor"][0]);
  consent["id"] = kConsentId;
  return {{"resourceType", "Parameters"},
          {"parameter", json::array({parameter("MemberPatient", std::move(patient)),
                                     parameter("CoverageToMatch", std::move(to_match)),
                                     parameter("CoverageToLink", std::move(to_link)),
                                     parameter("Consent", std::move(consent))})}};
}

MemberMatchAnswer read_member_match_answer(std::string_view body, std::string_view source_fhir_endpoint) {
  const json answer = json::parse(body, nullptr, false);
  if (answer.is_discarded() || !answer.is_object() || answer.value("resourceType", "") != "Parameters") {
    throw std::invalid_argument("the source payer's $member-match answer is not a FHIR Parameters resource");
  }
  MemberMatchAnswer read;
  const json parameters = answer.value("parameter", json::array());
  if (!parameters.is_array()) throw std::invalid_argument("the source payer's $member-match answer has no parameter list");
  for (const auto& item : parameters) {
    if (!item.is_object()) continue;
    const std::string name = item.value("name", "");
    if (name == "MemberIdentifier" && item.contains("valueIdentifier") && item["valueIdentifier"].is_object()) {
      read.member_identifier = kept_identifier(item["valueIdentifier"]);
    } else if (name == "MemberId" && item.contains("valueReference") && item["valueReference"].is_object()) {
      const std::string reference = item["valueReference"].value("reference", "");
      std::string_view path = reference;
      // Relative (Patient/x), or absolute under the source's FHIR endpoint; a version is ignored.
      const std::string endpoint = std::string(source_fhir_endpoint) + "/";
      if (path.starts_with(endpoint)) path.remove_prefix(endpoint.size());
      if (!path.starts_with("Patient/")) {
        throw std::invalid_argument("the source payer's $member-match answer has a MemberId that is not a Patient of "
                                    "its FHIR endpoint: " + reference.substr(0, 200));
      }
      path.remove_prefix(8);
      const std::string id(path.substr(0, path.find('/')));
      const std::string_view rest = path.substr(id.size());
      const bool versioned = rest.starts_with("/_history/") && rest.size() > 10 &&
                             rest.substr(10).find('/') == std::string_view::npos;
      if (!is_patient_id(id) || (!rest.empty() && !versioned)) {
        throw std::invalid_argument("the source payer's $member-match answer has a MemberId whose Patient id is not a "
                                    "FHIR id: " + reference.substr(0, 200));
      }
      read.member_id = id;
    }
  }
  if (read.member_identifier.is_null()) {
    throw std::invalid_argument("the source payer's $member-match answer has no MemberIdentifier with a value");
  }
  return read;
}

std::string single_patient_id(std::string_view body) {
  const json bundle = json::parse(body, nullptr, false);
  if (bundle.is_discarded() || !bundle.is_object() || bundle.value("resourceType", "") != "Bundle") {
    throw std::invalid_argument("the source payer's Patient search did not answer with a Bundle");
  }
  std::vector<std::string> ids;
  for (const auto& entry : bundle.value("entry", json::array())) {
    if (!entry.is_object() || !entry.contains("resource") || !entry["resource"].is_object()) continue;
    const json& found = entry["resource"];
    if (found.value("resourceType", "") != "Patient") continue;  // included resources, OperationOutcomes
    if (entry.contains("search") && entry["search"].is_object() && entry["search"].value("mode", "match") != "match") continue;
    ids.push_back(found.value("id", ""));
  }
  if (ids.size() != 1) {
    throw std::invalid_argument("the source payer's Patient search by the member identifier that $member-match "
                                "returned found " + std::to_string(ids.size()) + " patients, not exactly one");
  }
  if (!is_patient_id(ids[0])) throw std::invalid_argument("the source payer's Patient search returned a Patient without a valid id");
  return ids[0];
}

std::string refusal_kind(std::string_view outcome_text) {
  return outcome_lowercase(outcome_text).find("consent") != std::string::npos ? "consent-refused" : "no-match";
}

json consent_for_target(const json& parameters, const std::string& consent_id, const std::string& target_patient_id,
                        const std::string& tag_system, const std::string& tag_code) {
  json consent;
  for (const auto& item : parameters.value("parameter", json::array())) {
    if (item.value("name", "") == "Consent") consent = item["resource"];
  }
  if (!consent.is_object()) throw std::invalid_argument("the member-match parameters have no Consent");
  consent["id"] = consent_id;
  point_member_at(consent, "Patient/" + target_patient_id);
  json& meta = consent["meta"];
  if (!meta.is_object()) meta = json::object();
  if (!meta["tag"].is_array()) meta["tag"] = json::array();
  meta["tag"].push_back({{"system", tag_system}, {"code", tag_code}});
  return consent;
}

}  // namespace p2p::fhir
