//! The PostgreSQL backend, begun role by role (docs/design/postgres.md): so far
//! [`Directory`], [`MailSync`], [`Uploads`], [`BodyPolicy`], [`SieveState`], [`Quotas`],
//! [`Outbox`], [`crate::Leases`] and [`crate::Reading`] (`reading.rs`), with the bus across
//! nodes (`bus.rs`, [`PgStore::events`]), which also wakes each node's workers for work
//! queued on any node. [`Push`] (`push.rs`): that bus, the change log's types, push
//! subscriptions. [`Submissions`] (`submission.rs`): identities and the send queue, each
//! attempt begun once across nodes and under the account's lease.
//! `import.rs`: the writing side of `tidings migrate` (`crate::migrate`), a SQLite
//! store's rows into an empty database.
//!
//! `tokio-postgres` with a `deadpool-postgres` pool (ARCHITECTURE.md says why): every
//! call takes a pooled connection, runs its statements (prepared once per connection and
//! cached) and gives it back; PostgreSQL's MVCC lets any number of them run at once.

mod bus;
mod changelog;
mod directory;
pub(crate) mod import;
mod leases;
mod mailsync;
mod migrate;
mod outbox;
mod policy;
mod push;
mod quota;
mod reading;
mod sieve;
mod submission;
mod uploads;

use crate::prelude::*;
use crate::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::sync::Arc;

/// SQL condition: blob `blob.id` is needed by nothing, so its row may go. The SQLite
/// backend's `BLOB_UNREFERENCED` for the tables this schema has so far: each table that
/// comes to reference blobs (Emails, queued APPENDs, submissions) adds its clause here.
/// A queued APPEND names its blob in a column of its own (`outbox.blob_id`).
const BLOB_UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM upload WHERE upload.blob_id = blob.id) \
     AND NOT EXISTS (SELECT 1 FROM email WHERE email.blob_id = blob.id) \
     AND NOT EXISTS (SELECT 1 FROM submission WHERE submission.blob_id = blob.id) \
     AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.blob_id = blob.id)";

/// How many connections one store opens at most.
const POOL_SIZE: usize = 16;
/// How long opening a connection to the database may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a call waits for one of the pool's connections to be free (each is busy for
/// milliseconds; this long means the database has stopped answering).
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
/// Connections of the lease beat's own pool (leases.rs), beside [`POOL_SIZE`].
const BEAT_POOL_SIZE: usize = 2;

/// A pool of at most `size` connections to `config`. Waiting for a connection, opening
/// one and checking one given back are bounded: with the database gone a call is
/// answered with an error.
fn new_pool(config: &tokio_postgres::Config, size: usize) -> Result<Pool> {
    let manager = Manager::from_config(
        config.clone(),
        tokio_postgres::NoTls,
        ManagerConfig {
            // A connection given back is checked with no round trip; one that broke
            // fails its next statement and is dropped by the pool.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| Error::Backend(Box::new(e)))
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own words and SQLSTATE: tokio-postgres displays only "db error".
        match e.as_db_error() {
            Some(db) => {
                Error::Backend(format!("{} (SQLSTATE {})", db.message(), db.code().code()).into())
            }
            None => Error::Backend(Box::new(e)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Backend(Box::new(e))
    }
}

/// The store on a PostgreSQL database. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// The heartbeat's and the leases' statements: their own connections, so that a
    /// renewal never queues behind the sync's transactions for a connection of `pool`
    /// (a node busy syncing lost its own leases that way under load).
    beat: Pool,
    bus: Arc<bus::PgBus>,
    /// The lease this handle's writes are made under (`PgStore::fenced`); none for a
    /// handle that writes for no particular account.
    fence: Option<Arc<leases::Fence>>,
    /// This node's workers, woken for work queued on any node (bus.rs).
    work: Arc<crate::wake::WorkSignals>,
    /// Per account, the mailbox epoch (`MailSync::mailbox_epoch`, outbox.rs moves it).
    /// In this node's memory only, and enough: the sync that reads it and the outbox
    /// replay that confirms a mailbox change both run on the node holding the account's
    /// lease, and a change queued through another node keeps the list from being applied
    /// while it is pending (`mailbox_ops_pending`).
    mailbox_epochs: Arc<std::sync::Mutex<std::collections::HashMap<i64, u64>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only the pool's figures.
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/database`, libpq's URL form) and
    /// brings its schema to this build's version; several nodes may do so at once.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| Error::Backend(Box::new(e)))?;
        // No parallel plans: each statement reads a page or writes a batch, and starting
        // workers costs more than that (a rare word's first page at 100,000 messages:
        // 25 ms with the text tables scanned by workers, 5 ms without).
        // A statement, or a transaction left idle (a node frozen in the middle of one,
        // holding an account's row lock), ends after a minute instead of holding up every
        // other node's writes to that account.
        let options = format!(
            "{} -c max_parallel_workers_per_gather=0 -c statement_timeout=60s \
             -c idle_in_transaction_session_timeout=60s",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim_start());
        // A server that does not answer is an error after a while, not a request held
        // open for good: the connect is bounded, and keepalives find a dead peer.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(30));
        let pool = new_pool(&config, POOL_SIZE)?;
        let beat = new_pool(&config, BEAT_POOL_SIZE)?;
        let mut client = pool.get().await?;
        migrate::run(&mut client).await?;
        drop(client);
        let work = Arc::new(crate::wake::WorkSignals::default());
        let bus = Arc::new(bus::PgBus::start(&config, pool.clone(), work.clone()).await?);
        Ok(PgStore {
            pool,
            beat,
            bus,
            fence: None,
            work,
            mailbox_epochs: Arc::default(),
        })
    }

    /// This node's bus: every change committed on any node of the database, in commit
    /// order per account (bus.rs).
    pub fn events(&self) -> Arc<dyn crate::events::EventBus> {
        self.bus.clone()
    }

    /// A pooled connection.
    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    /// A connection of the lease beat's pool.
    async fn beat_client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.beat.get().await?)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A count or size the API holds as `u64`, in a BIGINT column.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
