#include "p2p/oauth/authorization_request.hpp"

#include <algorithm>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <nlohmann/json.hpp>

#include "p2p/crypto/signing_keys.hpp"
#include "p2p/util/crypto.hpp"
#include "p2p/util/url_rules.hpp"

namespace p2p::oauth {
namespace {

std::string random_base64url(std::size_t bytes) {
  const std::string hex = util::random_hex(bytes);
  std::string raw(bytes, '\0');
  for (std::size_t i = 0; i < bytes; ++i) raw[i] = static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return crypto::base64url_encode(raw);
}

std::optional<std::string> url_member(const nlohmann::json& document, const char* name, bool required) {
  const auto found = document.find(name);
  if (found == document.end() || found->is_null()) {
    if (required) throw ConnectError(std::string("the discovery document has no ") + name);
    return std::nullopt;
  }
  if (!found->is_string() || util::check_absolute_http_url(found->get<std::string>())) {
    throw ConnectError(std::string("the discovery document's ") + name + " is not an absolute http(s) URL");
  }
  return found->get<std::string>();
}

// Lower-case scheme and host and the port (explicit or the scheme's default): what makes an origin.
struct Origin {
  std::string scheme;
  std::string host;
  std::string port;
  bool operator==(const Origin&) const = default;
};

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::optional<std::pair<Origin, std::string>> origin_and_path(std::string_view text) {
  if (util::check_absolute_http_url(text)) return std::nullopt;
  const auto parsed = boost::urls::parse_absolute_uri(text);
  if (!parsed || parsed->has_fragment() || parsed->has_userinfo()) return std::nullopt;
  Origin origin{lower(parsed->scheme()), lower(parsed->encoded_host()), std::string(parsed->port())};
  if (origin.port.empty()) origin.port = origin.scheme == "https" ? "443" : "80";
  std::string path(parsed->encoded_path());
  if (path.empty()) path = "/";
  return std::make_pair(origin, path);
}

}  // namespace

bool has_scope_starting(std::string_view scopes, std::string_view prefix) {
  while (!scopes.empty()) {
    const auto space = scopes.find(' ');
    if (scopes.substr(0, space).starts_with(prefix)) return true;
    scopes.remove_prefix(space == std::string_view::npos ? scopes.size() : space + 1);
  }
  return false;
}

bool has_scope(std::string_view scopes, std::string_view scope) {
  while (!scopes.empty()) {
    const auto space = scopes.find(' ');
    if (scopes.substr(0, space) == scope) return true;
    scopes.remove_prefix(space == std::string_view::npos ? scopes.size() : space + 1);
  }
  return false;
}

Pkce make_pkce() {
  Pkce pkce;
  pkce.verifier = random_base64url(32);
  pkce.challenge = pkce_s256_challenge(pkce.verifier);
  return pkce;
}

std::string pkce_s256_challenge(std::string_view verifier) {
  const auto digest = util::sha256(verifier);
  return crypto::base64url_encode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

AuthorizationServer read_discovery(const nlohmann::json& document) {
  if (!document.is_object()) throw ConnectError("the discovery document is not a JSON object");
  AuthorizationServer server;
  server.authorization_endpoint = *url_member(document, "authorization_endpoint", true);
  server.token_endpoint = *url_member(document, "token_endpoint", true);
  server.jwks_uri = url_member(document, "jwks_uri", false);
  if (const auto issuer = document.find("issuer"); issuer != document.end() && issuer->is_string()) {
    server.issuer = issuer->get<std::string>();
  }
  server.smart = document.contains("capabilities") && document["capabilities"].is_array();
  return server;
}

std::string authorization_url(const AuthorizationRequest& request) {
  std::vector<std::pair<std::string, std::string>> parameters = {
      {"response_type", request.response_type}, {"client_id", request.client_id},
      {"redirect_uri", request.redirect_uri},   {"scope", request.scope},
      {"state", request.state},                 {"code_challenge", request.code_challenge},
      {"code_challenge_method", "S256"},        {"nonce", request.nonce}};
  if (request.aud) parameters.emplace_back("aud", *request.aud);
  if (has_scope(request.scope, "offline_access")) parameters.emplace_back("prompt", "consent");
  return with_query_parameters(request.authorization_endpoint, parameters);
}

bool return_url_allowed(std::string_view return_url, const std::vector<std::string>& allowed) {
  const auto candidate = origin_and_path(return_url);
  if (!candidate) return false;
  const std::string& path = candidate->second;
  // Dot segments and encoded slashes or dots could climb out of the prefix once a server decodes them.
  const std::string lowered = lower(path);
  if (lowered.find("/./") != std::string::npos || lowered.find("/../") != std::string::npos ||
      lowered.ends_with("/.") || lowered.ends_with("/..") || lowered.find("%2f") != std::string::npos ||
      lowered.find("%2e") != std::string::npos || lowered.find("%5c") != std::string::npos ||
      lowered.find("%25") != std::string::npos ||
      path.find('\\') != std::string::npos) {
    return false;
  }
  for (const auto& entry : allowed) {
    const auto prefix = origin_and_path(entry);
    if (!prefix || prefix->first != candidate->first) continue;
    const std::string& allowed_path = prefix->second;
    if (!path.starts_with(allowed_path)) continue;
    // "/p2p" allows "/p2p", "/p2p/..." and "/p2p?..." but not "/p2pevil".
    if (allowed_path.ends_with('/') || path.size() == allowed_path.size() || path[allowed_path.size()] == '/') {
      return true;
    }
  }
  return false;
}

std::string with_query_parameters(std::string_view url, const std::vector<std::pair<std::string, std::string>>& parameters) {
  const auto hash = url.find('#');
  std::string out(url.substr(0, hash));
  char separator = out.find('?') == std::string::npos ? '?' : '&';
  if (separator == '&' && (out.back() == '?' || out.back() == '&')) separator = '\0';
  for (const auto& [name, value] : parameters) {
    if (separator != '\0') out += separator;
    out += util::query_value(name) + "=" + util::query_value(value);
    separator = '&';
  }
  if (hash != std::string_view::npos) out += url.substr(hash);
  return out;
}

}  // namespace p2p::oauth
