#pragma once
// The first half of the member connect flow, pure: what the service sends the member's browser to
// (the source payer's authorization endpoint with PKCE, state and nonce; RFC 6749 section 4.1, RFC
// 7636, OpenID Connect Core 3.1.2.1, SMART App Launch's `aud`), what it reads from the payer's
// discovery document, and where it may send the browser back (the portal's return URL, held to the
// configured allow-list: no open redirect).
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace p2p::oauth {

class ConnectError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// RFC 7636: a verifier of 43 characters (32 random bytes, base64url) and its S256 challenge.
struct Pkce {
  std::string verifier;
  std::string challenge;
};
Pkce make_pkce();
std::string pkce_s256_challenge(std::string_view verifier);

// What a discovery document (OpenID Connect Discovery or SMART's .well-known/smart-configuration)
// says about the authorization server.
struct AuthorizationServer {
  std::string authorization_endpoint;
  std::string token_endpoint;
  std::optional<std::string> jwks_uri;
  std::optional<std::string> issuer;
  bool smart = false;  // the document is SMART's (it lists SMART capabilities): `aud` goes on the request
};
// Throws ConnectError naming what is missing or not an absolute http(s) URL.
AuthorizationServer read_discovery(const nlohmann::json& document);

// Whether the space-separated `scopes` hold `scope` exactly ("openid"), or a scope starting with
// `prefix` ("patient/" for SMART's patient scopes, "launch" for launch and launch/patient).
bool has_scope(std::string_view scopes, std::string_view scope);
bool has_scope_starting(std::string_view scopes, std::string_view prefix);

struct AuthorizationRequest {
  std::string authorization_endpoint;
  std::string response_type;  // the definition's
  std::string client_id;
  std::string redirect_uri;
  std::string scope;          // space-separated
  std::string state;
  std::string code_challenge;  // S256
  std::string nonce;
  std::optional<std::string> aud;  // the FHIR endpoint, for SMART servers
};
// The authorization endpoint with the request's parameters added to its own query (RFC 6749 3.1);
// `prompt=consent` too when the scope asks for offline_access (OpenID Connect Core 11: a refresh token
// for offline access needs the member's explicit consent).
std::string authorization_url(const AuthorizationRequest& request);

// True when `return_url` is an absolute http(s) URL without a fragment or user-info whose origin
// (scheme, host, port) equals one allowed entry's and whose path starts with that entry's path (an
// entry "https://portal.example/p2p/" allows "https://portal.example/p2p/done?x=1" but not
// "https://portal.example/p2pevil" nor "https://portal.example.evil/p2p/"). Paths with dot segments
// or encoded slashes, dots, backslashes or percent signs are refused.
bool return_url_allowed(std::string_view return_url, const std::vector<std::string>& allowed);

// `url` with the parameters added to its query (percent-encoded), before any fragment.
std::string with_query_parameters(std::string_view url, const std::vector<std::pair<std::string, std::string>>& parameters);

}  // namespace p2p::oauth
