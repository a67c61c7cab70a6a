// The member connect flow (docs/connect.md): a portal's backend asks for an authorization
// (POST /api/oidc_servers/{server_id}/authorizations) and sends the member's browser to the source
// payer's sign-in page; the payer sends the browser back to GET /oauth/callback, where the service
// exchanges the code with PKCE, verifies the id token, keeps the member's tokens sealed and sends the
// browser on to the portal's returnUrl with a single-use completion code; the portal's backend, having
// checked that this browser is the one that started, completes the authorization with that code
// (POST .../authorizations/{id}/batch_job), which creates the batch job. GET .../authorizations/{id}
// tells the outcome. The state is the callback's only credential: random, single use, 10 minutes,
// stored as a digest; the completion code binds the job to the portal's own session (RFC 6749 10.12).
#include <boost/asio/thread_pool.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "batch_job_body.hpp"
#include "batch_job_creation.hpp"
#include "database_call.hpp"
#include "json_body.hpp"
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
namespace {

namespace asio = boost::asio;
using nlohmann::ordered_json;

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
  asio::thread_pool& blocking;
  BatchJobCreation creation;
};

// 256 bits from the CSPRNG, as hex.
std::string random_token() { return util::random_hex(32); }

ordered_json authorization_json(const store::Authorization& authorization) {
  return ordered_json{{"authorizationId", authorization.id},
                      {"status", authorization.status},
                      {"batchJobId", authorization.batch_job_id ? ordered_json(*authorization.batch_job_id)
                                                                : ordered_json(nullptr)},
                      {"error", nullable(authorization.error)},
                      {"expiresAt", authorization.expires_at}};
}

// Ends authorization `id` with `error` (blocking: the database).
bool record_failure(Connect& connect, const std::string& id, const std::string& error,
                    std::optional<long long> batch_job_id = std::nullopt) {
  return with_database(connect.database, [&](pqxx::connection& connection) {
    store::AuthorizationRepository(connection, connect.cipher).fail(id, error, batch_job_id);
    return true;
  });
}

oauth::ClientAuthentication client_of(const store::OidcServerForExchange& server, const crypto::SigningKeys& keys) {
  return oauth::ClientAuthentication{server.definition.token_endpoint_auth_method, server.definition.client_id,
                                     server.client_secret, &keys};
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
  const auto insert = [&connect, &row] {
    return with_database(connect.database, [&](pqxx::connection& connection) {
      return store::AuthorizationRepository(connection, connect.cipher).create(row);
    });
  };
  const store::Authorization created = co_await runtime::run_blocking(connect.blocking, insert);

  oauth::AuthorizationRequest authorize;
  authorize.authorization_endpoint = authorization_server.authorization_endpoint;
  authorize.response_type = server.response_type;
  authorize.client_id = *server.client_id;
  authorize.redirect_uri = row.redirect_uri;
  authorize.scope = server.scopes.value_or(kDefaultScopes);
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

// The service's own page, for a callback it cannot send anywhere: fixed text only, nothing of the
// request in it.
http::Response page(int status, const char* title, const char* text) {
  auto response = http::Response::text(
      status,
      std::string("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
                  "content=\"width=device-width, initial-scale=1\"><title>") + title +
          "</title><style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;"
          "line-height:1.5;color:#1a1a1a}h1{font-size:1.5rem}</style></head><body><main><h1>" + title + "</h1>" + text +
          "</main></body></html>\n",
      "text/html; charset=utf-8");
  response.set_header("Cache-Control", "no-store");
  response.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
  response.set_header("Referrer-Policy", "no-referrer");
  return response;
}

// No state, or one that is unknown or used.
http::Response error_page() {
  return page(400, "This sign-in link cannot be used",
              "<p>The link that brought you here is not valid, has already been used, or has expired. Nothing was "
              "copied and none of your information was shared.</p><p>Go back to your new health plan's website and "
              "start the transfer of your records again.</p>");
}

// The database could not be reached: the state was not used, so coming back again can work.
http::Response unavailable_page() {
  auto response = page(503, "Please try again in a minute",
                       "<p>We could not finish connecting your previous health plan just now. Nothing was copied.</p>"
                       "<p>Reload this page in a minute. If it still does not work, go back to your new health "
                       "plan's website and start again.</p>");
  response.set_header("Retry-After", "60");
  return response;
}

// 303 to the portal's returnUrl with the authorization's id and `parameters` in its query.
http::Response back_to_portal(const store::Authorization& authorization,
                              std::vector<std::pair<std::string, std::string>> parameters) {
  parameters.insert(parameters.begin(), {"authorizationId", authorization.id});
  http::Response response = http::Response::text(303, "", "text/plain; charset=utf-8");
  response.set_header("Location", oauth::with_query_parameters(authorization.return_url, parameters));
  response.set_header("Cache-Control", "no-store");
  response.set_header("Referrer-Policy", "no-referrer");
  return response;
}

asio::awaitable<std::pair<std::optional<std::string>, std::optional<std::string>>> finish(
    const http::Request& request, Connect& connect, const store::UsedAuthorization& used);

// GET /oauth/callback
asio::awaitable<http::Response> callback(const http::Request& request, Connect& connect) {
  // A link checker's HEAD must not use the member's one sign-in up.
  if (request.method == "HEAD") co_return page(200, "Connecting your previous health plan", "");
  std::optional<std::string> state;
  try {
    state = request.query_param("state");
    (void)request.query_param("code");  // malformed percent-encoding anywhere is refused here, with the page
    (void)request.query_param("error");
    (void)request.query_param("iss");
  } catch (const http::ApiError&) {
    co_return error_page();
  }
  if (!state || state->empty() || state->size() > 512) co_return error_page();
  const std::string state_value = *state;
  const auto use = [&connect, &state_value] {
    return with_database(connect.database, [&](pqxx::connection& connection) {
      return store::AuthorizationRepository(connection, connect.cipher).use_state(state_value);
    });
  };
  store::UsedAuthorization used;
  bool reached = false;
  try {
    auto found = co_await runtime::run_blocking(connect.blocking, use);
    used = std::move(found);
    reached = true;
  } catch (const std::exception& error) {
    spdlog::error("member connect: a callback could not be handled: {}", error.what());
  }
  if (!reached) co_return unavailable_page();
  if (used.kind == store::UsedAuthorization::Kind::kUnknown) {
    spdlog::warn("member connect: a callback came with a state that is unknown or already used; error page shown");
    co_return error_page();
  }
  // From here on the member is sent back to the portal, whatever happens.
  std::optional<std::string> completion;
  std::optional<std::string> failure;
  try {
    auto outcome = co_await finish(request, connect, used);
    completion = std::move(outcome.first);
    failure = std::move(outcome.second);
  } catch (const std::exception& error) {
    failure = "server_error";
    spdlog::error("member connect: authorization {}: {}", used.authorization.id, error.what());
  }
  const std::string id = used.authorization.id;
  if (failure) {
    const std::string code = *failure;
    const auto record = [&connect, &id, &code] { return record_failure(connect, id, code); };
    try {
      const bool recorded = co_await runtime::run_blocking(connect.blocking, record);
      (void)recorded;
    } catch (const std::exception& error) {
      // The portal still hears the outcome from the redirect; GET .../authorizations says server_error
      // after 5 minutes.
      spdlog::error("member connect: authorization {}: its outcome could not be recorded: {}", id, error.what());
    }
    spdlog::info("member connect: authorization {} failed: {}", id, code);
    co_return back_to_portal(used.authorization, {{"error", code}});
  }
  spdlog::info("member connect: authorization {}: the member signed in; waiting for the portal to complete it", id);
  co_return back_to_portal(used.authorization, {{"completionCode", *completion}});
}

// The callback's work once its authorization is known and used: the payer's answer, the code
// exchange, the member's tokens kept. Returns the completion code or the error code for the portal.
asio::awaitable<std::pair<std::optional<std::string>, std::optional<std::string>>> finish(
    const http::Request& request, Connect& connect, const store::UsedAuthorization& used) {
  using Kind = store::UsedAuthorization::Kind;
  const store::Authorization& authorization = used.authorization;
  std::optional<std::string> failure;
  const auto payer_error = request.query_param("error");
  const auto code = request.query_param("code");
  const auto server_load = [&connect, &authorization] {
    return with_database(connect.database, [&](pqxx::connection& connection) {
      return store::OidcServerRepository(connection).find_for_exchange(authorization.server_pid);
    });
  };
  if (used.kind == Kind::kExpired) {
    failure = "expired";
  } else if (used.kind == Kind::kUnusable) {
    failure = "server_error";
    spdlog::error("member connect: authorization {}: its PKCE verifier does not open with the token keys (was the "
                  "token encryption key replaced instead of retired?)", authorization.id);
  } else if (payer_error) {
    // RFC 6749 4.1.2.1: the member said no, or the payer could not go on. Its description is not shown.
    failure = *payer_error == "access_denied" ? "access_denied" : "authorization_failed";
    // RFC 6749's error codes are lower case and underscores; anything else is not logged as sent.
    const bool plain = payer_error->size() <= 40 && payer_error->find_first_not_of("abcdefghijklmnopqrstuvwxyz_") ==
                                                         std::string::npos;
    spdlog::info("member connect: authorization {}: the source payer answered error \"{}\"", authorization.id,
                 plain ? *payer_error : std::string("(not an OAuth error code)"));
  } else if (!code || code->empty() || code->size() > 4096) {
    failure = "authorization_failed";
    spdlog::warn("member connect: authorization {}: the callback has no code", authorization.id);
  }
  std::optional<store::OidcServerForExchange> server;
  if (!failure) {
    auto loaded = co_await runtime::run_blocking(connect.blocking, server_load);
    server = std::move(loaded);
    if (!server) failure = "server_error";  // the definition was deleted meanwhile
  }
  // RFC 9207: a payer that names itself in the callback must be the one asked.
  const auto iss = request.query_param("iss");
  if (!failure && iss && util::normalize_issuer(*iss) != util::normalize_issuer(server->definition.issuer)) {
    failure = "authorization_failed";
    spdlog::warn("member connect: authorization {}: the callback's iss is not the definition's issuer", authorization.id);
  }
  std::optional<oauth::MemberTokens> member;
  if (!failure) {
    const auto& definition = server->definition;
    oauth::CodeExchange exchange;
    exchange.discovery_urls = oauth::discovery_urls(definition.auth_well_known, definition.issuer, definition.fhir_endpoint);
    exchange.token_endpoint = definition.token_endpoint;
    exchange.issuer = definition.issuer;
    exchange.code = *code;
    exchange.redirect_uri = authorization.redirect_uri;
    exchange.code_verifier = used.code_verifier;
    exchange.nonce_hash = authorization.nonce_hash;
    exchange.client = client_of(*server, connect.signing_keys);
    // Custom parameters with a value; a bare name stands for the member's id, which is not known yet.
    for (auto& [name, value] : oauth::parse_custom_token_params(definition.custom_token_params.value_or(""), "")) {
      if (!value.empty()) exchange.extra_parameters.emplace_back(name, value);
    }
    exchange.jwk_text = server->jwk_text;
    exchange.jwk_file = server->jwk_file;
    exchange.patient_id_claim = definition.patient_id_claim;
    exchange.expect_id_token = oauth::has_scope(definition.scopes.value_or(kDefaultScopes), "openid");
    exchange.allow_plain_http = connect.creation.exchange.allow_plain_http;
    std::string problem;
    try {
      auto tokens = co_await oauth::complete_code_exchange(connect.client, std::move(exchange));
      member = std::move(tokens);
    } catch (const oauth::ConnectFailure& error) {
      failure = error.code();
      problem = error.what();
    } catch (const std::exception& error) {
      failure = "server_error";
      problem = error.what();
    }
    if (failure) spdlog::warn("member connect: authorization {}: {} ({})", authorization.id, problem, *failure);
  }
  std::optional<std::string> completion;
  if (!failure) {
    // The tokens wait, sealed, for the portal's back end: it completes the authorization with this code
    // once it has checked that the browser that came back is the one that started (RFC 6749 10.12).
    const std::string code_for_portal = random_token();
    const auto keep = [&connect, &authorization, &member, &code_for_portal] {
      return with_database(connect.database, [&](pqxx::connection& connection) {
        return store::AuthorizationRepository(connection, connect.cipher)
            .authorize(authorization.id, member->tokens.access_token, member->tokens.refresh_token, member->patient_id,
                       code_for_portal);
      });
    };
    const bool kept = co_await runtime::run_blocking(connect.blocking, keep);
    if (kept) {
      completion = code_for_portal;
    } else {
      failure = "server_error";
    }
  }
  co_return std::make_pair(completion, failure);
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
                 [connect](const http::Request& request, const http::PathParams&) { return callback(request, *connect); }}),
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
