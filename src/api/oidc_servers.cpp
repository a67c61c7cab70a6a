// GET /api/oidc_servers and GET /api/oidc_servers/{server_id}: the source payers a member can pick.
// Field names and order follow the seed contract; secrets are never selected, so never returned.
#include <nlohmann/json.hpp>

#include "database_call.hpp"
#include "json_body.hpp"
#include "path_params.hpp"
#include "p2p/api/routes.hpp"
#include "p2p/store/change_notified_cache.hpp"
#include "p2p/store/oidc_server_repository.hpp"

namespace p2p::api {
using nlohmann::ordered_json;

ordered_json oidc_server_json(const store::OidcServerPublic& server) {
  return ordered_json{{"pid", server.pid},
                      {"name", server.name},
                      {"issuer", server.issuer},
                      {"clientId", nullable(server.client_id)},
                      {"scopes", nullable(server.scopes)},
                      {"customTokenParams", nullable(server.custom_token_params)},
                      {"authWellKnown", nullable(server.auth_well_known)},
                      {"tokenEndpoint", nullable(server.token_endpoint)},
                      {"fhirEndpoint", nullable(server.fhir_endpoint)},
                      {"responseType", server.response_type},
                      {"organizationId", nullable(server.organization_id)},
                      {"notes", nullable(server.notes)},
                      // After the seed's fields (issue #12): how the service authenticates to the token endpoint.
                      {"tokenEndpointAuthMethod", server.token_endpoint_auth_method},
                      {"systemScopes", nullable(server.system_scopes)},
                      {"patientIdClaim", server.patient_id_claim}};
}

void add_oidc_server_routes(http::Router& router, ApiContext context) {
  store::Database& database = context.database;
  store::ChangeNotifiedCache& cache = context.oidc_server_cache;

  // Both routes answer from the cache on the I/O thread when they can; a miss reads PostgreSQL on the
  // blocking pool and fills the cache (emptied by PostgreSQL's notification of any change).
  http::RouteOptions list_options{.requires_auth = true, .blocking = true};
  list_options.try_inline = [&cache](const http::Request&, const http::PathParams&) -> std::optional<http::Response> {
    if (auto body = cache.get("list")) return json_response(200, std::move(*body));
    return std::nullopt;
  };
  router.add("GET", "/api/oidc_servers",
             [&database, &cache](const http::Request&, const http::PathParams&) {
               const auto generation = cache.generation();
               auto servers = with_database(database, [](pqxx::connection& connection) {
                 return store::OidcServerRepository(connection).list_summaries();
               });
               ordered_json list = ordered_json::array();
               for (const auto& server : servers) list.push_back({{"pid", server.pid}, {"name", server.name}});
               auto body = ordered_json{{"servers", std::move(list)}}.dump();
               cache.put("list", body, generation);
               return json_response(200, std::move(body));
             },
             list_options);

  http::RouteOptions one_options{.requires_auth = true, .blocking = true};
  one_options.try_inline = [&cache](const http::Request&,
                                    const http::PathParams& params) -> std::optional<http::Response> {
    const int pid = parse_positive_id(params, "server_id");
    if (auto body = cache.get("server:" + std::to_string(pid))) {
      return json_response(200, std::move(*body));
    }
    return std::nullopt;
  };
  router.add("GET", "/api/oidc_servers/{server_id}",
             [&database, &cache](const http::Request&, const http::PathParams& params) {
               const int pid = parse_positive_id(params, "server_id");
               const auto generation = cache.generation();
               auto body = oidc_server_json(require_oidc_server(database, pid)).dump();
               cache.put("server:" + std::to_string(pid), body, generation);
               return json_response(200, std::move(body));
             },
             one_options);
}

}  // namespace p2p::api
