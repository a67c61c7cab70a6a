#pragma once
// Reading an OperationOutcome that another server sent: its members may have any JSON type.
#include <string>

#include <nlohmann/json.hpp>

namespace p2p::fhir {

// The text of one OperationOutcome.issue: its diagnostics, else its details.text; "" when neither is a
// string.
inline std::string issue_text(const nlohmann::json& issue) {
  if (!issue.is_object()) return {};
  const auto diagnostics = issue.find("diagnostics");
  if (diagnostics != issue.end() && diagnostics->is_string() && !diagnostics->get_ref<const std::string&>().empty()) {
    return diagnostics->get<std::string>();
  }
  const auto details = issue.find("details");
  if (details == issue.end() || !details->is_object()) return {};
  const auto text = details->find("text");
  return text != details->end() && text->is_string() ? text->get<std::string>() : std::string();
}

// An issue's code, "" when it is not a string.
inline std::string issue_code(const nlohmann::json& issue) {
  const auto code = issue.is_object() ? issue.find("code") : issue.end();
  return issue.is_object() && code != issue.end() && code->is_string() ? code->get<std::string>() : std::string();
}

}  // namespace p2p::fhir
