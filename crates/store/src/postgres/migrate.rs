//! Schema migrations: an append-only list, as for SQLite. Entry `n` (0-based) takes a
//! database from version n to n + 1; `schema_version` holds one row per version applied.
//!
//! Several nodes may start on a new database at the same moment: each runs the check and
//! the migrations in one transaction holding a transaction-scoped advisory lock, so the
//! first applies them and the others, once it committed, find nothing left to do. (A
//! `CREATE TABLE IF NOT EXISTS` alone is no guard: two of them at once can both pass the
//! check and one fails on the catalog's unique index.)

use crate::{Error, Result};

/// The migrations, oldest first.
const MIGRATIONS: &[&str] = &[
    // v1: users, tokens, web sessions, accounts with their state counter, the change log,
    // blobs, uploads, the body policy and download budget, ManageSieve, quotas.
    include_str!("schema.sql"),
    // v2: the mail (MailSync, Reading): mailboxes, Emails, copies, threads, POP3's UIDLs,
    // the JMAP counters kept by triggers, the full-text columns and their indexes.
    include_str!("mail.sql"),
    // v3: account leases and the live nodes.
    include_str!("leases.sql"),
    // Identities, the submission queue, the Sent copy policy, push subscriptions.
    include_str!("submission.sql"),
    // The write-back queue (Outbox): entries, tombstones of removed copies, refusals.
    include_str!("outbox.sql"),
    // The full text's words stored with each row, the indexes on them (Reading).
    include_str!("reading.sql"),
    // Keywords written through `set_keywords`, which steps the unread counts itself (the
    // statement trigger on `email` gone).
    include_str!("keywords.sql"),
    // Who has a push client on which node (Leases::share_presence).
    include_str!("presence.sql"),
];

/// The schema version this build writes.
pub(crate) const CURRENT: i64 = MIGRATIONS.len() as i64;

/// The advisory lock key of the migrations (any constant no other lock of ours uses;
/// these are the bytes of "tdngschm").
const LOCK: i64 = 0x7464_6e67_7363_686d;

/// Brings the database to [`CURRENT`]; a database of a newer build is refused.
pub(super) async fn run(client: &mut tokio_postgres::Client) -> Result<()> {
    let tx = client.transaction().await?;
    // A migration may rewrite a large table, and the other nodes wait for it: neither is
    // bound by the store's statement time limit.
    tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
        .await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let version: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    if version > CURRENT {
        return Err(Error::Corrupt(format!(
            "store schema version {version} is newer than this build understands"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(i as i64 + 1)],
        )
        .await?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    tx.commit().await?;
    Ok(())
}
