#pragma once
// Polls a condition until it holds or a timeout passes: for effects that arrive asynchronously, such
// as PostgreSQL's change notification reaching the service's cache (milliseconds in practice). It
// returns as soon as the condition holds, so the generous default deadline only costs time when the
// condition never comes true; it polls after 10 ms, then less often, up to every 100 ms.
#include <algorithm>
#include <chrono>
#include <thread>

namespace p2p::test {

template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::chrono::milliseconds pause(10);
  while (!condition()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    // Never sleep past the deadline: the condition gets a last look at it.
    std::this_thread::sleep_for(std::min(pause, std::chrono::ceil<std::chrono::milliseconds>(deadline - now)));
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
  return true;
}

}  // namespace p2p::test
