#pragma once
// The one retry policy of the service: waits that double from `initial` with jitter, capped at `cap`,
// unless the server said when to come back (Retry-After). The job runner (source, target, token
// endpoint), the subscription keeper and the e-mail outbox sender each use it with their configured
// numbers; nobody computes a wait of their own.
#include <chrono>
#include <optional>
#include <random>

namespace p2p::util {

struct Backoff {
  std::chrono::milliseconds initial{500};  // the wait after the first failed try, before jitter
  std::chrono::milliseconds cap{60000};    // no wait is longer, a Retry-After included
  // Each wait is drawn in [jitter_low, jitter_high] × initial × 2^(attempt − 1); equal bounds draw nothing.
  double jitter_low = 0.5;
  double jitter_high = 1.0;
  std::chrono::milliseconds floor{0};      // no wait is shorter

  // The wait after failed try `attempt` (1 = the first try failed). `retry_after`, when the server
  // sent one, replaces the computed wait (still within floor and cap).
  std::chrono::milliseconds delay(int attempt, std::mt19937_64& random,
                                  std::optional<std::chrono::seconds> retry_after = std::nullopt) const;
};

}  // namespace p2p::util
