#pragma once
// Writes to the target FHIR server (exchange.fhirPersistenceUrl) and owns what counts as written: only
// an answer that the caller's Verify accepts (fhir/target_response.hpp) does. A 2xx it refuses (a
// gateway's HTML page, a 202, a batch-response with errors, a short transaction-response) is retried
// like a 429/5xx/network error; when the tries are used up on those the job pauses (an outage) or
// fails (the target keeps answering without storing); any other 4xx fails the job with what the
// target said. Private to src/jobs.
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

namespace p2p::jobs {

struct RunnerContext;

// Whether the target's answer (its status, Content-Type and body as sent) shows the write stored:
// nothing when it does, else what is wrong.
using Verify = std::function<std::optional<std::string>(int status, std::string_view content_type, std::string_view body)>;

// An update of `type`/`id` counts when the target answers with that resource (or minimally).
Verify updated(std::string type, std::string id);

// A transaction of `entries` entries counts when the answer is a transaction-response with one 2xx
// entry per request.
Verify transaction_stored(std::size_t entries);

class TargetWriter {
 public:
  explicit TargetWriter(RunnerContext& context) : context_(context) {}

  // Sends `body` (serialised FHIR JSON) with `method` to `path` under the target's base ("" = the base
  // itself, for a transaction) and returns the answer's body once `verify` accepts it. `what` names the
  // write in errors ("page 3", "the tracking Task"). Throws JobPause or JobFailure. `spent_body`, when
  // given, receives `body` back once it is stored (for its capacity: the next page's transaction).
  boost::asio::awaitable<std::string> send(const std::string& method, const std::string& path, std::string body,
                                              const std::string& what, const Verify& verify,
                                              std::string* spent_body = nullptr);

 private:
  RunnerContext& context_;
};

}  // namespace p2p::jobs
