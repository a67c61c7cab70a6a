// The payer-mediated flow's own steps of an ExchangeJob (docs/exchange.md, "Payer-mediated
// exchange"): the member's Consent on the target, HRex $member-match at the source, and retrieval by
// bulk export (Patient/{id}/$export: kick-off, status polling, the manifest's NDJSON files in chunks
// of exchange.pageSize, each written and recorded like a page). The page loop itself is in
// page_pipeline.cpp.
#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "exchange_job.hpp"
#include "p2p/fhir/bulk_export.hpp"
#include "p2p/fhir/member_match.hpp"
#include "p2p/fhir/page_stream.hpp"
#include "p2p/fhir/page_transform.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/jobs/tracking_task.hpp"
#include "p2p/util/text.hpp"
#include "page_pipeline.hpp"
#include "runner_context.hpp"

namespace p2p::jobs {

namespace asio = boost::asio;
using nlohmann::json;
using store::JobStatus;

asio::awaitable<void> ExchangeJob::put_consent() {
  if (!member_match_request_) throw JobFailure("the job's member-match request is missing (it is deleted when a job ends)");
  const std::string id = consent_id();
  json consent;
  try {
    consent = fhir::consent_for_target(json::parse(*member_match_request_), id, job_.target_patient_id,
                                       context_.config.exchange_tag_system, "batch-job-" + std::to_string(job_.id));
  } catch (const std::exception& error) {
    throw JobFailure(std::string("the job's member-match request cannot be read: ") + error.what());
  }
  // Named, not built inside the co_await expression (GCC 12 and temporaries there, see run_sql).
  const Verify stored = updated("Consent", id);
  std::string body = consent.dump();
  const std::string method = "PUT";
  const std::string path = "Consent/" + id;
  const std::string what = "the member's Consent";
  co_await target_.send(method, path, std::move(body), what, stored);
}

// GCC 12: see run_pages.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
asio::awaitable<JobStatus> ExchangeJob::match_member() {
  if (!member_match_request_) throw JobFailure("the job's member-match request is missing (it is deleted when a job ends)");
  const std::string endpoint = util::without_trailing_slashes(*source_.server().definition.fhir_endpoint);
  http::ClientRequest post;
  post.method = "POST";
  std::string url;
  try {  // from the definition as it is now (an admin may have moved the endpoint since the job was created)
    url = fhir::member_match_url(endpoint);
  } catch (const fhir::SourceUrlError& error) {
    throw JobFailure(std::string("cannot call $member-match: ") + error.what());
  }
  post.url = url;
  post.headers.emplace_back("Content-Type", "application/fhir+json");
  post.headers.emplace_back("Accept", "application/fhir+json");
  post.body = *member_match_request_;
  post.max_response_bytes = 1024 * 1024;
  const http::ClientResponse answer = co_await source_.call(std::move(post));
  if (answer.status == 422) {
    // HRex: no unique match, or a match whose consent the source will not honour. Said once, kept.
    const std::string text = outcome_text(answer.body, /*echo_body=*/false);
    const std::string kind = fhir::refusal_kind(text);
    const std::string state = json{{"result", kind}, {"detail", text}}.dump(-1, ' ', false, json::error_handler_t::replace);
    const std::optional<std::string> not_found;  // named: see RunnerContext::run_sql
    co_await record_member_match(state, not_found, not_found);
    job_.member_match = state;
    require_matched();  // throws: the job ends FAILED, saying why
  }
  if (answer.status != 200) {
    throw JobFailure("the source payer answered " + std::to_string(answer.status) + " to $member-match at " +
                     origin_and_path(url) + ": " + outcome_text(answer.body, /*echo_body=*/false));
  }
  fhir::MemberMatchAnswer matched;
  try {
    matched = fhir::read_member_match_answer(answer.body, endpoint);
  } catch (const std::invalid_argument& error) {
    throw JobFailure(error.what());
  }
  std::string patient_id;
  if (matched.member_id) {
    patient_id = *matched.member_id;
  } else {
    // No MemberId (HRex 1.0.0, some servers): the Patient with the MemberIdentifier, exactly one.
    std::string search;
    try {
      search = fhir::patient_by_identifier_url(endpoint, matched.member_identifier.value("system", ""),
                                               matched.member_identifier["value"].get<std::string>());
    } catch (const fhir::SourceUrlError& error) {
      throw JobFailure(std::string("cannot search the source payer's Patients by the member identifier: ") + error.what());
    }
    const http::ClientResponse found = co_await source_.fetch(search);
    try {
      patient_id = fhir::single_patient_id(found.body);
    } catch (const std::invalid_argument& error) {
      throw JobFailure(error.what());
    }
  }
  std::string first;
  try {
    first = fhir::everything_url(endpoint, patient_id, job_.since);
  } catch (const fhir::SourceUrlError& error) {
    throw JobFailure(error.what());
  }
  const std::string state = json{{"result", "matched"},
                                 {"memberIdentifier", matched.member_identifier},
                                 {"sourcePatientId", patient_id}}
                                .dump(-1, ' ', false, json::error_handler_t::replace);
  const std::optional<std::string> found = patient_id, first_page = first;  // named: see RunnerContext::run_sql
  const JobStatus status = co_await record_member_match(state, found, first_page);
  job_.member_match = state;
  job_.source_patient_id = patient_id;
  job_.next_url = first;
  spdlog::info("job {}: the source payer matched the member{}", job_.id,
               matched.member_id ? "" : " (found by the member identifier it returned)");
  co_return status;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

asio::awaitable<JobStatus> ExchangeJob::record_member_match(const std::string& state,
                                                           const std::optional<std::string>& patient_id,
                                                           const std::optional<std::string>& first_url) {
  const long long id = job_.id;
  const auto& owner = context_.owner;
  const auto status = co_await context_.on_jobs([id, &owner, &state, &patient_id, &first_url](store::BatchJobRepository& jobs) {
    return jobs.record_member_match(id, owner, state, patient_id, first_url);
  });
  if (!status) throw JobLeft();
  co_return *status;
}

void ExchangeJob::require_matched() const {
  const json state = json::parse(job_.member_match.value_or("{}"), nullptr, false);
  const std::string result = state.is_object() ? state.value("result", "") : "";
  if (result == "matched") return;
  const std::string detail = state.is_object() ? state.value("detail", "") : "";
  throw JobFailure(result == "consent-refused"
                       ? "the source payer will not honour the member's consent ($member-match answered 422): " + detail
                       : "the source payer found no unique match for the member ($member-match answered 422): " + detail +
                             "; check the demographics and the old payer's member id (coverageToMatch)");
}

// --- bulk export (retrieval "export") ------------------------------------------------------------

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
asio::awaitable<ExchangeJob::Outcome> ExchangeJob::run_export() {
  const auto& config = context_.config;
  const long long id = job_.id;
  const std::string endpoint = util::without_trailing_slashes(*source_.server().definition.fhir_endpoint);
  if (!job_.export_manifest) {
    JobStatus status = job_.status;
    if (!job_.export_status_url) status = co_await kick_off_export(endpoint);
    if (status != JobStatus::kStopping) status = co_await await_export_manifest(endpoint);
    if (status == JobStatus::kStopping) {
      const Outcome stopped = co_await stop_export();
      co_return stopped;
    }
  }
  const fhir::ExportManifest manifest = fhir::manifest_from_json(*job_.export_manifest);
  const json cursor = json::parse(job_.export_cursor.value_or("{}"), nullptr, false);
  std::size_t file = cursor.is_object() ? cursor.value("file", std::size_t{0}) : 0;
  std::size_t line = cursor.is_object() ? cursor.value("line", std::size_t{0}) : 0;
  spdlog::info("job {}: reading the source's export: {} file(s), from file {} line {}", id, manifest.output.size(),
               file + 1, line + 1);
  fhir::TransformContext transform = transform_context();
  int number = pages_;
  for (; file < manifest.output.size(); ++file, line = 0) {
    const fhir::ExportFile& output = manifest.output[file];
    http::ClientRequest get;
    get.url = output.url;
    get.headers.emplace_back("Accept", "application/fhir+ndjson");
    get.max_response_bytes = config.max_page_bytes;
    const http::ClientResponse response = co_await source_.call(std::move(get), manifest.requires_access_token);
    if (response.status != 200) {
      throw JobFailure("the source payer answered " + std::to_string(response.status) + " for its export file " +
                       origin_and_path(output.url) + ": " + outcome_text(response.body, /*echo_body=*/false) +
                       " (export files may expire: start a new job)");
    }
    const auto lines = fhir::ndjson_lines(response.body);
    const std::size_t chunk_size = static_cast<std::size_t>(config.page_size);
    const std::size_t chunks_left = line < lines.size() ? (lines.size() - line + chunk_size - 1) / chunk_size : 0;
    if (static_cast<std::size_t>(number) + chunks_left > static_cast<std::size_t>(config.max_pages)) {
      throw JobFailure("the source's export needs more than " + std::to_string(config.max_pages) +
                       " chunks of exchange.pageSize resources (exchange.maxPages); raise exchange.maxPages or "
                       "exchange.pageSize");
    }
    while (line < lines.size()) {
      ++number;
      context_.check_still_ours(id);
      const std::size_t to = std::min(lines.size(), line + chunk_size);
      fhir::WrittenPage written;
      try {
        std::string chunk = fhir::chunk_bundle(lines, line, to);
        // One page Provenance per chunk (its id comes from this): the file and the lines it holds.
        transform.source_page_url =
            origin_and_path(output.url) + "#lines=" + std::to_string(line + 1) + "-" + std::to_string(to);
        transform.recorded = utc_now();
        written = fhir::write_page(chunk, transform, std::move(spare_transaction_));
      } catch (const std::invalid_argument& error) {
        throw JobFailure("the source payer's export file " + origin_and_path(output.url) + " cannot be read from line " +
                         std::to_string(line + 1) + ": " + error.what());
      } catch (const std::exception& error) {  // PageNotJson, json::exception: a line is not FHIR JSON
        throw JobFailure("the source payer's export file " + origin_and_path(output.url) + " has lines " +
                         std::to_string(line + 1) + "-" + std::to_string(to) + " this service cannot read (" +
                         error.what() + ")");
      }
      log_page(written.summary, number);
      co_await write(written, number);
      // Recorded with the place to go on from, so a resumed job reads no line twice and skips none.
      const std::optional<std::string> next_cursor =
          (to < lines.size() ? json{{"file", file}, {"line", to}} : json{{"file", file + 1}, {"line", 0}}).dump();
      const std::optional<std::string> no_next_link;
      store::PagesRecord chunk_record = page_record(written.summary, no_next_link);
      chunk_record.export_cursor = next_cursor;
      const JobStatus status = co_await record(chunk_record);
      job_.export_cursor = next_cursor;
      line = to;
      if (status == JobStatus::kStopping) {
        const Outcome stopped = co_await stop_export();
        co_return stopped;
      }
    }
  }
  // What the source said went wrong (Bulk Data's error files): warnings are logged, an error or a
  // fatal issue means the export is not complete.
  std::vector<std::string> errors;
  for (const auto& url : manifest.error_urls) {
    http::ClientRequest get;
    get.url = url;
    get.headers.emplace_back("Accept", "application/fhir+ndjson");
    get.max_response_bytes = config.max_response_bytes;
    const http::ClientResponse response = co_await source_.call(std::move(get), manifest.requires_access_token);
    if (response.status != 200) {
      errors.push_back("its error file " + origin_and_path(url) + " could not be read (" +
                       std::to_string(response.status) + ")");
      continue;
    }
    for (const auto& issue : fhir::export_issues(response.body)) {
      if (issue.severity == "error" || issue.severity == "fatal") {
        errors.push_back(issue.text);
      } else {
        spdlog::warn("job {}: the source's export says ({}): {}", id, issue.severity, issue.text);
      }
    }
  }
  co_await delete_export();  // every file is read: the source may let them go
  if (!errors.empty()) {
    throw JobFailure("the source payer's export reported " + std::to_string(errors.size()) + " error(s), the first: " +
                     errors.front() + "; its results are not complete, and every resource it exported was written");
  }
  if (source_error_) {
    throw JobFailure("the source reported that its results are not complete (" + *source_error_ +
                     "); every resource it sent was written; see warnings");
  }
  co_await finish(JobStatus::kCompleted, std::nullopt);
  co_return Outcome::kCompleted;
}

asio::awaitable<JobStatus> ExchangeJob::kick_off_export(const std::string& endpoint) {
  const auto& config = context_.config;
  std::vector<std::string> types;
  if (config.resource_types) {
    types = *config.resource_types;
  } else {
    types.assign(fhir::default_resource_types().begin(), fhir::default_resource_types().end());
  }
  http::ClientRequest get;
  try {
    get.url = fhir::export_kickoff_url(endpoint, job_.source_patient_id, types, job_.since);
  } catch (const fhir::SourceUrlError& error) {
    throw JobFailure(std::string("cannot start the source payer's export: ") + error.what());
  }
  const std::string url = get.url;
  get.headers.emplace_back("Accept", "application/fhir+json");
  // handling=lenient: a type the source does not export for a patient is left out, not an error.
  get.headers.emplace_back("Prefer", "respond-async, handling=lenient");
  const http::ClientResponse response = co_await source_.call(std::move(get));
  if (response.status != 202) {
    throw JobFailure("the source payer answered " + std::to_string(response.status) + " to the export kick-off at " +
                     origin_and_path(url) + " instead of 202 with a status URL (Bulk Data, Prefer: respond-async): " +
                     outcome_text(response.body, /*echo_body=*/false));
  }
  const auto location = response.header("Content-Location");
  if (!location) throw JobFailure("the source payer accepted the export but gave no Content-Location to poll");
  std::string status_url;
  try {  // the source's URL: the same rule as next links
    status_url = fhir::require_under_endpoint(endpoint, *location);
  } catch (const fhir::SourceUrlError& error) {
    throw JobFailure(std::string("the source payer's export status URL is refused: ") + error.what());
  }
  const std::optional<std::string> no_progress;
  const JobStatus status = co_await record_export(status_url, no_progress);
  job_.export_status_url = status_url;
  spdlog::info("job {}: the source payer started the export", job_.id);
  co_return status;
}

asio::awaitable<JobStatus> ExchangeJob::await_export_manifest(const std::string& endpoint) {
  const auto& config = context_.config;
  const std::string url = *job_.export_status_url;
  const auto give_up_at = Clock::now() + std::chrono::seconds(std::max(config.outage_tolerance_seconds, 60));
  for (;;) {
    http::ClientRequest get;
    get.url = url;
    get.headers.emplace_back("Accept", "application/json");
    const http::ClientResponse response = co_await source_.call(std::move(get));
    if (response.status == 200) {
      std::string manifest;
      try {
        manifest = fhir::manifest_json(fhir::read_export_manifest(response.body, endpoint));
      } catch (const fhir::SourceUrlError& error) {
        throw JobFailure(std::string("the source payer's export manifest lists a file URL that is refused: ") + error.what());
      } catch (const std::invalid_argument& error) {
        throw JobFailure(error.what());
      }
      const long long id = job_.id;
      const auto& owner = context_.owner;
      const auto status = co_await context_.on_jobs([id, &owner, &manifest](store::BatchJobRepository& jobs) {
        return jobs.record_export_manifest(id, owner, manifest);
      });
      if (!status) throw JobLeft();
      progress_at_ = Clock::now();  // (as the record does: the source's answers are progress)
      job_.export_manifest = manifest;
      job_.export_cursor = R"({"file": 0, "line": 0})";
      co_return *status;
    }
    if (response.status != 202) {
      throw JobFailure("the source payer's export failed: its status URL " + origin_and_path(url) + " answered " +
                       std::to_string(response.status) + ": " + outcome_text(response.body, /*echo_body=*/false));
    }
    const auto progress_header = response.header("X-Progress");
    const std::optional<std::string> progress =
        progress_header ? std::optional<std::string>(fhir::progress_text(*progress_header)) : std::nullopt;
    const JobStatus status = co_await record_export(url, progress);
    if (status == JobStatus::kStopping) co_return status;
    if (Clock::now() >= give_up_at) {
      throw JobFailure("the source payer's export did not finish within exchange.outageToleranceSeconds (" +
                       std::to_string(config.outage_tolerance_seconds) + " s) of polling");
    }
    // Retry-After as the source asks (Bulk Data), within 1 s and 5 minutes; 5 s when it does not say.
    const auto asked = retry_after(response).value_or(std::chrono::seconds(5));
    const auto wait = std::clamp(asked, std::chrono::seconds(1), std::chrono::seconds(300));
    co_await context_.sleep_for(std::chrono::duration_cast<std::chrono::milliseconds>(wait));
  }
}

asio::awaitable<JobStatus> ExchangeJob::record_export(const std::string& status_url,
                                                      const std::optional<std::string>& progress) {
  const long long id = job_.id;
  const auto& owner = context_.owner;
  const auto status = co_await context_.on_jobs([id, &owner, &status_url, &progress](store::BatchJobRepository& jobs) {
    return jobs.record_export_status(id, owner, status_url, progress);
  });
  if (!status) throw JobLeft();
  progress_at_ = Clock::now();
  co_return *status;
}

// Asks the source to let the export go (Bulk Data: DELETE the status URL), on cancel and once every
// file is read. Best effort: the job's outcome does not depend on it.
asio::awaitable<void> ExchangeJob::delete_export() {
  if (!job_.export_status_url) co_return;
  http::ClientRequest del;
  del.method = "DELETE";
  del.url = *job_.export_status_url;
  std::string failed;
  try {
    const http::ClientResponse response = co_await source_.call(std::move(del));
    if (response.status >= 300 && response.status != 404) failed = "it answered " + std::to_string(response.status);
  } catch (const JobLeft&) {
    throw;
  } catch (const std::exception& error) {
    failed = error.what();
  }
  if (!failed.empty()) spdlog::warn("job {}: could not delete the source payer's export: {}", job_.id, failed);
}

asio::awaitable<void> ExchangeJob::forget_export() {
  if (job_.retrieval != "export" || !job_.export_status_url) co_return;
  try {
    co_await delete_export();
  } catch (const std::exception& error) {
    spdlog::info("job {}: the source payer's export is left to expire ({})", job_.id, error.what());
  }
}

asio::awaitable<ExchangeJob::Outcome> ExchangeJob::stop_export() {
  co_await delete_export();
  co_await finish(JobStatus::kStopped, std::nullopt);
  co_return Outcome::kStopped;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace p2p::jobs
