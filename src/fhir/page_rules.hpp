#pragma once
// What a source page's resources become on the target: the rules both page paths share (internal to
// the fhir module). page_transform.cpp applies them to a parsed page (nlohmann::json, the DOM path);
// page_stream.cpp applies them while it reads a page's bytes and writes the transaction (the
// streaming path), and hands this file's DOM steps the resources it does not stream.
#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "p2p/fhir/page_transform.hpp"
#include "p2p/fhir/source_url.hpp"

namespace p2p::fhir::detail {

// Pages are untrusted: copying, rewriting and serialising JSON recurse once per level, so a page nested
// thousands of levels deep would overflow the stack. FHIR resources stay far below this. A page's
// root is level 1; a page with an array or object at a level deeper than this is refused.
constexpr std::size_t kMaxPageDepth = 256;

// Whether `node`, at level `level` of a page (the page itself is 1), holds an array or object at a level
// deeper than `limit`. Iterative: the check must not recurse on what it checks.
bool deeper_than(const nlohmann::json& node, std::size_t limit, std::size_t level = 1);

// A FHIR resource type name (e.g. ExplanationOfBenefit). Anything else is refused: the type becomes a
// path segment of the PUT to the target, so "Patient/x/_history" must never get that far.
bool is_resource_type(std::string_view type);

// How a type carries the traceability identifier (the source's type/id under the configured system).
enum class IdentifierShape { kNone, kOne, kList };
IdentifierShape identifier_shape(std::string_view type);

// At most `limit` bytes of untrusted text (whole UTF-8 characters), "..." when it was longer.
std::string cut(std::string_view text, std::size_t limit);

// The display a reference that is not copied leaves behind (when its object has neither identifier nor
// display).
std::string not_copied_display(std::string_view reference, std::string_view reason);

// JSON string escaping of unescaped text: the characters JSON requires, no more.
void write_string(std::string& out, std::string_view text);

// A Coding of system and code, as JSON text.
void write_coding(std::string& out, std::string_view system, std::string_view code);

// What a Reference.reference becomes: another reference (target set), dropped (reason set), or kept as
// it is (neither: a #contained reference).
struct Decision {
  const std::string* target = nullptr;  // owned by the Rewriter, for the page
  std::string reason;
};

// What an Attachment.url becomes.
struct UrlDecision {
  enum class Action { kKeep, kReplace, kDrop } action = Action::kKeep;
  const std::string* value = nullptr;  // kReplace: the new url (owned by the Rewriter)
};

// The reference rules of the transaction (docs/exchange.md, "References").
class Rewriter {
 public:
  explicit Rewriter(const TransformContext& context);

  bool writes(std::string_view type) const;

  // Records where the page entry with `full_url` goes, when that resource is written.
  void add_full_url(std::string full_url, std::string_view type, std::string_view id);

  // Where a source resource goes on the target: the member's Patient maps to the target member (MDM
  // off); everything else to its deterministic id. Remembered for the page (one SHA-256 a resource).
  const std::string& target_reference(std::string_view type, std::string_view source_id) const;

  Decision decide(std::string_view reference) const;
  UrlDecision decide_url(std::string_view url) const;

  // The DOM path: rewrites every Reference.reference and Attachment.url inside `node`; counts what did
  // not survive.
  void rewrite(nlohmann::json& node, std::size_t& replaced) const;

 private:
  void rewrite_extensions(nlohmann::json& extensions, std::size_t& replaced) const;

  // Looked up by std::string_view without a copy.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept { return std::hash<std::string_view>{}(text); }
  };
  using Map = std::unordered_map<std::string, std::string, Hash, std::equal_to<>>;
  using FullUrlMap = std::unordered_map<std::string, const std::string*, Hash, std::equal_to<>>;

  const TransformContext& context_;
  FullUrlMap full_urls_;          // fullUrl in the page -> target "Type/id" (a value of targets_)
  mutable Map targets_;           // "Type/id" at the source -> target (nodes: stable addresses)
  mutable std::string key_;       // target_reference's lookup key, reused
  FhirBase source_;
  FhirBase target_;
};

// What happens to one page entry, decided in page order (both paths count the same way).
struct EntryVerdict {
  enum class Kind { kSkip, kWarnings, kRepeat, kWrite } kind = Kind::kSkip;
  const std::string* target = nullptr;  // kWrite: "Type/id" on the target (owned by the Rewriter, for the page)
  bool member = false;  // kWrite: the member's own Patient (MDM on)
};

// The page being assembled: the decisions per entry, the DOM steps for one resource, the page's
// Provenance. `out` receives the counts, warnings and target references.
class PageAssembly {
 public:
  PageAssembly(const TransformContext& context, Rewriter& rewriter, TransformedPage& out);

  // For an entry whose resource is an object (`has_resource`) of `type` and `id` ("" when missing or
  // not strings). Counts skips; remembers the targets already written on this page.
  EntryVerdict classify(bool has_resource, std::string_view type, std::string_view id);

  // The DOM steps for a resource classify() said to write: references rewritten, id, tag and
  // traceability, the MDM identifier (member), author agents (Provenance). Records the target.
  void transform(nlohmann::json& resource, std::string_view type, std::string_view source_id, const EntryVerdict& verdict);

  // The written target reference without the DOM steps (the streaming path did them).
  void record_written(const std::string& target) { out_.target_references.push_back(target); }

  // An OperationOutcome entry: the source's word on its results.
  void add_warnings(const nlohmann::json& outcome);

  // The page's Provenance (Da Vinci PDex Provenance, on US Core Provenance), serialised; sets
  // out.provenance_id.
  std::string page_provenance();

  std::size_t& references_replaced() { return out_.references_replaced; }

 private:
  const TransformContext& context_;
  Rewriter& rewriter_;
  TransformedPage& out_;
  nlohmann::json author_agents_ = nlohmann::json::array();
  std::unordered_set<std::string_view> seen_;  // views of the Rewriter's targets, which outlive the page's assembly
};

// The parts of the meta and identifier the exchange adds to every written resource.
nlohmann::json exchange_tag(const TransformContext& context);
std::string meta_source(const TransformContext& context, std::string_view type, std::string_view source_id);
// What meta_source() puts before "Type/id": the source's endpoint without trailing slashes, and "/".
std::string meta_source_prefix(const TransformContext& context);
nlohmann::json traceability_identifier(const TransformContext& context, std::string_view type, std::string_view source_id);

}  // namespace p2p::fhir::detail
