#pragma once
// The HTTP API: registers every route on a Router. Handlers are small; the work lives in store/.
#include <filesystem>
#include <functional>

#include "p2p/config/config.hpp"
#include "p2p/crypto/signing_keys.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/metrics/registry.hpp"
#include "p2p/http/router.hpp"

namespace boost::asio {
class thread_pool;
}

namespace p2p::store {
class ChangeNotifiedCache;
class Database;
class DatabaseBootstrap;
}  // namespace p2p::store

namespace p2p::notify {
class Notifier;
}

namespace p2p::http {
class HttpClient;
}

namespace p2p::api {

class SwaggerUi;

struct ApiContext {
  store::Database& database;
  const store::DatabaseBootstrap& bootstrap;
  store::ChangeNotifiedCache& oidc_server_cache;  // response bodies of the oidc_servers routes
  metrics::Registry& metrics;
  const SwaggerUi& swagger_ui;
  const crypto::TokenCipher& token_cipher;
  const crypto::SigningKeys& signing_keys;  // published at /.well-known/jwks.json
  const config::ExchangeConfig& exchange;
  std::function<void()> job_created;  // tells this instance's runner to look for work now
  notify::Notifier& notifier;         // add-payer Task notifications (the hook routes)
  boost::asio::thread_pool& blocking;  // the API's blocking pool, for coroutine routes' database work
  const config::ConnectConfig& connect;  // the member connect flow
  http::HttpClient& outbound_client;     // the API's calls to source payers (the member connect flow)
};

void add_routes(http::Router& router, ApiContext context);

// Each resource registers its own routes.
void add_operations_routes(http::Router& router, ApiContext context);
void add_oidc_server_routes(http::Router& router, ApiContext context);
void add_batch_job_routes(http::Router& router, ApiContext context);
void add_hook_routes(http::Router& router, ApiContext context);
void add_jwks_routes(http::Router& router, ApiContext context);
void add_member_connect_routes(http::Router& router, ApiContext context);

}  // namespace p2p::api
