#pragma once
// A batch job's status, as the API shows it (batchStatus) and the batch_jobs table stores it.
//
//   STARTING --claimed--> STARTED --last page--> COMPLETED
//                            |  \--error, or outage past exchange.outageToleranceSeconds--> FAILED
//                            \--cancel--> STOPPING --next page boundary--> STOPPED
// A job not yet claimed is cancelled straight to STOPPED. STARTING, STARTED and STOPPING are active.
#include <optional>
#include <string_view>

namespace p2p::store {

enum class JobStatus { kStarting, kStarted, kStopping, kStopped, kCompleted, kFailed };

// "STARTING", "STARTED", ...: the spelling of the API and of the database.
std::string_view to_string(JobStatus status);

// The status spelled `text`, or nothing for any other text.
std::optional<JobStatus> parse_job_status(std::string_view text);

// STARTING, STARTED or STOPPING: the job has not ended.
bool is_active(JobStatus status);

}  // namespace p2p::store
