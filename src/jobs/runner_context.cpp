#include "runner_context.hpp"

#include <ctime>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/url/parse.hpp>
#include <nlohmann/json.hpp>

#include "p2p/fhir/operation_outcome.hpp"
#include "p2p/util/time.hpp"

namespace p2p::jobs {

namespace asio = boost::asio;
using nlohmann::json;

namespace {
constexpr std::string_view kJobsHelp = "Jobs ended by this instance, by result.";
}  // namespace

RunnerContext::RunnerContext(const config::ExchangeConfig& c, store::Database& d, const crypto::TokenCipher& ci,
                             const crypto::SigningKeys& keys, std::string o, const runtime::Runtime& r, metrics::Registry& registry)
    : config(c),
      database(d),
      cipher(ci),
      signing_keys(keys),
      owner(std::move(o)),
      strand(asio::make_strand(r.exchange)),
      blocking(r.background),
      stop(strand),
      target(c.fhir_persistence_url, c.fhir_persistence_authorization),
      retry_policy{.initial = std::chrono::milliseconds(c.initial_backoff_milliseconds),
                   .cap = std::chrono::seconds(c.max_backoff_seconds),
                   .jitter_low = 0.5,  // "equal jitter": half fixed, half random
                   .jitter_high = 1.0},
      metrics(registry) {
  http::ClientOptions options;
  options.verify_tls = config.verify_tls;
  options.ca_file = config.ca_file;
  options.read_timeout_seconds = config.request_timeout_seconds;
  options.max_response_bytes = config.max_response_bytes;
  options.user_agent = std::string("p2p-exchange/") + P2P_VERSION;
  client = std::make_unique<http::HttpClient>(strand, options);
}

asio::awaitable<void> RunnerContext::sleep_through_stop(std::chrono::milliseconds delay) {
  const auto until = Clock::now() + delay;
  const bool slept = co_await stop.sleep_for(delay);
  if (slept) co_return;
  asio::steady_timer timer(strand, std::min(until, stop_grace_ends));
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
}

RunnerMetrics::RunnerMetrics(metrics::Registry& registry)
    : pages(registry.counter("p2p_exchange_pages_total", "Pages written to the target by this instance.")),
      resources(registry.counter("p2p_exchange_resources_total", "Resources written to the target by this instance.")),
      completed(registry.counter("p2p_exchange_jobs_total", kJobsHelp, "result=\"completed\"")),
      failed(registry.counter("p2p_exchange_jobs_total", kJobsHelp, "result=\"failed\"")),
      stopped(registry.counter("p2p_exchange_jobs_total", kJobsHelp, "result=\"stopped\"")),
      paused(registry.counter("p2p_exchange_jobs_paused_total", "Times this instance paused a job through an outage.")) {}

std::chrono::milliseconds RunnerContext::backoff(int attempt, std::optional<std::chrono::seconds> retry_after) {
  return retry_policy.delay(attempt, random, retry_after);
}

asio::awaitable<void> RunnerContext::sleep_for(std::chrono::milliseconds delay) {
  const bool slept = co_await stop.sleep_for(delay);  // (GCC 12 miscompiles a co_await in an if condition)
  if (!slept) throw JobLeft();
}

std::optional<std::chrono::seconds> retry_after(const http::ClientResponse& response) {
  const auto header = response.header("Retry-After");
  if (!header) return std::nullopt;
  try {
    return std::chrono::seconds(std::max(0, std::stoi(std::string(*header))));
  } catch (...) {
    return std::nullopt;  // an HTTP-date: use our own backoff
  }
}

std::string outcome_text(const std::string& body, bool echo_body) {
  const auto outcome = json::parse(body, nullptr, false);
  std::string text;
  if (outcome.is_object() && outcome.contains("issue") && outcome["issue"].is_array()) {
    for (const auto& issue : outcome["issue"]) {
      std::string part = fhir::issue_text(issue);
      if (part.empty()) part = fhir::issue_code(issue);
      if (!part.empty()) text += (text.empty() ? "" : "; ") + part;
    }
  }
  if (text.empty()) text = echo_body ? body.substr(0, 200) : "(no OperationOutcome)";
  return text.size() > 500 ? text.substr(0, 500) + "..." : text;
}

std::string origin_and_path(const std::string& url) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed) return "(unparseable URL)";
  return std::string(parsed->scheme()) + "://" + std::string(parsed->encoded_host_and_port()) +
         std::string(parsed->encoded_path());
}

std::string utc_now() { return util::iso8601_utc(std::chrono::system_clock::now(), true); }

}  // namespace p2p::jobs
