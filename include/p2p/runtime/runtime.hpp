#pragma once
// The service's one execution model, made in main and lent to every component: one I/O context whose
// threads run every coroutine (HTTP connections, the job runner, the notifications), each component
// on its own strand, and one thread pool for blocking work (PostgreSQL, SMTP, route handlers), reached
// only through run_blocking (runtime/run_blocking.hpp). Components own their coroutines (a TaskGroup
// each) and stop them by cancellation; main handles the signals and waits.
//
// Cheap to include: Asio is only forward-declared here.
namespace boost::asio {
class io_context;
class thread_pool;
}  // namespace boost::asio

namespace p2p::runtime {

struct Runtime {
  boost::asio::io_context& io;
  boost::asio::thread_pool& blocking;
};

// Runs `io` on `threads` threads (the calling one included) until it is stopped or runs out of work.
void run(boost::asio::io_context& io, int threads);

}  // namespace p2p::runtime
