// The batch_job routes: start an exchange for a member, follow it, list a server's jobs, cancel one.
// Request and response shapes follow the seed contract; progress fields are additive.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "batch_job_body.hpp"
#include "batch_job_creation.hpp"
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

// The source's count of the member's resources, when it gave one: Bundle.total of the first page, or
// for an export the sum of the manifest's per-file counts when every file has one.
std::optional<long long> resources_total(const store::BatchJob& job) {
  if (job.retrieval != "export") return job.resources_total;
  if (!job.export_manifest) return std::nullopt;
  const auto manifest = json::parse(*job.export_manifest, nullptr, false);
  if (!manifest.is_object() || !manifest.contains("output") || !manifest["output"].is_array()) return std::nullopt;
  long long total = 0;
  for (const auto& file : manifest["output"]) {
    if (!file.is_object() || !file.contains("count") || !file["count"].is_number_integer()) return std::nullopt;
    total += std::max<long long>(0, file["count"].get<long long>());
  }
  return total;
}

// An estimate: 100 once COMPLETED; otherwise the resources read (written and skipped) against the
// source's count, at most 99 (a source's count may be off); null without a count.
ordered_json percent_complete(const store::BatchJob& job, std::optional<long long> total) {
  if (job.status == store::JobStatus::kCompleted) return 100;
  if (!total || *total <= 0) return nullptr;
  long long read = job.resources_written;
  for (const auto& [type, count] : job.resources_skipped) read += count;
  return std::min<long long>(99, read * 100 / *total);
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
  if (key.starts_with("member_authorization:")) {  // the member connect flow's own keys (member_connect.cpp)
    throw http::ApiError(400, "Idempotency-Key values starting with member_authorization: are reserved; use e.g. a UUID");
  }
  return std::string(key);
}

}  // namespace

ordered_json job_json(const store::BatchJob& job) {
  const auto total = resources_total(job);
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
                      {"resourcesTotal", total ? ordered_json(*total) : ordered_json(nullptr)},
                      {"percentComplete", percent_complete(job, total)},
                      {"warnings", job.warnings},
                      {"lastError", nullable(job.last_error)},
                      {"flow", job.flow},
                      {"memberMatch", member_match_json(job)},
                      {"notBefore", nullable(job.not_before)},
                      {"repeat", repeat_json(job)},
                      {"exportProgress", export_progress_json(job)}};
}

http::Response created_job_response(int pid, const store::CreateOutcome& outcome, bool payer) {
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
  auto response = json_response(outcome.kind == Kind::kCreated ? 202 : 200, job_json(outcome.job));
  response.set_header("Location", location);
  return response;
}

void add_batch_job_routes(http::Router& router, ApiContext context) {
  const http::RouteOptions options{.requires_auth = true, .blocking = true};
  store::Database& database = context.database;
  const crypto::TokenCipher& cipher = context.token_cipher;

  const BatchJobCreation creation{database, cipher, context.signing_keys, context.exchange, context.job_created};
  router.add("POST", "/api/oidc_servers/{server_id}/batch_job",
             [creation](const http::Request& request, const http::PathParams& params) {
               const int pid = parse_positive_id(params, "server_id");
               const BatchJobBody body = parse_batch_job_body(request.body);
               const auto outcome = create_batch_job(creation, pid, body, idempotency_key(request),
                                                     util::sha256_hex(request.body));
               return created_job_response(pid, outcome, body.member_match_parameters.has_value());
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
