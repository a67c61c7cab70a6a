#pragma once
// OAuth 2.0 for the source payer: finds the token endpoint (from the definition, or its well-known
// document), exchanges the member's refresh token for new tokens (RFC 6749 section 6) with the
// definition's custom token parameters, and gets the service's own access tokens with the
// client_credentials grant (SMART Backend Services). The client authenticates as the definition's
// tokenEndpointAuthMethod says: HTTP Basic, form fields, or a signed JWT (RFC 7523, private_key_jwt).
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "p2p/http/client.hpp"

namespace p2p::crypto {
class SigningKeys;
}

namespace p2p::oauth {

class TokenRefreshError : public std::runtime_error {
 public:
  // `final` is true when retrying cannot help (the refresh token was refused, no refresh token).
  TokenRefreshError(std::string message, bool final) : std::runtime_error(std::move(message)), final_(final) {}
  bool final() const { return final_; }

 private:
  bool final_;
};

// How the service proves who it is to a token endpoint.
struct ClientAuthentication {
  std::string method = "client_secret_basic";  // client_secret_basic, client_secret_post or private_key_jwt
  std::optional<std::string> client_id;
  std::optional<std::string> client_secret;     // the basic and post methods
  const crypto::SigningKeys* signing_keys = nullptr;  // private_key_jwt: signs the client assertion
};

// Adds the client authentication to a token request for `token_endpoint` (the assertion's audience):
// an Authorization header (client_secret_basic; without a secret, client_id as a form field, as for a
// public client), or form fields (client_secret_post: client_id and client_secret; private_key_jwt:
// client_id, client_assertion_type and a client_assertion valid for 4 minutes with a unique jti). Throws TokenRefreshError, not final (an
// admin's to fix: a job pauses and keeps the member's tokens), when the method cannot be used as
// configured.
void authenticate_client(const ClientAuthentication& client, const std::string& token_endpoint,
                         http::ClientRequest& request, std::vector<std::pair<std::string, std::string>>& fields);

struct RefreshRequest {
  std::string token_endpoint;
  std::string refresh_token;
  ClientAuthentication client;
  std::vector<std::pair<std::string, std::string>> extra_parameters;
};

struct Tokens {
  std::string access_token;
  std::optional<std::string> refresh_token;  // absent when the server keeps the old one valid
  std::optional<long long> expires_in;       // seconds, when the server said
  std::optional<std::string> id_token;       // OpenID Connect, when the scope had openid (not verified here)
  std::optional<std::string> patient;        // SMART's launch context: the member's Patient id
};

// The member connect flow's code exchange (RFC 6749 section 4.1.3 with RFC 7636's code_verifier).
struct AuthorizationCodeRequest {
  std::string token_endpoint;
  std::string code;
  std::string redirect_uri;
  std::string code_verifier;
  ClientAuthentication client;
  std::vector<std::pair<std::string, std::string>> extra_parameters;  // the definition's customTokenParams
};

struct ClientCredentialsRequest {
  std::string token_endpoint;
  std::string scope;  // e.g. "system/*.read"; empty: the server's default
  ClientAuthentication client;
};

// "name=value&name2=value2" from the definition's customTokenParams. A bare name ("memberId", as in
// the seed's example) is sent with the member's id at the source as its value.
std::vector<std::pair<std::string, std::string>> parse_custom_token_params(std::string_view params,
                                                                           std::string_view member_id);

// application/x-www-form-urlencoded
std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields);

boost::asio::awaitable<std::string> discover_token_endpoint(http::HttpClient& client, std::string well_known_url);

boost::asio::awaitable<Tokens> refresh_tokens(http::HttpClient& client, RefreshRequest request);

// Exchanges the member's authorization code once (a code is single-use: never sent twice). Throws
// TokenRefreshError (final) with the source's OAuth error when it refuses the code, not final when it
// did not accept the client or answered 429/5xx; transport failures throw FetchError.
boost::asio::awaitable<Tokens> exchange_authorization_code(http::HttpClient& client, AuthorizationCodeRequest request);

// The service's own access token (grant_type=client_credentials; no refresh token: ask again when it
// expires or is refused). Throws TokenRefreshError: final when the server refused the request (400/401,
// e.g. invalid_scope); not final when it did not accept the client (invalid_client,
// unauthorized_client: an admin's to fix) or answered 429/5xx. Transport failures throw FetchError.
boost::asio::awaitable<Tokens> client_credentials_token(http::HttpClient& client, ClientCredentialsRequest request);

}  // namespace p2p::oauth
