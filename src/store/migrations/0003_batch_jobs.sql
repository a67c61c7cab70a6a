-- 0003: batch jobs, the exchanges a member portal starts. One row per job; the job runner claims rows
-- with FOR UPDATE SKIP LOCKED and holds them with a lease it renews, so several instances share the
-- work and a job whose instance died is picked up again after its lease expires.

CREATE TABLE batch_jobs (
  id                     bigserial PRIMARY KEY,
  server_pid             integer NOT NULL,  -- oidc_servers.pid; no foreign key: job history outlives a definition
  status                 text NOT NULL DEFAULT 'STARTING',
  job_configuration_name text NOT NULL DEFAULT 'p2pExchange',
  source_patient_id      text NOT NULL,
  target_patient_id      text NOT NULL,
  target_organization_id text,
  first_url              text NOT NULL,     -- the resolved fhirBundleRequest
  next_url               text,              -- the page to fetch next; NULL once the last page is written
  access_token_sealed    text,              -- AES-256-GCM (see src/crypto); deleted when the job ends
  refresh_token_sealed   text,
  task_id                text,              -- the Task on the target that tracks this exchange
  pages_completed        integer NOT NULL DEFAULT 0,
  resources_written      integer NOT NULL DEFAULT 0,
  last_error             text,
  attempts               integer NOT NULL DEFAULT 0,  -- times the job was claimed
  lease_owner            text,
  lease_expires_at       timestamptz,
  create_time            timestamptz NOT NULL DEFAULT now(),
  start_time             timestamptz,
  end_time               timestamptz,
  last_updated           timestamptz NOT NULL DEFAULT now(),

  CONSTRAINT batch_jobs_status_known CHECK (status IN
    ('STARTING', 'STARTED', 'COMPLETED', 'FAILED', 'STOPPING', 'STOPPED', 'ABANDONED', 'UNKNOWN')),
  CONSTRAINT batch_jobs_first_url_is_http_url CHECK (p2p_is_absolute_http_url(first_url)),
  CONSTRAINT batch_jobs_ended_jobs_hold_no_tokens CHECK (
    status NOT IN ('COMPLETED', 'FAILED', 'STOPPED', 'ABANDONED')
    OR (access_token_sealed IS NULL AND refresh_token_sealed IS NULL))
);

CREATE INDEX batch_jobs_by_server ON batch_jobs (server_pid, id DESC);
CREATE INDEX batch_jobs_runnable ON batch_jobs (id) WHERE status IN ('STARTING', 'STARTED', 'STOPPING');

CREATE FUNCTION p2p_touch_last_updated() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
  NEW.last_updated := now();
  RETURN NEW;
END
$$;

CREATE TRIGGER batch_jobs_touch_last_updated BEFORE UPDATE ON batch_jobs
  FOR EACH ROW EXECUTE FUNCTION p2p_touch_last_updated();
