//! Trying settings before they are saved: log in to the incoming server (IMAP, or POP3)
//! and to the submission server with the user's credentials, and turn what went wrong into
//! one of a few failures a person can act on.

use super::{Server, Settings};
use mail_types::AccountKind;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Bound on one try of one server: connect, TLS, greeting, login, one command.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong, in the terms the user must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// The server refused the user name or password.
    WrongPassword,
    /// The provider wants an app password (or an OAuth2 sign-in), not the account's own.
    AppPassword,
    /// The credentials are right but IMAP (or POP3) is turned off for the account.
    ImapDisabled,
    /// The server's certificate is not trusted: name mismatch, self-signed, expired.
    Tls,
    /// No connection: the name does not resolve, the port is closed, no answer in time.
    Unreachable,
    /// Anything else the server said.
    Refused,
}

/// A failed try: which server, what kind, and a sentence for the user.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// `imap`, `pop3` or `smtp`.
    pub server: &'static str,
    pub kind: FailureKind,
    pub message: String,
}

/// The secret a try logs in with.
#[derive(Clone)]
pub enum Secret {
    Password(String),
    /// An OAuth 2.0 access token (XOAUTH2 / OAUTHBEARER).
    AccessToken(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Tries the incoming server, then (when there is one) the submission server.
pub async fn try_settings(
    settings: &Settings,
    secret: &Secret,
    ca_file: Option<&PathBuf>,
) -> Result<(), Failure> {
    match settings.kind {
        AccountKind::Imap => try_imap(settings, secret, ca_file).await?,
        AccountKind::Pop3 => try_pop3(settings, secret, ca_file).await?,
    }
    if let Some(smtp) = &settings.smtp {
        try_smtp(smtp, &settings.username, secret, ca_file).await?;
    }
    Ok(())
}

fn endpoint(s: &Server, ca_file: Option<&PathBuf>) -> imap_sync::Endpoint {
    imap_sync::Endpoint {
        host: s.host.clone(),
        port: s.port,
        security: s.security,
        ca_file: ca_file.cloned(),
    }
}

async fn try_imap(
    settings: &Settings,
    secret: &Secret,
    ca_file: Option<&PathBuf>,
) -> Result<(), Failure> {
    let ep = endpoint(&settings.incoming, ca_file);
    let login = match secret {
        Secret::Password(p) => imap_sync::Login::Password(imap_sync::Credentials {
            username: settings.username.clone(),
            password: p.clone(),
        }),
        Secret::AccessToken(t) => imap_sync::Login::OAuth2 {
            username: settings.username.clone(),
            access_token: t.clone(),
        },
    };
    let fail = |e: imap_sync::Error| imap_failure(&settings.incoming, e);
    let attempt = async {
        let mut session = imap_sync::Session::connect_login(&ep, &login)
            .await
            .map_err(fail)?;
        // Some providers accept the login and refuse everything after it when IMAP is
        // turned off for the account (Outlook: "User is authenticated but not connected"):
        // only a command on a mailbox tells.
        let examined = session.examine("INBOX", None).await;
        session.logout().await;
        examined.map(|_| ()).map_err(fail)
    };
    match tokio::time::timeout(TRY_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(unreachable("imap", &settings.incoming, "no answer in time")),
    }
}

async fn try_pop3(
    settings: &Settings,
    secret: &Secret,
    ca_file: Option<&PathBuf>,
) -> Result<(), Failure> {
    let ep = endpoint(&settings.incoming, ca_file);
    let s = &settings.incoming;
    let attempt = async {
        let client = match secret {
            Secret::Password(p) => {
                pop3_sync::Pop3Client::connect_and_login(
                    &ep,
                    &imap_sync::Credentials {
                        username: settings.username.clone(),
                        password: p.clone(),
                    },
                )
                .await
            }
            Secret::AccessToken(t) => {
                pop3_sync::Pop3Client::connect_and_login_with(
                    &ep,
                    &imap_sync::Login::OAuth2 {
                        username: settings.username.clone(),
                        access_token: t.clone(),
                    },
                )
                .await
            }
        };
        match client {
            Ok(c) => {
                let _ = c.quit().await;
                Ok(())
            }
            Err(e) => Err(pop3_failure(s, e)),
        }
    };
    match tokio::time::timeout(TRY_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(unreachable("pop3", s, "no answer in time")),
    }
}

async fn try_smtp(
    s: &Server,
    username: &str,
    secret: &Secret,
    ca_file: Option<&PathBuf>,
) -> Result<(), Failure> {
    let (password, oauth2) = match secret {
        Secret::Password(p) => (p.clone(), false),
        Secret::AccessToken(t) => (t.clone(), true),
    };
    let server = submit::Server {
        host: s.host.clone(),
        port: s.port,
        security: s.security,
        username: username.to_string(),
        password,
        oauth2,
        ca_file: ca_file.cloned(),
        hello_name: "localhost".into(),
    };
    match submit::Connection::open(&server).await {
        Ok(c) => {
            c.quit().await;
            Ok(())
        }
        Err(submit::Outcome::Refused { reply, reason, .. }) => {
            Err(smtp_failure(s, reply.as_ref(), &reason))
        }
        Err(other) => Err(Failure {
            server: "smtp",
            kind: FailureKind::Refused,
            message: format!("The submission server {} failed: {other:?}", s.host),
        }),
    }
}

/// What a server's words say, when they say something we know (the providers' wording,
/// and RFC 5530's response codes).
fn classify_words(text: &str) -> Option<FailureKind> {
    let t = text.to_ascii_lowercase();
    // Gmail and Yahoo: "[ALERT] Application-specific password required"; iCloud and
    // Gmail: "Web login required" / "[WEBALERT ...]" (sign in on the web first).
    if t.contains("application-specific password")
        || t.contains("app password")
        || t.contains("web login required")
        || t.contains("webalert")
    {
        return Some(FailureKind::AppPassword);
    }
    // Gmail: "[ALERT] Your account is not enabled for IMAP use" / "IMAP access disabled";
    // Outlook: "User is authenticated but not connected".
    if t.contains("not enabled for imap")
        || t.contains("imap access disabled")
        || t.contains("imap access is disabled")
        || t.contains("imap is disabled")
        || t.contains("authenticated but not connected")
        || t.contains("pop is disabled")
        || t.contains("not enabled for pop")
    {
        return Some(FailureKind::ImapDisabled);
    }
    // RFC 5530 3: AUTHENTICATIONFAILED (Dovecot, Gmail: "Invalid credentials").
    if t.contains("authenticationfailed")
        || t.contains("invalid credentials")
        || t.contains("authentication failed")
        || t.contains("logindisabled")
    {
        return Some(FailureKind::WrongPassword);
    }
    None
}

fn message(kind: FailureKind, server: &'static str, s: &Server, words: &str) -> String {
    let what = match server {
        "smtp" => "outgoing (SMTP)",
        "pop3" => "POP3",
        _ => "IMAP",
    };
    match kind {
        FailureKind::WrongPassword => {
            let hint = match super::providers::by_host(&s.host) {
                Some(p) if p.oauth.is_some() => format!(
                    " {} may refuse passwords here: use \"Sign in with {}\" or an app \
                     password.",
                    p.name,
                    p.oauth.unwrap_or_default()
                ),
                Some(p) if p.app_password => format!(
                    " {} needs an app password instead of your usual one.",
                    p.name
                ),
                _ => String::new(),
            };
            format!(
                "Wrong password: the {what} server {} refused the user name or password.{hint}",
                s.host
            )
        }
        FailureKind::AppPassword => format!(
            "App password needed: {} does not accept your usual password here. Create an app \
             password in your account's security settings and use it instead.",
            s.host
        ),
        FailureKind::ImapDisabled => format!(
            "{} access is turned off for this account: enable it in your mail provider's \
             settings, then try again.",
            if server == "pop3" { "POP3" } else { "IMAP" }
        ),
        FailureKind::Tls => format!(
            "TLS certificate problem: the certificate of {} cannot be trusted (its name does \
             not match, it is self-signed or it has expired): {words}",
            s.host
        ),
        FailureKind::Unreachable => format!(
            "Cannot reach the {what} server {}:{}: {words}. Check the server name and port.",
            s.host, s.port
        ),
        FailureKind::Refused => format!("The {what} server {} said: {words}", s.host),
    }
}

fn failure(kind: FailureKind, server: &'static str, s: &Server, words: &str) -> Failure {
    Failure {
        server,
        kind,
        message: message(kind, server, s, words),
    }
}

fn unreachable(server: &'static str, s: &Server, why: &str) -> Failure {
    failure(FailureKind::Unreachable, server, s, why)
}

/// A TLS failure that is about the certificate (rustls: `invalid peer certificate:
/// UnknownIssuer | NotValidForName | Expired ...`), not about reaching the server.
fn tls_words(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("certificate") || t.contains("unknownissuer") || t.contains("notvalidforname")
}

fn io_words(e: &std::io::Error) -> String {
    // rustls reports a refused certificate as an io::Error of kind InvalidData.
    let text = e.to_string();
    if tls_words(&text) {
        return text;
    }
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "no answer in time".into(),
        _ => text,
    }
}

fn imap_failure(s: &Server, e: imap_sync::Error) -> Failure {
    use imap_sync::Error as E;
    const IMAP: &str = "imap";
    match e {
        E::Auth(text) => {
            let kind = classify_words(&text).unwrap_or(FailureKind::WrongPassword);
            failure(kind, IMAP, s, &imap_sync::response::server_words(&text))
        }
        E::TokenRejected { text, .. } => failure(FailureKind::WrongPassword, IMAP, s, &text),
        E::Bye(text) | E::Refused { text, .. } => {
            let kind = classify_words(&text).unwrap_or(FailureKind::Refused);
            failure(kind, IMAP, s, &imap_sync::response::server_words(&text))
        }
        E::Tls(text) if tls_words(&text) => failure(FailureKind::Tls, IMAP, s, &text),
        E::Tls(text) => failure(FailureKind::Refused, IMAP, s, &format!("TLS: {text}")),
        E::Io(e) if tls_words(&e.to_string()) => failure(FailureKind::Tls, IMAP, s, &e.to_string()),
        E::Io(e) => unreachable(IMAP, s, &io_words(&e)),
        E::Timeout => unreachable(IMAP, s, "no answer in time"),
        E::Closed => unreachable(IMAP, s, "the server closed the connection"),
        other => failure(FailureKind::Refused, IMAP, s, &other.to_string()),
    }
}

fn pop3_failure(s: &Server, e: pop3_sync::error::Error) -> Failure {
    use pop3_sync::error::Error as E;
    const POP3: &str = "pop3";
    match e {
        E::Auth(text) => {
            let kind = classify_words(&text).unwrap_or(FailureKind::WrongPassword);
            failure(kind, POP3, s, &text)
        }
        E::TokenRejected { text, .. } => failure(FailureKind::WrongPassword, POP3, s, &text),
        E::Refused { text, .. } => {
            let kind = classify_words(&text).unwrap_or(FailureKind::Refused);
            failure(kind, POP3, s, &text)
        }
        E::Tls(text) if tls_words(&text) => failure(FailureKind::Tls, POP3, s, &text),
        E::Io(e) if tls_words(&e.to_string()) => failure(FailureKind::Tls, POP3, s, &e.to_string()),
        E::Io(e) => unreachable(POP3, s, &io_words(&e)),
        E::Timeout => unreachable(POP3, s, "no answer in time"),
        E::Closed(_) => unreachable(POP3, s, "the server closed the connection"),
        other => failure(FailureKind::Refused, POP3, s, &other.to_string()),
    }
}

fn smtp_failure(s: &Server, reply: Option<&submit::Reply>, reason: &str) -> Failure {
    const SMTP: &str = "smtp";
    if let Some(r) = reply {
        let words = r.line();
        // RFC 4954 6: 535 5.7.8 credentials invalid; 534 5.7.9 a stronger mechanism
        // (Gmail: "Application-specific password required").
        let kind = classify_words(&r.text).unwrap_or(match r.code {
            535 => FailureKind::WrongPassword,
            534 => FailureKind::AppPassword,
            _ => FailureKind::Refused,
        });
        return failure(kind, SMTP, s, &words);
    }
    if tls_words(reason) {
        return failure(FailureKind::Tls, SMTP, s, reason);
    }
    let lower = reason.to_ascii_lowercase();
    if lower.starts_with("connect") || lower.contains("in time") || lower.contains("refused") {
        return unreachable(SMTP, s, reason);
    }
    failure(FailureKind::Refused, SMTP, s, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_wording_is_recognised() {
        let k = classify_words;
        assert_eq!(
            k("[ALERT] Application-specific password required: https://support.google.com"),
            Some(FailureKind::AppPassword)
        );
        assert_eq!(
            k("[WEBALERT https://x] Web login required"),
            Some(FailureKind::AppPassword)
        );
        assert_eq!(
            k("[ALERT] Your account is not enabled for IMAP use."),
            Some(FailureKind::ImapDisabled)
        );
        assert_eq!(
            k("User is authenticated but not connected."),
            Some(FailureKind::ImapDisabled)
        );
        assert_eq!(
            k("[AUTHENTICATIONFAILED] Authentication failed."),
            Some(FailureKind::WrongPassword)
        );
        assert_eq!(
            k("[ALERT] IMAP access is disabled for your domain."),
            Some(FailureKind::ImapDisabled)
        );
        assert_eq!(k("[UNAVAILABLE] try later"), None);
    }
}
