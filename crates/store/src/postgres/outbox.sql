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

-- The unread counter of `mailbox_thread` kept by statement, not by row (mail.sql's row
-- trigger, same meaning): an Email/set marking 1,000 Emails read updated `mailbox_thread`
-- 1,000 times, each update firing `mailbox_thread_changed` on the mailbox row again. One
-- statement now steps each (mailbox, thread) once by the sum of its Emails' steps. A
-- trigger with transition tables cannot name its columns (`UPDATE OF keywords`), so this
-- one runs after every UPDATE of `email` and finds the rows whose `$seen` changed itself.
DROP TRIGGER email_seen_counted ON email;
DROP FUNCTION email_seen_counted();
CREATE FUNCTION email_seen_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox_thread mt SET unread = mt.unread + d.step
    FROM (SELECT c.mailbox_id, n.thread_id,
                 sum(CASE WHEN n.keywords ? '$seen' THEN -1 ELSE 1 END) AS step
          FROM after n
          JOIN before o ON o.id = n.id
          CROSS JOIN LATERAL (SELECT DISTINCT x.mailbox_id FROM copy x
                              WHERE x.email_id = n.id) c
          WHERE o.thread_id = n.thread_id
              AND (o.keywords ? '$seen') IS DISTINCT FROM (n.keywords ? '$seen')
          GROUP BY c.mailbox_id, n.thread_id) d
    WHERE mt.mailbox_id = d.mailbox_id AND mt.thread_id = d.thread_id;
    RETURN NULL;
END $$;
CREATE TRIGGER email_seen_counted AFTER UPDATE ON email
    REFERENCING OLD TABLE AS before NEW TABLE AS after
    FOR EACH STATEMENT EXECUTE FUNCTION email_seen_counted();

-- Room on each page for a changed row's new version: a keyword change (the user's, or the
-- server's flags) rewrites the Email and copy rows and the thread's unread count and,
-- without room, every index of the table gets a new entry for each (a HOT update needs
-- free space on the same page). Measured with 1,000 keyword changes: with full pages,
-- 3 % of the `mailbox_thread` updates were HOT; with half of each page free, 98 %.
ALTER TABLE email SET (fillfactor = 70);
ALTER TABLE copy SET (fillfactor = 70);
ALTER TABLE mailbox_thread SET (fillfactor = 50);

-- mail.sql's `mailbox_thread_changed` joins the statement's old and new rows, of which the
-- planner knows no count (it guesses one each): it chose a nested loop, 1,000,000 row
-- comparisons for 1,000 threads whose unread count changed (140 ms). A hash or merge join
-- is linear; the function plans its statement with nested loops off.
ALTER FUNCTION mailbox_thread_changed() SET enable_nestloop = off;
