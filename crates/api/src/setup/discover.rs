//! Finding an address's server settings, most trusted source first: the built-in table of
//! the big providers, then DNS SRV records (RFC 6186), then the provider's autoconfig
//! document (Thunderbird's `config-v1.1.xml`), then the usual host names.
//!
//! Settings from DNS or a document that name servers outside the address's domain are
//! returned flagged `foreign`: anyone who can answer for the domain (or spoof unsigned
//! DNS, RFC 6186 6) could send the password elsewhere, so the user confirms first.

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
    /// No network but what is configured above: no system DNS, no autoconfig fetched from
    /// the domain, no probes of guessed hosts (tests).
    pub offline: bool,
}

/// How long a guessed host gets to accept a TCP connection.
const GUESS_CONNECT: Duration = Duration::from_secs(3);
/// Bound on the SRV lookups together.
const SRV_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one autoconfig fetch.
const AUTOCONFIG_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest autoconfig document read; real ones are a few KB.
pub const AUTOCONFIG_MAX: usize = 64 * 1024;

/// Settings for `email`, or `None` when it is not an address.
pub async fn discover(opts: &DiscoveryOptions, email: &str) -> Option<Found> {
    let domain = email_domain(email)?;
    if let Some(p) = providers::lookup(&domain) {
        return Some(providers::found(p, email));
    }
    if (opts.dns_server.is_some() || !opts.offline)
        && let Ok(Some(found)) = tokio::time::timeout(SRV_TIMEOUT, srv(opts, &domain, email)).await
    {
        return Some(found);
    }
    if (opts.autoconfig_base.is_some() || !opts.offline)
        && let Some(found) = autoconfig(opts, &domain, email).await
    {
        return Some(found);
    }
    Some(guess(opts, &domain, email).await)
}

/// Whether `host` is the domain or under it.
fn within(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == domain || host.ends_with(&format!(".{domain}"))
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

// --- RFC 6186 SRV records -------------------------------------------------------------------

fn resolver(
    opts: &DiscoveryOptions,
) -> Option<hickory_resolver::Resolver<hickory_resolver::name_server::TokioConnectionProvider>> {
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
    use hickory_resolver::name_server::TokioConnectionProvider;
    let mut ropts = ResolverOpts::default();
    ropts.timeout = Duration::from_secs(2);
    ropts.attempts = 2;
    let builder = match opts.dns_server {
        Some(addr) => hickory_resolver::Resolver::builder_with_config(
            ResolverConfig::from_parts(
                None,
                vec![],
                NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true),
            ),
            TokioConnectionProvider::default(),
        ),
        None => hickory_resolver::Resolver::builder_tokio().ok()?,
    };
    Some(builder.with_options(ropts).build())
}

/// The best target of one service: RFC 2782's lowest priority, then highest weight; `.`
/// means the service is deliberately not offered (RFC 6186 3.4).
async fn srv_one(
    r: &hickory_resolver::Resolver<hickory_resolver::name_server::TokioConnectionProvider>,
    service: &str,
    domain: &str,
    security: Security,
) -> Option<Server> {
    let name = format!("{service}._tcp.{domain}.");
    let lookup = r.srv_lookup(name).await.ok()?;
    let best = lookup
        .iter()
        .min_by_key(|s| (s.priority(), u32::MAX - u32::from(s.weight())))?;
    let host = best.target().to_ascii();
    let host = host.trim_end_matches('.');
    if host.is_empty() || best.port() == 0 || !valid_host(host) {
        return None;
    }
    Some(Server {
        host: host.to_ascii_lowercase(),
        port: best.port(),
        security,
    })
}

async fn srv(opts: &DiscoveryOptions, domain: &str, email: &str) -> Option<Found> {
    let r = resolver(opts)?;
    // RFC 8314 5.1: implicit TLS is preferred to STARTTLS where both are offered.
    let (imaps, imap, pop3s, submissions, submission) = tokio::join!(
        srv_one(&r, "_imaps", domain, Security::Tls),
        srv_one(&r, "_imap", domain, Security::Starttls),
        srv_one(&r, "_pop3s", domain, Security::Tls),
        srv_one(&r, "_submissions", domain, Security::Tls),
        srv_one(&r, "_submission", domain, Security::Starttls),
    );
    let (kind, incoming) = match (imaps.or(imap), pop3s) {
        (Some(i), _) => (AccountKind::Imap, i),
        (None, Some(p)) => (AccountKind::Pop3, p),
        (None, None) => return None,
    };
    let smtp = submissions.or(submission);
    let foreign =
        !within(&incoming.host, domain) || smtp.as_ref().is_some_and(|s| !within(&s.host, domain));
    Some(Found {
        source: Source::Srv,
        provider: None,
        settings: Settings {
            kind,
            incoming,
            smtp,
            // RFC 6186 4: the user name is the address.
            username: email.to_string(),
        },
        oauth: None,
        app_password: false,
        foreign,
    })
}

// --- autoconfig (Thunderbird's config-v1.1.xml) ----------------------------------------------

/// The document's URLs, in the order Thunderbird asks them.
fn autoconfig_urls(opts: &DiscoveryOptions, domain: &str, email: &str) -> Vec<String> {
    let q = super::oauth::url_encode(email);
    match &opts.autoconfig_base {
        Some(base) => {
            let base = base.trim_end_matches('/');
            vec![
                format!("{base}/mail/config-v1.1.xml?emailaddress={q}"),
                format!("{base}/.well-known/autoconfig/mail/config-v1.1.xml"),
            ]
        }
        None => vec![
            format!("https://autoconfig.{domain}/mail/config-v1.1.xml?emailaddress={q}"),
            format!("https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml"),
        ],
    }
}

/// A document at `url`, at most [`AUTOCONFIG_MAX`] bytes, or nothing.
async fn fetch(client: &reqwest::Client, url: &str) -> Option<Vec<u8>> {
    let mut resp = client.get(url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    if resp
        .content_length()
        .is_some_and(|n| n > AUTOCONFIG_MAX as u64)
    {
        return None;
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.ok()? {
        if out.len() + chunk.len() > AUTOCONFIG_MAX {
            return None;
        }
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

async fn autoconfig(opts: &DiscoveryOptions, domain: &str, email: &str) -> Option<Found> {
    let client = reqwest::Client::builder()
        .timeout(AUTOCONFIG_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        // A redirect could lead anywhere, http included; the document must be where asked.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()?;
    for url in autoconfig_urls(opts, domain, email) {
        if let Some(doc) = fetch(&client, &url).await {
            match parse_autoconfig(&doc, domain, email) {
                Ok(found) => return Some(found),
                Err(why) => {
                    tracing::info!(domain = %domain, why = %why, "autoconfig document not used")
                }
            }
        }
    }
    None
}

/// Reads a `config-v1.1.xml`. No DTD is accepted (so no entity expansion: a "billion
/// laughs" document is refused), the node count is bounded, and only IMAP or POP3 plus
/// SMTP servers with valid names and ports are taken.
pub fn parse_autoconfig(doc: &[u8], domain: &str, email: &str) -> Result<Found, String> {
    if doc.len() > AUTOCONFIG_MAX {
        return Err("the document is too large".into());
    }
    let text = std::str::from_utf8(doc).map_err(|_| "the document is not UTF-8".to_string())?;
    let xml = roxmltree::Document::parse_with_options(
        text,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            nodes_limit: 10_000,
        },
    )
    .map_err(|e| format!("not a usable XML document: {e}"))?;
    let root = xml.root_element();
    if root.tag_name().name() != "clientConfig" {
        return Err("not a clientConfig document".into());
    }
    let provider = root
        .children()
        .find(|n| n.has_tag_name("emailProvider"))
        .ok_or("no emailProvider")?;
    let local = email.rsplit_once('@').map(|(l, _)| l).unwrap_or(email);
    let expand = |s: &str| {
        s.replace("%EMAILADDRESS%", email)
            .replace("%EMAILLOCALPART%", local)
            .replace("%EMAILDOMAIN%", domain)
    };
    let child_text = |n: roxmltree::Node, name: &str| {
        n.children()
            .find(|c| c.has_tag_name(name))
            .and_then(|c| c.text())
            .map(|t| t.trim().to_string())
    };
    let server = |n: roxmltree::Node| -> Option<(Server, String)> {
        let host = expand(&child_text(n, "hostname")?).to_ascii_lowercase();
        let port: u16 = child_text(n, "port")?.parse().ok()?;
        let security = match child_text(n, "socketType")?.as_str() {
            "SSL" | "TLS" => Security::Tls,
            "STARTTLS" => Security::Starttls,
            "plain" => Security::None,
            _ => return None,
        };
        if !valid_host(&host) || port == 0 {
            return None;
        }
        let username = child_text(n, "username")
            .map(|u| expand(&u))
            .unwrap_or_else(|| email.to_string());
        Some((
            Server {
                host,
                port,
                security,
            },
            username,
        ))
    };
    let incoming_of = |kind: &str| {
        let mut all: Vec<(Server, String)> = provider
            .children()
            .filter(|n| n.has_tag_name("incomingServer") && n.attribute("type") == Some(kind))
            .filter_map(server)
            .collect();
        // Encrypted first, implicit TLS before STARTTLS (RFC 8314 5.1).
        all.sort_by_key(|(s, _)| match s.security {
            Security::Tls => 0,
            Security::Starttls => 1,
            Security::None => 2,
        });
        all.into_iter().next()
    };
    let (kind, (incoming, username)) = match (incoming_of("imap"), incoming_of("pop3")) {
        (Some(i), _) => (AccountKind::Imap, i),
        (None, Some(p)) => (AccountKind::Pop3, p),
        (None, None) => return Err("no usable IMAP or POP3 server".into()),
    };
    let mut smtp: Vec<Server> = provider
        .children()
        .filter(|n| n.has_tag_name("outgoingServer") && n.attribute("type") == Some("smtp"))
        .filter_map(server)
        .map(|(s, _)| s)
        .collect();
    smtp.sort_by_key(|s| match s.security {
        Security::Tls => 0,
        Security::Starttls => 1,
        Security::None => 2,
    });
    let smtp = smtp.into_iter().next();
    let foreign =
        !within(&incoming.host, domain) || smtp.as_ref().is_some_and(|s| !within(&s.host, domain));
    let name = provider
        .children()
        .find(|c| c.has_tag_name("displayName"))
        .and_then(|c| c.text())
        .map(|t| t.trim().chars().take(80).collect::<String>());
    Ok(Found {
        source: Source::Autoconfig,
        provider: name,
        settings: Settings {
            kind,
            incoming,
            smtp,
            username,
        },
        oauth: None,
        app_password: false,
        foreign,
    })
}

// --- guesses ----------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.net">
    <domain>example.net</domain>
    <displayName>Example Mail</displayName>
    <incomingServer type="pop3">
      <hostname>pop.example.net</hostname><port>995</port><socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>imap.example.net</hostname><port>143</port><socketType>STARTTLS</socketType>
      <username>%EMAILLOCALPART%</username>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>imap.example.net</hostname><port>993</port><socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.net</hostname><port>587</port><socketType>STARTTLS</socketType>
    </outgoingServer>
  </emailProvider>
</clientConfig>"#;

    #[test]
    fn a_thunderbird_document_is_read() {
        let f = parse_autoconfig(DOC.as_bytes(), "example.net", "jo@example.net").unwrap();
        assert_eq!(f.settings.kind, AccountKind::Imap);
        assert_eq!(f.settings.incoming.port, 993);
        assert_eq!(f.settings.incoming.security, Security::Tls);
        assert_eq!(f.settings.username, "jo");
        assert_eq!(f.settings.smtp.as_ref().map(|s| s.port), Some(587));
        assert_eq!(f.provider.as_deref(), Some("Example Mail"));
        assert!(!f.foreign);
        // The same document for another domain's address names foreign servers.
        let f = parse_autoconfig(DOC.as_bytes(), "example.org", "jo@example.org").unwrap();
        assert!(f.foreign);
    }

    #[test]
    fn hostile_documents_are_refused() {
        let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<clientConfig><emailProvider><incomingServer type="imap"><hostname>&lol2;</hostname>
<port>993</port><socketType>SSL</socketType></incomingServer></emailProvider></clientConfig>"#;
        assert!(parse_autoconfig(laughs.as_bytes(), "example.net", "a@example.net").is_err());
        assert!(parse_autoconfig(b"not xml at all", "example.net", "a@example.net").is_err());
        let huge = format!(
            "<clientConfig>{}</clientConfig>",
            " ".repeat(AUTOCONFIG_MAX)
        );
        assert!(parse_autoconfig(huge.as_bytes(), "example.net", "a@example.net").is_err());
        let bad_host = DOC.replace("imap.example.net", "imap.example.net;rm -rf");
        let f = parse_autoconfig(bad_host.as_bytes(), "example.net", "a@example.net").unwrap();
        // The IMAP entries with a bad name are skipped; the POP3 one is what is left.
        assert_eq!(f.settings.kind, AccountKind::Pop3);
    }
}
