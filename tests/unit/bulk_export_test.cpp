// Bulk Data export, the pure part (fhir/bulk_export.hpp): the manifest read and checked, NDJSON cut
// into chunks the page path reads, X-Progress kept printable.
#include "p2p/fhir/bulk_export.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "p2p/fhir/source_url.hpp"

namespace p2p::fhir {
namespace {

using nlohmann::json;

const std::string kEndpoint = "https://old.example/fhir";

TEST(ExportManifest, IsReadWithItsFilesUnderTheEndpoint) {
  const auto manifest = read_export_manifest(R"({
      "transactionTime": "2026-12-01T10:00:00Z", "request": "https://old.example/fhir/Patient/1/$export",
      "requiresAccessToken": false,
      "output": [{"type": "Observation", "url": "https://old.example/fhir/files/obs-1.ndjson", "count": 40},
                 {"type": "Observation", "url": "https://old.example/fhir/files/obs-2.ndjson"}],
      "error": [{"type": "OperationOutcome", "url": "https://old.example/fhir/files/err.ndjson"}]})",
                                             kEndpoint);
  EXPECT_EQ(manifest.transaction_time, "2026-12-01T10:00:00Z");
  EXPECT_FALSE(manifest.requires_access_token);
  ASSERT_EQ(manifest.output.size(), 2u);
  EXPECT_EQ(manifest.output[0].count, 40);
  EXPECT_FALSE(manifest.output[1].count);
  EXPECT_EQ(manifest.error_urls.size(), 1u);
  // Stored and read back unchanged.
  const auto again = manifest_from_json(manifest_json(manifest));
  EXPECT_EQ(again.output[1].url, "https://old.example/fhir/files/obs-2.ndjson");
  EXPECT_EQ(again.transaction_time, manifest.transaction_time);
  EXPECT_EQ(again.requires_access_token, false);
  // requiresAccessToken left out: the token is sent.
  EXPECT_TRUE(read_export_manifest(R"({"transactionTime": "2026-12-01T10:00:00Z", "output": []})", kEndpoint).requires_access_token);
}

TEST(ExportManifest, RefusesFilesElsewhereAndWhatIsNotAManifest) {
  EXPECT_THROW(read_export_manifest(R"({"transactionTime": "2026-12-01T10:00:00Z", "output": [{"type": "Patient",
                   "url": "https://attacker.example/steal"}]})", kEndpoint),
               SourceUrlError);
  EXPECT_THROW(read_export_manifest(R"({"transactionTime": "2026-12-01T10:00:00Z", "output": [{"type": "Patient",
                   "url": "https://old.example/other/x.ndjson"}]})", kEndpoint),
               SourceUrlError);
  EXPECT_THROW(read_export_manifest("<html>", kEndpoint), std::invalid_argument);
  EXPECT_THROW(read_export_manifest(R"({"output": []})", kEndpoint), std::invalid_argument);
  // transactionTime becomes the next run's _since: a FHIR instant, or the manifest is refused.
  EXPECT_THROW(read_export_manifest(R"({"transactionTime": "yesterday", "output": []})", kEndpoint),
               std::invalid_argument);
  EXPECT_THROW(read_export_manifest(R"({"transactionTime": "2026-12-01T10:00:00Z"})", kEndpoint), std::invalid_argument);
  EXPECT_THROW(read_export_manifest(R"({"transactionTime": "2026-12-01T10:00:00Z", "requiresAccessToken": "no", "output": []})", kEndpoint),
               std::invalid_argument);
}

TEST(ExportChunks, AreSearchsetBundlesOfTheNonBlankLines) {
  const auto lines = ndjson_lines("{\"resourceType\":\"Observation\",\"id\":\"a\"}\r\n\n  \n{\"resourceType\":\"Observation\",\"id\":\"b\"}\n"
                                  "{\"resourceType\":\"Observation\",\"id\":\"c\"}");
  ASSERT_EQ(lines.size(), 3u);
  const json first = json::parse(chunk_bundle(lines, 0, 2));
  EXPECT_EQ(first["type"], "searchset");
  ASSERT_EQ(first["entry"].size(), 2u);
  EXPECT_EQ(first["entry"][1]["resource"]["id"], "b");
  EXPECT_EQ(json::parse(chunk_bundle(lines, 2, 9))["entry"].size(), 1u);
}

TEST(ExportChunks, ALineThatIsNotOneJsonObjectIsRefusedNotSpliced) {
  // A line that would close its entry and add a next link of its own to the Bundle.
  const std::vector<std::string_view> hostile = {
      R"({"resourceType":"Observation","id":"a"}}],"link":[{"relation":"next","url":"https://evil.example"}],"x":[{"resource":{})"};
  try {
    chunk_bundle(hostile, 0, 1);
    FAIL() << "accepted a line that is not one JSON object";
  } catch (const std::invalid_argument& error) {
    EXPECT_STREQ(error.what(), "line 1 of the export file is not a JSON object");
  }
  EXPECT_THROW(chunk_bundle({"[1,2]"}, 0, 1), std::invalid_argument);
  EXPECT_THROW(chunk_bundle({R"({"a": 1})", "not json"}, 0, 2), std::invalid_argument);
}

TEST(ExportErrors, AreTheIssuesOfTheErrorFilesWithTheirSeverity) {
  const auto issues = export_issues(
      R"({"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"not-supported","diagnostics":"Device is not exported"}]})"
      "\n"
      R"({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception","details":{"text":"EOB 7 failed"}}]})"
      "\nnot json\n");
  ASSERT_EQ(issues.size(), 3u);
  EXPECT_EQ(issues[0].severity, "warning");
  EXPECT_EQ(issues[0].text, "Device is not exported");
  EXPECT_EQ(issues[1].severity, "error");
  EXPECT_EQ(issues[1].text, "EOB 7 failed");
  EXPECT_EQ(issues[2].severity, "error");  // a line that is not an OperationOutcome is not silently dropped
}

TEST(ExportProgress, KeepsPrintableAsciiUpTo100Characters) {
  EXPECT_EQ(progress_text("50% done\r\n"), "50% done");
  EXPECT_EQ(progress_text(std::string(300, 'x')).size(), 100u);
}

}  // namespace
}  // namespace p2p::fhir
