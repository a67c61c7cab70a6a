// The batch_job routes: start an exchange for a member, follow it, list a server's jobs, cancel one.
// Request and response shapes follow the seed contract; progress fields are additive.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "batch_job_body.hpp"
#include "database_call.hpp"
#include "json_body.hpp"
#include "p2p/api/routes.hpp"
#include "p2p/fhir/source_url.hpp"
#include "p2p/store/batch_job_repository.hpp"
#include "p2p/util/crypto.hpp"
#include "path_params.hpp"

namespace p2p::api {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// The payer flow's match: {"result": "pending"} until $member-match has answered, then what it gave
// (result matched, no-match or consent-refused; memberIdentifier; sourcePatientId; detail). Null for
// the member flow.
ordered_json member_match_json(const store::BatchJob& job) {
  if (job.flow != "payer") return nullptr;
  if (!job.member_match) return ordered_json{{"result", "pending"}};
  const auto stored = ordered_json::parse(*job.member_match, nullptr, false);
  ordered_json shown{{"result", stored.value("result", "pending")}};
  for (const char* key : {"memberIdentifier", "sourcePatientId", "detail"}) {
    if (stored.contains(key)) shown[key] = stored[key];
  }
  return shown;
}

// A repeating payer-mediated job's schedule, or null.
ordered_json repeat_json(const store::BatchJob& job) {
  if (!job.repeat_every_days) return nullptr;
  return ordered_json{{"everyDays", *job.repeat_every_days},
                      {"until", job.repeat_until.value_or("")},
                      {"previousRunId", job.previous_run_id ? ordered_json(*job.previous_run_id) : ordered_json(nullptr)},
                      {"nextRunId", job.next_run_id ? ordered_json(*job.next_run_id) : ordered_json(nullptr)}};
}

// A bulk-export job's progress (retrieval "export"), or null: where the export is (kick-off, waiting
// for the source with its X-Progress, downloading with the file and line reached, done).
ordered_json export_progress_json(const store::BatchJob& job) {
  if (job.retrieval != "export") return nullptr;
  ordered_json progress{{"state", "kick-off"}, {"progress", nullable(job.export_progress)}};
  if (job.export_status_url && !job.export_manifest) progress["state"] = "waiting";
  if (job.export_manifest) {
    const auto manifest = ordered_json::parse(*job.export_manifest, nullptr, false);
    const auto cursor = ordered_json::parse(job.export_cursor.value_or("{}"), nullptr, false);
    const std::size_t files = manifest.is_object() ? manifest.value("output", ordered_json::array()).size() : 0;
    const std::size_t file = cursor.is_object() ? cursor.value("file", std::size_t{0}) : 0;
    progress["state"] = file >= files ? "done" : "downloading";
    progress["transactionTime"] = manifest.is_object() ? manifest.value("transactionTime", "") : "";
    progress["files"] = files;
    progress["filesDone"] = std::min(file, files);
    progress["line"] = cursor.is_object() ? cursor.value("line", std::size_t{0}) : 0;
  }
  return progress;
}

ordered_json job_json(const store::BatchJob& job) {
  return ordered_json{{"batchJobId", job.id},
                      {"batchStatus", store::to_string(job.status)},
                      {"startTime", nullable(job.start_time)},
                      {"createTime", job.create_time},
                      {"endTime", nullable(job.end_time)},
                      {"lastUpdated", job.last_updated},
                      {"jobConfigurationName", job.job_configuration_name},
                      {"taskId", nullable(job.task_id)},
                      {"pagesCompleted", job.pages_completed},
                      {"resourcesWritten", job.resources_written},
                      {"resourcesSkipped", job.resources_skipped},
                      {"warnings", job.warnings},
                      {"lastError", nullable(job.last_error)},
                      {"flow", job.flow},
                      {"memberMatch", member_match_json(job)},
                      {"notBefore", nullable(job.not_before)},
                      {"repeat", repeat_json(job)},
                      {"exportProgress", export_progress_json(job)}};
}

long long parse_job_id(const http::PathParams& params) { return parse_positive_id<long long>(params, "batch_job_id"); }

// The Idempotency-Key header (draft-ietf-httpapi-idempotency-key-header): 1-255 visible ASCII characters.
std::optional<std::string> idempotency_key(const http::Request& request) {
  const auto header = request.header("Idempotency-Key");
  if (!header) return std::nullopt;
  std::string_view key = *header;
  if (key.size() >= 2 && key.front() == '"' && key.back() == '"') key = key.substr(1, key.size() - 2);  // sf-string
  const bool visible = std::all_of(key.begin(), key.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  if (key.empty() || key.size() > 255 || !visible) {
    throw http::ApiError(400, "the Idempotency-Key header must be 1-255 visible ASCII characters, e.g. a UUID");
  }
  return std::string(key);
}

}  // namespace

void add_batch_job_routes(http::Router& router, ApiContext context) {
  const http::RouteOptions options{.requires_auth = true, .blocking = true};
  store::Database& database = context.database;
  const crypto::TokenCipher& cipher = context.token_cipher;
  const crypto::SigningKeys& signing_keys = context.signing_keys;
  const config::ExchangeConfig& exchange = context.exchange;
  const auto job_created = context.job_created;

  router.add("POST", "/api/oidc_servers/{server_id}/batch_job",
             [&database, &cipher, &signing_keys, &exchange, job_created](const http::Request& request,
                                                                        const http::PathParams& params) {
               const int pid = parse_positive_id(params, "server_id");
               const BatchJobBody body = parse_batch_job_body(request.body);
               store::NewBatchJob job;
               job.idempotency_key = idempotency_key(request);
               job.request_hash = util::sha256_hex(request.body);
               job.server_pid = pid;
               job.access_token = body.access_token;
               job.refresh_token = body.refresh_token;
               job.member_match_request = body.member_match_parameters;
               job.since = body.since;
               job.repeat_every_days = body.repeat_every_days;
               job.repeat_until = body.repeat_until;
               job.retrieval = body.retrieval;
               const bool payer = body.member_match_parameters.has_value();
               const auto& bundle_request = body.bundle_request;
               job.source_patient_id = body.source_patient_id;
               job.target_patient_id = body.target_patient_id;
               job.target_organization_id = body.target_organization_id;

               if (exchange.fhir_persistence_url.empty()) {
                 throw http::ApiError(503, "batch jobs are not available: the target FHIR server is not configured "
                                           "(exchange.fhirPersistenceUrl / P2P_FHIR_PERSISTENCE_URL)");
               }
               const auto server = require_oidc_server(database, pid);
               const std::string named = "OIDC server " + std::to_string(pid);
               switch (fhir::source_endpoint_problem(server.fhir_endpoint, exchange.allow_plain_http)) {
                 case fhir::SourceEndpointProblem::kNone:
                   break;
                 case fhir::SourceEndpointProblem::kMissing:
                   throw http::ApiError(409, named + " has no fhirEndpoint; an admin must set it first");
                 case fhir::SourceEndpointProblem::kNotAbsoluteHttp:
                   throw http::ApiError(409, named + "'s fhirEndpoint is not an absolute http(s) URL; an admin must correct it");
                 case fhir::SourceEndpointProblem::kPlainHttp:
                   throw http::ApiError(409, named + "'s fhirEndpoint uses plain http://, which is refused "
                                                     "(P2P_ALLOW_PLAIN_HTTP=true allows it for local tests only)");
               }
               if (server.token_endpoint_auth_method == "private_key_jwt" && signing_keys.empty()) {
                 // The job could not refresh the member's tokens: refused before the tokens are stored.
                 throw http::ApiError(409, named + " authenticates with private_key_jwt, but this service has no "
                                                   "signing key: an admin must set exchange.clientSigningKeys "
                                                   "(P2P_CLIENT_SIGNING_KEYS)");
               }
               if (payer && !server.client_id) {
                 throw http::ApiError(409, named + " has no clientId: the payer-mediated exchange authenticates this "
                                                   "service to the source payer as a client (client_credentials); "
                                                   "an admin must set the client id the source payer registered");
               }
               try {
                 job.first_url = payer ? fhir::member_match_url(*server.fhir_endpoint)
                                       : fhir::resolve_bundle_request(*server.fhir_endpoint, bundle_request.value_or(""),
                                                                      job.source_patient_id);
               } catch (const fhir::SourceUrlError& error) {
                 throw http::ApiError(400, std::string("sourcePayer.") + error.what());
               }
               const auto outcome = with_database(database, [&](pqxx::connection& connection) {
                 return store::BatchJobRepository(connection, cipher).create(job);
               });
               const std::string location =
                   "/api/oidc_servers/" + std::to_string(pid) + "/batch_job/" + std::to_string(outcome.job.id);
               using Kind = store::CreateOutcome::Kind;
               if (outcome.kind == Kind::kActiveJobExists && payer) {
                 throw http::ApiError(409,
                                      "the member already has a payer-mediated exchange from this source payer to this "
                                      "target patient that has not ended: batch job " + std::to_string(outcome.job.id) +
                                          " (" + location + "); poll it, or cancel it before starting another",
                                      {{"Location", location}});
               }
               if (outcome.kind == Kind::kActiveJobExists) {
                 throw http::ApiError(409,
                                      "the member already has an exchange from this source payer to this target patient "
                                      "that has not ended: batch job " + std::to_string(outcome.job.id) + " (" +
                                          location + "); poll it, or cancel it before starting another (two jobs "
                                          "would share the member's refresh token, and the first refresh would break "
                                          "the other)",
                                      {{"Location", location}});
               }
               if (outcome.kind == Kind::kKeyReused) {
                 throw http::ApiError(422, "this Idempotency-Key was used within the last 24 hours for another request "
                                           "body (batch job " + std::to_string(outcome.job.id) +
                                           "); use a new key for a new request",
                                      {{"Location", location}});
               }
               if (outcome.kind == Kind::kCreated && job_created) job_created();
               auto response = json_response(outcome.kind == Kind::kCreated ? 202 : 200, job_json(outcome.job));
               response.set_header("Location", location);
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
                 throw http::ApiError(409, "batch job " + std::to_string(id) + " has already ended (" + std::string(store::to_string(job->status)) + ")");
               }
               return json_response(202, job_json(*job));
             },
             options);
}

}  // namespace p2p::api
