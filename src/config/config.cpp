#include "p2p/config/config.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include <arpa/inet.h>
#include <nlohmann/json.hpp>

#include "p2p/crypto/token_cipher.hpp"
#include "p2p/fhir/page_transform.hpp"
#include "p2p/mail/address.hpp"
#include "p2p/mail/templates.hpp"
#include "p2p/util/text.hpp"
#include "p2p/util/url_rules.hpp"

extern char** environ;

namespace p2p::config {
namespace {

using nlohmann::json;

enum class Kind { kString, kInteger, kStringList, kBoolean };

struct OverrideSpec {
  EnvOverride names;
  Kind kind;
};

const std::vector<OverrideSpec>& override_specs() {
  static const std::vector<OverrideSpec> kSpecs = {
      {{"P2P_HTTP_HOST", "http.host"}, Kind::kString},
      {{"P2P_HTTP_PORT", "http.port"}, Kind::kInteger},
      {{"P2P_HTTP_THREADS", "http.threads"}, Kind::kInteger},
      {{"P2P_HTTP_BLOCKING_THREADS", "http.blockingThreads"}, Kind::kInteger},
      {{"P2P_HTTP_BODY_LIMIT_BYTES", "http.bodyLimitBytes"}, Kind::kInteger},
      {{"P2P_SWAGGER_UI_DIR", "http.swaggerUiDir"}, Kind::kString},
      {{"P2P_TLS_CERT_FILE", "http.tls.certFile"}, Kind::kString},
      {{"P2P_TLS_KEY_FILE", "http.tls.keyFile"}, Kind::kString},
      {{"P2P_DATABASE_URL", "database.url"}, Kind::kString},
      {{"P2P_LOG_LEVEL", "log.level"}, Kind::kString},
      {{"P2P_AUTH_MODE", "auth.mode"}, Kind::kString},
      {{"P2P_API_KEYS", "auth.apiKeys"}, Kind::kStringList},
      {{"P2P_FHIR_PERSISTENCE_URL", "exchange.fhirPersistenceUrl"}, Kind::kString},
      {{"P2P_FHIR_PERSISTENCE_AUTHORIZATION", "exchange.fhirPersistenceAuthorization"}, Kind::kString},
      {{"P2P_TOKEN_ENCRYPTION_KEY", "exchange.tokenEncryptionKey"}, Kind::kString},
      {{"P2P_RETIRED_TOKEN_ENCRYPTION_KEYS", "exchange.retiredTokenEncryptionKeys"}, Kind::kStringList},
      {{"P2P_DEVELOPMENT_MODE", "exchange.developmentMode"}, Kind::kBoolean},
      {{"P2P_VERSIONED_REFERENCES", "exchange.versionedReferences"}, Kind::kBoolean},
      {{"P2P_ALLOW_PLAIN_HTTP", "exchange.allowPlainHttp"}, Kind::kBoolean},
      {{"P2P_EXCHANGE_CONCURRENCY", "exchange.concurrency"}, Kind::kInteger},
      {{"P2P_EXCHANGE_RESOURCE_TYPES", "exchange.resourceTypes"}, Kind::kStringList},
      {{"P2P_NOTIFICATIONS_ENABLED", "notifications.enabled"}, Kind::kBoolean},
      {{"P2P_PUBLIC_BASE_URL", "notifications.publicBaseUrl"}, Kind::kString},
      {{"P2P_HOOK_SECRET", "notifications.hookSecret"}, Kind::kString},
      {{"P2P_SMTP_URL", "notifications.smtp.url"}, Kind::kString},
      {{"P2P_SMTP_STARTTLS", "notifications.smtp.startTls"}, Kind::kString},
      {{"P2P_SMTP_USER", "notifications.smtp.user"}, Kind::kString},
      {{"P2P_SMTP_PASSWORD", "notifications.smtp.password"}, Kind::kString},
      {{"P2P_MAIL_FROM", "notifications.mail.from"}, Kind::kString},
      {{"P2P_MAIL_ADMINS", "notifications.mail.admins"}, Kind::kStringList},
  };
  return kSpecs;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buffer) == 1 || ::inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  std::stringstream stream(key);
  for (std::string part; std::getline(stream, part, '.');) parts.push_back(part);
  return parts;
}

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

// The key path of `name` inside the object at `path` ("" for the root), readable whatever the document
// holds: a name that is not plain (empty, spaces, dots, brackets, quotes, control or non-ASCII
// characters) is quoted as a JSON string, a long one is cut, and one at the root says so: (root)."".
std::string key_path(const std::string& path, const std::string& name) {
  constexpr std::size_t kShownBytes = 64;
  const bool plain = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '$';
  });
  const bool long_name = name.size() > kShownBytes;
  std::string shown(util::utf8_prefix(name, kShownBytes));
  if (!plain) shown = json(shown).dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
  if (long_name) shown += "...(" + std::to_string(name.size()) + " bytes)";
  if (path.empty()) return plain ? shown : "(root)." + shown;
  return path + "." + shown;
}

// Reads typed values out of the document, collecting every issue instead of stopping at the first.
class Reader {
 public:
  Reader(std::vector<ConfigIssue>& issues, const std::map<std::string, std::string>& env_sources)
      : issues_(issues), env_sources_(env_sources) {}

  void fail(const std::string& key, const std::string& reason) {
    auto source = env_sources_.find(key);
    if (source == env_sources_.end() && key.ends_with(']')) {  // an item of a list set from the environment
      source = env_sources_.find(key.substr(0, key.rfind('[')));
    }
    issues_.push_back({source == env_sources_.end() ? key : key + " (from " + source->second + ")", reason});
  }

  // Reports keys that this section does not know (typos are errors, not silently ignored).
  void check_known_keys(const json& object, const std::string& path, const std::vector<std::string>& known) {
    for (const auto& [name, value] : object.items()) {
      if (name.starts_with('_') || name == "$schema") continue;  // comments
      if (std::find(known.begin(), known.end(), name) != known.end()) continue;
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      fail(key_path(path, name), "unknown key; the keys allowed here are: " + list);
    }
  }

  const json* section(const json& parent, const std::string& name, const std::string& path) {
    auto found = parent.find(name);
    if (found == parent.end() || found->is_null()) return nullptr;
    if (!found->is_object()) {
      fail(path, "must be an object");
      return nullptr;
    }
    return &*found;
  }

  enum class Presence { kOptional, kNotEmptyWhenSet, kRequired };

  void read_string(const json& object, const std::string& name, const std::string& path, std::string& out,
                   Presence presence = Presence::kOptional) {
    auto found = object.find(name);
    if (found == object.end() || found->is_null()) {
      if (presence == Presence::kRequired) fail(path, "is required");
      return;
    }
    if (!found->is_string()) {
      fail(path, "must be a string");
      return;
    }
    out = found->get<std::string>();
    if (presence != Presence::kOptional && trim(out).empty()) fail(path, "must not be empty");
  }

  void read_bool(const json& object, const std::string& name, const std::string& path, bool& out) {
    auto found = object.find(name);
    if (found == object.end() || found->is_null()) return;
    if (!found->is_boolean()) {
      fail(path, "must be true or false");
      return;
    }
    out = found->get<bool>();
  }

  void read_string_list(const json& object, const std::string& name, const std::string& path,
                        std::vector<std::string>& out) {
    auto found = object.find(name);
    if (found == object.end() || found->is_null()) return;
    if (!found->is_array()) {
      fail(path, "must be an array of strings");
      return;
    }
    for (std::size_t i = 0; i < found->size(); ++i) {
      if (!(*found)[i].is_string()) {
        fail(path + "[" + std::to_string(i) + "]", "must be a string");
      } else {
        out.push_back((*found)[i].get<std::string>());
      }
    }
  }

  void read_optional_string(const json& object, const std::string& name, const std::string& path,
                            std::optional<std::string>& out) {
    auto found = object.find(name);
    if (found == object.end() || found->is_null()) return;
    if (!found->is_string()) {
      fail(path, "must be a string or null");
      return;
    }
    out = found->get<std::string>();
  }

  template <typename Int>
  void read_integer(const json& object, const std::string& name, const std::string& path, Int& out,
                    std::int64_t min, std::int64_t max) {
    auto found = object.find(name);
    if (found == object.end() || found->is_null()) return;
    if (!found->is_number_integer()) {
      fail(path, "must be an integer between " + std::to_string(min) + " and " + std::to_string(max));
      return;
    }
    const auto value = found->get<std::int64_t>();
    if (value < min || value > max) {
      fail(path, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                     std::to_string(value));
      return;
    }
    out = static_cast<Int>(value);
  }

 private:
  std::vector<ConfigIssue>& issues_;
  const std::map<std::string, std::string>& env_sources_;
};

void read_http(Reader& reader, const json& root, HttpConfig& http) {
  const json* section = reader.section(root, "http", "http");
  if (section == nullptr) return;
  reader.check_known_keys(*section, "http",
                          {"host", "port", "threads", "blockingThreads", "bodyLimitBytes", "headerTimeoutSeconds",
                           "readTimeoutSeconds", "writeTimeoutSeconds", "idleTimeoutSeconds",
                           "shutdownGraceSeconds", "swaggerUiDir", "tls"});
  reader.read_string(*section, "host", "http.host", http.host, Reader::Presence::kNotEmptyWhenSet);
  if (!http.host.empty() && !is_ip_literal(http.host)) {
    reader.fail("http.host", "must be an IP address to listen on, such as 127.0.0.1 or 0.0.0.0 (or :: for IPv6), got \"" +
                                 http.host + "\"");
  }
  reader.read_integer(*section, "port", "http.port", http.port, 1, 65535);
  reader.read_integer(*section, "threads", "http.threads", http.threads, 1, 256);
  reader.read_integer(*section, "blockingThreads", "http.blockingThreads", http.blocking_threads, 1, 256);
  reader.read_integer(*section, "bodyLimitBytes", "http.bodyLimitBytes", http.body_limit_bytes, 1024,
                      std::int64_t{1} << 30);
  reader.read_integer(*section, "headerTimeoutSeconds", "http.headerTimeoutSeconds", http.header_timeout_seconds,
                      1, 3600);
  reader.read_integer(*section, "readTimeoutSeconds", "http.readTimeoutSeconds", http.read_timeout_seconds, 1,
                      3600);
  reader.read_integer(*section, "writeTimeoutSeconds", "http.writeTimeoutSeconds", http.write_timeout_seconds,
                      1, 3600);
  reader.read_integer(*section, "idleTimeoutSeconds", "http.idleTimeoutSeconds", http.idle_timeout_seconds, 1,
                      3600);
  reader.read_integer(*section, "shutdownGraceSeconds", "http.shutdownGraceSeconds", http.shutdown_grace_seconds,
                      0, 3600);
  reader.read_string(*section, "swaggerUiDir", "http.swaggerUiDir", http.swagger_ui_dir);
  if (const json* tls = reader.section(*section, "tls", "http.tls")) {
    reader.check_known_keys(*tls, "http.tls", {"certFile", "keyFile"});
    reader.read_string(*tls, "certFile", "http.tls.certFile", http.tls.cert_file);
    reader.read_string(*tls, "keyFile", "http.tls.keyFile", http.tls.key_file);
    // The files' contents are checked when the server loads them (still before it starts serving).
    const auto check_readable = [&reader](const std::string& file, const std::string& key, const char* what) {
      if (!file.empty() && !std::ifstream(file)) {
        reader.fail(key, "cannot be read: \"" + file + "\" must be a readable PEM file holding " + what);
      }
    };
    check_readable(http.tls.cert_file, "http.tls.certFile", "the server certificate (and any intermediate CAs)");
    check_readable(http.tls.key_file, "http.tls.keyFile", "the certificate's unencrypted private key");
    if (!http.tls.cert_file.empty() && http.tls.key_file.empty()) {
      reader.fail("http.tls.keyFile", "is required when http.tls.certFile is set: HTTPS needs the certificate's "
                                      "private key (P2P_TLS_KEY_FILE)");
    } else if (http.tls.cert_file.empty() && !http.tls.key_file.empty()) {
      reader.fail("http.tls.certFile", "is required when http.tls.keyFile is set: HTTPS needs the certificate "
                                       "(P2P_TLS_CERT_FILE)");
    }
  }
}

void read_database(Reader& reader, const json& root, DatabaseConfig& database) {
  const json* section = reader.section(root, "database", "database");
  if (section == nullptr) return;
  reader.check_known_keys(*section, "database", {"url", "connectTimeoutSeconds", "migrationRetrySeconds"});
  reader.read_string(*section, "url", "database.url", database.url, Reader::Presence::kNotEmptyWhenSet);
  if (!database.url.empty() && !database.url.starts_with("postgresql://") &&
      !database.url.starts_with("postgres://")) {
    reader.fail("database.url",
                "must be a libpq URL starting with postgresql://, e.g. postgresql://p2p:secret@db:5432/p2p");
  }
  reader.read_integer(*section, "connectTimeoutSeconds", "database.connectTimeoutSeconds",
                      database.connect_timeout_seconds, 1, 600);
  reader.read_integer(*section, "migrationRetrySeconds", "database.migrationRetrySeconds",
                      database.migration_retry_seconds, 1, 3600);
}

void read_log(Reader& reader, const json& root, LogConfig& log) {
  const json* section = reader.section(root, "log", "log");
  if (section == nullptr) return;
  reader.check_known_keys(*section, "log", {"level"});
  reader.read_string(*section, "level", "log.level", log.level, Reader::Presence::kNotEmptyWhenSet);
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (!kLevels.contains(log.level)) {
    reader.fail("log.level", "must be one of trace, debug, info, warn, error, critical, off; got \"" + log.level + "\"");
  }
}

void read_auth(Reader& reader, const json& root, AuthConfig& auth) {
  const json* section = reader.section(root, "auth", "auth");
  if (section != nullptr) {
    reader.check_known_keys(*section, "auth", {"mode", "apiKeys"});
    std::string mode = "apiKey";
    reader.read_string(*section, "mode", "auth.mode", mode, Reader::Presence::kNotEmptyWhenSet);
    if (mode == "apiKey") {
      auth.mode = AuthMode::kApiKey;
    } else if (mode == "none") {
      auth.mode = AuthMode::kNone;
    } else {
      reader.fail("auth.mode", "must be \"apiKey\" or \"none\", got \"" + mode + "\"");
    }
    auto keys = section->find("apiKeys");
    if (keys != section->end() && !keys->is_null()) {
      if (!keys->is_array()) {
        reader.fail("auth.apiKeys", "must be an array of strings");
      } else {
        for (std::size_t i = 0; i < keys->size(); ++i) {
          const auto& key = (*keys)[i];
          const std::string path = "auth.apiKeys[" + std::to_string(i) + "]";
          if (!key.is_string()) {
            reader.fail(path, "must be a string");
          } else if (key.get<std::string>().size() < 16) {
            reader.fail(path, "must be at least 16 characters (use a random key, e.g. openssl rand -hex 32)");
          } else {
            auth.api_keys.push_back(key.get<std::string>());
          }
        }
      }
    }
  }
  if (auth.mode == AuthMode::kApiKey && auth.api_keys.empty()) {
    reader.fail("auth.apiKeys",
                "at least one API key is required (set P2P_API_KEYS or auth.apiKeys), or set auth.mode to \"none\" "
                "to run without authentication in development");
  }
}

void read_resource_types(Reader& reader, const json& section, std::optional<std::vector<std::string>>& out) {
  const auto found = section.find("resourceTypes");
  if (found == section.end() || found->is_null()) return;
  std::vector<std::string> types;
  reader.read_string_list(section, "resourceTypes", "exchange.resourceTypes", types);
  if (!found->is_array()) return;  // reported by read_string_list
  if (found->empty()) {
    reader.fail("exchange.resourceTypes",
                "must name at least one resource type (leave it out for the default member data set)");
    return;
  }
  std::set<std::string> seen;
  for (std::size_t i = 0; i < found->size(); ++i) {
    if (!(*found)[i].is_string()) continue;  // reported by read_string_list
    const std::string type = (*found)[i].get<std::string>();
    const std::string path = "exchange.resourceTypes[" + std::to_string(i) + "]";
    if (!fhir::is_r4_resource_type(type)) {
      reader.fail(path, "must be a FHIR R4 resource type name such as ExplanationOfBenefit, got " + json(type).dump(
                            -1, ' ', false, json::error_handler_t::replace));
    } else if (fhir::never_written(type)) {
      reader.fail(path, type + " is never written to the target, whatever the configuration says: it would act on the "
                               "new payer's server (notifications, workflow, conformance or terminology)");
    } else if (!seen.insert(type).second) {
      reader.fail(path, type + " is listed twice");
    }
  }
  out = std::move(types);
}

void read_exchange(Reader& reader, const json& root, ExchangeConfig& exchange) {
  const json* section = reader.section(root, "exchange", "exchange");
  if (section != nullptr) {
    reader.check_known_keys(*section, "exchange",
                            {"fhirPersistenceUrl", "fhirPersistenceAuthorization", "tokenEncryptionKey",
                             "retiredTokenEncryptionKeys", "developmentMode", "versionedReferences", "allowPlainHttp",
                             "mdmPatientIdentifier", "traceabilitySystemBase", "exchangeTagSystem", "concurrency",
                             "leaseSeconds", "pollIntervalMilliseconds", "maxAttempts", "initialBackoffMilliseconds",
                             "maxBackoffSeconds", "requestTimeoutSeconds", "maxResponseBytes", "maxPageBytes", "maxPages",
                             "outageToleranceSeconds", "maxClaims", "resourceTypes", "verifyTls", "caFile"});
    reader.read_string(*section, "fhirPersistenceUrl", "exchange.fhirPersistenceUrl", exchange.fhir_persistence_url);
    reader.read_string(*section, "fhirPersistenceAuthorization", "exchange.fhirPersistenceAuthorization",
                       exchange.fhir_persistence_authorization);
    reader.read_string(*section, "tokenEncryptionKey", "exchange.tokenEncryptionKey", exchange.token_encryption_key);
    reader.read_string_list(*section, "retiredTokenEncryptionKeys", "exchange.retiredTokenEncryptionKeys",
                            exchange.retired_token_encryption_keys);
    reader.read_bool(*section, "developmentMode", "exchange.developmentMode", exchange.development_mode);
    reader.read_bool(*section, "versionedReferences", "exchange.versionedReferences", exchange.versioned_references);
    reader.read_bool(*section, "allowPlainHttp", "exchange.allowPlainHttp", exchange.allow_plain_http);
    reader.read_bool(*section, "verifyTls", "exchange.verifyTls", exchange.verify_tls);
    reader.read_string(*section, "caFile", "exchange.caFile", exchange.ca_file);
    reader.read_string(*section, "traceabilitySystemBase", "exchange.traceabilitySystemBase",
                       exchange.traceability_system_base, Reader::Presence::kNotEmptyWhenSet);
    reader.read_string(*section, "exchangeTagSystem", "exchange.exchangeTagSystem", exchange.exchange_tag_system,
                       Reader::Presence::kNotEmptyWhenSet);
    reader.read_integer(*section, "concurrency", "exchange.concurrency", exchange.concurrency, 1, 256);
    reader.read_integer(*section, "leaseSeconds", "exchange.leaseSeconds", exchange.lease_seconds, 5, 3600);
    reader.read_integer(*section, "pollIntervalMilliseconds", "exchange.pollIntervalMilliseconds",
                        exchange.poll_interval_milliseconds, 10, 60000);
    reader.read_integer(*section, "maxAttempts", "exchange.maxAttempts", exchange.max_attempts, 1, 100);
    reader.read_integer(*section, "initialBackoffMilliseconds", "exchange.initialBackoffMilliseconds",
                        exchange.initial_backoff_milliseconds, 1, 600000);
    reader.read_integer(*section, "maxBackoffSeconds", "exchange.maxBackoffSeconds", exchange.max_backoff_seconds, 1,
                        3600);
    reader.read_integer(*section, "requestTimeoutSeconds", "exchange.requestTimeoutSeconds",
                        exchange.request_timeout_seconds, 1, 3600);
    reader.read_integer(*section, "maxResponseBytes", "exchange.maxResponseBytes", exchange.max_response_bytes, 1024,
                        std::int64_t{1} << 32);
    reader.read_integer(*section, "maxPageBytes", "exchange.maxPageBytes", exchange.max_page_bytes, 1024,
                        std::int64_t{1} << 30);
    reader.read_integer(*section, "maxPages", "exchange.maxPages", exchange.max_pages, 1, 10000000);
    reader.read_integer(*section, "outageToleranceSeconds", "exchange.outageToleranceSeconds",
                        exchange.outage_tolerance_seconds, 0, 30 * 24 * 3600);
    reader.read_integer(*section, "maxClaims", "exchange.maxClaims", exchange.max_claims, 1, 1000);
    read_resource_types(reader, *section, exchange.resource_types);
    if (const json* mdm = reader.section(*section, "mdmPatientIdentifier", "exchange.mdmPatientIdentifier")) {
      reader.check_known_keys(*mdm, "exchange.mdmPatientIdentifier", {"system", "code", "identifierSystem"});
      MdmIdentifierConfig identifier;
      reader.read_string(*mdm, "system", "exchange.mdmPatientIdentifier.system", identifier.system,
                         Reader::Presence::kNotEmptyWhenSet);
      reader.read_string(*mdm, "code", "exchange.mdmPatientIdentifier.code", identifier.code,
                         Reader::Presence::kNotEmptyWhenSet);
      reader.read_string(*mdm, "identifierSystem", "exchange.mdmPatientIdentifier.identifierSystem",
                         identifier.identifier_system, Reader::Presence::kRequired);
      exchange.mdm_patient_identifier = identifier;
    }
  }
  if (!exchange.fhir_persistence_url.empty()) {
    if (auto problem = util::check_absolute_http_url(exchange.fhir_persistence_url)) {
      reader.fail("exchange.fhirPersistenceUrl", *problem);
    } else if (util::is_plain_http(exchange.fhir_persistence_url) && !exchange.allow_plain_http) {
      reader.fail("exchange.fhirPersistenceUrl",
                  "must use https (plain http:// is refused unless exchange.allowPlainHttp / P2P_ALLOW_PLAIN_HTTP is true)");
    }
  }
  if (!exchange.ca_file.empty() && !std::ifstream(exchange.ca_file)) {
    reader.fail("exchange.caFile", "cannot be read: \"" + exchange.ca_file + "\" must be a PEM file of trusted CA certificates");
  }
  if (exchange.poll_interval_milliseconds * 3 >= exchange.lease_seconds * 1000) {
    reader.fail("exchange.pollIntervalMilliseconds",
                "must be less than a third of exchange.leaseSeconds (leases are renewed on the poll), got " +
                    std::to_string(exchange.poll_interval_milliseconds) + " ms for a lease of " +
                    std::to_string(exchange.lease_seconds) + " s");
  }
  if (exchange.token_encryption_key.empty()) {
    for (std::size_t i = 0; i < exchange.retired_token_encryption_keys.size(); ++i) {
      try {  // checked on their own here, since there is no primary key to check them with
        crypto::TokenCipher check(exchange.retired_token_encryption_keys[i]);
      } catch (const crypto::CipherError&) {
        reader.fail("exchange.retiredTokenEncryptionKeys[" + std::to_string(i) + "]",
                    "must be base64 of exactly 32 bytes (as made by openssl rand -base64 32)");
      }
    }
    if (!exchange.development_mode) {
      reader.fail("exchange.tokenEncryptionKey",
                  "is required to encrypt members' tokens at rest: set P2P_TOKEN_ENCRYPTION_KEY to the output of "
                  "`openssl rand -base64 32` (or set exchange.developmentMode to true for a throwaway key in development)");
    }
  } else {
    try {
      crypto::TokenCipher check(exchange.token_encryption_key, exchange.retired_token_encryption_keys);
    } catch (const crypto::CipherError& error) {
      reader.fail("exchange.tokenEncryptionKey", error.what());
    }
  }
}

void read_url_field(Reader& reader, const std::optional<std::string>& value, const std::string& path) {
  if (!value) return;
  if (auto problem = util::check_absolute_http_url(*value)) reader.fail(path, *problem);
}

void read_oidc_servers(Reader& reader, const json& root, std::vector<OidcServerDefinition>& servers) {
  auto found = root.find("oidcServers");
  if (found == root.end() || found->is_null()) return;
  if (!found->is_array()) {
    reader.fail("oidcServers", "must be an array of OIDC server definitions");
    return;
  }
  static const std::set<std::string> kResponseTypes = {
      "code", "token", "id_token", "id_token token", "code id_token", "code token", "code id_token token", "none"};
  std::map<std::string, std::string> issuers;  // normalised issuer -> path of the first definition
  for (std::size_t i = 0; i < found->size(); ++i) {
    const std::string path = "oidcServers[" + std::to_string(i) + "]";
    const json& item = (*found)[i];
    if (!item.is_object()) {
      reader.fail(path, "must be an object");
      continue;
    }
    reader.check_known_keys(item, path,
                            {"name", "issuer", "clientId", "clientSecret", "jwkText", "jwkFile", "authWellKnown",
                             "scopes", "fhirEndpoint", "tokenEndpoint", "customTokenParams", "responseType",
                             "organizationId", "notes"});
    OidcServerDefinition server;
    reader.read_string(item, "name", path + ".name", server.name, Reader::Presence::kRequired);
    reader.read_string(item, "issuer", path + ".issuer", server.issuer, Reader::Presence::kRequired);
    reader.read_optional_string(item, "clientId", path + ".clientId", server.client_id);
    reader.read_optional_string(item, "clientSecret", path + ".clientSecret", server.client_secret);
    reader.read_optional_string(item, "jwkText", path + ".jwkText", server.jwk_text);
    reader.read_optional_string(item, "jwkFile", path + ".jwkFile", server.jwk_file);
    reader.read_optional_string(item, "authWellKnown", path + ".authWellKnown", server.auth_well_known);
    reader.read_optional_string(item, "scopes", path + ".scopes", server.scopes);
    reader.read_optional_string(item, "fhirEndpoint", path + ".fhirEndpoint", server.fhir_endpoint);
    reader.read_optional_string(item, "tokenEndpoint", path + ".tokenEndpoint", server.token_endpoint);
    reader.read_optional_string(item, "customTokenParams", path + ".customTokenParams", server.custom_token_params);
    reader.read_string(item, "responseType", path + ".responseType", server.response_type);
    reader.read_optional_string(item, "organizationId", path + ".organizationId", server.organization_id);
    reader.read_optional_string(item, "notes", path + ".notes", server.notes);

    if (!server.issuer.empty()) {
      if (auto problem = util::check_absolute_http_url(server.issuer)) reader.fail(path + ".issuer", *problem);
      const auto normalized = util::normalize_issuer(server.issuer);
      auto [previous, inserted] = issuers.emplace(normalized, path);
      if (!inserted) {
        reader.fail(path + ".issuer", "duplicates the issuer of " + previous->second +
                                          " (issuers are compared without trailing slashes)");
      }
    }
    read_url_field(reader, server.auth_well_known, path + ".authWellKnown");
    read_url_field(reader, server.fhir_endpoint, path + ".fhirEndpoint");
    read_url_field(reader, server.token_endpoint, path + ".tokenEndpoint");
    if (!kResponseTypes.contains(server.response_type)) {
      reader.fail(path + ".responseType",
                  "must be one of: code, token, id_token, \"id_token token\", \"code id_token\", \"code token\", "
                  "\"code id_token token\", none; got \"" + server.response_type + "\"");
    }
    if (server.jwk_text && server.jwk_file) {
      reader.fail(path, "set jwkText or jwkFile, not both");
    }
    if (server.jwk_text) {
      auto jwk = json::parse(*server.jwk_text, nullptr, false);
      if (jwk.is_discarded() || !jwk.is_object()) reader.fail(path + ".jwkText", "must be a JSON Web Key (a JSON object)");
    }
    servers.push_back(std::move(server));
  }
}

void read_template(Reader& reader, const json& templates, const std::string& name, config::EmailTemplate& out) {
  const std::string path = "notifications.templates." + name;
  const json* section = reader.section(templates, name, path);
  if (section != nullptr) {
    reader.check_known_keys(*section, path, {"subject", "body"});
    reader.read_string(*section, "subject", path + ".subject", out.subject, Reader::Presence::kNotEmptyWhenSet);
    reader.read_string(*section, "body", path + ".body", out.body, Reader::Presence::kNotEmptyWhenSet);
  }
  if (auto problem = mail::check_template(out.subject)) reader.fail(path + ".subject", *problem);
  if (auto problem = mail::check_template(out.body)) reader.fail(path + ".body", *problem);
}

void read_notifications(Reader& reader, const json& root, const ExchangeConfig& exchange,
                        NotificationsConfig& notifications) {
  notifications.admin_request = mail::default_admin_request_template();
  notifications.member_confirmation = mail::default_member_confirmation_template();
  notifications.member_status_update = mail::default_member_status_update_template();
  const json* section = reader.section(root, "notifications", "notifications");
  if (section == nullptr) return;
  reader.check_known_keys(*section, "notifications",
                          {"enabled", "publicBaseUrl", "hookSecret", "subscriptionCheckSeconds",
                           "emptyNotificationLookbackMinutes", "smtp", "mail", "delivery", "templates"});
  reader.read_bool(*section, "enabled", "notifications.enabled", notifications.enabled);
  reader.read_string(*section, "publicBaseUrl", "notifications.publicBaseUrl", notifications.public_base_url);
  reader.read_string(*section, "hookSecret", "notifications.hookSecret", notifications.hook_secret);
  reader.read_integer(*section, "subscriptionCheckSeconds", "notifications.subscriptionCheckSeconds",
                      notifications.subscription_check_seconds, 1, 86400);
  reader.read_integer(*section, "emptyNotificationLookbackMinutes", "notifications.emptyNotificationLookbackMinutes",
                      notifications.empty_notification_lookback_minutes, 1, 7 * 24 * 60);
  SmtpConfig& smtp = notifications.smtp;
  if (const json* smtp_section = reader.section(*section, "smtp", "notifications.smtp")) {
    reader.check_known_keys(*smtp_section, "notifications.smtp",
                            {"url", "startTls", "user", "password", "verifyTls", "caFile", "timeoutSeconds"});
    reader.read_string(*smtp_section, "url", "notifications.smtp.url", smtp.url);
    std::string start_tls = "required";
    reader.read_string(*smtp_section, "startTls", "notifications.smtp.startTls", start_tls);
    if (start_tls == "required") {
      smtp.start_tls = true;
    } else if (start_tls == "off") {
      smtp.start_tls = false;
    } else {
      reader.fail("notifications.smtp.startTls", "must be \"required\" or \"off\", got \"" + start_tls + "\"");
    }
    reader.read_string(*smtp_section, "user", "notifications.smtp.user", smtp.user);
    reader.read_string(*smtp_section, "password", "notifications.smtp.password", smtp.password);
    reader.read_bool(*smtp_section, "verifyTls", "notifications.smtp.verifyTls", smtp.verify_tls);
    reader.read_string(*smtp_section, "caFile", "notifications.smtp.caFile", smtp.ca_file);
    reader.read_integer(*smtp_section, "timeoutSeconds", "notifications.smtp.timeoutSeconds", smtp.timeout_seconds, 1,
                        600);
  }
  if (const json* mail = reader.section(*section, "mail", "notifications.mail")) {
    reader.check_known_keys(*mail, "notifications.mail", {"from", "admins"});
    reader.read_string(*mail, "from", "notifications.mail.from", notifications.mail_from);
    reader.read_string_list(*mail, "admins", "notifications.mail.admins", notifications.mail_admins);
  }
  if (const json* delivery = reader.section(*section, "delivery", "notifications.delivery")) {
    reader.check_known_keys(*delivery, "notifications.delivery",
                            {"maxAttempts", "initialBackoffSeconds", "maxBackoffSeconds", "pollIntervalMilliseconds"});
    reader.read_integer(*delivery, "maxAttempts", "notifications.delivery.maxAttempts", notifications.max_attempts, 1,
                        1000);
    reader.read_integer(*delivery, "initialBackoffSeconds", "notifications.delivery.initialBackoffSeconds",
                        notifications.initial_backoff_seconds, 1, 86400);
    reader.read_integer(*delivery, "maxBackoffSeconds", "notifications.delivery.maxBackoffSeconds",
                        notifications.max_backoff_seconds, 1, 7 * 86400);
    reader.read_integer(*delivery, "pollIntervalMilliseconds", "notifications.delivery.pollIntervalMilliseconds",
                        notifications.poll_interval_milliseconds, 10, 600000);
  }
  if (const json* templates = reader.section(*section, "templates", "notifications.templates")) {
    reader.check_known_keys(*templates, "notifications.templates",
                            {"adminRequest", "memberConfirmation", "memberStatusUpdate"});
    read_template(reader, *templates, "adminRequest", notifications.admin_request);
    read_template(reader, *templates, "memberConfirmation", notifications.member_confirmation);
    read_template(reader, *templates, "memberStatusUpdate", notifications.member_status_update);
  }

  // Addresses are checked even when notifications are off, so a mistake shows before it is switched on.
  if (!notifications.mail_from.empty() && !mail::is_valid_email_address(notifications.mail_from)) {
    reader.fail("notifications.mail.from", "\"" + notifications.mail_from + "\" is not a valid e-mail address (use a plain local@domain.example)");
  }
  for (std::size_t i = 0; i < notifications.mail_admins.size(); ++i) {
    if (!mail::is_valid_email_address(notifications.mail_admins[i])) {
      reader.fail("notifications.mail.admins[" + std::to_string(i) + "]",
                  "\"" + notifications.mail_admins[i] + "\" is not a valid e-mail address (use a plain local@domain.example)");
    }
  }
  if (!smtp.url.empty() && !smtp.url.starts_with("smtp://") && !smtp.url.starts_with("smtps://")) {
    reader.fail("notifications.smtp.url", "must be smtp://host:port (STARTTLS) or smtps://host:port (implicit TLS)");
  }
  if (!smtp.ca_file.empty() && !std::ifstream(smtp.ca_file)) {
    reader.fail("notifications.smtp.caFile", "cannot be read: \"" + smtp.ca_file + "\" must be a PEM file of trusted CA certificates");
  }
  if (!notifications.public_base_url.empty()) {
    if (auto problem = util::check_absolute_http_url(notifications.public_base_url)) {
      reader.fail("notifications.publicBaseUrl", *problem);
    } else if (notifications.public_base_url.find_first_of("?#") != std::string::npos) {
      reader.fail("notifications.publicBaseUrl", "must be a base URL without a query or fragment, e.g. https://p2p.example.org");
    }
    notifications.public_base_url = util::without_trailing_slashes(notifications.public_base_url);
  }
  if (notifications.initial_backoff_seconds > notifications.max_backoff_seconds) {
    reader.fail("notifications.delivery.initialBackoffSeconds", "must not be more than notifications.delivery.maxBackoffSeconds");
  }
  if (!notifications.enabled) return;
  const auto require = [&reader](const std::string& value, const std::string& key, const std::string& what) {
    if (trim(value).empty()) reader.fail(key, "is required when notifications.enabled is true: " + what);
  };
  require(notifications.public_base_url, "notifications.publicBaseUrl",
          "set P2P_PUBLIC_BASE_URL to the URL the FHIR server reaches this service on");
  require(smtp.url, "notifications.smtp.url", "set P2P_SMTP_URL, e.g. smtp://mail.example.org:587");
  require(notifications.mail_from, "notifications.mail.from", "set P2P_MAIL_FROM to the sender address");
  require(exchange.fhir_persistence_url, "exchange.fhirPersistenceUrl",
          "the Subscription and the add-payer Tasks live on this FHIR server (P2P_FHIR_PERSISTENCE_URL)");
  if (notifications.hook_secret.size() < 16) {
    reader.fail("notifications.hookSecret",
                "must be at least 16 characters when notifications.enabled is true: set P2P_HOOK_SECRET to e.g. the "
                "output of `openssl rand -hex 24`");
  }
  for (char c : notifications.hook_secret) {
    if (c <= 0x20 || c >= 0x7F) {
      reader.fail("notifications.hookSecret", "must be printable ASCII without spaces (it is sent as an HTTP header value)");
      break;
    }
  }
  if (!smtp.user.empty() && smtp.url.starts_with("smtp://") && !smtp.start_tls) {
    reader.fail("notifications.smtp.startTls",
                "is \"off\" while notifications.smtp.user is set: the password would cross the network in clear; use "
                "STARTTLS (\"required\") or smtps://");
  }
}

// Puts each P2P_* override into the document at its key, remembering where each key came from.
void apply_environment(json& document, const Environment& env, std::map<std::string, std::string>& env_sources,
                       std::vector<ConfigIssue>& issues) {
  for (const auto& spec : override_specs()) {
    auto found = env.find(spec.names.variable);
    if (found == env.end()) continue;
    const std::string& raw = found->second;
    json value;
    switch (spec.kind) {
      case Kind::kString:
        value = raw;
        break;
      case Kind::kInteger: {
        std::int64_t number = 0;
        const std::string text = trim(raw);
        auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
        if (error != std::errc() || end != text.data() + text.size() || text.empty()) {
          issues.push_back({std::string(spec.names.key) + " (from " + spec.names.variable + ")",
                            "must be an integer, got \"" + raw + "\""});
          continue;
        }
        value = number;
        break;
      }
      case Kind::kBoolean: {
        const std::string text = trim(raw);
        if (text == "true" || text == "1") {
          value = true;
        } else if (text == "false" || text == "0" || text.empty()) {
          value = false;
        } else {
          issues.push_back({std::string(spec.names.key) + " (from " + spec.names.variable + ")",
                            "must be true or false, got \"" + raw + "\""});
          continue;
        }
        break;
      }
      case Kind::kStringList: {
        value = json::array();
        std::stringstream stream(raw);
        for (std::string item; std::getline(stream, item, ',');) {
          if (auto trimmed = trim(item); !trimmed.empty()) value.push_back(trimmed);
        }
        break;
      }
    }
    json* node = &document;
    for (const auto& part : split_key(spec.names.key)) {
      if (!node->is_object()) *node = json::object();
      node = &(*node)[part];
    }
    *node = std::move(value);
    env_sources[spec.names.key] = spec.names.variable;
  }
}

}  // namespace

namespace {
std::string describe(const std::vector<ConfigIssue>& issues) {
  std::string text = "invalid configuration:";
  for (const auto& issue : issues) text += "\n  " + issue.key + ": " + issue.reason;
  return text;
}
}  // namespace

ConfigError::ConfigError(std::vector<ConfigIssue> issues)
    : std::runtime_error(describe(issues)), issues_(std::move(issues)) {}

const std::vector<EnvOverride>& environment_overrides() {
  static const std::vector<EnvOverride> kOverrides = [] {
    std::vector<EnvOverride> list;
    for (const auto& spec : override_specs()) list.push_back(spec.names);
    return list;
  }();
  return kOverrides;
}

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

Config parse_config(const nlohmann::json& document, const Environment& env) {
  std::vector<ConfigIssue> issues;
  if (!document.is_object()) throw ConfigError(std::vector<ConfigIssue>{{"(root)", "the configuration must be a JSON object"}});
  // Copying and reading the document recurse once per level; the deepest real key is 5 levels down.
  // Checked without recursion, so a pathological file is refused instead of overflowing the stack.
  constexpr std::size_t kMaxDepth = 32;
  std::vector<std::pair<const json*, std::size_t>> pending{{&document, 1}};
  while (!pending.empty()) {
    const auto [node, depth] = pending.back();
    pending.pop_back();
    if (!node->is_structured()) continue;
    if (depth > kMaxDepth) {
      throw ConfigError(std::vector<ConfigIssue>{
          {"(root)", "the configuration is nested more than " + std::to_string(kMaxDepth) + " levels deep"}});
    }
    for (const auto& child : *node) pending.emplace_back(&child, depth + 1);
  }
  json merged = document;
  std::map<std::string, std::string> env_sources;
  apply_environment(merged, env, env_sources, issues);

  Reader reader(issues, env_sources);
  reader.check_known_keys(merged, "", {"http", "database", "log", "auth", "exchange", "notifications", "oidcServers"});
  Config config;
  read_http(reader, merged, config.http);
  read_database(reader, merged, config.database);
  read_log(reader, merged, config.log);
  read_auth(reader, merged, config.auth);
  read_exchange(reader, merged, config.exchange);
  read_notifications(reader, merged, config.exchange, config.notifications);
  read_oidc_servers(reader, merged, config.oidc_servers);
  if (!issues.empty()) throw ConfigError(std::move(issues));
  return config;
}

Config load_config(const std::optional<std::filesystem::path>& file, const Environment& env) {
  json document = json::object();
  if (file) {
    std::ifstream input(*file);
    if (!input) throw ConfigError(std::vector<ConfigIssue>{{file->string(), "cannot be read: check the path and its permissions"}});
    try {
      document = json::parse(input, nullptr, true, /*ignore_comments=*/true);
    } catch (const json::parse_error& error) {
      throw ConfigError(std::vector<ConfigIssue>{{file->string(), std::string("is not valid JSON: ") + error.what()}});
    }
  }
  return parse_config(document, env);
}

}  // namespace p2p::config
