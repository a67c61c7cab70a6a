#include <cstdlib>
#include <filesystem>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config_issues.hpp"
#include "p2p/config/config.hpp"

using nlohmann::json;
using p2p::config::ConfigError;
using p2p::config::Environment;
using p2p::config::parse_config;
using p2p::test::issues_of;

namespace {

const std::string kTokenKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const Environment kWithKey = {{"P2P_API_KEYS", "0123456789abcdef-key"}, {"P2P_TOKEN_ENCRYPTION_KEY", kTokenKey}};
const Environment kTokenKeyOnly = {{"P2P_TOKEN_ENCRYPTION_KEY", kTokenKey}};

}  // namespace

TEST(Config, DefaultsApplyWithoutAFile) {
  const auto config = parse_config(json::object(), kWithKey);
  EXPECT_EQ(config.http.host, "127.0.0.1");
  EXPECT_EQ(config.http.port, 8080);
  EXPECT_EQ(config.http.threads, 2);
  EXPECT_EQ(config.http.body_limit_bytes, 1024u * 1024u);
  EXPECT_EQ(config.database.url, "postgresql://p2p@127.0.0.1:5432/p2p");
  EXPECT_EQ(config.log.level, "info");
  EXPECT_EQ(config.auth.mode, p2p::config::AuthMode::kApiKey);
  ASSERT_EQ(config.auth.api_keys.size(), 1u);
  EXPECT_EQ(config.auth.api_keys[0], "0123456789abcdef-key");
  EXPECT_TRUE(config.oidc_servers.empty());
}

TEST(Config, EnvironmentOverridesTheFile) {
  const json document = {{"http", {{"port", 9000}, {"host", "0.0.0.0"}}}, {"log", {{"level", "debug"}}}};
  Environment env = kWithKey;
  env["P2P_HTTP_PORT"] = "9100";
  env["P2P_DATABASE_URL"] = "postgresql://u:pw@db:5432/x";
  env["P2P_LOG_LEVEL"] = "warn";
  env["P2P_API_KEYS"] = " first-key-0123456789 , second-key-0123456789 ,";
  const auto config = parse_config(document, env);
  EXPECT_EQ(config.http.port, 9100);
  EXPECT_EQ(config.http.host, "0.0.0.0");
  EXPECT_EQ(config.database.url, "postgresql://u:pw@db:5432/x");
  EXPECT_EQ(config.log.level, "warn");
  EXPECT_EQ(config.auth.api_keys, (std::vector<std::string>{"first-key-0123456789", "second-key-0123456789"}));
}

TEST(Config, ReportsEveryProblemWithItsKeyPath) {
  const json document = {{"http", {{"port", 70000}, {"threads", "two"}, {"bodyLimit", 5}}},
                         {"log", {{"level", "loud"}}},
                         {"database", {{"url", "mysql://x"}}}};
  EXPECT_EQ(issues_of(document, kWithKey),
            (std::vector<std::string>{
                "http.bodyLimit: unknown key; the keys allowed here are: host, port, threads, blockingThreads, "
                "bodyLimitBytes, headerTimeoutSeconds, readTimeoutSeconds, writeTimeoutSeconds, idleTimeoutSeconds, "
                "shutdownGraceSeconds, swaggerUiDir, tls",
                "http.port: must be between 1 and 65535, got 70000",
                "http.threads: must be an integer between 1 and 256",
                "database.url: must be a libpq URL starting with postgresql://, e.g. postgresql://p2p:secret@db:5432/p2p",
                "log.level: must be one of trace, debug, info, warn, error, critical, off; got \"loud\""}));
}

// The keys a section knows are the ones it reads, listed in the order it reads them (config/reader.hpp).
TEST(Config, AnUnknownKeyIsAnsweredWithTheKeysTheSectionReads) {
  const auto issues = issues_of({{"exchange", {{"fhirPersistenceUrl", "https://target.example/fhir"}, {"foo", 1}}},
                                 {"notifications", {{"smtp", {{"host", "x"}}}}}},
                                kWithKey);
  ASSERT_GE(issues.size(), 2u);
  EXPECT_EQ(issues[0],
            "exchange.foo: unknown key; the keys allowed here are: fhirPersistenceUrl, fhirPersistenceAuthorization, "
            "tokenEncryptionKey, retiredTokenEncryptionKeys, developmentMode, versionedReferences, allowPlainHttp, "
            "verifyTls, caFile, clientSigningKeys, traceabilitySystemBase, exchangeTagSystem, concurrency, leaseSeconds, "
            "pollIntervalMilliseconds, recordIntervalMilliseconds, maxAttempts, initialBackoffMilliseconds, "
            "maxBackoffSeconds, requestTimeoutSeconds, maxResponseBytes, maxPageBytes, maxPages, pageSize, "
            "outageToleranceSeconds, maxClaims, resourceTypes, mdmPatientIdentifier");
  EXPECT_EQ(issues[1],
            "notifications.smtp.host: unknown key; the keys allowed here are: url, startTls, user, password, verifyTls, "
            "caFile, timeoutSeconds");
}

TEST(Config, NamesTheEnvironmentVariableAProblemCameFrom) {
  Environment env = kWithKey;
  env["P2P_HTTP_PORT"] = "eighty";
  env["P2P_HTTP_THREADS"] = "0";
  EXPECT_EQ(issues_of(json::object(), env),
            (std::vector<std::string>{"http.port (from P2P_HTTP_PORT): must be an integer, got \"eighty\"",
                                      "http.threads (from P2P_HTTP_THREADS): must be between 1 and 256, got 0"}));
}

TEST(Config, ApiKeysAreRequiredUnlessAuthIsExplicitlyOff) {
  EXPECT_EQ(issues_of(json::object(), kTokenKeyOnly),
            (std::vector<std::string>{"auth.apiKeys: at least one API key is required (set P2P_API_KEYS or "
                                      "auth.apiKeys), or set auth.mode to \"none\" to run without authentication in "
                                      "development"}));
  const auto config = parse_config({{"auth", {{"mode", "none"}}}}, kTokenKeyOnly);
  EXPECT_EQ(config.auth.mode, p2p::config::AuthMode::kNone);
  EXPECT_EQ(issues_of({{"auth", {{"apiKeys", {"short"}}}}}, kTokenKeyOnly),
            (std::vector<std::string>{
                "auth.apiKeys[0]: must be at least 16 characters (use a random key, e.g. openssl rand -hex 32)",
                "auth.apiKeys: at least one API key is required (set P2P_API_KEYS or auth.apiKeys), or set "
                "auth.mode to \"none\" to run without authentication in development"}));
  EXPECT_EQ(issues_of({{"auth", {{"mode", "basic"}}}}, kWithKey),
            (std::vector<std::string>{"auth.mode: must be \"apiKey\" or \"none\", got \"basic\""}));
}

TEST(Config, ReadsOidcServerDefinitions) {
  const json document = {{"oidcServers",
                          {{{"name", "P2P Source Payer A"},
                            {"issuer", "https://sourcepayerA.com/issuer"},
                            {"clientId", "p2pexchangeclientId"},
                            {"clientSecret", "s3cret"},
                            {"scopes", "openid profile offline_access"},
                            {"customTokenParams", "memberId"},
                            {"authWellKnown", "https://sourcepayerA.com/.well-known/openid-configuration"},
                            {"tokenEndpoint", "https://sourcepayerA.com/token-endpoint"},
                            {"fhirEndpoint", "https://sourcepayerA.com/fhir-endpoint"},
                            {"responseType", "code id_token"},
                            {"organizationId", "ABCD"},
                            {"notes", "registration at https://sourcepayerA.com/register"}}}}};
  const auto config = parse_config(document, kWithKey);
  ASSERT_EQ(config.oidc_servers.size(), 1u);
  const auto& server = config.oidc_servers[0];
  EXPECT_EQ(server.name, "P2P Source Payer A");
  EXPECT_EQ(server.issuer, "https://sourcepayerA.com/issuer");
  EXPECT_EQ(server.client_secret, "s3cret");
  EXPECT_EQ(server.response_type, "code id_token");
  EXPECT_EQ(server.fhir_endpoint, "https://sourcepayerA.com/fhir-endpoint");
  EXPECT_FALSE(server.jwk_text.has_value());
}

TEST(Config, RejectsBadOidcServerDefinitions) {
  const json document = {
      {"oidcServers",
       {{{"name", "A"}, {"issuer", "https://a.example.com/"}, {"responseType", "code_token"}},
        {{"name", "  "}, {"issuer", "https://a.example.com"}, {"fhirEndpoint", "ftp://a.example.com/fhir"}},
        {{"issuer", "https://user:pw@b.example.com"}, {"tokenEndpoint", "/token"}, {"jwkText", "not json"}}}}};
  EXPECT_EQ(
      issues_of(document, kWithKey),
      (std::vector<std::string>{
          "oidcServers[0].responseType: must be one of: code, token, id_token, \"id_token token\", \"code id_token\", "
          "\"code token\", \"code id_token token\", none; got \"code_token\"",
          "oidcServers[1].name: must not be empty",
          "oidcServers[1].issuer: duplicates the issuer of oidcServers[0] (issuers are compared without trailing "
          "slashes)",
          "oidcServers[1].fhirEndpoint: must use http or https, not \"ftp\"",
          "oidcServers[2].name: is required",
          "oidcServers[2].issuer: must not carry user or password in the URL",
          "oidcServers[2].tokenEndpoint: must be an absolute URL such as https://payer.example.com/fhir (mismatch)",
          "oidcServers[2].jwkText: must be a JSON Web Key (a JSON object)"}));
}

TEST(Config, UnreadableOrInvalidFilesAreReportedByPath) {
  try {
    p2p::config::load_config(std::filesystem::path("/nonexistent/p2p.json"), kWithKey);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_EQ(std::string(error.what()),
              "invalid configuration:\n  /nonexistent/p2p.json: cannot be read: check the path and its permissions");
  }
}

TEST(Config, HostMustBeAnIpAddress) {
  EXPECT_EQ(issues_of({{"http", {{"host", "localhost"}}}}, kWithKey),
            (std::vector<std::string>{"http.host: must be an IP address to listen on, such as 127.0.0.1 or 0.0.0.0 "
                                      "(or :: for IPv6), got \"localhost\""}));
  EXPECT_EQ(parse_config({{"http", {{"host", "::"}}}}, kWithKey).http.host, "::");
}

TEST(Config, ExchangeSettingsFromFileAndEnvironment) {
  Environment env = kWithKey;
  env["P2P_FHIR_PERSISTENCE_URL"] = "http://127.0.0.1:9000/fhir";
  env["P2P_ALLOW_PLAIN_HTTP"] = "true";
  env["P2P_VERSIONED_REFERENCES"] = "1";
  const json document = {{"exchange", {{"concurrency", 2}, {"mdmPatientIdentifier", {{"identifierSystem", "urn:tgt:member"}}}}}};
  const auto config = parse_config(document, env);
  EXPECT_EQ(config.exchange.fhir_persistence_url, "http://127.0.0.1:9000/fhir");
  EXPECT_TRUE(config.exchange.allow_plain_http);
  EXPECT_TRUE(config.exchange.versioned_references);
  EXPECT_EQ(config.exchange.concurrency, 2);
  ASSERT_TRUE(config.exchange.mdm_patient_identifier.has_value());
  EXPECT_EQ(config.exchange.mdm_patient_identifier->code, "um");
  EXPECT_EQ(config.exchange.mdm_patient_identifier->system, "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType");
  EXPECT_EQ(config.exchange.mdm_patient_identifier->identifier_system, "urn:tgt:member");
  EXPECT_FALSE(parse_config(json::object(), kWithKey).exchange.mdm_patient_identifier.has_value());
}

// 0 records every page as it lands; more than 10 s would let a crash rewrite too many pages and a
// cancel wait too long (docs/configuration.md).
TEST(Config, TheRecordIntervalIsFromZeroToTenSeconds) {
  const auto with_interval = [](int milliseconds) {
    return json{{"exchange", {{"recordIntervalMilliseconds", milliseconds}}}};
  };
  EXPECT_EQ(parse_config(json::object(), kWithKey).exchange.record_interval_milliseconds, 200);
  EXPECT_EQ(parse_config(with_interval(0), kWithKey).exchange.record_interval_milliseconds, 0);
  EXPECT_EQ(parse_config(with_interval(10000), kWithKey).exchange.record_interval_milliseconds, 10000);
  EXPECT_EQ(issues_of(with_interval(-1), kWithKey),
            (std::vector<std::string>{"exchange.recordIntervalMilliseconds: must be between 0 and 10000, got -1"}));
  EXPECT_EQ(issues_of(with_interval(10001), kWithKey),
            (std::vector<std::string>{"exchange.recordIntervalMilliseconds: must be between 0 and 10000, got 10001"}));
}

TEST(Config, TheTokenKeyIsRequiredOutsideDevelopmentAndPlainHttpMustBeAllowed) {
  const Environment api_key_only = {{"P2P_API_KEYS", "0123456789abcdef-key"}};
  EXPECT_EQ(issues_of(json::object(), api_key_only),
            (std::vector<std::string>{"exchange.tokenEncryptionKey: is required to encrypt members' tokens at rest: set "
                                      "P2P_TOKEN_ENCRYPTION_KEY to the output of `openssl rand -base64 32` (or set "
                                      "exchange.developmentMode to true for a throwaway key in development)"}));
  Environment development = api_key_only;
  development["P2P_DEVELOPMENT_MODE"] = "true";
  EXPECT_TRUE(parse_config(json::object(), development).exchange.development_mode);

  Environment bad = kWithKey;
  bad["P2P_TOKEN_ENCRYPTION_KEY"] = "c2hvcnQ=";
  bad["P2P_FHIR_PERSISTENCE_URL"] = "http://target.example.com/fhir";
  bad["P2P_VERSIONED_REFERENCES"] = "yes";
  EXPECT_EQ(issues_of(json::object(), bad),
            (std::vector<std::string>{
                "exchange.versionedReferences (from P2P_VERSIONED_REFERENCES): must be true or false, got \"yes\"",
                "exchange.fhirPersistenceUrl (from P2P_FHIR_PERSISTENCE_URL): must use https (plain http:// is refused "
                "unless exchange.allowPlainHttp / P2P_ALLOW_PLAIN_HTTP is true)",
                "exchange.tokenEncryptionKey (from P2P_TOKEN_ENCRYPTION_KEY): the token encryption key must be base64 of "
                "exactly 32 bytes (got 5 bytes); make one with: openssl rand -base64 32"}));
}

TEST(Config, RunnerSettingsThatCannotWorkAreRefusedAtStart) {
  Environment env = kWithKey;
  EXPECT_EQ(issues_of({{"exchange", {{"caFile", "/nonexistent/ca.pem"}, {"leaseSeconds", 6}, {"pollIntervalMilliseconds", 2000}}}}, env),
            (std::vector<std::string>{
                "exchange.caFile: cannot be read: \"/nonexistent/ca.pem\" must be a PEM file of trusted CA certificates",
                "exchange.pollIntervalMilliseconds: must be less than a third of exchange.leaseSeconds (leases are "
                "renewed on the poll), got 2000 ms for a lease of 6 s"}));
  Environment development = {{"P2P_API_KEYS", "0123456789abcdef-key"}, {"P2P_DEVELOPMENT_MODE", "true"},
                             {"P2P_RETIRED_TOKEN_ENCRYPTION_KEYS", "c2hvcnQ="}};
  EXPECT_EQ(issues_of(json::object(), development),
            (std::vector<std::string>{"exchange.retiredTokenEncryptionKeys[0] (from P2P_RETIRED_TOKEN_ENCRYPTION_KEYS): must be base64 of exactly 32 bytes (as "
                                      "made by openssl rand -base64 32)"}));
}

TEST(Config, InboundTlsTakesACertificateAndItsKeyTogether) {
  EXPECT_FALSE(parse_config(json::object(), kWithKey).http.tls.enabled());

  // Any readable files pass here; their contents are checked when the server loads them.
  Environment env = kWithKey;
  env["P2P_TLS_CERT_FILE"] = "/etc/hostname";
  env["P2P_TLS_KEY_FILE"] = "/etc/passwd";
  const auto from_env = parse_config(json::object(), env);
  EXPECT_TRUE(from_env.http.tls.enabled());
  EXPECT_EQ(from_env.http.tls.cert_file, "/etc/hostname");
  EXPECT_EQ(from_env.http.tls.key_file, "/etc/passwd");
  const auto from_file =
      parse_config({{"http", {{"tls", {{"certFile", "/etc/hostname"}, {"keyFile", "/etc/passwd"}}}}}}, kWithKey);
  EXPECT_EQ(from_file.http.tls.cert_file, "/etc/hostname");
  EXPECT_EQ(from_file.http.tls.key_file, "/etc/passwd");
}

TEST(Config, InboundTlsProblemsNameTheKeyAndTheFile) {
  EXPECT_EQ(issues_of({{"http", {{"tls", {{"certFile", "/etc/hostname"}}}}}}, kWithKey),
            (std::vector<std::string>{"http.tls.keyFile: is required when http.tls.certFile is set: HTTPS needs the "
                                      "certificate's private key (P2P_TLS_KEY_FILE)"}));
  EXPECT_EQ(issues_of({{"http", {{"tls", {{"keyFile", "/etc/hostname"}}}}}}, kWithKey),
            (std::vector<std::string>{"http.tls.certFile: is required when http.tls.keyFile is set: HTTPS needs the "
                                      "certificate (P2P_TLS_CERT_FILE)"}));
  Environment missing = kWithKey;
  missing["P2P_TLS_CERT_FILE"] = "/nonexistent/cert.pem";
  missing["P2P_TLS_KEY_FILE"] = "/nonexistent/key.pem";
  EXPECT_EQ(issues_of(json::object(), missing),
            (std::vector<std::string>{
                "http.tls.certFile (from P2P_TLS_CERT_FILE): cannot be read: \"/nonexistent/cert.pem\" must be a "
                "readable PEM file holding the server certificate (and any intermediate CAs)",
                "http.tls.keyFile (from P2P_TLS_KEY_FILE): cannot be read: \"/nonexistent/key.pem\" must be a "
                "readable PEM file holding the certificate's unencrypted private key"}));
  EXPECT_EQ(issues_of({{"http", {{"tls", {{"certFile", "/etc/hostname"}, {"keyFile", "/etc/passwd"}, {"caFile", "x"}}}}}},
                      kWithKey),
            (std::vector<std::string>{"http.tls.caFile: unknown key; the keys allowed here are: certFile, keyFile"}));
  EXPECT_EQ(issues_of({{"http", {{"tls", "yes"}}}}, kWithKey), (std::vector<std::string>{"http.tls: must be an object"}));
}

// Found by the config fuzzer (tests/fuzz/regressions/config/empty_top_level_key): a key that is the
// empty string gave an issue whose key path was empty. Odd keys are quoted as JSON strings.
TEST(Config, UnknownKeysThatAreOddGetAReadableKeyPath) {
  const auto unknown_keys = [](const json& document) {
    std::vector<std::string> keys;
    for (const auto& line : issues_of(document, kWithKey)) {
      if (const auto at = line.find(": unknown key"); at != std::string::npos) keys.push_back(line.substr(0, at));
    }
    return keys;
  };
  EXPECT_EQ(unknown_keys(json::parse(R"({"":{"dom=":"none"}})")), (std::vector<std::string>{R"((root)."")"}));
  EXPECT_EQ(unknown_keys(json::parse(R"({"http":{"":1}})")), (std::vector<std::string>{R"(http."")"}));
  EXPECT_EQ(unknown_keys(json::parse(R"({"http":{"a b":1, "a.b":2, "tls ":3}})")),
            (std::vector<std::string>{R"(http."a b")", R"(http."a.b")", R"(http."tls ")"}));
  EXPECT_EQ(unknown_keys(json::parse(R"({"log":{"lev\u00e9l":1, "x\ny":2, "\"":3}})")),
            (std::vector<std::string>{R"(log."\"")", R"(log."levél")", R"(log."x\ny")"}));
  EXPECT_EQ(unknown_keys(json::parse(R"({"oidcServers":[{"name":"a","issuer":"https://a.example","[0]":1}]})")),
            (std::vector<std::string>{R"(oidcServers[0]."[0]")"}));
  // A plain unknown key is shown as it is, at the top level too.
  EXPECT_EQ(unknown_keys(json::parse(R"({"htp":{}})")), (std::vector<std::string>{"htp"}));
  // A very long key is cut, saying how long it was.
  const auto lines = issues_of(json{{"http", {{std::string(5000, 'k'), 1}}}}, kWithKey);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].substr(0, lines[0].find(": unknown key")), "http." + std::string(64, 'k') + "...(5000 bytes)");
  for (const auto& line : issues_of(json::parse(R"({"":1,"http":{"":2},"log":{" ":3}})"), kWithKey)) {
    EXPECT_FALSE(line.starts_with(":")) << line;
    EXPECT_NE(line.find("unknown key; the keys allowed here are: "), std::string::npos) << line;
  }
}

// Issue #9 (2): which resource types are written to the target.
TEST(Config, ResourceTypesDefaultToTheMemberDataSetAndNeverIncludeTypesThatActOnTheTarget) {
  EXPECT_FALSE(parse_config(json::object(), kWithKey).exchange.resource_types.has_value())
      << "unset: the documented default (fhir::default_resource_types)";
  const auto narrowed = parse_config(json{{"exchange", {{"resourceTypes", {"Coverage", "ExplanationOfBenefit"}}}}}, kWithKey);
  EXPECT_EQ(narrowed.exchange.resource_types, (std::vector<std::string>{"Coverage", "ExplanationOfBenefit"}));
  Environment env = kWithKey;
  env["P2P_EXCHANGE_RESOURCE_TYPES"] = "Coverage, Claim";
  EXPECT_EQ(parse_config(json::object(), env).exchange.resource_types, (std::vector<std::string>{"Coverage", "Claim"}));

  EXPECT_EQ(issues_of(json{{"exchange", {{"resourceTypes", {"Coverage", "Subscription", "observation", "Task", "CodeSystem",
                                                            "Coverage"}}}}},
                      kWithKey),
            (std::vector<std::string>{
                "exchange.resourceTypes[1]: Subscription is never written to the target, whatever the configuration "
                "says: it would act on the new payer's server (notifications, workflow, conformance or terminology)",
                "exchange.resourceTypes[2]: must be a FHIR R4 resource type name such as ExplanationOfBenefit, got \"observation\"",
                "exchange.resourceTypes[3]: Task is never written to the target, whatever the configuration says: it "
                "would act on the new payer's server (notifications, workflow, conformance or terminology)",
                "exchange.resourceTypes[4]: CodeSystem is never written to the target, whatever the configuration says: "
                "it would act on the new payer's server (notifications, workflow, conformance or terminology)",
                "exchange.resourceTypes[5]: Coverage is listed twice"}));
  EXPECT_EQ(issues_of(json{{"exchange", {{"resourceTypes", json::array()}}}}, kWithKey),
            (std::vector<std::string>{"exchange.resourceTypes: must name at least one resource type (leave it out for "
                                      "the default member data set)"}));
}

TEST(Config, ClientAuthenticationNeedsAKnownMethodAClientIdAndSigningKeys) {
  const json servers = {{"oidcServers",
                         {{{"name", "A"}, {"issuer", "https://a.example"}, {"tokenEndpointAuthMethod", "client_secret_jwt"}},
                          {{"name", "B"}, {"issuer", "https://b.example"}, {"tokenEndpointAuthMethod", "private_key_jwt"}}}}};
  EXPECT_EQ(issues_of(servers, kWithKey),
            (std::vector<std::string>{
                "oidcServers[0].tokenEndpointAuthMethod: must be client_secret_basic, client_secret_post or "
                "private_key_jwt; got \"client_secret_jwt\"",
                "oidcServers[1].clientId: is required with tokenEndpointAuthMethod private_key_jwt (the JWT's iss and sub)",
                "oidcServers[1].tokenEndpointAuthMethod: is private_key_jwt but exchange.clientSigningKeys "
                "(P2P_CLIENT_SIGNING_KEYS) is empty: give the service a PEM private key to sign with (openssl genpkey "
                "-algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out key.pem)"}));
  auto env = kWithKey;
  env["P2P_CLIENT_SIGNING_KEYS"] = "/nonexistent/key.pem";
  EXPECT_EQ(issues_of(json::object(), env),
            (std::vector<std::string>{"exchange.clientSigningKeys[0] (from P2P_CLIENT_SIGNING_KEYS): cannot read the "
                                      "signing key file "
                                      "/nonexistent/key.pem: check the path and its permissions"}));
  // A key given twice: the second is named (found by its kid).
  const std::string key =
      (std::filesystem::temp_directory_path() / ("p2p-config-key-" + std::to_string(::getpid()) + ".pem")).string();
  ASSERT_EQ(std::system(("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out " + key + " 2>&1").c_str()), 0);
  env["P2P_CLIENT_SIGNING_KEYS"] = key + "," + key;
  EXPECT_EQ(issues_of(json::object(), env),
            (std::vector<std::string>{"exchange.clientSigningKeys[1] (from P2P_CLIENT_SIGNING_KEYS): is the same key as "
                                      "exchange.clientSigningKeys[0]"}));
  std::filesystem::remove(key);
}

namespace {

TEST(Config, TheConnectFlowsBaseUrlAndReturnUrls) {
  // Off by default; the public base URL falls back to the notifications' one.
  const auto defaults = parse_config(json::object(), kWithKey);
  EXPECT_TRUE(defaults.connect.public_base_url.empty());
  EXPECT_TRUE(defaults.connect.allowed_return_urls.empty());
  EXPECT_EQ(defaults.connect.authorization_ttl_seconds, 600);
  auto env = kWithKey;
  env["P2P_PUBLIC_BASE_URL"] = "https://p2p.internal.example/";
  EXPECT_EQ(parse_config(json::object(), env).connect.public_base_url, "https://p2p.internal.example");
  env["P2P_CONNECT_PUBLIC_BASE_URL"] = "https://p2p.example/";
  env["P2P_CONNECT_ALLOWED_RETURN_URLS"] = "https://portal.example/p2p/, https://other.example/done";
  const auto set = parse_config(json::object(), env);
  EXPECT_EQ(set.connect.public_base_url, "https://p2p.example");
  EXPECT_EQ(set.connect.allowed_return_urls,
            (std::vector<std::string>{"https://portal.example/p2p/", "https://other.example/done"}));

  EXPECT_EQ(issues_of({{"connect", {{"publicBaseUrl", "https://p2p.example/?x"},
                                    {"allowedReturnUrls", {"http://portal.example/p2p/", "https://portal.example/#f", "/p2p"}},
                                    {"authorizationTtlSeconds", 10}}}},
                      kWithKey),
            (std::vector<std::string>{
                "connect.authorizationTtlSeconds: must be between 60 and 3600, got 10",
                "connect.publicBaseUrl: must be a base URL without a query or fragment, e.g. https://p2p.example.org",
                "connect.allowedReturnUrls[0]: uses plain http://: the member's browser would carry the result in clear "
                "(use https://; P2P_ALLOW_PLAIN_HTTP=true allows it for local tests only)",
                "connect.allowedReturnUrls[1]: must be an origin and a path prefix without a query or fragment, e.g. "
                "https://portal.example.org/p2p/",
                "connect.allowedReturnUrls[2]: must be an absolute URL such as https://payer.example.com/fhir (mismatch)"}));
  const auto plain = parse_config({{"exchange", {{"allowPlainHttp", true}}},
                                   {"connect", {{"allowedReturnUrls", {"http://127.0.0.1:8090/p2p/"}}}}},
                                  kWithKey);
  EXPECT_EQ(plain.connect.allowed_return_urls.size(), 1u);
}

TEST(Config, ADefinitionsPatientIdClaimIsFhirUserOrSub) {
  const json server = {{"name", "A"}, {"issuer", "https://a.example"}, {"patientIdClaim", "sub"}};
  EXPECT_EQ(parse_config({{"oidcServers", {server}}}, kWithKey).oidc_servers[0].patient_id_claim, "sub");
  json wrong = server;
  wrong["patientIdClaim"] = "email";
  EXPECT_EQ(issues_of({{"oidcServers", {wrong}}}, kWithKey),
            (std::vector<std::string>{"oidcServers[0].patientIdClaim: must be \"fhirUser\" or \"sub\"; got \"email\""}));
}

}  // namespace
