#include "p2p/store/batch_job_repository.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <string_view>

#include <nlohmann/json.hpp>

namespace p2p::store {
namespace {

// A macro so the SQL is joined at compile time (std::string + on these literals trips GCC 12's
// -Warray-bounds false positive). read_job reads its columns by these names.
#define P2P_BATCH_JOB_COLUMNS                                                                                \
    "id, server_pid, status, job_configuration_name, source_patient_id, target_patient_id, target_organization_id,"  \
    " first_url, next_url, task_id, pages_completed, resources_written, last_error, attempts,"                \
    " to_char(create_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS create_time_text,"         \
    " to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS start_time_text,"           \
    " to_char(end_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS end_time_text,"               \
    " to_char(last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS last_updated_text,"       \
    " resources_skipped::text AS resources_skipped_json,"                                                      \
    " extract(epoch FROM now() - coalesce(last_progress_at, start_time, create_time))::bigint"                 \
    "   AS seconds_since_progress,"                                                                            \
    " warnings::text AS warnings_json, source_error, flow, since, member_match::text AS member_match_json,"        \
    " to_char(not_before AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS not_before_text,"           \
    " repeat_every_days, to_char(repeat_until, 'YYYY-MM-DD') AS repeat_until_text, previous_run_id,"          \
    " (SELECT min(next.id) FROM batch_jobs next WHERE next.previous_run_id = batch_jobs.id) AS next_run_id,"   \
    " retrieval, export_status_url, export_progress, export_manifest::text AS export_manifest_json,"            \
    " export_cursor::text AS export_cursor_json, resources_total"

std::optional<std::string> optional_text(const pqxx::field& field) {
  if (field.is_null()) return std::nullopt;
  return field.as<std::string>();
}

const char* nullable(const std::optional<std::string>& value) { return value ? value->c_str() : nullptr; }

// {"Type": n, ...} for resources_skipped. Its keys are resource type names (letters only): anything
// else is a caller's mistake.
std::string counts_json(const std::map<std::string, long long>& counts) {
  for (const auto& [type, count] : counts) {
    if (type.empty() || !std::all_of(type.begin(), type.end(), [](unsigned char c) { return std::isalpha(c) != 0; })) {
      throw std::invalid_argument("not a resource type name: " + type);
    }
  }
  return nlohmann::json(counts).dump();
}

JobStatus status_of(const pqxx::field& field) {
  const auto text = field.as<std::string>();
  const auto status = parse_job_status(text);
  // The column's CHECK constraint allows only the six: anything else is a schema this build does not know.
  if (!status) throw std::runtime_error("batch_jobs.status has a value this version does not know: " + text);
  return *status;
}

// A PostgreSQL array literal of integers, for `= ANY($n::bigint[])`.
std::string id_array(const std::vector<long long>& ids) {
  std::string text = "{";
  for (const long long id : ids) text += (text.size() > 1 ? "," : "") + std::to_string(id);
  return text + "}";
}

BatchJob read_job(const pqxx::row& row) {
  BatchJob job;
  job.id = row["id"].as<long long>();
  job.server_pid = row["server_pid"].as<int>();
  job.status = status_of(row["status"]);
  job.job_configuration_name = row["job_configuration_name"].as<std::string>();
  job.source_patient_id = row["source_patient_id"].as<std::string>();
  job.target_patient_id = row["target_patient_id"].as<std::string>();
  job.target_organization_id = optional_text(row["target_organization_id"]);
  job.first_url = row["first_url"].as<std::string>();
  job.next_url = optional_text(row["next_url"]);
  job.task_id = optional_text(row["task_id"]);
  job.pages_completed = row["pages_completed"].as<int>();
  job.resources_written = row["resources_written"].as<int>();
  job.last_error = optional_text(row["last_error"]);
  job.attempts = row["attempts"].as<int>();
  job.create_time = row["create_time_text"].as<std::string>();
  job.start_time = optional_text(row["start_time_text"]);
  job.end_time = optional_text(row["end_time_text"]);
  job.last_updated = row["last_updated_text"].as<std::string>();
  job.resources_skipped =
      nlohmann::json::parse(row["resources_skipped_json"].as<std::string>()).get<std::map<std::string, long long>>();
  job.seconds_since_progress = row["seconds_since_progress"].as<long long>();
  for (const auto& warning : nlohmann::json::parse(row["warnings_json"].as<std::string>())) {
    job.warnings.push_back(warning.get<std::string>());
  }
  job.source_error = optional_text(row["source_error"]);
  job.flow = row["flow"].as<std::string>();
  job.since = optional_text(row["since"]);
  job.member_match = optional_text(row["member_match_json"]);
  job.not_before = optional_text(row["not_before_text"]);
  if (!row["repeat_every_days"].is_null()) job.repeat_every_days = row["repeat_every_days"].as<int>();
  job.repeat_until = optional_text(row["repeat_until_text"]);
  if (!row["previous_run_id"].is_null()) job.previous_run_id = row["previous_run_id"].as<long long>();
  if (!row["next_run_id"].is_null()) job.next_run_id = row["next_run_id"].as<long long>();
  job.retrieval = row["retrieval"].as<std::string>();
  job.export_status_url = optional_text(row["export_status_url"]);
  job.export_progress = optional_text(row["export_progress"]);
  if (!row["resources_total"].is_null()) job.resources_total = row["resources_total"].as<long long>();
  job.export_manifest = optional_text(row["export_manifest_json"]);
  job.export_cursor = optional_text(row["export_cursor_json"]);
  return job;
}

// Runs one UPDATE fenced by "WHERE id = $1 AND lease_owner = $2"; true when the owner still held the job.
template <typename... Args>
bool update_if_owner(pqxx::connection& connection, const char* sql, long long id, const std::string& owner,
                     Args&&... args) {
  pqxx::work tx(connection);
  const auto result = tx.exec_params(sql, id, owner, std::forward<Args>(args)...);
  tx.commit();
  return result.affected_rows() == 1;
}

std::string owner_of(long long id) { return "batch_job:" + std::to_string(id); }

std::string seconds_text(std::chrono::seconds lease) { return std::to_string(lease.count()) + " seconds"; }

}  // namespace

CreateOutcome BatchJobRepository::create(const NewBatchJob& job) {
  pqxx::work tx(connection_);
  // Serialise creations for one key and for one member, so two concurrent requests cannot both create.
  if (job.idempotency_key) {
    tx.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                   "batch_job_key:" + std::to_string(job.server_pid) + "|" + *job.idempotency_key);
    const auto earlier = tx.exec_params(
        "SELECT " P2P_BATCH_JOB_COLUMNS ", request_hash FROM batch_jobs WHERE server_pid = $1 AND idempotency_key = $2"
        " AND create_time > now() - interval '24 hours' ORDER BY id DESC LIMIT 1",
        job.server_pid, *job.idempotency_key);
    if (!earlier.empty()) {
      const auto hash = earlier[0]["request_hash"];
      const bool same = !hash.is_null() && hash.as<std::string>() == job.request_hash;
      return {same ? CreateOutcome::Kind::kReplayed : CreateOutcome::Kind::kKeyReused, read_job(earlier[0])};
    }
  }
  const bool payer = job.member_match_request.has_value();
  // The member, as far as this server knows them: in the payer flow, only the target patient (the
  // source's id comes with the match).
  tx.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                 (payer ? "batch_job_payer:" : "batch_job_member:") + std::to_string(job.server_pid) + "|" +
                     job.source_patient_id + "|" + job.target_patient_id);
  const auto active = tx.exec_params(
      payer ? "SELECT " P2P_BATCH_JOB_COLUMNS " FROM batch_jobs WHERE server_pid = $1 AND flow = 'payer'"
              " AND target_patient_id = $3 AND $2 = '' AND status IN ('STARTING', 'STARTED', 'STOPPING') ORDER BY id LIMIT 1"
            : "SELECT " P2P_BATCH_JOB_COLUMNS " FROM batch_jobs WHERE server_pid = $1 AND source_patient_id = $2"
              " AND target_patient_id = $3 AND status IN ('STARTING', 'STARTED', 'STOPPING') ORDER BY id LIMIT 1",
      job.server_pid, payer ? std::string() : job.source_patient_id, job.target_patient_id);
  if (!active.empty()) return {CreateOutcome::Kind::kActiveJobExists, read_job(active[0])};

  // The payer flow's first request is $member-match (first_url); its first page comes with the match.
  const auto row = tx.exec_params1(
      "INSERT INTO batch_jobs (server_pid, source_patient_id, target_patient_id, target_organization_id,"
      " first_url, next_url, idempotency_key, request_hash, flow, since, repeat_every_days, repeat_until, retrieval)"
      " VALUES ($1, $2, $3, $4, $5, CASE WHEN $8 = 'payer' THEN NULL ELSE $5 END, $6, $7, $8, $9, $10, $11::date, $12)"
      " RETURNING " P2P_BATCH_JOB_COLUMNS,
      job.server_pid, payer ? std::string() : job.source_patient_id, job.target_patient_id,
      nullable(job.target_organization_id), job.first_url, nullable(job.idempotency_key), job.request_hash,
      std::string(payer ? "payer" : "member"), nullable(job.since),
      job.repeat_every_days ? std::to_string(*job.repeat_every_days).c_str() : nullptr, nullable(job.repeat_until),
      job.retrieval);
  BatchJob created = read_job(row);
  // Tokens and the member-match request are sealed with the job id as associated data, so they only
  // open for this row.
  std::optional<std::string> access, refresh, request;
  if (!payer) access = cipher_.seal(job.access_token, owner_of(created.id));
  if (job.refresh_token) refresh = cipher_.seal(*job.refresh_token, owner_of(created.id));
  if (payer) request = cipher_.seal(*job.member_match_request, owner_of(created.id));
  tx.exec_params("UPDATE batch_jobs SET access_token_sealed = $2, refresh_token_sealed = $3,"
                 " member_match_request_sealed = $4 WHERE id = $1",
                 created.id, nullable(access), nullable(refresh), nullable(request));
  tx.commit();
  return {CreateOutcome::Kind::kCreated, std::move(created)};
}

std::optional<BatchJob> BatchJobRepository::find(int server_pid, long long id) {
  pqxx::read_transaction tx(connection_);
  const auto rows = tx.exec_params(
      "SELECT " P2P_BATCH_JOB_COLUMNS " FROM batch_jobs WHERE id = $1 AND server_pid = $2", id, server_pid);
  if (rows.empty()) return std::nullopt;
  return read_job(rows[0]);
}

std::vector<BatchJob> BatchJobRepository::list(int server_pid, int limit, std::optional<long long> before_id) {
  pqxx::read_transaction tx(connection_);
  const auto rows = tx.exec_params("SELECT " P2P_BATCH_JOB_COLUMNS
                                   " FROM batch_jobs WHERE server_pid = $1 AND ($2::bigint IS NULL OR id < $2)"
                                   " ORDER BY id DESC LIMIT $3",
                                   server_pid, before_id ? std::to_string(*before_id).c_str() : nullptr, limit);
  std::vector<BatchJob> jobs;
  for (const auto& row : rows) jobs.push_back(read_job(row));
  return jobs;
}

CancelOutcome BatchJobRepository::request_cancel(int server_pid, long long id) {
  pqxx::work tx(connection_);
  const auto rows = tx.exec_params(
      "SELECT status, lease_owner IS NOT NULL AND lease_expires_at > now() AS running FROM batch_jobs"
      " WHERE id = $1 AND server_pid = $2 FOR UPDATE",
      id, server_pid);
  if (rows.empty()) return CancelOutcome::kNotFound;
  const auto status = status_of(rows[0]["status"]);
  if (!is_active(status)) return CancelOutcome::kAlreadyEnded;
  const bool running = rows[0]["running"].as<bool>();
  if (running || status == JobStatus::kStarted) {
    tx.exec_params("UPDATE batch_jobs SET status = 'STOPPING' WHERE id = $1", id);
  } else {
    // Nobody runs it: stop it now, and delete the tokens with it.
    tx.exec_params(
        "UPDATE batch_jobs SET status = 'STOPPED', end_time = now(), access_token_sealed = NULL,"
        " refresh_token_sealed = NULL, member_match_request_sealed = NULL, lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
        id);
  }
  tx.commit();
  return CancelOutcome::kStopping;
}

std::vector<ClaimedJob> BatchJobRepository::claim(const std::string& owner, std::chrono::seconds lease, int max_jobs,
                                                  int max_lost_leases, const std::vector<long long>& running) {
  pqxx::work tx(connection_);
  const auto rows = tx.exec_params(
      "UPDATE batch_jobs SET lease_owner = $1, lease_expires_at = now() + $2::interval,"
      " status = CASE WHEN status = 'STARTING' THEN 'STARTED' ELSE status END,"
      " start_time = coalesce(start_time, now()), attempts = attempts + 1, not_before = NULL,"
      " lost_leases = lost_leases + CASE WHEN lease_owner IS NOT NULL THEN 1 ELSE 0 END"  // the old owner never let go
      " WHERE id IN (SELECT id FROM batch_jobs WHERE status IN ('STARTING', 'STARTED', 'STOPPING')"
      " AND (lease_expires_at IS NULL OR lease_expires_at < now())"
      " AND (not_before IS NULL OR not_before <= now() OR status = 'STOPPING')"
      " AND id <> ALL($4::bigint[])"
      " ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $3)"
      " RETURNING " P2P_BATCH_JOB_COLUMNS ", access_token_sealed, refresh_token_sealed, member_match_request_sealed,"
      " lost_leases",
      owner, seconds_text(lease), max_jobs, id_array(running));
  tx.commit();
  std::vector<ClaimedJob> claimed;
  for (const auto& row : rows) {
    ClaimedJob job{read_job(row), {}, std::nullopt, std::nullopt};
    if (const int lost = row["lost_leases"].as<int>(); lost > max_lost_leases && job.job.status != JobStatus::kStopping) {
      // A job that takes every instance down with it is not run again: fail it alone, and say why.
      finish(job.job.id, owner, job.job.pages_completed, JobStatus::kFailed,
             "the job was taken over " + std::to_string(lost) + " times in a row from an instance that stopped "
             "answering before it finished a page (a page that crashes or exhausts the service?); it is not run again "
             "(exchange.maxClaims is " + std::to_string(max_lost_leases) + "): look for the cause in the logs of those "
             "instances, then start a new job");
      continue;
    }
    try {
      const auto access = row["access_token_sealed"], refresh = row["refresh_token_sealed"];
      if (!access.is_null()) job.access_token = cipher_.open(access.as<std::string>(), owner_of(job.job.id));
      if (!refresh.is_null()) job.refresh_token = cipher_.open(refresh.as<std::string>(), owner_of(job.job.id));
      if (const auto request = row["member_match_request_sealed"]; !request.is_null()) {
        job.member_match_request = cipher_.open(request.as<std::string>(), owner_of(job.job.id));
      }
    } catch (const crypto::CipherError& error) {
      // Retrying cannot help (the key is gone): fail this job alone, and say why.
      finish(job.job.id, owner, job.job.pages_completed, JobStatus::kFailed,
             std::string("the member's tokens cannot be decrypted with the configured keys (") + error.what() +
                 "); keep a replaced key in exchange.retiredTokenEncryptionKeys, then start a new job");
      continue;
    }
    claimed.push_back(std::move(job));
  }
  return claimed;
}

std::vector<long long> BatchJobRepository::renew_leases(const std::string& owner, std::chrono::seconds lease,
                                                       const std::vector<long long>& running) {
  if (running.empty()) return {};
  pqxx::work tx(connection_);
  const auto rows = tx.exec_params(
      "UPDATE batch_jobs SET lease_expires_at = now() + $2::interval WHERE lease_owner = $1 AND id = ANY($3::bigint[])"
      " AND status IN ('STARTED', 'STOPPING') RETURNING id",
      owner, seconds_text(lease), id_array(running));
  tx.commit();
  std::vector<long long> ids;
  for (const auto& row : rows) ids.push_back(row["id"].as<long long>());
  return ids;
}

void PagesRecord::add(PagesRecord later) {
  pages += later.pages;
  next_url = std::move(later.next_url);
  resources_written += later.resources_written;
  for (const auto& [type, count] : later.skipped) skipped[type] += count;
  for (auto& warning : later.warnings) {
    if (warnings.size() >= kKeptWarnings) break;
    warnings.push_back(std::move(warning));
  }
  if (!source_error) source_error = std::move(later.source_error);
  if (later.export_cursor) export_cursor = std::move(later.export_cursor);
  if (!resources_total) resources_total = later.resources_total;
}

std::optional<JobStatus> BatchJobRepository::record_pages(long long id, const std::string& owner, int recorded_pages,
                                                          const PagesRecord& record) {
  const auto& [pages, next_url, resources_written, skipped, warnings, source_error, export_cursor, resources_total] =
      record;
  const std::optional<std::string> total_text =
      resources_total ? std::optional<std::string>(std::to_string(*resources_total)) : std::nullopt;
  nlohmann::json warnings_json = nlohmann::json::array();
  for (const auto& warning : warnings) warnings_json.push_back(warning);
  // One statement, atomic by itself: without BEGIN and COMMIT around it, one round trip a record instead
  // of three. Its commit does not wait for the WAL to reach the disk (synchronous_commit off for this
  // statement's transaction alone, set where the row is updated): a record lost in a crash of
  // PostgreSQL means its pages are read and written again on resume, which is harmless (the target's ids
  // are deterministic, the counts go with the record), whereas waiting for a flush on every record cost
  // half a millisecond on the development machine's disk (pgbench), more on slower ones. A later commit that waits (the job's end, its tokens) flushes this one
  // too, so the order of records is kept. A record that does not follow the last one stored (one lost
  // that way while the runner went on) is refused by `pages_completed = $n`, and the job is left to
  // resume from what is stored once its lease expires, rather than add its counts on top of a gap.
  pqxx::nontransaction tx(connection_);
  if (skipped.empty() && warnings.empty() && !source_error) {
    // Most records: nothing skipped, nothing said. A statement without the merges is parsed and planned
    // in a fraction of the time (it is sent unprepared, as every statement here, for poolers).
    const auto rows = tx.exec_params(
        "UPDATE batch_jobs SET next_url = $3, pages_completed = pages_completed + $8,"
        " resources_written = resources_written + $4, last_error = NULL, last_progress_at = now(), lost_leases = 0,"
        " export_cursor = coalesce($6::jsonb, export_cursor), resources_total = coalesce(resources_total, $7::bigint)"
        " WHERE id = $1 AND lease_owner = $2 AND pages_completed = $5"
        " RETURNING status, set_config('synchronous_commit', 'off', true)",
        id, owner, nullable(next_url), resources_written, recorded_pages, nullable(export_cursor), nullable(total_text),
        pages);
    if (rows.empty()) return std::nullopt;
    return status_of(rows[0]["status"]);
  }
  const auto rows = tx.exec_params(
      "UPDATE batch_jobs SET next_url = $3, pages_completed = pages_completed + $11,"
      " resources_written = resources_written + $4, last_error = NULL, last_progress_at = now(), lost_leases = 0,"
      " resources_skipped = CASE WHEN $5::jsonb = '{}'::jsonb THEN resources_skipped ELSE"
      "   (SELECT jsonb_object_agg(key, total) FROM (SELECT key, sum(value::bigint) AS total FROM"
      "     (SELECT * FROM jsonb_each_text(resources_skipped) UNION ALL SELECT * FROM jsonb_each_text($5::jsonb)) AS counts"
      "     GROUP BY key) AS sums) END,"
      " warnings = CASE WHEN $6::jsonb = '[]'::jsonb THEN warnings ELSE"
      "   (SELECT jsonb_agg(item ORDER BY position) FROM jsonb_array_elements(warnings || $6::jsonb)"
      "     WITH ORDINALITY AS listed(item, position) WHERE position <= $12::bigint) END,"
      " source_error = coalesce(source_error, $7), export_cursor = coalesce($9::jsonb, export_cursor),"
      " resources_total = coalesce(resources_total, $10::bigint)"
      " WHERE id = $1 AND lease_owner = $2 AND pages_completed = $8"
      " RETURNING status, set_config('synchronous_commit', 'off', true)",
      id, owner, nullable(next_url), resources_written, counts_json(skipped),
      warnings_json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), nullable(source_error),
      recorded_pages, nullable(export_cursor), nullable(total_text), pages, static_cast<long long>(kKeptWarnings));
  if (rows.empty()) return std::nullopt;
  return status_of(rows[0]["status"]);
}

bool BatchJobRepository::store_tokens(long long id, const std::string& owner, const std::string& access_token,
                                      const std::optional<std::string>& refresh_token) {
  const auto access = cipher_.seal(access_token, owner_of(id));
  std::optional<std::string> refresh;
  if (refresh_token) refresh = cipher_.seal(*refresh_token, owner_of(id));
  return update_if_owner(connection_,
                         "UPDATE batch_jobs SET access_token_sealed = $3,"
                         " refresh_token_sealed = coalesce($4, refresh_token_sealed) WHERE id = $1 AND lease_owner = $2",
                         id, owner, access, nullable(refresh));
}

bool BatchJobRepository::set_task_id(long long id, const std::string& owner, const std::string& task_id) {
  return update_if_owner(connection_, "UPDATE batch_jobs SET task_id = $3 WHERE id = $1 AND lease_owner = $2", id,
                         owner, task_id);
}

namespace {

// One fenced UPDATE ... RETURNING status: the job's status, or nullopt when the owner lost it.
template <typename... Args>
std::optional<JobStatus> update_returning_status(pqxx::connection& connection, const char* sql, long long id,
                                                 const std::string& owner, Args&&... args) {
  pqxx::work tx(connection);
  const auto rows = tx.exec_params(sql, id, owner, std::forward<Args>(args)...);
  tx.commit();
  if (rows.empty()) return std::nullopt;
  return status_of(rows[0]["status"]);
}

}  // namespace

std::optional<JobStatus> BatchJobRepository::record_export_status(long long id, const std::string& owner,
                                                                 const std::string& status_url,
                                                                 const std::optional<std::string>& progress) {
  return update_returning_status(connection_,
                                 "UPDATE batch_jobs SET export_status_url = $3, export_progress = $4, last_progress_at = now()"
                                 " WHERE id = $1 AND lease_owner = $2 AND retrieval = 'export' RETURNING status",
                                 id, owner, status_url, nullable(progress));
}

std::optional<JobStatus> BatchJobRepository::record_export_manifest(long long id, const std::string& owner,
                                                                   const std::string& manifest) {
  return update_returning_status(connection_,
                                 "UPDATE batch_jobs SET export_manifest = $3::jsonb, export_progress = NULL, last_progress_at = now(),"
                                 " export_cursor = '{\"file\": 0, \"line\": 0}'::jsonb"
                                 " WHERE id = $1 AND lease_owner = $2 AND retrieval = 'export' AND pages_completed = 0"
                                 " RETURNING status",
                                 id, owner, manifest);
}

std::optional<JobStatus> BatchJobRepository::record_member_match(long long id, const std::string& owner,
                                                                const std::string& member_match,
                                                                const std::optional<std::string>& source_patient_id,
                                                                const std::optional<std::string>& first_url) {
  return update_returning_status(
      connection_,
      "UPDATE batch_jobs SET member_match = $3::jsonb, source_patient_id = coalesce($4, source_patient_id),"
      " next_url = coalesce($5, next_url) WHERE id = $1 AND lease_owner = $2 AND flow = 'payer' AND pages_completed = 0"
      " RETURNING status",
      id, owner, member_match, nullable(source_patient_id), nullable(first_url));
}

bool BatchJobRepository::finish(long long id, const std::string& owner, int recorded_pages, JobStatus status,
                                const std::optional<std::string>& error,
                                const std::optional<std::string>& member_match_request) {
  pqxx::work tx(connection_);
  const auto ended = tx.exec_params(
      "UPDATE batch_jobs SET status = $3,"
      " last_error = CASE WHEN $3 = 'FAILED' THEN coalesce($4, last_error) ELSE $4 END, end_time = now(),"
      " access_token_sealed = NULL, refresh_token_sealed = NULL, member_match_request_sealed = NULL,"
      " lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2 AND pages_completed = $5"
      " RETURNING repeat_every_days IS NOT NULL AND (now() + make_interval(days => repeat_every_days))::date"
      "   <= repeat_until AS repeats",
      id, owner, std::string(to_string(status)), nullable(error), recorded_pages);
  if (ended.empty()) return false;
  if (status == JobStatus::kCompleted && ended[0]["repeats"].as<bool>() && member_match_request) {
    // The next run: the same member and request, what changed since this run started.
    const auto next = tx.exec_params1(
        "INSERT INTO batch_jobs (server_pid, source_patient_id, target_patient_id, target_organization_id, first_url,"
        " flow, since, repeat_every_days, repeat_until, previous_run_id, not_before, retrieval)"
        " SELECT server_pid, '', target_patient_id, target_organization_id, first_url, 'payer',"
        // An export's transactionTime (Bulk Data: the next _since), else when this run started.
        " coalesce(export_manifest->>'transactionTime',"
        "   to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')), repeat_every_days,"
        " repeat_until, id, now() + make_interval(days => repeat_every_days), retrieval FROM batch_jobs WHERE id = $1"
        " RETURNING id",
        id);
    const long long next_id = next[0].as<long long>();
    tx.exec_params("UPDATE batch_jobs SET member_match_request_sealed = $2 WHERE id = $1", next_id,
                   cipher_.seal(*member_match_request, owner_of(next_id)));
  }
  tx.commit();
  return true;
}

bool BatchJobRepository::pause(long long id, const std::string& owner, const std::string& reason,
                               std::chrono::seconds delay) {
  return update_if_owner(connection_,
                         "UPDATE batch_jobs SET lease_owner = NULL, lease_expires_at = NULL,"
                         " not_before = now() + $4::interval, last_error = $3 WHERE id = $1 AND lease_owner = $2",
                         id, owner, reason, seconds_text(delay));
}

bool BatchJobRepository::release(long long id, const std::string& owner) {
  return update_if_owner(connection_,
                         "UPDATE batch_jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2",
                         id, owner);
}

}  // namespace p2p::store
