// The member connect flow end to end (issue #13): a portal's backend asks the service for an
// authorization, the member signs in and consents on oidc-provider's own interactive pages (driven over
// HTTP by tests/peers/sign-in.mjs, as a browser would: cookies, forms, redirects), oidc-provider sends
// the browser to the service's /oauth/callback, the service exchanges the code with PKCE, verifies the
// id token and sends the browser back to the portal with a completion code; the portal's back end
// completes the authorization with it, which creates the batch job, and the job moves the member's
// records from the Medplum source to the Medplum target.
// The browser test (tests/browser) walks the same flow in Chromium with the demo portal.
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "exchange_fixture.hpp"
#include "service_process.hpp"

namespace p2p::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const std::string kReturnUrl = "https://portal.example/p2p/done";

// The query parameter `name` of `url`, percent-decoding left out (the values here are unreserved).
std::string query_value(const std::string& url, const std::string& name) {
  const auto start = url.find(name + "=", url.find('?'));
  if (start == std::string::npos) return "";
  const auto value = start + name.size() + 1;
  return url.substr(value, url.find('&', value) == std::string::npos ? std::string::npos : url.find('&', value) - value);
}

class MemberConnectTest : public ExchangeTest {
 protected:
  MemberConnectTest() : port_(ServiceProcess::free_port()) {
    extra_oauth_args_ = {"--interactive", "--redirect-uri", callback_url()};
  }

  std::string callback_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/oauth/callback"; }

  ServiceProcess& start_connect_service() {
    auto& service = start_service({{"P2P_HTTP_PORT", std::to_string(port_)},
                                   {"P2P_CONNECT_PUBLIC_BASE_URL", "http://127.0.0.1:" + std::to_string(port_)},
                                   {"P2P_CONNECT_ALLOWED_RETURN_URLS", "https://portal.example/p2p/"}});
    // The connect flow finds the sign-in page in the issuer's discovery document; the scopes are the
    // defaults (openid fhirUser launch/patient patient/*.read offline_access).
    exec_sql(database_url(), "UPDATE oidc_servers SET token_endpoint = NULL, custom_token_params = NULL");
    return service;
  }

  HttpResult authorize(ServiceProcess& service, const json& body) {
    return http_request("POST", service.url("/api/oidc_servers/1/authorizations"), {kAuthHeader, kJson}, body.dump());
  }

  json authorization_for(ServiceProcess& service, const std::string& member) {
    const auto created = authorize(service, {{"targetPayer", {{"patientId", "t-" + member}, {"organizationId", "TGT"}}},
                                             {"returnUrl", kReturnUrl}});
    EXPECT_EQ(created.status, 201) << created.body;
    return parse(created);
  }

  // The member at the payer's pages: sign in as `login`, then allow (or deny) the service's access.
  // Returns where the payer sends the browser: the service's callback with a code (or an error).
  static std::string sign_in(const std::string& authorization_url, const std::string& login, bool deny = false) {
    const std::string command = "node '" + std::string(P2P_SOURCE_DIR) + "/tests/peers/sign-in.mjs' --url '" +
                                authorization_url + "' --login '" + login + "'" + (deny ? " --deny" : "") + " 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    std::string output;
    char buffer[4096];
    while (pipe && fgets(buffer, sizeof buffer, pipe)) output += buffer;
    const int status = pipe ? pclose(pipe) : -1;
    EXPECT_EQ(status, 0) << output;
    const auto line = output.rfind("{\"redirect\"");
    if (line == std::string::npos) return "";
    return json::parse(output.substr(line, output.find('\n', line) - line))["redirect"];
  }

  HttpResult complete(ServiceProcess& service, const std::string& id, const std::string& completion_code) {
    return http_request("POST", service.url("/api/oidc_servers/1/authorizations/" + id + "/batch_job"),
                        {kAuthHeader, kJson}, json({{"completionCode", completion_code}}).dump());
  }

  // Signs `member` in and completes the authorization: the job's id.
  long long connect(ServiceProcess& service, const std::string& member) {
    const json created = authorization_for(service, member);
    const auto back = http_get(sign_in(created["authorizationUrl"], member));
    EXPECT_EQ(back.status, 303) << back.body << service.log();
    const std::string location = back.headers.count("location") ? back.headers.at("location") : "";
    const std::string completion_code = query_value(location, "completionCode");
    EXPECT_FALSE(completion_code.empty()) << location;
    const auto completed = complete(service, created["authorizationId"], completion_code);
    EXPECT_EQ(completed.status, 202) << completed.body;
    return parse(completed).value("batchJobId", 0LL);
  }

  json authorization(ServiceProcess& service, const std::string& id) {
    return parse(http_get(service.url("/api/oidc_servers/1/authorizations/" + id), {kAuthHeader}));
  }

  int port_;
};

TEST_F(MemberConnectTest, TheMemberSignsInAtTheOldPayerAndTheirRecordsArriveAtTheNewOne) {
  seed_source("m1", 6);
  auto& service = start_connect_service();

  const json created = authorization_for(service, "m1");
  const std::string url = created["authorizationUrl"];
  const std::string id = created["authorizationId"];
  EXPECT_EQ(url.rfind(issuer() + "/auth?", 0), 0u) << url;  // oidc-provider's authorization endpoint
  EXPECT_EQ(query_value(url, "response_type"), "code");
  EXPECT_EQ(query_value(url, "client_id"), "p2p-client");
  EXPECT_EQ(query_value(url, "code_challenge_method"), "S256");
  EXPECT_EQ(query_value(url, "code_challenge").size(), 43u);
  EXPECT_EQ(query_value(url, "prompt"), "consent");
  EXPECT_NE(url.find("redirect_uri=http%3A%2F%2F127.0.0.1%3A" + std::to_string(port_) + "%2Foauth%2Fcallback"),
            std::string::npos);
  const std::string state = query_value(url, "state");
  EXPECT_GE(state.size(), 43u);
  EXPECT_EQ(authorization(service, id)["status"], "pending");

  const std::string callback = sign_in(url, "m1");
  ASSERT_EQ(callback.rfind(callback_url() + "?", 0), 0u) << callback;
  const std::string code = query_value(callback, "code");
  ASSERT_FALSE(code.empty()) << callback;

  const auto back = http_get(callback);
  ASSERT_EQ(back.status, 303) << back.body << service.log();
  const std::string location = back.headers.at("location");
  ASSERT_EQ(location.rfind(kReturnUrl + "?authorizationId=" + id + "&completionCode=", 0), 0u) << location;
  EXPECT_EQ(back.headers.at("cache-control"), "no-store");
  const std::string completion_code = query_value(location, "completionCode");
  EXPECT_EQ(completion_code.size(), 64u);

  // No job yet: the portal's back end completes the authorization once it has checked that this browser
  // is the one that started it. A wrong code, or another server's id, completes nothing.
  EXPECT_EQ(authorization(service, id)["status"], "authorized");
  EXPECT_TRUE(parse(http_get(service.url("/api/oidc_servers/1/batch_job"), {kAuthHeader}))["jobs"].empty());
  const auto wrong = complete(service, id, std::string(64, 'a'));
  EXPECT_EQ(wrong.status, 409) << wrong.body;
  EXPECT_EQ(complete(service, "00000000-0000-4000-8000-000000000000", completion_code).status, 404);
  EXPECT_EQ(http_request("POST", service.url("/api/oidc_servers/1/authorizations/" + id + "/batch_job"), {kJson},
                         json({{"completionCode", completion_code}}).dump()).status,
            401);
  const auto completed = complete(service, id, completion_code);
  ASSERT_EQ(completed.status, 202) << completed.body << service.log();
  const long long job_id = parse(completed)["batchJobId"];
  EXPECT_EQ(completed.headers.at("location"), "/api/oidc_servers/1/batch_job/" + std::to_string(job_id));
  const auto again = complete(service, id, completion_code);  // a reload of the portal's page
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(parse(again)["batchJobId"], job_id);

  const json done = wait_for_end(service, job_id);
  ASSERT_EQ(done["batchStatus"], "COMPLETED") << done.dump() << service.log();
  EXPECT_EQ(done["resourcesWritten"], 8);  // Patient, Encounter, 6 Observations (the source's Provenance is kept out)
  EXPECT_EQ(done["resourcesTotal"], 9);  // the source's Bundle.total: the 8 and its own Provenance
  EXPECT_EQ(done["percentComplete"], 100);
  EXPECT_EQ(target_resources("Observation").size(), 6u);
  const json outcome = authorization(service, id);
  EXPECT_EQ(outcome["status"], "completed") << outcome.dump();
  EXPECT_EQ(outcome["batchJobId"], job_id);
  EXPECT_TRUE(outcome["error"].is_null());

  // The callback again (a browser's back button, or a stolen URL): the service's own page, no second job.
  const auto replay = http_get(callback);
  EXPECT_EQ(replay.status, 400);
  EXPECT_EQ(replay.headers.at("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(replay.body.find("cannot be used"), std::string::npos);
  const auto jobs = parse(http_get(service.url("/api/oidc_servers/1/batch_job"), {kAuthHeader}));
  EXPECT_EQ(jobs["jobs"].size(), 1u);

  // Neither the code, the state, the completion code nor the member's tokens are in the service's log.
  const std::string log = service.log();
  EXPECT_EQ(log.find(code), std::string::npos);
  EXPECT_EQ(log.find(state), std::string::npos);
  EXPECT_EQ(log.find(completion_code), std::string::npos);
  // The tokens the authorization held are gone; the state and completion code were only ever digests.
  EXPECT_EQ(exec_scalar(database_url(), "SELECT count(*) FROM member_authorizations WHERE access_token_sealed IS NOT NULL"
                                        " OR refresh_token_sealed IS NOT NULL OR code_verifier_sealed IS NOT NULL"),
            "0");
  EXPECT_NE(log.find("member connect: authorization " + id + " completed: batch job"), std::string::npos);
}

TEST_F(MemberConnectTest, TheIdTokensFhirUserNamesTheMemberWhenTheTokenResponseHasNoPatient) {
  seed_source("m2", 2);
  auto& service = start_connect_service();
  // Without launch/patient the payer sends no SMART patient: the verified id token's fhirUser says who.
  exec_sql(database_url(), "UPDATE oidc_servers SET scopes = 'openid fhirUser patient/*.read offline_access'");
  const json done = wait_for_end(service, connect(service, "m2"));
  EXPECT_EQ(done["batchStatus"], "COMPLETED") << done.dump();
  EXPECT_EQ(done["resourcesWritten"], 4);
}

// Where the code goes is decided when the member is sent to sign in: the token endpoint and key set
// found then are kept with the authorization, so a definition changed (or a payer's discovery document
// gone) while the member signs in does not send the code, the verifier and the client's credentials
// somewhere else, and the discovery document is not read twice.
TEST_F(MemberConnectTest, TheCallbackUsesTheEndpointsFoundWhenTheMemberWasSentToSignIn) {
  seed_source("m5", 2);
  auto& service = start_connect_service();
  const json created = authorization_for(service, "m5");
  exec_sql(database_url(), "UPDATE oidc_servers SET token_endpoint = 'http://127.0.0.1:1/token', "
                           "auth_well_known = 'http://127.0.0.1:1/.well-known/openid-configuration'");
  const auto back = http_get(sign_in(created["authorizationUrl"], "m5"));
  ASSERT_EQ(back.status, 303) << back.body << service.log();
  const std::string location = back.headers.at("location");
  const std::string completion_code = query_value(location, "completionCode");
  ASSERT_FALSE(completion_code.empty()) << location << service.log();
  const auto completed = complete(service, created["authorizationId"], completion_code);
  ASSERT_EQ(completed.status, 202) << completed.body;
  const json done = wait_for_end(service, parse(completed).value("batchJobId", 0LL));
  EXPECT_EQ(done["resourcesWritten"], 4) << done.dump();

  // An authorization made before migration 0010 kept none of it: its callback reads the definition
  // and the discovery document, as it did then.
  exec_sql(database_url(), "UPDATE oidc_servers SET token_endpoint = NULL, auth_well_known = NULL");
  const json older = authorization_for(service, "m5");
  exec_sql(database_url(), "UPDATE member_authorizations SET issuer = NULL, client_id = NULL, scope = NULL,"
                           " token_endpoint = NULL, jwks_uri = NULL WHERE id = '" +
                               older["authorizationId"].get<std::string>() + "'");
  const auto older_back = http_get(sign_in(older["authorizationUrl"], "m5"));
  ASSERT_EQ(older_back.status, 303) << older_back.body;
  EXPECT_FALSE(query_value(older_back.headers.at("location"), "completionCode").empty()) << older_back.headers.at("location");

  // A client or payer that is no longer the one the member authorized gets no code: the member starts again.
  const json second = authorization_for(service, "m5");
  const json third = authorization_for(service, "m5");
  exec_sql(database_url(), "UPDATE oidc_servers SET client_id = client_id || '-new'");
  const auto refused = http_get(sign_in(second["authorizationUrl"], "m5"));
  ASSERT_EQ(refused.status, 303) << refused.body;
  EXPECT_EQ(refused.headers.at("location"), kReturnUrl + "?authorizationId=" + second["authorizationId"].get<std::string>() +
                                                "&error=token_exchange_failed");
  exec_sql(database_url(), "UPDATE oidc_servers SET client_id = replace(client_id, '-new', ''), issuer = issuer || '/other'");
  const auto other_payer = http_get(sign_in(third["authorizationUrl"], "m5"));
  ASSERT_EQ(other_payer.status, 303) << other_payer.body;
  EXPECT_EQ(other_payer.headers.at("location"), kReturnUrl + "?authorizationId=" + third["authorizationId"].get<std::string>() +
                                                    "&error=token_exchange_failed");
}

TEST_F(MemberConnectTest, AnIdTokenThePayersKeyDidNotSignCreatesNoJob) {
  seed_source("m3", 1);
  auto& service = start_connect_service();
  // The definition pins a key (jwkText) that is not the one oidc-provider signs with.
  const std::string other_key =
      R"({"kty":"RSA","kid":"pinned","n":")" + std::string(342, 'A') + R"(","e":"AQAB"})";
  exec_sql(database_url(), "UPDATE oidc_servers SET jwk_text = '" + other_key + "'");
  const json created = authorization_for(service, "m3");
  const auto back = http_get(sign_in(created["authorizationUrl"], "m3"));
  ASSERT_EQ(back.status, 303) << back.body;
  EXPECT_EQ(back.headers.at("location"),
            kReturnUrl + "?authorizationId=" + created["authorizationId"].get<std::string>() + "&error=id_token_invalid");
  EXPECT_EQ(authorization(service, created["authorizationId"])["error"], "id_token_invalid");
  EXPECT_TRUE(parse(http_get(service.url("/api/oidc_servers/1/batch_job"), {kAuthHeader}))["jobs"].empty());
}

TEST_F(MemberConnectTest, ACompletionComesInTimeAndNeverStartsASecondExchangeForTheMember) {
  seed_source("m6", 3);
  auto& service = start_connect_service();
  // The first exchange is slow at the source, so it is still running when the member connects again.
  control(origin(source_base()), "delay", {{"milliseconds", 4000}, {"match", "$everything"}, {"count", 1}});
  const long long first = connect(service, "m6");
  ASSERT_GT(first, 0);

  const json created = authorization_for(service, "m6");
  const auto back = http_get(sign_in(created["authorizationUrl"], "m6"));
  const std::string id = created["authorizationId"];
  const auto second = complete(service, id, query_value(back.headers.at("location"), "completionCode"));
  EXPECT_EQ(second.status, 409) << second.body;
  EXPECT_EQ(second.headers.at("location"), "/api/oidc_servers/1/batch_job/" + std::to_string(first));
  const json outcome = authorization(service, id);
  EXPECT_EQ(outcome["status"], "failed");
  EXPECT_EQ(outcome["error"], "exchange_in_progress");
  EXPECT_EQ(outcome["batchJobId"], first);
  const auto again = complete(service, id, query_value(back.headers.at("location"), "completionCode"));
  EXPECT_EQ(again.status, 409) << again.body;  // the same answer, not a job of its own
  EXPECT_EQ(wait_for_end(service, first)["batchStatus"], "COMPLETED");

  // A portal that comes back too late finds the member's tokens gone.
  const json late = authorization_for(service, "m6");
  const auto late_back = http_get(sign_in(late["authorizationUrl"], "m6"));
  exec_sql(database_url(), "UPDATE member_authorizations SET used_at = now() - interval '11 minutes'"
                           " WHERE status = 'authorized'");
  const auto expired = complete(service, late["authorizationId"], query_value(late_back.headers.at("location"), "completionCode"));
  EXPECT_EQ(expired.status, 409) << expired.body;
  EXPECT_NE(expired.body.find("must start again"), std::string::npos);
  EXPECT_EQ(authorization(service, late["authorizationId"])["error"], "expired");
  EXPECT_EQ(exec_scalar(database_url(), "SELECT count(*) FROM member_authorizations WHERE access_token_sealed IS NOT NULL"),
            "0");
  EXPECT_EQ(parse(http_get(service.url("/api/oidc_servers/1/batch_job"), {kAuthHeader}))["jobs"].size(), 1u);
}

TEST_F(MemberConnectTest, AMemberWhoDeniesAccessIsSentBackWithAccessDenied) {
  auto& service = start_connect_service();
  const json created = authorization_for(service, "m4");
  const std::string callback = sign_in(created["authorizationUrl"], "m4", /*deny=*/true);
  ASSERT_NE(callback.find("error=access_denied"), std::string::npos) << callback;
  // A link checker's HEAD does not use the member's sign-in up.
  EXPECT_EQ(http_request("HEAD", callback).status, 200);
  EXPECT_EQ(authorization(service, created["authorizationId"])["status"], "pending");
  const auto back = http_get(callback);
  ASSERT_EQ(back.status, 303) << back.body;
  EXPECT_EQ(back.headers.at("location"),
            kReturnUrl + "?authorizationId=" + created["authorizationId"].get<std::string>() + "&error=access_denied");
  const json outcome = authorization(service, created["authorizationId"]);
  EXPECT_EQ(outcome["status"], "failed");
  EXPECT_EQ(outcome["error"], "access_denied");
}

TEST_F(MemberConnectTest, StatesThatAreForgedExpiredOrMisdirectedAreRefused) {
  auto& service = start_connect_service();

  // A forged state, with markup in it: the service's fixed page, nothing of the request echoed.
  const auto forged = http_get(service.url("/oauth/callback?code=abc&state=%3Cscript%3Ealert(1)%3C%2Fscript%3E"));
  EXPECT_EQ(forged.status, 400);
  EXPECT_EQ(forged.body.find("<script>"), std::string::npos);
  EXPECT_EQ(forged.body.find("alert"), std::string::npos);
  EXPECT_NE(forged.headers.at("content-security-policy").find("default-src 'none'"), std::string::npos);
  EXPECT_EQ(http_get(service.url("/oauth/callback")).status, 400);
  const auto malformed = http_get(service.url("/oauth/callback?state=%ZZ&code=x"));
  EXPECT_EQ(malformed.status, 400);
  EXPECT_EQ(malformed.headers.at("content-type"), "text/html; charset=utf-8");

  // An authorization whose 10 minutes are up: the portal hears "expired".
  const json created = authorization_for(service, "m5");
  const std::string state = query_value(created["authorizationUrl"], "state");
  exec_sql(database_url(), "UPDATE member_authorizations SET expires_at = now() - interval '1 second'");
  EXPECT_EQ(authorization(service, created["authorizationId"])["status"], "expired");
  const auto late = http_get(service.url("/oauth/callback?code=abc&state=" + state));
  ASSERT_EQ(late.status, 303) << late.body;
  EXPECT_EQ(late.headers.at("location"),
            kReturnUrl + "?authorizationId=" + created["authorizationId"].get<std::string>() + "&error=expired");

  // The state and verifier are not kept in clear.
  const std::string stored = exec_scalar(database_url(), "SELECT state_hash || ' ' || coalesce(code_verifier_sealed, '')"
                                                       " FROM member_authorizations");
  EXPECT_EQ(stored.find(state), std::string::npos);

  // A returnUrl off the allow-list is refused before anything is stored or sent.
  for (const std::string evil : {"https://evil.example/p2p/done", "https://portal.example/p2pevil",
                                 "https://portal.example/p2p/../admin", "javascript:alert(1)"}) {
    const auto refused = authorize(service, {{"targetPayer", {{"patientId", "t-1"}}}, {"returnUrl", evil}});
    EXPECT_EQ(refused.status, 400) << evil;
    EXPECT_NE(refused.body.find("connect.allowedReturnUrls"), std::string::npos) << refused.body;
  }
  EXPECT_EQ(authorize(service, {{"targetPayer", {{"patientId", "t-1"}}}}).status, 400);
  EXPECT_EQ(http_request("POST", service.url("/api/oidc_servers/1/authorizations"), {kJson},
                         json({{"targetPayer", {{"patientId", "t-1"}}}, {"returnUrl", kReturnUrl}}).dump()).status,
            401);
  EXPECT_EQ(authorize(service, {{"targetPayer", {{"patientId", "t-1"}}}, {"returnUrl", kReturnUrl}}).status, 201);
  EXPECT_EQ(http_get(service.url("/api/oidc_servers/1/authorizations/not-an-id"), {kAuthHeader}).status, 404);
  // Ids that are not UTF-8 once decoded are not an error of the service's.
  EXPECT_EQ(http_get(service.url("/api/oidc_servers/1/authorizations/%FF%FE"), {kAuthHeader}).status, 404);
  EXPECT_EQ(complete(service, "%FF", "x").status, 404);
  // The flow's own idempotency keys cannot be taken by a POST .../batch_job.
  const auto reserved = http_request("POST", service.url("/api/oidc_servers/1/batch_job"),
                                     {kAuthHeader, kJson, "Idempotency-Key: member_authorization:x"},
                                     json({{"sourcePayer", {{"oidcToken", "t"}, {"patientId", "p"}}},
                                           {"targetPayer", {{"patientId", "t-1"}}}}).dump());
  EXPECT_EQ(reserved.status, 400) << reserved.body;
}

}  // namespace
}  // namespace p2p::test
