#include "exchange_job.hpp"

#include <chrono>
#include <exception>
#include <memory>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "p2p/fhir/page_transform.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/jobs/tracking_task.hpp"
#include "p2p/store/oidc_server_repository.hpp"
#include "p2p/util/text.hpp"
#include "runner_context.hpp"

namespace p2p::jobs {

namespace asio = boost::asio;
using nlohmann::json;
using store::JobStatus;

// The next page, fetched and transformed while the current one is written (the runner's thread is
// free while the target answers). Completed by its own coroutine; the job waits on `signal`
// (cancelled on completion). Everything runs on the runner's strand. A failure is kept, and acted on
// only when the job comes to this page: after the current one is written and recorded, as if the
// page had been read then.
namespace {

// Work a job started in a coroutine of its own: complete() from that coroutine's completion handler;
// settle() waits for it. Everything runs on the runner's strand.
struct InFlight {
  explicit InFlight(const asio::any_io_executor& strand) : signal(strand, asio::steady_timer::time_point::max()) {}
  void complete(std::exception_ptr failure) {
    if (failure) error = failure;
    done = true;
    signal.cancel();
  }
  bool done = false;
  std::exception_ptr error;
  asio::steady_timer signal;
};

}  // namespace

struct ExchangeJob::Prefetch : InFlight {
  Prefetch(const asio::any_io_executor& strand, std::string next, const fhir::TransformContext& context)
      : InFlight(strand), url(std::move(next)), transform(context) {}
  std::string url;
  fhir::TransformContext transform;
  // Storage reused from the pages before (keep_for_reuse): the body's buffer goes to the fetch, and
  // comes back once the transaction is written from it, for the next page.
  std::string body_buffer;
  std::string transaction_buffer;
  // (InFlight::error is the fetch's)
  std::exception_ptr unreadable;  // the transform's (see read_page)
  fhir::WrittenPage written;
};

// A written page's record, made while the next page is written. Completed by its own coroutine
// (start_record); awaited by recorded(), or by run() when the job ends otherwise.
struct ExchangeJob::Recording : InFlight {
  using InFlight::InFlight;
  JobStatus status = JobStatus::kStarted;
};

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

// Waits for a prefetch to complete, whatever its outcome.
template <typename Pending>
asio::awaitable<void> settle(const std::shared_ptr<Pending>& pending) {
  while (!pending->done) co_await pending->signal.async_wait(asio::as_tuple(asio::use_awaitable));
}

// The page path on a fetched page: the transaction written from its body (fhir/page_stream.hpp). What
// it throws is returned, for the job to word when it comes to this page (ExchangeJob::run_pages).
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

ExchangeJob::ExchangeJob(RunnerContext& context, store::ClaimedJob claimed)
    : context_(context),
      target_(context),
      job_(std::move(claimed.job)),
      member_match_request_(std::move(claimed.member_match_request)),
      source_(context, job_.id, job_.flow == "payer" ? SourceSession::Kind::kBackend : SourceSession::Kind::kMember,
              job_.source_patient_id, std::move(claimed.access_token), std::move(claimed.refresh_token)),
      task_id_(job_.task_id.value_or("p2p-batch-job-" + std::to_string(job_.id))),
      pages_(job_.pages_completed),
      resources_(job_.resources_written),
      skipped_(job_.resources_skipped),
      warnings_(job_.warnings),
      source_error_(job_.source_error),
      progress_at_(Clock::now() - std::chrono::seconds(job_.seconds_since_progress)) {
  for (const auto& [type, count] : skipped_) skipped_logged_.insert(type);
}

ExchangeJob::~ExchangeJob() = default;

asio::awaitable<void> ExchangeJob::run() {
  const long long id = job_.id;  // (log lines carry "job-<id>": the job runs on a RequestIdExecutor)
  Outcome outcome = Outcome::kLeft;
  std::optional<std::string> reason;  // set in a handler, acted on after it (no co_await there)
  bool database_down = false;
  try {
    outcome = co_await run_pages();
  } catch (const JobLeft&) {
    outcome = Outcome::kLeft;
  } catch (const JobFailure& failure) {
    outcome = Outcome::kFailed;
    reason = failure.what();
  } catch (const JobPause& pause) {
    outcome = Outcome::kPaused;
    reason = pause.what();
  } catch (const store::DatabaseUnavailable& error) {
    outcome = Outcome::kLeft;
    database_down = true;
    spdlog::warn("job {}: database unavailable ({}); the job resumes when its lease expires", id, error.what());
  } catch (const std::exception& error) {
    outcome = Outcome::kFailed;
    reason = std::string("unexpected error: ") + error.what();
  }
  if (prefetch_) co_await settle(prefetch_);  // its coroutine refers to this job's source session
  if (recording_) {  // the previous page's record, in flight when the page after it failed
    co_await settle(recording_);
    const auto last = std::move(recording_);
    if (last->error && outcome != Outcome::kLeft) {
      try {
        std::rethrow_exception(last->error);
      } catch (const JobLeft&) {
        outcome = Outcome::kLeft;  // the lease is someone else's: so is what happens to the job
      } catch (const store::DatabaseUnavailable& error) {
        outcome = Outcome::kLeft;
        database_down = true;
        spdlog::warn("job {}: database unavailable ({}); the job resumes when its lease expires", id, error.what());
      } catch (const std::exception& error) {
        spdlog::warn("job {}: recording the page before the one that failed failed too: {}", id, error.what());
      }
    }
  }
  if (outcome == Outcome::kPaused) {
    const auto idle = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - progress_at_);
    if (idle.count() >= context_.config.outage_tolerance_seconds) {
      outcome = Outcome::kFailed;
      *reason += "; no progress for " + std::to_string(idle.count()) + " s, more than exchange.outageToleranceSeconds (" +
                 std::to_string(context_.config.outage_tolerance_seconds) + " s)";
    }
  }
  switch (outcome) {
    case Outcome::kCompleted:
    case Outcome::kStopped:
      break;  // ended by run_pages
    case Outcome::kPaused:
      co_await pause(*reason);
      break;
    case Outcome::kFailed:
      co_await forget_export();
      co_await fail(*reason);
      break;
    case Outcome::kLeft:
      if (database_down) break;  // said above; the lease lapses
      spdlog::info("job {}: left for the next holder of its lease", id);
      if (context_.stop.requested()) co_await release();  // hand the job over now rather than when the lease expires
      break;
  }
}

fhir::TransformContext ExchangeJob::transform_context() const {
  const auto& config = context_.config;
  const auto& definition = source_.server().definition;
  fhir::TransformContext transform;
  transform.source_fhir_endpoint = definition.fhir_endpoint.value_or("");
  transform.target_fhir_endpoint = config.fhir_persistence_url;
  transform.source_organization_id = definition.organization_id.value_or("pid-" + std::to_string(job_.server_pid));
  transform.source_organization_name = definition.name;
  transform.source_patient_id = job_.source_patient_id;
  transform.target_patient_id = job_.target_patient_id;
  transform.traceability_system = config.traceability_system_base + transform.source_organization_id;
  transform.exchange_tag_system = config.exchange_tag_system;
  transform.exchange_tag_code = "batch-job-" + std::to_string(job_.id);
  if (config.resource_types) transform.resource_types = {config.resource_types->begin(), config.resource_types->end()};
  if (config.mdm_patient_identifier) {
    transform.mdm = fhir::MdmIdentifierType{config.mdm_patient_identifier->system, config.mdm_patient_identifier->code,
                                            config.mdm_patient_identifier->identifier_system};
  }
  return transform;
}

// GCC 12 reports the operator new/delete pair of this coroutine's own frame (Asio's awaitable_frame) as
// mismatched: a false positive of -Wmismatched-new-delete on inlined coroutine frames, silenced here only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
asio::awaitable<ExchangeJob::Outcome> ExchangeJob::run_pages() {
  const auto& config = context_.config;
  const long long id = job_.id;
  const int pid = job_.server_pid;
  auto server = co_await context_.run_sql(
      [pid](pqxx::connection& connection) { return store::OidcServerRepository(connection).find_for_exchange(pid); });
  if (!server) throw JobFailure("the OIDC server definition pid " + std::to_string(pid) + " no longer exists");
  source_.set_server(std::move(*server));
  // The definition may have changed since the API accepted the job: the same rule, again.
  const auto& endpoint = source_.server().definition.fhir_endpoint;
  switch (fhir::source_endpoint_problem(endpoint, config.allow_plain_http)) {
    case fhir::SourceEndpointProblem::kNone:
      break;
    case fhir::SourceEndpointProblem::kMissing:
      throw JobFailure("the OIDC server definition has no fhirEndpoint");
    case fhir::SourceEndpointProblem::kNotAbsoluteHttp:
      throw JobFailure("the OIDC server definition's fhirEndpoint is not an absolute http(s) URL; an admin must correct it");
    case fhir::SourceEndpointProblem::kPlainHttp:
      throw JobFailure("plain http:// endpoints are refused (set P2P_ALLOW_PLAIN_HTTP=true only for local tests)");
  }
  // (A plain http:// fhirPersistenceUrl never gets here: the configuration refuses it at start.)
  if (config.fhir_persistence_url.empty()) throw JobFailure("exchange.fhirPersistenceUrl is not configured");
  if (job_.status == JobStatus::kStopping) {
    co_await forget_export();  // a cancel that came while the job was paused: the source's export goes too
    co_await finish(JobStatus::kStopped, std::nullopt);
    co_return Outcome::kStopped;
  }
  if (!job_.task_id) {
    if (payer_flow()) co_await put_consent();  // before the Task that points at it
    const std::string in_progress = "in-progress";  // named: see RunnerContext::run_sql
    co_await put_task(in_progress, std::nullopt);
    const auto& owner = context_.owner;
    const auto& task_id = task_id_;
    co_await context_.on_jobs([id, &owner, &task_id](store::BatchJobRepository& jobs) { return jobs.set_task_id(id, owner, task_id); });
    job_.task_id = task_id_;
  }
  spdlog::info("job {}: running for source payer {} (pid {}), from page {}", id, source_.server().definition.name, pid,
               pages_ + 1);
  if (payer_flow() && !job_.member_match) {
    const JobStatus matched = co_await match_member();
    if (matched == JobStatus::kStopping) {  // cancelled while the source matched the member: no page is read
      co_await finish(JobStatus::kStopped, std::nullopt);
      co_return Outcome::kStopped;
    }
  } else if (payer_flow()) {
    require_matched();
  }
  if (payer_flow() && job_.retrieval == "export") {
    const Outcome exported = co_await run_export();
    co_return exported;
  }

  fhir::TransformContext transform = transform_context();
  std::optional<std::string> url = job_.next_url;
  // The status comes with each recorded page, so a cancel is seen without a query of its own, with the
  // next record that lands: the job then writes no further page. Records land while the next page is
  // written, so up to two pages can be written after a cancel arrives.
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

    // 3. Write (while the previous page's record is made), 4. record (while the next page is written).
    co_await write(written, number);
    status = co_await recorded(status);
    co_await start_record(std::move(written.summary), next);
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

asio::awaitable<JobStatus> ExchangeJob::record(const fhir::TransformedPage& transformed,
                                               const std::optional<std::string>& next,
                                               const std::optional<std::string>& cursor) {
  const long long id = job_.id;
  const auto& owner = context_.owner;
  const int written = static_cast<int>(transformed.target_references.size());
  const std::map<std::string, long long> skipped(transformed.skipped_types.begin(), transformed.skipped_types.end());
  const auto& page_warnings = transformed.warnings;
  const auto& page_error = transformed.source_error;
  const auto total = transformed.total;
  const int before = pages_;  // (records are made one at a time: recorded() is awaited before the next)
  const auto recorded = co_await context_.on_jobs(
      [id, &owner, before, &next, written, &skipped, &page_warnings, &page_error, &cursor,
       total](store::BatchJobRepository& jobs) {
        return jobs.record_page(id, owner, before, next, written, skipped, page_warnings, page_error, cursor, total);
      });
  if (!recorded) throw JobLeft();
  progress_at_ = Clock::now();
  for (const auto& [type, count] : skipped) skipped_[type] += count;
  for (const auto& warning : page_warnings) {
    if (warnings_.size() < 50) warnings_.push_back(warning);  // as the job keeps them
  }
  if (!source_error_) source_error_ = page_error;
  ++pages_;
  resources_ += written;
  context_.metrics.pages.inc();
  context_.metrics.resources.inc(static_cast<std::uint64_t>(written));
  co_return *recorded;
}

asio::awaitable<void> ExchangeJob::start_record(fhir::TransformedPage transformed, std::optional<std::string> next) {
  auto pending = std::make_shared<Recording>(context_.strand);
  recording_ = pending;
  const auto executor = co_await asio::this_coro::executor;  // the job's: its log lines carry the job's id
  // The page's summary and next link move into the coroutine's frame (parameters, not a lambda's
  // captures, which would not outlive this call).
  asio::co_spawn(executor, record_into(pending, std::move(transformed), std::move(next)),
                 [pending](std::exception_ptr error) { pending->complete(error); });
}

asio::awaitable<void> ExchangeJob::record_into(std::shared_ptr<Recording> pending, fhir::TransformedPage transformed,
                                               std::optional<std::string> next) {
  const std::optional<std::string> no_cursor;  // (pages of the source's own paging)
  pending->status = co_await record(transformed, next, no_cursor);
}

asio::awaitable<JobStatus> ExchangeJob::recorded(JobStatus status) {
  if (!recording_) co_return status;
  co_await settle(recording_);
  const auto last = std::move(recording_);
  if (last->error) std::rethrow_exception(last->error);
  co_return last->status;
}

asio::awaitable<void> ExchangeJob::release() {
  const long long id = job_.id;
  const auto& owner = context_.owner;
  try {
    co_await context_.on_jobs([id, &owner](store::BatchJobRepository& jobs) { return jobs.release(id, owner); });
  } catch (const std::exception& error) {
    spdlog::warn("job {}: could not hand the job over (it resumes when its lease expires): {}", id, error.what());
  }
}

// Gives the job up for exchange.maxBackoffSeconds, keeping its tokens; any instance resumes it then.
asio::awaitable<void> ExchangeJob::pause(const std::string& reason) {
  const long long id = job_.id;
  const auto& owner = context_.owner;
  const auto delay = std::chrono::seconds(context_.config.max_backoff_seconds);
  const std::string shown = "paused: " + reason + " (the job resumes by itself in " + std::to_string(delay.count()) +
                            " s; it fails after exchange.outageToleranceSeconds without progress)";
  spdlog::warn("job {}: {}", id, shown);
  try {
    const bool held = co_await context_.on_jobs([id, &owner, &shown, delay](store::BatchJobRepository& jobs) {
      return jobs.pause(id, owner, shown, delay);
    });
    if (held) context_.metrics.paused.inc();
  } catch (const std::exception& error) {
    spdlog::warn("job {}: could not record the pause (the job resumes when its lease expires): {}", id, error.what());
  }
}

asio::awaitable<void> ExchangeJob::fail(const std::string& reason) {
  spdlog::warn("job {}: failed: {}", job_.id, reason);
  try {
    co_await finish(JobStatus::kFailed, reason);
  } catch (const std::exception& error) {
    spdlog::error("job {}: could not record the failure (the job resumes when its lease expires): {}", job_.id,
                  error.what());
  }
}

// True while this instance still holds the job's lease (renewing it): checked before the final Task
// is written, so an instance that lost the job touches neither the target nor the job again.
asio::awaitable<bool> ExchangeJob::still_held() {
  const long long id = job_.id;
  const auto& owner = context_.owner;
  const auto lease = std::chrono::seconds(context_.config.lease_seconds);
  const auto held = co_await context_.on_jobs(
      [id, &owner, lease](store::BatchJobRepository& jobs) { return jobs.renew_leases(owner, lease, {id}); });
  co_return !held.empty();
}

asio::awaitable<void> ExchangeJob::finish(JobStatus status, const std::optional<std::string>& reason) {
  const long long id = job_.id;
  const auto& owner = context_.owner;
  const bool held = co_await still_held();
  if (!held) {
    spdlog::info("job {}: another instance holds it now; this one leaves it without a word to the target", id);
    co_return;
  }
  const std::string task_status = status == JobStatus::kCompleted ? "completed"
                                  : status == JobStatus::kStopped ? "cancelled"
                                                                  : "failed";
  if (!context_.config.fhir_persistence_url.empty() && !source_.server().definition.name.empty()) {
    std::optional<std::string> task_error;
    bool left = false;
    try {
      co_await put_task(task_status, reason);
    } catch (const JobLeft&) {
      left = true;  // the service is stopping (a retry's wait was cut short): the Task does not say it yet
    } catch (const std::exception& error) {
      task_error = error.what();
    }
    if (left) {
      spdlog::info("job {}: stopping before the tracking Task says \"{}\"; the next holder ends the job", id, task_status);
      if (context_.stop.requested()) co_await release();
      co_return;
    }
    if (task_error) {
      spdlog::warn("job {}: could not update the tracking Task: {}", id, *task_error);
    } else if (!job_.task_id) {
      const auto& task_id = task_id_;  // the Task exists now, whenever the job ended
      co_await context_.on_jobs([id, &owner, &task_id](store::BatchJobRepository& jobs) { return jobs.set_task_id(id, owner, task_id); });
    }
  }
  const int recorded = pages_;
  const auto& request = member_match_request_;  // a repeating payer-mediated job's next run asks again
  const bool ended = co_await context_.on_jobs([id, &owner, recorded, status, &reason, &request](store::BatchJobRepository& jobs) {
    return jobs.finish(id, owner, recorded, status, reason, request);
  });
  if (!ended) {
    spdlog::warn("job {}: could not end as {}: the lease was lost, or the database lost a page record in a crash; "
                 "whoever holds the job next goes on from what is stored",
                 id, store::to_string(status));
    co_return;
  }
  if (status == JobStatus::kCompleted) context_.metrics.completed.inc();
  if (status == JobStatus::kFailed) context_.metrics.failed.inc();
  if (status == JobStatus::kStopped) context_.metrics.stopped.inc();
  spdlog::info("job {}: {} ({} pages, {} resources)", id, store::to_string(status), pages_, resources_);
}

asio::awaitable<void> ExchangeJob::put_task(const std::string& status, const std::optional<std::string>& reason) {
  TrackingTaskFacts facts;
  facts.task_id = task_id_;
  facts.job_id = job_.id;
  facts.exchange_tag_system = context_.config.exchange_tag_system;
  facts.status = status;
  facts.reason = reason;
  facts.target_patient_id = job_.target_patient_id;
  facts.target_organization_id = job_.target_organization_id;
  facts.authored_on = job_.create_time;
  facts.last_modified = utc_now();
  facts.source_payer_name = source_.server().definition.name;
  facts.source_request = job_.first_url;
  facts.pages = pages_;
  facts.resources = resources_;
  facts.warnings = warnings_;
  facts.skipped = skipped_;
  if (payer_flow()) facts.focus = "Consent/" + consent_id();
  // Named, not built inside the co_await expression (GCC 12 and temporaries there, see run_sql).
  const Verify stored = updated("Task", task_id_);
  std::string task = tracking_task(facts).dump();
  const std::string method = "PUT";
  const std::string path = "Task/" + task_id_;
  const std::string what = "the tracking Task";
  co_await target_.send(method, path, std::move(task), what, stored);
}

}  // namespace p2p::jobs

