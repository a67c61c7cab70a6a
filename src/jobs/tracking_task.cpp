#include "p2p/jobs/tracking_task.hpp"

#include <algorithm>

namespace p2p::jobs {

using nlohmann::json;

json tracking_task(const TrackingTaskFacts& facts) {
  json task = {
      {"resourceType", "Task"},
      {"id", facts.task_id},
      {"meta", {{"tag", json::array({{{"system", facts.exchange_tag_system},
                                      {"code", "batch-job-" + std::to_string(facts.job_id)}}})}}},
      {"identifier", json::array({{{"system", "urn:p2p-exchange:batch-job"}, {"value", std::to_string(facts.job_id)}}})},
      {"status", facts.status},
      {"intent", "order"},
      {"code", {{"coding", json::array({{{"system", "http://payer-to-payer-exchange/CodeSystem/p2p-internal-codes"},
                                         {"code", "p2p-exchange"},
                                         {"display", "Payer-to-payer exchange"}}})},
                {"text", "Payer-to-payer exchange"}}},
      {"for", {{"reference", "Patient/" + facts.target_patient_id}}},
      {"authoredOn", facts.authored_on},
      {"lastModified", facts.last_modified},
      {"input", json::array({{{"type", {{"text", "source payer"}}}, {"valueString", facts.source_payer_name}},
                             {{"type", {{"text", "source request"}}}, {"valueString", facts.source_request}}})},
      {"output", json::array({{{"type", {{"text", "pages written"}}}, {"valueInteger", facts.pages}},
                              {{"type", {{"text", "resources written"}}}, {"valueInteger", facts.resources}}})}};
  for (std::size_t i = 0; i < facts.warnings.size() && i < 10; ++i) {
    task["output"].push_back({{"type", {{"text", "source warning"}}}, {"valueString", facts.warnings[i]}});
  }
  for (const auto& [type, count] : facts.skipped) {
    task["output"].push_back({{"type", {{"text", "resources skipped: " + type}}},
                              {"valueInteger", static_cast<int>(std::min<long long>(count, 2147483647))}});
  }
  if (facts.target_organization_id) {
    task["owner"] = {{"type", "Organization"},
                     {"identifier", {{"system", "urn:p2p-exchange:payer-id"}, {"value", *facts.target_organization_id}}}};
  }
  if (facts.focus) task["focus"] = {{"reference", *facts.focus}};
  if (facts.reason) task["statusReason"] = {{"text", *facts.reason}};
  return task;
}

}  // namespace p2p::jobs
