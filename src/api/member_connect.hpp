#pragma once
// The member connect flow's parts its two files share (docs/connect.md): member_connect.cpp has the
// portal's calls (start, complete, read an authorization) and the routes; oauth_callback.cpp has the
// payer's redirect back (GET /oauth/callback) and the service's own pages. Private to src/api.
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "batch_job_creation.hpp"
#include "p2p/config/config.hpp"
#include "p2p/crypto/signing_keys.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/http/message.hpp"

namespace boost::asio {
class thread_pool;
}

namespace p2p::http {
class HttpClient;
}

namespace p2p::store {
class Database;
}

namespace p2p::api::connect_flow {

// What the flow asks for when the definition names no scopes: OpenID Connect (the id token), SMART's
// patient context and read access, and a refresh token for exchanges that outlast the access token.
constexpr const char* kDefaultScopes = "openid fhirUser launch/patient patient/*.read offline_access";
constexpr const char* kCallbackPath = "/oauth/callback";

struct Connect {
  store::Database& database;
  const crypto::TokenCipher& cipher;
  const crypto::SigningKeys& signing_keys;
  const config::ConnectConfig& config;
  http::HttpClient& client;
  boost::asio::thread_pool& blocking;
  BatchJobCreation creation;
};

// 256 bits from the CSPRNG, as hex.
std::string random_token();

// Ends authorization `id` with `error` (blocking: the database).
bool record_failure(Connect& connect, const std::string& id, const std::string& error,
                    std::optional<long long> batch_job_id = std::nullopt);

// GET /oauth/callback (oauth_callback.cpp).
boost::asio::awaitable<http::Response> oauth_callback(const http::Request& request, Connect& connect);

}  // namespace p2p::api::connect_flow
