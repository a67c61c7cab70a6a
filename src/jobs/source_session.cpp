#include "source_session.hpp"

#include <spdlog/spdlog.h>

#include "p2p/util/text.hpp"
#include "p2p/util/url_rules.hpp"
#include "runner_context.hpp"

namespace p2p::jobs {

namespace asio = boost::asio;

asio::awaitable<http::ClientResponse> SourceSession::fetch(const std::string& url, std::string* buffer) {
  http::ClientRequest get;
  get.url = url;
  if (buffer != nullptr) {
    buffer->clear();  // (its capacity is what counts; a copy of the request copies the text)
    get.response_buffer = std::move(*buffer);
  }
  get.headers.emplace_back("Accept", "application/fhir+json");
  get.max_response_bytes = context_.config.max_page_bytes;
  http::ClientResponse response = co_await call(std::move(get));
  if (response.status == 200) co_return response;
  throw JobFailure("the source payer answered " + std::to_string(response.status) + " for " + origin_and_path(url) +
                   ": " + outcome_text(response.body));
}

asio::awaitable<http::ClientResponse> SourceSession::call(http::ClientRequest request, bool authorize) {
  const auto& config = context_.config;
  const std::string url = request.url;
  bool renewed = false;
  for (int attempt = 1;; ++attempt) {
    context_.check_still_ours(job_id_);
    if (authorize && kind_ == Kind::kBackend && (access_token_.empty() || Clock::now() >= renew_at_)) {
      co_await renew_backend_token();
      renewed = false;  // a token just asked for may still be refused once
    }
    http::ClientResponse response;
    // Built before co_await: GCC 12 miscompiles braced initializers inside co_await expressions.
    http::ClientRequest attempt_request = request;
    attempt_request.response_buffer = std::move(request.response_buffer);  // (the first attempt's)
    if (authorize) attempt_request.headers.emplace_back("Authorization", "Bearer " + access_token_);
    bool transport_failed = false;
    try {
      response = co_await context_.client->send(std::move(attempt_request));
    } catch (const http::FetchError& error) {
      if (error.kind() == http::FetchError::Kind::kHeadersTooLarge) {  // not the page: its headers
        throw JobFailure("cannot read from the source payer at " + origin_and_path(url) + ": " + error.what());
      }
      if (error.kind() == http::FetchError::Kind::kTooLarge) {
        throw JobFailure("the source payer's page at " + origin_and_path(url) + " is larger than exchange.maxPageBytes (" +
                         std::to_string(config.max_page_bytes) + " bytes): ask the source payer for smaller pages, or "
                         "raise exchange.maxPageBytes (memory grows with it)");
      }
      if (attempt >= config.max_attempts) {
        throw JobPause("cannot read from the source payer at " + origin_and_path(url) + ": " + error.what());
      }
      transport_failed = true;  // (no co_await inside a handler)
    }
    if (transport_failed) {
      co_await context_.sleep_for(context_.backoff(attempt, std::nullopt));
      continue;
    }
    if (response.status == 401 && authorize && !renewed) {
      co_await renew();
      renewed = true;
      --attempt;
      continue;
    }
    if (is_transient(response.status) && attempt < config.max_attempts) {
      co_await context_.sleep_for(context_.backoff(attempt, retry_after(response)));
      continue;
    }
    if (is_transient(response.status)) {
      throw JobPause("the source payer answered " + std::to_string(response.status) + " for " + origin_and_path(url) +
                     ": " + outcome_text(response.body));
    }
    co_return response;
  }
}

void SourceSession::require_secure(const std::string& url, const std::string& what) const {
  if (!context_.config.allow_plain_http && util::is_plain_http(url)) {
    throw JobFailure(what + " uses plain http://, which is refused (P2P_ALLOW_PLAIN_HTTP=true allows it for local "
                            "tests only)");
  }
}

template <typename Call>
auto SourceSession::with_token_retries(Call call, const std::string& what, Resend resend) -> decltype(call()) {
  for (int attempt = 1;; ++attempt) {
    std::string transient;
    try {
      co_return co_await call();
    } catch (const oauth::TokenRefreshError& error) {
      if (error.final()) throw JobFailure(error.what());
      transient = error.what();  // the endpoint answered that it failed: nothing was rotated
    } catch (const http::FetchError& error) {
      if (resend == Resend::kOnlyUnsent && !error.unsent()) {
        throw JobFailure(std::string("the answer to the refresh of the member's tokens was lost (") + error.what() +
                         "); the source payer may have rotated the refresh token already, so it is not sent again: "
                         "the member must sign in at the source payer again");
      }
      transient = error.what();
    }
    if (attempt >= context_.config.max_attempts) throw JobPause("cannot " + what + ": " + transient);
    co_await context_.sleep_for(context_.backoff(attempt, std::nullopt));
  }
}

asio::awaitable<void> SourceSession::renew() {
  if (kind_ == Kind::kBackend) {
    co_await renew_backend_token();
  } else {
    co_await refresh();
  }
}

// The token endpoint: the definition's, or its authWellKnown document's, or (the payer flow, SMART
// Backend Services) {fhirEndpoint}/.well-known/smart-configuration's. Discovered once.
asio::awaitable<std::string> SourceSession::token_endpoint() {
  const auto& definition = server_.definition;
  if (!token_endpoint_) {
    if (definition.token_endpoint) {
      token_endpoint_ = *definition.token_endpoint;
    } else if (definition.auth_well_known) {
      require_secure(*definition.auth_well_known, "the OIDC server's authWellKnown");
      const std::string well_known = *definition.auth_well_known;
      const std::string what = "read the source payer's well-known document";  // named: see RunnerContext::run_sql
      token_endpoint_ = co_await with_token_retries(
          [this, &well_known] { return oauth::discover_token_endpoint(*context_.client, well_known); }, what);
    } else if (kind_ == Kind::kBackend && definition.fhir_endpoint) {
      const std::string well_known = util::without_trailing_slashes(*definition.fhir_endpoint) +
                                     "/.well-known/smart-configuration";
      require_secure(well_known, "the source payer's SMART configuration");
      const std::string what = "read the source payer's SMART configuration";  // named: see RunnerContext::run_sql
      token_endpoint_ = co_await with_token_retries(
          [this, &well_known] { return oauth::discover_token_endpoint(*context_.client, well_known); }, what);
    } else {
      throw JobFailure("the access token was refused and the OIDC server definition has neither tokenEndpoint nor "
                       "authWellKnown to refresh it");
    }
  }
  require_secure(*token_endpoint_, "the source payer's token endpoint");
  co_return *token_endpoint_;
}

// The service's own access token at the source (client_credentials, authenticated as the definition
// says: a signed assertion for private_key_jwt). Not stored: a resumed job asks for a new one.
asio::awaitable<void> SourceSession::renew_backend_token() {
  const auto& definition = server_.definition;
  oauth::ClientCredentialsRequest request;
  request.token_endpoint = co_await token_endpoint();
  request.scope = definition.system_scopes.value_or("");
  request.client = {.method = definition.token_endpoint_auth_method,
                    .client_id = definition.client_id,
                    .client_secret = server_.client_secret,
                    .signing_keys = &context_.signing_keys};
  const std::string what = "get this service's access token at the source payer";  // named: see RunnerContext::run_sql
  const oauth::Tokens tokens = co_await with_token_retries(
      [this, &request] { return oauth::client_credentials_token(*context_.client, request); }, what);
  access_token_ = tokens.access_token;
  // Renewed ahead of its expiry (30 s, or half its life when shorter), so a page is not refused midway.
  renew_at_ = std::chrono::steady_clock::time_point::max();
  if (tokens.expires_in && *tokens.expires_in > 0) {
    const long long ahead = std::min<long long>(30, *tokens.expires_in / 2);
    renew_at_ = Clock::now() + std::chrono::seconds(*tokens.expires_in - ahead);
  }
  spdlog::info("job {}: got this service's access token at the source payer{}", job_id_,
               tokens.expires_in ? " (valid " + std::to_string(*tokens.expires_in) + " s)" : std::string());
}

asio::awaitable<void> SourceSession::refresh() {
  const auto& definition = server_.definition;
  oauth::RefreshRequest request;
  request.token_endpoint = co_await token_endpoint();
  request.refresh_token = refresh_token_.value_or("");
  request.client = {.method = definition.token_endpoint_auth_method,
                    .client_id = definition.client_id,
                    .client_secret = server_.client_secret,
                    .signing_keys = &context_.signing_keys};
  request.extra_parameters =
      oauth::parse_custom_token_params(definition.custom_token_params.value_or(""), source_patient_id_);
  const std::string what = "refresh the member's tokens";  // named: see RunnerContext::run_sql
  const oauth::Tokens tokens = co_await with_token_retries(
      [this, &request] { return oauth::refresh_tokens(*context_.client, request); }, what, Resend::kOnlyUnsent);
  access_token_ = tokens.access_token;
  if (tokens.refresh_token) refresh_token_ = tokens.refresh_token;
  co_await store_refreshed_tokens(tokens);
  spdlog::info("job {}: refreshed the member's tokens at the source payer", job_id_);
}

// Stores tokens just refreshed before anything else happens: with rotation the old refresh token is
// spent, so these are the member's only valid ones. Through a database outage they stay in memory
// and the store is retried (the job keeps its place: the lease is fenced by owner, and this instance
// renews it first when PostgreSQL is back), up to exchange.outageToleranceSeconds.
asio::awaitable<void> SourceSession::store_refreshed_tokens(const oauth::Tokens& tokens) {
  const long long id = job_id_;
  const auto& owner = context_.owner;
  const auto give_up_at = Clock::now() + std::chrono::seconds(context_.config.outage_tolerance_seconds);
  for (int attempt = 1;; ++attempt) {
    std::string unavailable;
    try {
      const bool held = co_await context_.on_jobs([id, &owner, &tokens](store::BatchJobRepository& jobs) {
        return jobs.store_tokens(id, owner, tokens.access_token, tokens.refresh_token);
      });
      if (!held) {
        spdlog::error("job {}: another instance took the job over while this one refreshed the member's tokens; "
                      "the refresh token the job holds now is spent, so the job will ask the member to sign in again",
                      id);
        throw JobLeft();
      }
      if (attempt > 1) spdlog::info("job {}: stored the member's refreshed tokens (attempt {})", id, attempt);
      co_return;
    } catch (const store::DatabaseUnavailable& error) {
      unavailable = error.what();
    }
    if (Clock::now() >= give_up_at) {
      throw JobPause("cannot store the member's refreshed tokens (" + unavailable +
                     "); the refresh token stored before is spent, so the member may have to sign in again");
    }
    if (context_.stop.requested() && Clock::now() >= context_.stop_grace_ends) {  // no one to keep them for
      spdlog::error("job {}: the service is stopping and could not store the member's refreshed tokens within its grace "
                    "period ({}); the refresh token stored before is spent, so the member may have to sign in again",
                    id, unavailable);
      throw JobLeft();
    }
    if (attempt == 1 || attempt % 10 == 0) {
      spdlog::warn("job {}: cannot store the member's refreshed tokens yet (attempt {}), keeping them and retrying: {}",
                   id, attempt, unavailable);
    }
    co_await context_.sleep_through_stop(context_.backoff(attempt, std::nullopt));
  }
}

}  // namespace p2p::jobs
