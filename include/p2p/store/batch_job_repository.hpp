#pragma once
// Table batch_jobs: the exchanges. The member's tokens are sealed (AES-256-GCM, bound to the job id)
// on the way in and opened only for the runner that holds the job's lease; they are deleted when the
// job ends. Runner updates are fenced by the lease owner, so an instance that lost its lease cannot
// overwrite the progress of the one that took the job over.
#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "p2p/crypto/token_cipher.hpp"
#include "p2p/store/job_status.hpp"

namespace p2p::store {

struct BatchJob {
  long long id = 0;
  int server_pid = 0;
  JobStatus status = JobStatus::kStarting;
  std::string job_configuration_name;
  std::string source_patient_id;
  std::string target_patient_id;
  std::optional<std::string> target_organization_id;
  std::string first_url;
  std::optional<std::string> next_url;
  std::optional<std::string> task_id;
  int pages_completed = 0;
  int resources_written = 0;
  std::optional<long long> resources_total;  // the source's count (Bundle.total of the first page), if it said
  std::optional<std::string> last_error;
  int attempts = 0;
  std::string create_time;  // ISO 8601 UTC with milliseconds, e.g. 2026-11-25T10:00:00.123Z
  std::optional<std::string> start_time;
  std::optional<std::string> end_time;
  std::string last_updated;
  std::map<std::string, long long> resources_skipped;  // per resource type, resources not exchanged
  long long seconds_since_progress = 0;  // since the last page recorded (or the start): bounds pausing
  std::vector<std::string> warnings;     // what the source said about its results ("severity: text"), at most 50
  std::optional<std::string> source_error;  // the first of them (all pages) of severity error or fatal
  // "member" (the member's own tokens) or "payer" (the service's own token and HRex $member-match).
  std::string flow = "member";
  std::optional<std::string> since;         // payer flow: _since of the first page
  std::optional<std::string> member_match;  // payer flow: what the match gave (a JSON object, as text)
  std::optional<std::string> not_before;    // when a scheduled run starts, or a paused job resumes (ISO 8601 UTC)
  std::optional<int> repeat_every_days;     // payer flow: scheduled re-pulls, with repeat_until (YYYY-MM-DD)
  std::optional<std::string> repeat_until;
  std::optional<long long> previous_run_id;  // the run this one repeats
  std::optional<long long> next_run_id;      // the run scheduled when this one completed
  std::string retrieval = "everything";      // payer flow: "everything" or "export" (bulk Patient/{id}/$export)
  std::optional<std::string> export_status_url;  // export: the status URL polled until the manifest
  std::optional<std::string> export_progress;    // export: the last X-Progress
  std::optional<std::string> export_manifest;    // export: fhir::manifest_json
  std::optional<std::string> export_cursor;      // export: {"file": i, "line": n}, where the next chunk starts
};

struct NewBatchJob {
  std::optional<std::string> idempotency_key;  // the request's Idempotency-Key header
  std::string request_hash;                    // SHA-256 of the request body (hex), compared for that key
  int server_pid = 0;
  std::string source_patient_id;
  std::string target_patient_id;
  std::optional<std::string> target_organization_id;
  std::string first_url;
  std::string access_token;
  std::optional<std::string> refresh_token;
  // The payer flow (access_token empty): the $member-match Parameters (JSON text), sealed like tokens.
  std::optional<std::string> member_match_request;
  std::optional<std::string> since;
  std::optional<int> repeat_every_days;  // with repeat_until (YYYY-MM-DD)
  std::optional<std::string> repeat_until;
  std::string retrieval = "everything";  // or "export" (payer flow)
};

// A job claimed by a runner, with its tokens opened.
struct ClaimedJob {
  BatchJob job;
  std::string access_token;
  std::optional<std::string> refresh_token;
  std::optional<std::string> member_match_request;  // the payer flow, until the job ends
};

enum class CancelOutcome { kStopping, kAlreadyEnded, kNotFound };

// What create() did. kCreated: `job` is new. kReplayed: the same Idempotency-Key with the same body
// within 24 h: `job` is the one it created. kKeyReused: that key came with another body: `job` is the
// key's job. kActiveJobExists: the member already has a job that has not ended (same server, source
// patient and target patient; for the payer flow, same server and target patient): `job` is that one;
// a second would share and break its refresh token, or pull the same records twice.
struct CreateOutcome {
  enum class Kind { kCreated, kReplayed, kKeyReused, kActiveJobExists } kind;
  BatchJob job;
};

// The source's warnings a job keeps (batch_jobs.warnings): the first 50.
inline constexpr std::size_t kKeptWarnings = 50;

// What record_pages() adds to a job: one written page, or several written one after the other (the
// runner records at most every exchange.recordIntervalMilliseconds, docs/exchange.md "Crash safety").
struct PagesRecord {
  int pages = 1;                            // how many pages this record covers
  std::optional<std::string> next_url;      // where the last of them pointed next; nullopt: the job's last page
  int resources_written = 0;
  std::map<std::string, long long> skipped;  // resources not exchanged, per type, added to the job's
  std::vector<std::string> warnings;        // what the source said, appended to the job's (it keeps 50)
  std::optional<std::string> source_error;  // the first warning of severity error or fatal
  std::optional<std::string> export_cursor;  // a bulk export's place to go on from ({"file", "line"})
  std::optional<long long> resources_total;  // the source's count of all resources (kept once the job has one)

  // `later`, the record of the page(s) written after these, joined to them: counts added, the first
  // source error and total kept, the next URL and cursor taken from `later`, warnings up to 50.
  void add(PagesRecord later);
};

class BatchJobRepository {
 public:
  BatchJobRepository(pqxx::connection& connection, const crypto::TokenCipher& cipher)
      : connection_(connection), cipher_(cipher) {}

  CreateOutcome create(const NewBatchJob& job);
  std::optional<BatchJob> find(int server_pid, long long id);
  // Newest first; only jobs with id < before_id when given.
  std::vector<BatchJob> list(int server_pid, int limit, std::optional<long long> before_id);
  // STARTING/STARTED -> STOPPING (the runner stops at the next page boundary); a job that has not
  // started yet is STOPPED at once.
  CancelOutcome request_cancel(int server_pid, long long id);

  // Claims up to `max_jobs` runnable jobs whose lease is free or expired and that are not paused
  // (not_before still ahead; a job with a cancel pending is claimed anyway, to stop it), for `lease`.
  // A job taken over from an expired lease more than `max_lost_leases` times in a row without a page
  // recorded (it crashes or hangs whoever runs it) is failed here instead of returned. Jobs in
  // `running` (the ones this instance runs now) are never claimed, even when their lease has lapsed:
  // one job runs at most once per instance.
  std::vector<ClaimedJob> claim(const std::string& owner, std::chrono::seconds lease, int max_jobs,
                                int max_lost_leases = 10, const std::vector<long long>& running = {});
  // Extends the lease of the owner's jobs that are `running` in this instance (only those: a job it
  // left must lapse so another instance can take it); returns the ids still held (a job ended or
  // taken over is not among them).
  std::vector<long long> renew_leases(const std::string& owner, std::chrono::seconds lease,
                                      const std::vector<long long>& running);

  // Records written pages, one or several at a time (PagesRecord): added to the job's counts, with the
  // next URL of the last of them (nullopt when it was the job's last page). Returns the job's status as
  // it is now (STOPPING once cancelled), or nullopt when the owner no longer holds the job or the job
  // does not have `recorded_pages` pages recorded (a record lost in a crash of PostgreSQL: the commit
  // does not wait for the log flush; the job must resume from what is stored).
  std::optional<JobStatus> record_pages(long long id, const std::string& owner, int recorded_pages,
                                        const PagesRecord& pages);
  bool store_tokens(long long id, const std::string& owner, const std::string& access_token,
                    const std::optional<std::string>& refresh_token);
  bool set_task_id(long long id, const std::string& owner, const std::string& task_id);
  // The payer flow: what $member-match gave (`member_match`, a JSON object), and when the member was
  // found, their Patient id at the source and the first page to read (next_url; first_url stays the
  // $member-match URL, the run's first request). Only before any page is recorded.
  // An export's status URL and its last X-Progress (polling), then its manifest (the cursor starts at
  // the first file's first line). Both return the job's status as it is now (STOPPING once
  // cancelled), or nullopt when the owner no longer holds the job.
  std::optional<JobStatus> record_export_status(long long id, const std::string& owner, const std::string& status_url,
                                                const std::optional<std::string>& progress);
  std::optional<JobStatus> record_export_manifest(long long id, const std::string& owner, const std::string& manifest);

  // Returns the job's status as it is now (STOPPING once cancelled), or nullopt when the owner no
  // longer holds the job.
  std::optional<JobStatus> record_member_match(long long id, const std::string& owner, const std::string& member_match,
                                               const std::optional<std::string>& source_patient_id,
                                               const std::optional<std::string>& first_url);
  // Ends the job (COMPLETED, FAILED or STOPPED), deletes its tokens and releases the lease. False
  // when the owner no longer holds the job, or the job does not have `recorded_pages` pages recorded
  // (see record_pages: it must not end with a page's counts missing). A payer-mediated job that
  // repeats and COMPLETED schedules its next run in the same transaction (`member_match_request`, the
  // request it ran with, sealed again for the new row), unless that run would start after repeat_until.
  bool finish(long long id, const std::string& owner, int recorded_pages, JobStatus status,
              const std::optional<std::string>& error,
              const std::optional<std::string>& member_match_request = std::nullopt);
  // Pauses a running job through an outage: gives the lease up, keeps the tokens and the status, and
  // keeps every instance from claiming it for `delay` (a cancel still may). `reason` is shown as lastError.
  bool pause(long long id, const std::string& owner, const std::string& reason, std::chrono::seconds delay);
  // Gives the lease up at once (this instance is shutting down), so another instance resumes the job
  // without waiting for the lease to expire.
  bool release(long long id, const std::string& owner);

 private:
  pqxx::connection& connection_;
  const crypto::TokenCipher& cipher_;
};

}  // namespace p2p::store
