#pragma once
// The service's one execution model, made in main and lent to every component. Every component runs
// its coroutines on a strand of an I/O context the runtime owns, keeps them in a TaskGroup and stops
// them by cancellation; blocking work (PostgreSQL, SMTP) is reached only through run_blocking
// (runtime/run_blocking.hpp); main alone handles the signals, then stops the components and waits.
//
// What runs where, and why it is split so:
//   io          http.threads threads: the HTTP server's connections and the notifications.
//   exchange    one thread: the job runner. Parsing and transforming a page is CPU work (up to
//               exchange.maxPageBytes of JSON at once); here it never delays an API answer or a health
//               check, and one thread keeps a page's allocations in one malloc arena (measured with
//               scripts/bench-fast.sh: on the shared threads, peak RSS of 4 jobs of 15.5 MiB pages grew
//               by a fifth).
//   blocking    http.blockingThreads: the API's route handlers that use PostgreSQL.
//   background  3 threads: the job runner's SQL and the e-mail sender, apart from the API's pool so
//               neither side can starve the other (an API burst never delays a lease renewal).
//
// Cheap to include: Asio is only forward-declared here.
namespace boost::asio {
class io_context;
class thread_pool;
}  // namespace boost::asio

namespace p2p::runtime {

struct Runtime {
  boost::asio::io_context& io;
  boost::asio::io_context& exchange;
  boost::asio::thread_pool& blocking;    // http.blockingThreads: the API's route handlers
  boost::asio::thread_pool& background;  // 3 threads: the job runner's SQL and the e-mail sender
};

// Runs `io` on `threads` threads (the calling one included) until it is stopped or runs out of work.
void run(boost::asio::io_context& io, int threads);

}  // namespace p2p::runtime
