//! The embedded SQLite backend.
//!
//! One connection guarded by a mutex, used from `spawn_blocking`: SQLite has one writer at
//! a time anyway, and batching many rows per transaction (the engine sends batches) is
//! what makes it fast. WAL mode lets readers of other connections run beside it.

// Each role of the store in its own file; the SQL helpers several roles share are in
// `write` (change log, flags, message metadata) and here (connection, call helpers, and
// `Announce`: publication after commit).
mod directory;
pub(crate) mod export;
mod leases;
mod mailsync;
mod mdn;
mod migrate;
mod outbox;
mod policy;
mod push;
mod quota;
mod reading;
mod sieve;
mod submission;
mod uploads;
mod write;

use crate::blobs::Blobs;
use crate::events::{EventBus, LocalBus};
use crate::model::*;
use crate::prelude::*;
use crate::wake::WorkSignals;
use crate::{Error, Result};
use async_trait::async_trait;
use mail_types::{
    AccountAuth, AccountId, AccountKind, EmailId, MailboxId, ModSeq, Role, Security, State,
    SyncStatus, Uid, UidValidity, UserId,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use write::Committed;

#[cfg(test)]
use migrate::SCHEMA_V1;

/// SQL condition: blob `blob.id` is needed by nothing, so its row and file may go. An
/// Email, an upload, a queued APPEND (its payload names the blob until the server has the
/// message) and a submission (until it is sent, its Sent copy made and its draft put
/// back or destroyed) each keep it.
pub(crate) const BLOB_UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM email WHERE email.blob_id = blob.id) \
     AND NOT EXISTS (SELECT 1 FROM upload WHERE upload.blob_id = blob.id) \
     AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.kind = 'append' \
         AND json_extract(outbox.payload, '$.blob_id') = blob.id) \
     AND NOT EXISTS (SELECT 1 FROM submission WHERE submission.blob_id = blob.id)";

/// SQLite's errors become the store's backend-neutral one (only this backend names
/// rusqlite).
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Backend(Box::new(e))
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// A second, read-only connection for the API's read paths (file stores; an in-memory
    /// store reads on `conn`). WAL lets it read the last commit while the writer works:
    /// without it a person's Email/get waited behind every background batch transaction
    /// queued on `conn` (hundreds of ms during an initial sync).
    reader: Option<Arc<Mutex<Connection>>>,
    /// Writers a person waits for (`MailSync::apply_urgent_changes`) that are waiting for
    /// `conn`; other writers let them go first (see `call`).
    urgent: Arc<std::sync::atomic::AtomicUsize>,
    blobs: Arc<Blobs>,
    /// Where what a call committed is announced: the event bus and the work signals.
    announce: Announce,
    /// Per account, the mailbox epoch (`MailSync::mailbox_epoch`); moved while the
    /// connection is held, so an `apply_mailbox_list_at` sees every confirmed change.
    mailbox_epochs: Arc<Mutex<std::collections::HashMap<i64, u64>>>,
}

/// Moves `account`'s mailbox epoch (see `MailSync::mailbox_epoch`).
fn bump_epoch(epochs: &Mutex<std::collections::HashMap<i64, u64>>, account: AccountId) {
    if let Ok(mut m) = epochs.lock() {
        let e = m.entry(account.0).or_insert(0);
        *e = e.wrapping_add(1);
    }
}

/// Creates the store file readable by the owner only (0600) when it does not exist yet,
/// whatever the umask. SQLite gives its `-wal` and `-shm` files the mode of the main file,
/// so they follow. An existing file is left as it is (the server warns when it is wider).
fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::blobs::private_dir_all(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store at `path`; raw messages go to
    /// `blobs/` beside it.
    pub fn open(path: &Path) -> Result<Self> {
        // Two processes opening a new store at once (the server and `tidings account`)
        // race for the switch to WAL and the migrations; a step SQLite answers "busy"
        // without waiting for the busy timeout (a lock upgrade it cannot queue for) is
        // tried again, within a bound.
        const OPEN_RETRY: std::time::Duration = std::time::Duration::from_secs(30);
        let start = std::time::Instant::now();
        loop {
            match Self::open_once(path) {
                Err(Error::Backend(e))
                    if matches!(
                        e.downcast_ref::<rusqlite::Error>()
                            .and_then(rusqlite::Error::sqlite_error_code),
                        Some(
                            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                        )
                    ) && start.elapsed() < OPEN_RETRY =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self> {
        create_private_file(path)?;
        let conn = Connection::open(path)?;
        let dir = path.parent().unwrap_or(Path::new(".")).join("blobs");
        let mut store = Self::init(conn, Blobs::dir(&dir)?)?;
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(10))?;
        reader.set_prepared_statement_cache_capacity(256);
        reading::register(&reader, store.blobs.clone())?;
        store.reader = Some(Arc::new(Mutex::new(reader)));
        Ok(store)
    }

    /// A private in-memory store, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?, Blobs::memory())
    }

    fn init(conn: Connection, blobs: Blobs) -> Result<Self> {
        // First: switching a new file to WAL takes a lock, and without a busy timeout a
        // second process opening the store at that moment fails with "database is locked".
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode: a power cut may lose the last transactions but never corrupts;
        // the server is the source of truth for synced data, and user changes (the outbox)
        // will be committed with FULL where it matters.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // write-back: the write paths use far more than rusqlite's default of 16 cached
        // statements, so each call would re-prepare what the previous one evicted.
        conn.set_prepared_statement_cache_capacity(256);
        // The version is read inside an IMMEDIATE transaction, so two processes opening a
        // new store at once (the server and `tidings account list`) cannot both migrate.
        // Foreign keys are off while migrating (the pragma cannot change inside a
        // transaction, and the bundled SQLite turns them on by default): a migration that
        // rebuilds a table must not cascade its drop into the child rows.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let migrated = conn
            .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .map_err(Error::from)
            .and_then(|version| migrate::run(&conn, version));
        if let Err(e) = migrated {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        conn.execute_batch("COMMIT")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // JMAP: the SQL functions and collation of Email/query.
        let blobs = Arc::new(blobs);
        reading::register(&conn, blobs.clone())?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            reader: None,
            urgent: Arc::default(),
            blobs,
            announce: Announce {
                events: Arc::new(LocalBus::default()),
                work: Arc::default(),
            },
            mailbox_epochs: Arc::default(),
        })
    }

    /// Removes the files of blobs whose rows a committed transaction deleted.
    async fn forget_blob_files(&self, gone: impl IntoIterator<Item = String>) -> Result<()> {
        let gone: Vec<String> = gone.into_iter().collect();
        if gone.is_empty() {
            return Ok(());
        }
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || gone.iter().try_for_each(|b| blobs.remove(b)))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    pub fn with_events(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.announce.events = bus;
        self
    }

    /// A mailbox change of the user (create, update, destroy): it moves the account's
    /// mailbox epoch while the connection is held, so a mailbox list taken across it is
    /// not applied (see `apply_mailbox_list_at`).
    async fn mailbox_write<T, F>(&self, account: AccountId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &mut Committed) -> T + Send + 'static,
    {
        let epochs = self.mailbox_epochs.clone();
        self.write(move |c, committed| {
            let r = f(c, committed);
            bump_epoch(&epochs, account);
            Ok(r)
        })
        .await
    }

    /// A call on the writer connection that announces nothing: reads, and writes of what
    /// no JMAP client sees (they go through no `ChangeLog`). See `write`.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.write(move |c, _| f(c)).await
    }

    /// A write: `f` commits its transactions through `ChangeLog::commit`, which fills the
    /// `Committed` it is given, and what it holds is announced once `f` returned (also when
    /// it failed after a first transaction committed).
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &mut Committed) -> Result<T> + Send + 'static,
    {
        let (conn, announce, urgent) = (
            self.conn.clone(),
            self.announce.clone(),
            self.urgent.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut committed = Committed::default();
            let out = match lock_writer(&conn, &urgent, false) {
                Ok(mut guard) => f(&mut guard, &mut committed),
                Err(e) => Err(e),
            };
            announce.publish(committed);
            out
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// `apply_mailbox_changes`, ahead of queued writers when `urgent_call`.
    async fn apply_changes(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        changes: MailboxChanges,
        urgent_call: bool,
    ) -> Result<State> {
        // Raw messages are written before the lock is taken: the file I/O runs beside the
        // one writer instead of inside it.
        let (conn, blobs, announce, urgent) = (
            self.conn.clone(),
            self.blobs.clone(),
            self.announce.clone(),
            self.urgent.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let new_blobs = changes
                .new
                .iter()
                .map(|n| n.raw.as_deref().map(|r| blobs.put(r)).transpose())
                .collect::<Result<Vec<_>>>()?;
            let body_blobs = changes
                .bodies
                .iter()
                .map(|b| blobs.put(&b.raw))
                .collect::<Result<Vec<_>>>()?;
            let mut guard = lock_writer(&conn, &urgent, urgent_call)?;
            let mut committed = Committed::default();
            let out = write::apply_mailbox_changes(
                &mut guard,
                &mut committed,
                account,
                mailbox,
                changes,
                &new_blobs,
                &body_blobs,
            );
            drop(guard);
            announce.publish(committed);
            out
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// A read on the read-only connection (or on `conn` for an in-memory store): it does
    /// not wait for the writer.
    async fn read_call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let Some(reader) = self.reader.clone() else {
            return self.call(f).await;
        };
        tokio::task::spawn_blocking(move || match reader.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(_) => Err(Error::Task("store reader mutex poisoned".into())),
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }
}

/// The writer connection. An urgent caller (a person waiting) announces itself first; the
/// others, before queueing for the lock, let announced ones go ahead, so an urgent write
/// waits for the transaction running now but not for background batches queued behind
/// it. Bounded: a non-urgent caller yields at most `URGENT_YIELD` in all.
fn lock_writer<'a>(
    conn: &'a Mutex<Connection>,
    urgent: &std::sync::atomic::AtomicUsize,
    is_urgent: bool,
) -> Result<std::sync::MutexGuard<'a, Connection>> {
    use std::sync::atomic::Ordering;
    const URGENT_YIELD: std::time::Duration = std::time::Duration::from_secs(2);
    let poisoned = || Error::Task("store mutex poisoned".into());
    if is_urgent {
        urgent.fetch_add(1, Ordering::SeqCst);
        let guard = conn.lock();
        urgent.fetch_sub(1, Ordering::SeqCst);
        return guard.map_err(|_| poisoned());
    }
    let start = std::time::Instant::now();
    loop {
        while urgent.load(Ordering::SeqCst) > 0 && start.elapsed() < URGENT_YIELD {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let guard = conn.lock().map_err(|_| poisoned())?;
        // Queued for the lock before an urgent caller came: it still goes first.
        if urgent.load(Ordering::SeqCst) == 0 || start.elapsed() >= URGENT_YIELD {
            return Ok(guard);
        }
    }
}

/// The blobs named by these outbox entries' APPENDs (each keeps its blob while queued).
fn append_blobs(c: &Connection, ids: impl IntoIterator<Item = i64>) -> Result<Vec<String>> {
    let mut st = c.prepare_cached(
        "SELECT json_extract(payload, '$.blob_id') FROM outbox WHERE id = ?1 AND kind = 'append'",
    )?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(b) = st
            .query_row([id], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten()
        {
            out.push(b);
        }
    }
    Ok(out)
}

/// Deletes the rows of those blobs nothing references any more (an APPEND done after its
/// Email was destroyed held the last reference); returns them, for their files to go.
fn forget_unreferenced(c: &mut Connection, blobs: Vec<String>) -> Result<Vec<String>> {
    if blobs.is_empty() {
        return Ok(blobs);
    }
    let tx = c.transaction()?;
    let mut gone = Vec::new();
    {
        let mut st = tx.prepare_cached(&format!(
            "DELETE FROM blob WHERE id = ?1 AND {BLOB_UNREFERENCED}"
        ))?;
        for b in blobs {
            if st.execute([&b])? > 0 {
                gone.push(b);
            }
        }
    }
    tx.commit()?;
    Ok(gone)
}

/// Where the store announces what its calls committed.
#[derive(Clone)]
struct Announce {
    /// push: the account changes, for the hub.
    events: Arc<dyn EventBus>,
    /// The engine's workers, woken for work queued in their account.
    work: Arc<WorkSignals>,
}

impl Announce {
    /// The one place committed changes are published: each call helper hands it what the
    /// call committed, right after the call returned and before its caller sees the result
    /// (so a client that reads after its write returned has been announced the write).
    fn publish(&self, committed: Committed) {
        for c in committed.changes {
            self.events.publish(c);
        }
        for (account, queue) in committed.queued {
            self.work.queued(account, queue);
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
