//! Test support for Tidings: a private Dovecot on loopback ports
//! ([`Dovecot`]), a private PostgreSQL ([`Postgres`]), a deterministic
//! sample-mail generator ([`corpus`]) and a tiny independent IMAP client
//! ([`imap_client`]) that tests use to change the server behind the
//! engine's back.
//!
//! Nothing here installs software: Dovecot (`dovecot`, `doveadm`) must be on
//! the machine (Debian: dovecot-imapd, dovecot-pop3d, dovecot-lmtpd), and
//! PostgreSQL for [`Postgres`] (Debian: postgresql).
//!
//! Works as root and as an ordinary user. As root, Dovecot's helper
//! processes run as the Debian users `dovecot`/`dovenull` and mail is owned
//! by `nobody` (Dovecot refuses mail access as root), so a caller-supplied
//! state directory must be reachable by `nobody`. As a normal user every
//! process and file belongs to that user.
//!
//! ```no_run
//! use testkit::{Dovecot, DovecotOptions, corpus};
//! let d = Dovecot::start(DovecotOptions::default())?;
//! d.add_user("alice@example.org", "secret")?;
//! d.deliver("alice@example.org", &corpus::message("bob@example.com", "alice@example.org", "Hi", "Hello"))?;
//! d.seed_corpus("alice@example.org", &corpus::generate(1, 100, &["INBOX", "Archive"]))?;
//! # anyhow::Ok(())
//! ```

pub mod corpus;
mod dovecot;
pub mod gmail;
pub mod imap_client;
mod mutf7;
pub mod oidc;
mod postgres;
pub mod smtp;

pub use dovecot::{
    Dovecot, DovecotOAuth2, DovecotOptions, OTHER_LOOPBACK, SeedMessage, raise_nofile,
    raise_os_limits,
};
pub use mutf7::encode as mutf7_encode;
pub use postgres::Postgres;
pub use smtp::Smtp;
