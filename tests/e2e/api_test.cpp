// The HTTP API through the running binary: every route, every error status, auth on and off, and
// secrets never in a response or a log line.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "e2e_fixture.hpp"
#include "p2p/store/migrations.hpp"

using nlohmann::json;
using namespace p2p::test;

namespace {

const std::string kClientSecret = "client-secret-never-shown-7Q2x";
const std::string kPrivateJwkPart = "private-d-never-shown-9Zk1";

class ApiTest : public ServiceTest {
 protected:
  void SetUp() override {
    start();
    exec_sql(database_.url(),
             "INSERT INTO oidc_servers (name, issuer, client_id, client_secret, jwk_text, auth_well_known, scopes,"
             " fhir_endpoint, token_endpoint, custom_token_params, response_type, organization_id) VALUES"
             " ('P2P Source Payer A', 'https://sourcepayerA.com/issuer', 'p2pexchangeclientId', '" + kClientSecret +
                 "', '{\"kty\":\"RSA\",\"n\":\"abc\",\"e\":\"AQAB\",\"d\":\"" + kPrivateJwkPart + "\"}',"
             " 'https://sourcepayerA.com/.well-known/openid-configuration', 'openid profile offline_access',"
             " 'https://sourcepayerA.com/fhir-endpoint', 'https://sourcepayerA.com/token-endpoint', 'memberId',"
             " 'code', 'ABCD'),"
             " ('P2P Source Payer B', 'https://sourcepayerB.com/issuer', NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
             " NULL, 'code', NULL)");
  }

  // Asserts a problem+json response with this status and detail.
  static void expect_problem(const HttpResult& result, long status, const std::string& detail) {
    EXPECT_EQ(result.status, status) << result.body;
    EXPECT_EQ(result.header("content-type"), "application/problem+json");
    const auto body = json::parse(result.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << result.body;
    EXPECT_EQ(body["status"], status);
    EXPECT_EQ(body["type"], "about:blank");
    EXPECT_EQ(body["detail"], detail);
    EXPECT_EQ(body["requestId"], result.header("x-request-id"));
  }
};

}  // namespace

TEST_F(ApiTest, ListsServersInTheSeedShapeOrderedByPid) {
  const auto result = get("/api/oidc_servers");
  ASSERT_EQ(result.status, 200);
  EXPECT_EQ(result.header("content-type"), "application/json");
  EXPECT_EQ(result.header("cache-control"), "no-store");
  EXPECT_EQ(json::parse(result.body),
            json::parse(R"({"servers":[{"pid":1,"name":"P2P Source Payer A"},{"pid":2,"name":"P2P Source Payer B"}]})"));
}

TEST_F(ApiTest, ReturnsOneServerWithExactlyTheSeedFieldsAndNoSecrets) {
  const auto result = get("/api/oidc_servers/1");
  ASSERT_EQ(result.status, 200);
  EXPECT_EQ(result.body,
            R"({"pid":1,"name":"P2P Source Payer A","issuer":"https://sourcepayerA.com/issuer",)"
            R"("clientId":"p2pexchangeclientId","scopes":"openid profile offline_access","customTokenParams":"memberId",)"
            R"("authWellKnown":"https://sourcepayerA.com/.well-known/openid-configuration",)"
            R"("tokenEndpoint":"https://sourcepayerA.com/token-endpoint","fhirEndpoint":"https://sourcepayerA.com/fhir-endpoint",)"
            R"("responseType":"code","organizationId":"ABCD","notes":null,)"
            // After the seed's fields (issue #12): how the service authenticates at the token endpoint.
            R"("tokenEndpointAuthMethod":"client_secret_basic","systemScopes":null,)"
            // (issue #13) where the member connect flow takes the member's Patient id from the id token.
            R"("patientIdClaim":"fhirUser"})");
  const auto b = json::parse(get("/api/oidc_servers/2").body);
  EXPECT_EQ(b["clientId"], nullptr);
  EXPECT_EQ(b["fhirEndpoint"], nullptr);
  EXPECT_EQ(b["name"], "P2P Source Payer B");
}

TEST_F(ApiTest, HeadAnswersWithHeadersOnly) {
  const auto result = http_request("HEAD", service_->url("/api/oidc_servers/1"), {kAuthHeader});
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.body, "");
  EXPECT_EQ(result.header("content-length"), std::to_string(get("/api/oidc_servers/1").body.size()));
}

TEST_F(ApiTest, SqlEditsShowThroughTheApiAtOnce) {
  // The cache serves reads only once its change listener is up (it may come up after /readyz).
  ASSERT_TRUE(eventually([&] {
    return get("/metrics", false).body.find("p2p_oidc_server_cache_listening 1\n") != std::string::npos;
  })) << "the cache's change listener never came up";
  // Read first so that both routes are cached; the edit must still show (PostgreSQL notifies the
  // service on commit, which empties its cache).
  ASSERT_EQ(json::parse(get("/api/oidc_servers/1").body)["name"], "P2P Source Payer A");
  ASSERT_EQ(json::parse(get("/api/oidc_servers").body)["servers"].size(), 2u);
  exec_sql(database_.url(), "UPDATE oidc_servers SET name = 'Renamed A', notes = 'register at https://a.example' "
                            "WHERE issuer = 'https://sourcepayerA.com/issuer'");
  EXPECT_TRUE(eventually([&] { return json::parse(get("/api/oidc_servers/1").body)["name"] == "Renamed A"; }));
  EXPECT_EQ(json::parse(get("/api/oidc_servers/1").body)["notes"], "register at https://a.example");
  exec_sql(database_.url(), "DELETE FROM oidc_servers WHERE pid = 2");
  EXPECT_TRUE(eventually([&] { return get("/api/oidc_servers/2").status == 404; }));
  EXPECT_EQ(json::parse(get("/api/oidc_servers").body)["servers"].size(), 1u);
  // Reads are cached: with no write in between, a repeated read is a hit. (Repeated until one is: a
  // notification still on its way when a read starts keeps that read's answer out of the cache.)
  std::string metrics;
  EXPECT_TRUE(eventually([&] {
    get("/api/oidc_servers/1");
    metrics = get("/metrics", false).body;
    return metrics.find("p2p_oidc_server_cache_total{result=\"hit\"} 0\n") == std::string::npos;
  })) << "reads are cached\n" << metrics;
  EXPECT_NE(metrics.find("p2p_oidc_server_cache_listening 1\n"), std::string::npos);
}

TEST_F(ApiTest, ErrorsAreProblemJsonThatSayWhatToFix) {
  expect_problem(get("/api/oidc_servers/99"), 404, "there is no OIDC server with pid 99; GET /api/oidc_servers lists them");
  expect_problem(get("/api/oidc_servers/abc"), 400, "server_id must be a positive integer such as 1, got \"abc\"");
  expect_problem(get("/api/oidc_servers/0"), 400, "server_id must be a positive integer such as 1, got \"0\"");
  expect_problem(get("/api/oidc_servers/99999999999"), 400,
                 "server_id must be a positive integer such as 1, got \"99999999999\"");
  expect_problem(get("/api/nothing-here"), 404, "there is no route /api/nothing-here; the routes are listed at /api/openapi.json");

  const auto not_allowed = http_request("DELETE", service_->url("/api/oidc_servers/1"), {kAuthHeader});
  expect_problem(not_allowed, 405, "/api/oidc_servers/1 does not support DELETE; use GET, HEAD");
  EXPECT_EQ(not_allowed.header("allow"), "GET, HEAD");

  const auto wrong_type = http_request("POST", service_->url("/api/oidc_servers/1/batch_job"),
                                       {kAuthHeader, "Content-Type: text/plain"}, "hello");
  expect_problem(wrong_type, 415, "request bodies must be JSON: send Content-Type: application/json");

  const std::string big(2 * 1024 * 1024, 'x');
  const auto too_big = http_request("POST", service_->url("/api/oidc_servers/1/batch_job"),
                                    {kAuthHeader, "Content-Type: application/json"}, big);
  EXPECT_EQ(too_big.status, 413);
  EXPECT_EQ(too_big.header("content-type"), "application/problem+json");
  EXPECT_NE(too_big.body.find("the request body is larger than the limit of 1048576 bytes"), std::string::npos);
  // The service is still serving after refusing a large body.
  EXPECT_EQ(get("/api/oidc_servers").status, 200);
}

TEST_F(ApiTest, BatchJobsAreRefusedWhileNoTargetFhirServerIsConfigured) {
  const auto job = http_request("POST", service_->url("/api/oidc_servers/1/batch_job"),
                                {kAuthHeader, "Content-Type: application/json"},
                                R"({"sourcePayer":{"oidcToken":"t","patientId":"m1"},"targetPayer":{"patientId":"t1"}})");
  expect_problem(job, 503, "batch jobs are not available: the target FHIR server is not configured "
                           "(exchange.fhirPersistenceUrl / P2P_FHIR_PERSISTENCE_URL)");
  expect_problem(get("/api/oidc_servers/1/batch_job/3"), 404, "there is no batch job 3 for OIDC server 1");
  expect_problem(get("/api/oidc_servers/42/batch_job"), 404,
                 "there is no OIDC server with pid 42; GET /api/oidc_servers lists them");
  EXPECT_EQ(json::parse(get("/api/oidc_servers/1/batch_job").body), json::parse(R"({"jobs":[]})"));
}

TEST_F(ApiTest, ApiRoutesNeedAValidKeyAndOperationsRoutesStayOpen) {
  const auto missing = get("/api/oidc_servers", false);
  expect_problem(missing, 401, "this route needs an API key: send it as 'Authorization: Bearer <key>'");
  EXPECT_EQ(missing.header("www-authenticate"), "Bearer realm=\"p2p-exchange\"");
  const auto wrong = http_request("GET", service_->url("/api/oidc_servers/1"), {"Authorization: Bearer not-the-key-123456"});
  expect_problem(wrong, 401, "the API key is not valid: send a configured key as 'Authorization: Bearer <key>'");
  EXPECT_EQ(wrong.header("www-authenticate"), "Bearer realm=\"p2p-exchange\", error=\"invalid_token\"");

  EXPECT_EQ(get("/healthz", false).body, R"({"status":"ok"})");
  EXPECT_EQ(json::parse(get("/readyz", false).body),
            json({{"status", "ready"}, {"schemaVersion", p2p::store::latest_known_migration()}}));
  EXPECT_EQ(get("/metrics", false).status, 200);
  EXPECT_EQ(get("/api/openapi.json", false).status, 200);
  EXPECT_EQ(get("/", false).status, 200);
}

TEST_F(ApiTest, ServesTheOpenApiDocumentAndSwaggerUi) {
  const auto document = get("/api/openapi.json", false);
  ASSERT_EQ(document.status, 200);
  std::ifstream file(std::string(P2P_SOURCE_DIR) + "/docs/openapi.json");
  std::stringstream expected;
  expected << file.rdbuf();
  EXPECT_EQ(document.body, expected.str()) << "the served document is docs/openapi.json";
  const auto paths = json::parse(document.body)["paths"];
  for (const char* path : {"/api/oidc_servers", "/api/oidc_servers/{server_id}", "/api/oidc_servers/{server_id}/batch_job",
                           "/api/oidc_servers/{server_id}/batch_job/{batch_job_id}", "/healthz", "/readyz", "/metrics"}) {
    EXPECT_TRUE(paths.contains(path)) << path;
  }

  const auto page = get("/", false);
  EXPECT_EQ(page.header("content-type"), "text/html; charset=utf-8");
  ASSERT_TRUE(std::filesystem::exists(std::string(P2P_SOURCE_DIR) + "/tests/peers/node_modules/swagger-ui-dist/swagger-ui-bundle.js"))
      << "the npm test peers are not installed: npm ci --prefix tests/peers";
  EXPECT_NE(page.body.find("<script src=\"/swagger-ui/swagger-ui-bundle.js\"></script>"), std::string::npos);
  const auto bundle = get("/swagger-ui/swagger-ui-bundle.js", false);
  EXPECT_EQ(bundle.status, 200);
  EXPECT_GT(bundle.body.size(), 100000u);
  EXPECT_EQ(get("/swagger-ui/..%2F..%2Fetc%2Fpasswd", false).status, 404);
}

TEST_F(ApiTest, MetricsCountRequestsByRouteTemplate) {
  get("/api/oidc_servers/1");
  get("/api/oidc_servers/2");
  get("/api/oidc_servers/99");
  const auto metrics = get("/metrics", false).body;
  EXPECT_NE(metrics.find("p2p_http_requests_total{route=\"/api/oidc_servers/{server_id}\",method=\"GET\",status=\"200\"} 2\n"),
            std::string::npos) << metrics;
  EXPECT_NE(metrics.find("p2p_http_requests_total{route=\"/api/oidc_servers/{server_id}\",method=\"GET\",status=\"404\"} 1\n"),
            std::string::npos);
  EXPECT_NE(metrics.find("p2p_http_request_duration_seconds_count{route=\"/api/oidc_servers/{server_id}\",method=\"GET\"} 3\n"),
            std::string::npos);
  EXPECT_NE(metrics.find("p2p_db_pool_connections{state=\"max\"} 4\n"), std::string::npos);
}

TEST_F(ApiTest, RequestIdsAreEchoedGeneratedAndLogged) {
  const auto echoed = http_request("GET", service_->url("/api/oidc_servers"), {kAuthHeader, "X-Request-Id: portal-abc.123"});
  EXPECT_EQ(echoed.header("x-request-id"), "portal-abc.123");
  const auto replaced = http_request("GET", service_->url("/api/oidc_servers"), {kAuthHeader, "X-Request-Id: bad id with spaces"});
  EXPECT_EQ(replaced.header("x-request-id").size(), 32u);
  EXPECT_TRUE(service_->wait_for_log("[req=portal-abc.123] GET /api/oidc_servers 200")) << service_->log();
  EXPECT_TRUE(service_->wait_for_log("[req=" + replaced.header("x-request-id") + "] GET /api/oidc_servers 200"));
}

TEST_F(ApiTest, SecretsNeverAppearInAnyResponseOrLogLine) {
  std::string everything;
  for (const char* path : {"/api/oidc_servers", "/api/oidc_servers/1", "/api/oidc_servers/2", "/metrics", "/readyz",
                           "/api/oidc_servers/1/batch_job"}) {
    const auto result = get(path);
    everything += result.body;
    for (const auto& [name, value] : result.headers) everything += value;
  }
  everything += get("/api/oidc_servers/1", false).body;
  EXPECT_EQ(everything.find(kClientSecret), std::string::npos);
  EXPECT_EQ(everything.find(kPrivateJwkPart), std::string::npos);
  const auto log = service_->log();
  EXPECT_EQ(log.find(kClientSecret), std::string::npos);
  EXPECT_EQ(log.find(kPrivateJwkPart), std::string::npos);
  EXPECT_EQ(log.find(kApiKey), std::string::npos);
}

class AuthOffTest : public ServiceTest {};

TEST_F(AuthOffTest, WorksWithoutKeysAndWarnsLoudly) {
  start({{"P2P_AUTH_MODE", "none"}, {"P2P_API_KEYS", ""}});
  const auto result = get("/api/oidc_servers", false);
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.body, R"({"servers":[]})");
  EXPECT_NE(service_->log().find("*** API AUTHENTICATION IS OFF (auth.mode = \"none\")"), std::string::npos);
}

class ConfigDeclaredServersTest : public ServiceTest {};

TEST_F(ConfigDeclaredServersTest, AreUpsertedByIssuerWithoutDuplicatesAcrossRestarts) {
  const std::string path = "/tmp/" + database_.name() + ".json";
  std::ofstream(path) << R"({
    "oidcServers": [
      {"name": "Config Payer", "issuer": "https://config-payer.example.com/", "clientId": "cid",
       "clientSecret": ")" << kClientSecret << R"(", "fhirEndpoint": "https://config-payer.example.com/fhir",
       "responseType": "code", "organizationId": "12345"}
    ]
  })";
  for (int run = 0; run < 2; ++run) {
    start({}, {"--config", path});
    const auto list = json::parse(get("/api/oidc_servers").body);
    ASSERT_EQ(list["servers"].size(), 1u) << "run " << run;
    EXPECT_EQ(list["servers"][0], json::parse(R"({"pid":1,"name":"Config Payer"})"));
    const auto server = json::parse(get("/api/oidc_servers/1").body);
    EXPECT_EQ(server["organizationId"], "12345");
    EXPECT_EQ(service_->log().find(kClientSecret), std::string::npos);
    service_->send_signal(SIGTERM);
    EXPECT_EQ(service_->wait_exit(std::chrono::seconds(10)), 0);
  }
  std::filesystem::remove(path);
}
