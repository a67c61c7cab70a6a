#include "exchange_job.hpp"

#include <chrono>
#include <exception>
#include <memory>

#include <spdlog/spdlog.h>

#include "p2p/fhir/page_transform.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/jobs/tracking_task.hpp"
#include "p2p/store/oidc_server_repository.hpp"
#include "page_pipeline.hpp"
#include "runner_context.hpp"

namespace p2p::jobs {

namespace asio = boost::asio;
using store::JobStatus;

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
  if (recording_) {  // the record of the pages written before the one that failed: made now
    recording_->start_now();
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
        spdlog::warn("job {}: recording the pages before the one that failed failed too: {}", id, error.what());
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

  const Outcome read = co_await read_pages();
  co_return read;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

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

