#pragma once
// The exchange end to end with real peers: the binary, PostgreSQL, two Medplum FHIR servers (source
// and target, tests/peers/fhir-server.mjs) and oidc-provider (tests/peers/oauth-server.mjs) issuing
// and introspecting the member's tokens. Nothing here is mocked. Shared by exchange_test.cpp and
// untrusted_peers_test.cpp.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "e2e_fixture.hpp"
#include "node_peer.hpp"
#include "p2p/fhir/page_transform.hpp"

namespace p2p::test {

using nlohmann::json;
using namespace std::chrono_literals;


inline const std::string kClientSecret = "p2p s3cret+/x";  // needs form-encoding in HTTP Basic (RFC 6749 2.3.1)
inline const std::string kJson = "Content-Type: application/json";
inline const std::string kFhirJson = "Content-Type: application/fhir+json";

inline json parse(const HttpResult& result) { return json::parse(result.body, nullptr, false); }

// Sets a test peer's misbehaviour: POST {origin}/__control/{what} (tests/peers/README.md).
inline void control(const std::string& origin, const std::string& what, const json& body) {
  const auto result = http_request("POST", origin + "/__control/" + what, {kJson}, body.dump());
  ASSERT_EQ(result.status, 200) << what << ": " << result.body;
}

// Refresh-token grants the OAuth peer has seen (tests/peers/oauth-server.mjs token-stats).
inline int refreshes_seen(const std::string& issuer) {
  const auto stats = parse(http_get(issuer + "/__control/token-stats"));
  return stats.value("/byGrantType/refresh_token"_json_pointer, 0);
}

class ExchangeTest : public ServiceFixture {
 protected:
  void SetUp() override {
    std::vector<std::string> oauth_args{"--client-id", "p2p-client", "--client-secret", kClientSecret,
                                        "--introspection-client-id", "fhir-rs", "--introspection-client-secret",
                                        "fhir-secret"};
    oauth_args.insert(oauth_args.end(), extra_oauth_args_.begin(), extra_oauth_args_.end());
    oauth_ = std::make_unique<NodePeer>("oauth-server.mjs", oauth_args);
    std::vector<std::string> source_args{"--quiet", "--base", source_path_, "--page-size", "40", "--introspection-url",
                                         oauth_->ready()["introspection_endpoint"], "--introspection-client-id",
                                         "fhir-rs", "--introspection-client-secret", "fhir-secret"};
    source_args.insert(source_args.end(), extra_source_args_.begin(), extra_source_args_.end());
    source_ = std::make_unique<NodePeer>("fhir-server.mjs", source_args);
    target_ = std::make_unique<NodePeer>("fhir-server.mjs", std::vector<std::string>{"--quiet", "--base", target_path_});
  }

  // Where the peers serve FHIR ("/" = at the server's root); set by a derived fixture's constructor.
  std::string source_path_ = "/fhir";
  std::string target_path_ = "/fhir";
  std::vector<std::string> extra_oauth_args_;   // e.g. {"--scope", "system/*.read"}
  std::vector<std::string> extra_source_args_;  // e.g. {"--smart-configuration"}


  std::string issuer() const { return oauth_->ready()["issuer"]; }
  std::string source_base() const { return source_->ready()["base"]; }
  std::string target_base() const { return target_->ready()["base"]; }
  static std::string origin(const std::string& base) { return base.substr(0, base.rfind("/fhir")); }

  ServiceProcess& start_service(std::map<std::string, std::string> extra_env = {}, const json& exchange = json::object()) {
    json config = {{"exchange",
                    {{"pollIntervalMilliseconds", 100}, {"initialBackoffMilliseconds", 50}, {"maxBackoffSeconds", 2},
                     {"leaseSeconds", 5}}}};
    config["exchange"].update(exchange);
    std::map<std::string, std::string> env = {{"P2P_FHIR_PERSISTENCE_URL", target_base()},
                                              {"P2P_ALLOW_PLAIN_HTTP", "true"}};
    for (auto& [key, value] : extra_env) env[key] = value;
    auto& service = launch(env, config);
    if (!definition_added_) {
      exec_sql(database_url(),
               "INSERT INTO oidc_servers (name, issuer, client_id, client_secret, fhir_endpoint, token_endpoint,"
               " organization_id, custom_token_params) VALUES ('Source Payer A', '" + issuer() + "', 'p2p-client', '" +
                   kClientSecret + "', '" + source_base() + "', '" + issuer() + "/token', 'ABCD', 'memberId')");
      definition_added_ = true;
    }
    return service;
  }


  json issue_tokens(const std::string& member, int access_ttl = 600) {
    return parse(http_request("POST", issuer() + "/__control/issue", {kJson},
                              json({{"sub", member}, {"accessTtl", access_ttl}}).dump()));
  }

  // The member's records at the source: their Patient, one Encounter, `observations` Observations
  // referencing both, and a Provenance of the source's own.
  void seed_source(const std::string& member, int observations) {
    const std::string token = issue_tokens("seeder")["access_token"];
    json entries = json::array();
    entries.push_back({{"resource", {{"resourceType", "Patient"}, {"id", member}, {"name", {{{"family", "Doe"}}}}}},
                       {"request", {{"method", "PUT"}, {"url", "Patient/" + member}}}});
    entries.push_back({{"resource", {{"resourceType", "Encounter"}, {"id", member + "-e1"}, {"status", "finished"},
                                     {"class", {{"system", "http://terminology.hl7.org/CodeSystem/v3-ActCode"}, {"code", "AMB"}}},
                                     {"subject", {{"reference", "Patient/" + member}}}}},
                       {"request", {{"method", "PUT"}, {"url", "Encounter/" + member + "-e1"}}}});
    for (int i = 0; i < observations; ++i) {
      const std::string id = member + "-o" + std::to_string(i);
      entries.push_back({{"resource", {{"resourceType", "Observation"}, {"id", id}, {"status", "final"},
                                       {"code", {{"text", "HbA1c " + std::to_string(i)}}},
                                       {"subject", {{"reference", "Patient/" + member}}},
                                       {"encounter", {{"reference", "Encounter/" + member + "-e1"}}}}},
                         {"request", {{"method", "PUT"}, {"url", "Observation/" + id}}}});
    }
    entries.push_back({{"resource", {{"resourceType", "Provenance"}, {"id", member + "-pv"},
                                     {"target", {{{"reference", "Patient/" + member}}}},
                                     {"recorded", "2025-01-01T00:00:00Z"},
                                     {"agent", {{{"who", {{"reference", "Patient/" + member}}}}}}}},
                       {"request", {{"method", "PUT"}, {"url", "Provenance/" + member + "-pv"}}}});
    for (std::size_t start = 0; start < entries.size(); start += 40) {
      json chunk = json::array();
      for (std::size_t i = start; i < std::min(entries.size(), start + 40); ++i) chunk.push_back(entries[i]);
      const auto result = http_request("POST", source_base(), {kFhirJson, "Authorization: Bearer " + token},
                                       json({{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", chunk}}).dump());
      ASSERT_EQ(result.status, 200) << result.body;
    }
  }

  HttpResult post_job(ServiceProcess& service, const json& body) {
    return http_request("POST", service.url("/api/oidc_servers/1/batch_job"), {kAuthHeader, kJson}, body.dump());
  }

  long long start_job(ServiceProcess& service, const json& tokens, const std::string& member, const json& extra = json::object()) {
    json body = {{"sourcePayer", {{"oidcToken", tokens["access_token"]}, {"oidcRefreshToken", tokens["refresh_token"]},
                                  {"patientId", member}}},
                 {"targetPayer", {{"patientId", "t-" + member}, {"organizationId", "TGT"}}}};
    body["sourcePayer"].update(extra);
    const auto result = post_job(service, body);
    EXPECT_EQ(result.status, 202) << result.body;
    return parse(result)["batchJobId"].get<long long>();
  }

  json job(ServiceProcess& service, long long id) {
    return parse(http_get(service.url("/api/oidc_servers/1/batch_job/" + std::to_string(id)), {kAuthHeader}));
  }

  json wait_for_end(ServiceProcess& service, long long id, std::chrono::seconds timeout = 60s) {
    json current;
    eventually([&] {
      current = job(service, id);
      const std::string status = current.value("batchStatus", "");
      return status == "COMPLETED" || status == "FAILED" || status == "STOPPED";
    }, timeout);
    return current;
  }

  std::vector<json> target_resources(const std::string& type) {
    std::vector<json> resources;
    const auto bundle = parse(http_get(target_base() + "/" + type + "?_count=1000"));
    for (const auto& entry : bundle.value("entry", json::array())) resources.push_back(entry["resource"]);
    return resources;
  }

  json validate_on_target(const json& resource) {
    return parse(http_request("POST", origin(target_base()) + "/__control/validate?errorsOnly=1", {kFhirJson}, resource.dump()));
  }

  std::unique_ptr<NodePeer> oauth_, source_, target_;
  bool definition_added_ = false;
};

inline std::string target_id(const std::string& type, const std::string& source_id) {
  return p2p::fhir::target_id("ABCD", type, source_id);
}


}  // namespace p2p::test
