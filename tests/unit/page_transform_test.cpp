#include <gtest/gtest.h>

#include "p2p/fhir/page_transform.hpp"

using nlohmann::json;
using p2p::fhir::target_id;
using p2p::fhir::transform_page;

namespace {

p2p::fhir::TransformContext context() {
  p2p::fhir::TransformContext c;
  c.source_fhir_endpoint = "https://src.example.com/fhir/";
  c.source_organization_id = "ABCD";
  c.source_organization_name = "P2P Source Payer A";
  c.source_patient_id = "m-1";
  c.target_patient_id = "t-9";
  c.traceability_system = "urn:p2p-exchange:source:ABCD";
  c.exchange_tag_system = "urn:p2p-exchange:exchange";
  c.exchange_tag_code = "batch-job-42";
  c.recorded = "2026-11-25T10:00:00Z";
  c.source_page_url = "https://src.example.com/fhir/Patient/m-1/$everything?_count=50";
  return c;
}

const json kPage = json::parse(R"({
  "resourceType": "Bundle", "type": "searchset",
  "link": [{"relation": "self", "url": "https://src.example.com/fhir/Patient/m-1/$everything?_count=50"},
           {"relation": "next", "url": "https://src.example.com/fhir/Patient/m-1/$everything?_count=50&_offset=50"}],
  "entry": [
    {"fullUrl": "https://src.example.com/fhir/Patient/m-1",
     "resource": {"resourceType": "Patient", "id": "m-1", "meta": {"versionId": "4", "lastUpdated": "2026-01-01T00:00:00Z"},
                  "identifier": [{"system": "urn:src:member", "value": "M-0001"}], "name": [{"family": "Doe"}]}},
    {"fullUrl": "https://src.example.com/fhir/Encounter/e1",
     "resource": {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
                  "subject": {"reference": "Patient/m-1"}}},
    {"fullUrl": "urn:uuid:0f4e2c1a-0000-4000-8000-000000000001",
     "resource": {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "HbA1c"},
                  "subject": {"reference": "https://src.example.com/fhir/Patient/m-1"},
                  "encounter": {"reference": "Encounter/e1/_history/3"},
                  "performer": [{"reference": "https://other.example.com/fhir/Practitioner/9"}, {"reference": "#c1"}],
                  "contained": [{"resourceType": "Practitioner", "id": "c1"}]}},
    {"resource": {"resourceType": "Provenance", "id": "pv1", "recorded": "2025-01-01T00:00:00Z",
                  "target": [{"reference": "urn:uuid:0f4e2c1a-0000-4000-8000-000000000001"}],
                  "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                                 "code": "author"}]},
                             "who": {"reference": "Organization/org9"}}]}},
    {"search": {"mode": "outcome"}, "resource": {"resourceType": "OperationOutcome", "id": "oo",
                                                 "issue": [{"severity": "information", "code": "informational"}]}},
    {"fullUrl": "https://src.example.com/fhir/Encounter/e1",
     "resource": {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
                  "subject": {"reference": "Patient/m-1"}}}
  ]})");

const json& entry_for(const json& transaction, const std::string& full_url) {
  for (const auto& entry : transaction["entry"]) {
    if (entry["fullUrl"] == full_url) return entry;
  }
  static const json kNone;
  ADD_FAILURE() << "no entry " << full_url;
  return kNone;
}

}  // namespace

TEST(PageTransform, TargetIdsAreDeterministicValidFhirIds) {
  const auto id = target_id("ABCD", "Observation", "o1");
  EXPECT_EQ(id, target_id("ABCD", "Observation", "o1"));
  EXPECT_NE(id, target_id("ABCE", "Observation", "o1"));
  EXPECT_NE(id, target_id("ABCD", "Encounter", "o1"));
  EXPECT_EQ(id.size(), 36u);
  EXPECT_TRUE(id.starts_with("p2p-"));
  EXPECT_EQ(id.find_first_not_of("p2-0123456789abcdef"), std::string::npos);
}

TEST(PageTransform, RewritesReferencesAndMakesIdempotentPuts) {
  const auto page = transform_page(kPage, context());
  const auto& tx = page.transaction;
  EXPECT_EQ(tx["resourceType"], "Bundle");
  EXPECT_EQ(tx["type"], "transaction");
  const std::string encounter = "Encounter/" + target_id("ABCD", "Encounter", "e1");
  const std::string observation = "Observation/" + target_id("ABCD", "Observation", "o1");
  const std::string source_provenance = "Provenance/" + target_id("ABCD", "Provenance", "pv1");
  EXPECT_EQ(page.target_references, (std::vector<std::string>{encounter, observation, source_provenance}));
  EXPECT_EQ(page.skipped, 2u) << "the member's own Patient (MDM off) and the OperationOutcome";
  ASSERT_EQ(tx["entry"].size(), 4u) << "3 resources (the duplicate Encounter once) and the page Provenance";

  const auto& obs = entry_for(tx, observation);
  EXPECT_EQ(obs["request"], json({{"method", "PUT"}, {"url", observation}}));
  EXPECT_EQ(obs["resource"]["id"], target_id("ABCD", "Observation", "o1"));
  EXPECT_EQ(obs["resource"]["subject"]["reference"], "Patient/t-9");
  EXPECT_EQ(obs["resource"]["encounter"]["reference"], encounter);
  EXPECT_EQ(obs["resource"]["performer"][0]["reference"], "https://other.example.com/fhir/Practitioner/9");
  EXPECT_EQ(obs["resource"]["performer"][1]["reference"], "#c1");
  EXPECT_EQ(obs["resource"]["identifier"],
            json::parse(R"([{"use":"secondary","system":"urn:p2p-exchange:source:ABCD","value":"Observation/o1",
                            "assigner":{"display":"P2P Source Payer A"}}])"));
  EXPECT_EQ(obs["resource"]["meta"],
            json::parse(R"({"tag":[{"system":"urn:p2p-exchange:exchange","code":"batch-job-42"}],
                            "source":"https://src.example.com/fhir/Observation/o1"})"));
  EXPECT_EQ(entry_for(tx, encounter)["resource"]["subject"]["reference"], "Patient/t-9");

  // The source's own Provenance is kept, its target rewritten like every reference; no identifier element.
  const auto& kept = entry_for(tx, source_provenance)["resource"];
  EXPECT_EQ(kept["target"][0]["reference"], observation);
  EXPECT_EQ(kept["agent"][0]["who"]["reference"], "Organization/" + target_id("ABCD", "Organization", "org9"));
  EXPECT_FALSE(kept.contains("identifier"));
  EXPECT_EQ(kept["meta"]["source"], "https://src.example.com/fhir/Provenance/pv1");
}

TEST(PageTransform, AddsOnePdexProvenanceForThePage) {
  const auto page = transform_page(kPage, context());
  const auto& last = page.transaction["entry"].back();
  EXPECT_EQ(last["request"], json({{"method", "PUT"}, {"url", "Provenance/" + page.provenance_id}}));
  const auto& provenance = last["resource"];
  EXPECT_EQ(provenance["meta"]["profile"], json::array({"http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-provenance"}));
  EXPECT_EQ(provenance["recorded"], "2026-11-25T10:00:00Z");
  json targets = json::array();
  for (const auto& reference : page.target_references) targets.push_back({{"reference", reference}});
  EXPECT_EQ(provenance["target"], targets);
  EXPECT_EQ(provenance["agent"][0], json::parse(R"({
    "type": {"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type", "code": "transmitter"}]},
    "who": {"type": "Organization", "identifier": {"system": "urn:p2p-exchange:source:ABCD", "value": "ABCD"},
            "display": "P2P Source Payer A"}})"));
  EXPECT_EQ(provenance["agent"][1]["type"]["coding"][0]["code"], "author") << "the page says who authored its data";
  EXPECT_EQ(provenance["entity"], json::parse(R"([{"role": "source",
    "what": {"identifier": {"system": "urn:ietf:rfc:3986", "value": "https://src.example.com/fhir/Patient/m-1/$everything?_count=50"},
             "display": "Page of the member's records from P2P Source Payer A"},
    "extension": [{"url": "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/ProvenanceSourceFrom",
                   "valueCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/ProvenancePayerDataSource",
                                                        "code": "hl7fhirr4"}]}}]}])"));
  EXPECT_EQ(page.provenance_id, transform_page(kPage, context()).provenance_id) << "a re-run updates the same Provenance";
  EXPECT_EQ(*p2p::fhir::next_link(kPage), "https://src.example.com/fhir/Patient/m-1/$everything?_count=50&_offset=50");
}

TEST(PageTransform, WithMdmTheSourcePatientIsWrittenWithTheMatchingIdentifier) {
  auto c = context();
  c.mdm = p2p::fhir::MdmIdentifierType{"http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType", "um",
                                       "urn:target-payer:member-id"};
  const auto page = transform_page(kPage, c);
  const std::string patient = "Patient/" + target_id("ABCD", "Patient", "m-1");
  EXPECT_EQ(page.skipped, 1u);
  const auto& written = entry_for(page.transaction, patient)["resource"];
  EXPECT_EQ(written["name"][0]["family"], "Doe");
  EXPECT_EQ(written["identifier"].back(), json::parse(R"({"type": {"coding": [{"system":
    "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType", "code": "um"}]},
    "system": "urn:target-payer:member-id", "value": "t-9"})"));
  EXPECT_EQ(written["identifier"][0]["value"], "M-0001") << "the source's own identifiers are kept";
  const std::string observation = "Observation/" + target_id("ABCD", "Observation", "o1");
  EXPECT_EQ(entry_for(page.transaction, observation)["resource"]["subject"]["reference"], patient);
}

TEST(PageTransform, TraceabilityRespectsTheIdentifierCardinalityOfEachType) {
  const json page = json::parse(R"({"resourceType": "Bundle", "type": "searchset", "entry": [
    {"resource": {"resourceType": "Composition", "id": "c1", "identifier": {"system": "urn:src", "value": "C-1"}}},
    {"resource": {"resourceType": "QuestionnaireResponse", "id": "q1"}},
    {"resource": {"resourceType": "Linkage", "id": "l1"}}]})");
  const auto tx = transform_page(page, context()).transaction;
  EXPECT_EQ(tx["entry"][0]["resource"]["identifier"], json({{"system", "urn:src"}, {"value", "C-1"}}))
      << "a single identifier is kept as it is";
  EXPECT_EQ(tx["entry"][1]["resource"]["identifier"]["value"], "QuestionnaireResponse/q1");
  EXPECT_TRUE(tx["entry"][1]["resource"]["identifier"].is_object());
  EXPECT_FALSE(tx["entry"][2]["resource"].contains("identifier"));
  EXPECT_EQ(tx["entry"][2]["resource"]["meta"]["source"], "https://src.example.com/fhir/Linkage/l1");
}

TEST(PageTransform, EmptyPagesWriteNothingAndNonBundlesAreRefused) {
  const auto page = transform_page(json::parse(R"({"resourceType":"Bundle","type":"searchset","total":0})"), context());
  EXPECT_TRUE(page.transaction["entry"].empty());
  EXPECT_TRUE(page.target_references.empty());
  EXPECT_THROW(transform_page(json::parse(R"({"resourceType":"OperationOutcome"})"), context()), std::invalid_argument);
  EXPECT_THROW(transform_page(json::array(), context()), std::invalid_argument);
}

TEST(PageTransform, APageNestedThousandsOfLevelsDeepIsRefusedNotAStackOverflow) {
  // Found by the page_transform fuzzer (tests/fuzz/regressions/page_transform): copying such a page
  // recursed once per level and overflowed the stack. Parsing it is iterative, so it can arrive.
  const std::string deep = std::string(20000, '[') + std::string(20000, ']');
  const auto page = json::parse(R"({"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Observation","id":"o","extension":)" +
                                deep + "}}]}");
  try {
    transform_page(page, context());
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("nested more than 256 levels deep"), std::string::npos) << error.what();
  }
}

TEST(PageTransform, EntriesWithoutAValidResourceTypeOrIdAreSkipped) {
  // Found by the page_transform fuzzer: the type becomes a path segment of the PUT to the target.
  const auto page = transform_page(json::parse(R"({"resourceType":"Bundle","type":"searchset","entry":[
      {"resource":{"resourceType":"Explanat/_history/ionOfBenefit","id":"e1"}},
      {"resource":{"resourceType":"Patient/victim","id":"p"}},
      {"resource":{"resourceType":5,"id":"n"}},
      {"resource":{"resourceType":"Observation","id":7}},
      {"resource":{"resourceType":"Observation","id":"ok"}}]})"),
                                   context());
  ASSERT_EQ(page.target_references.size(), 1u);
  EXPECT_TRUE(page.target_references[0].starts_with("Observation/p2p-")) << page.target_references[0];
  EXPECT_EQ(page.skipped, 4);
}

TEST(PageTransform, VersionedProvenancePointsAtTheWrittenVersions) {
  const auto page = transform_page(kPage, context());
  const auto provenance = page.transaction["entry"].back()["resource"];
  json response = {{"resourceType", "Bundle"}, {"type", "transaction-response"}, {"entry", json::array()}};
  for (const auto& reference : page.target_references) {
    response["entry"].push_back({{"response", {{"status", "201 Created"}, {"location", "https://tgt.example.com/fhir/" + reference + "/_history/2"}}}});
  }
  const auto versioned = p2p::fhir::versioned_provenance(provenance, response);
  for (std::size_t i = 0; i < page.target_references.size(); ++i) {
    EXPECT_EQ(versioned["target"][i]["reference"], page.target_references[i] + "/_history/2");
  }
}
