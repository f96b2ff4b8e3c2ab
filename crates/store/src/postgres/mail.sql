-- Tidings PostgreSQL schema, version 2: the mail. Append-only like version 1 (migrate.rs).
--
-- sqlite/schema.sql's meaning (with the columns its later migrations added: blob_by_id,
-- gm_msgid, gm_thrid, sent_offset, the Message-ID index), table by table: mailboxes,
-- Emails, their IMAP copies, threads and what links messages into them, POP3's UIDLs, and
-- the per-mailbox and per-thread JMAP counters that SQLite keeps with triggers, kept here
-- by PL/pgSQL triggers with the same names and the same meaning.
--
-- Differences that are not accidents:
-- - `keywords` is JSONB (a JSON array of JMAP keywords, as in SQLite): "unread" is
--   `NOT keywords ? '$seen'`, exact where SQLite's `NOT LIKE '%"$seen"%'` matches text.
-- - The copy triggers are statement-level, over transition tables: the sync inserts a
--   batch of copies with one statement, and a row trigger of PostgreSQL runs after the
--   whole statement (SQLite's right after its row), so "the first copy of this Email in
--   this mailbox" has to be asked of the statement's rows together: a batch holding two
--   copies of one message in one mailbox counts it once.
-- - The full text is two tables of text (`email_text_head`: subject and addresses, written
--   with the header; `email_text_body`: the body text, written once with the body),
--   indexed with PostgreSQL's text search ('simple' configuration: no stemming, like
--   FTS5's unicode61).

-- Raw messages are stored as they are, not compressed: compressing each one (pglz) cost
-- more than the rest of storing a body, and the SQLite backend keeps them as plain files.
ALTER TABLE blob ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE mailbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    raw_name      TEXT NOT NULL,
    name          TEXT NOT NULL,
    parent_id     BIGINT REFERENCES mailbox(id) ON DELETE SET NULL,
    delimiter     TEXT,
    role          TEXT,
    subscribed    BOOLEAN NOT NULL DEFAULT false,
    selectable    BOOLEAN NOT NULL DEFAULT true,
    -- A UID is never stored or compared without this.
    uidvalidity   BIGINT NOT NULL DEFAULT 0,
    uidnext       BIGINT NOT NULL DEFAULT 1,
    highestmodseq BIGINT NOT NULL DEFAULT 0,
    server_total  BIGINT NOT NULL DEFAULT 0,
    -- Maintained by the triggers below: copies stored, and copies whose body is stored.
    copies        BIGINT NOT NULL DEFAULT 0,
    bodies        BIGINT NOT NULL DEFAULT 0,
    -- JMAP counts (RFC 8621 2), kept by the mailbox_thread triggers.
    total_emails   BIGINT NOT NULL DEFAULT 0,
    unread_emails  BIGINT NOT NULL DEFAULT 0,
    total_threads  BIGINT NOT NULL DEFAULT 0,
    unread_threads BIGINT NOT NULL DEFAULT 0,
    UNIQUE (account_id, raw_name)
);

-- Mailbox/set sortOrder: local only (IMAP has no order of mailboxes).
CREATE TABLE mailbox_sort (
    mailbox_id BIGINT PRIMARY KEY REFERENCES mailbox(id) ON DELETE CASCADE,
    sort_order BIGINT NOT NULL
);

CREATE TABLE thread (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE
);

-- A JMAP Email: one message, whatever mailboxes hold it.
CREATE TABLE email (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    -- Content identity: the server's EMAILID ("e:..."), Gmail's X-GM-MSGID ("g:...") or
    -- the header hash ("h:...").
    identity      TEXT NOT NULL,
    thread_id     BIGINT NOT NULL,
    blob_id       TEXT,
    -- Created from its header alone: its blobId is derived from its id (`bm<id>`), since
    -- RFC 8621 4.1.1 makes blobId immutable and the content address was not known yet.
    blob_by_id    BOOLEAN NOT NULL DEFAULT false,
    size          BIGINT NOT NULL DEFAULT 0,
    received_at   BIGINT NOT NULL DEFAULT 0,
    sent_at       BIGINT,
    -- The Date header's offset from UTC in minutes east (RFC 8621 4.1.2.6 keeps it).
    sent_offset   BIGINT NOT NULL DEFAULT 0,
    message_id    TEXT,
    -- JSON arrays, as the SQLite backend stores them.
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
    has_attachment BOOLEAN NOT NULL DEFAULT false,
    attachments   TEXT NOT NULL DEFAULT '[]',
    -- The JMAP keywords: the union over the copies' IMAP flags.
    keywords      JSONB NOT NULL DEFAULT '[]',
    problems      TEXT NOT NULL DEFAULT '[]',
    -- Set when the last copy went away; the Email is destroyed by collect_orphans unless
    -- a copy with the same identity shows up first (a move seen as expunge + new).
    orphaned      BOOLEAN NOT NULL DEFAULT false,
    -- Gmail (X-GM-EXT-1): X-GM-MSGID and X-GM-THRID, the same 64 bits in a signed BIGINT.
    gm_msgid      BIGINT,
    gm_thrid      BIGINT
);
CREATE INDEX email_identity ON email (account_id, identity);
CREATE INDEX email_thread ON email (thread_id);
CREATE INDEX email_received ON email (account_id, received_at);
CREATE INDEX email_without_body ON email (account_id) WHERE blob_id IS NULL;
CREATE INDEX email_orphaned ON email (account_id) WHERE orphaned;
CREATE INDEX email_blob ON email (blob_id) WHERE blob_id IS NOT NULL;
CREATE INDEX email_gm_thread ON email (account_id, gm_thrid) WHERE gm_thrid IS NOT NULL;
CREATE INDEX email_message_id ON email (account_id, message_id) WHERE message_id IS NOT NULL;

-- Full text, in two tables so that nothing is ever rewritten (SQLite's two FTS tables):
-- the header part is written when the Email is created, the body part once when the
-- body is stored. (Columns of `email` would be indexed again by every update of an
-- Email that is not HOT, the body's arrival first of all: half the cost of the sync.)
-- The pending list of the GIN index takes a sync batch's entries whole and merges them
-- in bulk (each entry inserted into the tree on its own was the larger part of storing a
-- body).
CREATE TABLE email_text_head (
    email_id BIGINT PRIMARY KEY REFERENCES email(id) ON DELETE CASCADE,
    -- Subject and addresses (names and emails).
    text     TEXT NOT NULL
);
CREATE INDEX email_text_head_words ON email_text_head
    USING gin (to_tsvector('simple', text)) WITH (gin_pending_list_limit = 32768);
CREATE TABLE email_text_body (
    email_id BIGINT PRIMARY KEY REFERENCES email(id) ON DELETE CASCADE,
    text     TEXT NOT NULL
);
CREATE INDEX email_text_body_words ON email_text_body
    USING gin (to_tsvector('simple', text)) WITH (gin_pending_list_limit = 32768);

-- One IMAP copy of an Email in a mailbox.
CREATE TABLE copy (
    mailbox_id  BIGINT NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
    uid         BIGINT NOT NULL,
    email_id    BIGINT NOT NULL REFERENCES email(id) ON DELETE CASCADE,
    -- IMAP flags, one space-separated string, sorted, as the server spelled them.
    flags       TEXT NOT NULL DEFAULT '',
    modseq      BIGINT NOT NULL DEFAULT 0,
    -- The Email's receivedAt, copied here so a mailbox listing newest first is an index
    -- walk, not a sort.
    received_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX copy_email ON copy (email_id);
CREATE INDEX copy_received ON copy (mailbox_id, received_at);

-- JMAP mailbox counts per mailbox and thread (sqlite/schema.sql says why): `emails`
-- counts the thread's Emails with at least one copy in the mailbox, `unread` those of
-- them without $seen. A row that drops to zero stays.
CREATE TABLE mailbox_thread (
    mailbox_id BIGINT NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
    thread_id  BIGINT NOT NULL,
    emails     BIGINT NOT NULL,
    unread     BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, thread_id)
);

-- Message-IDs (own, References, In-Reply-To) to thread: JWZ-style linking that does not
-- depend on arrival order.
CREATE TABLE thread_ref (
    account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    msgid      TEXT NOT NULL,
    thread_id  BIGINT NOT NULL,
    PRIMARY KEY (account_id, msgid)
);
CREATE INDEX thread_ref_thread ON thread_ref (thread_id);

-- Base subject (RFC 5256) to thread: the fallback for replies without references.
CREATE TABLE thread_subject (
    account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    subject    TEXT NOT NULL,
    thread_id  BIGINT NOT NULL,
    PRIMARY KEY (account_id, subject)
);
CREATE INDEX thread_subject_thread ON thread_subject (thread_id);

-- POP3 (RFC 1939 7): UIDL strings of retrieved messages, mapped to the synthetic UIDs of
-- their copies in the account's INBOX, so nothing is fetched twice.
CREATE TABLE pop3_message (
    account_id   BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    uidl         TEXT NOT NULL,
    uid          BIGINT NOT NULL,
    retrieved_at BIGINT NOT NULL,
    deleted_on_server BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (account_id, uidl)
);

-- A (mailbox, Email) pair whose copies a statement removed or moved away.
CREATE TYPE mailbox_email AS (mailbox_id BIGINT, email_id BIGINT);

-- Uncounts, in their thread, the Emails of `pairs` left with no copy in that mailbox.
CREATE FUNCTION uncount_pairs(pairs mailbox_email[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox_thread mt SET emails = mt.emails - g.n, unread = mt.unread - g.u
    FROM (SELECT p.mailbox_id, p.thread_id, count(*) AS n,
                 count(*) FILTER (WHERE p.unread) AS u
          FROM (SELECT d.mailbox_id,
                       (SELECT e.thread_id FROM email e WHERE e.id = d.email_id) AS thread_id,
                       (SELECT NOT e.keywords ? '$seen' FROM email e WHERE e.id = d.email_id)
                           AS unread
                FROM unnest(pairs) d
                WHERE (SELECT count(*) FROM copy c WHERE c.email_id = d.email_id
                       AND c.mailbox_id = d.mailbox_id) = 0) p
          WHERE p.thread_id IS NOT NULL
          GROUP BY p.mailbox_id, p.thread_id) g
    WHERE mt.mailbox_id = g.mailbox_id AND mt.thread_id = g.thread_id;
END $$;

-- The copy triggers read `email` and `copy` through scalar subqueries, one index lookup
-- per row of the statement: a transition table has no statistics, and joined to the
-- tables the planner may take it for large and scan them whole, a cost in proportion to
-- the account on every statement (tests/postgres.rs's recount ran 3x longer that way).

-- Copies added: `copies` and `bodies` per mailbox, and each Email whose first copy in a
-- mailbox this statement made is counted in its thread there.
CREATE FUNCTION copy_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox m SET copies = m.copies + a.n, bodies = m.bodies + a.b
    FROM (SELECT n.mailbox_id, count(*) AS n,
                 count(*) FILTER (WHERE (SELECT e.blob_id FROM email e
                     WHERE e.id = n.email_id) IS NOT NULL) AS b
          FROM added n GROUP BY n.mailbox_id) a
    WHERE m.id = a.mailbox_id;
    INSERT INTO mailbox_thread (mailbox_id, thread_id, emails, unread)
        SELECT p.mailbox_id, p.thread_id, count(*), count(*) FILTER (WHERE p.unread)
        FROM (SELECT d.mailbox_id,
                     (SELECT e.thread_id FROM email e WHERE e.id = d.email_id) AS thread_id,
                     (SELECT NOT e.keywords ? '$seen' FROM email e WHERE e.id = d.email_id)
                         AS unread
              FROM (SELECT mailbox_id, email_id, count(*) AS n FROM added
                    GROUP BY mailbox_id, email_id) d
              -- No copy of it there but the statement's own: its first.
              WHERE (SELECT count(*) FROM copy c WHERE c.email_id = d.email_id
                     AND c.mailbox_id = d.mailbox_id) = d.n) p
        WHERE p.thread_id IS NOT NULL
        GROUP BY p.mailbox_id, p.thread_id
        ON CONFLICT (mailbox_id, thread_id) DO UPDATE
            SET emails = mailbox_thread.emails + excluded.emails,
                unread = mailbox_thread.unread + excluded.unread;
    RETURN NULL;
END $$;
CREATE TRIGGER copy_added AFTER INSERT ON copy REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION copy_added();

-- Copies removed: the counters back, and an Email whose last copy in a mailbox went is
-- uncounted there. (An Email is deleted only after its copies: `email_deleted` removes
-- them first, so the Email is still here to be counted.)
CREATE FUNCTION copy_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox m SET copies = m.copies - r.n, bodies = m.bodies - r.b
    FROM (SELECT d.mailbox_id, count(*) AS n,
                 count(*) FILTER (WHERE (SELECT e.blob_id FROM email e
                     WHERE e.id = d.email_id) IS NOT NULL) AS b
          FROM removed d GROUP BY d.mailbox_id) r
    WHERE m.id = r.mailbox_id;
    PERFORM uncount_pairs(ARRAY(SELECT DISTINCT ROW(mailbox_id, email_id)::mailbox_email
                                FROM removed));
    RETURN NULL;
END $$;
CREATE TRIGGER copy_removed AFTER DELETE ON copy REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION copy_removed();

-- Copies given another Email or moved: for each (mailbox, Email) the statement left
-- without a copy, a removal; for each it gave a first copy, an insertion. (Asked of the
-- pairs, not of row pairs: transition tables do not say which old row became which new.)
-- `copies` and `bodies` follow too (SQLite's triggers leave them on a relink to an Email
-- with or without a body: the progress figures were off by those). A flag update of the
-- sync changes no pair and does nothing here.
CREATE FUNCTION copy_relinked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM before o FULL JOIN after a
            ON a.mailbox_id = o.mailbox_id AND a.uid = o.uid AND a.email_id = o.email_id
            WHERE a.uid IS NULL OR o.uid IS NULL) THEN
        RETURN NULL;
    END IF;
    UPDATE mailbox m SET copies = m.copies + d.n, bodies = m.bodies + d.b
    FROM (SELECT mailbox_id, sum(n) AS n, sum(b) AS b FROM (
              SELECT a.mailbox_id, 1 AS n, ((SELECT e.blob_id FROM email e
                  WHERE e.id = a.email_id) IS NOT NULL)::int AS b
              FROM after a
              UNION ALL
              SELECT o.mailbox_id, -1, -((SELECT e.blob_id FROM email e
                  WHERE e.id = o.email_id) IS NOT NULL)::int
              FROM before o) x
          GROUP BY mailbox_id) d
    WHERE m.id = d.mailbox_id AND (d.n <> 0 OR d.b <> 0);
    PERFORM uncount_pairs(ARRAY(SELECT DISTINCT ROW(mailbox_id, email_id)::mailbox_email
                                FROM before));
    INSERT INTO mailbox_thread (mailbox_id, thread_id, emails, unread)
        SELECT p.mailbox_id, p.thread_id, count(*), count(*) FILTER (WHERE p.unread)
        FROM (SELECT d.mailbox_id,
                     (SELECT e.thread_id FROM email e WHERE e.id = d.email_id) AS thread_id,
                     (SELECT NOT e.keywords ? '$seen' FROM email e WHERE e.id = d.email_id)
                         AS unread
              FROM (SELECT mailbox_id, email_id, count(*) AS n FROM after
                    GROUP BY mailbox_id, email_id) d
              WHERE NOT EXISTS (SELECT 1 FROM before b
                      WHERE b.mailbox_id = d.mailbox_id AND b.email_id = d.email_id)
                  AND (SELECT count(*) FROM copy c WHERE c.email_id = d.email_id
                      AND c.mailbox_id = d.mailbox_id) = d.n) p
        WHERE p.thread_id IS NOT NULL
        GROUP BY p.mailbox_id, p.thread_id
        ON CONFLICT (mailbox_id, thread_id) DO UPDATE
            SET emails = mailbox_thread.emails + excluded.emails,
                unread = mailbox_thread.unread + excluded.unread;
    RETURN NULL;
END $$;
CREATE TRIGGER copy_relinked AFTER UPDATE ON copy
    REFERENCING OLD TABLE AS before NEW TABLE AS after
    FOR EACH STATEMENT EXECUTE FUNCTION copy_relinked();

-- mailbox_thread rows into the mailbox's four counts.
CREATE FUNCTION mailbox_thread_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox m SET total_emails = m.total_emails + a.e,
        unread_emails = m.unread_emails + a.u,
        total_threads = m.total_threads + a.te,
        unread_threads = m.unread_threads + a.tu
    FROM (SELECT mailbox_id, sum(emails) AS e, sum(unread) AS u,
                 count(*) FILTER (WHERE emails > 0) AS te,
                 count(*) FILTER (WHERE unread > 0) AS tu
          FROM added GROUP BY mailbox_id) a
    WHERE m.id = a.mailbox_id;
    RETURN NULL;
END $$;
CREATE TRIGGER mailbox_thread_added AFTER INSERT ON mailbox_thread
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION mailbox_thread_added();

CREATE FUNCTION mailbox_thread_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox m SET total_emails = m.total_emails + d.e,
        unread_emails = m.unread_emails + d.u,
        total_threads = m.total_threads + d.te,
        unread_threads = m.unread_threads + d.tu
    FROM (SELECT n.mailbox_id, sum(n.emails - o.emails) AS e, sum(n.unread - o.unread) AS u,
                 sum((n.emails > 0)::int - (o.emails > 0)::int) AS te,
                 sum((n.unread > 0)::int - (o.unread > 0)::int) AS tu
          FROM after n JOIN before o
              ON o.mailbox_id = n.mailbox_id AND o.thread_id = n.thread_id
          GROUP BY n.mailbox_id) d
    WHERE m.id = d.mailbox_id;
    RETURN NULL;
END $$;
CREATE TRIGGER mailbox_thread_changed AFTER UPDATE ON mailbox_thread
    REFERENCING OLD TABLE AS before NEW TABLE AS after
    FOR EACH STATEMENT EXECUTE FUNCTION mailbox_thread_changed();

-- $seen set or cleared (the thread unchanged): one step of `unread` per mailbox.
CREATE FUNCTION email_seen_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox_thread
        SET unread = unread + (CASE WHEN NEW.keywords ? '$seen' THEN -1 ELSE 1 END)
    WHERE thread_id = NEW.thread_id
        AND mailbox_id IN (SELECT mailbox_id FROM copy WHERE email_id = NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER email_seen_counted AFTER UPDATE OF keywords ON email FOR EACH ROW
    WHEN (OLD.thread_id = NEW.thread_id
        AND (OLD.keywords ? '$seen') IS DISTINCT FROM (NEW.keywords ? '$seen'))
    EXECUTE FUNCTION email_seen_counted();

-- An Email moved to another thread (threads merged): out of the old one, into the new.
CREATE FUNCTION email_thread_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox_thread SET emails = emails - 1,
        unread = unread - (NOT OLD.keywords ? '$seen')::int
    WHERE thread_id = OLD.thread_id
        AND mailbox_id IN (SELECT mailbox_id FROM copy WHERE email_id = NEW.id);
    INSERT INTO mailbox_thread (mailbox_id, thread_id, emails, unread)
        SELECT DISTINCT mailbox_id, NEW.thread_id, 1, (NOT NEW.keywords ? '$seen')::int
        FROM copy WHERE email_id = NEW.id
        ON CONFLICT (mailbox_id, thread_id) DO UPDATE
            SET emails = mailbox_thread.emails + 1,
                unread = mailbox_thread.unread + excluded.unread;
    RETURN NULL;
END $$;
CREATE TRIGGER email_thread_counted AFTER UPDATE OF thread_id ON email FOR EACH ROW
    WHEN (OLD.thread_id <> NEW.thread_id)
    EXECUTE FUNCTION email_thread_counted();

-- An Email deleted with copies left (cascade): they go first, while it can be counted.
CREATE FUNCTION email_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM copy WHERE email_id = OLD.id;
    RETURN OLD;
END $$;
CREATE TRIGGER email_deleted BEFORE DELETE ON email FOR EACH ROW
    EXECUTE FUNCTION email_deleted();

CREATE FUNCTION body_stored() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox m SET bodies = m.bodies + c.n
    FROM (SELECT mailbox_id, count(*) AS n FROM copy WHERE email_id = NEW.id
          GROUP BY mailbox_id) c
    WHERE m.id = c.mailbox_id;
    RETURN NULL;
END $$;
CREATE TRIGGER body_stored AFTER UPDATE OF blob_id ON email FOR EACH ROW
    WHEN (OLD.blob_id IS NULL AND NEW.blob_id IS NOT NULL)
    EXECUTE FUNCTION body_stored();
