#include "p2p/oauth/token_refresher.hpp"

#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <nlohmann/json.hpp>

#include "p2p/crypto/token_cipher.hpp"

namespace p2p::oauth {
namespace {

std::string encode_component(std::string_view text) { return boost::urls::encode(text, boost::urls::unreserved_chars); }

std::string oauth_error_of(const std::string& body) {
  const auto json = nlohmann::json::parse(body, nullptr, false);
  if (!json.is_object()) return "";
  std::string error = json.value("error", "");
  if (json.contains("error_description") && json["error_description"].is_string()) {
    error += (error.empty() ? "" : ": ") + json["error_description"].get<std::string>();
  }
  return error;
}

}  // namespace

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
  http::ClientRequest post{"POST", request.token_endpoint,
                           {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}}, {}};
  if (request.client_id && request.client_secret) {
    // RFC 6749 2.3.1: id and secret are form-encoded before they are joined and base64-encoded.
    post.headers.emplace_back("Authorization",
                              "Basic " + crypto::base64_encode(encode_component(*request.client_id) + ":" +
                                                               encode_component(*request.client_secret)));
  } else if (request.client_id) {
    fields.emplace_back("client_id", *request.client_id);
  }
  post.body = form_encode(fields);
  post.idempotent = false;  // the source may rotate the refresh token: a second send would present a spent one
  const auto response = co_await client.send(std::move(post));
  if (response.status == 400 || response.status == 401) {
    throw TokenRefreshError("the source payer refused to refresh the member's tokens (" +
                                std::to_string(response.status) + " " + oauth_error_of(response.body) +
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
  const auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (!body.is_object() || !body.contains("access_token") || !body["access_token"].is_string()) {
    throw TokenRefreshError("the token endpoint's answer has no access_token", true);
  }
  Tokens tokens{body["access_token"].get<std::string>(), std::nullopt};
  if (body.contains("refresh_token") && body["refresh_token"].is_string()) {
    tokens.refresh_token = body["refresh_token"].get<std::string>();
  }
  co_return tokens;
}

}  // namespace p2p::oauth
