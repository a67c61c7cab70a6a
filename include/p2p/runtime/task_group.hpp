#pragma once
// The coroutines a component started, so that stopping it can wait for them to end without polling.
// From Boost.Beast's example/advanced/server-flex-awaitable (task_group; Boost Software License 1.0),
// plus `wait_at_most` (Boost 1.81 has no cancel_after: a timer raced with `||`).
//
//   asio::co_spawn(strand, serve(...), asio::bind_executor(strand, group.adapt(log_failure)));
//   ... cancel what they wait for (StopSignal, socket.cancel()) ...
//   co_await group.async_wait(asio::use_awaitable);  // all of them ended
//
// Beast's group also emits Asio cancellation signals to its children. Ours do not take them: a job
// or a connection that is stopping still has I/O to do (release its lease, finish its response), and
// after a cancellation signal every co_await in the coroutine throws operation_aborted.
//
// Asio-dependent: include it from .cpp files, not from widely included headers.
#include <chrono>
#include <list>
#include <mutex>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/consign.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace p2p::runtime {

// Thread-safe: adapt, size and async_wait may be called from any thread.
class TaskGroup {
 public:
  explicit TaskGroup(boost::asio::any_io_executor executor)
      : done_(std::move(executor), boost::asio::steady_timer::time_point::max()) {}
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // Wraps a child's completion token: the child is in the group until its completion handler is
  // destroyed (after it ran, or with the I/O context).
  template <typename CompletionToken>
  auto adapt(CompletionToken&& token) {
    std::lock_guard lock(mutex_);
    auto member = members_.emplace(members_.end());
    return boost::asio::consign(std::forward<CompletionToken>(token), Remover(this, member));
  }

  std::size_t size() {
    std::lock_guard lock(mutex_);
    return members_.size();
  }

  // Completes when every child has ended (at once when there are none), or with operation_aborted
  // when this wait itself is cancelled.
  template <typename CompletionToken>
  auto async_wait(CompletionToken&& token) {
    namespace asio = boost::asio;
    return asio::async_compose<CompletionToken, void(boost::system::error_code)>(
        [this, scheduled = false](auto&& self, boost::system::error_code error = {}) mutable {
          if (!scheduled) self.reset_cancellation_state(asio::enable_total_cancellation());
          if (!self.cancelled() && error == asio::error::operation_aborted) error = {};
          {
            std::lock_guard lock(mutex_);
            if (!members_.empty() && !error) {
              scheduled = true;
              return done_.async_wait(std::move(self));
            }
          }
          if (!std::exchange(scheduled, true)) return asio::post(asio::append(std::move(self), error));
          self.complete(error);
        },
        token, done_);
  }

 private:
  struct Member {};
  using Members = std::list<Member>;

  class Remover {
   public:
    Remover(TaskGroup* group, Members::iterator member) : group_(group), member_(member) {}
    Remover(Remover&& other) noexcept : group_(std::exchange(other.group_, nullptr)), member_(other.member_) {}
    Remover(const Remover&) = delete;
    Remover& operator=(const Remover&) = delete;
    Remover& operator=(Remover&&) = delete;
    ~Remover() {
      if (group_ == nullptr) return;
      std::lock_guard lock(group_->mutex_);
      group_->members_.erase(member_);
      if (group_->members_.empty()) group_->done_.cancel();
    }

   private:
    TaskGroup* group_;
    Members::iterator member_;
  };

  std::mutex mutex_;
  boost::asio::steady_timer done_;  // never expires; cancelled when the last child leaves
  Members members_;
};

// Waits until every child of `group` has ended or `limit` has passed; returns whether they all ended.
inline boost::asio::awaitable<bool> wait_at_most(TaskGroup& group, std::chrono::steady_clock::duration limit) {
  namespace asio = boost::asio;
  using namespace asio::experimental::awaitable_operators;
  const auto executor = co_await asio::this_coro::executor;  // named: GCC 12 and temporaries in co_await
  asio::steady_timer deadline(executor, limit);
  const auto first = co_await (group.async_wait(asio::as_tuple(asio::use_awaitable)) ||
                               deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
  co_return first.index() == 0;
}

}  // namespace p2p::runtime
