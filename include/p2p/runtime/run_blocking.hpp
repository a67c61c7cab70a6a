#pragma once
// The one bridge from a coroutine to blocking work (libpqxx, the SMTP client, route handlers that use
// the database): `co_await run_blocking(pool, work)` runs `work()` on one of the pool's threads and
// resumes the awaiting coroutine on its own executor with the result, or rethrows what `work` threw.
// `work` runs under the awaiting coroutine's request id (log/log.hpp), so its log lines belong to the
// same request or job. It is not cancellable once started: blocking work is bounded by its own
// timeouts (PostgreSQL statement timeout, SMTP timeout).
//
// GCC 12 destroys temporaries with non-trivial destructors in a co_await expression twice: build the
// callable first and capture the awaiting frame's objects by reference (the frame outlives the work).
//
// Asio-dependent: include it from .cpp files, not from widely included headers.
#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "p2p/log/log.hpp"

namespace p2p::runtime {

namespace detail {

template <typename Pool, typename Work>
auto run_blocking_value(Pool& pool, Work work) -> boost::asio::awaitable<std::invoke_result_t<Work&>> {
  namespace asio = boost::asio;
  using Result = std::invoke_result_t<Work&>;
  return asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr, Result)>(
      [pool = &pool, work = std::move(work)](auto handler) mutable {
        auto executor = asio::get_associated_executor(handler);
        std::string request_id(log::current_request_id());
        asio::post(*pool, [work = std::move(work), handler = std::move(handler), executor,
                           request_id = std::move(request_id)]() mutable {
          std::exception_ptr error;
          Result result{};
          {
            log::RequestIdScope scope(request_id);
            try {
              result = work();
            } catch (...) {
              error = std::current_exception();
            }
          }
          asio::post(executor, [handler = std::move(handler), error, result = std::move(result)]() mutable {
            std::move(handler)(error, std::move(result));
          });
        });
      },
      asio::use_awaitable);
}

template <typename Pool, typename Work>
boost::asio::awaitable<void> run_blocking_void(Pool& pool, Work work) {
  auto as_value = [work = std::move(work)]() mutable {
    work();
    return std::monostate{};
  };
  auto operation = run_blocking_value(pool, std::move(as_value));  // built first: GCC 12 and temporaries in co_await
  co_await std::move(operation);
}

}  // namespace detail

template <typename Pool, typename Work>
auto run_blocking(Pool& pool, Work work) -> boost::asio::awaitable<std::invoke_result_t<Work&>> {
  if constexpr (std::is_void_v<std::invoke_result_t<Work&>>) {
    return detail::run_blocking_void(pool, std::move(work));
  } else {
    return detail::run_blocking_value(pool, std::move(work));
  }
}

}  // namespace p2p::runtime
