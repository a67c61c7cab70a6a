#include "p2p/oauth/member_authorization.hpp"

#include <chrono>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "p2p/crypto/jws_verify.hpp"
#include "p2p/oauth/id_token.hpp"
#include "p2p/util/text.hpp"
#include "p2p/util/url_rules.hpp"

// GCC 12 reports the coroutine frames' operator delete as mismatched: a false positive of
// -Wmismatched-new-delete on inlined coroutine frames (as in jobs/exchange_job.cpp), silenced here only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace p2p::oauth {
namespace {

constexpr std::size_t kMaxDocumentBytes = 1024 * 1024;  // a discovery document or a JWK Set

boost::asio::awaitable<nlohmann::json> get_json(http::HttpClient& client, std::string url, std::string& problem) {
  http::ClientRequest get;
  get.url = url;
  get.headers.emplace_back("Accept", "application/json");
  get.max_response_bytes = kMaxDocumentBytes;
  try {
    const auto response = co_await client.send(std::move(get));
    if (response.status != 200) {
      problem = url + " answered " + std::to_string(response.status);
      co_return nlohmann::json();
    }
    auto document = nlohmann::json::parse(response.body, nullptr, false);
    if (!document.is_object()) problem = url + " is not a JSON object";
    co_return document;
  } catch (const http::FetchError& error) {
    problem = url + " could not be read (" + std::string(http::to_string(error.kind())) + ")";
  }
  co_return nlohmann::json();
}

// The payer's keys for id tokens, as the definition gives them, or from its jwks_uri.
boost::asio::awaitable<nlohmann::json> issuer_keys(http::HttpClient& client, const CodeExchange& exchange,
                                                   const std::optional<std::string>& jwks_uri) {
  if (exchange.jwk_text) {
    auto keys = nlohmann::json::parse(*exchange.jwk_text, nullptr, false);
    if (!keys.is_object()) throw ConnectFailure("id_token_invalid", "the definition's jwkText is not a JSON object");
    co_return keys;
  }
  if (exchange.jwk_file) {
    std::ifstream input(*exchange.jwk_file);
    std::stringstream text;
    text << input.rdbuf();
    auto keys = nlohmann::json::parse(text.str(), nullptr, false);
    if (!input || !keys.is_object()) {
      throw ConnectFailure("id_token_invalid", "the definition's jwkFile " + *exchange.jwk_file +
                                                   " cannot be read as a JWK or JWK Set");
    }
    co_return keys;
  }
  if (!jwks_uri) {
    throw ConnectFailure("id_token_invalid", "the source payer sent an id token, but the definition has no jwkText or "
                                             "jwkFile and its discovery document no jwks_uri to verify it with");
  }
  std::string problem;
  const std::string url = *jwks_uri;
  auto keys = co_await get_json(client, url, problem);
  if (!problem.empty()) throw ConnectFailure("id_token_invalid", "the payer's keys: " + problem);
  co_return keys;
}

}  // namespace

std::vector<std::string> discovery_urls(const std::optional<std::string>& auth_well_known, const std::string& issuer,
                                        const std::optional<std::string>& fhir_endpoint) {
  if (auth_well_known) return {*auth_well_known};
  std::vector<std::string> urls{util::without_trailing_slashes(issuer) + "/.well-known/openid-configuration"};
  if (fhir_endpoint) urls.push_back(util::without_trailing_slashes(*fhir_endpoint) + "/.well-known/smart-configuration");
  return urls;
}

boost::asio::awaitable<AuthorizationServer> discover_authorization_server(http::HttpClient& client,
                                                                          std::vector<std::string> urls,
                                                                          std::string issuer, bool allow_plain_http) {
  std::string problems;
  for (const auto& url : urls) {
    std::string problem;
    const auto document = co_await get_json(client, url, problem);
    if (problem.empty()) {
      try {
        auto server = read_discovery(document);
        if (server.issuer && util::normalize_issuer(*server.issuer) != util::normalize_issuer(issuer)) {
          throw ConnectError("its issuer is not the definition's issuer " + issuer);
        }
        if (!allow_plain_http) {
          for (const auto* endpoint : {&server.authorization_endpoint, &server.token_endpoint}) {
            if (util::is_plain_http(*endpoint)) throw ConnectError("an endpoint uses plain http:// (" + *endpoint + ")");
          }
          if (server.jwks_uri && util::is_plain_http(*server.jwks_uri)) {
            throw ConnectError("its jwks_uri uses plain http:// (" + *server.jwks_uri + ")");
          }
        }
        co_return server;
      } catch (const ConnectError& error) {
        problem = url + ": " + error.what();
      }
    }
    problems += (problems.empty() ? "" : "; ") + problem;
  }
  throw ConnectError("the source payer's discovery document could not be used (" + problems +
                     "): check the definition's authWellKnown");
}

boost::asio::awaitable<MemberTokens> complete_code_exchange(http::HttpClient& client, CodeExchange exchange) {
  std::string token_endpoint = exchange.token_endpoint.value_or("");
  std::optional<std::string> jwks_uri = exchange.jwks_uri;
  if (!exchange.endpoints_known) {
    std::optional<AuthorizationServer> server;
    try {
      auto discovered = co_await discover_authorization_server(client, exchange.discovery_urls, exchange.issuer,
                                                               exchange.allow_plain_http);
      server = std::move(discovered);
    } catch (const ConnectError& error) {
      // Without a token endpoint in the definition there is nowhere to send the code.
      if (token_endpoint.empty()) throw ConnectFailure("token_exchange_failed", error.what());
    }
    if (token_endpoint.empty()) token_endpoint = server->token_endpoint;
    jwks_uri = server ? server->jwks_uri : std::nullopt;
  }
  if (token_endpoint.empty()) throw ConnectFailure("token_exchange_failed", "no token endpoint is known for the source payer");
  // (Checked by discovery when it was found; again here, since exchange.allowPlainHttp may differ on the
  // instance that takes the callback.)
  if (!exchange.allow_plain_http && jwks_uri && util::is_plain_http(*jwks_uri)) {
    throw ConnectFailure("token_exchange_failed", "the payer's jwks_uri " + *jwks_uri + " uses plain http://");
  }
  if (!exchange.allow_plain_http && util::is_plain_http(token_endpoint)) {
    throw ConnectFailure("token_exchange_failed", "the token endpoint " + token_endpoint +
                                                      " uses plain http://: the code and the client's credentials "
                                                      "would cross in clear (P2P_ALLOW_PLAIN_HTTP=true for local tests only)");
  }

  AuthorizationCodeRequest request{token_endpoint, exchange.code, exchange.redirect_uri, exchange.code_verifier,
                                   exchange.client, exchange.extra_parameters};
  Tokens tokens;
  try {
    auto exchanged = co_await exchange_authorization_code(client, std::move(request));
    tokens = std::move(exchanged);
  } catch (const TokenRefreshError& error) {
    throw ConnectFailure("token_exchange_failed", error.what());
  } catch (const http::FetchError& error) {
    throw ConnectFailure("token_exchange_failed", std::string("the token endpoint could not be reached (") +
                                                      std::string(http::to_string(error.kind())) + ")");
  }

  if (exchange.expect_id_token && !tokens.id_token) {
    throw ConnectFailure("id_token_invalid", "the source payer's token response has no id_token although the scope asked "
                                             "for openid (OpenID Connect Core 3.1.3.3)");
  }
  nlohmann::json claims;
  if (tokens.id_token) {
    const auto keys = co_await issuer_keys(client, exchange, jwks_uri);
    try {
      claims = crypto::verify_jws(*tokens.id_token, keys).payload;
      const long long now =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
      check_id_token_claims(claims, {exchange.issuer, exchange.client.client_id.value_or(""), exchange.nonce_hash, now});
    } catch (const crypto::JwsError& error) {
      throw ConnectFailure("id_token_invalid", std::string("the id token: ") + error.what());
    } catch (const IdTokenError& error) {
      throw ConnectFailure("id_token_invalid", error.what());
    }
  }
  auto patient = member_patient_id(tokens.patient, tokens.id_token ? &claims : nullptr, exchange.patient_id_claim);
  if (!patient) {
    throw ConnectFailure("patient_unknown",
                         "the source payer named no Patient for the member: its token response has no SMART patient, "
                         "and " + std::string(tokens.id_token ? "the id token's " + exchange.patient_id_claim +
                                                                   " claim is not a Patient id"
                                                              : "no id token came back") +
                             " (the definition's patientIdClaim says which id token claim to use)");
  }
  co_return MemberTokens{std::move(tokens), std::move(*patient)};
}

}  // namespace p2p::oauth

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
