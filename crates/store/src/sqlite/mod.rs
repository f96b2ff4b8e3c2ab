//! The embedded SQLite backend.
//!
//! One connection guarded by a mutex, used from `spawn_blocking`: SQLite has one writer at
//! a time anyway, and batching many rows per transaction (the engine sends batches) is
//! what makes it fast. WAL mode lets readers of other connections run beside it.

mod mdn;
mod migrate;
mod read;
mod write;
// --- write-back (outbox) ---
mod outbox;
mod policy;
mod quota;
mod sieve;
mod submission;

use crate::blobs::Blobs;
use crate::events::{EventBus, LocalBus, TypeSet};
use crate::model::*;
use crate::outbox::*;
use crate::subscriptions::{
    NewPushSubscription, PushKeys, PushSubscriptionRecord, PushSubscriptionUpdate,
};
use crate::{Error, Result, Store};
use async_trait::async_trait;
use mail_types::{
    AccountAuth, AccountId, AccountKind, EmailId, MailboxId, ModSeq, Role, Security, State,
    SyncStatus, ThreadId, Uid, UidValidity, UserId,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

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

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// A second, read-only connection for the API's read paths (file stores; an in-memory
    /// store reads on `conn`). WAL lets it read the last commit while the writer works:
    /// without it a person's Email/get waited behind every background batch transaction
    /// queued on `conn` (hundreds of ms during an initial sync).
    reader: Option<Arc<Mutex<Connection>>>,
    /// Writers a person waits for (`Store::apply_urgent_changes`) that are waiting for
    /// `conn`; other writers let them go first (see `call`).
    urgent: Arc<std::sync::atomic::AtomicUsize>,
    blobs: Arc<Blobs>,
    // push: where committed changes are announced.
    events: Arc<dyn EventBus>,
    // --- write-back (outbox) ---
    outbox_tx: Arc<tokio::sync::watch::Sender<u64>>,
    /// Per account, the mailbox epoch (`Store::mailbox_epoch`); moved while the
    /// connection is held, so an `apply_mailbox_list_at` sees every confirmed change.
    mailbox_epochs: Arc<Mutex<std::collections::HashMap<i64, u64>>>,
}

/// Moves `account`'s mailbox epoch (see `Store::mailbox_epoch`).
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

fn epoch_of(epochs: &Mutex<std::collections::HashMap<i64, u64>>, account: AccountId) -> u64 {
    epochs
        .lock()
        .map(|m| m.get(&account.0).copied().unwrap_or(0))
        .unwrap_or(0)
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
                Err(Error::Db(e))
                    if matches!(
                        e.sqlite_error_code(),
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
        read::register(&reader, store.blobs.clone())?;
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
        write::pending::install(&conn);
        // JMAP: the SQL functions and collation of Email/query.
        let blobs = Arc::new(blobs);
        read::register(&conn, blobs.clone())?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            reader: None,
            urgent: Arc::default(),
            blobs,
            events: Arc::new(LocalBus::default()),
            outbox_tx: Arc::new(tokio::sync::watch::channel(0).0),
            mailbox_epochs: Arc::default(),
        })
    }

    /// A submission's bytes: kept in its row, or the blob it holds a reference to.
    async fn submission_bytes(&self, id: i64, bytes: submission::Bytes) -> Result<Vec<u8>> {
        match bytes {
            submission::Bytes::Inline(raw) => Ok(raw),
            submission::Bytes::Blob(b) => self
                .blob(&b)
                .await?
                .ok_or_else(|| Error::Corrupt(format!("submission {id}: its blob {b} is missing"))),
        }
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
        self.events = bus;
        self
    }

    /// Wakes the outbox workers (after a commit that queued something).
    fn outbox_wake(&self) {
        self.outbox_tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A mailbox change of the user (create, update, destroy): it moves the account's
    /// mailbox epoch while the connection is held, so a mailbox list taken across it is
    /// not applied (see `apply_mailbox_list_at`).
    async fn mailbox_write<T, F>(&self, account: AccountId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> T + Send + 'static,
    {
        let epochs = self.mailbox_epochs.clone();
        self.call(move |c| {
            let r = f(c);
            bump_epoch(&epochs, account);
            Ok(r)
        })
        .await
    }

    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (conn, events, urgent) = (self.conn.clone(), self.events.clone(), self.urgent.clone());
        tokio::task::spawn_blocking(move || {
            let out = match lock_writer(&conn, &urgent, false) {
                Ok(mut guard) => f(&mut guard),
                Err(e) => Err(e),
            };
            publish_committed(events.as_ref());
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
        let (conn, blobs, events, urgent) = (
            self.conn.clone(),
            self.blobs.clone(),
            self.events.clone(),
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
            let out = write::apply_mailbox_changes(
                &mut guard,
                account,
                mailbox,
                changes,
                &new_blobs,
                &body_blobs,
            );
            drop(guard);
            publish_committed(events.as_ref());
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

/// push: announces what the store call that just returned on this thread committed.
fn publish_committed(events: &dyn EventBus) {
    for c in write::pending::take() {
        events.publish(c);
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn parse_kind(s: &str) -> Result<AccountKind> {
    AccountKind::from_name(s).ok_or_else(|| Error::Corrupt(format!("account kind {s}")))
}
fn parse_security(s: &str) -> Result<Security> {
    Security::from_name(s).ok_or_else(|| Error::Corrupt(format!("security {s}")))
}

const ACCOUNT_COLUMNS: &str = "a.id, a.user_id, u.name, a.name, a.kind, a.host, a.port, \
     a.security, a.username, a.password_enc, a.ca_file, a.smtp_host, a.smtp_port, \
     a.smtp_security, a.smtp_username, a.smtp_password_enc, a.pop3_delete_after_days, \
     a.sync_status, a.sync_error, a.status_at, a.state, a.auth, a.oauth_provider, a.provider";

fn account_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AccountRecord>> {
    let kind: String = r.get(4)?;
    let security: String = r.get(7)?;
    let smtp_host: Option<String> = r.get(11)?;
    let smtp_port: Option<i64> = r.get(12)?;
    let smtp_security: Option<String> = r.get(13)?;
    let smtp_username: Option<String> = r.get(14)?;
    let smtp_password: Option<Vec<u8>> = r.get(15)?;
    let status: String = r.get(17)?;
    let error: String = r.get(18)?;
    let port: i64 = r.get(6)?;
    let auth: String = r.get(21)?;
    let oauth_provider: String = r.get(22)?;
    let provider: String = r.get(23)?;
    let build = || -> Result<AccountRecord> {
        let smtp = match (smtp_host, smtp_port, smtp_security) {
            (Some(host), Some(port), Some(sec)) => Some(ServerSettings {
                host,
                port: u16::try_from(port).map_err(|_| Error::Corrupt("smtp port".into()))?,
                security: parse_security(&sec)?,
                username: smtp_username.unwrap_or_default(),
                password_enc: smtp_password.unwrap_or_default(),
                ca_file: None,
            }),
            _ => None,
        };
        Ok(AccountRecord {
            id: AccountId(r.get(0)?),
            user: UserId(r.get(1)?),
            user_name: r.get(2)?,
            name: r.get(3)?,
            kind: parse_kind(&kind)?,
            server: ServerSettings {
                host: r.get(5)?,
                port: u16::try_from(port).map_err(|_| Error::Corrupt("port".into()))?,
                security: parse_security(&security)?,
                username: r.get(8)?,
                password_enc: r.get(9)?,
                ca_file: r.get(10)?,
            },
            smtp,
            pop3_delete_after_days: r
                .get::<_, Option<i64>>(16)?
                .and_then(|d| u32::try_from(d).ok()),
            auth: AccountAuth::from_parts(&auth, &oauth_provider)
                .ok_or_else(|| Error::Corrupt(format!("account auth {auth}")))?,
            status: SyncStatus::from_parts(&status, &error),
            status_at: r.get(19)?,
            state: State(r.get(20)?),
            provider,
        })
    };
    Ok(build())
}

fn mailbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MailboxRecord> {
    let role: Option<String> = r.get(6)?;
    Ok(MailboxRecord {
        id: MailboxId(r.get(0)?),
        account: AccountId(r.get(1)?),
        raw_name: r.get(2)?,
        name: r.get(3)?,
        parent: r.get::<_, Option<i64>>(4)?.map(MailboxId),
        delimiter: r.get(5)?,
        role: role.as_deref().and_then(Role::from_name),
        subscribed: r.get(7)?,
        selectable: r.get(8)?,
        uidvalidity: UidValidity(r.get(9)?),
        uidnext: Uid(r.get(10)?),
        highestmodseq: ModSeq(r.get::<_, i64>(11)? as u64),
        progress: Progress {
            total: r.get(12)?,
            headers: r.get(13)?,
            bodies: r.get(14)?,
        },
    })
}

const MAILBOX_COLUMNS: &str = "m.id, m.account_id, m.raw_name, m.name, m.parent_id, \
    m.delimiter, m.role, m.subscribed, m.selectable, m.uidvalidity, m.uidnext, \
    m.highestmodseq, m.server_total, m.copies, m.bodies";

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        self.call(move |c| {
            let exists: Option<i64> = c
                .query_row("SELECT id FROM user WHERE name = ?1", [&name], |r| r.get(0))
                .optional()?;
            if exists.is_some() {
                return Err(Error::Exists(format!("user {name}")));
            }
            c.execute(
                "INSERT INTO user (name, password_hash, created_at) VALUES (?1, ?2, ?3)",
                params![name, hash, now()],
            )?;
            Ok(UserId(c.last_insert_rowid()))
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.call(|c| {
            let mut st = c.prepare("SELECT id, name, password_hash FROM user ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok(UserRecord {
                    id: UserId(r.get(0)?),
                    name: r.get(1)?,
                    password_hash: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        let name = name.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT id, name, password_hash FROM user WHERE name = ?1",
                [&name],
                |r| {
                    Ok(UserRecord {
                        id: UserId(r.get(0)?),
                        name: r.get(1)?,
                        password_hash: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn set_user_password(&self, name: &str, password_hash: &str) -> Result<()> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        self.call(move |c| {
            let n = c.execute(
                "UPDATE user SET password_hash = ?2 WHERE name = ?1",
                params![name, hash],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("user {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.call(move |c| Ok(c.execute("DELETE FROM user WHERE name = ?1", [&name])? > 0))
            .await
    }

    async fn create_token(&self, user: UserId, name: &str, hash: &str) -> Result<()> {
        let (name, hash) = (name.to_string(), hash.to_string());
        self.call(move |c| {
            c.execute(
                "INSERT INTO api_token (user_id, name, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![user.0, name, hash, now()],
            )?;
            Ok(())
        })
        .await
    }

    async fn user_by_token_hash(&self, hash: &str) -> Result<Option<UserRecord>> {
        let hash = hash.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT u.id, u.name, u.password_hash FROM api_token t JOIN user u ON u.id = t.user_id \
                 WHERE t.hash = ?1",
                [&hash],
                |r| {
                    Ok(UserRecord {
                        id: UserId(r.get(0)?),
                        name: r.get(1)?,
                        password_hash: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn create_account(&self, a: &NewAccount) -> Result<AccountId> {
        let a = a.clone();
        self.call(move |c| {
            let exists: Option<i64> = c
                .query_row(
                    "SELECT id FROM account WHERE user_id = ?1 AND name = ?2",
                    params![a.user.0, a.name],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_some() {
                return Err(Error::Exists(format!("account {}", a.name)));
            }
            c.execute(
                "INSERT INTO account (user_id, name, kind, host, port, security, username, \
                 password_enc, ca_file, smtp_host, smtp_port, smtp_security, smtp_username, \
                 smtp_password_enc, pop3_delete_after_days, auth, oauth_provider) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                 ?16, ?17)",
                params![
                    a.user.0,
                    a.name,
                    a.kind.as_str(),
                    a.server.host,
                    a.server.port,
                    a.server.security.as_str(),
                    a.server.username,
                    a.server.password_enc,
                    a.server.ca_file,
                    a.smtp.as_ref().map(|s| s.host.clone()),
                    a.smtp.as_ref().map(|s| s.port),
                    a.smtp.as_ref().map(|s| s.security.as_str()),
                    a.smtp.as_ref().map(|s| s.username.clone()),
                    a.smtp.as_ref().map(|s| s.password_enc.clone()),
                    a.pop3_delete_after_days,
                    a.auth.as_str(),
                    a.auth.provider(),
                ],
            )?;
            Ok(AccountId(c.last_insert_rowid()))
        })
        .await
    }

    async fn set_account_secret(&self, id: AccountId, secret_enc: &[u8]) -> Result<()> {
        let secret = secret_enc.to_vec();
        self.call(move |c| {
            let n = c.execute(
                "UPDATE account SET password_enc = ?2 WHERE id = ?1",
                params![id.0, secret],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("account {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn update_account(&self, id: AccountId, a: &NewAccount) -> Result<()> {
        let a = a.clone();
        self.call(move |c| {
            c.execute(
                "UPDATE account SET kind = ?2, host = ?3, port = ?4, security = ?5, \
                 username = ?6, password_enc = ?7, ca_file = ?8, smtp_host = ?9, \
                 smtp_port = ?10, smtp_security = ?11, smtp_username = ?12, \
                 smtp_password_enc = ?13, pop3_delete_after_days = ?14, auth = ?15, \
                 oauth_provider = ?16, name = ?17 WHERE id = ?1",
                params![
                    id.0,
                    a.kind.as_str(),
                    a.server.host,
                    a.server.port,
                    a.server.security.as_str(),
                    a.server.username,
                    a.server.password_enc,
                    a.server.ca_file,
                    a.smtp.as_ref().map(|s| s.host.clone()),
                    a.smtp.as_ref().map(|s| s.port),
                    a.smtp.as_ref().map(|s| s.security.as_str()),
                    a.smtp.as_ref().map(|s| s.username.clone()),
                    a.smtp.as_ref().map(|s| s.password_enc.clone()),
                    a.pop3_delete_after_days,
                    a.auth.as_str(),
                    a.auth.provider(),
                    a.name,
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<AccountRecord>> {
        self.call(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM account a JOIN user u ON u.id = a.user_id \
                 ORDER BY u.name, a.name"
            ))?;
            let rows = st.query_map([], account_from_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
        .await
    }

    async fn user_accounts(&self, user: UserId) -> Result<Vec<AccountRecord>> {
        self.read_call(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM account a JOIN user u ON u.id = a.user_id \
                 WHERE a.user_id = ?1 ORDER BY a.name"
            ))?;
            let rows = st.query_map([user.0], account_from_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_account(&self, id: AccountId) -> Result<bool> {
        let blobs = self.blobs.clone();
        self.call(move |c| {
            let tx = c.transaction()?;
            // FTS rows are not covered by foreign keys.
            for fts in ["email_fts_head", "email_fts_body"] {
                tx.execute(
                    &format!(
                        "DELETE FROM {fts} WHERE rowid IN (SELECT id FROM email WHERE account_id = ?1)"
                    ),
                    [id.0],
                )?;
            }
            for table in ["change", "thread_ref", "thread_subject"] {
                tx.execute(&format!("DELETE FROM {table} WHERE account_id = ?1"), [id.0])?;
            }
            let n = tx.execute("DELETE FROM account WHERE id = ?1", [id.0])?;
            let gone: Vec<String> = {
                let mut st =
                    tx.prepare(&format!("DELETE FROM blob WHERE {BLOB_UNREFERENCED} RETURNING id"))?;
                let rows = st.query_map([], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.commit()?;
            for b in gone {
                blobs.remove(&b)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn set_sync_status(&self, id: AccountId, status: &SyncStatus) -> Result<()> {
        let status = status.clone();
        self.call(move |c| {
            c.execute(
                "UPDATE account SET sync_status = ?2, sync_error = ?3, status_at = ?4 WHERE id = ?1",
                params![id.0, status.name(), status.error(), now()],
            )?;
            Ok(())
        })
        .await
    }

    async fn account_state(&self, id: AccountId) -> Result<State> {
        self.read_call(move |c| {
            c.query_row("SELECT state FROM account WHERE id = ?1", [id.0], |r| {
                Ok(State(r.get(0)?))
            })
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("account {id}")))
        })
        .await
    }

    async fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxRecord>> {
        self.call(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailbox m WHERE m.account_id = ?1 ORDER BY m.name"
            ))?;
            let rows = st.query_map([account.0], mailbox_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn mailbox_by_raw_name(
        &self,
        account: AccountId,
        raw_name: &str,
    ) -> Result<Option<MailboxRecord>> {
        let raw = raw_name.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {MAILBOX_COLUMNS} FROM mailbox m WHERE m.account_id = ?1 AND m.raw_name = ?2"
                ),
                params![account.0, raw],
                mailbox_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn stored_uids(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Uid>> {
        let uids = uids.to_vec();
        self.call(move |c| {
            let mut st =
                c.prepare_cached("SELECT 1 FROM copy WHERE mailbox_id = ?1 AND uid = ?2")?;
            let mut out = Vec::new();
            for u in uids {
                if st.exists(params![mailbox.0, u.0])? {
                    out.push(u);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn gmail_known(&self, account: AccountId, msgids: &[u64]) -> Result<Vec<u64>> {
        let msgids = msgids.to_vec();
        self.call(move |c| {
            let mut st =
                c.prepare_cached("SELECT 1 FROM email WHERE account_id = ?1 AND identity = ?2")?;
            let mut out = Vec::new();
            for m in msgids {
                if st.exists(params![account.0, write::gmail_identity(m)])? {
                    out.push(m);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn apply_mailbox_list(
        &self,
        account: AccountId,
        remote: &[RemoteMailbox],
    ) -> Result<MailboxListOutcome> {
        let remote = remote.to_vec();
        self.call(move |c| write::apply_mailbox_list(c, account, &remote))
            .await
    }

    fn mailbox_epoch(&self, account: AccountId) -> u64 {
        epoch_of(&self.mailbox_epochs, account)
    }

    async fn apply_mailbox_list_at(
        &self,
        account: AccountId,
        remote: &[RemoteMailbox],
        epoch: u64,
    ) -> Result<MailboxListOutcome> {
        let remote = remote.to_vec();
        let epochs = self.mailbox_epochs.clone();
        self.call(move |c| {
            if epoch_of(&epochs, account) != epoch {
                // The list was taken across a mailbox change of the user: it may show the
                // server before that change. The next pass brings the list in line.
                return Ok(MailboxListOutcome::default());
            }
            write::apply_mailbox_list(c, account, &remote)
        })
        .await
    }

    async fn reset_mailbox(&self, mailbox: MailboxId, uidvalidity: UidValidity) -> Result<()> {
        self.call(move |c| write::reset_mailbox(c, mailbox, uidvalidity))
            .await
    }

    async fn mailbox_copies(&self, mailbox: MailboxId) -> Result<Vec<StoredCopy>> {
        self.call(move |c| {
            let mut st =
                c.prepare_cached("SELECT uid, flags FROM copy WHERE mailbox_id = ?1 AND uid < 4294967296 ORDER BY uid")?;
            let rows = st.query_map([mailbox.0], |r| {
                let flags: String = r.get(1)?;
                Ok(StoredCopy {
                    uid: Uid(r.get(0)?),
                    flags: write::split_flags(&flags),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn apply_mailbox_changes(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        changes: MailboxChanges,
    ) -> Result<State> {
        self.apply_changes(account, mailbox, changes, false).await
    }

    async fn apply_urgent_changes(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        changes: MailboxChanges,
    ) -> Result<State> {
        self.apply_changes(account, mailbox, changes, true).await
    }

    async fn body_sources(&self, account: AccountId, email: EmailId) -> Result<Vec<BodySource>> {
        self.read_call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT m.id, m.raw_name, m.uidvalidity, c.uid FROM copy c \
                 JOIN mailbox m ON m.id = c.mailbox_id JOIN email e ON e.id = c.email_id \
                 WHERE c.email_id = ?1 AND e.account_id = ?2 AND c.uid < ?3 \
                 AND m.uidvalidity != 0 ORDER BY c.uid DESC",
            )?;
            let rows = st.query_map(params![email.0, account.0, PLACEHOLDER_UID_BASE], |r| {
                Ok(BodySource {
                    mailbox: MailboxId(r.get(0)?),
                    raw_name: r.get(1)?,
                    uidvalidity: UidValidity(r.get(2)?),
                    uid: Uid(r.get(3)?),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn uids_missing_body(&self, mailbox: MailboxId, limit: usize) -> Result<Vec<Uid>> {
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT c.uid FROM email e CROSS JOIN copy c ON c.email_id = e.id \
                 WHERE e.account_id = (SELECT account_id FROM mailbox WHERE id = ?1) \
                 AND e.blob_id IS NULL AND c.mailbox_id = ?1 AND c.uid < 4294967296 \
                 ORDER BY c.uid DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![mailbox.0, limit as i64], |r| Ok(Uid(r.get(0)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    // --- ManageSieve
    async fn sieve_settings(&self, account: AccountId) -> Result<SieveSettings> {
        self.call(move |c| sieve::settings(c, account)).await
    }
    async fn set_sieve_settings(&self, account: AccountId, s: &SieveSettings) -> Result<()> {
        let s = s.clone();
        self.call(move |c| sieve::set_settings(c, account, &s))
            .await
    }
    async fn set_sieve_found(
        &self,
        account: AccountId,
        capabilities: Option<&str>,
        at: i64,
    ) -> Result<()> {
        let caps = capabilities.map(str::to_owned);
        self.call(move |c| sieve::set_found(c, account, caps.as_deref(), at))
            .await
    }
    async fn sieve_script_ids(&self, account: AccountId, names: &[String]) -> Result<Vec<i64>> {
        let names = names.to_vec();
        self.call(move |c| sieve::script_ids(c, account, &names))
            .await
    }
    async fn put_sieve_snapshot(
        &self,
        account: AccountId,
        state: &str,
        scripts: &str,
        at: i64,
    ) -> Result<()> {
        let (state, scripts) = (state.to_owned(), scripts.to_owned());
        self.call(move |c| sieve::put_snapshot(c, account, &state, &scripts, at))
            .await
    }
    async fn sieve_snapshot(&self, account: AccountId, state: &str) -> Result<Option<String>> {
        let state = state.to_owned();
        self.call(move |c| sieve::snapshot(c, account, &state))
            .await
    }
    async fn rename_sieve_script(&self, account: AccountId, id: i64, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.call(move |c| sieve::rename_script(c, account, id, &name))
            .await
    }

    // --- body policy and download budget
    async fn account_policy(&self, account: AccountId) -> Result<AccountPolicy> {
        self.call(move |c| policy::policy(c, account)).await
    }
    async fn set_account_policy(&self, account: AccountId, p: &AccountPolicy) -> Result<()> {
        let p = *p;
        self.call(move |c| policy::set_policy(c, account, &p)).await
    }
    async fn set_download_limit(&self, account: AccountId, limit_mb: Option<u64>) -> Result<()> {
        self.call(move |c| policy::set_limit(c, account, limit_mb))
            .await
    }
    async fn set_background_stopped(&self, account: AccountId, day: i64) -> Result<()> {
        self.call(move |c| policy::set_stopped(c, account, day))
            .await
    }
    async fn add_downloaded(&self, account: AccountId, day: i64, bytes: u64) -> Result<()> {
        self.call(move |c| policy::add(c, account, day, bytes))
            .await
    }
    async fn download_budget(
        &self,
        account: AccountId,
        day: i64,
    ) -> Result<mail_types::DownloadBudget> {
        self.call(move |c| policy::budget(c, account, day)).await
    }
    async fn missing_bodies_since(
        &self,
        mailbox: MailboxId,
        received_since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(Uid, u64)>> {
        self.call(move |c| policy::missing_bodies(c, mailbox, received_since, limit))
            .await
    }

    async fn collect_orphans(&self, account: AccountId) -> Result<usize> {
        let blobs = self.blobs.clone();
        self.call(move |c| {
            let (n, gone) = write::collect_orphans(c, account)?;
            for b in gone {
                blobs.remove(&b)?;
            }
            Ok(n)
        })
        .await
    }

    async fn pop3_entries(&self, account: AccountId) -> Result<Vec<Pop3Entry>> {
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT uidl, uid, retrieved_at, deleted_on_server FROM pop3_message \
                 WHERE account_id = ?1 ORDER BY uid",
            )?;
            let rows = st.query_map([account.0], |r| {
                Ok(Pop3Entry {
                    uidl: r.get(0)?,
                    uid: Uid(r.get(1)?),
                    retrieved_at: r.get(2)?,
                    deleted_on_server: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn pop3_mark_deleted(&self, account: AccountId, uidls: &[String]) -> Result<()> {
        let uidls = uidls.to_vec();
        self.call(move |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "UPDATE pop3_message SET deleted_on_server = 1 WHERE account_id = ?1 AND uidl = ?2",
                )?;
                for u in &uidls {
                    st.execute(params![account.0, u])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn mailbox_messages(&self, mailbox: MailboxId) -> Result<Vec<MessageSummary>> {
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT e.id, e.thread_id, c.uid, c.flags, e.size, e.received_at, e.subject, \
                 e.message_id, e.blob_id, e.has_attachment, e.preview \
                 FROM copy c JOIN email e ON e.id = c.email_id \
                 WHERE c.mailbox_id = ?1 AND c.uid < 4294967296 ORDER BY c.uid",
            )?;
            let rows = st.query_map([mailbox.0], |r| {
                let flags: String = r.get(3)?;
                Ok(MessageSummary {
                    email: EmailId(r.get(0)?),
                    thread: ThreadId(r.get(1)?),
                    uid: Uid(r.get(2)?),
                    flags: write::split_flags(&flags),
                    size: r.get(4)?,
                    internal_date: r.get(5)?,
                    subject: r.get(6)?,
                    message_id: r.get(7)?,
                    blob_id: r.get(8)?,
                    has_attachment: r.get(9)?,
                    preview: r.get(10)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn blob(&self, blob_id: &str) -> Result<Option<Vec<u8>>> {
        let id = blob_id.to_string();
        let size: Option<i64> = {
            let id = id.clone();
            self.read_call(move |c| {
                Ok(
                    c.query_row("SELECT size FROM blob WHERE id = ?1", [&id], |r| r.get(0))
                        .optional()?,
                )
            })
            .await?
        };
        let Some(size) = size else {
            return Ok(None);
        };
        // The file is read outside the database lock.
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.get(&id, size as u64))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    async fn blob_in_account(&self, account: AccountId, blob_id: &str) -> Result<bool> {
        let id = blob_id.to_string();
        self.read_call(move |c| {
            // (jmap: or an upload of the account.)
            Ok(c.prepare_cached(
                "SELECT 1 FROM email WHERE blob_id = ?1 AND account_id = ?2 \
                 UNION ALL SELECT 1 FROM upload WHERE blob_id = ?1 AND account_id = ?2 LIMIT 1",
            )?
            .exists(params![id, account.0])?)
        })
        .await
    }

    async fn changes_since(&self, account: AccountId, since: State) -> Result<Vec<Change>> {
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT state, type, object_id, op FROM change \
                 WHERE account_id = ?1 AND state > ?2 ORDER BY state, rowid",
            )?;
            let rows = st.query_map(params![account.0, since.0], |r| {
                let t: String = r.get(1)?;
                let op: i64 = r.get(3)?;
                Ok((State(r.get(0)?), t, r.get::<_, i64>(2)?, op))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (state, t, id, op) = row?;
                let object = ObjectType::from_name(&t)
                    .ok_or_else(|| Error::Corrupt(format!("change type {t}")))?;
                let op = match op {
                    0 => ChangeOp::Created,
                    1 => ChangeOp::Updated,
                    _ => ChangeOp::Destroyed,
                };
                out.push(Change {
                    state,
                    object,
                    id,
                    op,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn changes_page(
        &self,
        account: AccountId,
        object: ObjectType,
        since: ChangePosition,
        max: usize,
    ) -> Result<std::result::Result<ChangesPage, ChangesError>> {
        self.call(move |c| read::changes_page(c, account, object, since, max))
            .await
    }

    async fn mailbox_views(&self, account: AccountId) -> Result<Vec<MailboxView>> {
        self.read_call(move |c| read::mailbox_views(c, account))
            .await
    }

    async fn emails(&self, account: AccountId, ids: &[EmailId]) -> Result<Vec<EmailView>> {
        let ids = ids.to_vec();
        self.read_call(move |c| read::emails(c, account, &ids))
            .await
    }

    async fn query_emails(&self, account: AccountId, q: &EmailQuery) -> Result<QueryPage> {
        let q = q.clone();
        self.read_call(move |c| read::query_emails(c, account, &q))
            .await
    }

    async fn threads(
        &self,
        account: AccountId,
        ids: &[ThreadId],
    ) -> Result<Vec<(ThreadId, Vec<EmailId>)>> {
        let ids = ids.to_vec();
        self.read_call(move |c| read::threads(c, account, &ids))
            .await
    }

    async fn search(&self, account: AccountId, query: &str) -> Result<Vec<EmailId>> {
        if query.split_whitespace().next().is_none() {
            return Ok(Vec::new());
        }
        // The full-text query of Email/query, newest first.
        let q = EmailQuery {
            filter: Some(EmailFilter::Condition(EmailCondition::Text(
                query.to_string(),
            ))),
            ..EmailQuery::default()
        };
        Ok(self.query_emails(account, &q).await?.ids)
    }

    // --- push ---------------------------------------------------------------------------
    fn events(&self) -> Arc<dyn EventBus> {
        self.events.clone()
    }

    async fn changed_types_since(&self, account: AccountId, since: State) -> Result<TypeSet> {
        self.call(move |c| {
            let mut types = TypeSet::EMPTY;
            let mut st = c.prepare_cached(
                "SELECT DISTINCT type FROM change WHERE account_id = ?1 AND state > ?2",
            )?;
            let rows = st.query_map(params![account.0, since.0], |r| r.get::<_, String>(0))?;
            for row in rows {
                let t = row?;
                let object = ObjectType::from_name(&t)
                    .ok_or_else(|| Error::Corrupt(format!("change type {t}")))?;
                types.insert(object.into());
            }
            // Only mail delivered from the server counts, not drafts, imports or sent
            // copies created since (those are Email changes alone).
            let delivered: i64 = c
                .prepare_cached("SELECT delivery_state FROM account WHERE id = ?1")?
                .query_row([account.0], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            if delivered > since.0 {
                types.insert(crate::events::PushType::EmailDelivery);
            }
            Ok(types)
        })
        .await
    }

    // --- uploads (jmap) ---------------------------------------------------------------------
    async fn put_upload(
        &self,
        account: AccountId,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<UploadRecord> {
        // The file first, outside the lock; the rows reference it once it is in place.
        let blobs = self.blobs.clone();
        let size = bytes.len();
        let bytes = Arc::new(bytes);
        let b = bytes.clone();
        let blob_id = tokio::task::spawn_blocking(move || blobs.put(&b))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let record = UploadRecord {
            account,
            blob_id,
            content_type: content_type.to_string(),
            size: size as u64,
            created_at: now(),
        };
        let r = record.clone();
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO blob (id, size) VALUES (?1, ?2)",
                params![r.blob_id, r.size as i64],
            )?;
            tx.execute(
                "INSERT INTO upload (account_id, blob_id, type, size, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (account_id, blob_id) \
                 DO UPDATE SET type = excluded.type, created_at = excluded.created_at",
                params![
                    account.0,
                    r.blob_id,
                    r.content_type,
                    r.size as i64,
                    r.created_at
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        // An expiry of an older upload of the same bytes may have removed the file between
        // the write and the commit; now that the row holds it, make sure it is there
        // (a size check when it is).
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.put(&bytes))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        Ok(record)
    }

    async fn upload(&self, account: AccountId, blob_id: &str) -> Result<Option<UploadRecord>> {
        let id = blob_id.to_string();
        self.call(move |c| {
            Ok(c.prepare_cached(
                "SELECT type, size, created_at FROM upload WHERE account_id = ?1 AND blob_id = ?2",
            )?
            .query_row(params![account.0, id], |r| {
                Ok(UploadRecord {
                    account,
                    blob_id: id.clone(),
                    content_type: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    created_at: r.get(2)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn upload_bytes(&self, account: AccountId, blob_id: &str) -> Result<Option<Vec<u8>>> {
        let Some(u) = self.upload(account, blob_id).await? else {
            return Ok(None);
        };
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.get(&u.blob_id, u.size))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    async fn expire_uploads(&self, before: i64) -> Result<usize> {
        let blobs = self.blobs.clone();
        self.call(move |c| {
            let tx = c.transaction()?;
            let expired: Vec<String> = {
                let mut st = tx
                    .prepare_cached("DELETE FROM upload WHERE created_at < ?1 RETURNING blob_id")?;
                let rows = st.query_map([before], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let mut gone = Vec::new();
            for b in &expired {
                let n = tx
                    .prepare_cached(&format!(
                        "DELETE FROM blob WHERE id = ?1 AND {BLOB_UNREFERENCED}"
                    ))?
                    .execute([b])?;
                if n > 0 {
                    gone.push(b.clone());
                }
            }
            tx.commit()?;
            for b in gone {
                blobs.remove(&b)?;
            }
            Ok(expired.len())
        })
        .await
    }

    // --- write-back (outbox) ----------------------------------------------------------------

    async fn update_emails(
        &self,
        account: AccountId,
        patches: Vec<EmailPatch>,
    ) -> Result<Vec<std::result::Result<(), WriteRefusal>>> {
        let (out, _) = self
            .call(move |c| outbox::update_emails(c, account, &patches))
            .await?;
        self.outbox_wake();
        Ok(out)
    }

    async fn destroy_emails(
        &self,
        account: AccountId,
        ids: Vec<EmailId>,
    ) -> Result<Vec<std::result::Result<(), WriteRefusal>>> {
        let out = self
            .call(move |c| outbox::destroy_emails(c, account, &ids))
            .await?;
        self.collect_orphans(account).await?;
        self.outbox_wake();
        Ok(out)
    }

    async fn append_email(
        &self,
        account: AccountId,
        req: AppendRequest,
    ) -> Result<std::result::Result<EmailId, WriteRefusal>> {
        let (conn, blobs) = (self.conn.clone(), self.blobs.clone());
        let events = self.events.clone(); // push
        let out = tokio::task::spawn_blocking(move || {
            // Parsed and written before the lock is taken, like the sync's messages.
            let parsed = mime::parse(&req.raw);
            let blob = blobs.put(&req.raw)?;
            let mut guard = conn
                .lock()
                .map_err(|_| Error::Task("store mutex poisoned".into()))?;
            let out = outbox::append_email(&mut guard, account, &req, &blob, &parsed);
            drop(guard);
            publish_committed(events.as_ref()); // push: announce after commit
            out
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        self.outbox_wake();
        Ok(out.0)
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        parent: Option<MailboxId>,
        subscribed: bool,
    ) -> Result<std::result::Result<MailboxId, WriteRefusal>> {
        let name = name.to_string();
        let out = self
            .mailbox_write(account, move |c| {
                outbox::create_mailbox(c, account, &name, parent, subscribed)
            })
            .await??;
        self.outbox_wake();
        Ok(out)
    }

    async fn update_mailbox(
        &self,
        account: AccountId,
        id: MailboxId,
        patch: MailboxPatch,
    ) -> Result<std::result::Result<(), WriteRefusal>> {
        let out = self
            .mailbox_write(account, move |c| {
                outbox::update_mailbox(c, account, id, &patch)
            })
            .await??;
        self.outbox_wake();
        Ok(out)
    }

    async fn destroy_mailbox(
        &self,
        account: AccountId,
        id: MailboxId,
        remove_emails: bool,
    ) -> Result<std::result::Result<(), WriteRefusal>> {
        let out = self
            .mailbox_write(account, move |c| {
                outbox::destroy_mailbox(c, account, id, remove_emails)
            })
            .await??;
        self.collect_orphans(account).await?;
        self.outbox_wake();
        Ok(out)
    }

    async fn outbox_next(&self, account: AccountId, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.call(move |c| outbox::next(c, account, limit)).await
    }

    async fn outbox_begin(&self, id: i64, uidnext: Option<u32>) -> Result<bool> {
        self.call(move |c| outbox::begin_attempt(c, id, uidnext))
            .await
    }

    async fn outbox_has(
        &self,
        account: AccountId,
        object: i64,
        kind: &'static str,
    ) -> Result<bool> {
        self.call(move |c| outbox::has_entry(c, account, object, kind))
            .await
    }

    async fn outbox_complete(&self, account: AccountId, done: Vec<OutboxDone>) -> Result<()> {
        let epochs = self.mailbox_epochs.clone();
        let gone = self
            .call(move |c| {
                // A confirmed mailbox change moves the epoch before the connection is let go.
                let mut mailbox_op = false;
                {
                    let mut st = c.prepare_cached(
                        "SELECT 1 FROM outbox WHERE id = ?1 AND kind IN \
                     ('create_mailbox', 'rename_mailbox', 'delete_mailbox', 'subscribe')",
                    )?;
                    for d in &done {
                        mailbox_op |= st.exists([d.id])?;
                    }
                }
                let appended = append_blobs(c, done.iter().map(|d| d.id))?;
                let r = outbox::complete(c, account, &done);
                if mailbox_op {
                    bump_epoch(&epochs, account);
                }
                r?;
                forget_unreferenced(c, appended)
            })
            .await?;
        self.forget_blob_files(gone).await?;
        self.collect_orphans(account).await?;
        Ok(())
    }

    async fn outbox_defer(&self, id: i64, error: &str) -> Result<()> {
        let error = error.to_string();
        self.call(move |c| outbox::defer(c, id, &error)).await
    }

    async fn outbox_refuse(&self, account: AccountId, id: i64, reason: &str) -> Result<()> {
        let reason = reason.to_string();
        let gone = self
            .call(move |c| {
                let appended = append_blobs(c, [id])?;
                outbox::refuse(c, account, id, &reason)?;
                forget_unreferenced(c, appended)
            })
            .await?;
        self.forget_blob_files(gone).await?;
        self.collect_orphans(account).await?;
        Ok(())
    }

    async fn outbox_status(&self, account: AccountId) -> Result<OutboxStatus> {
        self.call(move |c| outbox::status(c, account)).await
    }

    async fn outbox_dismiss(&self, account: AccountId, failures: Vec<i64>) -> Result<()> {
        self.call(move |c| outbox::dismiss_failures(c, account, &failures))
            .await
    }

    fn outbox_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.outbox_tx.subscribe()
    }

    // --- web client sessions -------------------------------------------------------------
    async fn create_web_session(&self, user: UserId, hash: &str, expires_at: i64) -> Result<()> {
        let hash = hash.to_string();
        self.call(move |c| {
            let t = now();
            c.execute("DELETE FROM web_session WHERE expires_at <= ?1", [t])?;
            c.execute(
                "INSERT INTO web_session (hash, user_id, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![hash, user.0, t, expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn user_by_web_session(&self, hash: &str) -> Result<Option<UserRecord>> {
        let hash = hash.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT u.id, u.name, u.password_hash FROM web_session s \
                 JOIN user u ON u.id = s.user_id WHERE s.hash = ?1 AND s.expires_at > ?2",
                params![hash, now()],
                |r| {
                    Ok(UserRecord {
                        id: UserId(r.get(0)?),
                        name: r.get(1)?,
                        password_hash: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn delete_web_session(&self, hash: &str) -> Result<bool> {
        let hash = hash.to_string();
        self.call(move |c| Ok(c.execute("DELETE FROM web_session WHERE hash = ?1", [&hash])? > 0))
            .await
    }
    // --- sending ----------------------------------------------------------------------
    async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>> {
        self.read_call(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM account a JOIN user u ON u.id = a.user_id \
                 WHERE a.id = ?1"
            ))?;
            let mut rows = st.query_map([id.0], account_from_row)?;
            match rows.next() {
                Some(r) => Ok(Some(r??)),
                None => Ok(None),
            }
        })
        .await
    }
    async fn identities(&self, account: AccountId) -> Result<Vec<crate::IdentityRecord>> {
        self.call(move |c| submission::identities(c, account)).await
    }
    async fn ensure_identity(&self, account: AccountId, email: &str) -> Result<()> {
        let email = email.to_string();
        self.call(move |c| submission::ensure_identity(c, account, &email))
            .await
    }
    async fn create_identity(&self, identity: &crate::IdentityRecord) -> Result<i64> {
        let identity = identity.clone();
        self.call(move |c| submission::create_identity(c, &identity))
            .await
    }
    async fn update_identity(&self, identity: &crate::IdentityRecord) -> Result<bool> {
        let identity = identity.clone();
        self.call(move |c| submission::update_identity(c, &identity))
            .await
    }
    async fn destroy_identity(&self, account: AccountId, id: i64) -> Result<bool> {
        self.call(move |c| submission::destroy_identity(c, account, id))
            .await
    }
    async fn create_submission(&self, s: &crate::NewSubmission) -> Result<i64> {
        let s = s.clone();
        self.call(move |c| submission::create_submission(c, &s, now()))
            .await
    }
    async fn submissions(&self, account: AccountId) -> Result<Vec<crate::SubmissionRecord>> {
        self.call(move |c| submission::submissions(c, account))
            .await
    }
    async fn cancel_submission(&self, account: AccountId, id: i64) -> Result<crate::CancelOutcome> {
        let (out, gone) = self
            .call(move |c| submission::cancel_submission(c, account, id))
            .await?;
        self.forget_blob_files(gone).await?;
        Ok(out)
    }
    async fn destroy_submission(&self, account: AccountId, id: i64) -> Result<bool> {
        let (out, gone) = self
            .call(move |c| submission::destroy_submission(c, account, id))
            .await?;
        self.forget_blob_files(gone).await?;
        Ok(out)
    }
    async fn due_submissions(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<crate::SubmissionRecord>> {
        self.call(move |c| submission::due_submissions(c, now, limit))
            .await
    }
    async fn next_submission_at(&self) -> Result<Option<i64>> {
        self.call(submission::next_submission_at).await
    }
    async fn begin_submission(&self, id: i64) -> Result<Option<Vec<u8>>> {
        match self
            .call(move |c| submission::begin_submission(c, id))
            .await?
        {
            Some(b) => Ok(Some(self.submission_bytes(id, b).await?)),
            None => Ok(None),
        }
    }
    async fn finish_submission(&self, id: i64, result: &crate::AttemptResult) -> Result<()> {
        let result = result.clone();
        let gone = self
            .call(move |c| submission::finish_submission(c, id, &result))
            .await?;
        self.forget_blob_files(gone).await
    }
    async fn recover_submissions(&self) -> Result<Vec<i64>> {
        let (ids, gone) = self.call(submission::recover_submissions).await?;
        self.forget_blob_files(gone).await?;
        Ok(ids)
    }
    async fn pending_sent_copies(
        &self,
        account: AccountId,
    ) -> Result<Vec<(crate::SubmissionRecord, Vec<u8>)>> {
        let list = self
            .call(move |c| submission::pending_sent_copies(c, account))
            .await?;
        let mut out = Vec::with_capacity(list.len());
        for (s, b) in list {
            let raw = self.submission_bytes(s.id, b).await?;
            out.push((s, raw));
        }
        Ok(out)
    }
    async fn set_sent_copy_done(&self, id: i64) -> Result<()> {
        let gone = self
            .call(move |c| submission::set_sent_copy_done(c, id))
            .await?;
        self.forget_blob_files(gone).await
    }
    async fn draft_followups(
        &self,
        limit: usize,
    ) -> Result<Vec<(crate::SubmissionRecord, Option<Vec<u8>>)>> {
        let list = self
            .call(move |c| submission::draft_followups(c, limit))
            .await?;
        let mut out = Vec::with_capacity(list.len());
        for (s, b) in list {
            let raw = match b {
                Some(b) => Some(self.submission_bytes(s.id, b).await?),
                None => None,
            };
            out.push((s, raw));
        }
        Ok(out)
    }
    async fn set_draft_done(&self, id: i64) -> Result<()> {
        let gone = self
            .call(move |c| submission::set_draft_done(c, id))
            .await?;
        self.forget_blob_files(gone).await
    }
    async fn apply_dsn(
        &self,
        account: AccountId,
        id: i64,
        blob_id: &str,
        updates: &[crate::DeliveryEntry],
    ) -> Result<bool> {
        let (blob, updates) = (blob_id.to_owned(), updates.to_vec());
        self.call(move |c| submission::apply_dsn(c, account, id, &blob, &updates))
            .await
    }
    async fn quotas(&self, account: AccountId) -> Result<Vec<crate::QuotaRecord>> {
        self.read_call(move |c| quota::quotas(c, account)).await
    }
    async fn apply_quotas(&self, account: AccountId, values: &[crate::QuotaValue]) -> Result<bool> {
        let values = values.to_vec();
        self.call(move |c| quota::apply(c, account, &values)).await
    }
    async fn blob_size(&self, blob_id: &str) -> Result<Option<u64>> {
        let id = blob_id.to_string();
        let size: Option<i64> = self
            .read_call(move |c| {
                Ok(c.prepare_cached("SELECT size FROM blob WHERE id = ?1")?
                    .query_row([&id], |r| r.get(0))
                    .optional()?)
            })
            .await?;
        Ok(size.and_then(|s| u64::try_from(s).ok()))
    }
    async fn emails_with_blob(&self, account: AccountId, blob_id: &str) -> Result<Vec<EmailId>> {
        let id = blob_id.to_string();
        self.read_call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id FROM email WHERE blob_id = ?1 AND account_id = ?2 ORDER BY id",
            )?;
            let rows = st.query_map(params![id, account.0], |r| r.get(0).map(EmailId))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
    async fn set_server_files_sent(&self, account: AccountId, server_files: bool) -> Result<()> {
        self.call(move |c| submission::set_server_files_sent(c, account, server_files))
            .await
    }
    async fn mailbox_has_message_id(&self, mailbox: MailboxId, message_id: &str) -> Result<bool> {
        let m = message_id.to_string();
        self.call(move |c| submission::mailbox_has_message_id(c, mailbox, &m))
            .await
    }
    async fn set_account_provider(&self, account: AccountId, provider: &str) -> Result<()> {
        let provider = provider.to_string();
        self.call(move |c| {
            c.execute(
                "UPDATE account SET provider = ?2 WHERE id = ?1",
                params![account.0, provider],
            )?;
            Ok(())
        })
        .await
    }
    async fn server_files_sent(&self, account: AccountId) -> Result<bool> {
        self.call(move |c| submission::server_files_sent(c, account))
            .await
    }

    // --- push: subscriptions ---
    async fn push_subscriptions(
        &self,
        user: Option<UserId>,
    ) -> Result<Vec<PushSubscriptionRecord>> {
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, user_id, device_client_id, url, keys_p256dh, keys_auth, \
                 verification_code, verified, expires, types FROM push_subscription \
                 WHERE ?1 IS NULL OR user_id = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([user.map(|u| u.0)], |r| {
                let p256dh: Option<String> = r.get(4)?;
                let auth: Option<String> = r.get(5)?;
                let types: Option<String> = r.get(9)?;
                Ok((
                    PushSubscriptionRecord {
                        id: r.get(0)?,
                        user: UserId(r.get(1)?),
                        device_client_id: r.get(2)?,
                        url: r.get(3)?,
                        keys: match (p256dh, auth) {
                            (Some(p256dh), Some(auth)) => Some(PushKeys { p256dh, auth }),
                            _ => None,
                        },
                        verification_code: r.get(6)?,
                        verified: r.get(7)?,
                        expires: r.get(8)?,
                        types: None,
                    },
                    types,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (mut rec, types) = row?;
                rec.types = match types {
                    Some(t) => Some(serde_json::from_str(&t).map_err(|_| {
                        Error::Corrupt(format!("push subscription {} types", rec.id))
                    })?),
                    None => None,
                };
                out.push(rec);
            }
            Ok(out)
        })
        .await
    }

    async fn create_push_subscription(&self, s: &NewPushSubscription) -> Result<i64> {
        let s = s.clone();
        self.call(move |c| {
            let types = s
                .types
                .as_ref()
                .map(|t| serde_json::to_string(t).map_err(|e| Error::Corrupt(e.to_string())))
                .transpose()?;
            c.execute(
                "INSERT INTO push_subscription (user_id, device_client_id, url, keys_p256dh, \
                 keys_auth, verification_code, expires, types) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.user.0,
                    s.device_client_id,
                    s.url,
                    s.keys.as_ref().map(|k| k.p256dh.clone()),
                    s.keys.as_ref().map(|k| k.auth.clone()),
                    s.verification_code,
                    s.expires,
                    types
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn update_push_subscription(
        &self,
        id: i64,
        user: UserId,
        u: &PushSubscriptionUpdate,
    ) -> Result<bool> {
        let u = u.clone();
        self.call(move |c| {
            let tx = c.transaction()?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM push_subscription WHERE id = ?1 AND user_id = ?2")?
                .exists(params![id, user.0])?;
            if !exists {
                return Ok(false);
            }
            if let Some(v) = u.verified {
                tx.execute(
                    "UPDATE push_subscription SET verified = ?2 WHERE id = ?1",
                    params![id, v],
                )?;
            }
            if let Some(e) = u.expires {
                tx.execute(
                    "UPDATE push_subscription SET expires = ?2 WHERE id = ?1",
                    params![id, e],
                )?;
            }
            if let Some(t) = &u.types {
                let t = t
                    .as_ref()
                    .map(|t| serde_json::to_string(t).map_err(|e| Error::Corrupt(e.to_string())))
                    .transpose()?;
                tx.execute(
                    "UPDATE push_subscription SET types = ?2 WHERE id = ?1",
                    params![id, t],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn delete_push_subscription(&self, id: i64, user: Option<UserId>) -> Result<bool> {
        self.call(move |c| {
            Ok(c.execute(
                "DELETE FROM push_subscription WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
                params![id, user.map(|u| u.0)],
            )? > 0)
        })
        .await
    }
    async fn emails_by_message_id(
        &self,
        account: AccountId,
        message_id: &str,
    ) -> Result<Vec<EmailId>> {
        let m = message_id.to_string();
        self.call(move |c| mdn::emails_by_message_id(c, account, &m))
            .await
    }
}
