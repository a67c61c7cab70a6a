-- 0009: the member connect flow (issue #13). The service runs the OAuth 2.0 authorization-code flow
-- with PKCE against the source payer for a member portal: an authorization is made at
-- POST /api/oidc_servers/{pid}/authorizations and used once, within 10 minutes, by the browser's
-- return to GET /oauth/callback, which exchanges the code and keeps the member's tokens (sealed) until
-- the portal's back end, having checked that the browser that came back is the one that started,
-- completes it with the single-use completion code (POST .../authorizations/{id}/batch_job), which
-- creates the batch job. The state, nonce and completion code are kept only as SHA-256 digests; the
-- PKCE verifier and the tokens are sealed like job tokens (AES-256-GCM, bound to the authorization) and
-- deleted when used. Every instance shares these rows.
CREATE TABLE member_authorizations (
  id                     uuid PRIMARY KEY,
  server_pid             integer NOT NULL REFERENCES oidc_servers (pid) ON DELETE CASCADE,
  state_hash             text NOT NULL UNIQUE,   -- hex SHA-256 of the state sent to the source payer
  nonce_hash             text NOT NULL,          -- hex SHA-256 of the nonce, compared with the id token's
  code_verifier_sealed   text,                   -- the PKCE verifier, sealed; NULL once used
  redirect_uri           text NOT NULL,          -- {publicBaseUrl}/oauth/callback, sent again with the code
  return_url             text NOT NULL,          -- on connect.allowedReturnUrls when it was made
  target_patient_id      text NOT NULL,
  target_organization_id text,
  fhir_bundle_request    text,
  access_token_sealed    text,                   -- 'authorized' only: the member's tokens until the job takes them
  refresh_token_sealed   text,
  source_patient_id      text,                   -- the member at the source, from the token response or id token
  completion_hash        text,                   -- hex SHA-256 of the completion code sent back to the portal
  status                 text NOT NULL DEFAULT 'pending',
  error                  text,                   -- a code for portals (access_denied, expired, ...)
  batch_job_id           bigint REFERENCES batch_jobs (id) ON DELETE SET NULL,
  created_at             timestamptz NOT NULL DEFAULT now(),
  expires_at             timestamptz NOT NULL,
  used_at                timestamptz,
  CONSTRAINT member_authorizations_status_known CHECK (status IN ('pending', 'exchanging', 'authorized', 'completed', 'failed')),
  CONSTRAINT member_authorizations_tokens_only_while_authorized
    CHECK (status = 'authorized' OR (access_token_sealed IS NULL AND refresh_token_sealed IS NULL)),
  CONSTRAINT member_authorizations_used_once CHECK ((status = 'pending') = (used_at IS NULL))
);
CREATE INDEX member_authorizations_expires ON member_authorizations (expires_at);

-- Where the member's Patient id at the source comes from when the token response has no SMART
-- `patient`: the id token's fhirUser claim (a Patient reference) or its sub.
ALTER TABLE oidc_servers ADD COLUMN patient_id_claim text NOT NULL DEFAULT 'fhirUser';
ALTER TABLE oidc_servers ADD CONSTRAINT oidc_servers_patient_id_claim_known
  CHECK (patient_id_claim IN ('fhirUser', 'sub'));

-- The source's own count of the member's resources when it gives one (Bundle.total of the first page),
-- for a progress estimate.
ALTER TABLE batch_jobs ADD COLUMN resources_total bigint;
