#pragma once
// OAuth 2.0 for the source payer: finds the token endpoint (from the definition, or its well-known
// document) and exchanges the member's refresh token for new tokens (RFC 6749 section 6) with the
// definition's client credentials and custom token parameters.
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "p2p/http/client.hpp"

namespace p2p::oauth {

class TokenRefreshError : public std::runtime_error {
 public:
  // `final` is true when retrying cannot help (the refresh token was refused, no refresh token).
  TokenRefreshError(std::string message, bool final) : std::runtime_error(std::move(message)), final_(final) {}
  bool final() const { return final_; }

 private:
  bool final_;
};

struct RefreshRequest {
  std::string token_endpoint;
  std::string refresh_token;
  std::optional<std::string> client_id;
  std::optional<std::string> client_secret;
  std::vector<std::pair<std::string, std::string>> extra_parameters;
};

struct Tokens {
  std::string access_token;
  std::optional<std::string> refresh_token;  // absent when the server keeps the old one valid
};

// "name=value&name2=value2" from the definition's customTokenParams. A bare name ("memberId", as in
// the seed's example) is sent with the member's id at the source as its value.
std::vector<std::pair<std::string, std::string>> parse_custom_token_params(std::string_view params,
                                                                           std::string_view member_id);

// application/x-www-form-urlencoded
std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields);

boost::asio::awaitable<std::string> discover_token_endpoint(http::HttpClient& client, std::string well_known_url);

boost::asio::awaitable<Tokens> refresh_tokens(http::HttpClient& client, RefreshRequest request);

}  // namespace p2p::oauth
