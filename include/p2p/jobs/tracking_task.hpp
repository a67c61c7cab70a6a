#pragma once
// The FHIR Task on the target that tracks one exchange (docs/exchange.md, "The tracking Task"). Pure:
// what the job knows in, the Task out.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace p2p::jobs {

struct TrackingTaskFacts {
  std::string task_id;             // p2p-batch-job-{job id}
  long long job_id = 0;
  std::string exchange_tag_system;
  std::string status;              // Task.status: in-progress, completed, failed, cancelled
  std::optional<std::string> reason;  // Task.statusReason.text
  std::string target_patient_id;
  std::optional<std::string> target_organization_id;
  std::string authored_on;         // the job's createTime
  std::string last_modified;
  std::string source_payer_name;
  std::string source_request;      // the first URL read
  int pages = 0;
  int resources = 0;
  std::vector<std::string> warnings;                  // the first 10 become outputs
  std::map<std::string, long long> skipped;           // resources not exchanged, per type
  std::optional<std::string> focus;                   // the payer flow: "Consent/{id}", the member's consent
};

nlohmann::json tracking_task(const TrackingTaskFacts& facts);

}  // namespace p2p::jobs
