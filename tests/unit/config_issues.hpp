#pragma once
// For configuration tests: the problems parse_config reports, as "key: reason" lines, to assert on
// exact wording.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "p2p/config/config.hpp"

namespace p2p::test {

inline std::vector<std::string> issues_of(const nlohmann::json& document, const config::Environment& env) {
  try {
    config::parse_config(document, env);
  } catch (const config::ConfigError& error) {
    std::vector<std::string> lines;
    for (const auto& issue : error.issues()) lines.push_back(issue.key + ": " + issue.reason);
    return lines;
  }
  return {};
}

}  // namespace p2p::test
