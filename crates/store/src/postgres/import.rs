//! The writing side of `tidings migrate` (crate::migrate): the row batches of a SQLite
//! store written into an empty database, all in one transaction, so a copy cut anywhere
//! (an error, a kill, a lost connection) leaves nothing behind.
//!
//! Each batch is one `INSERT ... OVERRIDING SYSTEM VALUE SELECT FROM unnest(...)`: ids,
//! the change log's order (`seq`, SQLite's rowid) and every JMAP state are the SQLite
//! store's. The counting triggers run as for any insert, so the mailbox counters and
//! `mailbox_thread` are computed from the copies, then compared with SQLite's. At the
//! end each identity sequence is moved past the largest id SQLite ever handed out.

use super::migrate;
use crate::migrate::{Column, Item, Kind, Progress, Report, SEQUENCES, Table, Write};
use crate::{Error, Result};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

/// The tables whose rows make a database "not empty": every other table of the schema
/// hangs off an account or a user by foreign key, but blobs and nodes do not.
const ROOTS: &[&str] = &["app_user", "account", "blob", "node"];

pub(crate) async fn run(
    url: &str,
    mut items: mpsc::Receiver<Result<Item>>,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Report> {
    let config: tokio_postgres::Config = url.parse()?;
    let (mut client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection ended");
        }
    });
    let out = copy(&mut client, &mut items, progress).await;
    drop(client);
    let _ = driver.await;
    out
}

async fn copy(
    client: &mut tokio_postgres::Client,
    items: &mut mpsc::Receiver<Result<Item>>,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Report> {
    // A database holding tables of something else is not ours to add to.
    let foreign: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() \
             AND to_regclass('schema_version') IS NULL",
            &[],
        )
        .await?
        .get(0);
    if foreign > 0 {
        return Err(Error::Refused(format!(
            "the database holds {foreign} tables and no Tidings store: give an empty database"
        )));
    }
    migrate::run(client).await?;
    let tx = client.transaction().await?;
    // Two copies into one database at once: the second waits here, then finds the first's
    // rows and refuses. A server starting on the database meanwhile waits for the commit.
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        ROOTS.join(", ")
    ))
    .await?;
    for root in ROOTS {
        let found: bool = tx
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {root})"), &[])
            .await?
            .get(0);
        if found {
            return Err(Error::Refused(format!(
                "the database holds a store already (table {root} has rows): \
                 two stores are never mixed, give an empty database"
            )));
        }
    }
    let mut report = Report::default();
    let mut copied = 0u64;
    let mut high_water = None;
    while let Some(item) = items.recv().await {
        match item? {
            Item::Batch {
                table,
                columns,
                rows,
            } => {
                write(&tx, table, &columns).await?;
                copied += rows as u64;
                progress(&Progress {
                    table: table.name,
                    rows: copied,
                    done: false,
                });
            }
            Item::TableDone { table, rows } => {
                if rows != copied {
                    return Err(Error::Corrupt(format!(
                        "{}: {copied} rows written of {rows} read",
                        table.name
                    )));
                }
                if matches!(table.name, "email_text_head" | "email_text_body") {
                    // The full text's new entries merged into its index now, in bulk, as
                    // MailSync does after each batch: a search reads the whole pending
                    // list, which would otherwise wait for autovacuum.
                    tx.execute(
                        "SELECT gin_clean_pending_list(oid) FROM pg_class \
                         WHERE oid = ($1 || '_words')::regclass AND pg_has_role(relowner, 'USAGE')",
                        &[&table.name],
                    )
                    .await?;
                }
                progress(&Progress {
                    table: table.name,
                    rows,
                    done: true,
                });
                report.tables.push((table.name, rows));
                copied = 0;
            }
            Item::BlobMissing => report.blobs_missing += 1,
            Item::HighWater(marks) => high_water = Some(marks),
        }
    }
    // The reader sends the marks last: without them it stopped early (its error came first).
    let marks = high_water.ok_or_else(|| Error::Task("the store's reader stopped".into()))?;
    for (s, mark) in SEQUENCES.iter().zip(marks) {
        let table = s.table;
        let column = s.column;
        let ours: i64 = tx
            .query_one(
                &format!("SELECT coalesce(max({column}), 0) FROM {table}"),
                &[],
            )
            .await?
            .get(0);
        let mark = mark.max(ours);
        if mark > 0 {
            tx.execute(
                "SELECT setval(pg_get_serial_sequence($1, $2), $3, true)",
                &[&table, &column, &mark],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(report)
}

/// One batch: its rows as arrays, one per column, unnested into the table.
async fn write(
    tx: &tokio_postgres::Transaction<'_>,
    table: &Table,
    columns: &[Column],
) -> Result<()> {
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    let arrays: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            let ty = match kind {
                Kind::Int => "bigint",
                Kind::Text | Kind::Json => "text",
                Kind::Bytes => "bytea",
                Kind::Bool => "boolean",
            };
            format!("${}::{ty}[]", i + 1)
        })
        .collect();
    let from = format!("unnest({}) AS u({})", arrays.join(", "), names.join(", "));
    let sql = match table.write {
        Write::Insert => {
            let values: Vec<String> = table
                .columns
                .iter()
                .map(|(n, kind)| match kind {
                    Kind::Json => format!("u.{n}::jsonb"),
                    _ => format!("u.{n}"),
                })
                .collect();
            format!(
                "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {from}",
                table.name,
                names.join(", "),
                values.join(", ")
            )
        }
        Write::Parents => {
            format!("UPDATE mailbox m SET parent_id = u.parent_id FROM {from} WHERE m.id = u.id")
        }
        Write::Counters => {
            // Triggers computed them: a count that differs means the copy is not the store.
            let differ: Vec<String> = names[1..]
                .iter()
                .map(|n| format!("m.{n} <> u.{n}"))
                .collect();
            format!(
                "SELECT count(*) FROM {from} JOIN mailbox m ON m.id = u.id WHERE {}",
                differ.join(" OR ")
            )
        }
    };
    let params: Vec<&(dyn ToSql + Sync)> = columns
        .iter()
        .map(|c| -> &(dyn ToSql + Sync) {
            match c {
                Column::Int(v) => v,
                Column::Text(v) => v,
                Column::Bytes(v) => v,
                Column::Bool(v) => v,
            }
        })
        .collect();
    if table.write == Write::Counters {
        let differ: i64 = tx.query_one(&sql, &params).await?.get(0);
        if differ > 0 {
            return Err(Error::Corrupt(format!(
                "{differ} mailboxes count differently once copied"
            )));
        }
    } else {
        tx.execute(&sql, &params).await?;
    }
    Ok(())
}
