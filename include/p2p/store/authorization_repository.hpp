#pragma once
// Table member_authorizations: the member connect flow's authorizations (migration 0009). The state
// and nonce are stored as SHA-256 digests only, the PKCE verifier sealed (AES-256-GCM, bound to the
// authorization's id) and deleted when the authorization is used; an authorization is used at most
// once, by whichever instance receives the callback first.
#include <optional>
#include <string>

#include <pqxx/pqxx>

#include "p2p/crypto/token_cipher.hpp"

namespace p2p::store {

struct NewAuthorization {
  int server_pid = 0;
  std::string state;          // sent to the source payer; stored hashed
  std::string nonce;          // sent to the source payer; stored hashed
  std::string code_verifier;  // PKCE; stored sealed
  std::string redirect_uri;
  std::string return_url;
  std::string target_patient_id;
  std::optional<std::string> target_organization_id;
  std::optional<std::string> fhir_bundle_request;
  int ttl_seconds = 600;
  // What the authorization URL asked for, and where its code goes (kept for the callback).
  std::string issuer;
  std::string client_id;
  std::string scope;
  std::string token_endpoint;
  std::optional<std::string> jwks_uri;
};

struct Authorization {
  std::string id;  // a UUID
  int server_pid = 0;
  // "pending" (not used yet, or its callback is being handled), "authorized" (the member signed in; the
  // portal has not completed it yet), "completed", "failed"; "expired" for one never used whose time is up.
  std::string status;
  std::optional<std::string> error;  // a code for portals
  std::optional<long long> batch_job_id;
  std::string expires_at;  // ISO 8601 UTC
  std::string redirect_uri;
  std::string return_url;
  std::string target_patient_id;
  std::optional<std::string> target_organization_id;
  std::optional<std::string> fhir_bundle_request;
  std::string nonce_hash;
  std::optional<std::string> source_patient_id;  // once authorized
  // Kept when it was made (NULL for authorizations made before migration 0010): the issuer, the client
  // id and scope of the authorization URL, the token endpoint and the payer's JWK Set URL then found.
  std::optional<std::string> issuer;
  std::optional<std::string> client_id;
  std::optional<std::string> scope;
  std::optional<std::string> token_endpoint;
  std::optional<std::string> jwks_uri;
};

// What a completion code found (POST .../authorizations/{id}/batch_job).
struct Completion {
  // kUsable: authorized, the code matches, within its time: the tokens are opened. kCompleted: the
  // code matches an authorization already completed (the same request again): `authorization` names
  // its job. kMismatch: not authorized, or another code. kExpired: authorized too long ago (now failed,
  // its tokens deleted). kUnknown: no such authorization for this server.
  enum class Kind { kUsable, kCompleted, kMismatch, kExpired, kUnknown } kind = Kind::kUnknown;
  Authorization authorization;
  std::string access_token;
  std::optional<std::string> refresh_token;
  std::string source_patient_id;
};

// What the callback's state found.
struct UsedAuthorization {
  // kUnusable: its verifier no longer opens (the token key changed): now failed with "server_error".
  enum class Kind { kUsable, kExpired, kUnusable, kUnknown } kind = Kind::kUnknown;
  Authorization authorization;  // kUsable, kExpired and kUnusable
  std::string code_verifier;    // kUsable
};

// A UUID in the canonical lower-case form the API gives (8-4-4-4-12 hex digits).
bool is_authorization_id(const std::string& id);

class AuthorizationRepository {
 public:
  AuthorizationRepository(pqxx::connection& connection, const crypto::TokenCipher& cipher)
      : connection_(connection), cipher_(cipher) {}

  // Stores a new authorization; returns it. Authorizations that ended more than 7 days ago are deleted,
  // and those authorized more than `ttl_seconds` ago and never completed are failed (their tokens deleted).
  Authorization create(const NewAuthorization& authorization);
  // `id` must be a UUID as the API shows them (is_authorization_id); authorizations authorized more than
  // `ttl_seconds` ago and never completed are failed ("expired", their tokens deleted) first.
  std::optional<Authorization> find(int server_pid, const std::string& id, int ttl_seconds);
  // Marks the authorization whose state this is as used (once, atomically; the verifier is deleted)
  // and returns it: kUsable with the verifier opened, kExpired (now failed with error "expired"), or
  // kUnknown for a state never issued or already used.
  UsedAuthorization use_state(const std::string& state);
  // The callback's success: the member's tokens (sealed), their Patient id at the source and the digest
  // of the completion code the portal gets. False when the authorization is no longer being handled.
  bool authorize(const std::string& id, const std::string& access_token, const std::optional<std::string>& refresh_token,
                 const std::string& source_patient_id, const std::string& completion_code);
  // The portal's completion: whether `completion_code` completes authorization `id` of `server_pid`,
  // authorized at most `ttl_seconds` ago.
  Completion find_completion(int server_pid, const std::string& id, const std::string& completion_code, int ttl_seconds);
  // The job was created (or was the member's already): the tokens are deleted. False when the
  // authorization was no longer authorized.
  bool complete(const std::string& id, long long batch_job_id);
  // The authorization ends without a job of its own (its tokens deleted), unless it has ended already.
  void fail(const std::string& id, const std::string& error, std::optional<long long> batch_job_id = std::nullopt);

 private:
  pqxx::connection& connection_;
  const crypto::TokenCipher& cipher_;
};

}  // namespace p2p::store
