#pragma once
// The page loop's work in flight (page_pipeline.cpp): the next page fetched and transformed while the
// current one is written (Prefetch), and the record of written pages, made while the next ones are
// written (Recording). ExchangeJob::run() awaits both before it returns, whatever ended the job, since their
// coroutines refer to the job. Private to src/jobs.
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "exchange_job.hpp"

namespace p2p::jobs {

// Work a job started in a coroutine of its own: complete() from that coroutine's completion handler;
// settle() waits for it. Everything runs on the runner's strand. A failure is kept, and acted on only
// when the job comes to it: a prefetched page's after the current page is written and recorded, as if
// the page had been read then.
struct InFlight {
  explicit InFlight(const boost::asio::any_io_executor& strand)
      : signal(strand, boost::asio::steady_timer::time_point::max()) {}
  void complete(std::exception_ptr failure) {
    if (failure) error = failure;
    done = true;
    signal.cancel();
  }
  bool done = false;
  std::exception_ptr error;
  boost::asio::steady_timer signal;  // cancelled on completion
};

// The next page, fetched and transformed while the current one is written (the runner's thread is
// free while the target answers).
struct ExchangeJob::Prefetch : InFlight {
  Prefetch(const boost::asio::any_io_executor& strand, std::string next, const fhir::TransformContext& context)
      : InFlight(strand), url(std::move(next)), transform(context) {}
  std::string url;
  fhir::TransformContext transform;
  // Storage reused from the pages before (keep_for_reuse): the body's buffer goes to the fetch, and
  // comes back once the transaction is written from it, for the next page.
  std::string body_buffer;
  std::string transaction_buffer;
  // (InFlight::error is the fetch's)
  std::exception_ptr unreadable;  // the transform's (read_page in page_pipeline.cpp)
  fhir::WrittenPage written;
};

// The record of written pages. Its coroutine (record_into) waits until `due`, then takes every page
// written by then (ExchangeJob::unrecorded_) and records them while the next ones are written. Awaited
// by recorded(), which starts it at once, or by run() when the job ends otherwise.
struct ExchangeJob::Recording : InFlight {
  Recording(const boost::asio::any_io_executor& strand, boost::asio::steady_timer::time_point at)
      : InFlight(strand), due(strand, at) {}
  void start_now() { due.expires_at(boost::asio::steady_timer::time_point::min()); }  // (harmless once taken)
  boost::asio::steady_timer due;
  bool taken = false;  // it took the pages written so far: pages written from now on wait for the next record
  std::optional<store::JobStatus> status;  // what the record returned (none when there was nothing to take)
};

// A written page as it is recorded.
store::PagesRecord page_record(const fhir::TransformedPage& page, const std::optional<std::string>& next);

// Waits for work in flight to complete, whatever its outcome.
template <typename Pending>
boost::asio::awaitable<void> settle(const std::shared_ptr<Pending>& pending) {
  while (!pending->done) co_await pending->signal.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
}

}  // namespace p2p::jobs
