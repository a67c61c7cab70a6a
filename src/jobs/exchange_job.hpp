#pragma once
// One batch job's run on this instance, from its claim to how it ends here. The page loop is four
// steps, each its own function:
//
//   fetch (the source session)
//   → transform (fhir::write_page: allow-list, reference rules, Provenance)
//   → write (the target writer: only what the target shows stored counts)
//   → record (fenced by the lease: progress, skipped types, the source's warnings)
//
// pipelined one page deep: while page N is written, page N+1 is fetched and transformed and the record
// of the pages before is made. A record covers the pages written since the one before it, and is made
// at most every exchange.recordIntervalMilliseconds (each page's, when pages come slower than that), and
// at once when the job ends, stops, fails or pauses. Records are made in order, each after its pages are
// written; a page written but not recorded (a crash, a lost lease) is written again by whoever resumes
// the job, to the same ids. The
// page loop is in page_pipeline.cpp, its work in flight in page_pipeline.hpp; the payer flow's steps
// (member match, bulk export) in payer_flow.cpp; the job's start and end here, in exchange_job.cpp.
//
// A run ends in one of five explicit outcomes: COMPLETED or STOPPED (the job ends), FAILED (it ends
// with a reason), paused (an outage: the lease is given up, the tokens kept, any instance resumes it
// later) or left (the lease was lost, or the service is stopping: the next holder goes on). Only the
// first three write the tracking Task, and only while this instance still holds the lease.
// Private to src/jobs.
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "p2p/store/batch_job_repository.hpp"
#include "source_session.hpp"
#include "target_writer.hpp"

#include "p2p/fhir/page_stream.hpp"

namespace p2p::jobs {

struct RunnerContext;

class ExchangeJob {
 public:
  ExchangeJob(RunnerContext& context, store::ClaimedJob claimed);
  ~ExchangeJob();
  ExchangeJob(const ExchangeJob&) = delete;
  ExchangeJob& operator=(const ExchangeJob&) = delete;

  // Runs the job until it ends, pauses or is left; never throws.
  boost::asio::awaitable<void> run();

 private:
  enum class Outcome { kCompleted, kStopped, kFailed, kPaused, kLeft };
  struct Prefetch;
  struct Recording;

  // Gets the job ready (the source's definition checked again, the tracking Task, the payer flow's
  // match), then reads it: read_pages() or run_export(). Returns kCompleted or kStopped once the job has
  // ended, throws JobFailure, JobPause or JobLeft for the other outcomes.
  boost::asio::awaitable<Outcome> run_pages();
  // The page loop (page_pipeline.cpp), from job_.next_url to the last page; ends the job like run_pages.
  boost::asio::awaitable<Outcome> read_pages();
  // Ends the job STOPPED (a cancel): the page fetched ahead dropped, the last record awaited.
  boost::asio::awaitable<Outcome> stop_here();
  fhir::TransformContext transform_context() const;
  boost::asio::awaitable<void> write(fhir::WrittenPage& page, int number);
  // Records written pages now (fenced by the lease and the pages recorded before); returns the job's status.
  boost::asio::awaitable<store::JobStatus> record(const store::PagesRecord& pages);
  // A page just written joins the pages waiting for their record. Unless a record is already waiting
  // for its time (it takes this page too), the record in flight is awaited and the next one is started
  // (recording_): it takes the pages written by then at exchange.recordIntervalMilliseconds after the
  // last record started. Returns the status the record awaited brought back (or `status`).
  boost::asio::awaitable<store::JobStatus> record_written(store::JobStatus status, const fhir::TransformedPage& page,
                                                          const std::optional<std::string>& next);
  boost::asio::awaitable<void> record_into(std::shared_ptr<Recording> pending);
  // Every page written so far recorded (a record waiting for its time starts now): the status the last
  // record returned (or `status` when there was none); rethrows what it threw.
  boost::asio::awaitable<store::JobStatus> recorded(store::JobStatus status);
  void log_page(const fhir::TransformedPage& transformed, int number);

  boost::asio::awaitable<void> pause(const std::string& reason);
  boost::asio::awaitable<void> release();
  boost::asio::awaitable<void> fail(const std::string& reason);
  boost::asio::awaitable<void> finish(store::JobStatus status, const std::optional<std::string>& reason);
  boost::asio::awaitable<bool> still_held();
  boost::asio::awaitable<void> put_task(const std::string& status, const std::optional<std::string>& reason);

  // The payer flow (docs/exchange.md, "Payer-mediated exchange"): the member's Consent stored on the
  // target (the tracking Task's focus), then HRex $member-match at the source, which gives the member's
  // Patient id there and so the first page; a 422 ends the job FAILED (no-match or consent-refused).
  bool payer_flow() const { return job_.flow == "payer"; }
  std::string consent_id() const { return "p2p-batch-job-" + std::to_string(job_.id) + "-consent"; }
  boost::asio::awaitable<void> put_consent();
  // Returns the job's status once the match is recorded (STOPPING when a cancel came meanwhile).
  boost::asio::awaitable<store::JobStatus> match_member();
  boost::asio::awaitable<store::JobStatus> record_member_match(const std::string& state,
                                                               const std::optional<std::string>& patient_id,
                                                               const std::optional<std::string>& first_url);
  // A payer-mediated job resumed after its match: throws JobFailure when the match was refused (a
  // run that stopped between recording the 422 and ending FAILED).
  void require_matched() const;

  // retrieval "export" (payer_flow.cpp): after the match, instead of the page loop. Kicks off
  // Patient/{id}/$export (unless a status URL is recorded), polls it until the manifest (unless one
  // is recorded), then reads the files from the recorded cursor, each chunk of exchange.pageSize lines
  // written and recorded like a page. Ends the job like run_pages.
  boost::asio::awaitable<Outcome> run_export();
  boost::asio::awaitable<store::JobStatus> kick_off_export(const std::string& endpoint);
  boost::asio::awaitable<store::JobStatus> await_export_manifest(const std::string& endpoint);
  boost::asio::awaitable<store::JobStatus> record_export(const std::string& status_url,
                                                         const std::optional<std::string>& progress);
  boost::asio::awaitable<void> delete_export();
  // delete_export when the job has a status URL, never throwing (the job ends anyway).
  boost::asio::awaitable<void> forget_export();
  boost::asio::awaitable<Outcome> stop_export();

  RunnerContext& context_;
  TargetWriter target_;
  store::BatchJob job_;
  std::optional<std::string> member_match_request_;  // the payer flow: the $member-match Parameters (JSON text)
  SourceSession source_;
  std::string task_id_;
  int pages_ = 0;
  int resources_ = 0;
  std::map<std::string, long long> skipped_;  // resources not exchanged, per type, as recorded
  std::set<std::string> skipped_logged_;      // the types log_page has warned about (pages are logged before they are recorded)
  std::vector<std::string> warnings_;         // what the source said about its results, as recorded
  std::optional<std::string> source_error_;   // the first of them of severity error or fatal
  std::set<std::string> pages_seen_;          // page URLs read by this run (a next link back to one is a loop)
  std::chrono::steady_clock::time_point progress_at_;  // the last page recorded (or the start): outage tolerance
  std::shared_ptr<Prefetch> prefetch_;        // in flight or done; it refers to source_, so it is awaited before run() ends
  std::string spare_body_;                    // buffers reused from page to page (keep_for_reuse)
  std::string spare_transaction_;
  std::shared_ptr<Recording> recording_;      // waiting, in flight or done; it refers to this job, so it is awaited before run() ends
  std::optional<store::PagesRecord> unrecorded_;  // pages written, not yet taken by a record
  std::optional<std::chrono::steady_clock::time_point> record_started_;  // when the last record started
};

}  // namespace p2p::jobs
