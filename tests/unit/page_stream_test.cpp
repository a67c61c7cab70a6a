// The streaming page path (fhir/page_stream.hpp) against the DOM path (transform_page): the same
// transaction after canonicalising (parsed with nlohmann::json on both sides), the same counts,
// warnings, next link and errors, on the fuzz corpora, on generated pages and on hostile bytes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "p2p/fhir/page_stream.hpp"

using nlohmann::json;
using p2p::fhir::write_page;
using p2p::fhir::write_page_with_dom;
using p2p::fhir::TransformContext;
using p2p::fhir::WrittenPage;

namespace {

TransformContext context(bool mdm) {
  TransformContext c;
  c.source_fhir_endpoint = "https://src.example.com/fhir/";
  c.target_fhir_endpoint = "https://target.example.org/r4";
  c.source_organization_id = "ABCD";
  c.source_organization_name = "P2P \"Source\" Payer A";
  c.source_patient_id = "m-1";
  c.target_patient_id = "t-9";
  c.traceability_system = "urn:p2p-exchange:source:ABCD";
  c.exchange_tag_system = "urn:p2p-exchange:exchange";
  c.exchange_tag_code = "batch-job-42";
  if (mdm) c.mdm = p2p::fhir::MdmIdentifierType{"http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType", "um", "https://target.example/member-id"};
  c.recorded = "2026-11-25T10:00:00Z";
  c.source_page_url = "https://src.example.com/fhir/Patient/m-1/$everything?_count=50";
  return c;
}

// What a page path made of a page, or the error it threw.
struct Outcome {
  std::string error;  // "<kind>: what()" when it threw
  WrittenPage page;
};

template <typename Run>
Outcome outcome_of(Run run) {
  Outcome outcome;
  try {
    outcome.page = run();
  } catch (const p2p::fhir::PageNotJson& e) {
    outcome.error = std::string("not json: ") + e.what();
  } catch (const std::invalid_argument& e) {
    outcome.error = std::string("invalid: ") + e.what();
  } catch (const json::exception& e) {
    outcome.error = std::string("json: ") + e.what();
  }
  return outcome;
}

// Both paths on `body`; returns whether the streaming path took it (false: it fell back to the DOM).
bool same_on_both_paths(const std::string& body, const TransformContext& c, const std::string& label) {
  std::string bytes = body;  // the streaming path may pad it
  const Outcome streamed = outcome_of([&] { return write_page(bytes, c); });
  const Outcome dom = outcome_of([&] { return write_page_with_dom(body, c); });
  EXPECT_EQ(streamed.error, dom.error) << label;
  if (!streamed.error.empty() || !dom.error.empty()) return false;
  const auto& a = streamed.page;
  const auto& b = dom.page;
  const json transaction_a = json::parse(a.transaction, nullptr, false);
  const json transaction_b = json::parse(b.transaction);
  EXPECT_FALSE(transaction_a.is_discarded()) << label << "\n" << a.transaction;
  EXPECT_EQ(transaction_a, transaction_b) << label << "\nstreamed: " << transaction_a.dump() << "\ndom:      " << transaction_b.dump();
  EXPECT_EQ(a.entries, b.entries) << label;
  EXPECT_EQ(a.entries, transaction_b["entry"].size()) << label;
  EXPECT_EQ(a.provenance.empty(), b.provenance.empty()) << label;
  if (!a.provenance.empty() && !b.provenance.empty()) {
    EXPECT_EQ(json::parse(a.provenance), json::parse(b.provenance)) << label;
  }
  EXPECT_EQ(a.next, b.next) << label;
  EXPECT_EQ(a.summary.target_references, b.summary.target_references) << label;
  EXPECT_EQ(a.summary.provenance_id, b.summary.provenance_id) << label;
  EXPECT_EQ(a.summary.skipped, b.summary.skipped) << label;
  EXPECT_EQ(a.summary.skipped_types, b.summary.skipped_types) << label;
  EXPECT_EQ(a.summary.references_replaced, b.summary.references_replaced) << label;
  EXPECT_EQ(a.summary.warnings, b.summary.warnings) << label;
  EXPECT_EQ(a.summary.source_error, b.summary.source_error) << label;
  EXPECT_FALSE(b.streamed);
  return a.streamed;
}

std::vector<std::filesystem::path> files_under(const std::filesystem::path& folder) {
  std::vector<std::filesystem::path> files;
  if (!std::filesystem::exists(folder)) return files;
  for (const auto& item : std::filesystem::recursive_directory_iterator(folder)) {
    if (item.is_regular_file()) files.push_back(item.path());
  }
  return files;
}

std::string read(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Random pages in the shapes source payers send, with every kind of reference the rules know, and
// (on request) the shapes that make the streaming path hand over to the DOM path.
class PageGenerator {
 public:
  explicit PageGenerator(unsigned seed) : random_(seed) {}

  std::string page(bool oddities) {
    json entries = json::array();
    const int count = pick(0, 14);
    for (int i = 0; i < count; ++i) entries.push_back(entry(i));
    json page = {{"resourceType", "Bundle"}, {"type", "searchset"}, {"total", count}, {"entry", entries}};
    if (chance(70)) {
      page["link"] = json::array({{{"relation", "self"}, {"url", "https://src.example.com/fhir/Patient/m-1/$everything"}}});
      if (chance(70)) page["link"].push_back({{"relation", "next"}, {"url", "https://src.example.com/fhir/Patient/m-1/$everything?page=" + std::to_string(pick(2, 9))}});
    }
    std::string text = chance(50) ? page.dump() : page.dump(1);
    if (oddities) text = odd(std::move(text));
    return text;
  }

 private:
  int pick(int low, int high) { return std::uniform_int_distribution<int>(low, high)(random_); }
  bool chance(int percent) { return pick(1, 100) <= percent; }
  template <typename T>
  const T& one_of(const std::vector<T>& items) { return items[static_cast<std::size_t>(pick(0, static_cast<int>(items.size()) - 1))]; }

  std::string reference() {
    static const std::vector<std::string> kReferences = {
        "Patient/m-1", "Patient/m-1/_history/2", "https://src.example.com/fhir/Patient/m-1", "https://SRC.example.com:443/fhir/Patient/m-1",
        "Encounter/e1", "Encounter/e1/_history/3", "Practitioner/pr1", "Organization/org1", "Observation/o3",
        "urn:uuid:0f4e2c1a-0000-4000-8000-000000000001", "urn:uuid:0f4e2c1a-0000-4000-8000-000000000009",
        "#contained-1", "Patient?identifier=urn:x|1", "https://other.example.net/fhir/Patient/9",
        "https://target.example.org/r4/Patient/t-9", "Task/t1", "not a reference", "Observation/bad id!",
        "Condition/c1", "ExplanationOfBenefit/eob1", "http://src.example.com/fhir/Encounter/e1", "", "Coverage/cov1"};
    return one_of(kReferences);
  }

  json reference_object() {
    json object = json::object();
    const int shape = pick(0, 9);
    if (shape != 9) object["reference"] = reference();
    if (shape == 1 || shape == 9) object["identifier"] = {{"system", "urn:npi"}, {"value", "123"}};
    if (shape == 2 || shape == 9) object["display"] = "Dr. Ó \"Quoted\"";
    if (shape == 3) object["reference"] = 42;  // not a string: left alone by both
    if (shape == 4) object["type"] = "Patient";
    return object;
  }

  json attachment() {
    static const std::vector<std::string> kUrls = {
        "Binary/b1", "https://src.example.com/fhir/Binary/b1", "https://target.example.org/r4/Binary/x", "https://cdn.example.com/a.pdf",
        "urn:uuid:0f4e2c1a-0000-4000-8000-000000000001", "#c1", "Binary/not valid!", "DocumentReference/d1", "https://src.example.com/fhir/metadata"};
    json a = {{"contentType", "application/pdf"}, {"url", one_of(kUrls)}};
    if (chance(30)) a["title"] = "note\n\ttab\u00e9";
    return a;
  }

  json extensions(int depth) {
    json list = json::array();
    const int count = pick(1, 3);
    for (int i = 0; i < count; ++i) {
      json extension = {{"url", chance(50) ? "ombCategory" : "Patient/m-1"}};
      const int kind = pick(0, 3);
      if (kind == 0) extension["valueReference"] = reference_object();
      if (kind == 1) extension["valueString"] = "x";
      if (kind == 2 && depth < 3) extension["extension"] = extensions(depth + 1);
      if (kind == 3) extension["valueAttachment"] = attachment();
      list.push_back(extension);
    }
    return list;
  }

  json meta() {
    json m = json::object();
    if (chance(60)) m["versionId"] = std::to_string(pick(1, 9));
    if (chance(60)) m["lastUpdated"] = "2026-01-0" + std::to_string(pick(1, 9)) + "T00:00:00Z";
    if (chance(20)) m["source"] = "#abc";
    if (chance(50)) m["profile"] = json::array({"http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"});
    if (chance(40)) m["tag"] = json::array({{{"system", "urn:t"}, {"code", "a"}}});
    if (chance(10)) m["tag"] = json::array({{{"system", "urn:t"}, {"url", "Binary/b1"}}});
    if (chance(10)) m["security"] = json::array({{{"system", "urn:s"}, {"code", "R"}}});
    return m;
  }

  json resource(int index) {
    static const std::vector<std::string> kTypes = {"Observation", "Encounter", "Condition", "ExplanationOfBenefit", "Patient",
                                                    "Practitioner", "Organization", "DocumentReference", "Provenance",
                                                    "QuestionnaireResponse", "Task", "MadeUpType", "OperationOutcome", "Binary", "Coverage"};
    const std::string type = chance(45) ? "Observation" : one_of(kTypes);
    json r = {{"resourceType", type}};
    static const std::vector<std::string> kIds = {"o1", "o2", "o3", "e1", "m-1", "pr1", "org1", "c1", "eob1", "d1", "p1", "cov1"};
    if (chance(95)) r["id"] = type == "Patient" && chance(60) ? std::string("m-1") : (chance(70) ? one_of(kIds) : "x" + std::to_string(index));
    if (chance(80)) r["meta"] = meta();
    if (chance(60)) r["identifier"] = json::array({{{"system", "urn:src:" + type}, {"value", std::to_string(index)}, {"assigner", reference_object()}}});
    if (type == "QuestionnaireResponse" && r.contains("identifier") && chance(70)) r["identifier"] = r["identifier"][0];  // 0..1 there
    r["status"] = "final";
    if (chance(90)) r["subject"] = reference_object();
    if (chance(50)) r["encounter"] = reference_object();
    if (chance(40)) r["performer"] = json::array({reference_object(), reference_object()});
    if (chance(50)) r["valueQuantity"] = {{"value", one_of(std::vector<json>{json(6.3), json(120), json(-0.5), json(0)})}, {"unit", "%"}};
    if (chance(30)) r["extension"] = extensions(0);
    if (chance(15)) r["modifierExtension"] = extensions(0);
    if (chance(30)) r["content"] = json::array({{{"attachment", attachment()}}});
    if (chance(10)) r["contained"] = json::array({{{"resourceType", "Practitioner"}, {"id", "contained-1"}, {"name", json::array({{{"family", "Kim"}}})}}});
    if (chance(20)) r["item"] = json::array({{{"sequence", 1}, {"encounter", json::array({reference_object()})}, {"net", {{"value", 12.5}, {"currency", "USD"}}}}});
    if (type == "Provenance") {
      r["target"] = json::array({reference_object()});
      r["agent"] = json::array({{{"type", {{"coding", json::array({{{"system", "http://terminology.hl7.org/CodeSystem/provenance-participant-type"}, {"code", "author"}}})}}},
                                 {"who", reference_object()}}});
      if (chance(50)) r["agent"][0]["onBehalfOf"] = reference_object();
    }
    if (type == "OperationOutcome") {
      r["issue"] = json::array({{{"severity", one_of(std::vector<std::string>{"warning", "error", "information"})}, {"code", "too-costly"}, {"diagnostics", "results truncated"}}});
    }
    if (chance(5)) r["url"] = "Binary/b1";
    if (chance(5)) r["reference"] = "Task/9";
    return r;
  }

  json entry(int index) {
    if (chance(3)) return json(chance(50) ? "not an entry" : json::array());
    json e = json::object();
    const int full_url = pick(0, 3);
    json r = resource(index);
    if (full_url == 0 && r.contains("id")) e["fullUrl"] = "https://src.example.com/fhir/" + r["resourceType"].get<std::string>() + "/" + (r["id"].is_string() ? r["id"].get<std::string>() : "");
    if (full_url == 1) e["fullUrl"] = index == 0 ? "urn:uuid:0f4e2c1a-0000-4000-8000-000000000001" : "urn:uuid:0f4e2c1a-0000-4000-8000-00000000000" + std::to_string(index % 10);
    if (chance(97)) e["resource"] = r;
    e["search"] = {{"mode", chance(90) ? "match" : "outcome"}};
    return e;
  }

  // Byte-level changes that valid pages rarely have: escapes, spellings of numbers, duplicate keys,
  // invalid JSON. Either path may refuse the result; they must agree.
  std::string odd(std::string text) {
    static const std::vector<std::pair<std::string, std::string>> kChanges = {
        {"\"reference\"", "\"r\\u0065ference\""},      {"\"status\":\"final\"", "\"status\":\"final\",\"status\":\"amended\""},
        {"6.3", "6.30"},                               {"120", "1.2e2"},
        {"\"final\"", "\"fin\\u00e1l \\/ \\ud83d\\ude00\""}, {"\"match\"", "tru"},
        {"\"final\"", "\"\\ud800\""},                  {"\"final\"", "\"\\udc00x\""},
        {"120", "0120"},                               {"\"search\"", "\"se\\u0000arch\""},
        {"\"meta\":{", "\"meta\":{\"tag\":{},"},     {"\"identifier\":[", "\"identifier\":null,\"x\":["},
        {"\"total\":", "\"total\":-0,\"t\":"},         {"12.5", "123456789012345678901234567890"},
        {"\"searchset\"", "\"searchset\"} "},          {"\"Bundle\"", "\"Bundl\\u0065\""},
        {"\"versionId\":", "\"versionId\":{\"reference\":\"Task/1\"},\"v\":"}, {"\"fullUrl\"", "\"fullUrl\":1,\"fullUrl\""},
        {"\"resourceType\":\"Observation\"", "\"resourceType\":\"Observation\",\"resourceType\":\"Task\""},
        {"\"url\"", "\"\\u0075rl\""},                  {"\"final\"", "\"tab\tinside\""}};
    const int changes = pick(1, 3);
    for (int i = 0; i < changes; ++i) {
      const auto& [from, to] = one_of(kChanges);
      const auto at = text.find(from);
      if (at != std::string::npos) text.replace(at, from.size(), to);
    }
    return text;
  }

  std::mt19937 random_;
};

}  // namespace

TEST(PageStream, TheFuzzCorporaMeanTheSameOnBothPaths) {
  const std::filesystem::path root = std::filesystem::path(P2P_SOURCE_DIR) / "tests" / "fuzz";
  std::size_t files = 0;
  for (const auto& folder : {root / "corpus" / "page_transform", root / "regressions" / "page_transform"}) {
    for (const auto& file : files_under(folder)) {
      const std::string body = read(file);
      same_on_both_paths(body, context(false), file.string());
      same_on_both_paths(body, context(true), file.string() + " (MDM)");
      ++files;
    }
  }
  EXPECT_GE(files, 7U);
}

TEST(PageStream, GeneratedPagesMeanTheSameAndTakeTheStreamingPath) {
  PageGenerator generator(20261202);
  int streamed = 0;
  constexpr int kPages = 600;
  for (int i = 0; i < kPages; ++i) {
    const std::string body = generator.page(false);
    const bool mdm = i % 3 == 0;
    if (same_on_both_paths(body, context(mdm), "generated page " + std::to_string(i) + ":\n" + body)) ++streamed;
  }
  // Valid pages without duplicate keys, exponents or members of unusual JSON types all stream.
  EXPECT_EQ(streamed, kPages);
}

TEST(PageStream, OddAndInvalidBytesMeanTheSameOrFailTheSameOnBothPaths) {
  PageGenerator generator(7);
  int streamed = 0;
  constexpr int kPages = 1500;
  for (int i = 0; i < kPages; ++i) {
    const std::string body = generator.page(true);
    if (same_on_both_paths(body, context(i % 2 == 0), "odd page " + std::to_string(i) + ":\n" + body)) ++streamed;
  }
  EXPECT_GT(streamed, 0);
}

TEST(PageStream, HostileBytesFailAsOnTheDomPath) {
  const std::vector<std::string> pages = {
      "",
      "   ",
      "[]",
      "{\"resourceType\":\"Bundle\"} x",
      "{\"resourceType\":\"Bundle\"} {}",
      "{\"resourceType\":\"Bundle\",\"entry\":[{\"search\":{\"mode\":tru}}]}",
      "{\"resourceType\":\"Bundle\",\"meta\":{\"versionId\":01}}",
      "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Task\",\"id\":\"1\",\"x\":[1,]}}]}",
      "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"1\",\"x\":\"\\ud800\"}}]}",
      "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"1\",\"x\":\"a\x01\"}}]}",
      "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"1\",\"x\":\"\xff\"}}]}",
      "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"1\",\"x\":1e999}}]}",
      "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"1\",\"x\":nul}}]}",
      "{\"resourceType\":\"Patient\",\"id\":\"m-1\"}",
      "{\"resourceType\":\"Bundle\",\"entry\":{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"1\"}}}",
      // A colon after a value: simdjson's On-Demand parser skips a value it was not asked to read
      // leniently (a string followed by a colon looks like a key to it); found by the fuzzer.
      R"({"resourceType":"Bundle","type":"a":"b","entry":[]})",
      R"({"resourceType":"Bundle","total":1:2,"entry":[]})",
      R"({"resourceType":"Bundle","entry":[{"search":{"mode":"match":"x"}}]})",
      R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"1","status":"a":"b"}}]})",
      R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"1","code":{"text":"a":"b"}}}]})",
      R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Task","id":"1","status":"a":"b"}}]})",
      R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"1","valueBoolean":true:false}}]})",
      R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"1","x":["a":"b"]}}]})",
      R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":1:2}}]})",
      R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"1","meta":{"versionId":"a":"b"}}}]})",
      R"({"resourceType":"Bundle","entry":[{"fullUrl":"a":"b","resource":{"resourceType":"Observation","id":"1"}}]})",
      R"({"resourceType":"Bundle","link":[{"relation":"next","url":"a":"b"}],"entry":[]})",
      R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"1","status":"a":"b"}}}]})",
      R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Task","id":"1","status":"a":"b"}}}]})",
      R"({"resourceType":"Bundle","entry":[{"search":{"mode":"a":"b"}}}]})",
      std::string(300, '[') + std::string(300, ']'),
      "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"1\",\"x\":" +
          std::string(260, '[') + std::string(260, ']') + "}}]}",
      "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"1\",\"x\":" +
          std::string(250, '[') + std::string(250, ']') + "}}]}",
      "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"1\",\"x\":" +
          std::string(2000, '[') + std::string(2000, ']') + "}}]}",
  };
  for (const auto& page : pages) {
    same_on_both_paths(page, context(false), page.substr(0, 200));
  }
}

TEST(PageStream, NumbersKeepTheirSourceText) {
  std::string body = R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/m-1"},"valueQuantity":{"value":0.10,"unit":"mg"}}}]})";
  const WrittenPage page = write_page(body, context(false));
  ASSERT_TRUE(page.streamed);
  EXPECT_NE(page.transaction.find(R"("value":0.10,)"), std::string::npos) << page.transaction;
  EXPECT_NE(page.transaction.find(R"("reference":"Patient/t-9")"), std::string::npos) << page.transaction;
}

TEST(PageStream, TheTransactionTakesOverTheBufferGivenAndReplacesItsText) {
  const std::string page = R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/m-1"}}}]})";
  std::string body = page;
  const WrittenPage fresh = write_page(body, context(false));
  std::string buffer(64 * 1024, 'o');  // a transaction sent before: replaced, not appended to
  const char* const storage = buffer.data();
  body = page;

  const WrittenPage reused = write_page(body, context(false), std::move(buffer));

  ASSERT_TRUE(reused.streamed);
  EXPECT_EQ(reused.transaction, fresh.transaction);
  EXPECT_EQ(reused.transaction.data(), storage);
}
