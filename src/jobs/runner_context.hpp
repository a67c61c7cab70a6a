#pragma once
// What every part of the job runner shares (private to src/jobs): the configuration, this instance's
// lease-owner name, the strand the jobs run on, the blocking pool for SQL, the stop signal, the
// outbound HTTP client, the retry policy, and the three ways a job's run ends early. Includes Asio: never include it from a
// public header.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <pqxx/pqxx>

#include "p2p/config/config.hpp"
#include "p2p/crypto/signing_keys.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/http/client.hpp"
#include "p2p/http/fhir_endpoint.hpp"
#include "p2p/metrics/registry.hpp"
#include "p2p/runtime/run_blocking.hpp"
#include "p2p/runtime/runtime.hpp"
#include "p2p/runtime/stop_signal.hpp"
#include "p2p/store/batch_job_repository.hpp"
#include "p2p/store/database.hpp"
#include "p2p/util/backoff.hpp"

namespace p2p::jobs {

// A reason to end the job as FAILED, worded for the member portal and the operator.
class JobFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The source, the target or the token endpoint stayed unreachable (or answered 429/5xx) through every
// retry: an outage, not the member's fault. The job is paused (lease given up, tokens kept) and
// resumes by itself, until exchange.outageToleranceSeconds pass without progress.
class JobPause : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The job lost its lease, or the service is stopping: leave it for whoever holds it next.
class JobLeft : public std::runtime_error {
 public:
  JobLeft() : std::runtime_error("left") {}
};

using Clock = std::chrono::steady_clock;

// The runner's counters, declared once in the service's metrics registry.
struct RunnerMetrics {
  explicit RunnerMetrics(metrics::Registry& registry);
  metrics::Counter& pages;      // written to the target by this instance
  metrics::Counter& resources;  // written to the target by this instance
  metrics::Counter& completed;  // jobs ended by this instance, by result
  metrics::Counter& failed;
  metrics::Counter& stopped;
  metrics::Counter& paused;  // times this instance paused a job through an outage
};

struct RunnerContext {
  RunnerContext(const config::ExchangeConfig& c, store::Database& d, const crypto::TokenCipher& ci,
                const crypto::SigningKeys& keys, std::string o,
                const runtime::Runtime& r, metrics::Registry& registry);

  const config::ExchangeConfig& config;
  store::Database& database;
  const crypto::TokenCipher& cipher;
  const crypto::SigningKeys& signing_keys;  // private_key_jwt client assertions to source payers
  const std::string owner;  // this instance's name in batch_jobs.lease_owner
  // Every job, the claim loop and the HTTP client's completions run here, one step at a time: what
  // the runner shares between jobs needs no lock.
  boost::asio::strand<boost::asio::io_context::executor_type> strand;
  boost::asio::thread_pool& blocking;  // the runtime's background pool (not the API's)
  runtime::StopSignal stop;  // requested by JobRunner::stop(): waits end, jobs leave at their next step
  Clock::time_point stop_grace_ends = Clock::time_point::max();  // set by JobRunner::stop(); on the strand only
  std::unique_ptr<http::HttpClient> client;
  const http::FhirEndpoint target;  // exchange.fhirPersistenceUrl with its Authorization
  std::set<long long> lost;  // jobs whose lease renewal failed; on the strand only
  std::mt19937_64 random{std::random_device{}()};
  const util::Backoff retry_policy;  // exchange.initialBackoffMilliseconds doubling, equal jitter, maxBackoffSeconds
  RunnerMetrics metrics;

  // Throws JobLeft once the service is stopping or the job's lease was found lost.
  void check_still_ours(long long id) const {
    if (stop.requested() || lost.contains(id)) throw JobLeft();
  }

  // The wait before try `attempt` + 1: Retry-After (seconds) when given, else exponential with equal
  // jitter from exchange.initialBackoffMilliseconds; at most exchange.maxBackoffSeconds either way.
  std::chrono::milliseconds backoff(int attempt, std::optional<std::chrono::seconds> retry_after);

  // Waits `delay` between tries; throws JobLeft when the service stops meanwhile (at once).
  boost::asio::awaitable<void> sleep_for(std::chrono::milliseconds delay);
  // Waits `delay` between tries of work a stop must not drop (storing rotated tokens): a stop cuts it
  // only to the end of the runner's grace period.
  boost::asio::awaitable<void> sleep_through_stop(std::chrono::milliseconds delay);

  // Runs blocking store work on the background pool (runtime/run_blocking.hpp) with a pooled connection.
  // Callers capture strings by reference and name what they pass: GCC 12 destroys temporaries with
  // non-trivial destructors in a co_await expression twice.
  template <typename Work>
  auto run_sql(Work work) -> boost::asio::awaitable<decltype(work(std::declval<pqxx::connection&>()))> {
    return runtime::run_blocking(blocking, [this, work = std::move(work)]() mutable { return database.with_connection(work); });
  }

  // run_sql with the batch_jobs repository.
  template <typename Work>
  auto on_jobs(Work work) -> boost::asio::awaitable<decltype(work(std::declval<store::BatchJobRepository&>()))> {
    return run_sql([this, work = std::move(work)](pqxx::connection& connection) mutable {
      store::BatchJobRepository jobs(connection, cipher);
      return work(jobs);
    });
  }
};

// A status that says "not now" rather than "no": retried, then the job pauses.
inline bool is_transient(int status) { return status == 429 || status >= 500; }

// Retry-After in seconds, when the answer has one (an HTTP-date is not used: our own backoff is).
std::optional<std::chrono::seconds> retry_after(const http::ClientResponse& response);

// The text of an OperationOutcome (diagnostics or details), or the start of the body; at most ~500 bytes.
// `echo_body` false: never the body itself (an answer to $member-match may echo the member's
// demographics), "(no OperationOutcome)" instead.
std::string outcome_text(const std::string& body, bool echo_body = true);

// Where a URL points, without its query (which may identify the member).
std::string origin_and_path(const std::string& url);

// Now, as an ISO 8601 UTC instant with milliseconds.
std::string utc_now();

}  // namespace p2p::jobs
