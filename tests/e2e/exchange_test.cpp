// The exchange end to end with real peers (exchange_fixture.hpp): the happy path, tokens, retries,
// resuming and several instances.
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>

#include "exchange_fixture.hpp"

using nlohmann::json;
using namespace p2p::test;
using namespace std::chrono_literals;

TEST_F(ExchangeTest, AMultiPageExchangeLandsEveryResourceWithOneValidProvenancePerPage) {
  seed_source("m1", 100);  // 103 resources: 3 pages of 40
  auto& service = start_service();
  const auto id = start_job(service, issue_tokens("m1"), "m1");
  const auto done = wait_for_end(service, id);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["pagesCompleted"], 3);
  EXPECT_EQ(done["resourcesWritten"], 102) << "Encounter, 100 Observations, the source's Provenance (not the member's Patient)";
  EXPECT_EQ(done["taskId"], "p2p-batch-job-" + std::to_string(id));
  EXPECT_FALSE(done["endTime"].is_null());

  const auto observations = target_resources("Observation");
  ASSERT_EQ(observations.size(), 100u);
  const std::string encounter = "Encounter/" + target_id("Encounter", "m1-e1");
  std::set<std::string> ids;
  for (const auto& observation : observations) {
    ids.insert(observation["id"].get<std::string>());
    EXPECT_EQ(observation["subject"]["reference"], "Patient/t-m1");
    EXPECT_EQ(observation["encounter"]["reference"], encounter);
    EXPECT_EQ(observation["meta"]["tag"][0], json({{"system", "urn:p2p-exchange:exchange"}, {"code", "batch-job-" + std::to_string(id)}}));
  }
  EXPECT_EQ(ids.count(target_id("Observation", "m1-o7")), 1u);
  EXPECT_EQ(target_resources("Encounter").size(), 1u);
  EXPECT_TRUE(target_resources("Patient").empty()) << "MDM off: the member's source Patient is not written";

  // One PDex Provenance per page, valid for both validators, targeting every resource of its page.
  std::size_t page_provenances = 0, targeted = 0;
  for (const auto& provenance : target_resources("Provenance")) {
    const auto profiles = provenance.value("/meta/profile"_json_pointer, json::array());
    if (profiles.empty()) {
      EXPECT_EQ(provenance["target"][0]["reference"], "Patient/t-m1") << "the source's own Provenance is kept, rewritten";
      continue;
    }
    ++page_provenances;
    targeted += provenance["target"].size();
    EXPECT_EQ(profiles[0], "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-provenance");
    EXPECT_EQ(provenance["agent"][0]["type"]["coding"][0]["code"], "transmitter");
    EXPECT_EQ(provenance["entity"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"], "hl7fhirr4");
    EXPECT_TRUE(provenance["entity"][0]["what"]["identifier"]["value"].get<std::string>().starts_with(source_base()));
    const auto validation = validate_on_target(provenance);
    EXPECT_EQ(validation["valid"], true) << validation.dump();
  }
  EXPECT_EQ(page_provenances, 3u);
  EXPECT_EQ(targeted, 102u);

  const auto task = parse(http_get(target_base() + "/Task/p2p-batch-job-" + std::to_string(id)));
  EXPECT_EQ(task["status"], "completed");
  EXPECT_EQ(task["for"]["reference"], "Patient/t-m1");
  EXPECT_EQ(task["output"][1]["valueInteger"], 102);
  EXPECT_EQ(validate_on_target(task)["valid"], true);

  pqxx::connection connection(database_.url());
  pqxx::read_transaction tx(connection);
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM batch_jobs WHERE access_token_sealed IS NOT NULL OR refresh_token_sealed IS NOT NULL")[0].as<int>(), 0)
      << "the member's tokens are deleted when the job ends";
  tx.commit();

  // A second exchange for the same member updates in place: no duplicates.
  const auto again = wait_for_end(service, start_job(service, issue_tokens("m1"), "m1"));
  EXPECT_EQ(again["batchStatus"], "COMPLETED");
  EXPECT_EQ(target_resources("Observation").size(), 100u);
  EXPECT_EQ(target_resources("Encounter").size(), 1u);
}

TEST_F(ExchangeTest, VersionedReferencesPointProvenanceAtTheWrittenVersions) {
  seed_source("m2", 10);
  auto& service = start_service({{"P2P_VERSIONED_REFERENCES", "true"}});
  const auto done = wait_for_end(service, start_job(service, issue_tokens("m2"), "m2"));
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump();
  int page_provenances = 0;
  for (const auto& provenance : target_resources("Provenance")) {
    if (!provenance.contains("meta") || !provenance["meta"].contains("profile")) continue;
    ++page_provenances;
    for (const auto& target : provenance["target"]) {
      EXPECT_NE(target["reference"].get<std::string>().find("/_history/"), std::string::npos) << target.dump();
    }
  }
  EXPECT_EQ(page_provenances, 1);
}

TEST_F(ExchangeTest, WithMdmTheMembersSourcePatientCarriesTheMatchingIdentifier) {
  seed_source("m3", 5);
  auto& service = start_service({}, {{"mdmPatientIdentifier", {{"identifierSystem", "urn:target-payer:member-id"}}}});
  const auto done = wait_for_end(service, start_job(service, issue_tokens("m3"), "m3"));
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump();
  const auto patients = target_resources("Patient");
  ASSERT_EQ(patients.size(), 1u);
  EXPECT_EQ(patients[0]["id"], target_id("Patient", "m3"));
  EXPECT_EQ(patients[0]["identifier"].back(),
            json::parse(R"({"type":{"coding":[{"system":"http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBIdentifierType","code":"um"}]},
                            "system":"urn:target-payer:member-id","value":"t-m3"})"));
  for (const auto& observation : target_resources("Observation")) {
    EXPECT_EQ(observation["subject"]["reference"], "Patient/" + target_id("Patient", "m3"));
  }
}

TEST_F(ExchangeTest, AnExpiredAccessTokenIsRefreshedAndTheJobFinishes) {
  seed_source("m4", 50);
  auto& service = start_service();
  // No token URL in the definition: it is discovered from the well-known document.
  exec_sql(database_.url(), "UPDATE oidc_servers SET token_endpoint = NULL, auth_well_known = '" +
                                oauth_->ready()["well_known"].get<std::string>() + "'");
  const auto tokens = issue_tokens("m4");
  http_request("POST", issuer() + "/__control/expire-access", {kJson}, json({{"access_token", tokens["access_token"]}}).dump());
  http_request("DELETE", issuer() + "/__control/token-requests");
  const auto done = wait_for_end(service, start_job(service, tokens, "m4"));
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["resourcesWritten"], 52);
  const auto requests = parse(http_get(issuer() + "/__control/token-requests"));
  ASSERT_GE(requests.size(), 1u) << requests.dump();
  EXPECT_EQ(requests[0]["grant_type"], "refresh_token");
  EXPECT_EQ(requests[0]["auth_method"], "basic");
  EXPECT_EQ(requests[0]["status"], 200);
  EXPECT_EQ(requests[0]["params"]["memberId"], "m4") << "the definition's custom token parameter";
  // Every request to the source after the refresh used the new token.
  const auto source_requests = parse(http_get(origin(source_base()) + "/__control/requests"));
  EXPECT_EQ(source_requests.back()["authorization"].get<std::string>().find(tokens["access_token"].get<std::string>()),
            std::string::npos);
  EXPECT_TRUE(service.wait_for_log("job " + std::to_string(done["batchJobId"].get<long long>()) +
                                   ": refreshed the member's tokens at the source payer"));
  // Neither the member's tokens nor the client secret ever reach the log.
  service.send_signal(SIGTERM);
  EXPECT_EQ(service.wait_exit(30s), 0);
  const auto log = service.log();
  EXPECT_EQ(log.find(tokens["access_token"].get<std::string>()), std::string::npos);
  EXPECT_EQ(log.find(tokens["refresh_token"].get<std::string>()), std::string::npos);
  EXPECT_EQ(log.find(kClientSecret), std::string::npos);
}

TEST_F(ExchangeTest, AnotherClientErrorFailsTheJobWithTheSourcesOperationOutcome) {
  auto& service = start_service();
  const auto done = wait_for_end(service, start_job(service, issue_tokens("nobody"), "nobody"));
  EXPECT_EQ(done["batchStatus"], "FAILED");
  const std::string error = done["lastError"];
  EXPECT_TRUE(error.starts_with("the source payer answered 404 for " + source_base() + "/Patient/nobody/$everything: "))
      << error;
  EXPECT_EQ(done["pagesCompleted"], 0);
}

TEST_F(ExchangeTest, ARefusedRefreshFailsTheJobWithAClearMessage) {
  seed_source("m5", 3);
  auto& service = start_service();
  const auto tokens = issue_tokens("m5");
  http_request("POST", issuer() + "/__control/expire-access", {kJson}, json({{"access_token", tokens["access_token"]}}).dump());
  http_request("POST", issuer() + "/__control/revoke-refresh", {kJson}, json({{"refresh_token", tokens["refresh_token"]}}).dump());
  const auto done = wait_for_end(service, start_job(service, tokens, "m5"));
  EXPECT_EQ(done["batchStatus"], "FAILED");
  EXPECT_EQ(done["lastError"],
            "the source payer refused to refresh the member's tokens (400 invalid_grant: grant request is invalid): the "
            "member must sign in at the source payer again");
  const auto task = parse(http_get(target_base() + "/Task/p2p-batch-job-" + std::to_string(done["batchJobId"].get<long long>())));
  EXPECT_EQ(task["status"], "failed");
  EXPECT_EQ(task["statusReason"]["text"], done["lastError"]);
}

TEST_F(ExchangeTest, BurstsOf429And503WithRetryAfterAreRiddenOut) {
  seed_source("m6", 60);
  auto& service = start_service();
  http_request("POST", origin(source_base()) + "/__control/fail-next", {kJson},
               json({{"status", 429}, {"count", 2}, {"retryAfter", 1}, {"match", "$everything"}}).dump());
  http_request("POST", origin(target_base()) + "/__control/fail-next", {kJson},
               json({{"status", 503}, {"count", 2}, {"retryAfter", 1}}).dump());
  const auto started = std::chrono::steady_clock::now();
  const auto done = wait_for_end(service, start_job(service, issue_tokens("m6"), "m6"));
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_GE(std::chrono::steady_clock::now() - started, 2s) << "Retry-After was honoured";
  EXPECT_EQ(target_resources("Observation").size(), 60u);
}

TEST_F(ExchangeTest, RequestsThatLeaveTheSourceEndpointAreRefused) {
  auto& service = start_service();
  const auto tokens = issue_tokens("m7");
  const std::string base = source_base();
  const std::string host_port = base.substr(7, base.find("/fhir") - 7);
  const std::pair<std::string, std::string> cases[] = {
      {"http://evil.example.com/fhir/Patient/m7/$everything",
       "sourcePayer.fhirBundleRequest is refused: it must stay on the FHIR endpoint's host and port (" + host_port + ")"},
      {"../admin", "sourcePayer.fhirBundleRequest is refused: it must be a path under the FHIR endpoint " + base + "/"},
      {"http://user:pw@" + host_port + "/fhir/Patient/m7", "sourcePayer.fhirBundleRequest is refused: it must not carry user or password"},
      {"file:///etc/passwd", "sourcePayer.fhirBundleRequest must use http or https"},
      {"//evil.example.com/fhir", "sourcePayer.fhirBundleRequest must be a path relative to the FHIR endpoint or an absolute URL under it"},
  };
  for (const auto& [request, detail] : cases) {
    const auto result = post_job(service, {{"sourcePayer", {{"oidcToken", tokens["access_token"]}, {"patientId", "m7"},
                                                            {"fhirBundleRequest", request}}},
                                           {"targetPayer", {{"patientId", "t-m7"}}}});
    EXPECT_EQ(result.status, 400) << request;
    EXPECT_EQ(parse(result)["detail"], detail) << request;
  }
}

TEST_F(ExchangeTest, MalformedBodiesAreBadRequestsNeverServerErrors) {
  auto& service = start_service();
  const std::pair<std::string, std::string> cases[] = {
      {"not json", "the body must be a JSON object with sourcePayer and targetPayer (see /api/openapi.json)"},
      {"[]", "the body must be a JSON object with sourcePayer and targetPayer (see /api/openapi.json)"},
      {"{}", "sourcePayer is required and must be an object (see the request body in /api/openapi.json)"},
      {R"({"sourcePayer":{},"targetPayer":{}})", "sourcePayer.oidcToken is required: the member's access token at the source payer"},
      {R"({"sourcePayer":{"oidcToken":7},"targetPayer":{}})", "sourcePayer.oidcToken must be a string"},
      {R"({"sourcePayer":{"oidcToken":"t"},"targetPayer":{}})",
       "sourcePayer.patientId is required: the member's Patient id at the source payer (a FHIR id: 1-64 of A-Z a-z 0-9 - .)"},
      {R"({"sourcePayer":{"oidcToken":"t","patientId":"m/1"},"targetPayer":{}})",
       "sourcePayer.patientId is required: the member's Patient id at the source payer (a FHIR id: 1-64 of A-Z a-z 0-9 - .)"},
      {R"({"sourcePayer":{"oidcToken":"t","patientId":"m1"},"targetPayer":{}})",
       "targetPayer.patientId is required: the member's Patient id at the new payer (a FHIR id: 1-64 of A-Z a-z 0-9 - .)"},
      {R"({"sourcePayer":{"oidcToken":"t","patientId":"m1"},"targetPayer":[]})",
       "targetPayer is required and must be an object (see the request body in /api/openapi.json)"},
      {R"({"sourcePayer":{"oidcToken":"t","patientId":"m1","fhirBundleRequest":{}},"targetPayer":{"patientId":"x"}})",
       "sourcePayer.fhirBundleRequest must be a string"},
  };
  for (const auto& [body, detail] : cases) {
    const auto result = http_request("POST", service.url("/api/oidc_servers/1/batch_job"), {kAuthHeader, kJson}, body);
    EXPECT_EQ(result.status, 400) << body;
    EXPECT_EQ(parse(result)["detail"], detail) << body;
  }
  const auto unknown = http_request("POST", service.url("/api/oidc_servers/9/batch_job"), {kAuthHeader, kJson},
                                    R"({"sourcePayer":{"oidcToken":"t","patientId":"m1"},"targetPayer":{"patientId":"x"}})");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(http_get(service.url("/api/oidc_servers/1/batch_job/77"), {kAuthHeader}).status, 404);
  EXPECT_EQ(http_get(service.url("/api/oidc_servers/1/batch_job?limit=500"), {kAuthHeader}).status, 400);
}

// A page's record is made while the next page is written; the cancel it brings back must still stop
// the job before that next page is written when the record lands first. Page 1's write is slow and
// the cancel comes during it; page 2's fetch is slower, so page 1's record (which sees the cancel) has
// landed by the time page 2 could be written: it is not.
TEST_F(ExchangeTest, ACancelBroughtByARecordThatLandedStopsTheJobBeforeTheNextPageIsWritten) {
  seed_source("m9", 200);  // 6 pages of 40
  auto& service = start_service();
  control(origin(target_base()), "delay", {{"milliseconds", 4000}, {"count", 1}, {"method", "POST"}});
  control(origin(source_base()), "delay", {{"milliseconds", 7000}, {"count", 1}, {"match", "_offset=40"}});
  const auto id = start_job(service, issue_tokens("m9"), "m9");
  ASSERT_TRUE(eventually([&] { return job(service, id)["batchStatus"] == "STARTED"; }, 10s));
  std::this_thread::sleep_for(2s);  // page 1 is being written (its POST is held 4 s)
  const auto cancel = http_request("POST", service.url("/api/oidc_servers/1/batch_job/" + std::to_string(id) + "/cancel"), {kAuthHeader});
  ASSERT_EQ(cancel.status, 202) << cancel.body;
  ASSERT_EQ(parse(cancel)["pagesCompleted"], 0) << "the cancel must come before page 1 is recorded: " << cancel.body;
  const auto done = wait_for_end(service, id);
  EXPECT_EQ(done["batchStatus"], "STOPPED") << done.dump();
  EXPECT_EQ(done["pagesCompleted"], 1) << done.dump() << service.log();
  EXPECT_EQ(target_resources("Observation").size() + target_resources("Encounter").size() +
                target_resources("Patient").size(),
            done["resourcesWritten"].get<std::size_t>())
      << "page 2 was not written";
}

TEST_F(ExchangeTest, JobsAreListedNewestFirstAndCancelledAtAPageBoundary) {
  seed_source("m8", 200);  // 6 pages of 40
  auto& service = start_service();
  // Slow the second page down so the job is still running when it is cancelled.
  http_request("POST", origin(source_base()) + "/__control/fail-next", {kJson},
               json({{"status", 503}, {"count", 2}, {"retryAfter", 1}, {"match", "_offset=40"}}).dump());
  const auto id = start_job(service, issue_tokens("m8"), "m8");
  ASSERT_TRUE(eventually([&] { return job(service, id)["batchStatus"] == "STARTED"; }, 10s));
  const auto cancel = http_request("POST", service.url("/api/oidc_servers/1/batch_job/" + std::to_string(id) + "/cancel"), {kAuthHeader});
  EXPECT_EQ(cancel.status, 202) << cancel.body;
  EXPECT_EQ(parse(cancel)["batchStatus"], "STOPPING");
  const auto done = wait_for_end(service, id);
  EXPECT_EQ(done["batchStatus"], "STOPPED");
  // Cancelled while page 2 was being fetched: page 2, and at most page 3 (written while page 2's
  // record, which brings the cancel, is made), then no more.
  EXPECT_LE(done["pagesCompleted"].get<int>(), 3);
  EXPECT_EQ(parse(http_get(target_base() + "/Task/p2p-batch-job-" + std::to_string(id)))["status"], "cancelled");
  const auto again = http_request("POST", service.url("/api/oidc_servers/1/batch_job/" + std::to_string(id) + "/cancel"), {kAuthHeader});
  EXPECT_EQ(again.status, 409);

  const auto second = start_job(service, issue_tokens("m8"), "m8");
  const auto list = parse(http_get(service.url("/api/oidc_servers/1/batch_job?limit=1"), {kAuthHeader}));
  ASSERT_EQ(list["jobs"].size(), 1u);
  EXPECT_EQ(list["jobs"][0]["batchJobId"], second);
  EXPECT_EQ(list["next"], "/api/oidc_servers/1/batch_job?limit=1&beforeId=" + std::to_string(second));
  const auto rest = parse(http_get(service.url(list["next"].get<std::string>()), {kAuthHeader}));
  EXPECT_EQ(rest["jobs"][0]["batchJobId"], id);
}

TEST_F(ExchangeTest, AJobKilledMidwayResumesAfterRestartWithNoDuplicateOrMissingResource) {
  seed_source("m9", 100);
  auto& first = start_service();
  http_request("POST", origin(source_base()) + "/__control/fail-next", {kJson},
               json({{"status", 503}, {"count", 3}, {"retryAfter", 1}, {"match", "_offset=80"}}).dump());
  const auto id = start_job(first, issue_tokens("m9"), "m9");
  ASSERT_TRUE(eventually([&] { return job(first, id)["pagesCompleted"] == 2; }, 20s)) << first.log();
  first.send_signal(SIGKILL);
  first.wait_exit(5s);
  auto& second = start_service();
  const auto done = wait_for_end(second, id);  // after the dead instance's 5 s lease
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << second.log();
  EXPECT_EQ(done["pagesCompleted"], 3);
  EXPECT_EQ(target_resources("Observation").size(), 100u);
  EXPECT_EQ(target_resources("Encounter").size(), 1u);
  int page_provenances = 0;
  for (const auto& provenance : target_resources("Provenance")) page_provenances += provenance.contains("meta") && provenance["meta"].contains("profile");
  EXPECT_EQ(page_provenances, 3);
}

// Pages are recorded at most every exchange.recordIntervalMilliseconds. Pages written but not yet
// recorded when the instance dies are written again by the next holder, to the same ids, and the counts
// come out exact: a record carries the counts of the pages it covers, no more.
TEST_F(ExchangeTest, PagesWrittenButNotYetRecordedAreWrittenAgainAfterACrashWithExactCounts) {
  seed_source("m12", 200);  // 6 pages of 40
  const auto page_provenances = [&] {
    int count = 0;
    for (const auto& provenance : target_resources("Provenance")) {
      count += provenance.contains("meta") && provenance["meta"].contains("profile");
    }
    return count;
  };
  control(origin(source_base()), "delay", {{"milliseconds", 60000}, {"count", 1}, {"match", "_offset=160"}});
  auto& first = start_service({}, {{"recordIntervalMilliseconds", 10000}});
  const auto id = start_job(first, issue_tokens("m12"), "m12");
  ASSERT_TRUE(eventually([&] { return page_provenances() == 4; }, 20s)) << "pages 1-4 written; page 5 is held" << first.log();
  EXPECT_EQ(job(first, id)["pagesCompleted"], 1) << "page 1 is recorded at once, pages 2-4 wait for their time";
  first.send_signal(SIGKILL);
  first.wait_exit(5s);
  auto& second = start_service({}, {{"recordIntervalMilliseconds", 10000}});
  ASSERT_TRUE(second.wait_for_log("from page 2", 30s)) << second.log();  // after the dead instance's 5 s lease
  const auto resumed = std::chrono::steady_clock::now();
  const auto done = wait_for_end(second, id);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << second.log();
  EXPECT_LT(std::chrono::steady_clock::now() - resumed, 8s) << "the last pages are recorded when the job ends, not at their time";
  EXPECT_EQ(done["pagesCompleted"], 6);
  EXPECT_EQ(done["resourcesWritten"], 202) << "the Patient, the Encounter and 200 Observations, each counted once";
  EXPECT_EQ(target_resources("Observation").size(), 200u);
  EXPECT_EQ(page_provenances(), 6);
}

// A job that fails records the pages written before the failure at once, not at their time.
TEST_F(ExchangeTest, AFailedJobRecordsThePagesWrittenBeforeItsFailureAtOnce) {
  seed_source("m13", 200);  // 6 pages of 40
  auto& service = start_service({}, {{"maxPages", 4}, {"recordIntervalMilliseconds", 10000}});
  const auto started = std::chrono::steady_clock::now();
  const auto done = wait_for_end(service, start_job(service, issue_tokens("m13"), "m13"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 8s) << "not held until the next record's time";
  EXPECT_EQ(done["batchStatus"], "FAILED") << done.dump();
  EXPECT_EQ(done["pagesCompleted"], 4);
  EXPECT_EQ(target_resources("Observation").size() + target_resources("Encounter").size() +
                target_resources("Patient").size(),
            done["resourcesWritten"].get<std::size_t>())
      << "the counts of all four pages";
}

TEST_F(ExchangeTest, TwoInstancesShareManyJobsAndRunEachOnce) {
  const std::vector<std::string> members = {"a1", "a2", "a3", "a4", "a5", "a6"};
  for (const auto& member : members) seed_source(member, 45);
  // A lease long enough that a stall of the loaded (or sanitized) service never lets the other
  // instance take a running job over: "each job ran once" must not depend on timing.
  auto& one = start_service({{"P2P_EXCHANGE_CONCURRENCY", "2"}}, {{"leaseSeconds", 60}});
  auto& two = start_service({{"P2P_EXCHANGE_CONCURRENCY", "2"}}, {{"leaseSeconds", 60}});
  std::vector<long long> ids;
  for (std::size_t i = 0; i < members.size(); ++i) {
    ids.push_back(start_job(i % 2 == 0 ? one : two, issue_tokens(members[i]), members[i]));
  }
  for (const auto id : ids) EXPECT_EQ(wait_for_end(one, id)["batchStatus"], "COMPLETED");
  EXPECT_EQ(target_resources("Observation").size(), members.size() * 45);
  pqxx::connection connection(database_.url());
  pqxx::read_transaction tx(connection);
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM batch_jobs WHERE attempts <> 1")[0].as<int>(), 0) << "each job ran once";
}

TEST_F(ExchangeTest, AGracefulStopHandsARunningJobOverWithoutWaitingForTheLease) {
  seed_source("m10", 100);
  auto& first = start_service({}, {{"leaseSeconds", 60}});
  // The last page keeps failing for ~5 s, so the job is surely still running at SIGTERM.
  http_request("POST", origin(source_base()) + "/__control/fail-next", {kJson},
               json({{"status", 503}, {"count", 5}, {"retryAfter", 1}, {"match", "_offset=80"}}).dump());
  const auto id = start_job(first, issue_tokens("m10"), "m10");
  ASSERT_TRUE(eventually([&] { return job(first, id)["pagesCompleted"] == 2; }, 20s)) << first.log();
  first.send_signal(SIGTERM);
  EXPECT_EQ(first.wait_exit(20s), 0) << first.log();
  EXPECT_TRUE(first.wait_for_log("job " + std::to_string(id) + ": left for the next holder of its lease")) << first.log();
  auto& second = start_service({}, {{"leaseSeconds", 60}});
  const auto started = std::chrono::steady_clock::now();
  const auto done = wait_for_end(second, id, 30s);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << second.log();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 30s) << "not held for the 60 s lease";
  EXPECT_EQ(target_resources("Observation").size(), 100u);
}

// A stop ends a job's backoff pause at once (the runner's stop signal), so the job hands its lease
// over; before, the runner waited out its grace period with the job still asleep, then exited
// without it, and the job sat under its lease until the lease ran out.
TEST_F(ExchangeTest, AStopDuringALongBackoffPauseEndsThePauseAndHandsTheJobOver) {
  seed_source("m12", 100);
  auto& first = start_service({}, {{"leaseSeconds", 60}, {"maxBackoffSeconds", 600}, {"requestTimeoutSeconds", 5}});
  // The third page answers 503 with Retry-After: 600: the job waits ten minutes before its next try.
  http_request("POST", origin(source_base()) + "/__control/fail-next", {kJson},
               json({{"status", 503}, {"count", 1}, {"retryAfter", 600}, {"match", "_offset=40"}}).dump());
  const auto id = start_job(first, issue_tokens("m12"), "m12");
  ASSERT_TRUE(eventually([&] {  // the 503 has been answered: the job is in its pause
    for (const auto& request : parse(http_get(origin(source_base()) + "/__control/requests"))) {
      if (request["status"] == 503) return true;
    }
    return false;
  }, 20s)) << first.log();
  first.send_signal(SIGTERM);
  EXPECT_EQ(first.wait_exit(20s), 0) << first.log();
  EXPECT_TRUE(first.wait_for_log("job " + std::to_string(id) + ": left for the next holder of its lease")) << first.log();
  auto& second = start_service({}, {{"leaseSeconds", 60}});
  const auto done = wait_for_end(second, id, 30s);  // within the 60 s lease: it was given up
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << second.log();
  EXPECT_EQ(target_resources("Observation").size(), 100u);
}
