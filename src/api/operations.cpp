// Routes for operators and tools: liveness, readiness, metrics, the OpenAPI document.
#include <nlohmann/json.hpp>

#include "database_call.hpp"
#include "p2p/api/routes.hpp"
#include "p2p/store/bootstrap.hpp"
#include "p2p/store/change_notified_cache.hpp"
#include "p2p/store/migrations.hpp"
#include "p2p/util/embedded_files.hpp"

namespace p2p::api {

void add_operations_routes(http::Router& router, ApiContext context) {
  const http::RouteOptions open{.requires_auth = false};

  router.add("GET", "/healthz",
             [](const http::Request&, const http::PathParams&) {
               return http::Response::json(200, {{"status", "ok"}});
             },
             open);

  router.add("GET", "/readyz",
             [context](const http::Request&, const http::PathParams&) {
               if (!context.bootstrap.done()) {
                 throw http::ApiError(503, "the database is not prepared yet (migrations pending or PostgreSQL "
                                           "unreachable); see the service log");
               }
               const int version = with_database(context.database, [](pqxx::connection& connection) {
                 return store::current_schema_version(connection);
               });
               if (version < store::latest_known_migration()) {
                 throw http::ApiError(503, "the database schema is at version " + std::to_string(version) +
                                               ", this release needs " +
                                               std::to_string(store::latest_known_migration()));
               }
               return http::Response::json(200, {{"status", "ready"}, {"schemaVersion", version}});
             },
             {.requires_auth = false, .blocking = true});

  router.add("GET", "/metrics",
             [context](const http::Request&, const http::PathParams&) {
               return http::Response::text(200, context.metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
             },
             open);

  router.add("GET", "/api/openapi.json",
             [](const http::Request&, const http::PathParams&) {
               return http::Response::text(200, std::string(embedded::openapi_document()), "application/json");
             },
             open);

  // The database pool and the oidc_servers cache, read when /metrics is rendered.
  auto& registry = context.metrics;
  auto& database = context.database;
  auto& cache = context.oidc_server_cache;
  constexpr std::string_view kPool = "p2p_db_pool_connections";
  constexpr std::string_view kPoolHelp = "PostgreSQL connections of the pool, by state.";
  registry.gauge_reader(kPool, kPoolHelp, "state=\"in_use\"", [&database] { return double(database.stats().in_use); });
  registry.gauge_reader(kPool, kPoolHelp, "state=\"open\"", [&database] { return double(database.stats().open); });
  registry.gauge_reader(kPool, kPoolHelp, "state=\"max\"", [&database] { return double(database.stats().size); });
  registry.counter_reader("p2p_db_pool_waits_total", "Times a caller waited for a free connection.", "",
                          [&database] { return double(database.stats().waits); });
  constexpr std::string_view kCache = "p2p_oidc_server_cache_total";
  constexpr std::string_view kCacheHelp =
      "Reads of the oidc_servers routes answered from memory (hit) or PostgreSQL (miss).";
  registry.counter_reader(kCache, kCacheHelp, "result=\"hit\"", [&cache] { return double(cache.hits()); });
  registry.counter_reader(kCache, kCacheHelp, "result=\"miss\"", [&cache] { return double(cache.misses()); });
  registry.gauge_reader("p2p_oidc_server_cache_listening",
                        "1 while the change listener is connected (the cache is in use).", "",
                        [&cache] { return cache.listening() ? 1.0 : 0.0; });
  registry.counter_reader("p2p_db_connection_failures_total", "Connections that could not be made or were lost.", "",
                          [&database] { return double(database.stats().connection_failures); });
}

}  // namespace p2p::api
