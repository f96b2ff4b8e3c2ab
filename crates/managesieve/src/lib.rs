//! A ManageSieve client (RFC 5804): the protocol that lists, uploads, checks, activates,
//! renames and deletes a user's Sieve scripts on the mail server.
//!
//! # Layout
//!
//! - `parse`: a sans-I/O decoder of server lines (atoms, quoted strings, literals,
//!   response codes) that says `Ok(None)` when it needs more bytes and refuses what is
//!   too large before allocating for it.
//! - `client`: the connection (plain, implicit TLS or STARTTLS over rustls), the greeting
//!   and CAPABILITY, SASL (PLAIN, XOAUTH2, OAUTHBEARER) and one method per command, every
//!   read under a timeout.
//! - `error`: what went wrong, typed, with the server's response code and words when it
//!   said NO.

mod client;
mod error;
pub mod parse;

pub use client::{Auth, Capabilities, Client, Config, ScriptInfo};
pub use error::{Error, Result};
pub use parse::{Code, Limits, Response, Status};

/// RFC 5804 1.8: the port registered for ManageSieve.
pub const DEFAULT_PORT: u16 = 4190;
