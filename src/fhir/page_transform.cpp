#include "p2p/fhir/page_transform.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "p2p/util/crypto.hpp"

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

std::string trim_trailing_slash(std::string text) {
  while (!text.empty() && text.back() == '/') text.pop_back();
  return text;
}

// "Type/id", "Type/id/_history/v" or an absolute URL under the source endpoint; nullopt otherwise.
std::optional<Reference> parse_reference(std::string_view reference, const std::string& source_base) {
  if (!source_base.empty() && reference.starts_with(source_base + "/")) reference.remove_prefix(source_base.size() + 1);
  if (reference.find("://") != std::string_view::npos || reference.starts_with("urn:") || reference.starts_with("#")) {
    return std::nullopt;
  }
  const auto slash = reference.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  Reference parsed{std::string(reference.substr(0, slash)), std::string(reference.substr(slash + 1))};
  if (const auto history = parsed.id.find("/_history/"); history != std::string::npos) parsed.id.resize(history);
  if (parsed.id.empty() || parsed.id.find('/') != std::string::npos || parsed.id.find('?') != std::string::npos ||
      !std::isupper(static_cast<unsigned char>(parsed.type.front()))) {
    return std::nullopt;
  }
  return parsed;
}

// Where a source resource goes on the target: the member's Patient maps to the target member (MDM
// off); everything else to its deterministic id.
std::string target_reference(const TransformContext& context, const std::string& type, const std::string& source_id) {
  if (type == "Patient" && source_id == context.source_patient_id && !context.mdm) {
    return "Patient/" + context.target_patient_id;
  }
  return type + "/" + target_id(context.source_organization_id, type, source_id);
}

class Rewriter {
 public:
  Rewriter(const TransformContext& context, std::map<std::string, std::string> full_urls)
      : context_(context), source_base_(trim_trailing_slash(context.source_fhir_endpoint)), full_urls_(std::move(full_urls)) {}

  // The target reference for a source reference, or nullopt to leave it as it is.
  std::optional<std::string> target_for(std::string_view reference) const {
    if (auto found = full_urls_.find(std::string(reference)); found != full_urls_.end()) return found->second;
    auto parsed = parse_reference(reference, source_base_);
    if (!parsed) return std::nullopt;
    return target_reference(context_, parsed->type, parsed->id);
  }


  // Rewrites every Reference.reference inside `node`.
  void rewrite(json& node) const {
    if (node.is_object()) {
      for (auto& [key, value] : node.items()) {
        if (key == "reference" && value.is_string()) {
          if (auto target = target_for(value.get<std::string>())) value = *target;
        } else {
          rewrite(value);
        }
      }
    } else if (node.is_array()) {
      for (auto& item : node) rewrite(item);
    }
  }

 private:
  const TransformContext& context_;
  std::string source_base_;
  std::map<std::string, std::string> full_urls_;  // fullUrl in the page -> target "Type/id"
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
  resource["meta"]["source"] = trim_trailing_slash(context.source_fhir_endpoint) + "/" + type + "/" + source_id;
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

// A FHIR resource type name (e.g. ExplanationOfBenefit). Anything else is refused: the type becomes a
// path segment of the PUT to the target, so "Patient/x/_history" must never get that far.
bool is_resource_type(const std::string& type) {
  if (type.empty() || type.size() > 64 || type[0] < 'A' || type[0] > 'Z') return false;
  return std::all_of(type.begin(), type.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); });
}

}  // namespace

std::string target_id(std::string_view source_organization_id, std::string_view type, std::string_view source_id) {
  std::string key(source_organization_id);
  key.append("|").append(type).append("|").append(source_id);
  const auto digest = util::sha256(key);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "p2p-";
  for (std::size_t i = 0; i < 16; ++i) {
    id.push_back(kHex[digest[i] >> 4]);
    id.push_back(kHex[digest[i] & 0xF]);
  }
  return id;
}

std::optional<std::string> next_link(const json& page) {
  const auto links = page.find("link");
  if (links == page.end() || !links->is_array()) return std::nullopt;
  for (const auto& link : *links) {
    if (link.value("relation", "") == "next" && link.contains("url") && link["url"].is_string()) {
      return link["url"].get<std::string>();
    }
  }
  return std::nullopt;
}

TransformedPage transform_page(const json& page, const TransformContext& context) {
  if (!page.is_object() || page.value("resourceType", "") != "Bundle") {
    throw std::invalid_argument("the source answered with something that is not a FHIR Bundle");
  }
  if (deeper_than(page, kMaxPageDepth)) {
    throw std::invalid_argument("the source's page is nested more than " + std::to_string(kMaxPageDepth) +
                                " levels deep; it is not a FHIR Bundle this service can take");
  }
  const json empty = json::array();
  const json& entries = page.contains("entry") && page["entry"].is_array() ? page["entry"] : empty;

  // First pass: where each entry goes, so urn:uuid and absolute fullUrl references can be rewritten.
  std::map<std::string, std::string> full_urls;
  for (const auto& entry : entries) {
    if (!entry.contains("resource") || !entry["resource"].is_object()) continue;
    const auto& resource = entry["resource"];
    const auto type = string_member(resource, "resourceType");
    const auto id = string_member(resource, "id");
    if (!is_resource_type(type) || id.empty()) continue;
    if (entry.contains("fullUrl") && entry["fullUrl"].is_string()) {
      full_urls[entry["fullUrl"].get<std::string>()] = target_reference(context, type, id);
    }
  }
  const Rewriter rewriter(context, std::move(full_urls));

  TransformedPage out;
  json transaction_entries = json::array();
  json author_agents = json::array();
  std::set<std::string> seen;
  for (const auto& entry : entries) {
    if (!entry.contains("resource") || !entry["resource"].is_object()) {
      ++out.skipped;
      continue;
    }
    json resource = entry["resource"];
    const std::string type = string_member(resource, "resourceType");
    const std::string source_id = string_member(resource, "id");
    if (!is_resource_type(type) || source_id.empty() || type == "OperationOutcome") {
      ++out.skipped;
      continue;
    }
    const bool is_member = type == "Patient" && source_id == context.source_patient_id;
    if (is_member && !context.mdm) {
      ++out.skipped;  // the target member already exists; references point at it instead
      continue;
    }
    const std::string target = target_reference(context, type, source_id);
    if (!seen.insert(target).second) continue;  // the same resource twice on one page
    rewriter.rewrite(resource);
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
        const auto codings = agent.value("/type/coding"_json_pointer, json::array());
        for (const auto& c : codings) {
          if (c.value("code", "") == "author" && agent.contains("who")) {
            author_agents.push_back({{"type", {{"coding", json::array({coding(kParticipantTypeSystem, "author")})}}},
                                     {"who", agent["who"]}});
          }
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
      const std::string location = entry.value("/response/location"_json_pointer, std::string());
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
