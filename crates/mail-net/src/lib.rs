//! The client transport Tidings' mail protocols share: IMAP (`imap-sync`), POP3
//! (`pop3-sync`) and ManageSieve (`managesieve`) connect, secure and authenticate the same
//! way, so that is written once here and each protocol crate keeps only its own framing.
//!
//! # Layout
//! - `net`: [`Endpoint`], TCP connect with keepalive, the TLS client config (system roots
//!   plus a private CA, cached per CA file) and handshake, the plain-or-TLS [`Stream`].
//! - `login`: [`Credentials`] and [`Login`] (password or OAuth 2.0 token), never shown in
//!   `Debug`.
//! - `sasl`: the SASL messages (PLAIN, OAUTHBEARER, XOAUTH2) and the OAuth error
//!   challenge; bytes in and out, no I/O.
//!
//! It knows no protocol's commands: STARTTLS/STLS, their refusals and when to send a SASL
//! message are the protocol crate's.

pub mod error;
pub mod login;
pub mod net;
pub mod sasl;

pub use error::{Error, Result};
pub use login::{Credentials, Login};
pub use net::{
    CONNECT_TIMEOUT, Endpoint, Stream, open, set_keepalive, tls_config, tls_handshake, tls_wrap,
};
