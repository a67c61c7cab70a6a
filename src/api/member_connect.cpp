// The member connect flow (docs/connect.md): a portal's backend asks for an authorization
// (POST /api/oidc_servers/{server_id}/authorizations) and sends the member's browser to the source
// payer's sign-in page; the payer sends the browser back to GET /oauth/callback, where the service
// exchanges the code with PKCE, verifies the id token, keeps the member's tokens sealed and sends the
// browser on to the portal's returnUrl with a single-use completion code; the portal's backend, having
// checked that this browser is the one that started, completes the authorization with that code
// (POST .../authorizations/{id}/batch_job), which creates the batch job. GET .../authorizations/{id}
// tells the outcome. The state is the callback's only credential: random, single use, 10 minutes,
// stored as a digest; the completion code binds the job to the portal's own session (RFC 6749 10.12).
// This file: the portal's calls. The payer's redirect back: oauth_callback.cpp.
#include <boost/asio/thread_pool.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "batch_job_body.hpp"
#include "batch_job_creation.hpp"
#include "database_call.hpp"
#include "json_body.hpp"
#include "member_connect.hpp"
#include "p2p/api/routes.hpp"
#include "p2p/crypto/signing_keys.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/http/coroutine_handler.hpp"
#include "p2p/oauth/authorization_request.hpp"
#include "p2p/oauth/member_authorization.hpp"
#include "p2p/runtime/run_blocking.hpp"
#include "p2p/store/authorization_repository.hpp"
#include "p2p/store/batch_job_repository.hpp"
#include "p2p/util/crypto.hpp"
#include "p2p/util/url_rules.hpp"
#include "path_params.hpp"

// GCC 12: a false positive of -Wmismatched-new-delete on inlined coroutine frames (see
// oauth/member_authorization.cpp), silenced here only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace p2p::api {

std::string connect_flow::random_token() { return util::random_hex(32); }

bool connect_flow::record_failure(Connect& connect, const std::string& id, const std::string& error,
                                  std::optional<long long> batch_job_id) {
  return with_database(connect.database, [&](pqxx::connection& connection) {
    store::AuthorizationRepository(connection, connect.cipher).fail(id, error, batch_job_id);
    return true;
  });
}

namespace {

using namespace connect_flow;

namespace asio = boost::asio;
using nlohmann::ordered_json;

ordered_json authorization_json(const store::Authorization& authorization) {
  return ordered_json{{"authorizationId", authorization.id},
                      {"status", authorization.status},
                      {"batchJobId", authorization.batch_job_id ? ordered_json(*authorization.batch_job_id)
                                                                : ordered_json(nullptr)},
                      {"error", nullable(authorization.error)},
                      {"expiresAt", authorization.expires_at}};
}

// POST /api/oidc_servers/{server_id}/authorizations
asio::awaitable<http::Response> start(const http::Request& request, const http::PathParams& params, Connect& connect) {
  const int pid = parse_positive_id(params, "server_id");
  const AuthorizationBody body = parse_authorization_body(request.body);
  if (connect.config.public_base_url.empty()) {
    throw http::ApiError(503, "the member connect flow is off: set connect.publicBaseUrl (P2P_CONNECT_PUBLIC_BASE_URL) "
                              "to the URL members' browsers reach this service on");
  }
  if (!oauth::return_url_allowed(body.return_url, connect.config.allowed_return_urls)) {
    throw http::ApiError(400, "returnUrl is not on connect.allowedReturnUrls (P2P_CONNECT_ALLOWED_RETURN_URLS): "
                              "the member's browser is only sent back to the portal pages an admin listed there "
                              "(same scheme, host and port; the path under a listed path)");
  }
  require_target_configured(connect.creation);
  const auto load = [&connect, pid] { return require_oidc_server(connect.database, pid); };
  const store::OidcServerPublic server = co_await runtime::run_blocking(connect.blocking, load);
  check_can_create(connect.creation, server, false);
  const std::string named = "OIDC server " + std::to_string(pid);
  if (!server.client_id) {
    throw http::ApiError(409, named + " has no clientId: the member signs in to the client the source payer "
                                      "registered for this service; an admin must set it");
  }
  if (server.response_type != "code") {
    throw http::ApiError(409, named + "'s responseType is \"" + server.response_type +
                                  "\": the member connect flow needs \"code\" (the authorization code comes back "
                                  "to the service in the callback's query, never in a URL fragment)");
  }
  try {
    (void)fhir::resolve_bundle_request(*server.fhir_endpoint, body.bundle_request.value_or(""), "member");
  } catch (const fhir::SourceUrlError& error) {
    throw http::ApiError(400, std::string("fhirBundleRequest: ") + error.what());
  }
  const auto urls = oauth::discovery_urls(server.auth_well_known, server.issuer, server.fhir_endpoint);
  oauth::AuthorizationServer authorization_server;
  std::string discovery_problem;
  try {
    auto discovered = co_await oauth::discover_authorization_server(connect.client, urls, server.issuer,
                                                                    connect.creation.exchange.allow_plain_http);
    authorization_server = std::move(discovered);
  } catch (const oauth::ConnectError& error) {
    discovery_problem = error.what();
  }
  if (!discovery_problem.empty()) {
    spdlog::warn("member connect: OIDC server {}: {}", pid, discovery_problem);
    throw http::ApiError(502, "the source payer's sign-in page could not be found: " + discovery_problem);
  }

  const oauth::Pkce pkce = oauth::make_pkce();
  store::NewAuthorization row;
  row.server_pid = pid;
  row.state = random_token();
  row.nonce = random_token();
  row.code_verifier = pkce.verifier;
  row.redirect_uri = connect.config.public_base_url + kCallbackPath;
  row.return_url = body.return_url;
  row.target_patient_id = body.target_patient_id;
  row.target_organization_id = body.target_organization_id;
  row.fhir_bundle_request = body.bundle_request;
  row.ttl_seconds = connect.config.authorization_ttl_seconds;
  row.issuer = server.issuer;
  row.client_id = *server.client_id;
  row.scope = server.scopes.value_or(kDefaultScopes);
  row.token_endpoint = server.token_endpoint.value_or(authorization_server.token_endpoint);
  row.jwks_uri = authorization_server.jwks_uri;
  const auto insert = [&connect, &row] {
    return with_database(connect.database, [&](pqxx::connection& connection) {
      return store::AuthorizationRepository(connection, connect.cipher).create(row);
    });
  };
  const store::Authorization created = co_await runtime::run_blocking(connect.blocking, insert);

  oauth::AuthorizationRequest authorize;
  authorize.authorization_endpoint = authorization_server.authorization_endpoint;
  authorize.response_type = server.response_type;
  authorize.client_id = row.client_id;
  authorize.redirect_uri = row.redirect_uri;
  authorize.scope = row.scope;
  authorize.state = row.state;
  authorize.code_challenge = pkce.challenge;
  authorize.nonce = row.nonce;
  // SMART App Launch asks for `aud` (the FHIR endpoint the token is for); OpenID Connect servers ignore it.
  const bool smart_scopes = oauth::has_scope_starting(authorize.scope, "launch") ||
                            oauth::has_scope_starting(authorize.scope, "patient/") ||
                            oauth::has_scope_starting(authorize.scope, "user/");
  if (authorization_server.smart || smart_scopes) authorize.aud = *server.fhir_endpoint;
  spdlog::info("member connect: authorization {} for OIDC server {} made; it expires at {}", created.id, pid,
               created.expires_at);
  auto response = json_response(201, ordered_json{{"authorizationId", created.id},
                                                  {"authorizationUrl", oauth::authorization_url(authorize)},
                                                  {"expiresAt", created.expires_at}});
  response.set_header("Location", "/api/oidc_servers/" + std::to_string(pid) + "/authorizations/" + created.id);
  response.set_header("Cache-Control", "no-store");
  co_return response;
}

// POST /api/oidc_servers/{server_id}/authorizations/{authorization_id}/batch_job
http::Response complete(const http::Request& request, const http::PathParams& params, Connect& connect) {
  const int pid = parse_positive_id(params, "server_id");
  const std::string id = params.find("authorization_id")->second;
  const std::string completion_code = parse_completion_body(request.body);
  const auto completion = with_database(connect.database, [&](pqxx::connection& connection) {
    return store::AuthorizationRepository(connection, connect.cipher)
        .find_completion(pid, id, completion_code, connect.config.authorization_ttl_seconds);
  });
  const std::string named = "authorization " + completion.authorization.id;
  using Kind = store::Completion::Kind;
  switch (completion.kind) {
    case Kind::kUnknown:
      throw http::ApiError(404, "there is no authorization " + (store::is_authorization_id(id) ? id : "with that id") +
                                    " for OIDC server " + std::to_string(pid));
    case Kind::kMismatch:
      throw http::ApiError(409, "the completionCode does not complete " + named + " (it is " +
                                    completion.authorization.status +
                                    "): send the completionCode its callback gave your returnUrl, once the member is "
                                    "back from the source payer");
    case Kind::kExpired:
      throw http::ApiError(409, named + " was not completed within " +
                                    std::to_string(connect.config.authorization_ttl_seconds) +
                                    " seconds of the member's sign-in, and the member's tokens are deleted: the "
                                    "member must start again");
    case Kind::kCompleted: {
      // The same request again (a reload): the job it made, as it is now; or again the member's other
      // exchange that was running.
      const long long job_id = completion.authorization.batch_job_id.value_or(0);
      if (completion.authorization.status == "failed") {
        const std::string location = "/api/oidc_servers/" + std::to_string(pid) + "/batch_job/" + std::to_string(job_id);
        throw http::ApiError(409, named + " found the member's exchange from this source payer to this target patient "
                                          "running: batch job " + std::to_string(job_id) + " (" + location +
                                          "); follow that one",
                             {{"Location", location}});
      }
      const auto job = with_database(connect.database, [&](pqxx::connection& connection) {
        return store::BatchJobRepository(connection, connect.cipher).find(pid, job_id);
      });
      if (!job) throw http::ApiError(409, named + " has ended (" + completion.authorization.error.value_or("completed") + ")");
      return created_job_response(pid, store::CreateOutcome{store::CreateOutcome::Kind::kReplayed, *job}, false);
    }
    case Kind::kUsable:
      break;
  }
  const store::Authorization& authorization = completion.authorization;
  BatchJobBody body;
  body.access_token = completion.access_token;
  body.refresh_token = completion.refresh_token;
  body.source_patient_id = completion.source_patient_id;
  body.target_patient_id = authorization.target_patient_id;
  body.target_organization_id = authorization.target_organization_id;
  body.bundle_request = authorization.fhir_bundle_request;
  store::CreateOutcome outcome{store::CreateOutcome::Kind::kCreated, {}};
  try {
    // Keyed by the authorization: a completion sent twice (or retried after a crash) finds the same job.
    outcome = create_batch_job(connect.creation, pid, body, "member_authorization:" + authorization.id,
                               util::sha256_hex("member_authorization:" + authorization.id));
  } catch (const http::ApiError& error) {
    if (error.status() != 503) record_failure(connect, authorization.id, "job_not_created");  // 503: may come again
    throw;
  }
  if (outcome.kind == store::CreateOutcome::Kind::kKeyReused) {  // cannot be: POST .../batch_job refuses such keys
    record_failure(connect, authorization.id, "job_not_created");
    throw http::ApiError(409, named + ": its idempotency key names another request's job; nothing was started");
  }
  with_database(connect.database, [&](pqxx::connection& connection) {
    store::AuthorizationRepository authorizations(connection, connect.cipher);
    if (outcome.kind == store::CreateOutcome::Kind::kActiveJobExists) {
      authorizations.fail(authorization.id, "exchange_in_progress", outcome.job.id);
    } else {
      authorizations.complete(authorization.id, outcome.job.id);
    }
    return true;
  });
  if (outcome.kind == store::CreateOutcome::Kind::kActiveJobExists) {
    spdlog::info("member connect: {} found the member's batch job {} running; none started", named, outcome.job.id);
  } else {
    spdlog::info("member connect: {} completed: batch job {}", named, outcome.job.id);
  }
  return created_job_response(pid, outcome, false);
}

}  // namespace

void add_member_connect_routes(http::Router& router, ApiContext context) {
  auto connect = std::make_shared<Connect>(Connect{
      context.database, context.token_cipher, context.signing_keys, context.connect, context.outbound_client,
      context.blocking,
      BatchJobCreation{context.database, context.token_cipher, context.signing_keys, context.exchange,
                       context.job_created}});
  router.add("POST", "/api/oidc_servers/{server_id}/authorizations",
             std::make_shared<const http::CoroutineHandler>(http::CoroutineHandler{
                 [connect](const http::Request& request, const http::PathParams& params) {
                   return start(request, params, *connect);
                 }}),
             http::RouteOptions{.requires_auth = true});
  router.add("GET", kCallbackPath,
             std::make_shared<const http::CoroutineHandler>(http::CoroutineHandler{
                 [connect](const http::Request& request, const http::PathParams&) {
                   return oauth_callback(request, *connect);
                 }}),
             http::RouteOptions{.requires_auth = false});
  router.add("POST", "/api/oidc_servers/{server_id}/authorizations/{authorization_id}/batch_job",
             [connect](const http::Request& request, const http::PathParams& params) {
               return complete(request, params, *connect);
             },
             http::RouteOptions{.requires_auth = true, .blocking = true});
  router.add("GET", "/api/oidc_servers/{server_id}/authorizations/{authorization_id}",
             [connect](const http::Request&, const http::PathParams& params) {
               const int pid = parse_positive_id(params, "server_id");
               const std::string id = params.find("authorization_id")->second;
               const auto found = with_database(connect->database, [&](pqxx::connection& connection) {
                 return store::AuthorizationRepository(connection, connect->cipher)
                     .find(pid, id, connect->config.authorization_ttl_seconds);
               });
               if (!found) {
                 throw http::ApiError(404, "there is no authorization " +
                                               (store::is_authorization_id(id) ? id : "with that id") +
                                               " for OIDC server " + std::to_string(pid));
               }
               return json_response(200, authorization_json(*found));
             },
             http::RouteOptions{.requires_auth = true, .blocking = true});
}

}  // namespace p2p::api

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
