-- 0005: what a job did not copy, and jobs that pause through outages (issue #9).
-- resources_skipped counts, per resource type, the resources a source sent that are not exchanged
-- (exchange.resourceTypes and the types never written), e.g. {"Subscription": 1, "CodeSystem": 2}.
-- A job whose source or target stays unreachable is paused, not failed: its lease is given up and it
-- may not be claimed before not_before; last_progress_at (the last page recorded) bounds how long it
-- may keep pausing (exchange.outageToleranceSeconds).

ALTER TABLE batch_jobs ADD COLUMN resources_skipped jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_resources_skipped_is_object CHECK (jsonb_typeof(resources_skipped) = 'object');
ALTER TABLE batch_jobs ADD COLUMN not_before timestamptz;
ALTER TABLE batch_jobs ADD COLUMN last_progress_at timestamptz;

-- POST .../batch_job honours an Idempotency-Key header: the same key with the same body within 24 h
-- answers with the job it created (request_hash: SHA-256 of the body, hex). At most one active job per
-- member (server, source patient, target patient) is enforced by the service under an advisory lock.
ALTER TABLE batch_jobs ADD COLUMN idempotency_key text;
ALTER TABLE batch_jobs ADD COLUMN request_hash text;
CREATE INDEX batch_jobs_by_idempotency_key ON batch_jobs (server_pid, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX batch_jobs_active_by_member ON batch_jobs (server_pid, source_patient_id, target_patient_id)
  WHERE status IN ('STARTING', 'STARTED', 'STOPPING');

-- What the source said about its results (OperationOutcome entries on its pages), as "severity: text"
-- strings, at most 50 per job; a job with an error or fatal one does not end COMPLETED.
ALTER TABLE batch_jobs ADD COLUMN warnings jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE batch_jobs ADD COLUMN source_error text;  -- the first warning of severity error or fatal
ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_warnings_is_array CHECK (jsonb_typeof(warnings) = 'array');

-- Times in a row the job was claimed after its lease expired in another instance's hands, without a
-- page recorded in between: a job that crashes or hangs every instance that runs it. A pause or a
-- graceful hand-over gives the lease back and does not count. Past exchange.maxClaims the job fails.
ALTER TABLE batch_jobs ADD COLUMN lost_leases integer NOT NULL DEFAULT 0;
