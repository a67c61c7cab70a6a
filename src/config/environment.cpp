#include "environment.hpp"

#include <charconv>
#include <sstream>

#include "reader.hpp"

extern char** environ;

namespace p2p::config {
namespace {

using nlohmann::json;


using nlohmann::json;

// The environment variables that override keys: the variable and the key it sets. What a value must
// be (integer, boolean, list) is the key's own type, as the reader records it (key_specs()).
const std::vector<EnvOverride>& override_specs() {
  static const std::vector<EnvOverride> kOverrides = {
      {"P2P_HTTP_HOST", "http.host"},
      {"P2P_HTTP_PORT", "http.port"},
      {"P2P_HTTP_THREADS", "http.threads"},
      {"P2P_HTTP_BLOCKING_THREADS", "http.blockingThreads"},
      {"P2P_HTTP_BODY_LIMIT_BYTES", "http.bodyLimitBytes"},
      {"P2P_SWAGGER_UI_DIR", "http.swaggerUiDir"},
      {"P2P_TLS_CERT_FILE", "http.tls.certFile"},
      {"P2P_TLS_KEY_FILE", "http.tls.keyFile"},
      {"P2P_DATABASE_URL", "database.url"},
      {"P2P_LOG_LEVEL", "log.level"},
      {"P2P_AUTH_MODE", "auth.mode"},
      {"P2P_API_KEYS", "auth.apiKeys"},
      {"P2P_FHIR_PERSISTENCE_URL", "exchange.fhirPersistenceUrl"},
      {"P2P_FHIR_PERSISTENCE_AUTHORIZATION", "exchange.fhirPersistenceAuthorization"},
      {"P2P_TOKEN_ENCRYPTION_KEY", "exchange.tokenEncryptionKey"},
      {"P2P_RETIRED_TOKEN_ENCRYPTION_KEYS", "exchange.retiredTokenEncryptionKeys"},
      {"P2P_CLIENT_SIGNING_KEYS", "exchange.clientSigningKeys"},
      {"P2P_DEVELOPMENT_MODE", "exchange.developmentMode"},
      {"P2P_VERSIONED_REFERENCES", "exchange.versionedReferences"},
      {"P2P_ALLOW_PLAIN_HTTP", "exchange.allowPlainHttp"},
      {"P2P_EXCHANGE_CONCURRENCY", "exchange.concurrency"},
      {"P2P_EXCHANGE_RESOURCE_TYPES", "exchange.resourceTypes"},
      {"P2P_NOTIFICATIONS_ENABLED", "notifications.enabled"},
      {"P2P_PUBLIC_BASE_URL", "notifications.publicBaseUrl"},
      {"P2P_CONNECT_PUBLIC_BASE_URL", "connect.publicBaseUrl"},
      {"P2P_CONNECT_ALLOWED_RETURN_URLS", "connect.allowedReturnUrls"},
      {"P2P_HOOK_SECRET", "notifications.hookSecret"},
      {"P2P_SMTP_URL", "notifications.smtp.url"},
      {"P2P_SMTP_STARTTLS", "notifications.smtp.startTls"},
      {"P2P_SMTP_USER", "notifications.smtp.user"},
      {"P2P_SMTP_PASSWORD", "notifications.smtp.password"},
      {"P2P_MAIL_FROM", "notifications.mail.from"},
      {"P2P_MAIL_ADMINS", "notifications.mail.admins"},
  };
  return kOverrides;
}


std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  std::stringstream stream(key);
  for (std::string part; std::getline(stream, part, '.');) parts.push_back(part);
  return parts;
}


}  // namespace

void apply_environment(json& document, const Environment& env, std::map<std::string, std::string>& env_sources,
                       std::vector<ConfigIssue>& issues) {
  static const std::map<std::string, std::string> kTypes = [] {
    std::map<std::string, std::string> types;
    for (const auto& spec : key_specs()) types[spec.key] = spec.type;
    return types;
  }();
  for (const auto& names : override_specs()) {
    auto found = env.find(names.variable);
    if (found == env.end()) continue;
    const std::string& raw = found->second;
    const std::string& type = kTypes.at(names.key);  // (a variable for a key nobody reads fails every test)
    json value;
    if (type == "string") {
      value = raw;
    } else if (type == "integer") {
      std::int64_t number = 0;
      const std::string text = trim(raw);
      auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
      if (error != std::errc() || end != text.data() + text.size() || text.empty()) {
        issues.push_back({std::string(names.key) + " (from " + names.variable + ")",
                          "must be an integer, got \"" + raw + "\""});
        continue;
      }
      value = number;
    } else if (type == "boolean") {
      const std::string text = trim(raw);
      if (text == "true" || text == "1") {
        value = true;
      } else if (text == "false" || text == "0" || text.empty()) {
        value = false;
      } else {
        issues.push_back({std::string(names.key) + " (from " + names.variable + ")",
                          "must be true or false, got \"" + raw + "\""});
        continue;
      }
    } else {  // an array of strings: comma-separated
      value = json::array();
      std::stringstream stream(raw);
      for (std::string item; std::getline(stream, item, ',');) {
        if (auto trimmed = trim(item); !trimmed.empty()) value.push_back(trimmed);
      }
    }
    json* node = &document;
    for (const auto& part : split_key(names.key)) {
      if (!node->is_object()) *node = json::object();
      node = &(*node)[part];
    }
    *node = std::move(value);
    env_sources[names.key] = names.variable;
  }
}


const std::vector<EnvOverride>& environment_overrides() { return override_specs(); }

Environment process_environment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    if (!text.starts_with("P2P_")) continue;
    const auto equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    env.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
  }
  return env;
}

}  // namespace p2p::config
