#pragma once
// FHIR Bulk Data (STU2) export for one member, as the payer-mediated exchange reads it
// (retrieval "export": Patient/{id}/$export). Pure: the manifest read and checked, NDJSON files cut
// into chunks that the page path reads as searchset Bundles. No I/O.
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace p2p::fhir {

struct ExportFile {
  std::string type;                // resource type of every line (Bulk Data: one type per file)
  std::string url;                 // absolute, checked to be under the source's FHIR endpoint
  std::optional<long long> count;  // resources in the file, when the server said
};

struct ExportManifest {
  std::string transaction_time;  // the export's transactionTime (a FHIR instant): _since of the next run
  bool requires_access_token = true;
  std::vector<ExportFile> output;
  std::vector<std::string> error_urls;  // OperationOutcome files the server wrote (read at the end: errors fail the job)
};

// Reads a complete-status manifest (the 200 answer of the status URL). Throws std::invalid_argument
// saying what is wrong, SourceUrlError (source_url.hpp) for a file URL outside the endpoint.
ExportManifest read_export_manifest(std::string_view body, std::string_view fhir_endpoint);

// The manifest as the job stores it (JSON text), and back.
std::string manifest_json(const ExportManifest& manifest);
ExportManifest manifest_from_json(std::string_view stored);

// The lines of an NDJSON body that hold something (blank lines, and a final line break, are skipped).
std::vector<std::string_view> ndjson_lines(std::string_view body);

// Lines [from, to) as a searchset Bundle, each line one entry's resource (the page path reads and
// checks the resources as it reads any page). Throws std::invalid_argument naming the first line
// (1-based) that is not one JSON object by itself.
std::string chunk_bundle(const std::vector<std::string_view>& lines, std::size_t from, std::size_t to);

// The issues of an export's error file (NDJSON OperationOutcomes): severity and text (at most 500
// bytes). A line that is not an OperationOutcome counts as an error.
struct ExportIssue {
  std::string severity;  // fatal, error, warning, information
  std::string text;
};
std::vector<ExportIssue> export_issues(std::string_view ndjson);

// The X-Progress header as the job keeps it: printable ASCII, at most 100 characters.
std::string progress_text(std::string_view header);

}  // namespace p2p::fhir
