#include "p2p/oauth/token_refresher.hpp"

#include <algorithm>
#include <chrono>

#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <nlohmann/json.hpp>

#include "p2p/crypto/signing_keys.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/util/crypto.hpp"

// GCC 12 reports the coroutine frames' operator delete as mismatched: a false positive of
// -Wmismatched-new-delete on inlined coroutine frames (as in jobs/exchange_job.cpp), silenced here only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace p2p::oauth {
namespace {

std::string encode_component(std::string_view text) { return boost::urls::encode(text, boost::urls::unreserved_chars); }

std::string oauth_error_of(const std::string& body) {
  const auto json = nlohmann::json::parse(body, nullptr, false);
  if (!json.is_object()) return "";
  std::string error = json.contains("error") && json["error"].is_string() ? json["error"].get<std::string>() : "";
  if (json.contains("error_description") && json["error_description"].is_string()) {
    error += (error.empty() ? "" : ": ") + json["error_description"].get<std::string>();
  }
  return error;
}

// The access token (and refresh token, expires_in) of a 200 answer.
Tokens read_tokens(const std::string& response_body) {
  const auto body = nlohmann::json::parse(response_body, nullptr, false);
  if (!body.is_object() || !body.contains("access_token") || !body["access_token"].is_string()) {
    throw TokenRefreshError("the token endpoint's answer has no access_token", true);
  }
  Tokens tokens{body["access_token"].get<std::string>(), std::nullopt, std::nullopt};
  if (body.contains("refresh_token") && body["refresh_token"].is_string()) {
    tokens.refresh_token = body["refresh_token"].get<std::string>();
  }
  if (body.contains("expires_in") && body["expires_in"].is_number_integer()) {
    tokens.expires_in = body["expires_in"].get<long long>();
  }
  if (body.contains("id_token") && body["id_token"].is_string()) tokens.id_token = body["id_token"].get<std::string>();
  if (body.contains("patient") && body["patient"].is_string()) tokens.patient = body["patient"].get<std::string>();
  return tokens;
}

http::ClientRequest token_post(const std::string& token_endpoint) {
  http::ClientRequest post;
  post.method = "POST";
  post.url = token_endpoint;
  post.headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}};
  return post;
}

// RFC 7523 section 3 with SMART Backend Services' limits: iss = sub = client_id, aud = the token URL,
// exp at most 5 minutes ahead (4 here: a payer whose clock is behind ours still sees less than 5), a
// jti never used before.
constexpr long long kAssertionSeconds = 240;

// RFC 6749 section 5.2: the token endpoint did not accept the client itself. The grant was not
// processed (a refresh token is still good): a configuration for an admin to fix, not the member.
bool client_refused(const std::string& oauth_error) {
  return oauth_error.starts_with("invalid_client") || oauth_error.starts_with("unauthorized_client");
}

// Not final: a configuration an admin fixes while a job waits (paused, the member's tokens kept).
TokenRefreshError client_refused_error(int status, const std::string& oauth_error) {
  return TokenRefreshError("the source payer did not accept this service as its client (" + std::to_string(status) + " " +
                               oauth_error + "): check the OIDC server definition's clientId and tokenEndpointAuthMethod, "
                               "its secret or, for private_key_jwt, that the source payer registered this service's keys "
                               "(GET /.well-known/jwks.json) for that client id",
                           false);
}

}  // namespace

void authenticate_client(const ClientAuthentication& client, const std::string& token_endpoint,
                         http::ClientRequest& request, std::vector<std::pair<std::string, std::string>>& fields) {
  if (client.method == "private_key_jwt") {
    // Not final: an admin's to fix; a job keeps the member's tokens and pauses meanwhile.
    if (!client.client_id) {
      throw TokenRefreshError("the OIDC server definition uses private_key_jwt but has no clientId", false);
    }
    if (client.signing_keys == nullptr || client.signing_keys->empty()) {
      throw TokenRefreshError("the OIDC server definition uses private_key_jwt but this service has no signing key: set "
                              "exchange.clientSigningKeys (P2P_CLIENT_SIGNING_KEYS)", false);
    }
    const long long now = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count();
    const nlohmann::json claims = {{"iss", *client.client_id}, {"sub", *client.client_id}, {"aud", token_endpoint},
                                   {"iat", now},  {"exp", now + kAssertionSeconds},   {"jti", util::random_hex(16)}};
    fields.emplace_back("client_id", *client.client_id);
    fields.emplace_back("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    fields.emplace_back("client_assertion", client.signing_keys->sign_jwt(claims));
  } else if (client.method == "client_secret_post") {
    if (client.client_id) fields.emplace_back("client_id", *client.client_id);
    if (client.client_secret) fields.emplace_back("client_secret", *client.client_secret);
  } else if (client.method == "client_secret_basic") {
    if (client.client_id && client.client_secret) {
      // RFC 6749 2.3.1: id and secret are form-encoded before they are joined and base64-encoded.
      request.headers.emplace_back("Authorization", "Basic " + crypto::base64_encode(encode_component(*client.client_id) +
                                                                                     ":" + encode_component(*client.client_secret)));
    } else if (client.client_id) {
      fields.emplace_back("client_id", *client.client_id);
    }
  } else {
    throw TokenRefreshError("unknown tokenEndpointAuthMethod \"" + client.method +
                                "\" (client_secret_basic, client_secret_post or private_key_jwt)",
                            false);
  }
}

std::vector<std::pair<std::string, std::string>> parse_custom_token_params(std::string_view params,
                                                                           std::string_view member_id) {
  std::vector<std::pair<std::string, std::string>> fields;
  while (!params.empty()) {
    const auto amp = params.find('&');
    std::string_view item = params.substr(0, amp);
    params.remove_prefix(amp == std::string_view::npos ? params.size() : amp + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) continue;
    const auto equals = item.find('=');
    if (equals == std::string_view::npos) {
      fields.emplace_back(std::string(item), std::string(member_id));
    } else {
      fields.emplace_back(std::string(item.substr(0, equals)), std::string(item.substr(equals + 1)));
    }
  }
  return fields;
}

std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string body;
  for (const auto& [name, value] : fields) {
    if (!body.empty()) body += '&';
    body += encode_component(name) + "=" + encode_component(value);
  }
  return body;
}

boost::asio::awaitable<std::string> discover_token_endpoint(http::HttpClient& client, std::string well_known_url) {
  // Built before co_await: GCC 12 miscompiles braced initializers inside co_await expressions.
  http::ClientRequest get;
  get.url = well_known_url;
  get.headers.emplace_back("Accept", "application/json");
  const auto response = co_await client.send(std::move(get));
  if (response.status != 200) {
    // 429 and 5xx may pass (retried, then the job pauses); any other answer will not change by waiting.
    const bool transient = response.status == 429 || response.status >= 500;
    throw TokenRefreshError("the well-known document " + well_known_url + " answered " + std::to_string(response.status),
                            !transient);
  }
  const auto document = nlohmann::json::parse(response.body, nullptr, false);
  if (!document.is_object() || !document.contains("token_endpoint") || !document["token_endpoint"].is_string()) {
    throw TokenRefreshError("the well-known document " + well_known_url + " has no token_endpoint", true);
  }
  co_return document["token_endpoint"].get<std::string>();
}

boost::asio::awaitable<Tokens> refresh_tokens(http::HttpClient& client, RefreshRequest request) {
  if (request.refresh_token.empty()) {
    throw TokenRefreshError("the access token was refused and the job has no refresh token: the member must sign in "
                            "at the source payer again", true);
  }
  std::vector<std::pair<std::string, std::string>> fields = {{"grant_type", "refresh_token"},
                                                             {"refresh_token", request.refresh_token}};
  for (auto& field : request.extra_parameters) fields.push_back(std::move(field));
  http::ClientRequest post = token_post(request.token_endpoint);
  authenticate_client(request.client, request.token_endpoint, post, fields);
  post.body = form_encode(fields);
  post.idempotent = false;  // the source may rotate the refresh token: a second send would present a spent one
  const auto response = co_await client.send(std::move(post));
  if (response.status == 400 || response.status == 401) {
    const std::string error = oauth_error_of(response.body);
    if (client_refused(error)) {
      throw client_refused_error(response.status, error);  // the refresh token was not used: the job keeps it
    }
    throw TokenRefreshError("the source payer refused to refresh the member's tokens (" +
                                std::to_string(response.status) + " " + error +
                                "): the member must sign in at the source payer again",
                            true);
  }
  if (response.status == 429 || response.status == 503) {
    // Said before doing anything ("too many requests", "unavailable"): the token was not used.
    throw TokenRefreshError("the token endpoint answered " + std::to_string(response.status), false);
  }
  if (response.status != 200) {
    // The request reached the source and may have been carried out (a 500, or a 502/504 from a proxy
    // whose backend rotated the token): sending the same refresh token again could present a spent one.
    throw TokenRefreshError("the token endpoint answered " + std::to_string(response.status) +
                                " to the refresh of the member's tokens; it may have used the refresh token already, so "
                                "it is not sent again: the member must sign in at the source payer again",
                            true);
  }
  co_return read_tokens(response.body);
}

boost::asio::awaitable<Tokens> exchange_authorization_code(http::HttpClient& client, AuthorizationCodeRequest request) {
  std::vector<std::pair<std::string, std::string>> fields = {{"grant_type", "authorization_code"},
                                                             {"code", request.code},
                                                             {"redirect_uri", request.redirect_uri},
                                                             {"code_verifier", request.code_verifier}};
  for (auto& field : request.extra_parameters) fields.push_back(std::move(field));
  http::ClientRequest post = token_post(request.token_endpoint);
  authenticate_client(request.client, request.token_endpoint, post, fields);
  // RFC 6749 4.1.3: a public client (no secret, no key) names itself.
  const bool named = std::any_of(fields.begin(), fields.end(), [](const auto& field) { return field.first == "client_id"; });
  const bool basic = std::any_of(post.headers.begin(), post.headers.end(),
                                 [](const auto& header) { return header.first == "Authorization"; });
  if (!named && !basic && request.client.client_id) fields.emplace_back("client_id", *request.client.client_id);
  post.body = form_encode(fields);
  post.idempotent = false;  // a code is single-use: a second send would be refused, and may revoke the tokens
  const auto response = co_await client.send(std::move(post));
  if (response.status == 400 || response.status == 401) {
    const std::string error = oauth_error_of(response.body);
    if (client_refused(error)) throw client_refused_error(response.status, error);
    throw TokenRefreshError("the source payer refused the member's authorization code (" +
                                std::to_string(response.status) + " " + error.substr(0, 200) + ")",
                            true);
  }
  if (response.status != 200) {
    throw TokenRefreshError("the token endpoint answered " + std::to_string(response.status) +
                                " to the exchange of the member's authorization code",
                            response.status != 429 && response.status < 500);
  }
  co_return read_tokens(response.body);
}

boost::asio::awaitable<Tokens> client_credentials_token(http::HttpClient& client, ClientCredentialsRequest request) {
  std::vector<std::pair<std::string, std::string>> fields = {{"grant_type", "client_credentials"}};
  if (!request.scope.empty()) fields.emplace_back("scope", request.scope);
  http::ClientRequest post = token_post(request.token_endpoint);
  authenticate_client(request.client, request.token_endpoint, post, fields);
  post.body = form_encode(fields);
  post.idempotent = false;  // a client assertion's jti is single-use: a replay would be refused anyway
  const auto response = co_await client.send(std::move(post));
  if (response.status == 400 || response.status == 401) {
    const std::string error = oauth_error_of(response.body);
    if (client_refused(error)) {
      throw client_refused_error(response.status, error);
    }
    // e.g. invalid_scope: asking again changes nothing
    throw TokenRefreshError("the source payer refused the service's client_credentials token request (" +
                                std::to_string(response.status) + " " + error +
                                "): check the OIDC server definition's systemScopes",
                            true);
  }
  if (response.status != 200) {
    // Nothing is spent by asking again (a new assertion, a new jti).
    throw TokenRefreshError("the token endpoint answered " + std::to_string(response.status) +
                                " to the service's client_credentials token request",
                            response.status != 429 && response.status < 500);
  }
  co_return read_tokens(response.body);
}

}  // namespace p2p::oauth

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
