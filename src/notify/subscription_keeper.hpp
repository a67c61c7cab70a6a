#pragma once
// The Subscription keeper: at start and every notifications.subscriptionCheckSeconds, makes sure the
// FHIR server holds the add-payer Subscription as configured (writes it when missing or different) and
// deletes stray copies with our tag; retries with the keeper's backoff while the server is away. A
// coroutine on the notifier's strand (notifier.cpp owns it); Asio-dependent, internal to notify.
#include <random>

#include <boost/asio/awaitable.hpp>

#include "p2p/config/config.hpp"
#include "p2p/http/client.hpp"
#include "p2p/http/fhir_endpoint.hpp"
#include "p2p/runtime/stop_signal.hpp"

namespace p2p::notify {

class SubscriptionKeeper {
 public:
  // `client` is the notifier's, on its strand; `stop` ends the pause between checks.
  SubscriptionKeeper(const config::NotificationsConfig& config, http::HttpClient& client, const http::FhirEndpoint& target,
                     runtime::StopSignal& stop)
      : config_(config), client_(client), target_(target), stop_(stop) {}

  // Until the stop signal: one check, then the pause (shorter while the server is away).
  boost::asio::awaitable<void> run();

 private:
  boost::asio::awaitable<void> ensure_subscription();

  const config::NotificationsConfig& config_;
  http::HttpClient& client_;
  const http::FhirEndpoint& target_;
  runtime::StopSignal& stop_;
  std::mt19937_64 random_{std::random_device{}()};  // (the keeper's backoff draws no jitter from it)
};

}  // namespace p2p::notify
