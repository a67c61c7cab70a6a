#pragma once
// The service's one execution model, made in main and lent to every component: one I/O context whose
// threads run every coroutine (HTTP connections, the job runner, the notifications), each component
// on its own strand, and thread pools for blocking work (PostgreSQL, SMTP), reached only through
// run_blocking (runtime/run_blocking.hpp): `blocking` for the API's route handlers, `background` for
// the job runner's SQL and the e-mail sender, so that neither side can starve the other (a burst of
// API calls never delays a lease renewal). Components own their coroutines (a TaskGroup each) and
// stop them by cancellation; main handles the signals and waits.
//
// Cheap to include: Asio is only forward-declared here.
namespace boost::asio {
class io_context;
class thread_pool;
}  // namespace boost::asio

namespace p2p::runtime {

struct Runtime {
  boost::asio::io_context& io;
  boost::asio::thread_pool& blocking;    // http.blockingThreads: the API's route handlers
  boost::asio::thread_pool& background;  // 3 threads: the job runner's SQL and the e-mail sender
};

// Runs `io` on `threads` threads (the calling one included) until it is stopped or runs out of work.
void run(boost::asio::io_context& io, int threads);

}  // namespace p2p::runtime
