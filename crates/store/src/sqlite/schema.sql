-- Tidings SQLite schema, version 1. Migrations are append-only (migrate.rs): a later
-- version is a new entry there and never edits this file.
-- Conventions: STRICT tables, NOT NULL with DEFAULT, times in unix seconds.

CREATE TABLE user (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

-- API tokens for Bearer authentication, stored as the SHA-256 of the token (tokens are
-- 256 random bits; the clear token is shown once, at creation).
CREATE TABLE api_token (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES user(id) ON DELETE CASCADE,
    name       TEXT NOT NULL DEFAULT '',
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

CREATE TABLE account (
    -- AUTOINCREMENT: an account id is never reused, so a push state, a cached owner or a
    -- JMAP accountId of a removed account can never name another one.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES user(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    host            TEXT NOT NULL,
    port            INTEGER NOT NULL,
    security        TEXT NOT NULL,
    username        TEXT NOT NULL,
    password_enc    BLOB NOT NULL,
    ca_file         TEXT,
    smtp_host       TEXT,
    smtp_port       INTEGER,
    smtp_security   TEXT,
    smtp_username   TEXT,
    smtp_password_enc BLOB,
    pop3_delete_after_days INTEGER,
    -- JMAP state counter: bumped once by every transaction that changes this account.
    state           INTEGER NOT NULL DEFAULT 0,
    -- push: the last state at which new mail was delivered (EmailDelivery, RFC 8621 1.5),
    -- so a client reconnecting with an older push state learns whether mail came.
    delivery_state  INTEGER NOT NULL DEFAULT 0,
    sync_status     TEXT NOT NULL DEFAULT 'new',
    sync_error      TEXT NOT NULL DEFAULT '',
    status_at       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, name)
) STRICT;

CREATE TABLE mailbox (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    raw_name      TEXT NOT NULL,
    name          TEXT NOT NULL,
    parent_id     INTEGER REFERENCES mailbox(id) ON DELETE SET NULL,
    delimiter     TEXT,
    role          TEXT,
    subscribed    INTEGER NOT NULL DEFAULT 0,
    selectable    INTEGER NOT NULL DEFAULT 1,
    -- A UID is never stored or compared without this.
    uidvalidity   INTEGER NOT NULL DEFAULT 0,
    uidnext       INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 0,
    server_total  INTEGER NOT NULL DEFAULT 0,
    -- Maintained by the triggers below: copies stored, and copies whose body is stored.
    copies        INTEGER NOT NULL DEFAULT 0,
    bodies        INTEGER NOT NULL DEFAULT 0,
    -- JMAP counts (RFC 8621 2), kept by the mailbox_thread triggers: Emails with a copy
    -- here, those without $seen, their threads, and the threads with an unread one.
    total_emails   INTEGER NOT NULL DEFAULT 0,
    unread_emails  INTEGER NOT NULL DEFAULT 0,
    total_threads  INTEGER NOT NULL DEFAULT 0,
    unread_threads INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, raw_name)
) STRICT;

-- A JMAP Email: one message, whatever mailboxes hold it.
CREATE TABLE email (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    -- Content identity: the server's EMAILID ("e:...") or the header hash ("h:...").
    identity      TEXT NOT NULL,
    thread_id     INTEGER NOT NULL,
    blob_id       TEXT,
    size          INTEGER NOT NULL DEFAULT 0,
    received_at   INTEGER NOT NULL DEFAULT 0,
    sent_at       INTEGER,
    message_id    TEXT,
    in_reply_to   TEXT NOT NULL DEFAULT '[]',
    refs          TEXT NOT NULL DEFAULT '[]',
    subject       TEXT,
    addr_from     TEXT NOT NULL DEFAULT '[]',
    addr_sender   TEXT NOT NULL DEFAULT '[]',
    addr_reply_to TEXT NOT NULL DEFAULT '[]',
    addr_to       TEXT NOT NULL DEFAULT '[]',
    addr_cc       TEXT NOT NULL DEFAULT '[]',
    addr_bcc      TEXT NOT NULL DEFAULT '[]',
    preview       TEXT NOT NULL DEFAULT '',
    has_attachment INTEGER NOT NULL DEFAULT 0,
    attachments   TEXT NOT NULL DEFAULT '[]',
    -- JSON array of JMAP keywords: the union over the copies' IMAP flags.
    keywords      TEXT NOT NULL DEFAULT '[]',
    problems      TEXT NOT NULL DEFAULT '[]',
    -- Set when the last copy went away; the Email is destroyed by collect_orphans unless
    -- a copy with the same identity shows up first (a move seen as expunge + new).
    orphaned      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX email_identity ON email (account_id, identity);
CREATE INDEX email_thread ON email (thread_id);
CREATE INDEX email_received ON email (account_id, received_at);
-- Partial indexes keep the watcher's per-event queries proportional to what they find,
-- not to the size of the account.
CREATE INDEX email_without_body ON email (account_id) WHERE blob_id IS NULL;
CREATE INDEX email_orphaned ON email (account_id) WHERE orphaned = 1;
CREATE INDEX email_blob ON email (blob_id) WHERE blob_id IS NOT NULL;

-- One IMAP copy of an Email in a mailbox.
CREATE TABLE copy (
    mailbox_id INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
    uid        INTEGER NOT NULL,
    email_id   INTEGER NOT NULL REFERENCES email(id) ON DELETE CASCADE,
    flags      TEXT NOT NULL DEFAULT '',
    modseq     INTEGER NOT NULL DEFAULT 0,
    -- The Email's receivedAt, copied here so that a mailbox listing newest first is an
    -- index walk (the JMAP client's most frequent query), not a sort.
    received_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (mailbox_id, uid)
) STRICT, WITHOUT ROWID;
CREATE INDEX copy_email ON copy (email_id);
CREATE INDEX copy_received ON copy (mailbox_id, received_at);

-- Per-mailbox counters kept by triggers, so every write path keeps them right and reading
-- them costs nothing (the watcher reads them per event; JMAP counts come from them too).
CREATE TRIGGER copy_added AFTER INSERT ON copy BEGIN
    UPDATE mailbox SET copies = copies + 1,
        bodies = bodies + coalesce((SELECT blob_id IS NOT NULL FROM email WHERE id = NEW.email_id), 0)
    WHERE id = NEW.mailbox_id;
END;
CREATE TRIGGER copy_removed AFTER DELETE ON copy BEGIN
    UPDATE mailbox SET copies = copies - 1,
        bodies = bodies - coalesce((SELECT blob_id IS NOT NULL FROM email WHERE id = OLD.email_id), 0)
    WHERE id = OLD.mailbox_id;
END;
-- JMAP mailbox counts, kept per mailbox and thread by triggers so that Mailbox/get reads
-- four columns instead of a pass over every copy of the account (with count(DISTINCT)s:
-- ~200 ms at 100,000 messages, paid on every push a client followed). `emails` counts
-- the thread's Emails with at least one copy in the mailbox, `unread` those of them
-- without $seen. A row that drops to zero stays (it is cheap, and comes back often).
-- The store's test `mailbox_counts_match_a_recount` checks them against the full count.
CREATE TABLE mailbox_thread (
    mailbox_id INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
    thread_id  INTEGER NOT NULL,
    emails     INTEGER NOT NULL,
    unread     INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, thread_id)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER mailbox_thread_added AFTER INSERT ON mailbox_thread BEGIN
    UPDATE mailbox SET total_emails = total_emails + NEW.emails,
        unread_emails = unread_emails + NEW.unread,
        total_threads = total_threads + (NEW.emails > 0),
        unread_threads = unread_threads + (NEW.unread > 0)
    WHERE id = NEW.mailbox_id;
END;
CREATE TRIGGER mailbox_thread_changed AFTER UPDATE ON mailbox_thread BEGIN
    UPDATE mailbox SET total_emails = total_emails + NEW.emails - OLD.emails,
        unread_emails = unread_emails + NEW.unread - OLD.unread,
        total_threads = total_threads + (NEW.emails > 0) - (OLD.emails > 0),
        unread_threads = unread_threads + (NEW.unread > 0) - (OLD.unread > 0)
    WHERE id = NEW.mailbox_id;
END;
-- The first copy of an Email in a mailbox counts it there.
CREATE TRIGGER copy_counted AFTER INSERT ON copy
    WHEN NOT EXISTS (SELECT 1 FROM copy WHERE email_id = NEW.email_id
        AND mailbox_id = NEW.mailbox_id AND uid != NEW.uid) BEGIN
    INSERT INTO mailbox_thread (mailbox_id, thread_id, emails, unread)
        SELECT NEW.mailbox_id, e.thread_id, 1, e.keywords NOT LIKE '%"$seen"%'
        FROM email e WHERE e.id = NEW.email_id
        ON CONFLICT (mailbox_id, thread_id) DO UPDATE SET emails = emails + 1,
            unread = unread + excluded.unread;
END;
-- The last copy of an Email leaving a mailbox uncounts it there. (An Email is deleted
-- only after its copies: `email_deleted` removes them first, so the Email is still here.)
CREATE TRIGGER copy_uncounted AFTER DELETE ON copy
    WHEN NOT EXISTS (SELECT 1 FROM copy WHERE email_id = OLD.email_id
        AND mailbox_id = OLD.mailbox_id) BEGIN
    UPDATE mailbox_thread SET emails = emails - 1,
        unread = unread - (SELECT keywords NOT LIKE '%"$seen"%' FROM email WHERE id = OLD.email_id)
    WHERE mailbox_id = OLD.mailbox_id
        AND thread_id = (SELECT thread_id FROM email WHERE id = OLD.email_id);
END;
-- A copy given another Email (a placeholder linked to the copy the sync stored) or moved:
-- the old side as a removal, the new side as an insertion.
CREATE TRIGGER copy_relinked AFTER UPDATE OF email_id, mailbox_id ON copy
    WHEN OLD.email_id != NEW.email_id OR OLD.mailbox_id != NEW.mailbox_id BEGIN
    UPDATE mailbox_thread SET emails = emails - 1,
        unread = unread - (SELECT keywords NOT LIKE '%"$seen"%' FROM email WHERE id = OLD.email_id)
    WHERE mailbox_id = OLD.mailbox_id
        AND thread_id = (SELECT thread_id FROM email WHERE id = OLD.email_id)
        AND NOT EXISTS (SELECT 1 FROM copy WHERE email_id = OLD.email_id
            AND mailbox_id = OLD.mailbox_id);
    INSERT INTO mailbox_thread (mailbox_id, thread_id, emails, unread)
        SELECT NEW.mailbox_id, e.thread_id, 1, e.keywords NOT LIKE '%"$seen"%'
        FROM email e WHERE e.id = NEW.email_id
            AND NOT EXISTS (SELECT 1 FROM copy WHERE email_id = NEW.email_id
                AND mailbox_id = NEW.mailbox_id AND uid != NEW.uid)
        ON CONFLICT (mailbox_id, thread_id) DO UPDATE SET emails = emails + 1,
            unread = unread + excluded.unread;
END;
-- $seen set or cleared (the thread unchanged): one step of `unread` per mailbox.
CREATE TRIGGER email_seen_counted AFTER UPDATE OF keywords ON email
    WHEN OLD.thread_id = NEW.thread_id
        AND (OLD.keywords NOT LIKE '%"$seen"%') != (NEW.keywords NOT LIKE '%"$seen"%') BEGIN
    UPDATE mailbox_thread
        SET unread = unread + (CASE WHEN NEW.keywords NOT LIKE '%"$seen"%' THEN 1 ELSE -1 END)
    WHERE thread_id = NEW.thread_id
        AND mailbox_id IN (SELECT mailbox_id FROM copy WHERE email_id = NEW.id);
END;
-- An Email moved to another thread (threads merged): out of the old one, into the new.
CREATE TRIGGER email_thread_counted AFTER UPDATE OF thread_id ON email
    WHEN OLD.thread_id != NEW.thread_id BEGIN
    UPDATE mailbox_thread SET emails = emails - 1,
        unread = unread - (OLD.keywords NOT LIKE '%"$seen"%')
    WHERE thread_id = OLD.thread_id
        AND mailbox_id IN (SELECT mailbox_id FROM copy WHERE email_id = NEW.id);
    INSERT INTO mailbox_thread (mailbox_id, thread_id, emails, unread)
        SELECT DISTINCT mailbox_id, NEW.thread_id, 1, NEW.keywords NOT LIKE '%"$seen"%'
        FROM copy WHERE email_id = NEW.id
        ON CONFLICT (mailbox_id, thread_id) DO UPDATE SET emails = emails + 1,
            unread = unread + excluded.unread;
END;
-- An Email deleted with copies left (cascade): they go first, while it can be counted.
CREATE TRIGGER email_deleted BEFORE DELETE ON email BEGIN
    DELETE FROM copy WHERE email_id = OLD.id;
END;
CREATE TRIGGER body_stored AFTER UPDATE OF blob_id ON email
    WHEN OLD.blob_id IS NULL AND NEW.blob_id IS NOT NULL BEGIN
    UPDATE mailbox SET bodies = bodies +
        (SELECT count(*) FROM copy c WHERE c.email_id = NEW.id AND c.mailbox_id = mailbox.id)
    WHERE id IN (SELECT mailbox_id FROM copy WHERE email_id = NEW.id);
END;

CREATE TABLE thread (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE
) STRICT;

-- Message-IDs (own, References, In-Reply-To) to thread: JWZ-style linking that does not
-- depend on arrival order.
CREATE TABLE thread_ref (
    account_id INTEGER NOT NULL,
    msgid      TEXT NOT NULL,
    thread_id  INTEGER NOT NULL,
    PRIMARY KEY (account_id, msgid)
) STRICT, WITHOUT ROWID;
CREATE INDEX thread_ref_thread ON thread_ref (thread_id);

-- Base subject (RFC 5256) to thread: the fallback for replies without references.
CREATE TABLE thread_subject (
    account_id INTEGER NOT NULL,
    subject    TEXT NOT NULL,
    thread_id  INTEGER NOT NULL,
    PRIMARY KEY (account_id, subject)
) STRICT, WITHOUT ROWID;

-- Raw messages, addressed by sha256 of their bytes; the bytes are files (blobs.rs).
CREATE TABLE blob (
    id   TEXT PRIMARY KEY,
    size INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- The change log behind JMAP */changes and push. op: 0 created, 1 updated, 2 destroyed.
CREATE TABLE change (
    account_id INTEGER NOT NULL,
    state      INTEGER NOT NULL,
    type       TEXT NOT NULL,
    object_id  INTEGER NOT NULL,
    op         INTEGER NOT NULL
) STRICT;
CREATE INDEX change_by_state ON change (account_id, state);

-- POP3 (RFC 1939 7): UIDL strings of retrieved messages, mapped to the synthetic UIDs of
-- their copies in the account's INBOX, so nothing is fetched twice.
CREATE TABLE pop3_message (
    account_id   INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    uidl         TEXT NOT NULL,
    uid          INTEGER NOT NULL,
    retrieved_at INTEGER NOT NULL,
    deleted_on_server INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, uidl)
) STRICT, WITHOUT ROWID;

-- Full-text index, in two tables so that nothing is ever rewritten: the header part is
-- written when the header arrives, the body part once when the body does. (An FTS5
-- delete plus re-insert per message was the largest cost of the initial sync.)
CREATE VIRTUAL TABLE email_fts_head USING fts5 (
    subject, addresses,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE email_fts_body USING fts5 (
    body,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- --- jmap: blob uploads (RFC 8620 6.1) ---
-- An uploaded blob, owned by the account it was uploaded to. Its bytes are a blob file
-- like a message's (same content address, a `blob` row); an upload no Email references
-- is forgotten after a while (Store::expire_uploads), its file with it.
CREATE TABLE upload (
    account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    blob_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, blob_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX upload_created ON upload (created_at);
CREATE INDEX upload_blob ON upload (blob_id);

-- === write-back (outbox) ===================================================================
-- A user's change waiting to be replayed to the server, written in the same transaction as
-- its optimistic result (ARCHITECTURE.md, "Write-back"). Replayed in id order; deleted only
-- after the server confirmed. `rev` grows when a later change is coalesced into the entry,
-- so a worker that replayed an older revision does not delete the newer one.
CREATE TABLE outbox (
    -- AUTOINCREMENT: an id is never reused, so placeholder UIDs (derived from it) and the
    -- worker's (id, rev) of an entry it replayed always name that entry.
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    -- The Email (or Mailbox, for mailbox kinds) the change is about, for coalescing.
    email_id   INTEGER,
    payload    TEXT NOT NULL,
    rev        INTEGER NOT NULL DEFAULT 0,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_account ON outbox (account_id, id);
CREATE INDEX outbox_email ON outbox (email_id) WHERE email_id IS NOT NULL;

-- Copies removed locally (move source, destroy) whose removal the server has not confirmed
-- yet (or confirmed recently): the sync must not bring them back as new.
CREATE TABLE outbox_tombstone (
    mailbox_id INTEGER NOT NULL,
    uid        INTEGER NOT NULL,
    outbox_id  INTEGER NOT NULL,
    done_at    INTEGER,
    PRIMARY KEY (mailbox_id, uid)
) STRICT, WITHOUT ROWID;

-- Changes the server refused for good: reverted locally, and shown to the user through
-- JMAP (OutboxFailure/get, ARCHITECTURE.md) until they are acknowledged.
CREATE TABLE outbox_failure (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    object_id  INTEGER,
    reason     TEXT NOT NULL,
    at         INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_failure_account ON outbox_failure (account_id);

-- --- web client sessions ---------------------------------------------------------------
-- Sign-in sessions of the web client: the SHA-256 of the random cookie token (256 bits,
-- so a plain hash is enough), the user, and when it stops being accepted (unix seconds).
CREATE TABLE web_session (
    hash       TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES user(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX web_session_expiry ON web_session (expires_at);
-- === Sending: identities and the submission queue behind EmailSubmission ===

-- JMAP Identity (RFC 8621 6): who a user may send as from an account.
CREATE TABLE identity (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    name           TEXT NOT NULL DEFAULT '',
    email          TEXT NOT NULL,
    -- JSON arrays of EmailAddress, or 'null'.
    reply_to       TEXT NOT NULL DEFAULT 'null',
    bcc            TEXT NOT NULL DEFAULT 'null',
    text_signature TEXT NOT NULL DEFAULT '',
    html_signature TEXT NOT NULL DEFAULT '',
    may_delete     INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE INDEX identity_account ON identity (account_id);

-- One EmailSubmission and its place in the send queue. The exact bytes to send are kept
-- here (the Email may be changed or destroyed meanwhile); they are dropped once sent.
-- phase: 'queued' (waiting for send_at / next_attempt), 'sending' (an SMTP attempt may
-- be under way: committed before the first byte of MAIL FROM), 'done'.
-- A row found in 'sending' at startup is in the window between DATA and the commit of
-- its reply: it is never retried (at most once) and shows delivered 'unknown'.
CREATE TABLE submission (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    identity_id  INTEGER NOT NULL,
    email_id     INTEGER NOT NULL,
    thread_id    INTEGER NOT NULL,
    -- The JMAP envelope as JSON, and its addresses for SMTP.
    envelope     TEXT NOT NULL,
    mail_from    TEXT NOT NULL,
    rcpt_to      TEXT NOT NULL DEFAULT '[]',
    raw          BLOB NOT NULL,
    message_id   TEXT,
    send_at      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    undo_status  TEXT NOT NULL DEFAULT 'pending',
    phase        TEXT NOT NULL DEFAULT 'queued',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL DEFAULT 0,
    -- JSON array of {email, smtpReply, delivered, settled}; a recipient not settled is
    -- sent to by the next attempt (a 4xx at RCPT is retried for that recipient alone).
    delivery     TEXT NOT NULL DEFAULT '[]',
    last_error   TEXT NOT NULL DEFAULT '',
    -- The copy in Sent: 'none' (not ours to make), 'append' (to make once the message
    -- reached the server), 'due' (it did, or may have: make it now), 'done'.
    sent_copy    TEXT NOT NULL DEFAULT 'none',
    -- JSON array of the blob ids of the delivery-status reports (DSNs) applied to it.
    dsn_blobs    TEXT NOT NULL DEFAULT '[]'
) STRICT;
CREATE INDEX submission_account ON submission (account_id);
CREATE INDEX submission_due ON submission (next_attempt) WHERE phase = 'queued';
CREATE INDEX submission_sending ON submission (id) WHERE phase = 'sending';

-- Per account: whether Tidings appends the Sent copy of what it sends ('append'), or the
-- submission server files it itself ('server', e.g. Gmail). No row: 'append'.
CREATE TABLE sent_copy_policy (
    account_id INTEGER PRIMARY KEY REFERENCES account(id) ON DELETE CASCADE,
    policy     TEXT NOT NULL DEFAULT 'append'
) STRICT;
-- --- push ----------------------------------------------------------------------------------
-- PushSubscription (RFC 8620 7.2): per user; `types` is a JSON array or NULL for all;
-- `expires` is unix seconds.
CREATE TABLE push_subscription (
    id                INTEGER PRIMARY KEY,
    user_id           INTEGER NOT NULL REFERENCES user(id) ON DELETE CASCADE,
    device_client_id  TEXT NOT NULL,
    url               TEXT NOT NULL,
    keys_p256dh       TEXT,
    keys_auth         TEXT,
    verification_code TEXT NOT NULL,
    verified          INTEGER NOT NULL DEFAULT 0,
    expires           INTEGER,
    types             TEXT,
    created_at        INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;
CREATE INDEX push_subscription_by_user ON push_subscription (user_id);

-- === write-back (outbox): indexes ============================================================
-- collect_orphans deletes an emptied thread's subject rows by thread id (a destroy of 1,000
-- Emails was 1,000 scans of this table without it).
CREATE INDEX thread_subject_thread ON thread_subject (thread_id);
-- Mailbox/set sortOrder: local only (IMAP has no order of mailboxes); a mailbox without a
-- row orders by its role.
CREATE TABLE mailbox_sort (
    mailbox_id INTEGER PRIMARY KEY REFERENCES mailbox(id) ON DELETE CASCADE,
    sort_order INTEGER NOT NULL
) STRICT;
