#include "source_session.hpp"

#include <spdlog/spdlog.h>

#include "p2p/util/url_rules.hpp"
#include "runner_context.hpp"

namespace p2p::jobs {

namespace asio = boost::asio;

asio::awaitable<http::ClientResponse> SourceSession::fetch(const std::string& url) {
  const auto& config = context_.config;
  bool refreshed = false;
  for (int attempt = 1;; ++attempt) {
    context_.check_still_ours(job_id_);
    http::ClientResponse response;
    // Built before co_await: GCC 12 miscompiles braced initializers inside co_await expressions.
    http::ClientRequest get;
    get.url = url;
    get.headers.emplace_back("Authorization", "Bearer " + access_token_);
    get.headers.emplace_back("Accept", "application/fhir+json");
    get.max_response_bytes = config.max_page_bytes;
    bool transport_failed = false;
    try {
      response = co_await context_.client->send(std::move(get));
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
    if (response.status == 200) co_return response;
    if (response.status == 401 && !refreshed) {
      co_await refresh();
      refreshed = true;
      --attempt;
      continue;
    }
    if (is_transient(response.status) && attempt < config.max_attempts) {
      co_await context_.sleep_for(context_.backoff(attempt, retry_after(response)));
      continue;
    }
    const std::string answer = "the source payer answered " + std::to_string(response.status) + " for " +
                               origin_and_path(url) + ": " + outcome_text(response.body);
    if (is_transient(response.status)) throw JobPause(answer);
    throw JobFailure(answer);
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

asio::awaitable<void> SourceSession::refresh() {
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
    } else {
      throw JobFailure("the access token was refused and the OIDC server definition has neither tokenEndpoint nor "
                       "authWellKnown to refresh it");
    }
  }
  require_secure(*token_endpoint_, "the source payer's token endpoint");
  oauth::RefreshRequest request;
  request.token_endpoint = *token_endpoint_;
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
