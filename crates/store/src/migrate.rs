//! Moving up: a copy of a SQLite store (its file and its blob directory) into an empty
//! PostgreSQL database, every id, state and change kept, so that JMAP clients carry on
//! with the states they hold (docs/design/postgres.md, "Moving up").
//!
//! The two sides meet in this module's row batches and nothing else: `sqlite/export.rs`
//! reads the store table by table into [`Batch`]es (column by column, a bounded number of
//! rows or bytes each) on a thread of its own, `postgres/import.rs` writes each batch
//! with one `INSERT ... SELECT FROM unnest(...)` inside a single transaction. A bounded
//! channel between them keeps at most a few batches in memory, whatever the store's
//! size. [`TABLES`] is the list both sides follow, in an order the foreign keys accept.

use crate::Result;
use std::path::Path;

/// How a column travels: as SQLite reads it, and as the PostgreSQL side types it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Text,
    Bytes,
    /// SQLite's 0/1 integer, PostgreSQL's BOOLEAN.
    Bool,
    /// Text in SQLite, JSONB in PostgreSQL.
    Json,
}

/// Where a table's rows come from on the SQLite side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The rows of `Table::select`, column for column.
    Rows,
    /// The full-text head (subject and addresses) of every Email, from its row: SQLite's
    /// FTS tables are contentless, so their text cannot be read back.
    HeadText,
    /// The body text of every Email whose body is stored, parsed again from its blob.
    BodyText,
    /// Raw messages: the `blob` rows with their files' bytes.
    Blobs,
}

/// What the PostgreSQL side does with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// Inserts the rows, ids included (`OVERRIDING SYSTEM VALUE`).
    Insert,
    /// Sets `mailbox.parent_id` (a mailbox may come before its parent).
    Parents,
    /// Compares the mailbox counters PostgreSQL's triggers computed with SQLite's.
    Counters,
}

/// One table of the copy.
pub(crate) struct Table {
    /// The PostgreSQL table, and the name progress reports.
    pub name: &'static str,
    /// The SQLite query, its columns in the order of `columns`.
    pub select: &'static str,
    /// The PostgreSQL columns and how each travels.
    pub columns: &'static [(&'static str, Kind)],
    pub source: Source,
    pub write: Write,
}

use Kind::{Bool, Bytes, Int, Json, Text};

const fn rows(
    name: &'static str,
    select: &'static str,
    columns: &'static [(&'static str, Kind)],
) -> Table {
    Table {
        name,
        select,
        columns,
        source: Source::Rows,
        write: Write::Insert,
    }
}

/// The tables in copy order. Not copied: `mailbox_thread` and the mailbox counters, which
/// PostgreSQL's triggers compute from the copies (and `mailbox counters` checks against
/// SQLite's); leases and nodes (a fresh cluster has none).
pub(crate) const TABLES: &[Table] = &[
    rows(
        "app_user",
        "SELECT id, name, password_hash, created_at FROM user ORDER BY id",
        &[
            ("id", Int),
            ("name", Text),
            ("password_hash", Text),
            ("created_at", Int),
        ],
    ),
    rows(
        "api_token",
        "SELECT id, user_id, name, hash, created_at FROM api_token ORDER BY id",
        &[
            ("id", Int),
            ("user_id", Int),
            ("name", Text),
            ("hash", Text),
            ("created_at", Int),
        ],
    ),
    rows(
        "web_session",
        "SELECT hash, user_id, created_at, expires_at FROM web_session ORDER BY hash",
        &[
            ("hash", Text),
            ("user_id", Int),
            ("created_at", Int),
            ("expires_at", Int),
        ],
    ),
    rows(
        "account",
        "SELECT id, user_id, name, kind, host, port, security, username, password_enc, \
         ca_file, smtp_host, smtp_port, smtp_security, smtp_username, smtp_password_enc, \
         pop3_delete_after_days, auth, oauth_provider, provider, state, delivery_state, \
         sync_status, sync_error, status_at FROM account ORDER BY id",
        &[
            ("id", Int),
            ("user_id", Int),
            ("name", Text),
            ("kind", Text),
            ("host", Text),
            ("port", Int),
            ("security", Text),
            ("username", Text),
            ("password_enc", Bytes),
            ("ca_file", Text),
            ("smtp_host", Text),
            ("smtp_port", Int),
            ("smtp_security", Text),
            ("smtp_username", Text),
            ("smtp_password_enc", Bytes),
            ("pop3_delete_after_days", Int),
            ("auth", Text),
            ("oauth_provider", Text),
            ("provider", Text),
            ("state", Int),
            ("delivery_state", Int),
            ("sync_status", Text),
            ("sync_error", Text),
            ("status_at", Int),
        ],
    ),
    rows(
        "account_policy",
        "SELECT account_id, bodies_days, daily_download_mb, limit_mb, stopped_day \
         FROM account_policy ORDER BY account_id",
        &[
            ("account_id", Int),
            ("bodies_days", Int),
            ("daily_download_mb", Int),
            ("limit_mb", Int),
            ("stopped_day", Int),
        ],
    ),
    rows(
        "download_day",
        "SELECT account_id, day, bytes FROM download_day ORDER BY account_id, day",
        &[("account_id", Int), ("day", Int), ("bytes", Int)],
    ),
    rows(
        "account_sieve",
        "SELECT account_id, enabled, host, port, capabilities, checked_at \
         FROM account_sieve ORDER BY account_id",
        &[
            ("account_id", Int),
            ("enabled", Bool),
            ("host", Text),
            ("port", Int),
            ("capabilities", Text),
            ("checked_at", Int),
        ],
    ),
    rows(
        "sieve_script",
        "SELECT id, account_id, name FROM sieve_script ORDER BY id",
        &[("id", Int), ("account_id", Int), ("name", Text)],
    ),
    rows(
        "sieve_snapshot",
        "SELECT rowid, account_id, state, scripts, seen_at FROM sieve_snapshot ORDER BY rowid",
        &[
            ("seq", Int),
            ("account_id", Int),
            ("state", Text),
            ("scripts", Text),
            ("seen_at", Int),
        ],
    ),
    rows(
        "quota",
        "SELECT id, account_id, root, resource, used, hard_limit FROM quota ORDER BY id",
        &[
            ("id", Int),
            ("account_id", Int),
            ("root", Text),
            ("resource", Text),
            ("used", Int),
            ("hard_limit", Int),
        ],
    ),
    rows(
        "change",
        "SELECT rowid, account_id, state, type, object_id, op FROM change ORDER BY rowid",
        &[
            ("seq", Int),
            ("account_id", Int),
            ("state", Int),
            ("type", Text),
            ("object_id", Int),
            ("op", Int),
        ],
    ),
    rows(
        "mailbox",
        "SELECT id, account_id, raw_name, name, delimiter, role, subscribed, selectable, \
         uidvalidity, uidnext, highestmodseq, server_total FROM mailbox ORDER BY id",
        &[
            ("id", Int),
            ("account_id", Int),
            ("raw_name", Text),
            ("name", Text),
            ("delimiter", Text),
            ("role", Text),
            ("subscribed", Bool),
            ("selectable", Bool),
            ("uidvalidity", Int),
            ("uidnext", Int),
            ("highestmodseq", Int),
            ("server_total", Int),
        ],
    ),
    Table {
        name: "mailbox parents",
        select: "SELECT id, parent_id FROM mailbox WHERE parent_id IS NOT NULL ORDER BY id",
        columns: &[("id", Int), ("parent_id", Int)],
        source: Source::Rows,
        write: Write::Parents,
    },
    rows(
        "mailbox_sort",
        "SELECT mailbox_id, sort_order FROM mailbox_sort ORDER BY mailbox_id",
        &[("mailbox_id", Int), ("sort_order", Int)],
    ),
    rows(
        "thread",
        "SELECT id, account_id FROM thread ORDER BY id",
        &[("id", Int), ("account_id", Int)],
    ),
    rows(
        "thread_ref",
        "SELECT account_id, msgid, thread_id FROM thread_ref ORDER BY account_id, msgid",
        &[("account_id", Int), ("msgid", Text), ("thread_id", Int)],
    ),
    rows(
        "thread_subject",
        "SELECT account_id, subject, thread_id FROM thread_subject \
         ORDER BY account_id, subject",
        &[("account_id", Int), ("subject", Text), ("thread_id", Int)],
    ),
    rows(
        "email",
        "SELECT id, account_id, identity, thread_id, blob_id, blob_by_id, size, received_at, \
         sent_at, sent_offset, message_id, in_reply_to, refs, subject, addr_from, \
         addr_sender, addr_reply_to, addr_to, addr_cc, addr_bcc, preview, has_attachment, \
         attachments, keywords, problems, orphaned, gm_msgid, gm_thrid FROM email ORDER BY id",
        &[
            ("id", Int),
            ("account_id", Int),
            ("identity", Text),
            ("thread_id", Int),
            ("blob_id", Text),
            ("blob_by_id", Bool),
            ("size", Int),
            ("received_at", Int),
            ("sent_at", Int),
            ("sent_offset", Int),
            ("message_id", Text),
            ("in_reply_to", Text),
            ("refs", Text),
            ("subject", Text),
            ("addr_from", Text),
            ("addr_sender", Text),
            ("addr_reply_to", Text),
            ("addr_to", Text),
            ("addr_cc", Text),
            ("addr_bcc", Text),
            ("preview", Text),
            ("has_attachment", Bool),
            ("attachments", Text),
            ("keywords", Json),
            ("problems", Text),
            ("orphaned", Bool),
            ("gm_msgid", Int),
            ("gm_thrid", Int),
        ],
    ),
    Table {
        name: "email_text_head",
        select: "SELECT id, subject, addr_from, addr_to, addr_cc, addr_bcc FROM email \
                 ORDER BY id",
        columns: &[("email_id", Int), ("text", Text)],
        source: Source::HeadText,
        write: Write::Insert,
    },
    Table {
        name: "email_text_body",
        select: "SELECT e.id, e.blob_id, b.size FROM email e JOIN blob b ON b.id = e.blob_id \
                 ORDER BY e.id",
        columns: &[("email_id", Int), ("text", Text)],
        source: Source::BodyText,
        write: Write::Insert,
    },
    rows(
        "copy",
        "SELECT mailbox_id, uid, email_id, flags, modseq, received_at FROM copy \
         ORDER BY mailbox_id, uid",
        &[
            ("mailbox_id", Int),
            ("uid", Int),
            ("email_id", Int),
            ("flags", Text),
            ("modseq", Int),
            ("received_at", Int),
        ],
    ),
    Table {
        name: "mailbox counters",
        select: "SELECT id, copies, bodies, total_emails, unread_emails, total_threads, \
                 unread_threads FROM mailbox ORDER BY id",
        columns: &[
            ("id", Int),
            ("copies", Int),
            ("bodies", Int),
            ("total_emails", Int),
            ("unread_emails", Int),
            ("total_threads", Int),
            ("unread_threads", Int),
        ],
        source: Source::Rows,
        write: Write::Counters,
    },
    rows(
        "pop3_message",
        "SELECT account_id, uidl, uid, retrieved_at, deleted_on_server FROM pop3_message \
         ORDER BY account_id, uidl",
        &[
            ("account_id", Int),
            ("uidl", Text),
            ("uid", Int),
            ("retrieved_at", Int),
            ("deleted_on_server", Bool),
        ],
    ),
    Table {
        name: "blob",
        select: "SELECT id, size FROM blob ORDER BY id",
        columns: &[("id", Text), ("size", Int), ("data", Bytes)],
        source: Source::Blobs,
        write: Write::Insert,
    },
    rows(
        "upload",
        "SELECT account_id, blob_id, type, size, created_at FROM upload \
         ORDER BY account_id, blob_id",
        &[
            ("account_id", Int),
            ("blob_id", Text),
            ("type", Text),
            ("size", Int),
            ("created_at", Int),
        ],
    ),
    rows(
        "identity",
        "SELECT id, account_id, name, email, reply_to, bcc, text_signature, html_signature, \
         may_delete FROM identity ORDER BY id",
        &[
            ("id", Int),
            ("account_id", Int),
            ("name", Text),
            ("email", Text),
            ("reply_to", Text),
            ("bcc", Text),
            ("text_signature", Text),
            ("html_signature", Text),
            ("may_delete", Bool),
        ],
    ),
    rows(
        "submission",
        "SELECT id, account_id, identity_id, email_id, thread_id, envelope, mail_from, \
         rcpt_to, raw, blob_id, message_id, send_at, created_at, undo_status, phase, \
         attempts, next_attempt, delivery, last_error, sent_copy, dsn_blobs, draft \
         FROM submission ORDER BY id",
        &[
            ("id", Int),
            ("account_id", Int),
            ("identity_id", Int),
            ("email_id", Int),
            ("thread_id", Int),
            ("envelope", Text),
            ("mail_from", Text),
            ("rcpt_to", Text),
            ("raw", Bytes),
            ("blob_id", Text),
            ("message_id", Text),
            ("send_at", Int),
            ("created_at", Int),
            ("undo_status", Text),
            ("phase", Text),
            ("attempts", Int),
            ("next_attempt", Int),
            ("delivery", Json),
            ("last_error", Text),
            ("sent_copy", Text),
            ("dsn_blobs", Text),
            ("draft", Text),
        ],
    ),
    rows(
        "outbox",
        "SELECT id, account_id, kind, email_id, payload, rev, attempts, last_error, \
         created_at, CASE WHEN kind = 'append' THEN json_extract(payload, '$.blob_id') END \
         FROM outbox ORDER BY id",
        &[
            ("id", Int),
            ("account_id", Int),
            ("kind", Text),
            ("email_id", Int),
            ("payload", Text),
            ("rev", Int),
            ("attempts", Int),
            ("last_error", Text),
            ("created_at", Int),
            ("blob_id", Text),
        ],
    ),
    rows(
        "outbox_tombstone",
        "SELECT mailbox_id, uid, outbox_id, done_at FROM outbox_tombstone \
         ORDER BY mailbox_id, uid",
        &[
            ("mailbox_id", Int),
            ("uid", Int),
            ("outbox_id", Int),
            ("done_at", Int),
        ],
    ),
    rows(
        "outbox_failure",
        "SELECT id, account_id, kind, object_id, reason, at FROM outbox_failure ORDER BY id",
        &[
            ("id", Int),
            ("account_id", Int),
            ("kind", Text),
            ("object_id", Int),
            ("reason", Text),
            ("at", Int),
        ],
    ),
    rows(
        "sent_copy_policy",
        "SELECT account_id, policy FROM sent_copy_policy ORDER BY account_id",
        &[("account_id", Int), ("policy", Text)],
    ),
    rows(
        "push_subscription",
        "SELECT id, user_id, device_client_id, url, keys_p256dh, keys_auth, \
         verification_code, verified, expires, types, created_at FROM push_subscription \
         ORDER BY id",
        &[
            ("id", Int),
            ("user_id", Int),
            ("device_client_id", Text),
            ("url", Text),
            ("keys_p256dh", Text),
            ("keys_auth", Text),
            ("verification_code", Text),
            ("verified", Bool),
            ("expires", Int),
            ("types", Text),
            ("created_at", Int),
        ],
    ),
];

/// The identity columns of the copy, each with the SQLite table its ids come from and
/// the change-log type whose `object_id`s are the same ids: its sequence is moved past
/// the largest id ever handed out (an id destroyed before the move included, from
/// `sqlite_sequence` and the change log), so no id names a second object.
pub(crate) const SEQUENCES: &[Sequence] = &[
    Sequence::new("app_user", "id", "user", None),
    Sequence::new("api_token", "id", "api_token", None),
    Sequence::new("account", "id", "account", None),
    Sequence::new("sieve_script", "id", "sieve_script", Some("SieveScript")),
    Sequence::new("sieve_snapshot", "seq", "sieve_snapshot", None),
    Sequence::new("quota", "id", "quota", Some("Quota")),
    Sequence::new("change", "seq", "change", None),
    Sequence::new("mailbox", "id", "mailbox", Some("Mailbox")),
    Sequence::new("thread", "id", "thread", Some("Thread")),
    Sequence::new("email", "id", "email", Some("Email")),
    Sequence::new("identity", "id", "identity", Some("Identity")),
    Sequence::new("submission", "id", "submission", Some("EmailSubmission")),
    Sequence::new("push_subscription", "id", "push_subscription", None),
    Sequence::new("outbox", "id", "outbox", None),
    Sequence::new("outbox_failure", "id", "outbox_failure", None),
];

/// One identity column and where its high-water mark is read.
pub(crate) struct Sequence {
    pub table: &'static str,
    pub column: &'static str,
    pub sqlite_table: &'static str,
    pub logged: Option<&'static str>,
}

impl Sequence {
    const fn new(
        table: &'static str,
        column: &'static str,
        sqlite_table: &'static str,
        logged: Option<&'static str>,
    ) -> Sequence {
        Sequence {
            table,
            column,
            sqlite_table,
            logged,
        }
    }
}

/// Some rows of one table, column by column (each vector as long as the batch).
pub(crate) enum Column {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
    Bool(Vec<Option<bool>>),
}

impl Column {
    pub(crate) fn of(kind: Kind) -> Column {
        match kind {
            Int => Column::Int(Vec::new()),
            Text | Json => Column::Text(Vec::new()),
            Bytes => Column::Bytes(Vec::new()),
            Bool => Column::Bool(Vec::new()),
        }
    }
}

/// What the reading side sends the writing side, in this order: each table's batches then
/// its end, table after table, then the high-water marks of the identity columns.
pub(crate) enum Item {
    Batch {
        table: &'static Table,
        columns: Vec<Column>,
        rows: usize,
    },
    TableDone {
        table: &'static Table,
        rows: u64,
    },
    /// A blob row whose file is missing or cut short: not copied (the server stays the
    /// source of truth: the body is fetched again on demand, as on SQLite).
    BlobMissing,
    /// Per entry of [`SEQUENCES`], the largest id SQLite ever handed out.
    HighWater(Vec<i64>),
}

/// How far the copy is, for the caller to show (counts only: never contents).
#[derive(Debug, Clone)]
pub struct Progress {
    /// The table (or step) copied.
    pub table: &'static str,
    /// Rows copied so far.
    pub rows: u64,
    /// Whether the table is complete.
    pub done: bool,
}

/// What a completed copy did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Rows copied per table, in copy order.
    pub tables: Vec<(&'static str, u64)>,
    /// Blob rows whose file was missing or cut short, not copied.
    pub blobs_missing: u64,
}

/// Rows per batch, and bytes per batch of blobs and body texts: a few batches in flight
/// keep memory bounded whatever the store's size, and a batch is large enough that one
/// statement per batch is cheap.
pub(crate) const BATCH_ROWS: usize = 1000;
pub(crate) const BATCH_BYTES: usize = 4 << 20;

/// Copies the SQLite store at `sqlite_file` (its blobs in `blobs/` beside it) into the
/// empty PostgreSQL database at `url`, in one transaction: a copy cut anywhere leaves the
/// database as empty as it was. The SQLite store is locked for the duration (a server
/// running on it, or starting meanwhile, is refused: its writes would be lost) and is
/// not changed. A database that holds a store already, or anything else, is refused.
pub async fn sqlite_to_postgres(
    sqlite_file: &Path,
    url: &str,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Report> {
    let items = crate::sqlite::export::start(sqlite_file)?;
    crate::postgres::import::run(url, items, progress).await
}
