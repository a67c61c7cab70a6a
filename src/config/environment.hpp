#pragma once
// The P2P_* environment variables (private to src/config): each one replaces the value of its key in
// the document before it is read.
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "p2p/config/config.hpp"

namespace p2p::config {

// Puts each P2P_* override into the document at its key, remembering where each key came from.
// A value that is not of its key's type (integer, boolean) is an issue, and the key is left as it was.
void apply_environment(nlohmann::json& document, const Environment& env, std::map<std::string, std::string>& env_sources,
                       std::vector<ConfigIssue>& issues);

}  // namespace p2p::config
