#pragma once
// The request id of a coroutine, whichever thread runs it and whatever ran there between its steps.
// log::RequestIdScope alone is per thread: a coroutine that holds one across a co_await lends its id
// to every coroutine resumed on that thread meanwhile, and takes theirs. Spawn the coroutine on a
// RequestIdExecutor instead: every step of it (its start and each resumption after a co_await, as
// well as the steps of the coroutines it spawns on its own executor) runs inside a scope with its id.
//
//   asio::co_spawn(log::RequestIdExecutor(io.get_executor(), "job-42"), run_job(...), asio::detached);
//
// Asio-dependent: include it only where coroutines are spawned, not from widely included headers.
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>

#include "p2p/log/log.hpp"

namespace p2p::log {

template <typename Inner>
class RequestIdExecutor {
 public:
  RequestIdExecutor(Inner inner, std::string request_id)
      : inner_(std::move(inner)), id_(std::make_shared<const std::string>(std::move(request_id))) {}
  RequestIdExecutor(Inner inner, std::shared_ptr<const std::string> request_id) noexcept
      : inner_(std::move(inner)), id_(std::move(request_id)) {}

  const std::string& request_id() const noexcept { return *id_; }
  const Inner& inner() const noexcept { return inner_; }

  template <typename Function>
  void execute(Function&& function) const {
    inner_.execute([id = id_, function = std::forward<Function>(function)]() mutable {
      RequestIdScope scope(*id);
      std::move(function)();
    });
  }

  // Every property is the inner executor's; require and prefer keep the id.
  template <typename Property>
  auto query(const Property& property) const
      noexcept(noexcept(boost::asio::query(std::declval<const Inner&>(), property)))
          -> decltype(boost::asio::query(std::declval<const Inner&>(), property)) {
    return boost::asio::query(inner_, property);
  }

  template <typename Property>
  auto require(const Property& property) const
      -> RequestIdExecutor<std::decay_t<decltype(boost::asio::require(std::declval<const Inner&>(), property))>> {
    return {boost::asio::require(inner_, property), id_};
  }

  template <typename Property>
  auto prefer(const Property& property) const
      -> RequestIdExecutor<std::decay_t<decltype(boost::asio::prefer(std::declval<const Inner&>(), property))>> {
    return {boost::asio::prefer(inner_, property), id_};
  }

  friend bool operator==(const RequestIdExecutor& a, const RequestIdExecutor& b) noexcept {
    return a.inner_ == b.inner_ && a.id_ == b.id_;
  }
  friend bool operator!=(const RequestIdExecutor& a, const RequestIdExecutor& b) noexcept { return !(a == b); }

 private:
  Inner inner_;
  std::shared_ptr<const std::string> id_;
};

}  // namespace p2p::log
