//! The storage layer: what the sync, the engine and the JMAP server keep, as small role
//! traits, and their backends: SQLite (the embedded default) and PostgreSQL (begun, role
//! by role). This is the only crate that speaks SQL.
//!
//! # Roles
//! Each caller depends on the roles it uses, not on the whole store; a backend implements
//! them one at a time (SQLite: one `sqlite/<role>.rs` each). [`Store`] is their union, for
//! the server and the CLI that hold everything; `Arc<dyn Store>` upcasts to any role.
//! - [`Directory`] (`directory`): users, API tokens, web sessions, accounts. The HTTP
//!   layer (authentication), the CLI, the engine's scheduler.
//! - [`MailSync`] (`mailsync`): mailbox list, server change batches, stored UIDs, missing
//!   bodies, POP3 UIDLs. `pop3-sync`, the engine's body fetches; `imap-sync` holds a
//!   [`SyncStore`]: this with [`BodyPolicy`] and [`Quotas`].
//! - [`Reading`] (`reading`): views, queries, threads, search, the change log, blobs. The
//!   JMAP methods; the engine's lookups of stored mail.
//! - [`Outbox`] (`outbox`): the user's optimistic writes and the write-back queue. JMAP
//!   set methods write, the engine's outbox worker replays.
//! - [`Submissions`] (`submission`): identities and the submission queue. JMAP
//!   Identity/EmailSubmission, the engine's submission worker.
//! - [`Push`] (`push`): the event bus, changed types, push subscriptions. The push hub.
//! - [`Uploads`] (`uploads`): JMAP blob uploads. The HTTP upload and Email/import.
//! - [`SieveState`] (`sieve`): ManageSieve settings, script ids and snapshots. The engine's
//!   Sieve probe and JMAP SieveScript.
//! - [`BodyPolicy`] (`policy`): body policy and the download budget. `imap-sync`, the
//!   engine, the CLI.
//! - [`Quotas`] (`quota`): JMAP Quota from IMAP QUOTA. `imap-sync` writes, JMAP reads.
//! - [`Leases`] (`leases`): which node works on an account, with a fencing epoch. The
//!   engine's scheduler when several nodes share a PostgreSQL store.
//!
//! `use store::prelude::*;` brings every role into scope.
//!
//! # Layout
//! - `model`: the records going in and out (accounts, mailboxes, messages, changes).
//! - `sqlite`: the embedded default backend (`SqliteStore`), schema in `sqlite/schema.sql`.
//! - `postgres`: the PostgreSQL backend (`PgStore`), begun role by role (Directory,
//!   Uploads, BodyPolicy, SieveState, Quotas, MailSync, Reading so far), schema in `postgres/schema.sql`
//!   and `postgres/mail.sql`.
//! - `blobs`: raw messages as content-addressed files.
//! - `migrate`: moving up, a SQLite store copied into an empty PostgreSQL database
//!   (`sqlite/export.rs` reads, `postgres/import.rs` writes, row batches between them).
//! - `fulltext`: the words both backends' full-text indexes hold, cut the same way.
//! - `events`: the event bus push listens to; the write path publishes after commit.
//! - `wake`: the "work queued" signals of the engine's workers (an account's outbox, the
//!   submission queue), rung after the commit that queued the work.
//!
//! Every method that changes an account's data bumps that account's `State` once, and
//! records each changed object in the change log, in the same transaction as the data.

mod blobs;
pub mod directory;
pub mod events;
mod fulltext;
pub mod leases;
mod mailrows;
pub mod mailsync;
pub mod migrate;
pub mod model;
pub mod outbox;
pub mod policy;
mod postgres;
pub mod push;
pub mod quota;
pub mod reading;
pub mod sieve;
mod sqlite;
pub mod submission;
pub mod subscriptions;
pub mod uploads;
pub mod wake;

pub use directory::Directory;
pub use leases::{Fencing, Lease, Leases};
pub use mailsync::{MailSync, SyncStore};
pub use model::*;
pub use outbox::*;
pub use policy::BodyPolicy;
pub use postgres::PgStore;
pub use push::Push;
pub use quota::{QuotaRecord, QuotaResource, QuotaValue, Quotas};
pub use reading::Reading;
pub use sieve::SieveState;
pub use sqlite::SqliteStore;
pub use submission::*;
pub use uploads::Uploads;

/// Every role trait, for `use store::prelude::*;` (a role's methods are callable only with
/// the trait in scope, also on `dyn Store`).
pub mod prelude {
    pub use crate::{
        BodyPolicy, Directory, Fencing, Leases, MailSync, Outbox, Push, Quotas, Reading,
        SieveState, Store, Submissions, SyncStore, Uploads,
    };
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend failed (SQLite's or PostgreSQL's error, kept whole for its source
    /// chain). Callers see no backend type: both backends report through this variant.
    #[error("database: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store task failed: {0}")]
    Task(String),
    /// An operation that would lose or mix data, refused before it changed anything
    /// (`migrate`: a store in use, a database that is not empty).
    #[error("refused: {0}")]
    Refused(String),
    /// A write made under an account lease that is no longer held (it expired, or another
    /// node took the account with a higher epoch): nothing was written.
    #[error("account {account}: lease epoch {epoch} is no longer held")]
    Fenced {
        account: mail_types::AccountId,
        epoch: i64,
    },
    /// A batch of server changes made for UIDs of another UIDVALIDITY than the mailbox's
    /// stored one: its UIDs name other messages (RFC 3501 2.3.1.1). The sync resets the
    /// mailbox first; a batch from before a reset is refused, not applied.
    #[error("UIDVALIDITY {} given for mailbox {mailbox} stored with {}", given.0, stored.0)]
    UidValidityChanged {
        mailbox: mail_types::MailboxId,
        stored: mail_types::UidValidity,
        given: mail_types::UidValidity,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The whole store: every role. What the server and the CLI hold; a part that needs less
/// takes the role(s) it uses (`Arc<dyn Store>` upcasts to `Arc<dyn MailSync>` and so on).
pub trait Store:
    Directory
    + SyncStore
    + MailSync
    + Reading
    + Outbox
    + Submissions
    + Push
    + Uploads
    + SieveState
    + BodyPolicy
    + Quotas
    + Leases
    + Fencing
{
}

impl<T> Store for T where
    T: Directory
        + MailSync
        + Reading
        + Outbox
        + Submissions
        + Push
        + Uploads
        + SieveState
        + BodyPolicy
        + Quotas
        + Leases
        + Fencing
{
}
