#include "p2p/fhir/page_transform.hpp"

#include <stdexcept>
#include <utility>

#include "page_rules.hpp"
#include "p2p/util/crypto.hpp"

namespace p2p::fhir {
namespace {

using nlohmann::json;
using detail::kMaxPageDepth;

// A resource's type or id as a string, or "" when it is missing or not a string (pages are untrusted).
std::string string_member(const json& resource, const char* key) {
  const auto found = resource.find(key);
  return found != resource.end() && found->is_string() ? found->get<std::string>() : std::string();
}

}  // namespace

bool is_r4_resource_type(std::string_view type) {
  static const std::set<std::string, std::less<>> kTypes = {
      "Account", "ActivityDefinition", "AdverseEvent", "AllergyIntolerance", "Appointment", "AppointmentResponse",
      "AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct", "BodyStructure", "Bundle", "CapabilityStatement",
      "CarePlan", "CareTeam", "CatalogEntry", "ChargeItem", "ChargeItemDefinition", "Claim", "ClaimResponse",
      "ClinicalImpression", "CodeSystem", "Communication", "CommunicationRequest", "CompartmentDefinition",
      "Composition", "ConceptMap", "Condition", "Consent", "Contract", "Coverage", "CoverageEligibilityRequest",
      "CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition", "DeviceMetric", "DeviceRequest",
      "DeviceUseStatement", "DiagnosticReport", "DocumentManifest", "DocumentReference", "EffectEvidenceSynthesis",
      "Encounter", "Endpoint", "EnrollmentRequest", "EnrollmentResponse", "EpisodeOfCare", "EventDefinition",
      "Evidence", "EvidenceVariable", "ExampleScenario", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal",
      "GraphDefinition", "Group", "GuidanceResponse", "HealthcareService", "ImagingStudy", "Immunization",
      "ImmunizationEvaluation", "ImmunizationRecommendation", "ImplementationGuide", "InsurancePlan", "Invoice",
      "Library", "Linkage", "List", "Location", "Measure", "MeasureReport", "Media", "Medication",
      "MedicationAdministration", "MedicationDispense", "MedicationKnowledge", "MedicationRequest",
      "MedicationStatement", "MedicinalProduct", "MedicinalProductAuthorization", "MedicinalProductContraindication",
      "MedicinalProductIndication", "MedicinalProductIngredient", "MedicinalProductInteraction",
      "MedicinalProductManufactured", "MedicinalProductPackaged", "MedicinalProductPharmaceutical",
      "MedicinalProductUndesirableEffect", "MessageDefinition", "MessageHeader", "MolecularSequence", "NamingSystem",
      "NutritionOrder", "Observation", "ObservationDefinition", "OperationDefinition", "OperationOutcome",
      "Organization", "OrganizationAffiliation", "Parameters", "Patient", "PaymentNotice", "PaymentReconciliation",
      "Person", "PlanDefinition", "Practitioner", "PractitionerRole", "Procedure", "Provenance", "Questionnaire",
      "QuestionnaireResponse", "RelatedPerson", "RequestGroup", "ResearchDefinition", "ResearchElementDefinition",
      "ResearchStudy", "ResearchSubject", "RiskAssessment", "RiskEvidenceSynthesis", "Schedule", "SearchParameter",
      "ServiceRequest", "Slot", "Specimen", "SpecimenDefinition", "StructureDefinition", "StructureMap", "Subscription",
      "Substance", "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
      "SubstanceSourceMaterial", "SubstanceSpecification", "SupplyDelivery", "SupplyRequest", "Task",
      "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet", "VerificationResult", "VisionPrescription"};
  return kTypes.contains(type);
}

bool is_error_warning(std::string_view warning) { return warning.starts_with("error: ") || warning.starts_with("fatal: "); }

const std::set<std::string, std::less<>>& default_resource_types() {
  static const std::set<std::string, std::less<>> kTypes = {
      "Patient", "Coverage", "ExplanationOfBenefit", "Claim", "ClaimResponse", "AllergyIntolerance", "CarePlan",
      "CareTeam", "Condition", "Device", "DiagnosticReport", "DocumentReference", "Binary", "Encounter", "Goal",
      "Immunization", "Location", "Medication", "MedicationDispense", "MedicationRequest", "MedicationStatement",
      "Observation", "Procedure", "ServiceRequest", "Specimen", "QuestionnaireResponse", "Practitioner",
      "PractitionerRole", "Organization", "RelatedPerson", "Provenance"};
  return kTypes;
}

bool never_written(std::string_view type) {
  static const std::set<std::string, std::less<>> kNever = {
      // They act on the target: notifications to any endpoint, workflow (the add-payer Task e-mails).
      "Subscription", "Task",
      // Conformance: they change how the target validates, searches and describes itself.
      "CapabilityStatement", "StructureDefinition", "ImplementationGuide", "SearchParameter", "MessageDefinition",
      "OperationDefinition", "CompartmentDefinition", "StructureMap", "GraphDefinition", "ExampleScenario",
      // Terminology: they change what codes mean to every application of the target.
      "CodeSystem", "ValueSet", "ConceptMap", "NamingSystem", "TerminologyCapabilities",
      // Not resources a server stores as data.
      "Bundle", "Parameters", "OperationOutcome"};
  return kNever.contains(type);
}

std::string target_id(std::string_view source_organization_id, std::string_view type, std::string_view source_id) {
  std::string id;
  append_target_id(id, source_organization_id, type, source_id);
  return id;
}

void append_target_id(std::string& out, std::string_view source_organization_id, std::string_view type,
                      std::string_view source_id) {
  thread_local std::string key;
  key.assign(source_organization_id).append("|").append(type).append("|").append(source_id);
  const auto digest = util::sha256(key);
  out.append("p2p-");
  util::append_hex(out, digest.data(), 16);  // the first 32 hex digits of the digest
}

std::optional<std::string> next_link(const json& page) {
  const auto links = page.find("link");
  if (links == page.end() || !links->is_array()) return std::nullopt;
  for (const auto& link : *links) {
    if (!link.is_object()) continue;  // pages are untrusted: no member is assumed to have its type
    const auto relation = link.find("relation");
    const auto url = link.find("url");
    if (relation != link.end() && *relation == "next" && url != link.end() && url->is_string()) {
      return url->get<std::string>();
    }
  }
  return std::nullopt;
}

namespace {

// Throws std::invalid_argument for a page this service cannot take: not a Bundle, or nested deeper
// than one can be (checked without recursion, before anything copies or walks the page).
void require_bundle(const json& page) {
  if (!page.is_object() || page.value("resourceType", json()) != "Bundle") {
    throw std::invalid_argument("the source answered with something that is not a FHIR Bundle");
  }
  if (detail::deeper_than(page, kMaxPageDepth)) {
    throw std::invalid_argument("the source's page is nested more than " + std::to_string(kMaxPageDepth) +
                                " levels deep; it is not a FHIR Bundle this service can take");
  }
}

}  // namespace

TransformedPage transform_page(const json& page, const TransformContext& context) {
  require_bundle(page);
  json copy = page;
  return transform_page(std::move(copy), context);
}

TransformedPage transform_page(json&& page, const TransformContext& context) {
  require_bundle(page);
  json empty = json::array();
  json& entries = page.contains("entry") && page["entry"].is_array() ? page["entry"] : empty;

  // First pass: where each entry goes, so urn:uuid and absolute fullUrl references can be rewritten.
  detail::Rewriter rewriter(context);
  for (const auto& entry : entries) {
    if (!entry.contains("resource") || !entry["resource"].is_object()) continue;
    if (!entry.contains("fullUrl") || !entry["fullUrl"].is_string()) continue;
    const auto& resource = entry["resource"];
    rewriter.add_full_url(entry["fullUrl"].get<std::string>(), string_member(resource, "resourceType"),
                          string_member(resource, "id"));
  }

  TransformedPage out;
  if (const auto total = page.find("total"); total != page.end() && total->is_number_unsigned()) {
    out.total = static_cast<long long>(std::min<std::uint64_t>(total->get<std::uint64_t>(), 1'000'000'000'000ULL));
  }
  detail::PageAssembly assembly(context, rewriter, out);
  json transaction_entries = json::array();
  for (auto& entry : entries) {
    const bool has_resource = entry.contains("resource") && entry["resource"].is_object();
    const std::string type = has_resource ? string_member(entry["resource"], "resourceType") : std::string();
    const std::string source_id = has_resource ? string_member(entry["resource"], "id") : std::string();
    const detail::EntryVerdict verdict = assembly.classify(has_resource, type, source_id);
    if (verdict.kind == detail::EntryVerdict::Kind::kWarnings) assembly.add_warnings(entry["resource"]);
    if (verdict.kind != detail::EntryVerdict::Kind::kWrite) continue;
    json resource = std::move(entry["resource"]);  // the page is ours: taken, not copied
    assembly.transform(resource, type, source_id, verdict);
    transaction_entries.push_back({{"fullUrl", *verdict.target},
                                   {"resource", std::move(resource)},
                                   {"request", {{"method", "PUT"}, {"url", *verdict.target}}}});
  }

  const std::string provenance = assembly.page_provenance();
  if (!out.target_references.empty()) {
    const std::string reference = "Provenance/" + out.provenance_id;
    transaction_entries.push_back({{"fullUrl", reference},
                                   {"resource", json::parse(provenance)},
                                   {"request", {{"method", "PUT"}, {"url", reference}}}});
  }
  out.transaction = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", std::move(transaction_entries)}};
  return out;
}

json versioned_provenance(const json& provenance, const json& transaction_response) {
  std::map<std::string, std::string> versions;  // "Type/id" -> "Type/id/_history/N"
  if (transaction_response.contains("entry") && transaction_response["entry"].is_array()) {
    for (const auto& entry : transaction_response["entry"]) {
      const auto response = entry.is_object() ? entry.find("response") : entry.end();
      if (!entry.is_object() || response == entry.end() || !response->is_object()) continue;
      const auto found = response->find("location");
      if (found == response->end() || !found->is_string()) continue;
      const std::string location = found->get<std::string>();
      const auto history = location.find("/_history/");
      if (history == std::string::npos) continue;
      // Locations may be absolute; keep "Type/id/_history/N".
      auto start = location.rfind('/', history - 1);
      start = location.rfind('/', start - 1);
      const std::string versioned = location.substr(start == std::string::npos ? 0 : start + 1);
      versions[versioned.substr(0, versioned.find("/_history/"))] = versioned;
    }
  }
  json out = provenance;
  if (out.contains("target") && out["target"].is_array()) {
    for (auto& target : out["target"]) {
      const std::string reference = target.value("reference", "");
      if (auto found = versions.find(reference); found != versions.end()) target["reference"] = found->second;
    }
  }
  return out;
}

}  // namespace p2p::fhir
