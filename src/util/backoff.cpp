#include "p2p/util/backoff.hpp"

#include <algorithm>
#include <cmath>

namespace p2p::util {

std::chrono::milliseconds Backoff::delay(int attempt, std::mt19937_64& random,
                                         std::optional<std::chrono::seconds> retry_after) const {
  using std::chrono::milliseconds;
  if (retry_after) {
    return std::clamp(std::chrono::duration_cast<milliseconds>(*retry_after), floor, std::max(floor, cap));
  }
  double factor = jitter_low;
  if (jitter_high > jitter_low) factor = std::uniform_real_distribution<double>(jitter_low, jitter_high)(random);
  // 2^62 ms is far past any cap: the exponent is bounded so the double never overflows.
  const double wait = static_cast<double>(initial.count()) * std::pow(2.0, std::clamp(attempt - 1, 0, 62)) * factor;
  const double capped = std::min(wait, static_cast<double>(cap.count()));
  return std::max(floor, milliseconds(static_cast<long long>(capped)));
}

}  // namespace p2p::util
