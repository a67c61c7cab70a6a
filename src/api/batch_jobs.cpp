// The batch_job routes are part of the published API contract (docs/openapi.json), but the exchange
// job runner is not in this release yet. They answer 501 with a clear message rather than 404, so
// a portal can tell "not available yet" from "wrong URL". Unknown servers still answer 404.
#include "database_call.hpp"
#include "path_params.hpp"
#include "p2p/api/routes.hpp"
#include "p2p/store/oidc_server_repository.hpp"

namespace p2p::api {

void add_batch_job_routes(http::Router& router, ApiContext context) {
  store::Database& database = context.database;
  auto not_yet = [&database](const http::Request&, const http::PathParams& params) -> http::Response {
    const int pid = parse_positive_id(params, "server_id");
    if (params.contains("batch_job_id")) parse_positive_id(params, "batch_job_id");
    const bool exists = with_database(database, [pid](pqxx::connection& connection) {
      return store::OidcServerRepository(connection).find_public(pid).has_value();
    });
    if (!exists) throw http::ApiError(404, "there is no OIDC server with pid " + std::to_string(pid));
    throw http::ApiError(501, "batch jobs are not available in this release of p2p-exchange yet");
  };
  const http::RouteOptions options{.requires_auth = true, .blocking = true};
  router.add("POST", "/api/oidc_servers/{server_id}/batch_job", not_yet, options);
  router.add("GET", "/api/oidc_servers/{server_id}/batch_job", not_yet, options);
  router.add("GET", "/api/oidc_servers/{server_id}/batch_job/{batch_job_id}", not_yet, options);
  router.add("POST", "/api/oidc_servers/{server_id}/batch_job/{batch_job_id}/cancel", not_yet, options);
}

}  // namespace p2p::api
