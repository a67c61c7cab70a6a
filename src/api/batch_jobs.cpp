// The batch_job routes: start an exchange for a member, follow it, list a server's jobs, cancel one.
// Request and response shapes follow the seed contract; progress fields are additive.
#include <nlohmann/json.hpp>

#include "database_call.hpp"
#include "json_body.hpp"
#include "p2p/api/routes.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/store/batch_job_repository.hpp"
#include "p2p/util/url_rules.hpp"
#include "path_params.hpp"

namespace p2p::api {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

ordered_json job_json(const store::BatchJob& job) {
  return ordered_json{{"batchJobId", job.id},
                      {"batchStatus", job.status},
                      {"startTime", nullable(job.start_time)},
                      {"createTime", job.create_time},
                      {"endTime", nullable(job.end_time)},
                      {"lastUpdated", job.last_updated},
                      {"jobConfigurationName", job.job_configuration_name},
                      {"taskId", nullable(job.task_id)},
                      {"pagesCompleted", job.pages_completed},
                      {"resourcesWritten", job.resources_written},
                      {"lastError", nullable(job.last_error)}};
}

// A string member of `object` at `path`; nullopt when absent or null. ApiError(400) for other types.
std::optional<std::string> string_field(const json& object, const char* name, const std::string& path) {
  const auto found = object.find(name);
  if (found == object.end() || found->is_null()) return std::nullopt;
  if (!found->is_string()) throw http::ApiError(400, path + " must be a string");
  return found->get<std::string>();
}

const json& object_field(const json& body, const char* name) {
  const auto found = body.find(name);
  if (found == body.end() || !found->is_object()) {
    throw http::ApiError(400, std::string(name) + " is required and must be an object (see the request body in /api/openapi.json)");
  }
  return *found;
}

long long parse_job_id(const http::PathParams& params) { return parse_positive_id<long long>(params, "batch_job_id"); }

}  // namespace

void add_batch_job_routes(http::Router& router, ApiContext context) {
  const http::RouteOptions options{.requires_auth = true, .blocking = true};
  store::Database& database = context.database;
  const crypto::TokenCipher& cipher = context.token_cipher;
  const config::ExchangeConfig& exchange = context.exchange;
  const auto job_created = context.job_created;

  router.add("POST", "/api/oidc_servers/{server_id}/batch_job",
             [&database, &cipher, &exchange, job_created](const http::Request& request, const http::PathParams& params) {
               const int pid = parse_positive_id(params, "server_id");
               const auto body = json::parse(request.body, nullptr, false);
               if (body.is_discarded() || !body.is_object()) {
                 throw http::ApiError(400, "the body must be a JSON object with sourcePayer and targetPayer (see /api/openapi.json)");
               }
               const json& source = object_field(body, "sourcePayer");
               const json& target = object_field(body, "targetPayer");
               store::NewBatchJob job;
               job.server_pid = pid;
               const auto token = string_field(source, "oidcToken", "sourcePayer.oidcToken");
               if (!token || token->empty()) {
                 throw http::ApiError(400, "sourcePayer.oidcToken is required: the member's access token at the source payer");
               }
               job.access_token = *token;
               job.refresh_token = string_field(source, "oidcRefreshToken", "sourcePayer.oidcRefreshToken");
               if (job.refresh_token && job.refresh_token->empty()) job.refresh_token.reset();
               const auto bundle_request = string_field(source, "fhirBundleRequest", "sourcePayer.fhirBundleRequest");
               job.source_patient_id = string_field(source, "patientId", "sourcePayer.patientId").value_or("");
               if (!fhir::is_fhir_id(job.source_patient_id)) {
                 throw http::ApiError(400, "sourcePayer.patientId is required: the member's Patient id at the source payer "
                                           "(a FHIR id: 1-64 of A-Z a-z 0-9 - .)");
               }
               job.target_patient_id = string_field(target, "patientId", "targetPayer.patientId").value_or("");
               if (!fhir::is_fhir_id(job.target_patient_id)) {
                 throw http::ApiError(400, "targetPayer.patientId is required: the member's Patient id at the new payer "
                                           "(a FHIR id: 1-64 of A-Z a-z 0-9 - .)");
               }
               job.target_organization_id = string_field(target, "organizationId", "targetPayer.organizationId");

               if (exchange.fhir_persistence_url.empty()) {
                 throw http::ApiError(503, "batch jobs are not available: the target FHIR server is not configured "
                                           "(exchange.fhirPersistenceUrl / P2P_FHIR_PERSISTENCE_URL)");
               }
               const auto server = require_oidc_server(database, pid);
               if (!server.fhir_endpoint) {
                 throw http::ApiError(409, "OIDC server " + std::to_string(pid) + " has no fhirEndpoint; an admin must set it first");
               }
               if (util::check_absolute_http_url(*server.fhir_endpoint)) {
                 throw http::ApiError(409, "OIDC server " + std::to_string(pid) + "'s fhirEndpoint is not an absolute "
                                           "http(s) URL; an admin must correct it");
               }
               if (!exchange.allow_plain_http && server.fhir_endpoint->starts_with("http://")) {
                 throw http::ApiError(409, "OIDC server " + std::to_string(pid) + "'s fhirEndpoint uses plain http://, which is "
                                           "refused (P2P_ALLOW_PLAIN_HTTP=true allows it for local tests only)");
               }
               try {
                 job.first_url = fhir::resolve_bundle_request(*server.fhir_endpoint, bundle_request.value_or(""),
                                                              job.source_patient_id);
               } catch (const fhir::SourceUrlError& error) {
                 throw http::ApiError(400, std::string("sourcePayer.") + error.what());
               }
               const auto created = with_database(database, [&](pqxx::connection& connection) {
                 return store::BatchJobRepository(connection, cipher).create(job);
               });
               if (job_created) job_created();
               auto response = json_response(202, job_json(created));
               response.set_header("Location", "/api/oidc_servers/" + std::to_string(pid) + "/batch_job/" +
                                                   std::to_string(created.id));
               return response;
             },
             options);

  router.add("GET", "/api/oidc_servers/{server_id}/batch_job",
             [&database, &cipher](const http::Request& request, const http::PathParams& params) {
               const int pid = parse_positive_id(params, "server_id");
               int limit = 20;
               if (auto text = request.query_param("limit")) {
                 limit = parse_positive_integer(*text, "limit");
                 if (limit > 100) throw http::ApiError(400, "limit must be between 1 and 100, got " + *text);
               }
               std::optional<long long> before;
               if (auto text = request.query_param("beforeId")) {
                 before = parse_positive_integer<long long>(*text, "beforeId");
               }
               require_oidc_server(database, pid);
               const auto jobs = with_database(database, [&](pqxx::connection& connection) {
                 return store::BatchJobRepository(connection, cipher).list(pid, limit, before);
               });
               ordered_json list = ordered_json::array();
               for (const auto& job : jobs) list.push_back(job_json(job));
               ordered_json body{{"jobs", std::move(list)}};
               if (static_cast<int>(jobs.size()) == limit) {
                 body["next"] = "/api/oidc_servers/" + std::to_string(pid) + "/batch_job?limit=" + std::to_string(limit) +
                                "&beforeId=" + std::to_string(jobs.back().id);
               }
               return json_response(200, body);
             },
             options);

  router.add("GET", "/api/oidc_servers/{server_id}/batch_job/{batch_job_id}",
             [&database, &cipher](const http::Request&, const http::PathParams& params) {
               const int pid = parse_positive_id(params, "server_id");
               const long long id = parse_job_id(params);
               const auto job = with_database(database, [&](pqxx::connection& connection) {
                 return store::BatchJobRepository(connection, cipher).find(pid, id);
               });
               if (!job) {
                 throw http::ApiError(404, "there is no batch job " + std::to_string(id) + " for OIDC server " + std::to_string(pid));
               }
               return json_response(200, job_json(*job));
             },
             options);

  router.add("POST", "/api/oidc_servers/{server_id}/batch_job/{batch_job_id}/cancel",
             [&database, &cipher](const http::Request&, const http::PathParams& params) {
               const int pid = parse_positive_id(params, "server_id");
               const long long id = parse_job_id(params);
               const auto [outcome, job] = with_database(database, [&](pqxx::connection& connection) {
                 store::BatchJobRepository jobs(connection, cipher);
                 const auto result = jobs.request_cancel(pid, id);
                 return std::make_pair(result, jobs.find(pid, id));
               });
               if (outcome == store::CancelOutcome::kNotFound || !job) {
                 throw http::ApiError(404, "there is no batch job " + std::to_string(id) + " for OIDC server " + std::to_string(pid));
               }
               if (outcome == store::CancelOutcome::kAlreadyEnded) {
                 throw http::ApiError(409, "batch job " + std::to_string(id) + " has already ended (" + job->status + ")");
               }
               return json_response(202, job_json(*job));
             },
             options);
}

}  // namespace p2p::api
