#pragma once
// Turns one page pulled from the source payer (a searchset Bundle) into one FHIR transaction Bundle
// for the target, with the page's PDex Provenance in the same transaction. Pure: JSON in, JSON out.
//
// - Ids on the target are deterministic from (source organization, type, source id), so references
//   between pages stay right and a re-run or resumed job updates instead of duplicating (PUT).
// - References to the member's source Patient point at the target member (MDM off) or at the copied
//   source Patient that carries the MDM identifier (MDM on).
// - Every resource keeps where it came from: an identifier (source type/id under the configured
//   system) where the type has `identifier`, meta.source (the source URL), and a meta.tag naming the
//   exchange.
// - Only the member data set is written (an allow-list of resource types, default_resource_types());
//   types that change how the target behaves are never written (never_written()).
// - Inside the transaction only references the exchange made survive: those rewritten to the
//   exchange's ids (relative, versioned, absolute under any spelling of the source's base, urn:uuid of
//   the same page), the target member, #contained, identifier-only and display-only ones. Every other
//   reference (conditional, another server's URL, the target's own base, not a FHIR reference, a type
//   that is not exchanged) loses its `reference` and keeps its identifier or display, or gets a display
//   saying what it was: nothing the source sends can resolve against the new payer's own data.
//   Attachment.url values that point at source resources are rewritten the same way.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace p2p::fhir {

// The member data set of Da Vinci PDex, US Core and CARIN BB: the default of exchange.resourceTypes.
const std::set<std::string, std::less<>>& default_resource_types();

// Resource types never written to the target, whatever the configuration says: they change how the
// target behaves or what other applications trust (Subscription, Task, conformance and terminology
// resources).
bool never_written(std::string_view type);

// The CARIN BB patient identifier type used for MDM matching (e.g. system
// http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType, code "um").
struct MdmIdentifierType {
  std::string system;
  std::string code;
  std::string identifier_system;  // system of the identifier added to the Patient
};

struct TransformContext {
  std::string source_fhir_endpoint;   // to recognise absolute references to source resources
  std::string target_fhir_endpoint;   // the target's base: an Attachment.url on it is never copied
  std::string source_organization_id; // the OIDC server definition's organizationId
  std::string source_organization_name;
  std::string source_patient_id;
  std::string target_patient_id;
  std::string traceability_system;    // identifier system for source ids, per source payer
  std::string exchange_tag_system;    // meta.tag system naming the exchange
  std::string exchange_tag_code;      // e.g. "batch-job-42"
  std::optional<MdmIdentifierType> mdm;
  std::string recorded;               // Provenance.recorded (instant)
  std::string source_page_url;        // the page's URL, recorded as the Provenance entity
  // The types written (exchange.resourceTypes); never_written() types are skipped even when listed.
  // The member's own Patient follows the MDM setting whatever this says.
  std::set<std::string, std::less<>> resource_types = default_resource_types();
};

struct TransformedPage {
  nlohmann::json transaction;                // Bundle type "transaction"
  std::vector<std::string> target_references; // "Type/id" of every data resource written (not the page Provenance)
  std::string provenance_id;                 // id of the page's Provenance
  std::size_t skipped = 0;                   // entries not written, for any reason (the types below included)
  std::map<std::string, std::size_t> skipped_types;  // resources of types that are not exchanged, per type
  std::size_t references_replaced = 0;       // references (and Attachment.url values) that did not survive
  // What the source said about its results: one "severity: text" per issue of each OperationOutcome
  // entry (e.g. "warning: too many resources; results truncated"), text cut at 300 bytes.
  std::vector<std::string> warnings;         // the first 50
  std::optional<std::string> source_error;   // the first warning of severity error or fatal, if any
  // Bundle.total when the page has one (a non-negative integer): the source's count of all the
  // member's resources, for a progress estimate. Not checked against anything.
  std::optional<long long> total;
};

// One of the 145 resource types of FHIR R4 (skipped types are counted by name only when they are).
bool is_r4_resource_type(std::string_view type);

// True for a warning whose severity is error or fatal: the source says its results are not whole.
bool is_error_warning(std::string_view warning);

// Deterministic target id: "p2p-" + 32 hex digits of SHA-256(org | type | source id). Valid FHIR id.
std::string target_id(std::string_view source_organization_id, std::string_view type, std::string_view source_id);
// The same id appended to `out` (no string of its own: the page path makes one per resource).
void append_target_id(std::string& out, std::string_view source_organization_id, std::string_view type,
                      std::string_view source_id);

// Throws std::invalid_argument when `page` is not a Bundle (or nested deeper than a Bundle can be).
// The rvalue form takes the page: its resources are moved into the transaction, not copied. The other
// checks the page before it copies it (copying a hostile page nested thousands of levels deep would
// recurse once per level and overflow the stack).
TransformedPage transform_page(nlohmann::json&& page, const TransformContext& context);
TransformedPage transform_page(const nlohmann::json& page, const TransformContext& context);

// Points each Provenance.target at the version the transaction response reports ("Type/id/_history/N"),
// for versioned references. `response` is the transaction-response Bundle.
nlohmann::json versioned_provenance(const nlohmann::json& provenance, const nlohmann::json& transaction_response);

// The URL of Bundle.link[relation=next], if any.
std::optional<std::string> next_link(const nlohmann::json& page);

}  // namespace p2p::fhir
