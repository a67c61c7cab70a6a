#include "p2p/store/authorization_repository.hpp"

#include "p2p/util/crypto.hpp"

namespace p2p::store {
namespace {

#define P2P_AUTHORIZATION_COLUMNS                                                                        \
  " id::text AS id_text, server_pid, status, error, batch_job_id, redirect_uri, return_url,"             \
  " target_patient_id, target_organization_id, fhir_bundle_request, nonce_hash, source_patient_id,"      \
  " issuer, client_id, scope, token_endpoint, jwks_uri,"                                                \
  " to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS expires_at_text,"      \
  " (status = 'pending' AND expires_at <= now()) AS expired_now,"                                       \
  " (status = 'exchanging' AND used_at < now() - interval '5 minutes') AS abandoned"

std::optional<std::string> optional_text(const pqxx::field& field) {
  if (field.is_null()) return std::nullopt;
  return field.as<std::string>();
}

const char* nullable(const std::optional<std::string>& value) { return value ? value->c_str() : nullptr; }

// What a sealed value of authorization `id` is bound to: "member_authorization:<id>[:<what>]".
std::string associated_data(const std::string& id, const char* what = nullptr) {
  return "member_authorization:" + id + (what ? std::string(":") + what : std::string());
}

Authorization read(const pqxx::row& row) {
  Authorization authorization;
  authorization.id = row["id_text"].as<std::string>();
  authorization.server_pid = row["server_pid"].as<int>();
  authorization.status = row["status"].as<std::string>();
  if (authorization.status == "exchanging") authorization.status = "pending";
  authorization.error = optional_text(row["error"]);
  // One shape for every authorization whose time ran out, however it was noticed.
  if (row["expired_now"].as<bool>() || (authorization.status == "failed" && authorization.error == "expired")) {
    authorization.status = "expired";
    authorization.error = "expired";
  }
  // The instance that took the callback stopped before it finished (every step is bounded by
  // timeouts well under 5 minutes): the member must start again.
  if (row["abandoned"].as<bool>()) {
    authorization.status = "failed";
    authorization.error = "server_error";
  }
  if (!row["batch_job_id"].is_null()) authorization.batch_job_id = row["batch_job_id"].as<long long>();
  authorization.expires_at = row["expires_at_text"].as<std::string>();
  authorization.redirect_uri = row["redirect_uri"].as<std::string>();
  authorization.return_url = row["return_url"].as<std::string>();
  authorization.target_patient_id = row["target_patient_id"].as<std::string>();
  authorization.target_organization_id = optional_text(row["target_organization_id"]);
  authorization.issuer = optional_text(row["issuer"]);
  authorization.client_id = optional_text(row["client_id"]);
  authorization.scope = optional_text(row["scope"]);
  authorization.token_endpoint = optional_text(row["token_endpoint"]);
  authorization.jwks_uri = optional_text(row["jwks_uri"]);
  authorization.fhir_bundle_request = optional_text(row["fhir_bundle_request"]);
  authorization.nonce_hash = row["nonce_hash"].as<std::string>();
  authorization.source_patient_id = optional_text(row["source_patient_id"]);
  return authorization;
}

// A version-4 UUID from the CSPRNG (gen_random_uuid would do too, but the id seals the verifier
// before the row exists).
std::string random_uuid() {
  std::string hex = util::random_hex(16);
  hex[12] = '4';
  hex[16] = "89ab"[std::stoi(hex.substr(16, 1), nullptr, 16) & 3];
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
         hex.substr(20);
}

// Authorizations whose portal never completed them in time: failed, their tokens deleted.
void expire_uncompleted(pqxx::work& tx, int ttl_seconds) {
  tx.exec_params("UPDATE member_authorizations SET status = 'failed', error = 'expired', access_token_sealed = NULL,"
                 " refresh_token_sealed = NULL WHERE status = 'authorized' AND used_at < now() - make_interval(secs => $1)",
                 ttl_seconds);
}

}  // namespace

bool is_authorization_id(const std::string& id) {
  if (id.size() != 36) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Authorization AuthorizationRepository::create(const NewAuthorization& a) {
  const std::string id = random_uuid();
  pqxx::work tx(connection_);
  tx.exec("DELETE FROM member_authorizations WHERE expires_at < now() - interval '7 days'");
  // Tokens of members whose portal never completed the authorization are not kept past its time.
  expire_uncompleted(tx, a.ttl_seconds);
  const auto row = tx.exec_params1(
      "INSERT INTO member_authorizations (id, server_pid, state_hash, nonce_hash, code_verifier_sealed, redirect_uri,"
      " return_url, target_patient_id, target_organization_id, fhir_bundle_request, expires_at, client_id, scope,"
      " token_endpoint, jwks_uri, issuer)"
      " VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11), $12, $13, $14, $15,"
      " $16)"
      " RETURNING" P2P_AUTHORIZATION_COLUMNS,
      id, a.server_pid, util::sha256_hex(a.state), util::sha256_hex(a.nonce),
      cipher_.seal(a.code_verifier, associated_data(id)), a.redirect_uri, a.return_url, a.target_patient_id,
      nullable(a.target_organization_id), nullable(a.fhir_bundle_request), a.ttl_seconds, a.client_id, a.scope,
      a.token_endpoint, nullable(a.jwks_uri), a.issuer);
  tx.commit();
  return read(row);
}

std::optional<Authorization> AuthorizationRepository::find(int server_pid, const std::string& id, int ttl_seconds) {
  if (!is_authorization_id(id)) return std::nullopt;
  pqxx::work tx(connection_);
  expire_uncompleted(tx, ttl_seconds);
  const auto rows = tx.exec_params("SELECT" P2P_AUTHORIZATION_COLUMNS
                                   " FROM member_authorizations WHERE server_pid = $1 AND id = $2::uuid",
                                   server_pid, id);
  tx.commit();
  if (rows.empty()) return std::nullopt;
  return read(rows[0]);
}

UsedAuthorization AuthorizationRepository::use_state(const std::string& state) {
  pqxx::work tx(connection_);
  const auto rows = tx.exec_params(
      "WITH old AS (SELECT id AS old_id, code_verifier_sealed AS sealed, expires_at > now() AS live FROM member_authorizations"
      "             WHERE state_hash = $1 AND status = 'pending' FOR UPDATE)"
      " UPDATE member_authorizations m SET used_at = now(), code_verifier_sealed = NULL,"
      "  status = CASE WHEN old.live THEN 'exchanging' ELSE 'failed' END,"
      "  error = CASE WHEN old.live THEN NULL ELSE 'expired' END"
      " FROM old WHERE m.id = old.old_id"
      " RETURNING old.sealed, old.live," P2P_AUTHORIZATION_COLUMNS,
      util::sha256_hex(state));
  UsedAuthorization used;
  if (rows.empty()) return used;
  const auto& row = rows[0];
  used.authorization = read(row);
  if (!row["live"].as<bool>()) {
    used.kind = UsedAuthorization::Kind::kExpired;
    used.authorization.status = "failed";
  } else {
    try {
      used.code_verifier = cipher_.open(row["sealed"].as<std::string>(), associated_data(used.authorization.id));
      used.kind = UsedAuthorization::Kind::kUsable;
    } catch (const crypto::CipherError&) {
      // Not a state to retry: the verifier will never open (the token key was replaced, not retired).
      tx.exec_params("UPDATE member_authorizations SET status = 'failed', error = 'server_error' WHERE id = $1::uuid",
                     used.authorization.id);
      used.kind = UsedAuthorization::Kind::kUnusable;
      used.authorization.status = "failed";
    }
  }
  tx.commit();
  return used;
}

bool AuthorizationRepository::authorize(const std::string& id, const std::string& access_token,
                                        const std::optional<std::string>& refresh_token,
                                        const std::string& source_patient_id, const std::string& completion_code) {
  const std::optional<std::string> refresh_sealed =
      refresh_token ? std::optional<std::string>(cipher_.seal(*refresh_token, associated_data(id, "refresh")))
                    : std::nullopt;
  pqxx::work tx(connection_);
  const auto rows = tx.exec_params(
      "UPDATE member_authorizations SET status = 'authorized', access_token_sealed = $2, refresh_token_sealed = $3,"
      " source_patient_id = $4, completion_hash = $5 WHERE id = $1::uuid AND status = 'exchanging' RETURNING id",
      id, cipher_.seal(access_token, associated_data(id, "access")), nullable(refresh_sealed), source_patient_id,
      util::sha256_hex(completion_code));
  tx.commit();
  return !rows.empty();
}

Completion AuthorizationRepository::find_completion(int server_pid, const std::string& id,
                                                    const std::string& completion_code, int ttl_seconds) {
  if (!is_authorization_id(id)) return Completion{};
  pqxx::work tx(connection_);
  const auto rows = tx.exec_params(
      "SELECT" P2P_AUTHORIZATION_COLUMNS ", completion_hash, access_token_sealed, refresh_token_sealed,"
      " (used_at + make_interval(secs => $3) <= now()) AS completion_expired"
      " FROM member_authorizations WHERE server_pid = $1 AND id = $2::uuid FOR UPDATE",
      server_pid, id, ttl_seconds);
  Completion completion;
  if (rows.empty()) return completion;
  const auto& row = rows[0];
  completion.authorization = read(row);
  // Digests compared in constant time: the code is the portal's proof that the member came back to it.
  const auto stored = optional_text(row["completion_hash"]);
  const auto presented = util::sha256(completion_code);
  const bool matches =
      stored && util::constant_time_equal(util::sha256(*stored), util::sha256(util::to_hex(presented.data(), presented.size())));
  const std::string status = row["status"].as<std::string>();
  if (!matches) {
    completion.kind = Completion::Kind::kMismatch;
  } else if (status == "completed" || (status == "failed" && completion.authorization.batch_job_id)) {
    completion.kind = Completion::Kind::kCompleted;
  } else if (status != "authorized") {
    completion.kind = Completion::Kind::kMismatch;
  } else if (row["completion_expired"].as<bool>()) {
    tx.exec_params("UPDATE member_authorizations SET status = 'failed', error = 'expired', access_token_sealed = NULL,"
                   " refresh_token_sealed = NULL WHERE id = $1::uuid",
                   completion.authorization.id);
    completion.kind = Completion::Kind::kExpired;
    completion.authorization.status = "failed";
    completion.authorization.error = "expired";
  } else {
    completion.kind = Completion::Kind::kUsable;
    const std::string& aid = completion.authorization.id;
    completion.access_token = cipher_.open(row["access_token_sealed"].as<std::string>(), associated_data(aid, "access"));
    if (!row["refresh_token_sealed"].is_null()) {
      completion.refresh_token = cipher_.open(row["refresh_token_sealed"].as<std::string>(), associated_data(aid, "refresh"));
    }
    completion.source_patient_id = completion.authorization.source_patient_id.value_or("");
  }
  tx.commit();
  return completion;
}

bool AuthorizationRepository::complete(const std::string& id, long long batch_job_id) {
  pqxx::work tx(connection_);
  const auto rows = tx.exec_params(
      "UPDATE member_authorizations SET status = 'completed', batch_job_id = $2, access_token_sealed = NULL,"
      " refresh_token_sealed = NULL WHERE id = $1::uuid AND status = 'authorized' RETURNING id",
      id, batch_job_id);
  tx.commit();
  return !rows.empty();
}

void AuthorizationRepository::fail(const std::string& id, const std::string& error,
                                   std::optional<long long> batch_job_id) {
  pqxx::work tx(connection_);
  const std::optional<std::string> job = batch_job_id ? std::optional<std::string>(std::to_string(*batch_job_id)) : std::nullopt;
  tx.exec_params("UPDATE member_authorizations SET status = 'failed', error = $2, batch_job_id = coalesce($3::bigint, batch_job_id),"
                 " access_token_sealed = NULL, refresh_token_sealed = NULL"
                 " WHERE id = $1::uuid AND status IN ('exchanging', 'authorized')",
                 id, error, nullable(job));
  tx.commit();
}

}  // namespace p2p::store
