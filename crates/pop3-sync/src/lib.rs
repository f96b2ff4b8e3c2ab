//! POP3 for Tidings: a client session and the one-way retrieval of a maildrop into the
//! store.
//!
//! # Layout
//! - `client`: connection (implicit TLS, STLS per RFC 2595, plain), greeting, CAPA
//!   (RFC 2449), AUTH PLAIN (RFC 5034) or USER/PASS, STAT, UIDL, LIST, RETR, DELE, QUIT
//!   (RFC 1939), with bounded lines, bounded messages and a timeout on every read.
//! - `sync`: [`sync_pop3`], retrieval by UIDL into the account's INBOX, leave-on-server by
//!   default, optional delete-after-N-days.
//! - `error`: typed errors with [`Error::is_transient`].
//!
//! Why hand-written: no well-kept async POP3 crate exists (the ones on crates.io are
//! blocking, unmaintained, or lack STLS and bounds), and POP3 is small enough that the
//! whole protocol fits in one file.
//!
//! # Semantics
//! POP3 is one-way retrieval. Messages are copied into the INBOX and identified by UIDL;
//! messages deleted on the server by someone else stay in the local store, and nothing
//! done locally goes back to the server. Mail is left on the server unless
//! [`Pop3Options::delete_after_days`] is set; deletions happen only at QUIT (RFC 1939 6),
//! after everything retrieved is committed.
//!
//! Passwords and message content are never logged; `Credentials`' `Debug` redacts the
//! password.

pub mod client;
pub mod error;
pub mod sync;

pub use client::{Capabilities, ListEntry, Pop3Client, Stat, UidlEntry};
pub use error::{ClosedDuring, Error, Result};
pub use mail_net::{Credentials, Endpoint, Login};
pub use sync::{Pop3Options, Pop3Report, sync_pop3, sync_pop3_login};
