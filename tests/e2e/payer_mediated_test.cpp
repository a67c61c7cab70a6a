// The payer-mediated exchange (issue #12, Da Vinci PDex / CMS-0057-F), end to end with real peers: the
// service registers at the old payer's oidc-provider with its published JWK Set, gets its own access
// tokens there (client_credentials, private_key_jwt), finds the member with HRex $member-match at the
// old payer's FHIR server (test code on Medplum, tests/peers/fhir-server.mjs), stores the member's
// Consent on the target as the tracking Task's focus, and copies Patient/{id}/$everything. Also: no
// match, a refused consent, a match without MemberId, a service token that lapses mid-job, and the
// request checks.
#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "p2p/util/time.hpp"
#include "signing_fixture.hpp"

namespace p2p::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const std::string kOldPayerNpi = "9876543210";
const std::string kNewPayerNpi = "0123456789";

class PayerMediatedTest : public SigningKeyTest {
 protected:
  PayerMediatedTest() {
    extra_oauth_args_ = {"--scope", "system/*.read"};
    extra_source_args_ = {"--smart-configuration"};
  }

  // The member at the old payer: their records (seed_source), their Patient with demographics and a
  // member identifier, and the Coverage whose member id is on their card.
  void seed_member(const std::string& member, int observations) {
    seed_source(member, observations);
    const std::string token = issue_tokens("seeder")["access_token"];
    const json patient = {{"resourceType", "Patient"},
                          {"id", member},
                          {"identifier", {{{"system", "http://old-payer.example.org/umb"}, {"value", "UMB-" + member}}}},
                          {"name", {{{"family", "Person"}, {"given", {"Patricia"}}}}},
                          {"gender", "female"},
                          {"birthDate", "1974-12-25"}};
    const json coverage = {
        {"resourceType", "Coverage"},
        {"id", member + "-cov"},
        {"status", "active"},
        {"identifier", {{{"system", "http://old-payer.example.org/member-id"}, {"value", "DH-" + member}}}},
        {"beneficiary", {{"reference", "Patient/" + member}}},
        {"payor", {{{"identifier", {{"system", "http://hl7.org/fhir/sid/us-npi"}, {"value", kOldPayerNpi}}}}}}};
    for (const json& resource : {patient, coverage}) {
      const auto put = http_request("PUT", source_base() + "/" + resource["resourceType"].get<std::string>() + "/" +
                                               resource["id"].get<std::string>(),
                                    {kFhirJson, "Authorization: Bearer " + token}, resource.dump());
      ASSERT_TRUE(put.status == 200 || put.status == 201) << put.body;
    }
  }

  // The service, registered at the old payer as a private_key_jwt client with the system scope.
  ServiceProcess& start_registered_service(const json& exchange = json::object()) {
    auto& service = start_service({{"P2P_CLIENT_SIGNING_KEYS", key_}}, exchange);
    client_id_ = register_service(service);
    exec_sql(database_url(), "UPDATE oidc_servers SET client_id = '" + client_id_ +
                                 "', client_secret = NULL, token_endpoint_auth_method = 'private_key_jwt',"
                                 " system_scopes = 'system/*.read'");
    return service;
  }

  static json payer_body(const std::string& member, const json& consent = {{"policy", "regular"},
                                                                           {"start", "2026-12-01"},
                                                                           {"end", "2099-03-01"}}) {
    const json relationship = {
        {"coding", {{{"system", "http://terminology.hl7.org/CodeSystem/subscriber-relationship"}, {"code", "self"}}}}};
    return {{"sourcePayer",
             {{"memberMatch",
               {{"patient", {{"resourceType", "Patient"},
                             {"name", {{{"family", "Person"}, {"given", {"Patricia"}}}}},
                             {"gender", "female"},
                             {"birthDate", "1974-12-25"}}},
                {"coverageToMatch",
                 {{"resourceType", "Coverage"},
                  {"status", "active"},
                  {"identifier", {{{"system", "http://old-payer.example.org/member-id"}, {"value", "DH-" + member}}}},
                  {"relationship", relationship},
                  {"payor", {{{"identifier", {{"system", "http://hl7.org/fhir/sid/us-npi"}, {"value", kOldPayerNpi}}}}}}}},
                {"coverageToLink",
                 {{"resourceType", "Coverage"},
                  {"status", "active"},
                  {"subscriberId", "NEW-" + member},
                  {"relationship", relationship},
                  {"payor", {{{"identifier", {{"system", "http://hl7.org/fhir/sid/us-npi"}, {"value", kNewPayerNpi}}}}}}}},
                {"consent", consent}}}}},
            {"targetPayer", {{"patientId", "t-" + member}, {"organizationId", "NEWPAYER"}}}};
  }

  long long start_payer_job(ServiceProcess& service, const json& body) {
    const auto result = post_job(service, body);
    EXPECT_EQ(result.status, 202) << result.body;
    const json created = parse(result);
    EXPECT_EQ(created["flow"], "payer");
    EXPECT_EQ(created["memberMatch"], json({{"result", "pending"}}));
    return created.value("batchJobId", 0LL);
  }

  json target_resource(const std::string& path) { return parse(http_get(target_base() + "/" + path)); }

  int client_credentials_grants() {
    int grants = 0;
    for (const auto& request : parse(http_get(issuer() + "/__control/token-requests"))) {
      if (request.value("grant_type", "") != "client_credentials") continue;
      EXPECT_EQ(request.value("auth_method", ""), "private_key_jwt") << request.dump();
      EXPECT_EQ(request.value("client_id", ""), client_id_) << request.dump();
      if (request.value("status", 0) == 200) ++grants;
    }
    return grants;
  }

  std::string client_id_;
};

// The source's requests whose path holds `part`, with the method.
std::vector<json> requests_to(const std::string& source_origin, const std::string& part) {
  std::vector<json> found;
  for (const auto& request : parse(http_get(source_origin + "/__control/requests"))) {
    if (request.value("path", "").find(part) != std::string::npos) found.push_back(request);
  }
  return found;
}

TEST_F(PayerMediatedTest, FindsTheMemberWithMemberMatchAndCopiesEverythingWithTheServicesOwnToken) {
  seed_member("pm1", 10);
  auto& service = start_registered_service();
  json body = payer_body("pm1");
  body["sourcePayer"]["since"] = "2000-01-01T00:00:00Z";
  const long long id = start_payer_job(service, body);
  const json done = wait_for_end(service, id);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  // The match: the member's Patient id at the old payer and the identifier it gave.
  EXPECT_EQ(done["memberMatch"]["result"], "matched") << done.dump();
  EXPECT_EQ(done["memberMatch"]["sourcePatientId"], "pm1");
  EXPECT_EQ(done["memberMatch"]["memberIdentifier"]["value"], "UMB-pm1");
  EXPECT_EQ(done["memberMatch"]["memberIdentifier"]["type"]["coding"][0]["code"], "UMB");
  // Coverage, Encounter, 10 Observations and the source's Provenance; the member's own Patient is not
  // copied: references to it point at the member on the target.
  EXPECT_EQ(done["resourcesWritten"], 13) << done.dump();
  const json coverage = target_resource("Coverage/" + target_id("Coverage", "pm1-cov"));
  EXPECT_EQ(coverage["beneficiary"]["reference"], "Patient/t-pm1") << coverage.dump();

  // What the old payer received: HRex Parameters with local references, the short-form consent built.
  const json sent = parse(http_get(origin(source_base()) + "/__control/member-match"))["lastRequest"];
  ASSERT_EQ(sent["parameter"].size(), 4u) << sent.dump();
  EXPECT_EQ(sent["parameter"][0]["name"], "MemberPatient");
  EXPECT_EQ(sent["parameter"][3]["resource"]["policy"][0]["uri"],
            "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular");
  EXPECT_EQ(sent["parameter"][3]["resource"]["provision"]["actor"][1]["reference"]["identifier"]["value"], kNewPayerNpi);
  // With the service's own token, asked for once with a signed assertion; no member token anywhere.
  EXPECT_EQ(client_credentials_grants(), 1);
  bool since_sent = false;
  for (const auto& request : parse(http_get(origin(source_base()) + "/__control/requests"))) {
    const std::string path = request.value("path", "");
    if (path.find("$everything") != std::string::npos && path.find("_since=2000-01-01T00%3A00%3A00Z") != std::string::npos) {
      since_sent = true;
    }
  }
  EXPECT_TRUE(since_sent) << "the first $everything page did not carry _since";

  // The Consent sent is on the target, pointed at the member there, and is the tracking Task's focus.
  const std::string consent_id = "p2p-batch-job-" + std::to_string(id) + "-consent";
  const json consent = target_resource("Consent/" + consent_id);
  ASSERT_EQ(consent.value("resourceType", ""), "Consent") << consent.dump();
  EXPECT_EQ(consent["patient"]["reference"], "Patient/t-pm1");
  EXPECT_EQ(consent["provision"]["period"]["end"], "2099-03-01");
  const json errors = validate_on_target(consent);
  EXPECT_EQ(errors.value("errors", json::array()).size(), 0u) << errors.dump();
  const json task = target_resource("Task/" + done["taskId"].get<std::string>());
  EXPECT_EQ(task["status"], "completed");
  EXPECT_EQ(task["focus"]["reference"], "Consent/" + consent_id);
}

TEST_F(PayerMediatedTest, AMatchWithoutMemberIdIsResolvedByTheMemberIdentifier) {
  seed_member("pm2", 3);
  control(origin(source_base()), "member-match", {{"omitMemberId", true}});
  auto& service = start_registered_service();
  // A definition with only the FHIR endpoint: the token endpoint is discovered (SMART configuration).
  exec_sql(database_url(), "UPDATE oidc_servers SET token_endpoint = NULL, auth_well_known = NULL");
  const json done = wait_for_end(service, start_payer_job(service, payer_body("pm2")));
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["memberMatch"]["sourcePatientId"], "pm2");
  EXPECT_EQ(done["resourcesWritten"], 6);
  bool searched = false;
  for (const auto& request : parse(http_get(origin(source_base()) + "/__control/requests"))) {
    if (request.value("path", "").find("Patient?identifier=http%3A%2F%2Fold-payer.example.org%2Fumb%7CUMB-pm2") !=
        std::string::npos) {
      searched = true;
    }
  }
  EXPECT_TRUE(searched) << "the member was not searched by the identifier $member-match returned";
  EXPECT_EQ(requests_to(origin(source_base()), "/.well-known/smart-configuration").size(), 1u);
  EXPECT_EQ(client_credentials_grants(), 1);
}

TEST_F(PayerMediatedTest, NoMatchEndsTheJobFailedWithTheSourcesWords) {
  seed_member("pm3", 2);
  auto& service = start_registered_service();
  json body = payer_body("pm3");
  body["sourcePayer"]["memberMatch"]["patient"]["birthDate"] = "1980-01-01";
  const long long id = start_payer_job(service, body);
  const json done = wait_for_end(service, id);
  ASSERT_EQ(done["batchStatus"], "FAILED") << done.dump();
  EXPECT_EQ(done["memberMatch"]["result"], "no-match");
  EXPECT_NE(done["memberMatch"]["detail"].get<std::string>().find("No unique match"), std::string::npos) << done.dump();
  EXPECT_NE(done["lastError"].get<std::string>().find("found no unique match for the member"), std::string::npos)
      << done.dump();
  EXPECT_EQ(done["resourcesWritten"], 0);
  const json task = target_resource("Task/" + done["taskId"].get<std::string>());
  EXPECT_EQ(task["status"], "failed");
  EXPECT_EQ(task["focus"]["reference"], "Consent/p2p-batch-job-" + std::to_string(id) + "-consent");
  EXPECT_TRUE(target_resources("Patient").empty());
  // The demographics and coverages are deleted with the job's end (like tokens).
  EXPECT_EQ(exec_scalar(database_url(), "SELECT count(*) FROM batch_jobs WHERE member_match_request_sealed IS NOT NULL"),
            "0");

  // A run that stopped after recording the 422 but before it ended (a crash, a lost lease) is resumed
  // as FAILED for the same reason, never COMPLETED with nothing read.
  exec_sql(database_url(), "UPDATE batch_jobs SET status = 'STARTED', end_time = NULL, last_error = NULL WHERE id = " +
                               std::to_string(id));
  const json resumed = wait_for_end(service, id);
  EXPECT_EQ(resumed["batchStatus"], "FAILED") << resumed.dump();
  EXPECT_NE(resumed["lastError"].get<std::string>().find("found no unique match for the member"), std::string::npos)
      << resumed.dump();
}

TEST_F(PayerMediatedTest, ACancelWhileTheSourceMatchesTheMemberStopsTheJobBeforeAnyPage) {
  seed_member("pm9", 3);
  control(origin(source_base()), "delay", {{"milliseconds", 2000}, {"match", "$member-match"}});
  auto& service = start_registered_service();
  const long long id = start_payer_job(service, payer_body("pm9"));
  eventually([&] { return job(service, id).value("batchStatus", "") == "STARTED"; }, 30s);
  const auto cancelled = http_request(
      "POST", service.url("/api/oidc_servers/1/batch_job/" + std::to_string(id) + "/cancel"), {kAuthHeader});
  EXPECT_EQ(cancelled.status, 202) << cancelled.body;
  const json done = wait_for_end(service, id);
  EXPECT_EQ(done["batchStatus"], "STOPPED") << done.dump();
  EXPECT_EQ(done["memberMatch"]["result"], "matched");
  EXPECT_EQ(done["pagesCompleted"], 0);
  for (const auto& request : parse(http_get(origin(source_base()) + "/__control/requests"))) {
    EXPECT_EQ(request.value("path", "").find("$everything"), std::string::npos) << "a page was read after the cancel";
  }
}

TEST_F(PayerMediatedTest, AConsentTheSourceWillNotHonourEndsTheJobFailedAsConsentRefused) {
  seed_member("pm4", 2);
  auto& service = start_registered_service();
  const json done = wait_for_end(
      service, start_payer_job(service, payer_body("pm4", {{"policy", "sensitive"}, {"start", "2026-12-01"}, {"end", "2099-03-01"}})));
  ASSERT_EQ(done["batchStatus"], "FAILED") << done.dump();
  EXPECT_EQ(done["memberMatch"]["result"], "consent-refused");
  EXPECT_NE(done["lastError"].get<std::string>().find("will not honour the member's consent"), std::string::npos)
      << done.dump();
  EXPECT_TRUE(target_resources("Observation").empty());
}

TEST_F(PayerMediatedTest, TheServicesTokenLapsingMidJobIsReplacedWithANewOne) {
  seed_member("pm5", 100);  // 3 pages of 40
  control(origin(source_base()), "delay", {{"milliseconds", 700}, {"match", "$everything"}});
  auto& service = start_registered_service();
  const long long id = start_payer_job(service, payer_body("pm5"));
  eventually([&] { return job(service, id).value("pagesCompleted", 0) >= 1; }, 60s);
  control(issuer(), "expire-client-credentials", json::object());
  const json done = wait_for_end(service, id);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["resourcesWritten"], 103);
  EXPECT_EQ(client_credentials_grants(), 2);  // the first, and one after the source refused the lapsed one
  int refused = 0;
  for (const auto& request : parse(http_get(origin(source_base()) + "/__control/requests"))) {
    if (request.value("status", 0) == 401) ++refused;
  }
  EXPECT_EQ(refused, 1);
}

TEST_F(PayerMediatedTest, TheRequestIsCheckedBeforeAJobIsCreated) {
  auto& service = start_registered_service();
  json body = payer_body("pm6");
  body["sourcePayer"]["memberMatch"]["patient"].erase("birthDate");
  auto result = post_job(service, body);
  EXPECT_EQ(result.status, 400);
  EXPECT_EQ(parse(result)["detail"], "sourcePayer.memberMatch.patient.birthDate is required") << result.body;

  body = payer_body("pm6");
  body["sourcePayer"]["retrieval"] = "bulk";
  result = post_job(service, body);
  EXPECT_EQ(result.status, 400);
  EXPECT_EQ(parse(result)["detail"], "sourcePayer.retrieval must be \"everything\" (Patient/{id}/$everything, the "
                                     "default) or \"export\" (bulk Patient/{id}/$export)");

  body = payer_body("pm6");
  body["sourcePayer"]["oidcToken"] = "a-member-token";
  EXPECT_EQ(post_job(service, body).status, 400);

  body = payer_body("pm6");
  body["sourcePayer"]["since"] = "2026-09-01";
  result = post_job(service, body);
  EXPECT_EQ(result.status, 400);
  EXPECT_NE(parse(result)["detail"].get<std::string>().find("FHIR instant"), std::string::npos);

  body = payer_body("pm6");
  body["repeatEveryDays"] = 90;  // without repeatUntil
  result = post_job(service, body);
  EXPECT_EQ(result.status, 400);
  EXPECT_EQ(parse(result)["detail"], "repeatEveryDays and repeatUntil go together: a re-pull every so many days, until a date");
  body["repeatUntil"] = "2020-01-01";
  EXPECT_EQ(post_job(service, body).status, 400);
  body["repeatEveryDays"] = 0;
  body["repeatUntil"] = "2099-01-01";
  EXPECT_EQ(post_job(service, body).status, 400);
  // A member's tokens end with their job: nothing to repeat with.
  const auto member = post_job(service, {{"sourcePayer", {{"oidcToken", "a"}, {"patientId", "pm6"}}},
                                         {"targetPayer", {{"patientId", "t-pm6"}}},
                                         {"repeatEveryDays", 90},
                                         {"repeatUntil", "2099-01-01"}});
  EXPECT_EQ(member.status, 400);
  EXPECT_NE(parse(member)["detail"].get<std::string>().find("need the payer-mediated form"), std::string::npos);

  // One active payer-mediated job per member and source.
  const long long first = start_payer_job(service, payer_body("pm6"));
  result = post_job(service, payer_body("pm6"));
  EXPECT_EQ(result.status, 409) << result.body;
  EXPECT_NE(result.header("location").find("/batch_job/" + std::to_string(first)), std::string::npos);

  // A definition without a client id cannot authenticate the service.
  exec_sql(database_url(), "UPDATE oidc_servers SET token_endpoint_auth_method = 'client_secret_basic', client_id = NULL");
  result = post_job(service, payer_body("pm7"));
  EXPECT_EQ(result.status, 409);
  EXPECT_NE(parse(result)["detail"].get<std::string>().find("has no clientId"), std::string::npos) << result.body;
}

TEST_F(PayerMediatedTest, ARepeatingJobSchedulesItsNextRunWhichPullsOnlyWhatChangedSince) {
  seed_member("pm8", 4);
  auto& service = start_registered_service();
  json body = payer_body("pm8");
  body["repeatEveryDays"] = 90;
  body["repeatUntil"] = "2099-12-31";
  const long long first = start_payer_job(service, body);
  const json done = wait_for_end(service, first);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["resourcesWritten"], 7);  // Coverage, Encounter, 4 Observations, the source's Provenance
  ASSERT_TRUE(done["repeat"]["nextRunId"].is_number()) << done.dump();
  EXPECT_EQ(done["repeat"]["everyDays"], 90);
  EXPECT_EQ(done["repeat"]["previousRunId"], nullptr);

  // The next run waits 90 days, in the job list like any job; it blocks a second series for the member.
  const long long next = done["repeat"]["nextRunId"];
  json scheduled = job(service, next);
  EXPECT_EQ(scheduled["batchStatus"], "STARTING") << scheduled.dump();
  EXPECT_EQ(scheduled["flow"], "payer");
  EXPECT_EQ(scheduled["memberMatch"], json({{"result", "pending"}}));
  EXPECT_EQ(scheduled["repeat"]["previousRunId"], first);
  EXPECT_EQ(scheduled["repeat"]["until"], "2099-12-31");
  const auto day = [](int days) {
    return p2p::util::iso8601_utc(std::chrono::system_clock::now() + std::chrono::hours(24 * days)).substr(0, 10);
  };
  const std::string not_before = scheduled["notBefore"].get<std::string>().substr(0, 10);
  EXPECT_LE(day(89), not_before);
  EXPECT_GE(day(91), not_before);
  const auto listed = parse(http_get(service.url("/api/oidc_servers/1/batch_job"), {kAuthHeader}));
  EXPECT_EQ(listed["jobs"][0]["batchJobId"], next);
  const auto again = post_job(service, payer_body("pm8"));
  EXPECT_EQ(again.status, 409);
  EXPECT_NE(again.header("location").find("/batch_job/" + std::to_string(next)), std::string::npos);

  // The member's records change at the old payer after the first run started...
  const std::string token = issue_tokens("seeder")["access_token"];
  const json later = {{"resourceType", "Observation"}, {"id", "pm8-later"}, {"status", "final"},
                      {"code", {{"text", "HbA1c, later"}}}, {"subject", {{"reference", "Patient/pm8"}}}};
  const auto put = http_request("PUT", source_base() + "/Observation/pm8-later",
                                {kFhirJson, "Authorization: Bearer " + token}, later.dump());
  ASSERT_TRUE(put.status == 200 || put.status == 201) << put.body;
  // ...and the 90 days pass (the test moves the clock of that one run, not the service's).
  exec_sql(database_url(), "UPDATE batch_jobs SET not_before = now() WHERE id = " + std::to_string(next));
  const json second = wait_for_end(service, next);
  ASSERT_EQ(second["batchStatus"], "COMPLETED") << second.dump() << service.log();
  EXPECT_EQ(second["memberMatch"]["result"], "matched");  // matched again: the old payer rechecks the consent
  EXPECT_EQ(second["resourcesWritten"], 1) << "only what changed since the first run started";
  std::string since = done["startTime"];
  for (std::size_t colon; (colon = since.find(':')) != std::string::npos;) since.replace(colon, 1, "%3A");
  bool since_sent = false;
  for (const auto& request : parse(http_get(origin(source_base()) + "/__control/requests"))) {
    if (request.value("path", "").find("$everything?_since=" + since) != std::string::npos) since_sent = true;
  }
  EXPECT_TRUE(since_sent) << "the second run did not ask for what changed since " << done["startTime"];

  // The series goes on until repeatUntil; cancelling the waiting run ends it.
  ASSERT_TRUE(second["repeat"]["nextRunId"].is_number()) << second.dump();
  const long long third = second["repeat"]["nextRunId"];
  const auto cancelled = http_request(
      "POST", service.url("/api/oidc_servers/1/batch_job/" + std::to_string(third) + "/cancel"), {kAuthHeader});
  EXPECT_EQ(cancelled.status, 202) << cancelled.body;
  EXPECT_EQ(job(service, third)["batchStatus"], "STOPPED");
  EXPECT_EQ(exec_scalar(database_url(), "SELECT count(*) FROM batch_jobs WHERE member_match_request_sealed IS NOT NULL"),
            "0");
}

// --- retrieval "export" (bulk Patient/{id}/$export) -------------------------------------------------

TEST_F(PayerMediatedTest, AnExportIsPolledThenEveryFileOfItsManifestIsReadInChunksWithATokenRenewedMidway) {
  seed_member("pe1", 100);
  control(origin(source_base()), "export", {{"polls", 4}, {"linesPerFile", 40}, {"retryAfter", 1}});
  auto& service = start_registered_service({{"pageSize", 30}});
  json body = payer_body("pe1");
  body["sourcePayer"]["retrieval"] = "export";
  const long long id = start_payer_job(service, body);
  // While the source prepares the export, the job shows its X-Progress (once it has polled); the
  // service's token lapses.
  json waiting;
  ASSERT_TRUE(eventually([&] {
    waiting = job(service, id);
    return waiting["exportProgress"].value("state", "") == "waiting" && waiting["exportProgress"]["progress"].is_string();
  }, 30s)) << waiting.dump();
  EXPECT_NE(waiting["exportProgress"]["progress"].get<std::string>().find("in progress"), std::string::npos)
      << waiting.dump();
  control(issuer(), "expire-client-credentials", json::object());
  const json done = wait_for_end(service, id);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  // Patient (not copied), Coverage, Encounter, Provenance: one file each; 100 Observations: files of
  // 40, 40 and 20 lines, read in chunks of 30: 2 + 2 + 1. Nine chunks, each a transaction and a record.
  EXPECT_EQ(done["resourcesWritten"], 103);
  EXPECT_EQ(done["pagesCompleted"], 9);
  EXPECT_EQ(done["exportProgress"]["state"], "done") << done.dump();
  EXPECT_EQ(done["exportProgress"]["files"], 7);
  EXPECT_EQ(target_resources("Observation").size(), 100u);
  // One PDex Provenance per chunk that wrote something (the Patient's chunk writes nothing: the member
  // is on the target already), none overwritten by the next chunk of its file: 8.
  int chunk_provenances = 0;
  for (const auto& provenance : target_resources("Provenance")) {
    chunk_provenances += provenance.contains("meta") && provenance["meta"].contains("profile");
  }
  EXPECT_EQ(chunk_provenances, 8);
  const auto kickoffs = requests_to(origin(source_base()), "/Patient/pe1/$export?_type=");
  ASSERT_EQ(kickoffs.size(), 1u);
  EXPECT_NE(kickoffs[0]["path"].get<std::string>().find("Observation"), std::string::npos);
  EXPECT_EQ(requests_to(origin(source_base()), "/$export-file/").size(), 7u);
  // Asked for again once the source refused the lapsed token; the source is told the files can go.
  EXPECT_EQ(client_credentials_grants(), 2);
  const auto status_requests = requests_to(origin(source_base()), "/$export-status/");
  ASSERT_FALSE(status_requests.empty());
  EXPECT_EQ(status_requests.back()["method"], "DELETE");
}

TEST_F(PayerMediatedTest, ACancelWhileTheSourcePreparesTheExportDeletesItThere) {
  seed_member("pe2", 5);
  control(origin(source_base()), "export", {{"polls", 1000}, {"retryAfter", 1}});
  auto& service = start_registered_service();
  json body = payer_body("pe2");
  body["sourcePayer"]["retrieval"] = "export";
  const long long id = start_payer_job(service, body);
  ASSERT_TRUE(eventually([&] { return job(service, id)["exportProgress"].value("state", "") == "waiting"; }, 30s));
  const auto cancelled = http_request(
      "POST", service.url("/api/oidc_servers/1/batch_job/" + std::to_string(id) + "/cancel"), {kAuthHeader});
  EXPECT_EQ(cancelled.status, 202) << cancelled.body;
  const json done = wait_for_end(service, id);
  EXPECT_EQ(done["batchStatus"], "STOPPED") << done.dump();
  EXPECT_EQ(done["resourcesWritten"], 0);
  const auto status_requests = requests_to(origin(source_base()), "/$export-status/");
  ASSERT_FALSE(status_requests.empty());
  EXPECT_EQ(status_requests.back()["method"], "DELETE");
  EXPECT_EQ(status_requests.back()["status"], 202);
}

TEST_F(PayerMediatedTest, AnInstanceKilledMidExportIsResumedFromTheRecordedFileAndLine) {
  seed_member("pe3", 100);
  // Files that need no token (the manifest says so), served slowly.
  control(origin(source_base()), "export", {{"polls", 0}, {"linesPerFile", 40}, {"requiresAccessToken", false}});
  control(origin(source_base()), "delay", {{"milliseconds", 600}, {"match", "$export-file"}});
  auto& first = start_registered_service({{"pageSize", 20}});
  json body = payer_body("pe3");
  body["sourcePayer"]["retrieval"] = "export";
  const long long id = start_payer_job(first, body);
  ASSERT_TRUE(eventually([&] { return job(first, id).value("pagesCompleted", 0) >= 3; }, 60s)) << first.log();
  first.send_signal(SIGKILL);
  first.wait_exit(5s);
  auto& second = start_service({{"P2P_CLIENT_SIGNING_KEYS", key_}}, {{"pageSize", 20}});
  const json done = wait_for_end(second, id);  // after the dead instance's 5 s lease
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << second.log();
  // Files of 40, 40 and 20 Observations in chunks of 20: 2 + 2 + 1, and one chunk for each other
  // file: nine chunks recorded, none twice, none missing.
  EXPECT_EQ(done["pagesCompleted"], 9);
  EXPECT_EQ(done["resourcesWritten"], 103);
  EXPECT_EQ(target_resources("Observation").size(), 100u);
  EXPECT_EQ(requests_to(origin(source_base()), "/Patient/pe3/$export").size(), 1u) << "the export was started twice";
  for (const auto& request : requests_to(origin(source_base()), "/$export-file/")) {
    EXPECT_TRUE(request["authorization"].is_null()) << "a token was sent for a file that needs none";
  }
}

}  // namespace
}  // namespace p2p::test
