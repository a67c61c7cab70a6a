#pragma once
// The exchange job runner: claims batch jobs from PostgreSQL (SKIP LOCKED + a lease it renews), and for
// each pulls the member's Bundles page by page from the source payer, transforms each page and writes
// it to the target FHIR server as one transaction with its Provenance, recording progress after every
// page so a job resumed elsewhere continues where it stopped. A Task on the target tracks each job.
// Runs on its own strand of the service's I/O context; its SQL goes to the blocking pool.
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "p2p/config/config.hpp"
#include "p2p/crypto/signing_keys.hpp"
#include "p2p/crypto/token_cipher.hpp"
#include "p2p/metrics/registry.hpp"
#include "p2p/runtime/runtime.hpp"

namespace p2p::store {
class Database;
}

namespace p2p::jobs {

class JobRunner {
 public:
  // `signing_keys` sign private_key_jwt client assertions (exchange.clientSigningKeys); may be empty.
  JobRunner(const config::ExchangeConfig& config, store::Database& database, const crypto::TokenCipher& cipher,
            const crypto::SigningKeys& signing_keys, std::string instance_id, const runtime::Runtime& runtime, metrics::Registry& registry);
  // Once started, stop() must have completed before the runner is destroyed.
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Claims nothing until `database_ready` is true (migrations applied).
  void start(std::function<bool()> database_ready);
  // Looks for new jobs now instead of at the next poll (called when this instance created one).
  void wake();

  // Stops claiming and stops running jobs at their next step (a pause ends at once, a request in
  // flight first ends); each hands its job back (lease released) and another instance, or this one
  // after a restart, resumes it from the last recorded page. Completes when all of them have ended.
  boost::asio::awaitable<void> stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace p2p::jobs
