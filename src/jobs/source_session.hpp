#pragma once
// One job's session at the source payer: its access token, calls with it, and a new one when the source
// refuses it. Two kinds of session:
//  - member (the seed's flow): the member's tokens, refreshed on 401. A rotated refresh token is never
//    presented twice: the refresh is resent only when it provably never left, and the new tokens are
//    stored before anything else happens (retried through a PostgreSQL outage).
//  - backend (the payer-mediated flow): the service's own access token (client_credentials, SMART
//    Backend Services), kept in memory only, asked for again when it expires or on 401.
// Private to src/jobs.
#include <chrono>
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
  enum class Kind { kMember, kBackend };

  SourceSession(RunnerContext& context, long long job_id, Kind kind, std::string source_patient_id,
                std::string access_token, std::optional<std::string> refresh_token)
      : context_(context),
        job_id_(job_id),
        kind_(kind),
        source_patient_id_(std::move(source_patient_id)),
        access_token_(std::move(access_token)),
        refresh_token_(std::move(refresh_token)) {}

  // The OIDC server definition the job runs for (read once the job starts).
  void set_server(store::OidcServerForExchange server) { server_ = std::move(server); }
  const store::OidcServerForExchange& server() const { return server_; }

  // GETs one page (at most exchange.maxPageBytes), getting new tokens once on 401 and retrying
  // 429/5xx/network. Throws JobFailure (any answer but 200), JobPause or JobLeft. `buffer`, when given:
  // storage (a page read before) whose capacity the body takes over; it is left empty.
  boost::asio::awaitable<http::ClientResponse> fetch(const std::string& url, std::string* buffer = nullptr);

  // Sends `request` with the session's access token (set here), getting a new one once on 401 and
  // retrying 429/5xx/network (exchange.maxAttempts, then JobPause). Returns any other answer, for the
  // caller to read: a 4xx may be an answer of the operation (HRex $member-match's 422). `authorize`
  // false: sent without a token (a bulk export's files when the manifest says they need none).
  boost::asio::awaitable<http::ClientResponse> call(http::ClientRequest request, bool authorize = true);

 private:
  boost::asio::awaitable<void> renew();
  boost::asio::awaitable<void> refresh();
  boost::asio::awaitable<void> renew_backend_token();
  boost::asio::awaitable<std::string> token_endpoint();
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
  Kind kind_;
  std::string source_patient_id_;
  std::string access_token_;
  std::chrono::steady_clock::time_point renew_at_ = std::chrono::steady_clock::time_point::max();  // backend tokens
  std::optional<std::string> refresh_token_;
  store::OidcServerForExchange server_;
  std::optional<std::string> token_endpoint_;  // discovered once, when first needed
};

}  // namespace p2p::jobs
