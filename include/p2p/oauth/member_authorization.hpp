#pragma once
// The member connect flow's calls to the source payer: its discovery document (where the member signs
// in, where codes are exchanged, its keys), and at the callback the code exchange with PKCE, the id
// token's verification and the member's Patient id. What the portal is told on failure is a code
// (ConnectFailure::code()); the message is for the log.
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "p2p/http/client.hpp"
#include "p2p/oauth/authorization_request.hpp"
#include "p2p/oauth/token_refresher.hpp"

namespace p2p::oauth {

class ConnectFailure : public std::runtime_error {
 public:
  // `code`: token_exchange_failed, id_token_invalid, patient_unknown or server_error.
  ConnectFailure(std::string code, std::string message) : std::runtime_error(std::move(message)), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// Where the definition's discovery document is: authWellKnown; else the issuer's
// /.well-known/openid-configuration; else (no issuer document) the FHIR endpoint's SMART one.
std::vector<std::string> discovery_urls(const std::optional<std::string>& auth_well_known, const std::string& issuer,
                                        const std::optional<std::string>& fhir_endpoint);

// Reads the first of `urls` that answers 200 with a document read_discovery() accepts and whose
// `issuer`, when it names one, is `issuer` (OpenID Connect Discovery 4.3; compared without trailing
// slashes). Without `allow_plain_http`, its endpoints must be https. Throws ConnectError saying what
// each answered.
boost::asio::awaitable<AuthorizationServer> discover_authorization_server(http::HttpClient& client,
                                                                          std::vector<std::string> urls,
                                                                          std::string issuer, bool allow_plain_http);

struct CodeExchange {
  // Known: token_endpoint and jwks_uri are the ones found when the member was sent to sign in, and the
  // discovery document is not read. Otherwise it is read from discovery_urls.
  bool endpoints_known = false;
  std::vector<std::string> discovery_urls;
  std::optional<std::string> token_endpoint;  // the definition's; else the discovery document's
  std::optional<std::string> jwks_uri;        // endpoints_known: the discovery document's, if it had one
  std::string issuer;                         // the id token's iss must be it
  std::string code;
  std::string redirect_uri;
  std::string code_verifier;
  std::string nonce_hash;
  ClientAuthentication client;
  std::vector<std::pair<std::string, std::string>> extra_parameters;
  std::optional<std::string> jwk_text;  // the payer's key(s) for id tokens; else jwk_file; else jwks_uri
  std::optional<std::string> jwk_file;
  std::string patient_id_claim = "fhirUser";
  bool expect_id_token = false;   // the scope asked for openid: a token response without one is refused
  bool allow_plain_http = false;  // exchange.allowPlainHttp: http:// token and key endpoints (local tests)
};

struct MemberTokens {
  Tokens tokens;
  std::string patient_id;  // at the source
};

// Exchanges the code (once), verifies the id token when one comes back (signature with the payer's
// key, iss, aud, azp, exp, iat, nonce) and finds the member's Patient id. Throws ConnectFailure.
boost::asio::awaitable<MemberTokens> complete_code_exchange(http::HttpClient& client, CodeExchange exchange);

}  // namespace p2p::oauth
