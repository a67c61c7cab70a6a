-- 0007: the payer-mediated exchange (issue #12, Da Vinci PDex). A job of flow 'payer' has no member
-- tokens: the service authenticates as itself (client_credentials) and finds the member at the source
-- with HRex $member-match. The operation's Parameters (the member's demographics, both coverages, the
-- Consent) are sealed like tokens (AES-256-GCM, bound to the job) and deleted when the job ends.
-- Until the match, source_patient_id is '' and next_url NULL; the match records the member's id at
-- the source, member_match ({"result", "memberIdentifier", "sourcePatientId", "detail"}) and the first
-- page ($everything, with _since from `since` when given).
ALTER TABLE batch_jobs ADD COLUMN flow text NOT NULL DEFAULT 'member';
ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_flow_known CHECK (flow IN ('member', 'payer'));
ALTER TABLE batch_jobs ADD COLUMN member_match_request_sealed text;
ALTER TABLE batch_jobs ADD COLUMN member_match jsonb;
ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_member_match_is_object
  CHECK (member_match IS NULL OR jsonb_typeof(member_match) = 'object');
ALTER TABLE batch_jobs ADD COLUMN since text;
ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_ended_jobs_hold_no_member_match_request
  CHECK (status NOT IN ('COMPLETED', 'FAILED', 'STOPPED', 'ABANDONED') OR member_match_request_sealed IS NULL);
-- At most one active payer-mediated job per member (server, target patient): see batch_jobs_active_by_member.
CREATE INDEX batch_jobs_active_payer_jobs ON batch_jobs (server_pid, target_patient_id)
  WHERE flow = 'payer' AND status IN ('STARTING', 'STARTED', 'STOPPING');

-- Scheduled re-pulls (PDex: at least quarterly while coverage is concurrent). A payer-mediated job
-- with repeat_every_days schedules, when it completes, its next run: a new row (previous_run_id = this
-- one) with the same member-match request, since = this run's start_time, not_before = now() + that
-- many days, as long as that day is not after repeat_until.
ALTER TABLE batch_jobs ADD COLUMN repeat_every_days integer;
ALTER TABLE batch_jobs ADD COLUMN repeat_until date;
ALTER TABLE batch_jobs ADD COLUMN previous_run_id bigint;
ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_repeat_is_whole CHECK (
  (repeat_every_days IS NULL) = (repeat_until IS NULL)
  AND (repeat_every_days IS NULL OR (repeat_every_days BETWEEN 1 AND 366 AND flow = 'payer')));
CREATE INDEX batch_jobs_by_previous_run ON batch_jobs (previous_run_id) WHERE previous_run_id IS NOT NULL;
