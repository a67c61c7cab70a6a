// The execution model's pieces (runtime/): run_blocking is the one bridge to blocking work, a task
// group is waited for without polling, and a stop signal ends sleeps. None of these tests time
// anything: a wait that did not end would hang the test until ctest's timeout.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "p2p/log/request_id_executor.hpp"
#include "p2p/runtime/run_blocking.hpp"
#include "p2p/runtime/stop_signal.hpp"
#include "p2p/runtime/task_group.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST(RunBlocking, RunsTheWorkOnThePoolUnderTheCoroutinesRequestIdAndResumesOnTheCoroutinesThread) {
  asio::io_context io;
  asio::thread_pool pool(1);
  std::thread::id io_thread, work_thread, resumed_thread;
  std::string id_in_work, id_after;
  int result = 0;
  auto body = [&]() -> asio::awaitable<void> {
    io_thread = std::this_thread::get_id();
    const auto work = [&] {
      work_thread = std::this_thread::get_id();
      id_in_work = p2p::log::current_request_id();
      return 42;
    };
    result = co_await p2p::runtime::run_blocking(pool, work);
    resumed_thread = std::this_thread::get_id();
    id_after = p2p::log::current_request_id();
  };
  asio::co_spawn(p2p::log::RequestIdExecutor(io.get_executor(), "job-7"), body(), asio::detached);
  io.run();
  pool.join();
  EXPECT_EQ(result, 42);
  EXPECT_NE(work_thread, io_thread) << "the work ran on the pool, not on the I/O thread";
  EXPECT_EQ(resumed_thread, io_thread);
  EXPECT_EQ(id_in_work, "job-7");
  EXPECT_EQ(id_after, "job-7");
}

TEST(RunBlocking, RethrowsWhatTheWorkThrewAndRunsVoidWork) {
  asio::io_context io;
  asio::thread_pool pool(1);
  std::string caught;
  bool void_work_ran = false;
  auto body = [&]() -> asio::awaitable<void> {
    const auto failing = []() -> int { throw std::runtime_error("the database is down"); };
    try {
      co_await p2p::runtime::run_blocking(pool, failing);
    } catch (const std::runtime_error& error) {
      caught = error.what();
    }
    const auto void_work = [&] { void_work_ran = true; };
    co_await p2p::runtime::run_blocking(pool, void_work);
  };
  asio::co_spawn(io, body(), asio::detached);
  io.run();
  pool.join();
  EXPECT_EQ(caught, "the database is down");
  EXPECT_TRUE(void_work_ran);
}

TEST(TaskGroup, AWaitCompletesAtOnceWhenEmptyAndOtherwiseWhenTheLastChildEnds) {
  asio::io_context io;
  p2p::runtime::TaskGroup group(io.get_executor());
  asio::steady_timer gate(io, asio::steady_timer::time_point::max());
  int ended = 0;
  bool empty_wait_done = false, full_wait_done = false;
  int children_left_when_waited = -1;
  auto child = [&]() -> asio::awaitable<void> {
    co_await gate.async_wait(asio::as_tuple(asio::use_awaitable));
    ++ended;
  };
  auto waiter = [&]() -> asio::awaitable<void> {
    co_await group.async_wait(asio::as_tuple(asio::use_awaitable));
    empty_wait_done = true;
    asio::co_spawn(io, child(), group.adapt(asio::detached));
    asio::co_spawn(io, child(), group.adapt(asio::detached));
    EXPECT_EQ(group.size(), 2u);
    asio::post(io, [&] { gate.cancel(); });  // lets both children end
    co_await group.async_wait(asio::as_tuple(asio::use_awaitable));
    children_left_when_waited = 2 - ended;
    full_wait_done = true;
  };
  asio::co_spawn(io, waiter(), asio::detached);
  io.run();
  EXPECT_TRUE(empty_wait_done);
  EXPECT_TRUE(full_wait_done);
  EXPECT_EQ(children_left_when_waited, 0) << "the wait ended only after both children";
  EXPECT_EQ(group.size(), 0u);
}

TEST(TaskGroup, WaitAtMostSaysWhetherTheChildrenEndedInTime) {
  asio::io_context io;
  p2p::runtime::TaskGroup group(io.get_executor());
  asio::steady_timer gate(io, asio::steady_timer::time_point::max());
  bool in_time = true, after_release = false;
  auto child = [&]() -> asio::awaitable<void> { co_await gate.async_wait(asio::as_tuple(asio::use_awaitable)); };
  auto waiter = [&]() -> asio::awaitable<void> {
    asio::co_spawn(io, child(), group.adapt(asio::detached));
    in_time = co_await p2p::runtime::wait_at_most(group, 10ms);  // the child waits for ever
    gate.cancel();
    after_release = co_await p2p::runtime::wait_at_most(group, 1h);
  };
  asio::co_spawn(io, waiter(), asio::detached);
  io.run();
  EXPECT_FALSE(in_time);
  EXPECT_TRUE(after_release);
}

TEST(StopSignal, ARequestFromAnotherThreadEndsASleepInProgressAndEveryLaterOne) {
  asio::io_context io;
  auto strand = asio::make_strand(io);
  p2p::runtime::StopSignal stop(strand);
  bool short_sleep = false, long_sleep = true, later_sleep = true;
  std::promise<void> short_sleep_over;
  auto sleeper = [&]() -> asio::awaitable<void> {
    short_sleep = co_await stop.sleep_for(1ms);
    short_sleep_over.set_value();
    long_sleep = co_await stop.sleep_for(1h);  // ended by the request below, whether it comes before or during it
    later_sleep = co_await stop.sleep_for(1h);  // requested already: returns at once
  };
  asio::co_spawn(strand, sleeper(), asio::detached);
  std::thread io_thread([&] { io.run(); });
  short_sleep_over.get_future().wait();
  stop.request();
  io_thread.join();
  EXPECT_TRUE(short_sleep) << "a sleep with no stop requested runs its full time";
  EXPECT_FALSE(long_sleep);
  EXPECT_FALSE(later_sleep);
  EXPECT_TRUE(stop.requested());
}
