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

TEST(PageTransform, TargetIdsDoNotChangeBetweenVersions) {
  // What earlier versions wrote must be found again (a resumed or repeated exchange updates the same
  // resources): "p2p-" and the first 32 hex digits of SHA-256("ABCD|Observation|o1").
  EXPECT_EQ(target_id("ABCD", "Observation", "o1"), "p2p-c3f070c85ee89bf192c90fab28897cdd");
  // Several on one thread (the digest's context is reused).
  EXPECT_EQ(target_id("ABCD", "Observation", "o1"), "p2p-c3f070c85ee89bf192c90fab28897cdd");
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
  EXPECT_EQ(obs["resource"]["performer"][0],
            json({{"display", "https://other.example.com/fhir/Practitioner/9 (not copied: an absolute reference to another server)"}}));
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
  EXPECT_EQ(provenance.size(), 7u) << "resourceType, id, meta, target, recorded, agent, entity: " << provenance.dump();
  EXPECT_EQ(provenance["resourceType"], "Provenance");
  EXPECT_EQ(provenance["id"], page.provenance_id);
  EXPECT_EQ(provenance["meta"].size(), 2u);
  EXPECT_EQ(provenance["meta"]["tag"], json::array({{{"system", context().exchange_tag_system}, {"code", context().exchange_tag_code}}}));
  EXPECT_EQ(provenance["agent"].size(), 2u);
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
  auto c = context();
  c.resource_types = {"Composition", "QuestionnaireResponse", "Linkage"};  // not all in the default member data set
  const auto tx = transform_page(page, c).transaction;
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

// Issue #9 (2): the source must not choose what is written to the target with the target's credential.
TEST(PageTransform, OnlyTheAllowedMemberDataTypesAreWrittenTheRestIsCountedPerType) {
  const json page = json::parse(R"({"resourceType":"Bundle","type":"searchset","entry":[
      {"resource":{"resourceType":"Subscription","id":"s1","status":"requested","reason":"x","criteria":"Patient?",
                   "channel":{"type":"rest-hook","endpoint":"https://evil.example/hook"}}},
      {"resource":{"resourceType":"Task","id":"t1","status":"requested","intent":"order",
                   "code":{"coding":[{"code":"p2p-request-add-provider-id"}]}}},
      {"resource":{"resourceType":"SearchParameter","id":"sp"}},
      {"resource":{"resourceType":"StructureDefinition","id":"sd"}},
      {"resource":{"resourceType":"CodeSystem","id":"cs1"}},
      {"resource":{"resourceType":"CodeSystem","id":"cs2"}},
      {"resource":{"resourceType":"Endpoint","id":"ep"}},
      {"resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},
                   "subject":{"reference":"Patient/m-1"}}},
      {"resource":{"resourceType":"Coverage","id":"c1","status":"active","beneficiary":{"reference":"Patient/m-1"}}}]})");
  auto c = context();
  const auto out = transform_page(page, c);
  EXPECT_EQ(out.target_references,
            (std::vector<std::string>{"Observation/" + target_id("ABCD", "Observation", "o1"),
                                      "Coverage/" + target_id("ABCD", "Coverage", "c1")}));
  EXPECT_EQ(out.skipped_types, (std::map<std::string, std::size_t>{{"CodeSystem", 2}, {"Endpoint", 1}, {"SearchParameter", 1},
                                                                   {"StructureDefinition", 1}, {"Subscription", 1}, {"Task", 1}}));
  for (const auto& entry : out.transaction["entry"]) {
    const std::string type = entry["resource"]["resourceType"];
    EXPECT_TRUE(type == "Observation" || type == "Coverage" || type == "Provenance") << type;
  }

  // A configuration may narrow the set or add a type, but never a type that changes how the target
  // behaves: Subscription, Task, conformance and terminology resources are skipped whatever it says.
  c.resource_types = {"Endpoint", "Subscription", "Task", "CodeSystem", "Coverage"};
  const auto configured = transform_page(page, c);
  EXPECT_EQ(configured.target_references,
            (std::vector<std::string>{"Endpoint/" + target_id("ABCD", "Endpoint", "ep"),
                                      "Coverage/" + target_id("ABCD", "Coverage", "c1")}));
  EXPECT_EQ(configured.skipped_types,
            (std::map<std::string, std::size_t>{{"CodeSystem", 2}, {"Observation", 1}, {"SearchParameter", 1},
                                                {"StructureDefinition", 1}, {"Subscription", 1}, {"Task", 1}}));
  for (const std::string never : {"Subscription", "Task", "SearchParameter", "StructureDefinition", "CapabilityStatement",
                                  "CodeSystem", "ValueSet", "ConceptMap", "NamingSystem", "OperationDefinition",
                                  "ImplementationGuide", "CompartmentDefinition", "StructureMap"}) {
    EXPECT_TRUE(p2p::fhir::never_written(never)) << never;
    EXPECT_FALSE(p2p::fhir::default_resource_types().contains(never)) << never;
  }
  for (const std::string allowed : {"Patient", "Coverage", "ExplanationOfBenefit", "Claim", "ClaimResponse", "AllergyIntolerance",
                                    "CarePlan", "CareTeam", "Condition", "Device", "DiagnosticReport", "DocumentReference",
                                    "Binary", "Encounter", "Goal", "Immunization", "Location", "Medication",
                                    "MedicationDispense", "MedicationRequest", "MedicationStatement", "Observation",
                                    "Procedure", "ServiceRequest", "Specimen", "QuestionnaireResponse", "Practitioner",
                                    "PractitionerRole", "Organization", "RelatedPerson", "Provenance"}) {
    EXPECT_TRUE(p2p::fhir::default_resource_types().contains(allowed)) << allowed;
    EXPECT_FALSE(p2p::fhir::never_written(allowed)) << allowed;
  }
  EXPECT_EQ(p2p::fhir::default_resource_types().size(), 31u);
}

// Issue #9 (3): inside the transaction only references the exchange made survive; nothing may resolve
// against the target's own data.
TEST(PageTransform, ReferencesThatWouldResolveOnTheTargetAreReplacedByIdentifierOrDisplay) {
  const json page = json::parse(R"({"resourceType":"Bundle","type":"searchset","entry":[
      {"fullUrl":"urn:uuid:11111111-2222-4333-8444-555555555555",
       "resource":{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"}}},
      {"resource":{"resourceType":"ExplanationOfBenefit","id":"eob1",
        "patient":{"reference":"Patient?identifier=urn:target-member-id|555"},
        "insurer":{"reference":"Organization?_id=555","display":"Target Health"},
        "provider":{"reference":"https://target.example/fhir/Practitioner/own-1"},
        "referral":{"reference":"http://SRC.example.com:80/fhir/ServiceRequest/sr1"},
        "facility":{"reference":"https://src.example.com:443/fhir//Location/l1"},
        "claim":{"reference":"HTTP://src.example.com/fhir/Claim/c1/_history/2"},
        "claimResponse":{"reference":"https://src.example.com/other/ClaimResponse/cr1"},
        "prescription":{"reference":"urn:uuid:99999999-2222-4333-8444-555555555555"},
        "originalPrescription":{"reference":"Subscription/s1"},
        "enterer":{"reference":"https://registry.example/Practitioner/9",
                   "identifier":{"system":"http://hl7.org/fhir/sid/us-npi","value":"1234567893"}},
        "careTeam":[{"provider":{"reference":"#ct1"}}, {"provider":{"reference":"Practitioner/p1"}}],
        "supportingInfo":[{"valueReference":{"reference":"urn:uuid:11111111-2222-4333-8444-555555555555"}},
                          {"valueReference":{"reference":"Observation/o 1"}},
                          {"valueReference":{"reference":"observation/o1"}},
                          {"valueReference":{"reference":"Patient/m-1"}}]}}]})");
  auto c = context();
  const auto out = transform_page(page, c);
  ASSERT_EQ(out.target_references.size(), 2u);
  const json& eob = out.transaction["entry"][1]["resource"];
  // Conditional references are never resolved against the target: kept as display only.
  EXPECT_EQ(eob["patient"], json({{"display", "Patient?identifier=urn:target-member-id|555 (not copied: a conditional "
                                              "reference would resolve against the new payer's data)"}}));
  EXPECT_EQ(eob["insurer"], json({{"display", "Target Health"}})) << "an existing display is kept as it is";
  // An absolute URL of another server (the target's own base included) is not a reference the exchange made.
  EXPECT_EQ(eob["provider"], json({{"display", "https://target.example/fhir/Practitioner/own-1 (not copied: an absolute "
                                               "reference to another server)"}}));
  // Other spellings of the source's base: scheme case, http/https, default port, case of host, double slash.
  EXPECT_EQ(eob["referral"]["reference"], "ServiceRequest/" + target_id("ABCD", "ServiceRequest", "sr1"));
  EXPECT_EQ(eob["facility"]["reference"], "Location/" + target_id("ABCD", "Location", "l1"));
  EXPECT_EQ(eob["claim"]["reference"], "Claim/" + target_id("ABCD", "Claim", "c1"));
  EXPECT_EQ(eob["claimResponse"], json({{"display", "https://src.example.com/other/ClaimResponse/cr1 (not copied: an "
                                                    "absolute reference to another server)"}}));
  EXPECT_EQ(eob["prescription"], json({{"display", "urn:uuid:99999999-2222-4333-8444-555555555555 (not copied: not a "
                                                   "resource of this page)"}}));
  EXPECT_EQ(eob["originalPrescription"], json({{"display", "Subscription/s1 (not copied: Subscription resources are "
                                                           "not exchanged)"}}));
  EXPECT_EQ(eob["enterer"], json({{"identifier", {{"system", "http://hl7.org/fhir/sid/us-npi"}, {"value", "1234567893"}}}}))
      << "an identifier says who it is without resolving anything";
  EXPECT_EQ(eob["careTeam"][0]["provider"]["reference"], "#ct1");
  EXPECT_EQ(eob["careTeam"][1]["provider"]["reference"], "Practitioner/" + target_id("ABCD", "Practitioner", "p1"));
  EXPECT_EQ(eob["supportingInfo"][0]["valueReference"]["reference"], out.target_references[0]);
  EXPECT_EQ(eob["supportingInfo"][1]["valueReference"],
            json({{"display", "Observation/o 1 (not copied: not a FHIR reference)"}}));
  EXPECT_EQ(eob["supportingInfo"][2]["valueReference"],
            json({{"display", "observation/o1 (not copied: not a FHIR reference)"}}));
  EXPECT_EQ(eob["supportingInfo"][3]["valueReference"]["reference"], "Patient/t-9");
  EXPECT_EQ(out.references_replaced, 9u);
}

TEST(PageTransform, AttachmentUrlsPointingAtSourceResourcesAreRewrittenLikeReferences) {
  const json page = json::parse(R"({"resourceType":"Bundle","type":"searchset","entry":[
      {"resource":{"resourceType":"Binary","id":"b1","contentType":"application/pdf","data":"JVBERi0="}},
      {"resource":{"resourceType":"DocumentReference","id":"d1","status":"current",
        "subject":{"reference":"Patient/m-1"},
        "extension":[{"url":"Binary/b1","valueString":"an extension's url is a canonical, not a link"}],
        "content":[{"attachment":{"contentType":"application/pdf","url":"Binary/b1"}},
                   {"attachment":{"contentType":"application/pdf","url":"https://src.example.com/fhir/Binary/b2"}},
                   {"attachment":{"contentType":"application/pdf","url":"https://cdn.example/doc.pdf"}},
                   {"attachment":{"contentType":"application/pdf","url":"Binary?_id=7"}}]}}]})");
  const auto out = transform_page(page, context());
  ASSERT_EQ(out.target_references.size(), 2u);
  const json& doc = out.transaction["entry"][1]["resource"];
  EXPECT_EQ(doc["content"][0]["attachment"]["url"], "Binary/" + target_id("ABCD", "Binary", "b1"));
  EXPECT_EQ(doc["content"][1]["attachment"]["url"], "Binary/" + target_id("ABCD", "Binary", "b2"));
  EXPECT_EQ(doc["content"][2]["attachment"]["url"], "https://cdn.example/doc.pdf") << "a document elsewhere is a link, kept";
  EXPECT_FALSE(doc["content"][3]["attachment"].contains("url")) << "a relative URL that is no reference would resolve on the target";
  EXPECT_EQ(doc["extension"][0]["url"], "Binary/b1");
}

// Issue #9 (11): the page Provenance's author agents keep onBehalfOf (US Core provenance-1 requires it
// for a Practitioner or Device author) and appear once per distinct author, however many source
// Provenances name them.
TEST(PageTransform, PageProvenanceAuthorsKeepOnBehalfOfAndAreListedOnce) {
  const json page = json::parse(R"({"resourceType":"Bundle","type":"searchset","entry":[
      {"resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"}}},
      {"resource":{"resourceType":"Provenance","id":"pv1","recorded":"2025-01-01T00:00:00Z","target":[{"reference":"Observation/o1"}],
        "agent":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/provenance-participant-type","code":"author"}]},
                  "who":{"reference":"Practitioner/dr1"},"onBehalfOf":{"reference":"Organization/org1"}}]}},
      {"resource":{"resourceType":"Provenance","id":"pv2","recorded":"2025-01-01T00:00:00Z","target":[{"reference":"Observation/o1"}],
        "agent":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/provenance-participant-type","code":"author"}]},
                  "who":{"reference":"Practitioner/dr1"},"onBehalfOf":{"reference":"Organization/org1"}},
                 {"type":{"coding":[{"system":"http://example.org/not-participant-type","code":"author"}]},
                  "who":{"reference":"Practitioner/dr2"}}]}}]})");
  const auto out = transform_page(page, context());
  const json& agents = out.transaction["entry"].back()["resource"]["agent"];
  ASSERT_EQ(agents.size(), 2u) << agents.dump() << ": the transmitter and dr1 once; dr2's code is from another system";
  json expected = json::parse(
      R"({"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/provenance-participant-type","code":"author"}]}})");
  expected["who"] = {{"reference", "Practitioner/" + target_id("ABCD", "Practitioner", "dr1")}};
  expected["onBehalfOf"] = {{"reference", "Organization/" + target_id("ABCD", "Organization", "org1")}};
  EXPECT_EQ(agents[1], expected);
}

// Issue #9 (11): a source reports partial results ("too many resources; results truncated") as an
// OperationOutcome entry; it is not written, but it must not vanish either.
TEST(PageTransform, OperationOutcomesOnThePageBecomeWarnings) {
  const json page = json::parse(R"({"resourceType":"Bundle","type":"searchset","entry":[
      {"search":{"mode":"outcome"},"resource":{"resourceType":"OperationOutcome","id":"oo1","issue":[
        {"severity":"warning","code":"too-costly","diagnostics":"too many resources; results truncated"},
        {"severity":"error","code":"processing","details":{"text":"Claim history unavailable"}}]}},
      {"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}},
      {"resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"}}}]})");
  const auto out = transform_page(page, context());
  ASSERT_EQ(out.target_references.size(), 1u);
  EXPECT_EQ(out.warnings, (std::vector<std::string>{"warning: too many resources; results truncated",
                                                    "error: Claim history unavailable",
                                                    "information: informational"}));
  EXPECT_TRUE(p2p::fhir::is_error_warning(out.warnings[1]));
  EXPECT_FALSE(p2p::fhir::is_error_warning(out.warnings[0]));
  const json long_text = {{"resourceType", "Bundle"}, {"entry", {{{"resource", {{"resourceType", "OperationOutcome"},
      {"issue", {{{"severity", "fatal"}, {"code", "exception"}, {"diagnostics", std::string(1000, 'x')}}}}}}}}}};
  const auto cut = transform_page(long_text, context());
  ASSERT_EQ(cut.warnings.size(), 1u);
  EXPECT_EQ(cut.warnings[0].size(), std::string("fatal: ").size() + 300 + 3);
  EXPECT_TRUE(p2p::fhir::is_error_warning(cut.warnings[0]));
}

// Found in review: a complex extension's nested urls are names ("ombCategory"), not references; they
// must survive at every level.
TEST(PageTransform, NestedExtensionUrlsAreNeverTouched) {
  const json page = json::parse(R"({"resourceType":"Bundle","type":"searchset","entry":[
      {"resource":{"resourceType":"Coverage","id":"c1","status":"active","beneficiary":{"reference":"Patient/m-1"},
        "extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[
          {"url":"ombCategory","valueCoding":{"code":"2106-3"}},
          {"url":"text","valueString":"White"},
          {"url":"detail","extension":[{"url":"Binary/b1","valueReference":{"reference":"Patient?name=x"}}]}]}]}}]})");
  const auto out = transform_page(page, context());
  const json& extension = out.transaction["entry"][0]["resource"]["extension"][0];
  EXPECT_EQ(extension["url"], "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race");
  EXPECT_EQ(extension["extension"][0]["url"], "ombCategory");
  EXPECT_EQ(extension["extension"][1]["url"], "text");
  EXPECT_EQ(extension["extension"][2]["extension"][0]["url"], "Binary/b1");
  EXPECT_FALSE(extension["extension"][2]["extension"][0]["valueReference"].contains("reference"))
      << "the values inside are still references";
}

// Found in review: an Attachment.url on the target's own base would link the member's document to
// whatever the target holds there (another member's Binary).
TEST(PageTransform, AttachmentUrlsOnTheTargetsOwnBaseAreDropped) {
  const json page = json::parse(R"({"resourceType":"Bundle","type":"searchset","entry":[
      {"resource":{"resourceType":"DocumentReference","id":"d1","status":"current","content":[
        {"attachment":{"contentType":"application/pdf","url":"https://target.example/fhir/Binary/other-member"}},
        {"attachment":{"contentType":"application/pdf","url":"HTTPS://TARGET.example:443/fhir/Binary/x"}}]}}]})");
  auto c = context();
  c.target_fhir_endpoint = "https://target.example/fhir/";
  const auto out = transform_page(page, c);
  const json& content = out.transaction["entry"][0]["resource"]["content"];
  EXPECT_FALSE(content[0]["attachment"].contains("url"));
  EXPECT_FALSE(content[1]["attachment"].contains("url"));
  EXPECT_EQ(out.references_replaced, 2u);
}

// Found in review: members of unexpected JSON types must not throw out of the transform (the job would
// end as an "unexpected error"), and made-up type names are not counted one by one.
TEST(PageTransform, HostileShapesDoNotThrowAndMadeUpTypesAreCountedTogether) {
  const json page = json::parse(R"({"resourceType":"Bundle","type":"searchset",
      "link":[5, {"relation":7,"url":"x"}, {"relation":"next","url":9}],
      "entry":[
      {"resource":{"resourceType":"Provenance","id":"pv","target":[{"reference":"Observation/o1"}],"recorded":"2025-01-01T00:00:00Z",
        "agent":[{"type":[1,2],"who":{"reference":"Practitioner/p"}}, {"type":{"coding":"x"},"who":{"reference":"Practitioner/q"}}]}},
      {"resource":{"resourceType":"Aaaa","id":"1"}}, {"resource":{"resourceType":"Aaab","id":"1"}},
      {"resource":{"resourceType":"Subscription","id":"s"}}]})");
  const auto out = transform_page(page, context());
  EXPECT_EQ(out.target_references.size(), 1u);
  EXPECT_EQ(out.skipped_types, (std::map<std::string, std::size_t>{{"NotAnR4ResourceType", 2}, {"Subscription", 1}}));
  EXPECT_EQ(p2p::fhir::next_link(page), std::nullopt);
  EXPECT_THROW(transform_page(json{{"resourceType", 5}}, context()), std::invalid_argument) << "not a Bundle, said as such";
}
