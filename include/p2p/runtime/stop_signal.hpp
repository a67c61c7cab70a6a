#pragma once
// "This component is stopping", for the coroutines of one strand: request() ends every sleep_for in
// progress at once, and every later one before it starts. Without it a stopping component would
// wait out its backoff pauses and poll intervals (or poll a flag) before it could end.
//
// sleep_for must be called on `strand` (the component's); request() from any thread.
// Asio-dependent: include it from .cpp files, not from widely included headers.
#include <atomic>
#include <chrono>
#include <set>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace p2p::runtime {

class StopSignal {
 public:
  explicit StopSignal(boost::asio::any_io_executor strand) : strand_(std::move(strand)) {}
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  void request() {
    if (requested_.exchange(true)) return;
    boost::asio::post(strand_, [this] {
      for (auto* timer : sleepers_) timer->cancel();
    });
  }
  bool requested() const { return requested_.load(); }

  // Sleeps for `delay`, or less when a stop is requested; returns false when it was (at once when it
  // already had been).
  boost::asio::awaitable<bool> sleep_for(std::chrono::steady_clock::duration delay) {
    namespace asio = boost::asio;
    if (requested_) co_return false;
    asio::steady_timer timer(strand_, delay);
    sleepers_.insert(&timer);
    const auto [error] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)error;
    sleepers_.erase(&timer);
    co_return !requested_;
  }

 private:
  boost::asio::any_io_executor strand_;
  std::atomic<bool> requested_{false};
  std::set<boost::asio::steady_timer*> sleepers_;  // on strand_ only
};

}  // namespace p2p::runtime
