//! The reading side of `tidings migrate` (crate::migrate): the store's tables as row
//! batches, read on a thread of its own inside one read transaction (one consistent
//! snapshot), sent through a bounded channel.
//!
//! The store is opened with `locking_mode = EXCLUSIVE` and its lock taken before anything
//! is read: SQLite grants it only when no other connection has the file open (a WAL
//! reader holds a shared lock on it for as long as it is open), so a `tidings serve` on
//! the store makes the copy refuse, and one starting during the copy cannot open it
//! (its writes would be lost with the SQLite store left behind). Nothing is written:
//! the transaction is rolled back at the end.

use super::migrate::CURRENT;
use crate::blobs::Blobs;
use crate::migrate::{
    BATCH_BYTES, BATCH_ROWS, Column, Item, Kind, SEQUENCES, Source, TABLES, Table,
};
use crate::{Error, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;
use tokio::sync::mpsc;

/// Batches in flight between the two sides.
const IN_FLIGHT: usize = 2;

/// Opens and locks the store at `path`, then reads it on a thread: the receiver gets
/// every table's batches, then the high-water marks, or the error that stopped it.
pub(crate) fn start(path: &Path) -> Result<mpsc::Receiver<Result<Item>>> {
    let conn = open_locked(path)?;
    let blobs = Blobs::Dir(path.parent().unwrap_or(Path::new(".")).join("blobs"));
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    std::thread::Builder::new()
        .name("migrate-read".into())
        .spawn(move || {
            if let Err(e) = read_all(&conn, &blobs, &tx) {
                // The writer is gone when this fails too; nothing left to tell.
                let _ = tx.blocking_send(Err(e));
            }
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    Ok(rx)
}

fn open_locked(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::NotFound(format!("store {}", path.display())));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::ZERO)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    match conn.execute_batch("BEGIN EXCLUSIVE") {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            return Err(Error::Refused(format!(
                "the store {} is open in another process (a running `tidings serve`?): \
                 stop it first, its writes during the copy would be lost",
                path.display()
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != CURRENT {
        return Err(Error::Refused(format!(
            "the store is at schema version {version}, this build copies version {CURRENT}: \
             run this build's `tidings serve` on it once first"
        )));
    }
    Ok(conn)
}

fn read_all(conn: &Connection, blobs: &Blobs, tx: &mpsc::Sender<Result<Item>>) -> Result<()> {
    for table in TABLES {
        let rows = read_table(conn, blobs, table, tx)?;
        send(tx, Item::TableDone { table, rows })?;
    }
    send(tx, Item::HighWater(high_water(conn)?))
}

fn send(tx: &mpsc::Sender<Result<Item>>, item: Item) -> Result<()> {
    tx.blocking_send(Ok(item))
        .map_err(|_| Error::Task("the copy's writer stopped".into()))
}

/// One table's batches; returns how many rows it had.
fn read_table(
    conn: &Connection,
    blobs: &Blobs,
    table: &'static Table,
    tx: &mpsc::Sender<Result<Item>>,
) -> Result<u64> {
    let mut st = conn.prepare(table.select)?;
    let mut cursor = st.query([])?;
    let mut batch = Batch::new(table);
    let mut total = 0u64;
    while let Some(row) = cursor.next()? {
        match table.source {
            Source::Rows => batch.push_row(table, row)?,
            Source::HeadText => {
                let id: i64 = row.get(0)?;
                let subject: Option<String> = row.get(1)?;
                let mut addresses = String::new();
                for i in 2..6 {
                    let list: String = row.get(i)?;
                    address_text(&list, &mut addresses);
                }
                let text = crate::fulltext::head_text(subject.as_deref().unwrap_or(""), &addresses);
                batch.push_text(id, text);
            }
            Source::BodyText => {
                let id: i64 = row.get(0)?;
                let blob: String = row.get(1)?;
                let size: i64 = row.get(2)?;
                // A file missing or cut short has no text to index: the body is fetched
                // again on demand, and indexed then.
                match blobs.get(&blob, size.max(0) as u64) {
                    Ok(Some(raw)) => {
                        let text = crate::fulltext::index_text(&mime::parse(&raw).body_text);
                        batch.push_text(id, text)
                    }
                    Ok(None) | Err(Error::Corrupt(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            Source::Blobs => {
                let id: String = row.get(0)?;
                let size: i64 = row.get(1)?;
                match blobs.get(&id, size.max(0) as u64) {
                    Ok(Some(raw)) => batch.push_blob(id, size, raw),
                    Ok(None) | Err(Error::Corrupt(_)) => {
                        send(tx, Item::BlobMissing)?;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        total += 1;
        if batch.rows >= BATCH_ROWS || batch.bytes >= BATCH_BYTES {
            send(tx, batch.take(table))?;
        }
    }
    if batch.rows > 0 {
        send(tx, batch.take(table))?;
    }
    Ok(total)
}

/// The text the full-text head gets for one address list (the JSON `mailrows` writes):
/// each address's name and email, as `mailrows::address_text` spells it from the parse.
fn address_text(json: &str, out: &mut String) {
    let Ok(serde_json::Value::Array(list)) = serde_json::from_str(json) else {
        return;
    };
    for a in &list {
        if let Some(name) = a.get("name").and_then(|n| n.as_str()) {
            out.push_str(name);
            out.push(' ');
        }
        if let Some(email) = a.get("email").and_then(|e| e.as_str()) {
            out.push_str(email);
            out.push(' ');
        }
    }
}

/// The largest id each identity column's table ever handed out: its largest row, its
/// AUTOINCREMENT mark (ids of rows deleted since) and the change log's ids of its type.
fn high_water(conn: &Connection) -> Result<Vec<i64>> {
    let mut out = Vec::with_capacity(SEQUENCES.len());
    for s in SEQUENCES {
        let rows: i64 = conn.query_row(
            &format!("SELECT coalesce(max(rowid), 0) FROM {}", s.sqlite_table),
            [],
            |r| r.get(0),
        )?;
        let marked: i64 = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                [s.sqlite_table],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let logged: i64 = match s.logged {
            Some(kind) => conn.query_row(
                "SELECT coalesce(max(object_id), 0) FROM change WHERE type = ?1",
                [kind],
                |r| r.get(0),
            )?,
            None => 0,
        };
        out.push(rows.max(marked).max(logged));
    }
    Ok(out)
}

/// A batch being filled.
struct Batch {
    columns: Vec<Column>,
    rows: usize,
    bytes: usize,
}

impl Batch {
    fn new(table: &Table) -> Batch {
        Batch {
            columns: table.columns.iter().map(|(_, k)| Column::of(*k)).collect(),
            rows: 0,
            bytes: 0,
        }
    }

    fn take(&mut self, table: &'static Table) -> Item {
        let full = std::mem::replace(self, Batch::new(table));
        Item::Batch {
            table,
            columns: full.columns,
            rows: full.rows,
        }
    }

    fn push_row(&mut self, table: &Table, row: &rusqlite::Row<'_>) -> Result<()> {
        for (i, ((_, kind), column)) in table.columns.iter().zip(&mut self.columns).enumerate() {
            match (kind, column) {
                (Kind::Int, Column::Int(v)) => v.push(row.get(i)?),
                (Kind::Bool, Column::Bool(v)) => {
                    v.push(row.get::<_, Option<i64>>(i)?.map(|b| b != 0))
                }
                (Kind::Text | Kind::Json, Column::Text(v)) => {
                    let s: Option<String> = row.get(i)?;
                    self.bytes += s.as_ref().map_or(0, String::len);
                    v.push(s);
                }
                (Kind::Bytes, Column::Bytes(v)) => {
                    let b: Option<Vec<u8>> = row.get(i)?;
                    self.bytes += b.as_ref().map_or(0, Vec::len);
                    v.push(b);
                }
                _ => return Err(Error::Corrupt(format!("{}: column kinds", table.name))),
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// A row of `(email_id, text)`.
    fn push_text(&mut self, id: i64, text: String) {
        if let [Column::Int(ids), Column::Text(texts)] = &mut self.columns[..] {
            self.bytes += text.len();
            ids.push(Some(id));
            texts.push(Some(text));
            self.rows += 1;
        }
    }

    /// A row of `(id, size, data)`.
    fn push_blob(&mut self, id: String, size: i64, data: Vec<u8>) {
        if let [Column::Text(ids), Column::Int(sizes), Column::Bytes(datas)] = &mut self.columns[..]
        {
            self.bytes += data.len();
            ids.push(Some(id));
            sizes.push(Some(size));
            datas.push(Some(data));
            self.rows += 1;
        }
    }
}
