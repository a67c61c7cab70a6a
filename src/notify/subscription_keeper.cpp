#include "subscription_keeper.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "p2p/notify/email.hpp"
#include "p2p/notify/notifier.hpp"
#include "p2p/notify/subscription.hpp"
#include "p2p/util/backoff.hpp"
#include "p2p/util/text.hpp"
#include "p2p/util/url_rules.hpp"

namespace p2p::notify {
namespace {

namespace asio = boost::asio;
using nlohmann::json;

// The keeper's retry policy while the FHIR server is away (no jitter: one keeper per instance).
constexpr util::Backoff kKeeperBackoff{.initial = std::chrono::seconds(4), .cap = std::chrono::seconds(60),
                                       .jitter_low = 1.0, .jitter_high = 1.0};

bool fhir_id_is_safe(const std::string& id) {
  return std::all_of(id.begin(), id.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.'; });
}

}  // namespace

// Writes the Subscription when it is missing or differs, and deletes stray copies with our tag.
// GCC 12 reports the operator new/delete pair of this coroutine's own frame (Asio's awaitable_frame) as
// mismatched: a false positive of -Wmismatched-new-delete on inlined coroutine frames, silenced here
// only (as in jobs/exchange_job.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
asio::awaitable<void> SubscriptionKeeper::ensure_subscription() {
  const json desired = desired_subscription(config_.public_base_url, config_.hook_secret);
  const std::string path = "Subscription/" + std::string(kSubscriptionId);
  auto current = co_await client_.send(target_.request("GET", path));
  if (stop_.requested()) co_return;  // (each step is a request of up to 20 s: a stop is not kept waiting)
  bool write = false;
  if (current.status == 404 || current.status == 410) {
    write = true;
  } else if (current.status == 200) {
    const auto existing = json::parse(current.body, nullptr, false);
    write = !subscription_matches(existing, desired);
  } else {
    throw FhirUnavailable("reading " + path + " answered HTTP " + std::to_string(current.status));
  }
  if (write) {
    auto written = co_await client_.send(target_.request("PUT", path, desired.dump()));
    if (written.status < 200 || written.status >= 300) {
      // The server's explanation helps (e.g. "Subscriptions are disabled"); an echo of our secret must not reach the log.
      std::string explanation = written.body;
      for (auto at = explanation.find(config_.hook_secret); !config_.hook_secret.empty() && at != std::string::npos;
           at = explanation.find(config_.hook_secret)) {
        explanation.replace(at, config_.hook_secret.size(), "***");
      }
      throw FhirUnavailable("writing " + path + " answered HTTP " + std::to_string(written.status) + ": " +
                            sanitize_value(explanation, 300));
    }
    spdlog::info("notifications: wrote Subscription/{} on the FHIR server (rest-hook to {}{})", kSubscriptionId,
                 config_.public_base_url, kHookPath);
  }
  if (stop_.requested()) co_return;
  const std::string tag = std::string(kSubscriptionTagSystem) + "|" + std::string(kSubscriptionTagCode);
  auto found = co_await client_.send(target_.request("GET", "Subscription?_tag=" + util::query_value(tag) + "&_count=100"));
  if (found.status != 200) co_return;  // the stray check is best effort
  const auto bundle = json::parse(found.body, nullptr, false);
  if (!bundle.is_object() || !bundle.contains("entry") || !bundle["entry"].is_array()) co_return;
  for (const auto& entry : bundle["entry"]) {
    const auto resource = entry.is_object() ? entry.value("resource", json::object()) : json::object();
    const auto id = resource.is_object() ? resource.value("id", std::string()) : std::string();
    if (id.empty() || id == kSubscriptionId || !fhir_id_is_safe(id)) continue;
    if (stop_.requested()) co_return;
    auto deleted = co_await client_.send(target_.request("DELETE", "Subscription/" + id));
    spdlog::info("notifications: deleted a stray copy Subscription/{} (HTTP {})", id, deleted.status);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

asio::awaitable<void> SubscriptionKeeper::run() {
  int failures = 0;
  while (!stop_.requested()) {
    std::string problem;
    try {
      co_await ensure_subscription();
    } catch (const std::exception& error) {
      problem = error.what();
    }
    std::chrono::seconds wait(config_.subscription_check_seconds);
    if (problem.empty()) {
      if (failures > 0) spdlog::info("notifications: the FHIR server is back; the Subscription is in place");
      failures = 0;
    } else {
      ++failures;
      if (failures == 1 || failures % 10 == 0) {
        spdlog::warn("notifications: cannot check the Subscription on the FHIR server ({}); retrying (attempt {})",
                     problem, failures);
      }
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::seconds>(kKeeperBackoff.delay(failures, random_)));
    }
    co_await stop_.sleep_for(wait);
  }
}

}  // namespace p2p::notify
