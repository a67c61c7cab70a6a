#include "page_rules.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "p2p/fhir/operation_outcome.hpp"
#include "p2p/util/crypto.hpp"
#include "p2p/util/text.hpp"

namespace p2p::fhir::detail {

void write_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;  // start of the bytes not yet written
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(text.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      default: {
        const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(escaped, sizeof escaped);
      }
    }
  }
  out.append(text.data() + run, text.size() - run);
  out.push_back('"');
}

void write_coding(std::string& out, std::string_view system, std::string_view code) {
  out.append(R"({"system":)");
  write_string(out, system);
  out.append(R"(,"code":)");
  write_string(out, code);
  out.push_back('}');
}

namespace {

using nlohmann::json;

constexpr const char* kPdexProvenanceProfile = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-provenance";
constexpr const char* kParticipantTypeSystem = "http://terminology.hl7.org/CodeSystem/provenance-participant-type";
constexpr const char* kUsCoreParticipantTypeSystem = "http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type";
constexpr const char* kSourceFromExtension = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/ProvenanceSourceFrom";
constexpr const char* kPayerDataSourceSystem = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/ProvenancePayerDataSource";
constexpr std::string_view kNotAnR4Type = "NotAnR4ResourceType";

// R4 resource types without an `identifier` element: their source id is kept in meta.source only.
const std::set<std::string, std::less<>> kTypesWithoutIdentifier = {
    "Binary", "Bundle", "Parameters", "OperationOutcome", "Provenance", "AuditEvent", "Subscription",
    "CapabilityStatement", "SearchParameter", "OperationDefinition", "CompartmentDefinition", "Linkage",
    "MessageHeader", "TerminologyCapabilities", "GraphDefinition", "ImplementationGuide"};
// R4 resource types whose `identifier` is a single Identifier (0..1), not a list.
const std::set<std::string, std::less<>> kTypesWithOneIdentifier = {"Composition", "QuestionnaireResponse",
                                                                    "AdverseEvent", "ConceptMap"};

struct Reference {
  std::string_view type;
  std::string_view id;
};

// A relative literal reference: "Type/id" or "Type/id/_history/v", with a type name and a FHIR id.
std::optional<Reference> parse_relative(std::string_view reference) {
  const auto slash = reference.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  Reference parsed{reference.substr(0, slash), reference.substr(slash + 1)};
  if (const auto history = parsed.id.find("/_history/"); history != std::string_view::npos) {
    if (!is_fhir_id(parsed.id.substr(history + 10))) return std::nullopt;
    parsed.id = parsed.id.substr(0, history);
  }
  if (!is_resource_type(parsed.type) || !is_fhir_id(parsed.id)) return std::nullopt;
  return parsed;
}

json coding(const std::string& system, const std::string& code) { return {{"system", system}, {"code", code}}; }


void add_tag(json& resource, const TransformContext& context) {
  json& meta = resource["meta"];
  if (!meta.is_object()) meta = json::object();
  meta.erase("versionId");
  meta.erase("lastUpdated");
  json& tags = meta["tag"];
  if (!tags.is_array()) tags = json::array();
  tags.push_back(exchange_tag(context));
}

void add_traceability(json& resource, std::string_view type, std::string_view source_id, const TransformContext& context) {
  resource["meta"]["source"] = meta_source(context, type, source_id);
  const auto shape = identifier_shape(type);
  if (shape == IdentifierShape::kNone) return;
  if (shape == IdentifierShape::kOne) {
    // Only one fits: the source's own identifier wins; meta.source still says where it came from.
    if (!resource.contains("identifier")) resource["identifier"] = traceability_identifier(context, type, source_id);
    return;
  }
  json& identifiers = resource["identifier"];
  if (!identifiers.is_array()) identifiers = json::array();
  identifiers.push_back(traceability_identifier(context, type, source_id));
}

}  // namespace

bool deeper_than(const json& node, std::size_t limit, std::size_t level) {
  std::vector<std::pair<const json*, std::size_t>> pending{{&node, level}};
  while (!pending.empty()) {
    const auto [current, depth] = pending.back();
    pending.pop_back();
    if (!current->is_structured()) continue;
    if (depth > limit) return true;
    for (const auto& child : *current) pending.emplace_back(&child, depth + 1);
  }
  return false;
}

bool is_resource_type(std::string_view type) {
  if (type.empty() || type.size() > 64 || type[0] < 'A' || type[0] > 'Z') return false;
  return std::all_of(type.begin(), type.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); });
}

IdentifierShape identifier_shape(std::string_view type) {
  if (kTypesWithoutIdentifier.contains(type)) return IdentifierShape::kNone;
  if (kTypesWithOneIdentifier.contains(type)) return IdentifierShape::kOne;
  return IdentifierShape::kList;
}

std::string cut(std::string_view text, std::size_t limit) {
  const auto kept = util::utf8_prefix(text, limit);
  return kept.size() == text.size() ? std::string(text) : std::string(kept) + "...";
}

std::string not_copied_display(std::string_view reference, std::string_view reason) {
  std::string display = cut(reference, 200);
  display.append(" (not copied: ").append(reason).append(")");
  return display;
}

json exchange_tag(const TransformContext& context) {
  return {{"system", context.exchange_tag_system}, {"code", context.exchange_tag_code}};
}

std::string meta_source_prefix(const TransformContext& context) {
  return util::without_trailing_slashes(context.source_fhir_endpoint) + "/";
}

std::string meta_source(const TransformContext& context, std::string_view type, std::string_view source_id) {
  std::string source = meta_source_prefix(context);
  source.append(type).append("/").append(source_id);
  return source;
}

json traceability_identifier(const TransformContext& context, std::string_view type, std::string_view source_id) {
  return {{"use", "secondary"},
          {"system", context.traceability_system},
          {"value", std::string(type) + "/" + std::string(source_id)},
          {"assigner", {{"display", context.source_organization_name}}}};
}

// --- Rewriter ---

Rewriter::Rewriter(const TransformContext& context)
    : context_(context), source_(context.source_fhir_endpoint), target_(context.target_fhir_endpoint) {
  // A page's entries, and the resources they point at: a page of 100 is not rehashed as it is read.
  full_urls_.reserve(128);
  targets_.reserve(256);
}

bool Rewriter::writes(std::string_view type) const { return context_.resource_types.contains(type) && !never_written(type); }

void Rewriter::add_full_url(std::string full_url, std::string_view type, std::string_view id) {
  const bool member = type == "Patient" && id == context_.source_patient_id;
  if (!is_resource_type(type) || id.empty() || !(member || writes(type))) return;  // not written
  full_urls_[std::move(full_url)] = &target_reference(type, id);
}

const std::string& Rewriter::target_reference(std::string_view type, std::string_view source_id) const {
  key_.assign(type).append("/").append(source_id);
  auto found = targets_.find(std::string_view(key_));
  if (found != targets_.end()) return found->second;
  std::string target;
  if (type == "Patient" && source_id == context_.source_patient_id && !context_.mdm) {
    target = "Patient/" + context_.target_patient_id;
  } else {
    target.reserve(type.size() + 40);  // "/p2p-" and 32 hex digits: one allocation
    target.append(type).push_back('/');
    append_target_id(target, context_.source_organization_id, type, source_id);
  }
  return targets_.emplace(key_, std::move(target)).first->second;
}

Decision Rewriter::decide(std::string_view reference) const {
  if (reference.starts_with('#')) return {};  // a contained resource
  if (auto found = full_urls_.find(reference); found != full_urls_.end()) return {found->second, {}};
  if (reference.starts_with("urn:")) return {nullptr, "not a resource of this page"};
  std::string under_source;
  std::string_view relative = reference;
  if (reference.find("://") != std::string_view::npos) {
    auto under = source_.relative(reference);
    if (!under) return {nullptr, "an absolute reference to another server"};
    under_source = std::move(*under);
    relative = under_source;
  }
  if (relative.find('?') != std::string_view::npos) {
    return {nullptr, "a conditional reference would resolve against the new payer's data"};
  }
  auto parsed = parse_relative(relative);
  if (!parsed) return {nullptr, "not a FHIR reference"};
  const bool member = parsed->type == "Patient" && parsed->id == context_.source_patient_id;
  if (!member && !writes(parsed->type)) return {nullptr, std::string(parsed->type) + " resources are not exchanged"};
  return {&target_reference(parsed->type, parsed->id), {}};
}

// Attachment.url: a relative URL would resolve on the target, so it is rewritten when it names a
// source resource and dropped otherwise; an absolute URL under the source's base that names a
// resource (e.g. .../Binary/123) is rewritten too; other absolute URLs are links, kept.
UrlDecision Rewriter::decide_url(std::string_view url) const {
  using Action = UrlDecision::Action;
  if (url.starts_with('#') || url.starts_with("urn:")) {
    if (auto found = full_urls_.find(url); found != full_urls_.end()) return {Action::kReplace, found->second};
    return {};
  }
  std::string under_source;
  std::string_view relative = url;
  if (url.find("://") != std::string_view::npos) {
    if (target_.relative(url)) return {Action::kDrop, {}};  // the target's own data (e.g. another member's Binary): never linked
    auto under = source_.relative(url);
    if (!under || !parse_relative(*under)) return {};  // a link elsewhere: it resolves nowhere on the target
    under_source = std::move(*under);
    relative = under_source;
  }
  const Decision decision = decide(relative);
  if (decision.target) return {Action::kReplace, decision.target};
  return {Action::kDrop, {}};
}

void Rewriter::rewrite(json& node, std::size_t& replaced) const {
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
      if (!node.contains("identifier") && !node.contains("display")) node["display"] = not_copied_display(original, decision.reason);
      ++replaced;
    }
  }
  if (auto url = node.find("url"); url != node.end() && url->is_string()) {
    const UrlDecision decision = decide_url(url->get_ref<const std::string&>());
    if (decision.action == UrlDecision::Action::kReplace) {
      *url = *decision.value;
    } else if (decision.action == UrlDecision::Action::kDrop) {
      node.erase(url);
      ++replaced;
    }
  }
  for (auto& [key, value] : node.items()) {
    if ((key == "reference" || key == "url") && value.is_string()) continue;  // done above
    if (key == "extension" || key == "modifierExtension") {
      rewrite_extensions(value, replaced);
    } else {
      rewrite(value, replaced);
    }
  }
}

// An extension's own url names its definition (a canonical, or a relative name inside a complex
// extension such as US Core race's "ombCategory"), never a resource: only its values are looked at,
// at every level of nesting.
void Rewriter::rewrite_extensions(json& extensions, std::size_t& replaced) const {
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

// --- PageAssembly ---

PageAssembly::PageAssembly(const TransformContext& context, Rewriter& rewriter, TransformedPage& out)
    : context_(context), rewriter_(rewriter), out_(out) {
  seen_.reserve(128);
}

EntryVerdict PageAssembly::classify(bool has_resource, std::string_view type, std::string_view id) {
  using Kind = EntryVerdict::Kind;
  if (!has_resource) {
    ++out_.skipped;
    return {};
  }
  if (type == "OperationOutcome") {  // the source's word on its results (search.mode outcome), not data
    ++out_.skipped;
    return {Kind::kWarnings, nullptr, false};
  }
  if (!is_resource_type(type) || id.empty()) {
    ++out_.skipped;
    return {};
  }
  const bool member = type == "Patient" && id == context_.source_patient_id;
  if (member && !context_.mdm) {
    ++out_.skipped;  // the target member already exists; references point at it instead
    return {};
  }
  if (!member && !rewriter_.writes(type)) {
    ++out_.skipped;
    // Counted by name for the R4 types only: a hostile page can make up any number of names.
    ++out_.skipped_types[is_r4_resource_type(type) ? std::string(type) : std::string(kNotAnR4Type)];
    return {};
  }
  const std::string& target = rewriter_.target_reference(type, id);
  if (!seen_.insert(target).second) return {Kind::kRepeat, nullptr, false};  // the same resource twice on one page
  return {Kind::kWrite, &target, member};
}

void PageAssembly::transform(json& resource, std::string_view type, std::string_view source_id, const EntryVerdict& verdict) {
  rewriter_.rewrite(resource, out_.references_replaced);
  resource["id"] = verdict.target->substr(type.size() + 1);
  add_tag(resource, context_);
  add_traceability(resource, type, source_id, context_);
  if (verdict.member) {
    resource["identifier"].push_back(
        {{"type", {{"coding", json::array({coding(context_.mdm->system, context_.mdm->code)})}}},
         {"system", context_.mdm->identifier_system},
         {"value", context_.target_patient_id}});
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
      if (std::find(author_agents_.begin(), author_agents_.end(), copied) == author_agents_.end()) {
        author_agents_.push_back(std::move(copied));  // each author once, however many source Provenances name them
      }
    }
  }
  out_.target_references.push_back(*verdict.target);
}

// One "severity: text" per issue of an OperationOutcome (diagnostics, else details.text, else code).
void PageAssembly::add_warnings(const json& outcome) {
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
    if (!out_.source_error && is_error_warning(warning)) out_.source_error = warning;
    if (out_.warnings.size() < kMaxWarnings) out_.warnings.push_back(std::move(warning));
  }
}

std::string PageAssembly::page_provenance() {
  out_.provenance_id = target_id(context_.source_organization_id, "Provenance",
                                 "page|" + context_.target_patient_id + "|" + context_.source_page_url);
  // Written as text: this runs once a page, on the streaming path too, where building it as a tree of
  // ~100 targets cost as much as writing a dozen resources.
  std::string text;
  text.reserve(1536 + out_.target_references.size() * 80);
  text.append(R"({"resourceType":"Provenance","id":)");
  write_string(text, out_.provenance_id);
  text.append(R"(,"meta":{"profile":[")").append(kPdexProvenanceProfile).append(R"("],"tag":[)");
  write_coding(text, context_.exchange_tag_system, context_.exchange_tag_code);
  text.append(R"(]},"target":[)");
  bool first = true;
  for (const auto& reference : out_.target_references) {
    text.append(first ? R"({"reference":)" : R"(,{"reference":)");
    first = false;
    write_string(text, reference);
    text.push_back('}');
  }
  text.append(R"(],"recorded":)");
  write_string(text, context_.recorded);
  text.append(R"(,"agent":[{"type":{"coding":[)");
  write_coding(text, kUsCoreParticipantTypeSystem, "transmitter");
  text.append(R"(]},"who":{"type":"Organization","identifier":{"system":)");
  write_string(text, context_.traceability_system);
  text.append(R"(,"value":)");
  write_string(text, context_.source_organization_id);
  text.append(R"(},"display":)");
  write_string(text, context_.source_organization_name);
  text.append("}}");
  for (const auto& author : author_agents_) text.append(",").append(author.dump());
  author_agents_ = json::array();
  text.append(R"(],"entity":[{"role":"source","what":{"identifier":{"system":"urn:ietf:rfc:3986","value":)");
  write_string(text, context_.source_page_url);
  text.append(R"(},"display":)");
  write_string(text, "Page of the member's records from " + context_.source_organization_name);
  text.append(R"(},"extension":[{"url":")").append(kSourceFromExtension);
  text.append(R"(","valueCodeableConcept":{"coding":[)");
  write_coding(text, kPayerDataSourceSystem, "hl7fhirr4");
  text.append("]}}]}]}");
  return text;
}

}  // namespace p2p::fhir::detail
