#include "target_writer.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "p2p/fhir/target_response.hpp"
#include "runner_context.hpp"

namespace p2p::jobs {

using nlohmann::json;

namespace {

// The answer as transaction_response_problem() and update_response_problem() take it: null when empty,
// discarded when not JSON.
json parsed(std::string_view body) { return body.empty() ? json() : json::parse(body, nullptr, false); }

}  // namespace

Verify updated(std::string type, std::string id) {
  return [type = std::move(type), id = std::move(id)](int status, std::string_view content_type, std::string_view body) {
    return fhir::update_response_problem(status, content_type, parsed(body), type, id);
  };
}

Verify transaction_stored(std::size_t entries) {
  return [entries](int status, std::string_view content_type, std::string_view body) -> std::optional<std::string> {
    // Every page's answer: read without a DOM when it is the whole transaction-response it should be.
    if (status == 200 && fhir::transaction_response_is_whole(body, entries)) return std::nullopt;
    return fhir::transaction_response_problem(status, content_type, parsed(body), entries);
  };
}

boost::asio::awaitable<std::string> TargetWriter::send(const std::string& method, const std::string& path, std::string body,
                                                const std::string& what, const Verify& verify, std::string* spent_body) {
  const auto& config = context_.config;
  http::ClientRequest request = context_.target.request(method, path, std::move(body));
  // An update is checked against the resource the target sends back (a transaction's answer is
  // checked by its entries, without the resources).
  if (method == "PUT") request.headers.emplace_back("Prefer", "return=representation");
  for (int attempt = 1;; ++attempt) {
    http::ClientResponse response;
    bool transport_failed = false;
    try {
      response = co_await context_.client->send_borrowed(request);  // (a retry sends the same bytes, uncopied)
    } catch (const http::FetchError& error) {
      if (attempt >= config.max_attempts) {
        throw JobPause("cannot write " + what + " to the target FHIR server: " + error.what());
      }
      transport_failed = true;  // (no co_await inside a handler)
    }
    if (transport_failed) {
      co_await context_.sleep_for(context_.backoff(attempt, std::nullopt));
      continue;
    }
    if (response.status >= 200 && response.status < 300) {
      const auto problem = verify(response.status, response.header("Content-Type").value_or(""), response.body);
      if (!problem) {
        if (spent_body != nullptr) *spent_body = std::move(request.body);
        co_return std::move(response.body);
      }
      if (attempt >= config.max_attempts) {
        throw JobFailure("the target FHIR server did not store " + what + ": " + *problem);
      }
      spdlog::warn("{} not stored by the target (attempt {} of {}): {}", what, attempt, config.max_attempts, *problem);
      co_await context_.sleep_for(context_.backoff(attempt, retry_after(response)));
      continue;
    }
    if (is_transient(response.status) && attempt < config.max_attempts) {
      co_await context_.sleep_for(context_.backoff(attempt, retry_after(response)));
      continue;
    }
    const std::string answer = "the target FHIR server refused " + what + " (" + std::to_string(response.status) +
                               "): " + outcome_text(response.body);
    if (is_transient(response.status)) throw JobPause(answer);
    throw JobFailure(answer);
  }
}

}  // namespace p2p::jobs
