//! Typed errors, so the engine can tell auth, network, protocol and store failures apart
//! (the same split as the IMAP side's error).

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network: {0}")]
    Io(#[source] io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    /// The server closed the connection, possibly in the middle of a response.
    #[error("the server closed the connection{0}")]
    Closed(ClosedDuring),
    #[error("the server did not answer in time")]
    Timeout,
    /// The server refused our credentials (`-ERR` to AUTH, USER or PASS).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The server refused an OAuth 2.0 access token and said why (RFC 7628 3.2.2).
    #[error("token refused ({failure}): {text}")]
    TokenRejected {
        failure: mail_net::sasl::OAuthFailure,
        text: String,
    },
    /// The server answered a command with `-ERR`.
    #[error("{command} refused by the server: {text}")]
    Refused { command: &'static str, text: String },
    /// The server broke the protocol (garbage, overlong lines, oversized message).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The server lacks something we cannot work without (`STLS`, `UIDL`).
    #[error("server lacks {0}")]
    Unsupported(&'static str),
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// A background task (message parsing) failed.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl From<mail_net::Error> for Error {
    fn from(e: mail_net::Error) -> Error {
        match e {
            mail_net::Error::Io(e) => Error::Io(e),
            mail_net::Error::Tls(s) => Error::Tls(s),
        }
    }
}

/// Where a connection was lost, for a clearer message than "closed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedDuring {
    /// Between responses.
    Idle,
    /// In the middle of a multi-line response (RFC 1939 3): the data is incomplete.
    MultiLine(&'static str),
}

impl std::fmt::Display for ClosedDuring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClosedDuring::Idle => Ok(()),
            ClosedDuring::MultiLine(cmd) => write!(f, " in the middle of the {cmd} response"),
        }
    }
}

impl Error {
    /// Whether retrying later (with backoff) may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            Error::Auth(_) | Error::TokenRejected { .. } | Error::Unsupported(_)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
