#include "p2p/jobs/job_runner.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/url/parse.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "p2p/fhir/operation_outcome.hpp"
#include "p2p/fhir/page_transform.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/fhir/target_response.hpp"
#include "p2p/http/client.hpp"
#include "p2p/jobs/tracking_task.hpp"
#include "p2p/log/log.hpp"
#include "p2p/log/request_id_executor.hpp"
#include "p2p/oauth/token_refresher.hpp"
#include "p2p/store/batch_job_repository.hpp"
#include "p2p/store/database.hpp"
#include "p2p/store/oidc_server_repository.hpp"
#include "p2p/util/url_rules.hpp"

namespace p2p::jobs {
namespace {

namespace asio = boost::asio;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

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

std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const auto time = std::chrono::system_clock::to_time_t(now);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&time, &tm);
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  return buffer;
}

// The text of an OperationOutcome (diagnostics or details), or the start of the body.
std::string outcome_text(const std::string& body) {
  const auto outcome = json::parse(body, nullptr, false);
  std::string text;
  if (outcome.is_object() && outcome.contains("issue") && outcome["issue"].is_array()) {
    for (const auto& issue : outcome["issue"]) {
      std::string part = fhir::issue_text(issue);
      if (part.empty()) part = fhir::issue_code(issue);
      if (!part.empty()) text += (text.empty() ? "" : "; ") + part;
    }
  }
  if (text.empty()) text = body.substr(0, 200);
  return text.size() > 500 ? text.substr(0, 500) + "..." : text;
}

// Where a URL points, without its query (which may identify the member).
std::string origin_and_path(const std::string& url) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed) return "(unparseable URL)";
  return std::string(parsed->scheme()) + "://" + std::string(parsed->encoded_host_and_port()) +
         std::string(parsed->encoded_path());
}

// The next page, fetched while the current one is written. Completed by its own coroutine; the job
// waits on `signal` (cancelled on completion). Everything runs on the runner's single I/O thread.
struct Prefetch {
  explicit Prefetch(asio::io_context& io) : signal(io, asio::steady_timer::time_point::max()) {}
  std::string url;
  bool done = false;
  std::exception_ptr error;
  http::ClientResponse response;
  asio::steady_timer signal;
};

struct JobState {
  store::BatchJob job;
  std::string access_token;
  std::optional<std::string> refresh_token;
  store::OidcServerForExchange server;
  std::optional<std::string> token_endpoint;
  std::string task_id;
  int pages = 0;
  int resources = 0;
  std::map<std::string, long long> skipped;  // resources not exchanged, per type, as recorded
  std::vector<std::string> warnings;         // what the source said about its results, as recorded
  std::optional<std::string> source_error;   // the first of them of severity error or fatal
  std::set<std::string> pages_seen;          // page URLs read by this run (a next link back to one is a loop)
};

// A status that says "not now" rather than "no": retried, then the job pauses.
bool is_transient(int status) { return status == 429 || status >= 500; }

// What the target's answer must show for a write to count (fhir/target_response.hpp).
using Verify = std::function<std::optional<std::string>(int status, std::string_view content_type, const json& body)>;

// An update of `type`/`id` counts when the target answers with that resource (or minimally).
Verify updated(std::string type, std::string id) {
  return [type = std::move(type), id = std::move(id)](int status, std::string_view content_type, const json& body) {
    return fhir::update_response_problem(status, content_type, body, type, id);
  };
}

}  // namespace

struct JobRunner::Impl {
  Impl(const config::ExchangeConfig& c, store::Database& d, const crypto::TokenCipher& ci, std::string o,
       http::Metrics& m)
      : config(c), database(d), cipher(ci), owner(std::move(o)), metrics(m) {
    http::ClientOptions options;
    options.verify_tls = config.verify_tls;
    options.ca_file = config.ca_file;
    options.read_timeout_seconds = config.request_timeout_seconds;
    options.max_response_bytes = config.max_response_bytes;
    options.user_agent = std::string("p2p-exchange/") + P2P_VERSION;
    client = std::make_unique<http::HttpClient>(io.get_executor(), options);
  }

  const config::ExchangeConfig& config;
  store::Database& database;
  const crypto::TokenCipher& cipher;
  std::string owner;
  http::Metrics& metrics;
  asio::io_context io{1};
  asio::thread_pool sql{2};
  std::unique_ptr<http::HttpClient> client;
  std::atomic<bool> stopping{false};
  std::thread thread;
  std::set<long long> running;  // touched on the I/O thread only
  std::set<long long> lost;
  std::mt19937_64 random{std::random_device{}()};
  std::atomic<std::uint64_t> pages_written{0}, resources_written{0}, completed{0}, failed{0}, stopped{0}, paused{0};
  std::atomic<int> running_count{0};
  std::function<bool()> database_ready;

  // Runs blocking store work on the SQL threads and resumes on the I/O thread. Plain handlers, not a
  // coroutine lambda. Callers capture strings by reference (the awaiting frame outlives the work):
  // GCC 12 destroys temporaries with non-trivial destructors in a co_await expression twice.
  template <typename Work>
  auto run_sql(Work work) -> asio::awaitable<decltype(work(std::declval<pqxx::connection&>()))> {
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

  template <typename Work>
  auto on_sql(Work work) -> asio::awaitable<decltype(work(std::declval<store::BatchJobRepository&>()))> {
    return run_sql([this, work = std::move(work)](pqxx::connection& connection) mutable {
      store::BatchJobRepository jobs(connection, cipher);
      return work(jobs);
    });
  }

  asio::awaitable<void> sleep_for(std::chrono::milliseconds delay) {
    asio::steady_timer timer(io, delay);
    co_await timer.async_wait(asio::use_awaitable);
  }

  std::chrono::milliseconds backoff(int attempt, std::optional<int> retry_after_seconds) {
    const auto cap = std::chrono::milliseconds(config.max_backoff_seconds * 1000LL);
    if (retry_after_seconds) return std::min(cap, std::chrono::milliseconds(*retry_after_seconds * 1000LL));
    const double base = config.initial_backoff_milliseconds * std::pow(2.0, attempt - 1);
    std::uniform_real_distribution<double> jitter(0.5, 1.0);  // "equal jitter": half fixed, half random
    return std::min(cap, std::chrono::milliseconds(static_cast<long long>(base * jitter(random))));
  }

  static std::optional<int> retry_after(const http::ClientResponse& response) {
    const auto header = response.header("Retry-After");
    if (!header) return std::nullopt;
    try {
      return std::max(0, std::stoi(std::string(*header)));
    } catch (...) {
      return std::nullopt;  // an HTTP-date: use our own backoff
    }
  }

  void check_still_ours(long long id) {
    if (stopping || lost.contains(id)) throw JobLeft();
  }

  // GET one page from the source, refreshing the member's tokens once on 401, retrying 429/5xx/network.
  asio::awaitable<http::ClientResponse> fetch_source(JobState& state, const std::string& url) {
    bool refreshed = false;
    for (int attempt = 1;; ++attempt) {
      check_still_ours(state.job.id);
      http::ClientResponse response;
      // Built before co_await: GCC 12 miscompiles braced initializers inside co_await expressions.
      http::ClientRequest get;
      get.url = url;
      get.headers.emplace_back("Authorization", "Bearer " + state.access_token);
      get.headers.emplace_back("Accept", "application/fhir+json");
      get.max_response_bytes = config.max_page_bytes;
      bool transport_failed = false;
      try {
        response = co_await client->send(std::move(get));
      } catch (const http::FetchError& error) {
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
        co_await sleep_for(backoff(attempt, std::nullopt));
        continue;
      }
      if (response.status == 200) co_return response;
      if (response.status == 401 && !refreshed) {
        co_await refresh_tokens(state);
        refreshed = true;
        --attempt;
        continue;
      }
      if (is_transient(response.status) && attempt < config.max_attempts) {
        co_await sleep_for(backoff(attempt, retry_after(response)));
        continue;
      }
      const std::string answer = "the source payer answered " + std::to_string(response.status) + " for " +
                                 origin_and_path(url) + ": " + outcome_text(response.body);
      if (is_transient(response.status)) throw JobPause(answer);
      throw JobFailure(answer);
    }
  }

  void require_secure(const std::string& url, const std::string& what) const {
    if (!config.allow_plain_http && util::is_plain_http(url)) {
      throw JobFailure(what + " uses plain http://, which is refused (P2P_ALLOW_PLAIN_HTTP=true allows it for local "
                              "tests only)");
    }
  }

  // Whether a failed call may be sent again: a refresh grant only when it provably never left
  // (the token endpoint's answer rotates the refresh token, so a lost answer means a spent token).
  enum class Resend { kAlways, kOnlyUnsent };

  // Runs a token-endpoint call, retrying transport failures and non-final errors (5xx) with backoff.
  template <typename Call>
  auto with_token_retries(Call call, const std::string& what, Resend resend = Resend::kAlways) -> decltype(call()) {
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
      if (attempt >= config.max_attempts) throw JobPause("cannot " + what + ": " + transient);
      co_await sleep_for(backoff(attempt, std::nullopt));
    }
  }

  asio::awaitable<void> refresh_tokens(JobState& state) {
    const auto& definition = state.server.definition;
    if (!state.token_endpoint) {
      if (definition.token_endpoint) {
        state.token_endpoint = *definition.token_endpoint;
      } else if (definition.auth_well_known) {
        require_secure(*definition.auth_well_known, "the OIDC server's authWellKnown");
        const std::string well_known = *definition.auth_well_known;
        state.token_endpoint = co_await with_token_retries(
            [this, &well_known] { return oauth::discover_token_endpoint(*client, well_known); },
            "read the source payer's well-known document");
      } else {
        throw JobFailure("the access token was refused and the OIDC server definition has neither tokenEndpoint nor "
                         "authWellKnown to refresh it");
      }
    }
    require_secure(*state.token_endpoint, "the source payer's token endpoint");
    oauth::RefreshRequest refresh;
    refresh.token_endpoint = *state.token_endpoint;
    refresh.refresh_token = state.refresh_token.value_or("");
    refresh.client_id = definition.client_id;
    refresh.client_secret = state.server.client_secret;
    refresh.extra_parameters =
        oauth::parse_custom_token_params(definition.custom_token_params.value_or(""), state.job.source_patient_id);
    const oauth::Tokens tokens = co_await with_token_retries(
        [this, &refresh] { return oauth::refresh_tokens(*client, refresh); }, "refresh the member's tokens",
        Resend::kOnlyUnsent);
    state.access_token = tokens.access_token;
    if (tokens.refresh_token) state.refresh_token = tokens.refresh_token;
    co_await store_refreshed_tokens(state.job.id, tokens);
    spdlog::info("job {}: refreshed the member's tokens at the source payer", state.job.id);
  }

  // Stores tokens just refreshed before anything else happens: with rotation the old refresh token is
  // spent, so these are the member's only valid ones. Through a database outage they stay in memory
  // and the store is retried (the job keeps its place: the lease is fenced by owner, and this instance
  // renews it first when PostgreSQL is back), up to exchange.outageToleranceSeconds.
  asio::awaitable<void> store_refreshed_tokens(long long id, const oauth::Tokens& tokens) {
    const auto give_up_at = Clock::now() + std::chrono::seconds(config.outage_tolerance_seconds);
    for (int attempt = 1;; ++attempt) {
      std::string unavailable;
      try {
        const bool held = co_await on_sql([this, id, &tokens](store::BatchJobRepository& jobs) {
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
      if (attempt == 1 || attempt % 10 == 0) {
        spdlog::warn("job {}: cannot store the member's refreshed tokens yet (attempt {}), keeping them and retrying: {}",
                     id, attempt, unavailable);
      }
      co_await sleep_for(backoff(attempt, std::nullopt));
    }
  }

  // Sends to the target FHIR server. Only an answer that `verify` accepts counts as written: a 2xx it
  // refuses (a gateway's HTML page, a 202, a batch-response with errors, a short transaction-response)
  // is retried like a 429/5xx/network error; any other 4xx fails the job with what the target said.
  asio::awaitable<json> send_target(const std::string& method, const std::string& path, std::string body,
                                    const std::string& what, const Verify& verify) {
    std::string base = config.fhir_persistence_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    http::ClientRequest request{method, path.empty() ? base : base + "/" + path,
                                {{"Content-Type", "application/fhir+json"}, {"Accept", "application/fhir+json"}},
                                std::move(body)};
    if (!config.fhir_persistence_authorization.empty()) {
      request.headers.emplace_back("Authorization", config.fhir_persistence_authorization);
    }
    // An update is checked against the resource the target sends back (a transaction's answer is
    // checked by its entries, without the resources).
    if (method == "PUT") request.headers.emplace_back("Prefer", "return=representation");
    for (int attempt = 1;; ++attempt) {
      http::ClientResponse response;
      bool transport_failed = false;
      try {
        response = co_await client->send(request);
      } catch (const http::FetchError& error) {
        if (attempt >= config.max_attempts) {
          throw JobPause("cannot write " + what + " to the target FHIR server: " + error.what());
        }
        transport_failed = true;  // (no co_await inside a handler)
      }
      if (transport_failed) {
        co_await sleep_for(backoff(attempt, std::nullopt));
        continue;
      }
      if (response.status >= 200 && response.status < 300) {
        auto parsed = response.body.empty() ? json() : json::parse(response.body, nullptr, false);
        const auto problem = verify(response.status, response.header("Content-Type").value_or(""), parsed);
        if (!problem) co_return parsed;
        if (attempt >= config.max_attempts) {
          throw JobFailure("the target FHIR server did not store " + what + ": " + *problem);
        }
        spdlog::warn("{} not stored by the target (attempt {} of {}): {}", what, attempt, config.max_attempts, *problem);
        co_await sleep_for(backoff(attempt, retry_after(response)));
        continue;
      }
      if (is_transient(response.status) && attempt < config.max_attempts) {
        co_await sleep_for(backoff(attempt, retry_after(response)));
        continue;
      }
      const std::string answer = "the target FHIR server refused " + what + " (" + std::to_string(response.status) +
                                 "): " + outcome_text(response.body);
      if (is_transient(response.status)) throw JobPause(answer);
      throw JobFailure(answer);
    }
  }

  // Waits for a prefetch to complete, whatever its outcome.
  static asio::awaitable<void> settle(const std::shared_ptr<Prefetch>& pending) {
    while (!pending->done) co_await pending->signal.async_wait(asio::as_tuple(asio::use_awaitable));
  }

  // The prefetched page, or its failure rethrown.
  static asio::awaitable<http::ClientResponse> take(std::shared_ptr<Prefetch> pending) {
    co_await settle(pending);
    if (pending->error) std::rethrow_exception(pending->error);
    co_return std::move(pending->response);
  }

  json task_resource(const JobState& state, const std::string& status, const std::optional<std::string>& reason) {
    jobs::TrackingTaskFacts facts;
    facts.task_id = state.task_id;
    facts.job_id = state.job.id;
    facts.exchange_tag_system = config.exchange_tag_system;
    facts.status = status;
    facts.reason = reason;
    facts.target_patient_id = state.job.target_patient_id;
    facts.target_organization_id = state.job.target_organization_id;
    facts.authored_on = state.job.create_time;
    facts.last_modified = utc_now();
    facts.source_payer_name = state.server.definition.name;
    facts.source_request = state.job.first_url;
    facts.pages = state.pages;
    facts.resources = state.resources;
    facts.warnings = state.warnings;
    facts.skipped = state.skipped;
    return tracking_task(facts);
  }

  asio::awaitable<void> put_task(JobState& state, const std::string& status, const std::optional<std::string>& reason) {
    const std::string& id = state.task_id;
    // Named, not built inside the co_await expression (GCC 12 and temporaries there, see run_sql).
    const Verify stored = updated("Task", id);
    std::string task = task_resource(state, status, reason).dump();
    const std::string path = "Task/" + id;
    co_await send_target("PUT", path, std::move(task), "the tracking Task", stored);
  }

  asio::awaitable<void> run_job(store::ClaimedJob claimed) {
    JobState state{claimed.job, std::move(claimed.access_token), std::move(claimed.refresh_token), {}, std::nullopt,
                   claimed.job.task_id.value_or("p2p-batch-job-" + std::to_string(claimed.job.id)),
                   claimed.job.pages_completed, claimed.job.resources_written};
    state.skipped = state.job.resources_skipped;
    state.warnings = state.job.warnings;
    state.source_error = state.job.source_error;
    const long long id = state.job.id;  // (log lines carry "job-<id>": run_job runs on a RequestIdExecutor)
    std::optional<std::string> url = state.job.next_url;
    std::optional<std::string> failure_reason;  // set in a handler, acted on after it (no co_await there)
    std::optional<std::string> pause_reason;
    // When the job last made progress (a page recorded), for exchange.outageToleranceSeconds.
    auto progress_at = Clock::now() - std::chrono::seconds(state.job.seconds_since_progress);
    std::shared_ptr<Prefetch> prefetch;  // in flight or done; it refers to `state`, so it is awaited before leaving
    bool left_on_shutdown = false;
    bool stop_requested = false;
    try {
      const int pid = state.job.server_pid;
      auto server = co_await run_sql(
          [pid](pqxx::connection& connection) { return store::OidcServerRepository(connection).find_for_exchange(pid); });
      if (!server) throw JobFailure("the OIDC server definition pid " + std::to_string(pid) + " no longer exists");
      state.server = std::move(*server);
      const auto& endpoint = state.server.definition.fhir_endpoint;
      if (!endpoint) throw JobFailure("the OIDC server definition has no fhirEndpoint");
      if (config.fhir_persistence_url.empty()) throw JobFailure("exchange.fhirPersistenceUrl is not configured");
      if (!config.allow_plain_http &&
          (util::is_plain_http(*endpoint) || util::is_plain_http(config.fhir_persistence_url))) {
        throw JobFailure("plain http:// endpoints are refused (set P2P_ALLOW_PLAIN_HTTP=true only for local tests)");
      }
      if (state.job.status == store::JobStatus::kStopping) {
        co_await finish(state, store::JobStatus::kStopped, std::nullopt);
        co_return;
      }
      if (!state.job.task_id) {
        co_await put_task(state, "in-progress", std::nullopt);
        const auto task_id = state.task_id;
        co_await on_sql([this, id, &task_id](store::BatchJobRepository& jobs) { return jobs.set_task_id(id, owner, task_id); });
        state.job.task_id = task_id;
      }
      spdlog::info("job {}: running for source payer {} (pid {}), from page {}", id, state.server.definition.name,
                   pid, state.pages + 1);

      fhir::TransformContext context;
      context.source_fhir_endpoint = *endpoint;
      context.target_fhir_endpoint = config.fhir_persistence_url;
      context.source_organization_id = state.server.definition.organization_id.value_or("pid-" + std::to_string(pid));
      context.source_organization_name = state.server.definition.name;
      context.source_patient_id = state.job.source_patient_id;
      context.target_patient_id = state.job.target_patient_id;
      context.traceability_system = config.traceability_system_base + context.source_organization_id;
      context.exchange_tag_system = config.exchange_tag_system;
      context.exchange_tag_code = "batch-job-" + std::to_string(id);
      if (config.resource_types) {
        context.resource_types = {config.resource_types->begin(), config.resource_types->end()};
      }
      if (config.mdm_patient_identifier) {
        context.mdm = fhir::MdmIdentifierType{config.mdm_patient_identifier->system, config.mdm_patient_identifier->code,
                                              config.mdm_patient_identifier->identifier_system};
      }

      // The status comes with each recorded page, so a cancel is seen at the next page boundary without
      // a query of its own.
      store::JobStatus status = state.job.status;
      while (url) {
        check_still_ours(id);
        if (status == store::JobStatus::kStopping) {
          stop_requested = true;
          break;
        }
        if (state.pages >= config.max_pages) {
          throw JobFailure("the source sent more than " + std::to_string(config.max_pages) +
                           " pages (exchange.maxPages); a member's records should not need that many: check the "
                           "source's paging, or raise exchange.maxPages");
        }
        state.pages_seen.insert(*url);
        // The page fetched while the previous one was being written, or fetched now. Its body goes as
        // soon as it is parsed, and the parsed page as soon as it is transformed (memory: one page's
        // DOM at a time, see docs/exchange.md "Limits").
        json page;
        {
          http::ClientResponse response;
          if (prefetch) {
            response = co_await take(prefetch);
            prefetch.reset();
          } else {
            response = co_await fetch_source(state, *url);
          }
          page = json::parse(response.body, nullptr, false);
        }
        if (page.is_discarded()) throw JobFailure("the source payer answered with invalid JSON for " + origin_and_path(*url));
        std::optional<std::string> next;
        if (auto link = fhir::next_link(page)) {
          try {
            next = fhir::require_under_endpoint(*endpoint, *link);
          } catch (const fhir::SourceUrlError& error) {
            throw JobFailure(std::string("stopped following the source's paging: ") + error.what());
          }
          if (state.pages_seen.contains(*next)) {
            throw JobFailure("stopped following the source's paging: the next link of page " +
                             std::to_string(state.pages + 1) + " points back to a page already read (" +
                             origin_and_path(*next) + "); the source's paging loops");
          }
        }
        context.source_page_url = *url;
        context.recorded = utc_now();
        fhir::TransformedPage transformed;
        try {
          transformed = fhir::transform_page(std::move(page), context);
        } catch (const std::invalid_argument& error) {
          throw JobFailure(error.what());
        } catch (const json::exception& error) {
          throw JobFailure("the source's page " + std::to_string(state.pages + 1) + " is not FHIR this service can read (" +
                           error.what() + ")");
        }
        for (const auto& [type, count] : transformed.skipped_types) {
          if (!state.skipped.contains(type)) {  // the job's first of that type (earlier pages are in state.skipped)
            spdlog::warn("job {}: the source sent {} resource(s) of type {}, which is not exchanged "
                         "(exchange.resourceTypes); skipped, and counted in resourcesSkipped",
                         id, count, type);
          }
        }
        for (std::size_t i = 0; i < transformed.warnings.size() && i < 5; ++i) {  // the log is not the store
          spdlog::warn("job {}: page {}: the source says: {}", id, state.pages + 1, transformed.warnings[i]);
        }
        if (transformed.references_replaced > 0) {
          spdlog::info("job {}: page {}: {} reference(s) that would have resolved against the target's own data "
                       "were kept as identifier or display only",
                       id, state.pages + 1, transformed.references_replaced);
        }
        if (next) {
          // Overlap: fetch the next page from the source while this one is written to the target.
          prefetch = std::make_shared<Prefetch>(io);
          prefetch->url = *next;
          // On this job's executor, so its log lines carry the job's id. (Named first: GCC 12 and
          // temporaries in a co_await expression, see run_sql.)
          const auto executor = co_await asio::this_coro::executor;
          asio::co_spawn(executor, fetch_source(state, prefetch->url),
                         [pending = prefetch](std::exception_ptr error, http::ClientResponse fetched) {
                           pending->error = error;
                           pending->response = std::move(fetched);
                           pending->done = true;
                           pending->signal.cancel();
                         });
        }
        if (!transformed.target_references.empty()) {
          const std::string what = "page " + std::to_string(state.pages + 1);
          const std::size_t entries = transformed.transaction["entry"].size();
          const Verify all_stored = [entries](int code, std::string_view content_type, const json& body) {
            return fhir::transaction_response_problem(code, content_type, body, entries);
          };
          const std::string base_path;
          // Serialised, then the transaction's DOM goes (but for the page's Provenance, when it is
          // pointed at the written versions afterwards).
          std::string transaction = transformed.transaction.dump();
          json provenance;
          if (config.versioned_references) provenance = std::move(transformed.transaction["entry"].back()["resource"]);
          transformed.transaction = json();
          const json result = co_await send_target("POST", base_path, std::move(transaction), what, all_stored);
          if (config.versioned_references) {
            const std::string& provenance_id = transformed.provenance_id;
            const Verify stored = updated("Provenance", provenance_id);
            std::string versioned = fhir::versioned_provenance(provenance, result).dump();
            const std::string path = "Provenance/" + provenance_id;
            const std::string provenance_what = "the page's Provenance";
            co_await send_target("PUT", path, std::move(versioned), provenance_what, stored);
          }
        }
        const int written = static_cast<int>(transformed.target_references.size());
        const std::map<std::string, long long> skipped(transformed.skipped_types.begin(), transformed.skipped_types.end());
        const auto& page_warnings = transformed.warnings;
        const auto& page_error = transformed.source_error;
        const auto recorded = co_await on_sql(
            [this, id, &next, written, &skipped, &page_warnings, &page_error](store::BatchJobRepository& jobs) {
              return jobs.record_page(id, owner, next, written, skipped, page_warnings, page_error);
            });
        if (!recorded) throw JobLeft();
        progress_at = Clock::now();
        for (const auto& [type, count] : skipped) state.skipped[type] += count;
        for (const auto& warning : page_warnings) {
          if (state.warnings.size() < 50) state.warnings.push_back(warning);  // as the job keeps them
        }
        if (!state.source_error) state.source_error = page_error;
        status = *recorded;
        ++state.pages;
        state.resources += written;
        ++pages_written;
        resources_written += static_cast<std::uint64_t>(written);
        url = next;
      }
      if (prefetch) co_await settle(prefetch);
      if (!stop_requested && state.source_error) {
        // Every page was written, but the source said its results are not whole: not COMPLETED.
        throw JobFailure("the source reported that its results are not complete (" + *state.source_error +
                         "); every page it sent was written; see warnings");
      }
      co_await finish(state, stop_requested ? store::JobStatus::kStopped : store::JobStatus::kCompleted, std::nullopt);
    } catch (const JobLeft&) {
      left_on_shutdown = stopping.load();
      spdlog::info("job {}: left for the next holder of its lease", id);
    } catch (const JobFailure& failure) {
      failure_reason = failure.what();
    } catch (const JobPause& pause) {
      pause_reason = pause.what();
    } catch (const store::DatabaseUnavailable& error) {
      spdlog::warn("job {}: database unavailable ({}); the job resumes when its lease expires", id, error.what());
    } catch (const std::exception& error) {
      failure_reason = std::string("unexpected error: ") + error.what();
    }
    if (prefetch) co_await settle(prefetch);  // its coroutine refers to this frame's `state`
    if (pause_reason) {
      const auto idle = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - progress_at);
      if (idle.count() >= config.outage_tolerance_seconds) {
        failure_reason = *pause_reason + "; no progress for " + std::to_string(idle.count()) +
                         " s, more than exchange.outageToleranceSeconds (" +
                         std::to_string(config.outage_tolerance_seconds) + " s)";
      } else {
        co_await pause(state, *pause_reason);
      }
    }
    if (failure_reason) co_await fail(state, *failure_reason);
    if (left_on_shutdown) {
      // Hand the job over now rather than when the lease expires.
      co_await on_sql([this, id](store::BatchJobRepository& jobs) { return jobs.release(id, owner); });
    }
  }

  // Gives the job up for exchange.maxBackoffSeconds, keeping its tokens; any instance resumes it then.
  asio::awaitable<void> pause(JobState& state, const std::string& reason) {
    const long long id = state.job.id;
    const auto delay = std::chrono::seconds(config.max_backoff_seconds);
    const std::string shown = "paused: " + reason + " (the job resumes by itself in " + std::to_string(delay.count()) +
                              " s; it fails after exchange.outageToleranceSeconds without progress)";
    spdlog::warn("job {}: {}", id, shown);
    try {
      const bool held = co_await on_sql([this, id, &shown, delay](store::BatchJobRepository& jobs) {
        return jobs.pause(id, owner, shown, delay);
      });
      if (held) ++paused;
    } catch (const std::exception& error) {
      spdlog::warn("job {}: could not record the pause (the job resumes when its lease expires): {}", id, error.what());
    }
  }

  asio::awaitable<void> fail(JobState& state, std::string reason) {
    spdlog::warn("job {}: failed: {}", state.job.id, reason);
    try {
      co_await finish(state, store::JobStatus::kFailed, reason);
    } catch (const std::exception& error) {
      spdlog::error("job {}: could not record the failure (the job resumes when its lease expires): {}", state.job.id,
                    error.what());
    }
  }

  // True while this instance still holds the job's lease (renewing it): checked before the final
  // Task is written, so an instance that lost the job touches neither the target nor the job again.
  asio::awaitable<bool> still_held(long long id) {
    const auto lease = std::chrono::seconds(config.lease_seconds);
    const auto held = co_await on_sql([this, id, lease](store::BatchJobRepository& jobs) {
      return jobs.renew_leases(owner, lease, {id});
    });
    co_return !held.empty();
  }

  asio::awaitable<void> finish(JobState& state, store::JobStatus status, const std::optional<std::string>& reason) {
    const long long id = state.job.id;
    const bool held = co_await still_held(id);
    if (!held) {
      spdlog::info("job {}: another instance holds it now; this one leaves it without a word to the target", id);
      co_return;
    }
    const std::string task_status = status == store::JobStatus::kCompleted ? "completed"
                                    : status == store::JobStatus::kStopped ? "cancelled"
                                                                           : "failed";
    if (!config.fhir_persistence_url.empty() && !state.server.definition.name.empty()) {
      std::optional<std::string> task_error;
      try {
        co_await put_task(state, task_status, reason);
      } catch (const std::exception& error) {
        task_error = error.what();
      }
      if (task_error) {
        spdlog::warn("job {}: could not update the tracking Task: {}", id, *task_error);
      } else if (!state.job.task_id) {
        const auto& task_id = state.task_id;  // the Task exists now, whenever the job ended
        co_await on_sql([this, id, &task_id](store::BatchJobRepository& jobs) { return jobs.set_task_id(id, owner, task_id); });
      }
    }
    const bool ended = co_await on_sql(
        [this, id, status, &reason](store::BatchJobRepository& jobs) { return jobs.finish(id, owner, status, reason); });
    if (!ended) {
      spdlog::warn("job {}: lost its lease while ending as {}; whoever holds it now decides", id, store::to_string(status));
      co_return;
    }
    if (status == store::JobStatus::kCompleted) ++completed;
    if (status == store::JobStatus::kFailed) ++failed;
    if (status == store::JobStatus::kStopped) ++stopped;
    spdlog::info("job {}: {} ({} pages, {} resources)", id, store::to_string(status), state.pages, state.resources);
  }

  asio::steady_timer* claim_timer = nullptr;  // the claim loop's wait; cancelled by wake()

  asio::awaitable<void> claim_loop() {
    const auto lease = std::chrono::seconds(config.lease_seconds);
    auto last_renewal = Clock::now();
    asio::steady_timer timer(io);
    claim_timer = &timer;
    while (!stopping) {
      try {
        if (!database_ready()) {
          timer.expires_after(std::chrono::milliseconds(config.poll_interval_milliseconds));
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
          continue;
        }
        if (Clock::now() - last_renewal > lease / 3 && !running.empty()) {
          const std::vector<long long> ids(running.begin(), running.end());
          const auto held = co_await on_sql(
              [this, lease, &ids](store::BatchJobRepository& jobs) { return jobs.renew_leases(owner, lease, ids); });
          for (long long id : running) {
            if (std::find(held.begin(), held.end(), id) == held.end()) lost.insert(id);
          }
          last_renewal = Clock::now();
        }
        const int free = config.concurrency - static_cast<int>(running.size());
        if (free > 0) {
          auto claimed = co_await on_sql([this, lease, free](store::BatchJobRepository& jobs) { return jobs.claim(owner, lease, free, config.max_claims); });
          for (auto& job : claimed) {
            const long long id = job.job.id;
            running.insert(id);
            running_count = static_cast<int>(running.size());
            const log::RequestIdExecutor job_executor(io.get_executor(), "job-" + std::to_string(id));
            asio::co_spawn(job_executor, run_job(std::move(job)), [this, id](std::exception_ptr) {
              running.erase(id);
              lost.erase(id);
              running_count = static_cast<int>(running.size());
            });
          }
        }
      } catch (const std::exception& error) {
        spdlog::warn("job runner: {}", error.what());
      }
      timer.expires_after(std::chrono::milliseconds(config.poll_interval_milliseconds));
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));  // woken early by wake()
    }
    claim_timer = nullptr;
  }
};

JobRunner::JobRunner(const config::ExchangeConfig& config, store::Database& database, const crypto::TokenCipher& cipher,
                     std::string instance_id, http::Metrics& metrics)
    : impl_(std::make_unique<Impl>(config, database, cipher, std::move(instance_id), metrics)) {
  metrics.add_collector([impl = impl_.get()](std::string& out) {
    out += "# HELP p2p_exchange_pages_total Pages written to the target by this instance.\n";
    out += "# TYPE p2p_exchange_pages_total counter\n";
    out += http::metric_line("p2p_exchange_pages_total", "", static_cast<double>(impl->pages_written.load()));
    out += "# HELP p2p_exchange_resources_total Resources written to the target by this instance.\n";
    out += "# TYPE p2p_exchange_resources_total counter\n";
    out += http::metric_line("p2p_exchange_resources_total", "", static_cast<double>(impl->resources_written.load()));
    out += "# HELP p2p_exchange_jobs_total Jobs ended by this instance, by result.\n";
    out += "# TYPE p2p_exchange_jobs_total counter\n";
    out += http::metric_line("p2p_exchange_jobs_total", "result=\"completed\"", static_cast<double>(impl->completed.load()));
    out += http::metric_line("p2p_exchange_jobs_total", "result=\"failed\"", static_cast<double>(impl->failed.load()));
    out += http::metric_line("p2p_exchange_jobs_total", "result=\"stopped\"", static_cast<double>(impl->stopped.load()));
    out += "# HELP p2p_exchange_jobs_paused_total Times this instance paused a job through an outage.\n";
    out += "# TYPE p2p_exchange_jobs_paused_total counter\n";
    out += http::metric_line("p2p_exchange_jobs_paused_total", "", static_cast<double>(impl->paused.load()));
    out += "# HELP p2p_exchange_jobs_running Jobs running in this instance now.\n";
    out += "# TYPE p2p_exchange_jobs_running gauge\n";
    out += http::metric_line("p2p_exchange_jobs_running", "", impl->running_count.load());
  });
}

JobRunner::~JobRunner() { stop(); }

void JobRunner::start(std::function<bool()> database_ready) {
  impl_->database_ready = std::move(database_ready);
  asio::co_spawn(impl_->io, impl_->claim_loop(), asio::detached);
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

void JobRunner::wake() {
  asio::post(impl_->io, [impl = impl_.get()] {
    if (impl->claim_timer != nullptr) impl->claim_timer->cancel();
  });
}

void JobRunner::stop() {
  if (impl_->stopping.exchange(true)) return;
  if (!impl_->thread.joinable()) return;
  // Running jobs notice `stopping` at their next step (at most one request timeout away) and leave
  // their job for the next lease holder; then the loop ends.
  asio::co_spawn(
      impl_->io,
      [impl = impl_.get()]() -> asio::awaitable<void> {
        const auto deadline = Clock::now() + std::chrono::seconds(impl->config.request_timeout_seconds + 5);
        asio::steady_timer timer(impl->io);
        while (!impl->running.empty() && Clock::now() < deadline) {
          timer.expires_after(std::chrono::milliseconds(20));
          co_await timer.async_wait(asio::use_awaitable);
        }
        if (!impl->running.empty()) {
          spdlog::warn("job runner: {} job(s) still busy at shutdown; their leases will lapse", impl->running.size());
          // Their coroutines still reference the client: keep it alive until the process exits.
          static_cast<void>(impl->client.release());
        }
        impl->io.stop();
      },
      asio::detached);
  impl_->thread.join();
  impl_->sql.join();
}

}  // namespace p2p::jobs
