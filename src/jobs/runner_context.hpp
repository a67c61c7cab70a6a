#pragma once
// What every part of the job runner shares (private to src/jobs): the configuration, this instance's
// lease-owner name, the one I/O thread the jobs run on, the SQL threads, the outbound HTTP client, the
// retry policy, and the three ways a job's run ends early. Includes Asio: never include it from a
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

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <pqxx/pqxx>

#include "p2p/config/config.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/http/client.hpp"
#include "p2p/log/log.hpp"
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

struct RunnerContext {
  RunnerContext(const config::ExchangeConfig& c, store::Database& d, const crypto::TokenCipher& ci, std::string o);

  const config::ExchangeConfig& config;
  store::Database& database;
  const crypto::TokenCipher& cipher;
  const std::string owner;  // this instance's name in batch_jobs.lease_owner
  boost::asio::io_context io{1};
  boost::asio::thread_pool sql{2};
  std::unique_ptr<http::HttpClient> client;
  std::atomic<bool> stopping{false};
  std::set<long long> lost;  // jobs whose lease renewal failed; touched on the I/O thread only
  std::mt19937_64 random{std::random_device{}()};
  const util::Backoff retry_policy;  // exchange.initialBackoffMilliseconds doubling, equal jitter, maxBackoffSeconds
  std::atomic<std::uint64_t> pages_written{0}, resources_written{0}, completed{0}, failed{0}, stopped{0}, paused{0};

  // Throws JobLeft once the service is stopping or the job's lease was found lost.
  void check_still_ours(long long id) const {
    if (stopping || lost.contains(id)) throw JobLeft();
  }

  // The wait before try `attempt` + 1: Retry-After (seconds) when given, else exponential with equal
  // jitter from exchange.initialBackoffMilliseconds; at most exchange.maxBackoffSeconds either way.
  std::chrono::milliseconds backoff(int attempt, std::optional<std::chrono::seconds> retry_after);

  boost::asio::awaitable<void> sleep_for(std::chrono::milliseconds delay);

  // Runs blocking store work on the SQL threads and resumes on the awaiting coroutine's executor (so
  // its request id too). Plain handlers, not a coroutine lambda. Callers capture strings by reference
  // (the awaiting frame outlives the work): GCC 12 destroys temporaries with non-trivial destructors
  // in a co_await expression twice.
  template <typename Work>
  auto run_sql(Work work) -> boost::asio::awaitable<decltype(work(std::declval<pqxx::connection&>()))> {
    namespace asio = boost::asio;
    using Result = decltype(work(std::declval<pqxx::connection&>()));
    return asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr, Result)>(
        [this, work = std::move(work)](auto handler) mutable {
          auto executor = asio::get_associated_executor(handler, io.get_executor());
          std::string request_id(log::current_request_id());  // the SQL thread logs for the same job
          asio::post(sql, [this, work = std::move(work), handler = std::move(handler), executor,
                           request_id = std::move(request_id)]() mutable {
            log::RequestIdScope scope(request_id);
            std::exception_ptr error;
            Result result{};
            try {
              result = database.with_connection(work);
            } catch (...) {
              error = std::current_exception();
            }
            asio::post(executor, [handler = std::move(handler), error, result = std::move(result)]() mutable {
              std::move(handler)(error, std::move(result));
            });
          });
        },
        asio::use_awaitable);
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
std::string outcome_text(const std::string& body);

// Where a URL points, without its query (which may identify the member).
std::string origin_and_path(const std::string& url);

// Now, as an ISO 8601 UTC instant with milliseconds.
std::string utc_now();

}  // namespace p2p::jobs
