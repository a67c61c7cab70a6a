#pragma once
// Runs store work for a handler and maps an unreachable database to 503, in one place for all routes;
// and the lookup of a source payer by pid that several routes share.
#include "p2p/http/problem.hpp"
#include "p2p/store/database.hpp"
#include "p2p/store/oidc_server_repository.hpp"

namespace p2p::api {

template <typename Work>
auto with_database(store::Database& database, Work&& work) {
  try {
    return database.with_connection(std::forward<Work>(work));
  } catch (const store::DatabaseUnavailable&) {
    throw http::ApiError(503, "the database is unreachable; retry shortly (the service reconnects by itself)",
                         {{"Retry-After", "5"}});
  }
}

// The definition with this pid, or ApiError(404) saying how to list them.
inline store::OidcServerPublic require_oidc_server(store::Database& database, int pid) {
  auto server = with_database(database, [pid](pqxx::connection& connection) {
    return store::OidcServerRepository(connection).find_public(pid);
  });
  if (!server) {
    throw http::ApiError(404, "there is no OIDC server with pid " + std::to_string(pid) + "; GET /api/oidc_servers lists them");
  }
  return std::move(*server);
}

}  // namespace p2p::api
