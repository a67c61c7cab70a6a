// The tracking Task (jobs/tracking_task.hpp): what the portal and the new payer read about an exchange.
#include <gtest/gtest.h>

#include "p2p/jobs/tracking_task.hpp"

using nlohmann::json;

namespace {

p2p::jobs::TrackingTaskFacts facts() {
  p2p::jobs::TrackingTaskFacts f;
  f.task_id = "p2p-batch-job-42";
  f.job_id = 42;
  f.exchange_tag_system = "urn:p2p-exchange:exchange";
  f.status = "in-progress";
  f.target_patient_id = "98765";
  f.authored_on = "2026-11-25T10:00:00.120Z";
  f.last_modified = "2026-11-25T10:00:05.000Z";
  f.source_payer_name = "Source Payer A";
  f.source_request = "https://src.example.com/fhir/Patient/123/$everything";
  f.pages = 3;
  f.resources = 102;
  return f;
}

}  // namespace

TEST(TrackingTask, SaysWhoWhatAndHowFar) {
  const json task = p2p::jobs::tracking_task(facts());
  EXPECT_EQ(task, json::parse(R"({
    "resourceType": "Task", "id": "p2p-batch-job-42",
    "meta": {"tag": [{"system": "urn:p2p-exchange:exchange", "code": "batch-job-42"}]},
    "identifier": [{"system": "urn:p2p-exchange:batch-job", "value": "42"}],
    "status": "in-progress", "intent": "order",
    "code": {"coding": [{"system": "http://payer-to-payer-exchange/CodeSystem/p2p-internal-codes", "code": "p2p-exchange",
                         "display": "Payer-to-payer exchange"}], "text": "Payer-to-payer exchange"},
    "for": {"reference": "Patient/98765"},
    "authoredOn": "2026-11-25T10:00:00.120Z", "lastModified": "2026-11-25T10:00:05.000Z",
    "input": [{"type": {"text": "source payer"}, "valueString": "Source Payer A"},
              {"type": {"text": "source request"}, "valueString": "https://src.example.com/fhir/Patient/123/$everything"}],
    "output": [{"type": {"text": "pages written"}, "valueInteger": 3},
               {"type": {"text": "resources written"}, "valueInteger": 102}]})"));
}

TEST(TrackingTask, CarriesTheOwnerTheReasonTheSourcesWarningsAndWhatWasSkipped) {
  auto f = facts();
  f.status = "failed";
  f.reason = "the source reported that its results are not complete (error: x); every page it sent was written; see warnings";
  f.target_organization_id = "TGT";
  for (int i = 0; i < 12; ++i) f.warnings.push_back("warning: " + std::to_string(i));
  f.skipped = {{"Subscription", 1}, {"CodeSystem", 5000000000LL}};
  const json task = p2p::jobs::tracking_task(f);
  EXPECT_EQ(task["statusReason"], json({{"text", *f.reason}}));
  EXPECT_EQ(task["owner"], json::parse(R"({"type": "Organization", "identifier": {"system": "urn:p2p-exchange:payer-id", "value": "TGT"}})"));
  const json& outputs = task["output"];
  ASSERT_EQ(outputs.size(), 2u + 10u + 2u) << "at most 10 warnings";
  EXPECT_EQ(outputs[2], json({{"type", {{"text", "source warning"}}}, {"valueString", "warning: 0"}}));
  EXPECT_EQ(outputs[12], json({{"type", {{"text", "resources skipped: CodeSystem"}}}, {"valueInteger", 2147483647}}))
      << "an integer is 32 bits in FHIR";
  EXPECT_EQ(outputs[13], json({{"type", {{"text", "resources skipped: Subscription"}}}, {"valueInteger", 1}}));
}
