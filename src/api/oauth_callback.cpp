// GET /oauth/callback, the member connect flow's second step (docs/connect.md): the source payer sends
// the member's browser back here. The state is used once, the code exchanged once with the PKCE
// verifier, the id token verified, the member's tokens kept sealed on the authorization, and the browser
// sent on to the portal's returnUrl with a single-use completion code or an error code. What cannot be
// sent to the portal gets the service's own fixed-text page. The portal's calls: member_connect.cpp.
#include <boost/asio/thread_pool.hpp>
#include <spdlog/spdlog.h>

#include "database_call.hpp"
#include "member_connect.hpp"
#include "p2p/crypto/signing_keys.hpp"
#include "p2p/oauth/authorization_request.hpp"
#include "p2p/oauth/member_authorization.hpp"
#include "p2p/runtime/run_blocking.hpp"
#include "p2p/store/authorization_repository.hpp"
#include "p2p/store/oidc_server_repository.hpp"
#include "p2p/util/url_rules.hpp"

// GCC 12: a false positive of -Wmismatched-new-delete on inlined coroutine frames (see
// oauth/member_authorization.cpp), silenced here only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace p2p::api::connect_flow {
namespace {

namespace asio = boost::asio;

oauth::ClientAuthentication client_of(const store::OidcServerForExchange& server, const crypto::SigningKeys& keys) {
  return oauth::ClientAuthentication{server.definition.token_endpoint_auth_method, server.definition.client_id,
                                     server.client_secret, &keys};
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

}  // namespace

// GET /oauth/callback
asio::awaitable<http::Response> oauth_callback(const http::Request& request, Connect& connect) {
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

namespace {

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
  // RFC 9207: a payer that names itself in the callback must be the one asked (the issuer kept when the
  // member was sent to sign in; the definition's for authorizations made before migration 0010).
  const auto iss = request.query_param("iss");
  const std::string asked = authorization.issuer ? *authorization.issuer : (server ? server->definition.issuer : "");
  if (!failure && iss && util::normalize_issuer(*iss) != util::normalize_issuer(asked)) {
    failure = "authorization_failed";
    spdlog::warn("member connect: authorization {}: the callback's iss is not the definition's issuer", authorization.id);
  }
  // The code was issued by the payer the member was sent to, to the client in that URL: a definition
  // whose issuer or clientId changed since (an admin replaced them) cannot use it.
  if (!failure && ((authorization.client_id && server->definition.client_id != authorization.client_id) ||
                   (authorization.issuer && util::normalize_issuer(server->definition.issuer) !=
                                                util::normalize_issuer(*authorization.issuer)))) {
    failure = "token_exchange_failed";
    spdlog::warn("member connect: authorization {}: the definition's issuer or clientId changed while the member "
                 "signed in; the member must start again", authorization.id);
  }
  std::optional<oauth::MemberTokens> member;
  if (!failure) {
    const auto& definition = server->definition;
    oauth::CodeExchange exchange;
    if (authorization.token_endpoint) {  // found when the member was sent to sign in (migration 0010)
      exchange.endpoints_known = true;
      exchange.token_endpoint = authorization.token_endpoint;
      exchange.jwks_uri = authorization.jwks_uri;
    } else {
      exchange.discovery_urls = oauth::discovery_urls(definition.auth_well_known, definition.issuer, definition.fhir_endpoint);
      exchange.token_endpoint = definition.token_endpoint;
    }
    exchange.issuer = authorization.issuer.value_or(definition.issuer);
    exchange.code = *code;
    exchange.redirect_uri = authorization.redirect_uri;
    exchange.code_verifier = used.code_verifier;
    exchange.nonce_hash = authorization.nonce_hash;
    exchange.client = client_of(*server, connect.signing_keys);
    if (authorization.client_id) exchange.client.client_id = authorization.client_id;  // (checked equal above)
    // Custom parameters with a value; a bare name stands for the member's id, which is not known yet.
    for (auto& [name, value] : oauth::parse_custom_token_params(definition.custom_token_params.value_or(""), "")) {
      if (!value.empty()) exchange.extra_parameters.emplace_back(name, value);
    }
    exchange.jwk_text = server->jwk_text;
    exchange.jwk_file = server->jwk_file;
    exchange.patient_id_claim = definition.patient_id_claim;
    exchange.expect_id_token = oauth::has_scope(authorization.scope.value_or(definition.scopes.value_or(kDefaultScopes)), "openid");
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

}  // namespace

}  // namespace p2p::api::connect_flow

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
