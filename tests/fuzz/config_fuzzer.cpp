// The configuration parser (config::parse_config). Leading lines of the form "P2P_NAME=value" are the
// environment; the rest is the JSON document, read as load_config reads the file (comments allowed).
// config::ConfigError is the expected failure (with at least one issue); anything else escaping is a
// bug, since the service would then die at start-up without saying which key is wrong.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_check.hpp"
#include "p2p/config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace p2p;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  config::Environment env;
  while (input.starts_with("P2P_") && env.size() < 16) {
    const auto newline = input.find('\n');
    const auto line = input.substr(0, newline);
    const auto equals = line.find('=');
    if (equals != std::string_view::npos) env[std::string(line.substr(0, equals))] = std::string(line.substr(equals + 1));
    input.remove_prefix(newline == std::string_view::npos ? input.size() : newline + 1);
  }
  const auto document = nlohmann::json::parse(input, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
  if (document.is_discarded()) return 0;  // load_config reports it as "is not valid JSON"
  try {
    const auto config = config::parse_config(document, env);
    fuzz::check(config.http.threads >= 1 && config.http.blocking_threads >= 1, "accepted a thread count below 1");
    fuzz::check(config.auth.mode != config::AuthMode::kApiKey || !config.auth.api_keys.empty(),
                "accepted auth mode apiKey without keys");
  } catch (const config::ConfigError& error) {
    fuzz::check(!error.issues().empty(), "ConfigError without issues");
    for (const auto& issue : error.issues()) fuzz::check(!issue.key.empty() && !issue.reason.empty(), "an issue without key or reason");
  }
  return 0;
}
