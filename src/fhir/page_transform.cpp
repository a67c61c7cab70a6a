#include "p2p/fhir/page_transform.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "p2p/fhir/operation_outcome.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/util/crypto.hpp"
#include "p2p/util/text.hpp"

namespace p2p::fhir {
namespace {

using nlohmann::json;

constexpr const char* kPdexProvenanceProfile = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-provenance";
constexpr const char* kParticipantTypeSystem = "http://terminology.hl7.org/CodeSystem/provenance-participant-type";
constexpr const char* kUsCoreParticipantTypeSystem = "http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type";
constexpr const char* kSourceFromExtension = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/ProvenanceSourceFrom";
constexpr const char* kPayerDataSourceSystem = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/ProvenancePayerDataSource";

// R4 resource types without an `identifier` element: their source id is kept in meta.source only.
const std::set<std::string, std::less<>> kTypesWithoutIdentifier = {
    "Binary", "Bundle", "Parameters", "OperationOutcome", "Provenance", "AuditEvent", "Subscription",
    "CapabilityStatement", "SearchParameter", "OperationDefinition", "CompartmentDefinition", "Linkage",
    "MessageHeader", "TerminologyCapabilities", "GraphDefinition", "ImplementationGuide"};
// R4 resource types whose `identifier` is a single Identifier (0..1), not a list.
const std::set<std::string, std::less<>> kTypesWithOneIdentifier = {"Composition", "QuestionnaireResponse",
                                                                    "AdverseEvent", "ConceptMap"};

struct Reference {
  std::string type;
  std::string id;
};

// A FHIR resource type name (e.g. ExplanationOfBenefit). Anything else is refused: the type becomes a
// path segment of the PUT to the target, so "Patient/x/_history" must never get that far.
bool is_resource_type(std::string_view type) {
  if (type.empty() || type.size() > 64 || type[0] < 'A' || type[0] > 'Z') return false;
  return std::all_of(type.begin(), type.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); });
}

// A relative literal reference: "Type/id" or "Type/id/_history/v", with a type name and a FHIR id.
std::optional<Reference> parse_relative(std::string_view reference) {
  const auto slash = reference.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  Reference parsed{std::string(reference.substr(0, slash)), std::string(reference.substr(slash + 1))};
  if (const auto history = parsed.id.find("/_history/"); history != std::string::npos) {
    if (!is_fhir_id(std::string_view(parsed.id).substr(history + 10))) return std::nullopt;
    parsed.id.resize(history);
  }
  if (!is_resource_type(parsed.type) || !is_fhir_id(parsed.id)) return std::nullopt;
  return parsed;
}

// At most `limit` bytes of untrusted text (whole UTF-8 characters), "..." when it was longer.
std::string cut(std::string_view text, std::size_t limit) {
  const auto kept = util::utf8_prefix(text, limit);
  return kept.size() == text.size() ? std::string(text) : std::string(kept) + "...";
}

// Where a source resource goes on the target: the member's Patient maps to the target member (MDM
// off); everything else to its deterministic id.
std::string target_reference(const TransformContext& context, const std::string& type, const std::string& source_id) {
  if (type == "Patient" && source_id == context.source_patient_id && !context.mdm) {
    return "Patient/" + context.target_patient_id;
  }
  return type + "/" + target_id(context.source_organization_id, type, source_id);
}

// The reference rules of the transaction (docs/exchange.md, "References"): what each reference of a
// source resource becomes on the target.
class Rewriter {
 public:
  explicit Rewriter(const TransformContext& context)
      : context_(context), source_(context.source_fhir_endpoint), target_(context.target_fhir_endpoint) {}

  void set_full_urls(std::map<std::string, std::string> full_urls) { full_urls_ = std::move(full_urls); }

  bool writes(std::string_view type) const { return context_.resource_types.contains(type) && !never_written(type); }

  // Rewrites every Reference.reference and Attachment.url inside `node`; counts what did not survive.
  void rewrite(json& node, std::size_t& replaced) const {
    if (node.is_array()) {
      for (auto& item : node) rewrite(item, replaced);
      return;
    }
    if (!node.is_object()) return;
    auto reference = node.find("reference");
    if (reference != node.end() && reference->is_string()) {
      const std::string original = reference->get<std::string>();
      const Decision decision = decide(original);
      if (decision.target) {
        *reference = *decision.target;
      } else if (!decision.reason.empty()) {
        node.erase(reference);
        if (!node.contains("identifier") && !node.contains("display")) {
          node["display"] = cut(original, 200) + " (not copied: " + decision.reason + ")";
        }
        ++replaced;
      }
    }
    if (auto url = node.find("url"); url != node.end() && url->is_string()) rewrite_url(node, replaced);
    for (auto& [key, value] : node.items()) {
      if ((key == "reference" || key == "url") && value.is_string()) continue;  // done above
      if (key == "extension" || key == "modifierExtension") {
        rewrite_extensions(value, replaced);
      } else {
        rewrite(value, replaced);
      }
    }
  }

 private:
  // An extension's own url names its definition (a canonical, or a relative name inside a complex
  // extension such as US Core race's "ombCategory"), never a resource: only its values are looked at,
  // at every level of nesting.
  void rewrite_extensions(json& extensions, std::size_t& replaced) const {
    if (!extensions.is_array()) {
      rewrite(extensions, replaced);
      return;
    }
    for (auto& extension : extensions) {
      if (!extension.is_object()) {
        rewrite(extension, replaced);
        continue;
      }
      for (auto& [key, child] : extension.items()) {
        if (key == "url" && child.is_string()) continue;
        if (key == "extension" || key == "modifierExtension") {
          rewrite_extensions(child, replaced);
        } else {
          rewrite(child, replaced);
        }
      }
    }
  }

  struct Decision {
    std::optional<std::string> target;  // the reference to write instead
    std::string reason;                 // set when the reference must not be copied
  };

  Decision decide(std::string_view reference) const {
    if (reference.starts_with('#')) return {};  // a contained resource
    if (auto found = full_urls_.find(std::string(reference)); found != full_urls_.end()) return {found->second, {}};
    if (reference.starts_with("urn:")) return {std::nullopt, "not a resource of this page"};
    std::string relative(reference);
    if (reference.find("://") != std::string_view::npos) {
      auto under_source = source_.relative(reference);
      if (!under_source) return {std::nullopt, "an absolute reference to another server"};
      relative = std::move(*under_source);
    }
    if (relative.find('?') != std::string::npos) {
      return {std::nullopt, "a conditional reference would resolve against the new payer's data"};
    }
    auto parsed = parse_relative(relative);
    if (!parsed) return {std::nullopt, "not a FHIR reference"};
    const bool member = parsed->type == "Patient" && parsed->id == context_.source_patient_id;
    if (!member && !writes(parsed->type)) return {std::nullopt, parsed->type + " resources are not exchanged"};
    return {target_reference(context_, parsed->type, parsed->id), {}};
  }

  // Attachment.url: a relative URL would resolve on the target, so it is rewritten when it names a
  // source resource and dropped otherwise; an absolute URL under the source's base that names a
  // resource (e.g. .../Binary/123) is rewritten too; other absolute URLs are links, kept.
  void rewrite_url(json& attachment, std::size_t& replaced) const {
    json& url = attachment["url"];
    const std::string original = url.get<std::string>();
    if (original.starts_with('#') || original.starts_with("urn:")) {
      if (auto found = full_urls_.find(original); found != full_urls_.end()) url = found->second;
      return;
    }
    std::string relative = original;
    if (original.find("://") != std::string::npos) {
      if (target_.relative(original)) {  // the target's own data (e.g. another member's Binary): never linked
        attachment.erase("url");
        ++replaced;
        return;
      }
      auto under_source = source_.relative(original);
      if (!under_source || !parse_relative(*under_source)) return;  // a link elsewhere: it resolves nowhere on the target
      relative = std::move(*under_source);
    }
    const Decision decision = decide(relative);
    if (decision.target) {
      url = *decision.target;
    } else {
      attachment.erase("url");
      ++replaced;
    }
  }

  const TransformContext& context_;
  std::map<std::string, std::string> full_urls_;  // fullUrl in the page -> target "Type/id"
  FhirBase source_;
  FhirBase target_;
};

void add_tag(json& resource, const TransformContext& context) {
  json& meta = resource["meta"];
  if (!meta.is_object()) meta = json::object();
  meta.erase("versionId");
  meta.erase("lastUpdated");
  json& tags = meta["tag"];
  if (!tags.is_array()) tags = json::array();
  tags.push_back({{"system", context.exchange_tag_system}, {"code", context.exchange_tag_code}});
}

void add_traceability(json& resource, const std::string& type, const std::string& source_id,
                      const TransformContext& context) {
  resource["meta"]["source"] = util::without_trailing_slashes(context.source_fhir_endpoint) + "/" + type + "/" + source_id;
  if (kTypesWithoutIdentifier.contains(type)) return;
  json traceability = {{"use", "secondary"},
                       {"system", context.traceability_system},
                       {"value", type + "/" + source_id},
                       {"assigner", {{"display", context.source_organization_name}}}};
  if (kTypesWithOneIdentifier.contains(type)) {
    // Only one fits: the source's own identifier wins; meta.source still says where it came from.
    if (!resource.contains("identifier")) resource["identifier"] = std::move(traceability);
    return;
  }
  json& identifiers = resource["identifier"];
  if (!identifiers.is_array()) identifiers = json::array();
  identifiers.push_back(std::move(traceability));
}

json coding(const std::string& system, const std::string& code) { return {{"system", system}, {"code", code}}; }

// Pages are untrusted: copying, rewriting and serialising JSON recurse once per level, so a page nested
// thousands of levels deep would overflow the stack. FHIR resources stay far below this.
constexpr std::size_t kMaxPageDepth = 256;

bool deeper_than(const json& root, std::size_t limit) {
  std::vector<std::pair<const json*, std::size_t>> pending{{&root, 1}};  // iterative: no recursion here
  while (!pending.empty()) {
    const auto [node, depth] = pending.back();
    pending.pop_back();
    if (!node->is_structured()) continue;
    if (depth > limit) return true;
    for (const auto& child : *node) pending.emplace_back(&child, depth + 1);
  }
  return false;
}

// A resource's type or id as a string, or "" when it is missing or not a string (pages are untrusted).
std::string string_member(const json& resource, const char* key) {
  const auto found = resource.find(key);
  return found != resource.end() && found->is_string() ? found->get<std::string>() : std::string();
}

constexpr std::string_view kNotAnR4Type = "NotAnR4ResourceType";

// One "severity: text" per issue of an OperationOutcome (diagnostics, else details.text, else code).
void add_warnings(const json& outcome, TransformedPage& out) {
  constexpr std::size_t kMaxWarnings = 50;  // a page, like a job, keeps the first 50 (and its first error)
  const auto issues = outcome.find("issue");
  if (issues == outcome.end() || !issues->is_array()) return;
  for (const auto& issue : *issues) {
    if (!issue.is_object()) continue;
    std::string text = issue_text(issue);
    if (text.empty()) text = issue_code(issue);
    const json severity_value = issue.value("severity", json());
    std::string severity = severity_value.is_string() ? severity_value.get<std::string>() : std::string();
    if (severity != "fatal" && severity != "error" && severity != "warning") severity = "information";
    std::string warning = severity + ": " + cut(text, 300);
    if (!out.source_error && is_error_warning(warning)) out.source_error = warning;
    if (out.warnings.size() < kMaxWarnings) out.warnings.push_back(std::move(warning));
  }
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
  std::string key(source_organization_id);
  key.append("|").append(type).append("|").append(source_id);
  return "p2p-" + util::sha256_hex(key).substr(0, 32);
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
  if (deeper_than(page, kMaxPageDepth)) {
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
  Rewriter rewriter(context);
  std::map<std::string, std::string> full_urls;
  for (const auto& entry : entries) {
    if (!entry.contains("resource") || !entry["resource"].is_object()) continue;
    const auto& resource = entry["resource"];
    const auto type = string_member(resource, "resourceType");
    const auto id = string_member(resource, "id");
    const bool member = type == "Patient" && id == context.source_patient_id;
    if (!is_resource_type(type) || id.empty() || !(member || rewriter.writes(type))) continue;  // not written
    if (entry.contains("fullUrl") && entry["fullUrl"].is_string()) {
      full_urls[entry["fullUrl"].get<std::string>()] = target_reference(context, type, id);
    }
  }
  rewriter.set_full_urls(std::move(full_urls));

  TransformedPage out;
  json transaction_entries = json::array();
  json author_agents = json::array();
  std::set<std::string> seen;
  for (auto& entry : entries) {
    if (!entry.contains("resource") || !entry["resource"].is_object()) {
      ++out.skipped;
      continue;
    }
    json resource = std::move(entry["resource"]);  // the page is ours: taken, not copied
    const std::string type = string_member(resource, "resourceType");
    const std::string source_id = string_member(resource, "id");
    if (type == "OperationOutcome") {  // the source's word on its results (search.mode outcome), not data
      add_warnings(resource, out);
      ++out.skipped;
      continue;
    }
    if (!is_resource_type(type) || source_id.empty()) {
      ++out.skipped;
      continue;
    }
    const bool is_member = type == "Patient" && source_id == context.source_patient_id;
    if (is_member && !context.mdm) {
      ++out.skipped;  // the target member already exists; references point at it instead
      continue;
    }
    if (!is_member && !rewriter.writes(type)) {
      ++out.skipped;
      // Counted by name for the R4 types only: a hostile page can make up any number of names.
      ++out.skipped_types[is_r4_resource_type(type) ? type : std::string(kNotAnR4Type)];
      continue;
    }
    const std::string target = target_reference(context, type, source_id);
    if (!seen.insert(target).second) continue;  // the same resource twice on one page
    rewriter.rewrite(resource, out.references_replaced);
    resource["id"] = target.substr(type.size() + 1);
    add_tag(resource, context);
    add_traceability(resource, type, source_id, context);
    if (is_member) {
      resource["identifier"].push_back(
          {{"type", {{"coding", json::array({coding(context.mdm->system, context.mdm->code)})}}},
           {"system", context.mdm->identifier_system},
           {"value", context.target_patient_id}});
    }
    if (type == "Provenance" && resource.contains("agent") && resource["agent"].is_array()) {
      for (const auto& agent : resource["agent"]) {
        if (!agent.is_object() || !agent.contains("who")) continue;
        const auto agent_type = agent.find("type");
        const json codings = agent_type != agent.end() && agent_type->is_object() ? agent_type->value("coding", json::array())
                                                                                 : json::array();
        const bool author = codings.is_array() && std::any_of(codings.begin(), codings.end(), [](const json& c) {
          return c.is_object() && c.value("system", json()) == kParticipantTypeSystem && c.value("code", json()) == "author";
        });
        if (!author) continue;
        json copied = {{"type", {{"coding", json::array({coding(kParticipantTypeSystem, "author")})}}}, {"who", agent["who"]}};
        // US Core provenance-1: onBehalfOf is required when `who` is a Practitioner or Device.
        if (agent.contains("onBehalfOf")) copied["onBehalfOf"] = agent["onBehalfOf"];
        if (std::find(author_agents.begin(), author_agents.end(), copied) == author_agents.end()) {
          author_agents.push_back(std::move(copied));  // each author once, however many source Provenances name them
        }
      }
    }
    transaction_entries.push_back({{"fullUrl", target},
                                   {"resource", std::move(resource)},
                                   {"request", {{"method", "PUT"}, {"url", target}}}});
    out.target_references.push_back(target);
  }

  // The page's Provenance (Da Vinci PDex Provenance, on US Core Provenance).
  out.provenance_id = target_id(context.source_organization_id, "Provenance",
                                "page|" + context.target_patient_id + "|" + context.source_page_url);
  json targets = json::array();
  for (const auto& reference : out.target_references) targets.push_back({{"reference", reference}});
  json agents = json::array();
  agents.push_back(
      {{"type", {{"coding", json::array({coding(kUsCoreParticipantTypeSystem, "transmitter")})}}},
       {"who",
        {{"type", "Organization"},
         {"identifier", {{"system", context.traceability_system}, {"value", context.source_organization_id}}},
         {"display", context.source_organization_name}}}});
  for (auto& author : author_agents) agents.push_back(std::move(author));
  json provenance = {
      {"resourceType", "Provenance"},
      {"id", out.provenance_id},
      {"meta",
       {{"profile", json::array({kPdexProvenanceProfile})},
        {"tag", json::array({{{"system", context.exchange_tag_system}, {"code", context.exchange_tag_code}}})}}},
      {"target", std::move(targets)},
      {"recorded", context.recorded},
      {"agent", std::move(agents)},
      {"entity",
       json::array({{{"role", "source"},
                     {"what", {{"identifier", {{"system", "urn:ietf:rfc:3986"}, {"value", context.source_page_url}}},
                               {"display", "Page of the member's records from " + context.source_organization_name}}},
                     {"extension",
                      json::array({{{"url", kSourceFromExtension},
                                    {"valueCodeableConcept",
                                     {{"coding", json::array({coding(kPayerDataSourceSystem, "hl7fhirr4")})}}}}})}}})}};
  if (!out.target_references.empty()) {
    transaction_entries.push_back({{"fullUrl", "Provenance/" + out.provenance_id},
                                   {"resource", std::move(provenance)},
                                   {"request", {{"method", "PUT"}, {"url", "Provenance/" + out.provenance_id}}}});
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
