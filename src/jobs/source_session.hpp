#pragma once
// One job's session at the source payer: the member's tokens, reading pages with them, and refreshing
// them when the source refuses the access token. A rotated refresh token is never presented twice:
// the refresh is resent only when it provably never left, and the new tokens are stored before
// anything else happens (retried through a PostgreSQL outage). Private to src/jobs.
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "p2p/http/client.hpp"
#include "p2p/oauth/token_refresher.hpp"
#include "p2p/store/oidc_server_repository.hpp"

namespace p2p::jobs {

struct RunnerContext;

class SourceSession {
 public:
  SourceSession(RunnerContext& context, long long job_id, std::string source_patient_id, std::string access_token,
                std::optional<std::string> refresh_token)
      : context_(context),
        job_id_(job_id),
        source_patient_id_(std::move(source_patient_id)),
        access_token_(std::move(access_token)),
        refresh_token_(std::move(refresh_token)) {}

  // The OIDC server definition the job runs for (read once the job starts).
  void set_server(store::OidcServerForExchange server) { server_ = std::move(server); }
  const store::OidcServerForExchange& server() const { return server_; }

  // GETs one page (at most exchange.maxPageBytes), refreshing the member's tokens once on 401 and
  // retrying 429/5xx/network. Throws JobFailure, JobPause or JobLeft.
  boost::asio::awaitable<http::ClientResponse> fetch(const std::string& url);

 private:
  boost::asio::awaitable<void> refresh();
  boost::asio::awaitable<void> store_refreshed_tokens(const oauth::Tokens& tokens);
  void require_secure(const std::string& url, const std::string& what) const;

  // Whether a failed call may be sent again: a refresh grant only when it provably never left (the
  // token endpoint's answer rotates the refresh token, so a lost answer means a spent token).
  enum class Resend { kAlways, kOnlyUnsent };

  // Runs a token-endpoint call, retrying transport failures and non-final errors with backoff.
  template <typename Call>
  auto with_token_retries(Call call, const std::string& what, Resend resend = Resend::kAlways) -> decltype(call());

  RunnerContext& context_;
  long long job_id_;
  std::string source_patient_id_;
  std::string access_token_;
  std::optional<std::string> refresh_token_;
  store::OidcServerForExchange server_;
  std::optional<std::string> token_endpoint_;  // discovered once, when first needed
};

}  // namespace p2p::jobs
