// The Bundle page transform (fhir/page_transform.hpp) and the job runner's page path
// (fhir/page_stream.hpp). First the bytes as a source payer answers them go through both page paths,
// streaming and DOM, with fixed contexts (MDM off and on): they must agree (the same error, or the same
// transaction after canonicalising, the same counts, warnings and next link). Then the bytes are
// parsed as JSON and transformed as a DOM, the transaction serialised as it is sent to the target, the
// next link read and the Provenance versioned against the page taken as a transaction-response.
// Expected failures: PageNotJson, std::invalid_argument (not a Bundle) and nlohmann::json::exception
// (a member of the wrong JSON type). Anything else escaping, a disagreement of the two paths, or a
// transaction that breaks the transform's promises, is a bug.
#include <cstddef>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_check.hpp"
#include "p2p/fhir/page_stream.hpp"
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

// What a page path made of the bytes: the error's kind and text, or the page.
struct PathOutcome {
  std::string error;
  fhir::WrittenPage page;
};

template <typename Run>
PathOutcome outcome_of(Run run) {
  PathOutcome outcome;
  try {
    outcome.page = run();
  } catch (const fhir::PageNotJson& error) {
    outcome.error = std::string("not JSON: ") + error.what();
  } catch (const std::invalid_argument& error) {
    outcome.error = std::string("refused: ") + error.what();
  } catch (const json::exception& error) {
    outcome.error = std::string("json: ") + error.what();
  }
  return outcome;
}

// The streaming path means what the DOM path means, on any bytes.
void run_both_paths(std::string_view text, const fhir::TransformContext& context) {
  std::string body(text);
  const PathOutcome streamed = outcome_of([&] { return fhir::write_page(body, context); });
  const PathOutcome dom = outcome_of([&] { return fhir::write_page_with_dom(std::string(text), context); });
  fuzz::check(streamed.error == dom.error, "the page paths fail differently", streamed.error + " | " + dom.error);
  if (!dom.error.empty()) return;
  const auto& a = streamed.page;
  const auto& b = dom.page;
  const json transaction = json::parse(a.transaction, nullptr, false);
  fuzz::check(!transaction.is_discarded(), "the streamed transaction is not JSON", a.transaction.substr(0, 300));
  fuzz::check(transaction == json::parse(b.transaction), "the page paths write different transactions", a.transaction.substr(0, 300));
  const bool same_provenance = a.provenance.empty() ? b.provenance.empty()
                                                   : !b.provenance.empty() && json::parse(a.provenance) == json::parse(b.provenance);
  fuzz::check(a.entries == b.entries && same_provenance && a.next == b.next, "entries, Provenance or next differ");
  fuzz::check(a.summary.target_references == b.summary.target_references && a.summary.skipped == b.summary.skipped &&
                  a.summary.skipped_types == b.summary.skipped_types &&
                  a.summary.references_replaced == b.summary.references_replaced && a.summary.warnings == b.summary.warnings &&
                  a.summary.source_error == b.summary.source_error && a.summary.provenance_id == b.summary.provenance_id,
              "the page paths count differently");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto without_mdm = make_context(false);
  static const auto with_mdm = make_context(true);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  run_both_paths(text, without_mdm);
  run_both_paths(text, with_mdm);
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
