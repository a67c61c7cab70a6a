#pragma once
// Polls a condition until it holds or a timeout passes: for effects that arrive asynchronously, such
// as PostgreSQL's change notification reaching the service's cache (milliseconds in practice).
#include <chrono>
#include <thread>

namespace p2p::test {

template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout = std::chrono::milliseconds(2000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace p2p::test
