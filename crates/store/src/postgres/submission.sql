-- Sending and push (postgres/submission.rs, postgres/push.rs): identities, the submission
-- queue, the Sent copy policy and push subscriptions, with sqlite/schema.sql's meaning
-- (and the columns its later migrations added: submission.blob_id, submission.draft).
--
-- Differences that are not accidents:
-- - `submission.delivery` is JSONB, so a cancel and a crash recovery rewrite every
--   recipient's entry in the one UPDATE that also moves the phase.
-- - `submission.attempt_node` and `attempt_epoch` name the lease an attempt was begun
--   under (NULL for a handle without one): with several nodes, a row in 'sending' is
--   only recovered (delivered 'unknown', never sent again) once that lease is no longer
--   live, so a node starting up cannot take over an attempt another node is making.
-- - The first identity of an account (the one not deletable) is unique by index, so two
--   nodes giving an account its first identity at once make one.

CREATE TABLE identity (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id     BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    name           TEXT NOT NULL DEFAULT '',
    email          TEXT NOT NULL,
    -- JSON arrays of EmailAddress, or 'null'.
    reply_to       TEXT NOT NULL DEFAULT 'null',
    bcc            TEXT NOT NULL DEFAULT 'null',
    text_signature TEXT NOT NULL DEFAULT '',
    html_signature TEXT NOT NULL DEFAULT '',
    may_delete     BOOLEAN NOT NULL DEFAULT true
);
CREATE INDEX identity_account ON identity (account_id);
CREATE UNIQUE INDEX identity_first ON identity (account_id) WHERE NOT may_delete;

-- One EmailSubmission and its place in the send queue. The exact bytes to send are kept
-- here (`raw`) or named (`blob_id`, a blob the row keeps alive: `BLOB_UNREFERENCED`);
-- both go once nothing about the submission needs them.
-- phase: 'queued' (waiting for next_attempt), 'sending' (an SMTP attempt may be under
-- way: committed before the first byte of MAIL FROM), 'done'. A row in 'sending' whose
-- attempt's lease is gone was cut between DATA and the commit of its reply: it is never
-- sent again (at most once) and shows delivered 'unknown'.
CREATE TABLE submission (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    identity_id   BIGINT NOT NULL,
    email_id      BIGINT NOT NULL,
    thread_id     BIGINT NOT NULL,
    -- The JMAP envelope as JSON, and its addresses for SMTP (rcpt_to: a JSON array).
    envelope      TEXT NOT NULL,
    mail_from     TEXT NOT NULL,
    rcpt_to       TEXT NOT NULL DEFAULT '[]',
    raw           BYTEA NOT NULL DEFAULT '',
    blob_id       TEXT,
    message_id    TEXT,
    send_at       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    undo_status   TEXT NOT NULL DEFAULT 'pending',
    phase         TEXT NOT NULL DEFAULT 'queued',
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_attempt  BIGINT NOT NULL DEFAULT 0,
    attempt_node  TEXT,
    attempt_epoch BIGINT,
    -- [{email, smtpReply, delivered, settled}]; a recipient not settled is sent to by the
    -- next attempt (a 4xx at RCPT is retried for that recipient alone).
    delivery      JSONB NOT NULL DEFAULT '[]',
    last_error    TEXT NOT NULL DEFAULT '',
    -- The copy in Sent: 'none' (not ours to make), 'append' (to make once the message
    -- reached the server), 'due' (it did, or may have: make it now), 'done'.
    sent_copy     TEXT NOT NULL DEFAULT 'none',
    -- JSON array of the blob ids of the delivery-status reports (DSNs) applied to it.
    dsn_blobs     TEXT NOT NULL DEFAULT '[]',
    -- What becomes of the Email: 'keep', 'destroy_when_sent' (onSuccessDestroyEmail),
    -- 'destroy' (sent: once the Sent copy is made), 'restore' (back into Drafts after a
    -- failure or a cancel), 'done'.
    draft         TEXT NOT NULL DEFAULT 'keep'
);
CREATE INDEX submission_account ON submission (account_id);
CREATE INDEX submission_due ON submission (next_attempt, id) WHERE phase = 'queued';
CREATE INDEX submission_sending ON submission (id) WHERE phase = 'sending';
CREATE INDEX submission_blob ON submission (blob_id) WHERE blob_id IS NOT NULL;
CREATE INDEX submission_sent_copy ON submission (account_id) WHERE sent_copy = 'due';
CREATE INDEX submission_draft ON submission (id) WHERE draft IN ('destroy', 'restore');

-- Whether the account's submission server files sent mail itself ('server') or Tidings
-- appends the Sent copy ('append').
CREATE TABLE sent_copy_policy (
    account_id BIGINT PRIMARY KEY REFERENCES account(id) ON DELETE CASCADE,
    policy     TEXT NOT NULL DEFAULT 'append'
);

-- PushSubscription (RFC 8620 7.2): per user; `types` is a JSON array or NULL for all;
-- `expires` is unix seconds.
CREATE TABLE push_subscription (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           BIGINT NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    device_client_id  TEXT NOT NULL,
    url               TEXT NOT NULL,
    keys_p256dh       TEXT,
    keys_auth         TEXT,
    verification_code TEXT NOT NULL,
    verified          BOOLEAN NOT NULL DEFAULT false,
    expires           BIGINT,
    types             TEXT,
    created_at        BIGINT NOT NULL DEFAULT extract(epoch FROM now())::bigint
);
CREATE INDEX push_subscription_by_user ON push_subscription (user_id);
