// GET /api/oidc_servers and GET /api/oidc_servers/{server_id}: the source payers a member can pick.
// Field names and order follow the seed contract; secrets are never selected, so never returned.
#include <nlohmann/json.hpp>

#include "database_call.hpp"
#include "path_params.hpp"
#include "p2p/api/routes.hpp"
#include "p2p/store/oidc_server_repository.hpp"

namespace p2p::api {
namespace {

using nlohmann::ordered_json;

ordered_json nullable(const std::optional<std::string>& value) {
  return value ? ordered_json(*value) : ordered_json(nullptr);
}

http::Response json_response(int status, const ordered_json& body) {
  return http::Response::text(status, body.dump(), "application/json");
}

}  // namespace

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
                      {"notes", nullable(server.notes)}};
}

void add_oidc_server_routes(http::Router& router, ApiContext context) {
  const http::RouteOptions options{.requires_auth = true, .blocking = true};
  store::Database& database = context.database;

  router.add("GET", "/api/oidc_servers",
             [&database](const http::Request&, const http::PathParams&) {
               auto servers = with_database(database, [](pqxx::connection& connection) {
                 return store::OidcServerRepository(connection).list_summaries();
               });
               ordered_json list = ordered_json::array();
               for (const auto& server : servers) list.push_back({{"pid", server.pid}, {"name", server.name}});
               return json_response(200, ordered_json{{"servers", std::move(list)}});
             },
             options);

  router.add("GET", "/api/oidc_servers/{server_id}",
             [&database](const http::Request&, const http::PathParams& params) {
               const int pid = parse_positive_id(params, "server_id");
               auto server = with_database(database, [pid](pqxx::connection& connection) {
                 return store::OidcServerRepository(connection).find_public(pid);
               });
               if (!server) {
                 throw http::ApiError(404, "there is no OIDC server with pid " + std::to_string(pid) +
                                               "; GET /api/oidc_servers lists them");
               }
               return json_response(200, oidc_server_json(*server));
             },
             options);
}

}  // namespace p2p::api
