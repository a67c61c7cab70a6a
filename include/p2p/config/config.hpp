#pragma once
// Configuration: one JSON file plus P2P_* environment overrides, validated into a typed Config.
// Every problem is reported with the key path (and the environment variable, when it came from one)
// and what to change; nothing here reads the network or the database.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <utility>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "p2p/mail/templates.hpp"

namespace p2p::config {

// Inbound TLS on the API port: both files or neither. When set, the port speaks HTTPS only.
struct TlsConfig {
  std::string cert_file;  // PEM: the server certificate, then any intermediate CA certificates
  std::string key_file;   // PEM: its private key, unencrypted
  bool enabled() const { return !cert_file.empty(); }
};

struct HttpConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  int threads = 2;
  int blocking_threads = 4;  // run handlers that touch PostgreSQL; one database connection each
  std::size_t body_limit_bytes = 1024 * 1024;
  int header_timeout_seconds = 10;  // a request's headers must arrive within this (slow-loris bound)
  int read_timeout_seconds = 30;    // the body, once headers are in
  int write_timeout_seconds = 30;
  int idle_timeout_seconds = 60;    // keep-alive connection waiting for its next request
  int shutdown_grace_seconds = 20;
  std::string swagger_ui_dir;       // empty: "swagger-ui" beside the executable
  TlsConfig tls;
};

struct DatabaseConfig {
  std::string url = "postgresql://p2p@127.0.0.1:5432/p2p";
  int connect_timeout_seconds = 5;
  int migration_retry_seconds = 5;
};

struct LogConfig {
  std::string level = "info";  // trace debug info warn error critical off
};

enum class AuthMode { kApiKey, kNone };

struct AuthConfig {
  AuthMode mode = AuthMode::kApiKey;
  std::vector<std::string> api_keys;
};

// One source payer, as in the seed's OIDC server section. Declared here, upserted by issuer at start-up.
struct OidcServerDefinition {
  std::string name;
  std::string issuer;
  std::optional<std::string> client_id;
  std::optional<std::string> client_secret;
  std::optional<std::string> jwk_text;
  std::optional<std::string> jwk_file;
  std::optional<std::string> auth_well_known;
  std::optional<std::string> scopes;
  std::optional<std::string> fhir_endpoint;
  std::optional<std::string> token_endpoint;
  std::optional<std::string> custom_token_params;
  // How the service authenticates to the token endpoint: client_secret_basic (default),
  // client_secret_post, or private_key_jwt (a JWT signed with exchange.clientSigningKeys).
  std::string token_endpoint_auth_method = "client_secret_basic";
  std::optional<std::string> system_scopes;  // client_credentials (SMART Backend Services) scopes
  std::string response_type = "code";
  // The member connect flow: where the member's Patient id comes from when the token response has no
  // SMART `patient`: the id token's "fhirUser" (a Patient reference; default) or its "sub".
  std::string patient_id_claim = "fhirUser";
  std::optional<std::string> organization_id;
  std::optional<std::string> notes;
};

// client_secret_basic, client_secret_post or private_key_jwt.
inline bool is_token_endpoint_auth_method(std::string_view method) {
  return method == "client_secret_basic" || method == "client_secret_post" || method == "private_key_jwt";
}

// The CARIN BB patient identifier type added to the member's source Patient for MDM matching.
struct MdmIdentifierConfig {
  std::string system = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType";
  std::string code = "um";
  std::string identifier_system;  // system of the added identifier, e.g. the target payer's member-id system
};

// The exchange itself: the target FHIR server, token encryption, the job runner.
struct ExchangeConfig {
  std::string fhir_persistence_url;            // the target FHIR base; batch jobs are refused while empty
  std::string fhir_persistence_authorization;  // Authorization header value for it, e.g. "Bearer ..."
  std::string token_encryption_key;            // base64 of 32 bytes
  std::vector<std::string> retired_token_encryption_keys;
  bool development_mode = false;               // allows an ephemeral key when none is set
  bool versioned_references = false;
  bool allow_plain_http = false;               // http:// source and target endpoints (loopback tests)
  std::optional<MdmIdentifierConfig> mdm_patient_identifier;
  std::string traceability_system_base = "urn:p2p-exchange:source:";  // + the source's organization id
  std::string exchange_tag_system = "urn:p2p-exchange:exchange";
  int concurrency = 4;                         // jobs run at once by this instance
  int lease_seconds = 60;
  int poll_interval_milliseconds = 1000;
  int record_interval_milliseconds = 200;      // a running job records its written pages at most this often
  int max_attempts = 8;                        // per request, for 429 / 5xx / connection errors
  int initial_backoff_milliseconds = 500;
  int max_backoff_seconds = 60;
  int request_timeout_seconds = 60;
  std::size_t max_response_bytes = 64 * 1024 * 1024;  // any answer but a source page (token endpoint, target)
  std::size_t max_page_bytes = 16 * 1024 * 1024;      // a source page (after decompression); larger fails the job
  int max_pages = 10000;                       // a job reading more pages fails (runaway or looping paging)
  int page_size = 49;  // resources per transaction when the job cuts pages itself (bulk export files)
  int outage_tolerance_seconds = 3600;         // a job pauses through outages until this long without progress
  int max_claims = 10;                         // takeovers from expired leases in a row, without progress, before a job fails
  // The resource types written to the target (exchange.resourceTypes); nullopt: the member data set of
  // fhir::default_resource_types(). Types that act on the target are refused here and skipped anyway.
  std::optional<std::vector<std::string>> resource_types;
  bool verify_tls = true;
  std::string ca_file;
  // PEM private keys (RSA >= 2048 bits or EC P-384) this service signs private_key_jwt client
  // assertions with; the first signs, all are published at /.well-known/jwks.json.
  std::vector<std::string> client_signing_keys;
};

using mail::EmailTemplate;  // one e-mail's templates (p2p/mail/templates.hpp)

struct SmtpConfig {
  std::string url;               // smtp://host:port (STARTTLS) or smtps://host:port (implicit TLS)
  bool start_tls = true;         // for smtp://: refuse to send unless STARTTLS succeeds ("required"); false: "off"
  std::string user;              // empty: no AUTH
  std::string password;
  bool verify_tls = true;
  std::string ca_file;
  int timeout_seconds = 30;
};

// Add-payer Task notifications: the seeded Subscription, the rest-hook receiver, the SMTP outbox.
struct NotificationsConfig {
  bool enabled = false;
  std::string public_base_url;   // how the FHIR server reaches this service
  std::string hook_secret;
  int subscription_check_seconds = 300;
  int empty_notification_lookback_minutes = 60;
  SmtpConfig smtp;
  std::string mail_from;
  std::vector<std::string> mail_admins;
  int max_attempts = 12;
  int initial_backoff_seconds = 10;
  int max_backoff_seconds = 900;
  int poll_interval_milliseconds = 1000;
  EmailTemplate admin_request;         // filled with the defaults when not configured
  EmailTemplate member_confirmation;
  EmailTemplate member_status_update;
};

// The member connect flow (POST /api/oidc_servers/{id}/authorizations, GET /oauth/callback): the
// service runs the OAuth authorization-code flow with PKCE for member portals.
struct ConnectConfig {
  // The browser-facing base URL of this service: redirect_uri = public_base_url + "/oauth/callback".
  // Empty: notifications.publicBaseUrl. The flow is off while both are empty.
  std::string public_base_url;
  // Where the callback may send the member's browser back: "scheme://host[:port]/path-prefix" each;
  // a returnUrl matches one when its origin is the same and its path starts with the prefix's path.
  std::vector<std::string> allowed_return_urls;
  int authorization_ttl_seconds = 600;  // an authorization not used within this is refused at the callback
};

struct Config {
  HttpConfig http;
  DatabaseConfig database;
  LogConfig log;
  AuthConfig auth;
  ExchangeConfig exchange;
  NotificationsConfig notifications;
  ConnectConfig connect;
  std::vector<OidcServerDefinition> oidc_servers;
};

struct ConfigIssue {
  std::string key;     // e.g. "http.port" or "oidcServers[1].issuer"
  std::string reason;  // what is wrong and what to do
};

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<ConfigIssue> issues);
  const std::vector<ConfigIssue>& issues() const { return issues_; }

 private:
  std::vector<ConfigIssue> issues_;
};

using Environment = std::map<std::string, std::string>;

// The P2P_* variables of this process.
Environment process_environment();

// Parses and validates a configuration document with the environment applied on top.
// Throws ConfigError listing every problem found.
Config parse_config(const nlohmann::json& document, const Environment& env);

// Reads the file (when given) and calls parse_config. Without a file: built-in defaults + environment.
Config load_config(const std::optional<std::filesystem::path>& file, const Environment& env);

// The environment variables that override keys, as documented in docs/configuration.md.
struct EnvOverride {
  const char* variable;
  const char* key;  // dotted key path
};
const std::vector<EnvOverride>& environment_overrides();

// A key the configuration reads, as the reader saw it: recorded where the key is read (its one
// spelling), for checking docs/configuration.md against it.
struct KeySpec {
  std::string key;            // its path, e.g. "http.port"
  std::string type;           // "string", "integer", "boolean" or "array of strings"
  std::string default_value;  // the built-in default, as JSON
  std::optional<std::pair<std::int64_t, std::int64_t>> limits;  // integers: the allowed range
};

// Every key of the configuration but those inside oidcServers' items, in reading order.
std::vector<KeySpec> key_specs();

}  // namespace p2p::config
