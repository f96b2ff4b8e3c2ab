-- The write-back queue (Outbox): sqlite/schema.sql's outbox tables, with the meaning they
-- have there (docs/design/writeback.md).

-- A user's change waiting to be replayed to the server, written in the same transaction as
-- its optimistic result. Replayed in id order; deleted only after the server confirmed.
-- `rev` grows when a later change is coalesced into the entry, so a worker that replayed an
-- older revision does not delete the newer one. The id is an identity: never handed out
-- twice, so placeholder UIDs (derived from it) always name one entry.
CREATE TABLE outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    -- The Email (or Mailbox, for mailbox kinds) the change is about, for coalescing: no
    -- foreign key, it names a row of either table and outlives a destroyed Email.
    email_id   BIGINT,
    payload    TEXT NOT NULL,
    rev        BIGINT NOT NULL DEFAULT 0,
    attempts   BIGINT NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    -- A queued APPEND's message: kept while the entry is (BLOB_UNREFERENCED). A column,
    -- not a path into the payload, so the blob collection's check is an index probe.
    blob_id    TEXT
);
CREATE INDEX outbox_account ON outbox (account_id, id);
CREATE INDEX outbox_email ON outbox (email_id, id) WHERE email_id IS NOT NULL;
CREATE INDEX outbox_blob ON outbox (blob_id) WHERE blob_id IS NOT NULL;

-- Copies removed locally (move source, destroy) whose removal the server has not confirmed
-- yet (or confirmed recently): the sync must not bring them back as new.
CREATE TABLE outbox_tombstone (
    mailbox_id BIGINT NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
    uid        BIGINT NOT NULL,
    outbox_id  BIGINT NOT NULL,
    done_at    BIGINT,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX outbox_tombstone_entry ON outbox_tombstone (outbox_id);

-- Changes the server refused for good: reverted locally, shown to the user until dismissed.
CREATE TABLE outbox_failure (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    object_id  BIGINT,
    reason     TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX outbox_failure_account ON outbox_failure (account_id);
