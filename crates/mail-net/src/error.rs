//! What can go wrong below a protocol: the network or TLS. Each protocol crate turns these
//! into its own error's `Io` and `Tls` (same words, so messages do not change).

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network: {0}")]
    Io(#[source] io::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
