// The configuration's sections, each read by one function in the order of the file (http, database,
// log, auth, exchange, notifications, oidcServers) with the checks that span keys; one file, because
// it is one job: what each key means. How keys are read is in reader.hpp, the environment variables
// in environment.cpp.
#include "p2p/config/config.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>

#include <arpa/inet.h>
#include <nlohmann/json.hpp>

#include "p2p/crypto/signing_keys.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/fhir/page_transform.hpp"
#include "p2p/mail/address.hpp"
#include "p2p/mail/templates.hpp"
#include "p2p/util/text.hpp"
#include "p2p/util/url_rules.hpp"
#include "environment.hpp"
#include "reader.hpp"

namespace p2p::config {
namespace {

using nlohmann::json;

bool is_ip_literal(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buffer) == 1 || ::inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}


void read_http(Reader& reader, Section& root, HttpConfig& http) {
  Section section = root.child("http");
  section.string("host", http.host, Presence::kNotEmptyWhenSet);
  if (!http.host.empty() && !is_ip_literal(http.host)) {
    reader.fail("http.host", "must be an IP address to listen on, such as 127.0.0.1 or 0.0.0.0 (or :: for IPv6), got \"" +
                                 http.host + "\"");
  }
  section.integer("port", http.port, 1, 65535);
  section.integer("threads", http.threads, 1, 256);
  section.integer("blockingThreads", http.blocking_threads, 1, 256);
  section.integer("bodyLimitBytes", http.body_limit_bytes, 1024, std::int64_t{1} << 30);
  section.integer("headerTimeoutSeconds", http.header_timeout_seconds, 1, 3600);
  section.integer("readTimeoutSeconds", http.read_timeout_seconds, 1, 3600);
  section.integer("writeTimeoutSeconds", http.write_timeout_seconds, 1, 3600);
  section.integer("idleTimeoutSeconds", http.idle_timeout_seconds, 1, 3600);
  section.integer("shutdownGraceSeconds", http.shutdown_grace_seconds, 0, 3600);
  section.string("swaggerUiDir", http.swagger_ui_dir);
  Section tls = section.child("tls");
  tls.string("certFile", http.tls.cert_file);
  tls.string("keyFile", http.tls.key_file);
  if (!tls.present()) return;
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

void read_database(Reader& reader, Section& root, DatabaseConfig& database) {
  Section section = root.child("database");
  section.string("url", database.url, Presence::kNotEmptyWhenSet);
  if (section.present() && !database.url.empty() && !database.url.starts_with("postgresql://") &&
      !database.url.starts_with("postgres://")) {
    reader.fail("database.url",
                "must be a libpq URL starting with postgresql://, e.g. postgresql://p2p:secret@db:5432/p2p");
  }
  section.integer("connectTimeoutSeconds", database.connect_timeout_seconds, 1, 600);
  section.integer("migrationRetrySeconds", database.migration_retry_seconds, 1, 3600);
}

void read_log(Reader& reader, Section& root, LogConfig& log) {
  Section section = root.child("log");
  section.string("level", log.level, Presence::kNotEmptyWhenSet);
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (section.present() && !kLevels.contains(log.level)) {
    reader.fail("log.level", "must be one of trace, debug, info, warn, error, critical, off; got \"" + log.level + "\"");
  }
}

void read_auth(Reader& reader, Section& root, AuthConfig& auth) {
  Section section = root.child("auth");
  std::string mode = "apiKey";
  section.string("mode", mode, Presence::kNotEmptyWhenSet);
  if (mode == "apiKey") {
    auth.mode = AuthMode::kApiKey;
  } else if (mode == "none") {
    auth.mode = AuthMode::kNone;
  } else {
    reader.fail("auth.mode", "must be \"apiKey\" or \"none\", got \"" + mode + "\"");
  }
  reader.record({"auth.apiKeys", "array of strings", "[]", std::nullopt});
  if (const json* keys = section.value("apiKeys")) {
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
  if (auth.mode == AuthMode::kApiKey && auth.api_keys.empty()) {
    reader.fail("auth.apiKeys",
                "at least one API key is required (set P2P_API_KEYS or auth.apiKeys), or set auth.mode to \"none\" "
                "to run without authentication in development");
  }
}

void read_resource_types(Reader& reader, Section& section, std::optional<std::vector<std::string>>& out) {
  std::vector<std::string> types;
  section.string_list("resourceTypes", types);
  const json* found = section.value("resourceTypes");
  if (found == nullptr || !found->is_array()) return;  // absent, or reported by string_list
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

void read_exchange(Reader& reader, Section& root, ExchangeConfig& exchange) {
  {
    Section section = root.child("exchange");
    section.string("fhirPersistenceUrl", exchange.fhir_persistence_url);
    section.string("fhirPersistenceAuthorization", exchange.fhir_persistence_authorization);
    section.string("tokenEncryptionKey", exchange.token_encryption_key);
    section.string_list("retiredTokenEncryptionKeys", exchange.retired_token_encryption_keys);
    section.boolean("developmentMode", exchange.development_mode);
    section.boolean("versionedReferences", exchange.versioned_references);
    section.boolean("allowPlainHttp", exchange.allow_plain_http);
    section.boolean("verifyTls", exchange.verify_tls);
    section.string("caFile", exchange.ca_file);
    section.string_list("clientSigningKeys", exchange.client_signing_keys);
    section.string("traceabilitySystemBase", exchange.traceability_system_base, Presence::kNotEmptyWhenSet);
    section.string("exchangeTagSystem", exchange.exchange_tag_system, Presence::kNotEmptyWhenSet);
    section.integer("concurrency", exchange.concurrency, 1, 256);
    section.integer("leaseSeconds", exchange.lease_seconds, 5, 3600);
    section.integer("pollIntervalMilliseconds", exchange.poll_interval_milliseconds, 10, 60000);
    section.integer("recordIntervalMilliseconds", exchange.record_interval_milliseconds, 0, 10000);
    section.integer("maxAttempts", exchange.max_attempts, 1, 100);
    section.integer("initialBackoffMilliseconds", exchange.initial_backoff_milliseconds, 1, 600000);
    section.integer("maxBackoffSeconds", exchange.max_backoff_seconds, 1, 3600);
    section.integer("requestTimeoutSeconds", exchange.request_timeout_seconds, 1, 3600);
    section.integer("maxResponseBytes", exchange.max_response_bytes, 1024, std::int64_t{1} << 32);
    section.integer("maxPageBytes", exchange.max_page_bytes, 1024, std::int64_t{1} << 30);
    section.integer("maxPages", exchange.max_pages, 1, 10000000);
    section.integer("pageSize", exchange.page_size, 1, 10000);
    section.integer("outageToleranceSeconds", exchange.outage_tolerance_seconds, 0, 30 * 24 * 3600);
    section.integer("maxClaims", exchange.max_claims, 1, 1000);
    read_resource_types(reader, section, exchange.resource_types);
    Section mdm = section.child("mdmPatientIdentifier");
    MdmIdentifierConfig identifier;
    mdm.string("system", identifier.system, Presence::kNotEmptyWhenSet);
    mdm.string("code", identifier.code, Presence::kNotEmptyWhenSet);
    mdm.string("identifierSystem", identifier.identifier_system, mdm.present() ? Presence::kRequired : Presence::kOptional);
    if (mdm.present()) exchange.mdm_patient_identifier = identifier;
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
  // Each key is loaded once here, to say what is wrong with which before anything starts (main loads
  // them again to use them); the same key twice is found by its kid.
  std::map<std::string, std::size_t> kids;
  for (std::size_t i = 0; i < exchange.client_signing_keys.size(); ++i) {
    const std::string path = "exchange.clientSigningKeys[" + std::to_string(i) + "]";
    try {
      const auto key = crypto::SigningKeys::load({exchange.client_signing_keys[i]});
      const auto [first, inserted] = kids.emplace(key.signing_kid(), i);
      if (!inserted) {
        reader.fail(path, "is the same key as exchange.clientSigningKeys[" + std::to_string(first->second) + "]");
      }
    } catch (const crypto::SigningKeyError& error) {
      reader.fail(path, error.what());
    }
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

void read_oidc_servers(Reader& reader, Section& root, std::vector<OidcServerDefinition>& servers) {
  const json* found = root.value("oidcServers");
  if (found == nullptr) return;
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
    Section definition(reader, &item, path);
    OidcServerDefinition server;
    definition.string("name", server.name, Presence::kRequired);
    definition.string("issuer", server.issuer, Presence::kRequired);
    definition.optional_string("clientId", server.client_id);
    definition.optional_string("clientSecret", server.client_secret);
    definition.optional_string("jwkText", server.jwk_text);
    definition.optional_string("jwkFile", server.jwk_file);
    definition.optional_string("authWellKnown", server.auth_well_known);
    definition.optional_string("scopes", server.scopes);
    definition.optional_string("fhirEndpoint", server.fhir_endpoint);
    definition.optional_string("tokenEndpoint", server.token_endpoint);
    definition.optional_string("customTokenParams", server.custom_token_params);
    definition.string("tokenEndpointAuthMethod", server.token_endpoint_auth_method);
    definition.optional_string("systemScopes", server.system_scopes);
    definition.string("responseType", server.response_type);
    definition.string("patientIdClaim", server.patient_id_claim);
    definition.optional_string("organizationId", server.organization_id);
    definition.optional_string("notes", server.notes);

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
    if (server.patient_id_claim != "fhirUser" && server.patient_id_claim != "sub") {
      reader.fail(path + ".patientIdClaim", "must be \"fhirUser\" or \"sub\"; got \"" + server.patient_id_claim + "\"");
    }
    if (!is_token_endpoint_auth_method(server.token_endpoint_auth_method)) {
      reader.fail(path + ".tokenEndpointAuthMethod", "must be client_secret_basic, client_secret_post or private_key_jwt; got \"" +
                                                         server.token_endpoint_auth_method + "\"");
    } else if (server.token_endpoint_auth_method == "private_key_jwt" && !server.client_id) {
      reader.fail(path + ".clientId", "is required with tokenEndpointAuthMethod private_key_jwt (the JWT's iss and sub)");
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

void read_template(Reader& reader, Section& templates, const std::string& name, config::EmailTemplate& out) {
  {
    Section section = templates.child(name);
    section.string("subject", out.subject, Presence::kNotEmptyWhenSet);
    section.string("body", out.body, Presence::kNotEmptyWhenSet);
  }
  const std::string path = "notifications.templates." + name;
  if (auto problem = mail::check_template(out.subject)) reader.fail(path + ".subject", *problem);
  if (auto problem = mail::check_template(out.body)) reader.fail(path + ".body", *problem);
}

void read_notifications(Reader& reader, Section& root, const ExchangeConfig& exchange,
                        NotificationsConfig& notifications) {
  notifications.admin_request = mail::default_admin_request_template();
  notifications.member_confirmation = mail::default_member_confirmation_template();
  notifications.member_status_update = mail::default_member_status_update_template();
  SmtpConfig& smtp = notifications.smtp;
  {
    Section section = root.child("notifications");
    section.boolean("enabled", notifications.enabled);
    section.string("publicBaseUrl", notifications.public_base_url);
    section.string("hookSecret", notifications.hook_secret);
    section.integer("subscriptionCheckSeconds", notifications.subscription_check_seconds, 1, 86400);
    section.integer("emptyNotificationLookbackMinutes", notifications.empty_notification_lookback_minutes, 1,
                    7 * 24 * 60);
    {
      Section smtp_section = section.child("smtp");
      smtp_section.string("url", smtp.url);
      std::string start_tls = "required";
      smtp_section.string("startTls", start_tls);
      if (start_tls == "required") {
        smtp.start_tls = true;
      } else if (start_tls == "off") {
        smtp.start_tls = false;
      } else {
        reader.fail("notifications.smtp.startTls", "must be \"required\" or \"off\", got \"" + start_tls + "\"");
      }
      smtp_section.string("user", smtp.user);
      smtp_section.string("password", smtp.password);
      smtp_section.boolean("verifyTls", smtp.verify_tls);
      smtp_section.string("caFile", smtp.ca_file);
      smtp_section.integer("timeoutSeconds", smtp.timeout_seconds, 1, 600);
    }
    {
      Section mail = section.child("mail");
      mail.string("from", notifications.mail_from);
      mail.string_list("admins", notifications.mail_admins);
    }
    {
      Section delivery = section.child("delivery");
      delivery.integer("maxAttempts", notifications.max_attempts, 1, 1000);
      delivery.integer("initialBackoffSeconds", notifications.initial_backoff_seconds, 1, 86400);
      delivery.integer("maxBackoffSeconds", notifications.max_backoff_seconds, 1, 7 * 86400);
      delivery.integer("pollIntervalMilliseconds", notifications.poll_interval_milliseconds, 10, 600000);
    }
    Section templates = section.child("templates");
    read_template(reader, templates, "adminRequest", notifications.admin_request);
    read_template(reader, templates, "memberConfirmation", notifications.member_confirmation);
    read_template(reader, templates, "memberStatusUpdate", notifications.member_status_update);
    if (!section.present()) return;
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

void read_connect(Reader& reader, Section& root, const ExchangeConfig& exchange, ConnectConfig& connect) {
  Section section = root.child("connect");
  section.string("publicBaseUrl", connect.public_base_url);
  section.string_list("allowedReturnUrls", connect.allowed_return_urls);
  section.integer("authorizationTtlSeconds", connect.authorization_ttl_seconds, 60, 3600);
  if (!connect.public_base_url.empty()) {
    if (auto problem = util::check_absolute_http_url(connect.public_base_url)) {
      reader.fail("connect.publicBaseUrl", *problem);
    } else if (connect.public_base_url.find_first_of("?#") != std::string::npos) {
      reader.fail("connect.publicBaseUrl", "must be a base URL without a query or fragment, e.g. https://p2p.example.org");
    } else if (util::is_plain_http(connect.public_base_url) && !exchange.allow_plain_http) {
      reader.fail("connect.publicBaseUrl", "uses plain http://: the member's authorization code would reach the service "
                                           "in clear (use https://; P2P_ALLOW_PLAIN_HTTP=true allows it for local tests only)");
    }
    connect.public_base_url = util::without_trailing_slashes(connect.public_base_url);
  }
  for (std::size_t i = 0; i < connect.allowed_return_urls.size(); ++i) {
    const std::string& url = connect.allowed_return_urls[i];
    const std::string path = "connect.allowedReturnUrls[" + std::to_string(i) + "]";
    if (url.find_first_of("?#") != std::string::npos) {
      reader.fail(path, "must be an origin and a path prefix without a query or fragment, e.g. "
                        "https://portal.example.org/p2p/");
    } else if (auto problem = util::check_absolute_http_url(url)) {
      reader.fail(path, *problem);
    } else if (util::is_plain_http(url) && !exchange.allow_plain_http) {
      reader.fail(path, "uses plain http://: the member's browser would carry the result in clear (use https://; "
                        "P2P_ALLOW_PLAIN_HTTP=true allows it for local tests only)");
    }
  }
}

// Reads every section of the (merged) document into `config`; with `specs`, also records every key read.
void read_document(const json& document, const std::map<std::string, std::string>& env_sources,
                   std::vector<ConfigIssue>& issues, Config& config, std::vector<KeySpec>* specs) {
  Reader reader(issues, env_sources, specs);
  Section root(reader, &document, "");
  read_http(reader, root, config.http);
  read_database(reader, root, config.database);
  read_log(reader, root, config.log);
  read_auth(reader, root, config.auth);
  read_exchange(reader, root, config.exchange);
  read_notifications(reader, root, config.exchange, config.notifications);
  read_connect(reader, root, config.exchange, config.connect);
  // The notifications' base URL (how the FHIR server reaches the service) stands in, unless it is plain
  // http:// where that is not allowed: members' browsers must not carry codes in clear.
  if (config.connect.public_base_url.empty() &&
      (!util::is_plain_http(config.notifications.public_base_url) || config.exchange.allow_plain_http)) {
    config.connect.public_base_url = config.notifications.public_base_url;
  }
  read_oidc_servers(reader, root, config.oidc_servers);
  for (std::size_t i = 0; i < config.oidc_servers.size(); ++i) {
    if (config.oidc_servers[i].token_endpoint_auth_method == "private_key_jwt" && config.exchange.client_signing_keys.empty()) {
      reader.fail("oidcServers[" + std::to_string(i) + "].tokenEndpointAuthMethod",
                  "is private_key_jwt but exchange.clientSigningKeys (P2P_CLIENT_SIGNING_KEYS) is empty: give the service "
                  "a PEM private key to sign with (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out key.pem)");
    }
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

std::vector<KeySpec> key_specs() {
  std::vector<KeySpec> specs;
  std::vector<ConfigIssue> issues;  // (an empty document has some: no API key, no token key)
  Config config;
  read_document(json::object(), {}, issues, config, &specs);
  return specs;
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

  Config config;
  read_document(merged, env_sources, issues, config, nullptr);
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
