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
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace p2p::fhir {

// The CARIN BB patient identifier type used for MDM matching (e.g. system
// http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType, code "um").
struct MdmIdentifierType {
  std::string system;
  std::string code;
  std::string identifier_system;  // system of the identifier added to the Patient
};

struct TransformContext {
  std::string source_fhir_endpoint;   // to recognise absolute references to source resources
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
};

struct TransformedPage {
  nlohmann::json transaction;                // Bundle type "transaction"
  std::vector<std::string> target_references; // "Type/id" of every data resource written (not the page Provenance)
  std::string provenance_id;                 // id of the page's Provenance
  std::size_t skipped = 0;                   // entries without a resource, or the member's Patient (MDM off)
};

// Deterministic target id: "p2p-" + 32 hex digits of SHA-256(org | type | source id). Valid FHIR id.
std::string target_id(std::string_view source_organization_id, std::string_view type, std::string_view source_id);

// Throws std::invalid_argument when `page` is not a Bundle.
TransformedPage transform_page(const nlohmann::json& page, const TransformContext& context);

// Points each Provenance.target at the version the transaction response reports ("Type/id/_history/N"),
// for versioned references. `response` is the transaction-response Bundle.
nlohmann::json versioned_provenance(const nlohmann::json& provenance, const nlohmann::json& transaction_response);

// The URL of Bundle.link[relation=next], if any.
std::optional<std::string> next_link(const nlohmann::json& page);

}  // namespace p2p::fhir
