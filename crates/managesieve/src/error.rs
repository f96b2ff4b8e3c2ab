//! Typed errors: network, TLS, timeouts, protocol violations and the server's NO.

use crate::parse::{Code, ParseError};
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network: {0}")]
    Io(#[from] io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server did not answer in time ({0})")]
    Timeout(&'static str),
    #[error("the server closed the connection")]
    Closed,
    /// The server sent something this client cannot read, or too much of it.
    #[error("protocol violation: {0}")]
    Protocol(#[from] ParseError),
    /// The server answered a command with NO (RFC 5804 1.3), with its response code and
    /// human-readable words (for CHECKSCRIPT/PUTSCRIPT, the script's errors).
    #[error("{command} refused: {text}")]
    No {
        command: &'static str,
        code: Option<Code>,
        text: String,
    },
    /// The server said BYE (RFC 5804 1.3): it closes the connection.
    #[error("the server said BYE: {text}")]
    Bye { code: Option<Code>, text: String },
    /// The server refused the credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The server does not offer what is needed (STARTTLS, a SASL mechanism).
    #[error("server lacks {0}")]
    Unsupported(&'static str),
    /// A script or name this client will not send (control characters, too large).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
}

impl From<mail_net::Error> for Error {
    fn from(e: mail_net::Error) -> Error {
        match e {
            mail_net::Error::Io(e) => Error::Io(e),
            mail_net::Error::Tls(s) => Error::Tls(s),
        }
    }
}

impl Error {
    /// The response code of a NO or BYE (e.g. `NONEXISTENT`, `ACTIVE`, `QUOTA/MAXSIZE`),
    /// upper case.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::No { code, .. } | Error::Bye { code, .. } => code.as_ref().map(|c| c.name()),
            _ => None,
        }
    }

    /// Whether the code is `name` or one of its sub-codes (`QUOTA` matches `QUOTA/MAXSIZE`).
    pub fn has_code(&self, name: &str) -> bool {
        self.code().is_some_and(|c| {
            c.eq_ignore_ascii_case(name)
                || c.len() > name.len()
                    && c.as_bytes()[name.len()] == b'/'
                    && c[..name.len()].eq_ignore_ascii_case(name)
        })
    }

    /// Whether a later try may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Timeout(_) | Error::Closed)
            || self.has_code("TRYLATER")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
