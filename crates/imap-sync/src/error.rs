//! Typed errors, so the engine can tell auth, network, protocol and store failures apart.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network: {0}")]
    Io(#[source] io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server did not answer in time")]
    Timeout,
    #[error("the server said BYE: {}", crate::response::server_words(.0))]
    Bye(String),
    /// The server refused our credentials (a tagged NO to LOGIN/AUTHENTICATE).
    #[error("authentication failed: {}", crate::response::server_words(.0))]
    Auth(String),
    /// The server refused an OAuth 2.0 access token and said why (RFC 7628 3.2.2): a fresh
    /// token may work where this one did not.
    #[error("token refused ({failure}): {text}")]
    TokenRejected {
        failure: mail_net::sasl::OAuthFailure,
        text: String,
    },
    /// The server answered a command with NO or BAD.
    #[error("{command} refused by the server: {}", crate::response::server_words(.text))]
    Refused { command: String, text: String },
    /// The server broke the protocol (unparseable response, wrong state).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The server lacks something we cannot work without.
    #[error("server lacks {0}")]
    Unsupported(&'static str),
    /// A command given up before its data was sent (`Session::append_if`); the
    /// connection is closed.
    #[error("{0} abandoned before its data was sent")]
    Abandoned(&'static str),
    #[error("store: {0}")]
    Store(#[from] store::Error),
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
    /// Whether retrying later (with backoff) may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            Error::Auth(_) | Error::TokenRejected { .. } | Error::Unsupported(_)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
