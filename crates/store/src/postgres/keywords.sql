-- An Email's keywords are written by `set_keywords` only, which steps the unread counts
-- of `mailbox_thread` in the same statement, once per (mailbox, thread), from the rows it
-- changed. outbox.sql's statement trigger did it after every UPDATE of `email` from the
-- statement's transition tables: capturing the old and new versions of every updated
-- Email cost an Email/set of 1,000 keywords more than the update itself, and the body
-- pass's updates paid it too (BENCHMARKS.md, "Email/set of 1,000 keywords").
DROP TRIGGER email_seen_counted ON email;
DROP FUNCTION email_seen_counted();

-- Sets the keywords (a JSON array as text) of the Emails `ids`, in pairs; returns the ids
-- whose keywords changed. An id given twice takes its first pair. The thread of an Email
-- does not change here (`email_thread_counted` steps a thread change with its keywords).
-- Planned for each call's arrays: PL/pgSQL's cached plan turns generic after five calls,
-- and the generic plan, made without knowing how many ids come, made an Email/set
-- of 1,000 keywords take twice as long from the sixth call on. The rows are named by id,
-- so they are read through the indexes: guessing 200 ids, the planner read and hashed
-- every Email of the table instead (at 5,000 Emails the Email/set took about 7 % longer,
-- and a table scan grows with the store).
CREATE FUNCTION set_keywords(ids BIGINT[], kws TEXT[]) RETURNS SETOF BIGINT
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan SET enable_seqscan = off AS $$
BEGIN
    PERFORM set_config('tidings.set_keywords', 'on', true);
    RETURN QUERY
    WITH u AS (SELECT DISTINCT ON (p.id) p.id, p.kw::jsonb AS kw
               FROM unnest(ids, kws) WITH ORDINALITY AS p(id, kw, n) ORDER BY p.id, p.n),
    -- `o` is the row as the statement found it: its keywords before the update.
    changed AS (UPDATE email e SET keywords = u.kw FROM u, email o
                WHERE e.id = u.id AND o.id = u.id AND e.keywords <> u.kw
                RETURNING e.id, e.thread_id, e.keywords ? '$seen' AS seen,
                          o.keywords ? '$seen' AS was_seen),
    -- The mailboxes of each Email, once each, read with one index scan.
    places AS (SELECT DISTINCT x.mailbox_id, x.email_id FROM copy x
               WHERE x.email_id = ANY(ids)),
    stepped AS (UPDATE mailbox_thread mt SET unread = mt.unread + d.step
                FROM (SELECT c.mailbox_id, n.thread_id,
                             sum(CASE WHEN n.seen THEN -1 ELSE 1 END) AS step
                      FROM changed n JOIN places c ON c.email_id = n.id
                      WHERE n.seen <> n.was_seen
                      GROUP BY c.mailbox_id, n.thread_id) d
                WHERE mt.mailbox_id = d.mailbox_id AND mt.thread_id = d.thread_id
                    AND d.step <> 0)
    SELECT changed.id FROM changed;
    PERFORM set_config('tidings.set_keywords', 'off', true);
END $$;

-- Any other write of `keywords` would leave the counts behind: refused, once per
-- statement (no row trigger, no transition table).
CREATE FUNCTION email_keywords_guarded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('tidings.set_keywords', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'email.keywords is written through set_keywords() only (it keeps the unread counts)';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER email_keywords_guarded BEFORE UPDATE OF keywords ON email
    FOR EACH STATEMENT EXECUTE FUNCTION email_keywords_guarded();

-- The change log and the write-back queue take a row per changed object (1,000 each for
-- an Email/set of 1,000 keywords), and the foreign key to `account` checked every one of
-- them with a query of its own, though each writer holds the account's row locked: a
-- fifth of the Email/set. Their rows go with their account by this trigger instead.
ALTER TABLE change DROP CONSTRAINT change_account_id_fkey;
ALTER TABLE outbox DROP CONSTRAINT outbox_account_id_fkey;
CREATE FUNCTION account_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM change WHERE account_id = OLD.id;
    DELETE FROM outbox WHERE account_id = OLD.id;
    RETURN OLD;
END $$;
CREATE TRIGGER account_deleted BEFORE DELETE ON account FOR EACH ROW
    EXECUTE FUNCTION account_deleted();
