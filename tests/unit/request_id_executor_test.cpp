// The request id follows a coroutine across co_await, not the thread that happens to run it.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "p2p/log/request_id_executor.hpp"

namespace asio = boost::asio;
using p2p::log::RequestIdExecutor;
using namespace std::chrono_literals;

namespace {

// Records the id seen at the start and after every co_await, while the other coroutine runs between.
asio::awaitable<void> step_and_record(asio::io_context& io, std::vector<std::string>& seen) {
  for (int i = 0; i < 5; ++i) {
    seen.emplace_back(p2p::log::current_request_id());
    asio::steady_timer timer(io, 1ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  seen.emplace_back(p2p::log::current_request_id());
}

}  // namespace

TEST(RequestIdExecutor, TwoInterleavedCoroutinesEachSeeTheirOwnIdAfterEveryAwait) {
  asio::io_context io;
  std::vector<std::string> a, b;
  asio::co_spawn(RequestIdExecutor(io.get_executor(), "job-a"), step_and_record(io, a), asio::detached);
  asio::co_spawn(RequestIdExecutor(io.get_executor(), "job-b"), step_and_record(io, b), asio::detached);
  io.run();
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (const auto& id : a) EXPECT_EQ(id, "job-a");
  for (const auto& id : b) EXPECT_EQ(id, "job-b");
  EXPECT_EQ(p2p::log::current_request_id(), "") << "nothing left behind on the thread";
}

TEST(RequestIdExecutor, ACoroutineSpawnedOnTheSameExecutorAndWorkPostedBackKeepTheId) {
  asio::io_context io;
  asio::thread_pool pool(1);
  std::string child, after_pool;
  auto parent = [&]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    co_await asio::co_spawn(
        executor,
        [&]() -> asio::awaitable<void> {
          asio::steady_timer timer(io, 1ms);
          co_await timer.async_wait(asio::use_awaitable);
          child = p2p::log::current_request_id();
        },
        asio::use_awaitable);
    // Work done elsewhere and posted back to the coroutine's executor.
    co_await asio::post(pool, asio::bind_executor(executor, asio::use_awaitable));
    after_pool = p2p::log::current_request_id();
  };
  asio::co_spawn(RequestIdExecutor(io.get_executor(), "job-p"), parent(), asio::detached);
  // Another job interleaving on the same thread. (A named lambda: a coroutine lambda called as a
  // temporary would outlive its captures.)
  auto other = [&]() -> asio::awaitable<void> {
    asio::steady_timer timer(io, 2ms);
    co_await timer.async_wait(asio::use_awaitable);
  };
  asio::co_spawn(RequestIdExecutor(io.get_executor(), "job-q"), other(), asio::detached);
  io.run();
  pool.join();
  EXPECT_EQ(child, "job-p");
  EXPECT_EQ(after_pool, "job-p");
}
