//! Schema migrations: an append-only list. Entry `n` (0-based) takes a store from
//! `user_version` n to n + 1; an entry is never edited once released, a change is a new
//! entry at the end with a comment saying why it exists.

use crate::{Error, Result};
use rusqlite::Connection;

pub(super) const SCHEMA_V1: &str = include_str!("schema.sql");

type Step = fn(&Connection) -> Result<()>;

/// The migrations, oldest first; `user_version` is how many of them a store has had.
const MIGRATIONS: &[Step] = &[
    // v1: the first schema (tables, indexes, counting triggers, full-text index).
    |c| Ok(c.execute_batch(SCHEMA_V1)?),
    // v2, two changes released together:
    // - JMAP ids are permanent (RFC 8620 1.2: an id names one object for good; DESIGN.md
    //   invariant 8). v1 took plain rowids, so destroying the newest row handed its id to
    //   the next insert, and a client's cache or `*/changes` saw a destroyed object again.
    // - Sent mail is never lost (DESIGN.md invariant 9). v1 destroyed a draft at
    //   submission time (onSuccessDestroyEmail) and deleted a blob once no Email or upload
    //   named it, though a queued APPEND or the submission still needed its bytes.
    |c| {
        permanent_ids(c)?;
        submission_keeps_its_message(c)
    },
    // v3: `email.blob_by_id`. An Email created from its header alone (the sync fetches
    // headers first) has a blobId from that moment on, derived from its own id (`bm<id>`),
    // because its content address is not known yet; RFC 8621 4.1.1 makes blobId immutable,
    // so it keeps that id after the body is stored. Emails stored with their bytes (POP3,
    // drafts, imports) keep the content address `b<sha256>`. Rows of version 2 without a
    // body were created header-first; those with one keep the id clients already saw.
    |c| {
        Ok(c.execute_batch(
            "ALTER TABLE email ADD COLUMN blob_by_id INTEGER NOT NULL DEFAULT 0; \
             UPDATE email SET blob_by_id = 1 WHERE blob_id IS NULL;",
        )?)
    },
    // v4: OAuth2 accounts. How an account authenticates (`password` | `oauth2`) and, for
    // OAuth2, the configured provider that issues its tokens; `password_enc` then holds
    // the encrypted refresh token. Existing accounts are password accounts.
    |c| {
        Ok(c.execute_batch(
            "ALTER TABLE account ADD COLUMN auth TEXT NOT NULL DEFAULT 'password';
             ALTER TABLE account ADD COLUMN oauth_provider TEXT NOT NULL DEFAULT '';",
        )?)
    },
    // v5: the provider profile an account's configuration names (`auto` | `generic` |
    // `icloud` | `outlook` | `yahoo` | `gmail`); existing accounts detect theirs.
    |c| {
        Ok(c.execute_batch(
            "ALTER TABLE account ADD COLUMN provider TEXT NOT NULL DEFAULT 'auto';",
        )?)
    },
    // v6: a body policy and a daily download budget per account. Bodies of the last N
    // days are fetched in the background, the others on demand; bytes downloaded are
    // counted per UTC day so a restart does not forget them (Gmail locks an account that
    // downloads more than ~2,500 MB a day). Own tables, so accounts without a policy need
    // no row.
    |c| Ok(c.execute_batch(super::policy::SCHEMA)?),
    // v7: Gmail's ids (X-GM-EXT-1). `gm_msgid` is X-GM-MSGID, the message's identity in
    // every folder (the Email's `identity` is then `g:<msgid>`, so label folders link to
    // it through that index); `gm_thrid` is X-GM-THRID: Emails with the same one share a
    // thread, found through this index. Both are 64-bit unsigned on the wire, stored as
    // the same bits in SQLite's signed INTEGER; NULL for every other server.
    |c| {
        Ok(c.execute_batch(
            "ALTER TABLE email ADD COLUMN gm_msgid INTEGER;
             ALTER TABLE email ADD COLUMN gm_thrid INTEGER;
             CREATE INDEX email_gm_thread ON email (account_id, gm_thrid)
                 WHERE gm_thrid IS NOT NULL;",
        )?)
    },
    // v8: `email.sent_offset`, the Date header's offset from UTC in minutes east. JMAP
    // `sentAt` is a Date (RFC 8621 4.1.2.6: the value of header:Date:asDate), which keeps
    // the offset the sender wrote; a UTC instant alone lost it. Rows stored before keep 0
    // (served as UTC, as before) until their metadata is written again.
    |c| Ok(c.execute_batch("ALTER TABLE email ADD COLUMN sent_offset INTEGER NOT NULL DEFAULT 0;")?),
    // v9: Emails found by Message-ID. MDN/parse (RFC 9007 2.2) names the Email a received
    // read receipt is for from its Original-Message-ID; without this index that was a
    // scan of the account's messages.
    |c| {
        Ok(c.execute_batch(
            "CREATE INDEX email_message_id ON email (account_id, message_id)
                 WHERE message_id IS NOT NULL;",
        )?)
    },
    // v10: ManageSieve (RFC 5804) per account: where to reach it (or never to try), what
    // the last try found (the Session offers Sieve and VacationResponse only when it
    // worked), permanent JMAP ids for Sieve scripts, which ManageSieve names only by name,
    // and what the scripts were under recent SieveScript states (ManageSieve keeps no
    // change log, SieveScript/changes diffs against these). Own tables, so accounts
    // without ManageSieve need no row.
    |c| Ok(c.execute_batch(super::sieve::SCHEMA)?),
    // v11: `quota`, the account's quotas as its IMAP server reports them (RFC 9208), served
    // as JMAP Quota objects (RFC 9425) with their changes in the change log. Own table:
    // a server without QUOTA has no row, and then the account has no quota capability.
    |c| Ok(c.execute_batch(super::quota::SCHEMA)?),
];

/// The schema version this build writes.
pub(super) const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Brings the store from `version` to [`CURRENT`]. Runs inside the caller's transaction
/// and with foreign keys off (`permanent_ids` rebuilds referenced tables).
pub(super) fn run(c: &Connection, version: i64) -> Result<()> {
    if version > CURRENT {
        return Err(Error::Corrupt(format!(
            "store schema version {version} is newer than this build understands"
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        step(c)?;
        c.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    Ok(())
}

/// Tables whose rowid is (or is part of) a JMAP id, with the change-log type whose
/// `object_id`s are the same ids (rows destroyed before the migration live on there).
const ID_TABLES: &[(&str, Option<&str>)] = &[
    ("mailbox", Some("Mailbox")),
    ("email", Some("Email")),
    ("thread", Some("Thread")),
    ("identity", Some("Identity")),
    ("submission", Some("EmailSubmission")),
    ("push_subscription", None),
    ("outbox_failure", None),
];

/// Rebuilds each id table with `INTEGER PRIMARY KEY AUTOINCREMENT` (the 12-step table
/// change of the SQLite manual, "Making Other Kinds Of Table Schema Changes").
///
/// Why AUTOINCREMENT rather than a sequence table drawn from by each insert: once the
/// table is rebuilt SQLite itself never hands out an id at or below the largest ever used
/// (kept in `sqlite_sequence`, across restarts), for every insert path there is or will
/// be; a sequence table is only as good as the last insert that remembers to use it.
/// The rebuild is one-off and done here, in one transaction, with its dangers handled:
/// - foreign keys are off (the caller), so dropping the old table deletes no child row;
/// - `legacy_alter_table` is on, so the rename touches no other table's foreign keys or
///   trigger bodies: they name the table by its final name all along;
/// - the indexes and triggers of the table go with the old one and are created again
///   from their own SQL;
/// - the contentless FTS tables are keyed by the Email's rowid, which is copied as is.
///
/// The high-water mark starts at the largest id in the table or in the change log, so
/// an id destroyed before the migration is not handed out again either.
fn permanent_ids(c: &Connection) -> Result<()> {
    c.pragma_update(None, "legacy_alter_table", true)?;
    let out = ID_TABLES
        .iter()
        .try_for_each(|(table, logged)| rebuild_autoincrement(c, table, *logged));
    c.pragma_update(None, "legacy_alter_table", false)?;
    out?;
    // Nothing may point nowhere after the rebuild (checked here, since the foreign keys
    // were off while it ran).
    let broken: i64 = c.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })?;
    if broken > 0 {
        return Err(Error::Corrupt(format!(
            "{broken} foreign key violations after the permanent-id migration"
        )));
    }
    Ok(())
}

/// The submission names its message's blob (`blob_id`, held until nothing about the
/// submission needs the bytes) and says what becomes of its Email (`draft`: 'keep',
/// 'destroy_when_sent' for onSuccessDestroyEmail, 'destroy' once sent, 'restore' to put
/// it back into Drafts after a failure or a cancel, 'done'). A queued APPEND names its
/// blob in its payload; the expression index lets the blob collector ask for it.
fn submission_keeps_its_message(c: &Connection) -> Result<()> {
    Ok(c.execute_batch(
        "ALTER TABLE submission ADD COLUMN blob_id TEXT;
         ALTER TABLE submission ADD COLUMN draft TEXT NOT NULL DEFAULT 'keep';
         CREATE INDEX submission_blob ON submission (blob_id) WHERE blob_id IS NOT NULL;
         CREATE INDEX submission_draft ON submission (account_id)
             WHERE draft IN ('destroy', 'restore');
         CREATE INDEX outbox_append_blob ON outbox (json_extract(payload, '$.blob_id'))
             WHERE kind = 'append';",
    )?)
}

fn rebuild_autoincrement(c: &Connection, table: &str, logged: Option<&str>) -> Result<()> {
    let create: String = c.query_row(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get(0),
    )?;
    const KEY: &str = "INTEGER PRIMARY KEY";
    let key_at = create
        .find(KEY)
        .ok_or_else(|| Error::Corrupt(format!("table {table}: no integer primary key")))?;
    if create[key_at + KEY.len()..]
        .trim_start()
        .starts_with("AUTOINCREMENT")
    {
        return Ok(());
    }
    let head = format!("CREATE TABLE {table} (");
    let rest = create
        .strip_prefix(&head)
        .ok_or_else(|| Error::Corrupt(format!("table {table}: unexpected definition")))?;
    let key_at = key_at - head.len() + KEY.len();
    let new_table = format!("{table}_v2");
    let new_sql = format!(
        "CREATE TABLE {new_table} ({} AUTOINCREMENT{}",
        &rest[..key_at],
        &rest[key_at..]
    );
    // Its indexes and triggers (not the automatic ones, which have no SQL).
    let dependents: Vec<String> = {
        let mut st = c.prepare(
            "SELECT sql FROM sqlite_schema WHERE tbl_name = ?1 \
             AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name",
        )?;
        let rows = st.query_map([table], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let columns: Vec<String> = {
        let mut st = c.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
        let rows = st.query_map([table], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let columns = columns.join(", ");
    c.execute_batch(&new_sql)?;
    c.execute_batch(&format!(
        "INSERT INTO {new_table} ({columns}) SELECT {columns} FROM {table};
         DROP TABLE {table};
         ALTER TABLE {new_table} RENAME TO {table};"
    ))?;
    for sql in &dependents {
        c.execute_batch(sql)?;
    }
    let logged_max: i64 = match logged {
        Some(kind) => c.query_row(
            "SELECT coalesce(max(object_id), 0) FROM change WHERE type = ?1",
            [kind],
            |r| r.get(0),
        )?,
        None => 0,
    };
    let table_max: i64 = c.query_row(
        &format!("SELECT coalesce(max(id), 0) FROM {table}"),
        [],
        |r| r.get(0),
    )?;
    c.execute("DELETE FROM sqlite_sequence WHERE name = ?1", [table])?;
    c.execute(
        "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
        rusqlite::params![table, logged_max.max(table_max)],
    )?;
    Ok(())
}
