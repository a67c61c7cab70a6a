// The Bundle page transform (fhir/page_transform.hpp): bytes as the page a source payer answers, parsed
// as the job runner parses it, transformed with fixed contexts (MDM off and on), then the transaction
// serialised as it is sent to the target, the next link read and the Provenance versioned against
// the page taken as a transaction-response. Expected failures: std::invalid_argument (not a Bundle)
// and nlohmann::json::exception (a member of the wrong JSON type). Anything else escaping, or a
// transaction that breaks the transform's promises, is a bug.
#include <cstddef>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_check.hpp"
#include "p2p/fhir/page_transform.hpp"

namespace {

using nlohmann::json;
using namespace p2p;

fhir::TransformContext make_context(bool mdm) {
  fhir::TransformContext context;
  context.source_fhir_endpoint = "https://fhir.source.example/r4/";
  context.source_organization_id = "org-source";
  context.source_organization_name = "Source Health Plan";
  context.source_patient_id = "member-1";
  context.target_patient_id = "target-9";
  context.traceability_system = "urn:p2p-exchange:source:org-source";
  context.exchange_tag_system = "urn:p2p-exchange:exchange";
  context.exchange_tag_code = "batch-job-42";
  if (mdm) {
    context.mdm = fhir::MdmIdentifierType{"http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType", "um",
                                          "https://target.example/member-id"};
  }
  context.recorded = "2026-01-01T00:00:00Z";
  context.source_page_url = "https://fhir.source.example/r4/Patient/member-1/$everything";
  return context;
}

void check_transaction(const fhir::TransformedPage& out) {
  const json& bundle = out.transaction;
  fuzz::check(bundle.is_object() && bundle.value("type", "") == "transaction", "not a transaction Bundle");
  const json& entries = bundle.at("entry");
  fuzz::check(entries.is_array(), "transaction entry is not an array");
  const std::size_t provenance = out.target_references.empty() ? 0 : 1;
  fuzz::check(entries.size() == out.target_references.size() + provenance, "entry count differs from target_references");
  std::set<std::string> seen;
  for (std::size_t i = 0; i < out.target_references.size(); ++i) {
    const auto& reference = out.target_references[i];
    fuzz::check(seen.insert(reference).second, "the same target written twice", reference);
    const json& entry = entries[i];
    fuzz::check(entry.at("request").at("method") == "PUT" && entry.at("request").at("url") == reference,
                "entry request is not PUT to its target", reference);
    const json& resource = entry.at("resource");
    const auto slash = reference.find('/');
    fuzz::check(slash != std::string::npos && resource.at("resourceType") == reference.substr(0, slash) &&
                    resource.at("id") == reference.substr(slash + 1),
                "resource type/id differ from the target reference", reference);
    // The target member is never overwritten: the member's own Patient is skipped (MDM off) or
    // copied under its deterministic id (MDM on), like every other resource.
    const auto id = reference.substr(slash + 1);
    fuzz::check(id.size() == 36 && id.starts_with("p2p-"), "target id is not p2p-<32 hex>", id);
  }
  if (provenance) {
    const json& page_provenance = entries.back().at("resource");
    fuzz::check(page_provenance.at("id") == out.provenance_id, "page Provenance id differs");
    fuzz::check(page_provenance.at("target").size() == out.target_references.size(), "Provenance misses targets");
  }
}

void run(const json& page, const fhir::TransformContext& context) {
  try {
    const auto out = fhir::transform_page(page, context);
    check_transaction(out);
    const std::string sent = out.transaction.dump();  // as the job runner sends it
    fuzz::check(json::parse(sent) == out.transaction, "the transaction does not survive dump and parse");
    if (!out.target_references.empty()) {
      (void)fhir::versioned_provenance(out.transaction["entry"].back()["resource"], page);
    }
  } catch (const std::invalid_argument& error) {
    // Refused: not a Bundle, or nested too deep to be processed without exhausting the stack.
    fuzz::check(!page.is_object() || page.value("resourceType", json()) != "Bundle" ||
                    std::string_view(error.what()).find("nested more than") != std::string_view::npos,
                "a Bundle was refused as not a Bundle", error.what());
  } catch (const json::exception&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto without_mdm = make_context(false);
  static const auto with_mdm = make_context(true);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const json page = json::parse(text, nullptr, false);  // as jobs/job_runner.cpp parses a page
  if (page.is_discarded()) return 0;
  try {
    (void)fhir::next_link(page);
  } catch (const json::exception&) {
  }
  run(page, without_mdm);
  run(page, with_mdm);
  return 0;
}
