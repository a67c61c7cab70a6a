#include "p2p/fhir/bulk_export.hpp"

#include <nlohmann/json.hpp>

#include "p2p/fhir/operation_outcome.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/util/time.hpp"

namespace p2p::fhir {
namespace {

using nlohmann::json;

std::string required_string(const json& object, const char* name, const std::string& what) {
  const auto found = object.find(name);
  if (found == object.end() || !found->is_string() || found->get_ref<const std::string&>().empty()) {
    throw std::invalid_argument(what + " has no " + name);
  }
  return found->get<std::string>();
}

}  // namespace

ExportManifest read_export_manifest(std::string_view body, std::string_view fhir_endpoint) {
  const json manifest = json::parse(body, nullptr, false);
  if (manifest.is_discarded() || !manifest.is_object()) {
    throw std::invalid_argument("the source payer's export manifest is not a JSON object");
  }
  ExportManifest read;
  read.transaction_time = required_string(manifest, "transactionTime", "the source payer's export manifest");
  if (!util::is_fhir_instant(read.transaction_time)) {  // it becomes the next run's _since
    throw std::invalid_argument("the source payer's export manifest has a transactionTime that is not a FHIR instant");
  }
  const auto requires_token = manifest.find("requiresAccessToken");
  if (requires_token != manifest.end() && !requires_token->is_boolean()) {
    throw std::invalid_argument("the source payer's export manifest has a requiresAccessToken that is not a boolean");
  }
  read.requires_access_token = requires_token == manifest.end() || requires_token->get<bool>();
  const auto output = manifest.find("output");
  if (output == manifest.end() || !output->is_array()) {
    throw std::invalid_argument("the source payer's export manifest has no output list");
  }
  for (const auto& file : *output) {
    if (!file.is_object()) throw std::invalid_argument("the source payer's export manifest lists an output that is not an object");
    ExportFile entry;
    entry.type = required_string(file, "type", "an output of the source payer's export manifest");
    // The file URLs come from the source: the same rule as next links (SourceUrlError otherwise).
    entry.url = require_under_endpoint(fhir_endpoint, required_string(file, "url", "an output of the source payer's export manifest"));
    const auto count = file.find("count");
    if (count != file.end() && count->is_number_integer() && count->get<long long>() >= 0) entry.count = count->get<long long>();
    read.output.push_back(std::move(entry));
  }
  const auto errors = manifest.find("error");
  if (errors != manifest.end() && errors->is_array()) {
    for (const auto& file : *errors) {
      if (!file.is_object() || !file.contains("url") || !file["url"].is_string()) continue;
      read.error_urls.push_back(require_under_endpoint(fhir_endpoint, file["url"].get<std::string>()));
    }
  }
  return read;
}

std::string manifest_json(const ExportManifest& manifest) {
  json stored = {{"transactionTime", manifest.transaction_time},
                 {"requiresAccessToken", manifest.requires_access_token},
                 {"output", json::array()},
                 {"error", manifest.error_urls}};
  for (const auto& file : manifest.output) {
    json entry = {{"type", file.type}, {"url", file.url}};
    if (file.count) entry["count"] = *file.count;
    stored["output"].push_back(std::move(entry));
  }
  return stored.dump(-1, ' ', false, json::error_handler_t::replace);
}

ExportManifest manifest_from_json(std::string_view stored) {
  const json manifest = json::parse(stored);
  ExportManifest read;
  read.transaction_time = manifest.at("transactionTime").get<std::string>();
  read.requires_access_token = manifest.at("requiresAccessToken").get<bool>();
  for (const auto& file : manifest.at("output")) {
    ExportFile entry{file.at("type").get<std::string>(), file.at("url").get<std::string>(), std::nullopt};
    if (file.contains("count")) entry.count = file["count"].get<long long>();
    read.output.push_back(std::move(entry));
  }
  for (const auto& url : manifest.value("error", json::array())) read.error_urls.push_back(url.get<std::string>());
  return read;
}

std::vector<std::string_view> ndjson_lines(std::string_view body) {
  std::vector<std::string_view> lines;
  while (!body.empty()) {
    const auto end = body.find('\n');
    std::string_view line = body.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") != std::string_view::npos) lines.push_back(line);
    if (end == std::string_view::npos) break;
    body.remove_prefix(end + 1);
  }
  return lines;
}

std::string chunk_bundle(const std::vector<std::string_view>& lines, std::size_t from, std::size_t to) {
  std::size_t size = 64;
  for (std::size_t i = from; i < to && i < lines.size(); ++i) size += lines[i].size() + 16;
  std::string bundle;
  bundle.reserve(size);
  bundle += R"({"resourceType":"Bundle","type":"searchset","entry":[)";
  for (std::size_t i = from; i < to && i < lines.size(); ++i) {
    // Each line must be one JSON object by itself: a line that is not could close the entry and add
    // members of its own to the Bundle (a next link, say).
    const auto first = lines[i].find_first_not_of(" \t");
    if (first == std::string_view::npos || lines[i][first] != '{' || !json::accept(lines[i])) {
      throw std::invalid_argument("line " + std::to_string(i + 1) + " of the export file is not a JSON object");
    }
    if (i > from) bundle += ',';
    bundle += R"({"resource":)";
    bundle += lines[i];
    bundle += '}';
  }
  bundle += "]}";
  return bundle;
}

std::vector<ExportIssue> export_issues(std::string_view ndjson) {
  std::vector<ExportIssue> issues;
  for (const auto line : ndjson_lines(ndjson)) {
    const json outcome = json::parse(line, nullptr, false);
    if (!outcome.is_object() || outcome.value("resourceType", "") != "OperationOutcome" ||
        !outcome.contains("issue") || !outcome["issue"].is_array()) {
      issues.push_back({"error", "a line of the export's error file is not an OperationOutcome"});
      continue;
    }
    for (const auto& issue : outcome["issue"]) {
      std::string severity = issue.is_object() && issue.contains("severity") && issue["severity"].is_string()
                                 ? issue["severity"].get<std::string>()
                                 : "error";
      std::string text = issue_text(issue);
      if (text.empty()) text = issue_code(issue);
      if (text.empty()) text = "(no text)";
      issues.push_back({std::move(severity), text.substr(0, 500)});
    }
  }
  return issues;
}

std::string progress_text(std::string_view header) {
  std::string text;
  for (const char c : header) {
    if (text.size() >= 100) break;
    if (c >= 0x20 && c < 0x7f) text += c;
  }
  return text;
}

}  // namespace p2p::fhir
