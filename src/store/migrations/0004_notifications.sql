-- 0004: add-payer Task notifications (issue #4). add_payer_tasks remembers each Task's last status and
-- version, so a redelivered hook queues nothing; notification_outbox holds one row per e-mail, written
-- in the same transaction, and delivered by the sender loop of any instance (FOR UPDATE SKIP LOCKED
-- with a lease). The body of a sent e-mail is erased; the row keeps who got what and when.

CREATE TABLE add_payer_tasks (
  task_id       text PRIMARY KEY,        -- the Task's id on the FHIR persistence endpoint
  last_status   text NOT NULL,
  last_version  text NOT NULL DEFAULT '', -- meta.versionId of the last delivery handled ('' when none)
  last_updated  timestamptz,             -- meta.lastUpdated of the last delivery handled (orders opaque versions)
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notification_outbox (
  id               bigserial PRIMARY KEY,
  task_id          text NOT NULL,
  event            text NOT NULL,  -- admin-request | member-confirmation | status:<from>-><to>@<version>
  recipient        text NOT NULL,
  subject          text,           -- erased once sent
  body             text,
  status           text NOT NULL DEFAULT 'pending',
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  lease_owner      text,
  lease_expires_at timestamptz,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  sent_at          timestamptz,

  CONSTRAINT notification_outbox_once UNIQUE (task_id, event, recipient),
  CONSTRAINT notification_outbox_status_known CHECK (status IN ('pending', 'sent', 'failed')),
  CONSTRAINT notification_outbox_pending_has_message CHECK (
    status <> 'pending' OR (subject IS NOT NULL AND body IS NOT NULL))
);

CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notification_outbox_by_task ON notification_outbox (task_id);
