//! IMAP for Tidings: a pipelining client session and the mailbox sync built on it.
//!
//! # Layout
//! - `conn`: response framing with literals, tags, limits, over `mail-net`'s socket (plain,
//!   TLS, STARTTLS upgrade).
//! - `response`: owned views of `imap-proto` parses; recovery from unparseable frames.
//! - `session`: login, capabilities, LIST, EXAMINE with CONDSTORE/QRESYNC, FETCH pipelines,
//!   IDLE, NOTIFY.
//! - `sync`: one account's mailboxes brought in step with the server, into a `Store`.
//! - `mutf7`: modified UTF-7 mailbox names.
//! - `profile`: provider profiles (iCloud, Outlook, Yahoo, Gmail): what to trust, as data.
//! - `quota`: GETQUOTAROOT / GETQUOTA (RFC 9208), parsed here, stored for JMAP Quota.
//!
//! Why not `async-imap`: it runs one command at a time (no pipelining, which the initial sync
//! needs to keep the link busy), and has no QRESYNC SELECT or NOTIFY. We keep its parser,
//! `imap-proto`, and write only the framing and command flow.

pub mod conn;
pub mod error;
pub mod mutf7;
pub mod profile;
// JMAP Quota (RFC 9425) from IMAP QUOTA (RFC 9208).
pub mod quota;
pub mod response;
pub mod session;
pub mod sync;
// --- write-back: the outbox's IMAP commands ---
pub mod write;

pub use error::{Error, Result};
// The transport is `mail-net`'s, shared with POP3 and ManageSieve; re-exported so an IMAP
// user needs no second import.
pub use mail_net::{Credentials, Endpoint, Login};
pub use profile::{Profile, Provider, ProviderChoice};
pub use session::Session;
