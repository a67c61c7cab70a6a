// The page loop of ExchangeJob (exchange_job.hpp): fetch → transform → write → record, pipelined one
// page deep, the buffers it reuses from page to page, and the records of written pages.
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "p2p/fhir/page_transform.hpp"
#include "p2p/fhir/source_url.hpp"
#include "page_pipeline.hpp"
#include "runner_context.hpp"

namespace p2p::jobs {

namespace asio = boost::asio;
using nlohmann::json;
using store::JobStatus;

namespace {

// A job reads page after page into the same buffers (the body, the transaction) rather than allocating
// and freeing ~300 KB a page, up to fhir::kKeptBetweenPagesBytes each.
// (`used` by value: a buffer too large to keep, or the one `spare` held before, is freed on return.)
void keep_for_reuse(std::string& spare, std::string used) {
  if (used.capacity() <= fhir::kKeptBetweenPagesBytes) {
    spare.swap(used);
  } else {
    spare = std::string();
  }
}

// The page path on a fetched page: the transaction written from its body (fhir/page_stream.hpp). What
// it throws is returned, for the job to word when it comes to this page (ExchangeJob::read_pages).
std::exception_ptr read_page(std::string& body, fhir::TransformContext& transform, const std::string& url,
                             fhir::WrittenPage& written, std::string transaction_buffer) noexcept {
  try {
    transform.source_page_url = url;
    transform.recorded = utc_now();  // (after the fetch: when the page was read)
    written = fhir::write_page(body, transform, std::move(transaction_buffer));
    return nullptr;
  } catch (...) {
    return std::current_exception();
  }
}

// The prefetch's coroutine: fetch, then transform; the body's buffer is kept for the next page's fetch.
template <typename Pending>
asio::awaitable<void> fetch_and_read(SourceSession& source, std::shared_ptr<Pending> pending) {
  http::ClientResponse response;
  try {
    response = co_await source.fetch(pending->url, &pending->body_buffer);
  } catch (...) {
    pending->error = std::current_exception();
    co_return;
  }
  pending->unreadable = read_page(response.body, pending->transform, pending->url, pending->written,
                                  std::move(pending->transaction_buffer));
  keep_for_reuse(pending->body_buffer, std::move(response.body));
}

}  // namespace

// GCC 12 reports the operator new/delete pair of this coroutine's own frame (Asio's awaitable_frame) as
// mismatched: a false positive of -Wmismatched-new-delete on inlined coroutine frames, silenced here only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
asio::awaitable<ExchangeJob::Outcome> ExchangeJob::read_pages() {
  const auto& config = context_.config;
  const long long id = job_.id;
  const auto& endpoint = source_.server().definition.fhir_endpoint;
  fhir::TransformContext transform = transform_context();
  std::optional<std::string> url = job_.next_url;
  // The status comes with each record, so a cancel is seen without a query of its own, with the next
  // record that lands: the job then writes no further page. Records are made at most every
  // exchange.recordIntervalMilliseconds and land while the next page is written, so the pages written
  // until then, and up to two more, can be written after a cancel arrives.
  JobStatus status = job_.status;
  std::optional<fhir::SourceEndpoint> source_endpoint;  // read at the first next link
  int number = pages_;  // the page being read (1-based); pages_ counts those recorded
  while (url) {
    ++number;
    context_.check_still_ours(id);
    if (status == JobStatus::kStopping) {
      const Outcome stopped = co_await stop_here();
      co_return stopped;
    }
    if (number > config.max_pages) {
      throw JobFailure("the source sent more than " + std::to_string(config.max_pages) +
                       " pages (exchange.maxPages); a member's records should not need that many: check the "
                       "source's paging, or raise exchange.maxPages");
    }
    pages_seen_.insert(*url);

    // 1. Fetch: the page prefetched while the previous one was being written, or fetched now.
    // 2. Transform: the page's bytes read and the transaction written in one go, without a DOM of the
    // page (fhir/page_stream.hpp); the body's buffer then serves the next page (memory: docs/exchange.md
    // "Memory").
    fhir::WrittenPage written;
    {
      std::exception_ptr unreadable;
      std::exception_ptr unfetched;
      if (prefetch_) {
        co_await settle(prefetch_);
        const auto fetched = std::move(prefetch_);
        unfetched = fetched->error;
        unreadable = fetched->unreadable;
        written = std::move(fetched->written);
        spare_body_ = std::move(fetched->body_buffer);  // (kept or let go by fetch_and_read)
      } else {
        http::ClientResponse response = co_await source_.fetch(*url, &spare_body_);
        unreadable = read_page(response.body, transform, *url, written, std::move(spare_transaction_));
        keep_for_reuse(spare_body_, std::move(response.body));
      }
      // A record that landed while this page was fetched: a cancel it brings stops the job before
      // the page is written (and before a failure to fetch it counts).
      if (recording_ && recording_->done) status = co_await recorded(status);
      if (status == JobStatus::kStopping) {
        const Outcome stopped = co_await stop_here();
        co_return stopped;
      }
      if (unfetched) std::rethrow_exception(unfetched);
      try {
        if (unreadable) std::rethrow_exception(unreadable);
      } catch (const fhir::PageNotJson&) {
        throw JobFailure("the source payer answered with invalid JSON for " + origin_and_path(*url));
      } catch (const std::invalid_argument& error) {
        throw JobFailure(error.what());
      } catch (const json::exception& error) {
        throw JobFailure("the source's page " + std::to_string(number) + " is not FHIR this service can read (" +
                         error.what() + ")");
      }
    }
    std::optional<std::string> next;
    if (written.next) {
      try {
        if (!source_endpoint) source_endpoint.emplace(*endpoint);
        next = source_endpoint->require_under(*written.next);
      } catch (const fhir::SourceUrlError& error) {
        throw JobFailure(std::string("stopped following the source's paging: ") + error.what());
      }
      if (pages_seen_.contains(*next)) {
        throw JobFailure("stopped following the source's paging: the next link of page " + std::to_string(number) +
                         " points back to a page already read (" + origin_and_path(*next) +
                         "); the source's paging loops");
      }
    }
    const fhir::TransformedPage& transformed = written.summary;
    log_page(transformed, number);
    if (next) {
      // Overlap: fetch and transform the next page while this one is written, on this job's executor
      // (so its log lines carry the job's id). Named first: GCC 12 and temporaries in a co_await
      // expression (see RunnerContext::run_sql).
      prefetch_ = std::make_shared<Prefetch>(context_.strand, *next, transform);
      prefetch_->body_buffer = std::move(spare_body_);
      prefetch_->transaction_buffer = std::move(spare_transaction_);  // (the page before this one's)
      const auto executor = co_await asio::this_coro::executor;
      asio::co_spawn(executor, fetch_and_read(source_, prefetch_),
                     [pending = prefetch_](std::exception_ptr error) { pending->complete(error); });
    }

    // 3. Write (while the pages before are recorded), 4. record (with the pages written after it, at
    // most every exchange.recordIntervalMilliseconds, while they are written).
    co_await write(written, number);
    status = co_await record_written(status, written.summary, next);
    url = next;
  }
  co_await recorded(status);
  if (prefetch_) co_await settle(prefetch_);
  if (source_error_) {
    // Every page was written, but the source said its results are not whole: not COMPLETED.
    throw JobFailure("the source reported that its results are not complete (" + *source_error_ +
                     "); every page it sent was written; see warnings");
  }
  co_await finish(JobStatus::kCompleted, std::nullopt);
  co_return Outcome::kCompleted;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

asio::awaitable<ExchangeJob::Outcome> ExchangeJob::stop_here() {
  if (prefetch_) co_await settle(prefetch_);
  co_await recorded(JobStatus::kStopping);  // (the counts in the Task are those recorded)
  co_await finish(JobStatus::kStopped, std::nullopt);
  co_return Outcome::kStopped;
}

void ExchangeJob::log_page(const fhir::TransformedPage& transformed, int number) {
  const long long id = job_.id;
  for (const auto& [type, count] : transformed.skipped_types) {
    if (skipped_logged_.insert(type).second) {  // the job's first of that type
      spdlog::warn("job {}: the source sent {} resource(s) of type {}, which is not exchanged "
                   "(exchange.resourceTypes); skipped, and counted in resourcesSkipped",
                   id, count, type);
    }
  }
  for (std::size_t i = 0; i < transformed.warnings.size() && i < 5; ++i) {  // the log is not the store
    spdlog::warn("job {}: page {}: the source says: {}", id, number, transformed.warnings[i]);
  }
  if (transformed.references_replaced > 0) {
    spdlog::info("job {}: page {}: {} reference(s) that would have resolved against the target's own data "
                 "were kept as identifier or display only",
                 id, number, transformed.references_replaced);
  }
}

asio::awaitable<void> ExchangeJob::write(fhir::WrittenPage& page, int number) {
  if (page.summary.target_references.empty()) {  // nothing of this page is exchanged
    keep_for_reuse(spare_transaction_, std::move(page.transaction));
    co_return;
  }
  const std::string what = "page " + std::to_string(number);
  const Verify all_stored = transaction_stored(page.entries);
  const std::string post = "POST";
  const std::string base_path;
  std::string transaction = std::move(page.transaction);
  // The page's Provenance, when it is pointed at the written versions afterwards.
  const bool versioned = context_.config.versioned_references;
  json provenance;
  if (versioned) provenance = json::parse(page.provenance);
  std::string spent;
  const std::string result = co_await target_.send(post, base_path, std::move(transaction), what, all_stored, &spent);
  keep_for_reuse(spare_transaction_, std::move(spent));
  if (versioned) {
    const std::string& provenance_id = page.summary.provenance_id;
    const Verify stored = updated("Provenance", provenance_id);
    std::string body = fhir::versioned_provenance(provenance, json::parse(result, nullptr, false)).dump();
    const std::string path = "Provenance/" + provenance_id;
    const std::string provenance_what = "the page's Provenance";
    const std::string put = "PUT";
    co_await target_.send(put, path, std::move(body), provenance_what, stored);
  }
}

store::PagesRecord page_record(const fhir::TransformedPage& page, const std::optional<std::string>& next) {
  store::PagesRecord record;
  record.next_url = next;
  record.resources_written = static_cast<int>(page.target_references.size());
  record.skipped = {page.skipped_types.begin(), page.skipped_types.end()};
  record.warnings = page.warnings;
  record.source_error = page.source_error;
  record.resources_total = page.total;
  return record;
}

asio::awaitable<JobStatus> ExchangeJob::record(const store::PagesRecord& pages) {
  const long long id = job_.id;
  const auto& owner = context_.owner;
  const int before = pages_;  // (records are made one at a time: each is awaited before the next starts)
  const auto recorded = co_await context_.on_jobs([id, &owner, before, &pages](store::BatchJobRepository& jobs) {
    return jobs.record_pages(id, owner, before, pages);
  });
  if (!recorded) throw JobLeft();
  progress_at_ = Clock::now();
  for (const auto& [type, count] : pages.skipped) skipped_[type] += count;
  for (const auto& warning : pages.warnings) {
    if (warnings_.size() < store::kKeptWarnings) warnings_.push_back(warning);  // as the job keeps them
  }
  if (!source_error_) source_error_ = pages.source_error;
  pages_ += pages.pages;
  resources_ += pages.resources_written;
  context_.metrics.pages.inc(static_cast<std::uint64_t>(pages.pages));
  context_.metrics.resources.inc(static_cast<std::uint64_t>(pages.resources_written));
  co_return *recorded;
}

asio::awaitable<JobStatus> ExchangeJob::record_written(JobStatus status, const fhir::TransformedPage& page,
                                                       const std::optional<std::string>& next) {
  if (unrecorded_) {
    unrecorded_->add(page_record(page, next));
  } else {
    unrecorded_ = page_record(page, next);
  }
  if (recording_ && !recording_->taken) co_return status;  // waiting for its time: it takes this page too
  if (recording_) status = co_await recorded(status);       // (in flight: it lands before the next one starts)
  const auto interval = std::chrono::milliseconds(context_.config.record_interval_milliseconds);
  const auto at = record_started_ ? *record_started_ + interval : Clock::now();  // (the first page's at once)
  auto pending = std::make_shared<Recording>(context_.strand, at);
  recording_ = pending;
  const auto executor = co_await asio::this_coro::executor;  // the job's: its log lines carry the job's id
  asio::co_spawn(executor, record_into(pending), [pending](std::exception_ptr error) { pending->complete(error); });
  co_return status;
}

asio::awaitable<void> ExchangeJob::record_into(std::shared_ptr<Recording> pending) {
  co_await pending->due.async_wait(asio::as_tuple(asio::use_awaitable));  // its time, or start_now()
  pending->taken = true;
  if (!unrecorded_) co_return;
  const store::PagesRecord pages = std::move(*unrecorded_);
  unrecorded_.reset();
  record_started_ = Clock::now();
  pending->status = co_await record(pages);
}

asio::awaitable<JobStatus> ExchangeJob::recorded(JobStatus status) {
  if (!recording_) co_return status;
  recording_->start_now();
  co_await settle(recording_);
  const auto last = std::move(recording_);
  if (last->error) std::rethrow_exception(last->error);
  co_return last->status.value_or(status);
}

}  // namespace p2p::jobs
