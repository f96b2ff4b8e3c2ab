//! SMTP submission (RFC 6409) of one message, on lettre's SMTP client.
//!
//! # Layout
//! - [`Server`]: where and how to connect (implicit TLS, STARTTLS or plain, AUTH).
//! - [`Envelope`] and [`envelope_from_headers`]: MAIL FROM and RCPT TO, given or derived
//!   from the header (RFC 8621 7.5).
//! - [`Connection`]: an authenticated session that carries one message after the other
//!   (a caller may keep it between messages; RSET before each reuse).
//! - [`send`]: one attempt on a connection of its own.
//!
//! Neither panics, and each transaction says what happened as an [`Outcome`]: accepted
//! (with the reply to the final dot), refused (with the reply, transient or permanent),
//! or unknown (the connection broke once the message was being written, so the server
//! may or may not have taken it).
//!
//! The commands are sent one by one (lettre's `AsyncSmtpConnection`), not through its
//! one-shot `send`, so that every recipient's RCPT reply is known (JMAP `deliveryStatus`
//! is per recipient) and so that a failure before the end of DATA, which is always safe
//! to retry, is told apart from one after it, which is not.

pub mod dsn;

use lettre::address::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{
    ClientId, Extension, MailBodyParameter, MailParameter, RcptParameter,
};
use mail_types::Security;
// The envelope and the address checks are mime's: the JMAP server checks addresses
// without linking an SMTP client.
pub use mime::address::{Envelope, envelope_from_headers, valid_address};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Connecting, TLS and EHLO together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole attempt, however slow the server: RFC 5321 4.5.3.2 allows 10 minutes for
/// the reply to the final dot; we give up sooner and call the result unknown.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Where to submit.
#[derive(Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Empty: no AUTH.
    pub username: String,
    pub password: String,
    /// `password` is an OAuth 2.0 access token: AUTH XOAUTH2 (what Gmail and Microsoft
    /// offer; lettre has no OAUTHBEARER) instead of PLAIN or LOGIN.
    pub oauth2: bool,
    /// A CA to trust besides the system's (a private server).
    pub ca_file: Option<PathBuf>,
    /// The EHLO name.
    pub hello_name: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// One SMTP reply: the code and the text of every line, joined by spaces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    /// As JMAP's `smtpReply` wants it: `"250 2.0.0 Ok"`.
    pub fn line(&self) -> String {
        format!("{} {}", self.code, self.text).trim_end().to_owned()
    }
}

/// What the server said to one RCPT TO.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecipientReply {
    pub address: String,
    pub reply: Reply,
}

impl RecipientReply {
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.reply.code)
    }
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server took responsibility for the message (2xx after the final dot), for the
    /// recipients whose RCPT it accepted.
    Accepted {
        reply: Reply,
        recipients: Vec<RecipientReply>,
    },
    /// Nothing was delivered. `transient`: a 4xx, or no answer before the end of DATA
    /// (connection, TLS, timeout): trying again later is right. Otherwise a 5xx (or an
    /// envelope that can never be sent): it will not work by itself.
    Refused {
        reply: Option<Reply>,
        reason: String,
        transient: bool,
        recipients: Vec<RecipientReply>,
    },
    /// The whole message was written but no reply came: the server may have accepted it.
    /// Sending again could deliver it twice.
    Unknown { reason: String },
}

/// The message without its Bcc header fields (RFC 5322 3.6.3: the blind recipients
/// must not see each other, nor the others them). Only the header block is touched.
pub fn strip_bcc(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    let mut skipping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1);
        let (line, tail) = rest.split_at(end);
        if line == b"\r\n" || line == b"\n" {
            // End of the header block: the body is copied as is.
            out.extend_from_slice(rest);
            return out;
        }
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        rest = tail;
    }
    out
}

/// Submits `raw` once on a connection of its own (opened, used, closed). Never retries
/// by itself; the caller decides from the [`Outcome`].
pub async fn send(server: &Server, envelope: &Envelope, raw: &[u8]) -> Outcome {
    let mut conn = match Connection::open(server).await {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let outcome = conn.send(envelope, raw).await;
    conn.quit().await;
    outcome
}

fn refused_transient(reply: Option<Reply>, reason: String, r: Vec<RecipientReply>) -> Outcome {
    Outcome::Refused {
        reply,
        reason,
        transient: true,
        recipients: r,
    }
}

fn refused_permanent(reason: String) -> Outcome {
    Outcome::Refused {
        reply: None,
        reason,
        transient: false,
        recipients: vec![],
    }
}

/// The reply carried by a lettre error, when the server sent one.
fn reply_of(e: &lettre::transport::smtp::Error) -> Option<Reply> {
    let code = e.status()?;
    let code: u16 = code.to_string().parse().ok()?;
    let text = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    Some(Reply { code, text })
}

/// An error before the end of DATA: a reply decides (4xx transient, 5xx permanent);
/// anything else (network, TLS, parse) is transient.
fn refused(e: &lettre::transport::smtp::Error, step: &str, r: Vec<RecipientReply>) -> Outcome {
    let reply = reply_of(e);
    Outcome::Refused {
        transient: !e.is_permanent(),
        reason: format!("{step}: {e}"),
        reply,
        recipients: r,
    }
}

fn reply_from(r: &lettre::transport::smtp::response::Response) -> Reply {
    Reply {
        code: r.code().to_string().parse().unwrap_or(250),
        text: r.message().collect::<Vec<_>>().join(" "),
    }
}

fn tls_parameters(server: &Server) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(server.host.clone());
    if let Some(path) = &server.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let cert =
            Certificate::from_pem(&pem).map_err(|e| format!("CA file {}: {e}", path.display()))?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls().map_err(|e| format!("TLS setup: {e}"))
}

/// An open, authenticated SMTP session that can carry several messages, one transaction
/// after the other (RFC 5321 3.3). A caller that keeps one between messages calls
/// [`Connection::reset`] before reusing it (RSET: it ends any leftover transaction and
/// proves the server is still there).
pub struct Connection {
    conn: AsyncSmtpConnection,
    broken: bool,
    /// Transactions completed on it.
    messages: u32,
    /// The server offers DSN (RFC 3461).
    dsn: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("broken", &self.broken)
            .field("messages", &self.messages)
            .field("dsn", &self.dsn)
            .finish()
    }
}

impl Connection {
    /// Connects, upgrades (implicit TLS or STARTTLS; never a plain fallback when TLS was
    /// asked for) and authenticates. A failure is an [`Outcome::Refused`] (nothing was
    /// sent), transient unless it can never work by itself.
    pub async fn open(server: &Server) -> Result<Connection, Outcome> {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, Self::open_inner(server)).await {
            Ok(r) => r,
            Err(_) => Err(refused_transient(
                None,
                "the server did not answer in time".into(),
                vec![],
            )),
        }
    }

    async fn open_inner(server: &Server) -> Result<Connection, Outcome> {
        let tls = match server.security {
            Security::None => None,
            _ => Some(tls_parameters(server).map_err(refused_permanent)?),
        };
        let hello = ClientId::Domain(server.hello_name.clone());
        let implicit = match server.security {
            Security::Tls => tls.clone(),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (server.host.as_str(), server.port),
            Some(CONNECT_TIMEOUT),
            &hello,
            implicit,
            None,
        )
        .await
        .map_err(|e| refused(&e, "connect", vec![]))?;
        if server.security == Security::Starttls {
            let Some(tls) = tls else {
                return Err(refused_transient(None, "no TLS parameters".into(), vec![]));
            };
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(refused_permanent(
                    "the server does not offer STARTTLS".into(),
                ));
            }
            conn.starttls(tls, &hello)
                .await
                .map_err(|e| refused(&e, "STARTTLS", vec![]))?;
        }
        // lettre keeps only the EHLO keywords it knows; DSN is not one of them, so the
        // (encrypted, not yet authenticated) session is asked once more.
        let dsn = match conn.command(Ehlo::new(hello.clone())).await {
            Ok(r) => r.message().skip(1).any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("DSN"))
            }),
            Err(e) => {
                conn.abort().await;
                return Err(refused(&e, "EHLO", vec![]));
            }
        };
        if !server.username.is_empty() {
            let creds = Credentials::new(server.username.clone(), server.password.clone());
            let mechanisms: &[Mechanism] = if server.oauth2 {
                &[Mechanism::Xoauth2]
            } else {
                &[Mechanism::Plain, Mechanism::Login]
            };
            if let Err(e) = conn.auth(mechanisms, &creds).await {
                conn.abort().await;
                return Err(refused(&e, "AUTH", vec![]));
            }
        }
        Ok(Connection {
            conn,
            broken: false,
            messages: 0,
            dsn,
        })
    }

    /// Whether it may carry another message (no failure left it in an unknown state).
    pub fn usable(&self) -> bool {
        !self.broken && !self.conn.has_broken()
    }

    /// Whether the server offers DSN: [`Connection::send_with_dsn`] then asks for them.
    pub fn offers_dsn(&self) -> bool {
        self.dsn
    }

    /// Messages accepted on it so far.
    pub fn messages(&self) -> u32 {
        self.messages
    }

    /// RSET before reusing a kept connection: false when the server is gone (then the
    /// connection is closed and must not be used).
    pub async fn reset(&mut self) -> bool {
        if !self.usable() {
            return false;
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.conn.command(Rset)).await {
            Ok(Ok(_)) => true,
            _ => {
                self.close().await;
                false
            }
        }
    }

    /// QUIT, politely; the connection is not usable afterwards.
    pub async fn quit(mut self) {
        if self.usable() {
            let _ = tokio::time::timeout(CONNECT_TIMEOUT, self.conn.quit()).await;
        }
        self.broken = true;
    }

    async fn close(&mut self) {
        self.broken = true;
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, self.conn.abort()).await;
    }

    /// One mail transaction (MAIL, RCPT per recipient, DATA, the message). Afterwards
    /// [`Connection::usable`] says whether the session can carry the next one: after an
    /// acceptance, or a refusal of every recipient, it can; after anything else it is
    /// closed.
    pub async fn send(&mut self, envelope: &Envelope, raw: &[u8]) -> Outcome {
        self.send_with_dsn(envelope, raw, None).await
    }

    /// As [`Connection::send`]; with `envelope_id`, and when the server offers DSN, asks
    /// for a report of failures and delays (RFC 3461: `RET=HDRS ENVID=..` on MAIL,
    /// `NOTIFY=FAILURE,DELAY` on each RCPT), which will name that ENVID.
    pub async fn send_with_dsn(
        &mut self,
        envelope: &Envelope,
        raw: &[u8],
        envelope_id: Option<&str>,
    ) -> Outcome {
        if !self.usable() {
            return refused_transient(None, "the connection is closed".into(), vec![]);
        }
        let mut wrote_message = false;
        let outcome = match tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            self.transaction(envelope, raw, envelope_id, &mut wrote_message),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) if wrote_message => Outcome::Unknown {
                reason: "no reply to the end of the message in time".into(),
            },
            Err(_) => refused_transient(None, "the server did not answer in time".into(), vec![]),
        };
        let keep = match &outcome {
            Outcome::Accepted { .. } => true,
            Outcome::Refused { recipients, .. } => {
                !recipients.is_empty() && recipients.iter().all(|r| !r.accepted())
            }
            Outcome::Unknown { .. } => false,
        };
        if keep {
            if matches!(outcome, Outcome::Accepted { .. }) {
                self.messages = self.messages.saturating_add(1);
            }
        } else {
            self.close().await;
        }
        outcome
    }

    async fn transaction(
        &mut self,
        envelope: &Envelope,
        raw: &[u8],
        envelope_id: Option<&str>,
        wrote_message: &mut bool,
    ) -> Outcome {
        let from = if envelope.mail_from.is_empty() {
            None
        } else {
            match Address::from_str(&envelope.mail_from) {
                Ok(a) => Some(a),
                Err(e) => return refused_permanent(format!("invalid MAIL FROM address: {e}")),
            }
        };
        let mut rcpts = Vec::with_capacity(envelope.rcpt_to.len());
        for r in &envelope.rcpt_to {
            match Address::from_str(r) {
                Ok(a) => rcpts.push(a),
                Err(e) => return refused_permanent(format!("invalid RCPT TO address: {e}")),
            }
        }
        if rcpts.is_empty() {
            return refused_permanent("no recipients".into());
        }
        let conn = &mut self.conn;
        let mut options = Vec::new();
        if !raw.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let non_ascii_address =
            !envelope.mail_from.is_ascii() || envelope.rcpt_to.iter().any(|r| !r.is_ascii());
        if non_ascii_address {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return refused_permanent(
                    "non-ASCII addresses, and the server lacks SMTPUTF8".into(),
                );
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        let envelope_id = envelope_id.filter(|_| self.dsn);
        if let Some(id) = envelope_id {
            options.push(MailParameter::Other {
                keyword: "RET".into(),
                value: Some("HDRS".into()),
            });
            options.push(MailParameter::Other {
                keyword: "ENVID".into(),
                value: Some(id.to_owned()),
            });
        }
        if let Err(e) = conn.command(Mail::new(from, options)).await {
            return refused(&e, "MAIL FROM", vec![]);
        }
        let mut replies = Vec::with_capacity(rcpts.len());
        for (addr, text) in rcpts.into_iter().zip(&envelope.rcpt_to) {
            let params = match envelope_id {
                Some(_) => vec![RcptParameter::Other {
                    keyword: "NOTIFY".into(),
                    value: Some("FAILURE,DELAY".into()),
                }],
                None => vec![],
            };
            match conn.command(Rcpt::new(addr, params)).await {
                Ok(r) => replies.push(RecipientReply {
                    address: text.clone(),
                    reply: reply_from(&r),
                }),
                Err(e) => match reply_of(&e) {
                    Some(reply) => replies.push(RecipientReply {
                        address: text.clone(),
                        reply,
                    }),
                    None => return refused(&e, "RCPT TO", replies),
                },
            }
        }
        if !replies.iter().any(RecipientReply::accepted) {
            // Every recipient refused: permanent unless some refusal was transient.
            let transient = replies.iter().any(|r| (400..500).contains(&r.reply.code));
            let reply = replies.first().map(|r| r.reply.clone());
            return Outcome::Refused {
                reply,
                reason: "every recipient was refused".into(),
                transient,
                recipients: replies,
            };
        }
        if let Err(e) = conn.command(Data).await {
            return refused(&e, "DATA", replies);
        }
        // From the first byte of the message on, a failure without a reply cannot tell
        // whether the server got the final dot.
        *wrote_message = true;
        match conn.message(raw).await {
            Ok(r) => Outcome::Accepted {
                reply: reply_from(&r),
                recipients: replies,
            },
            Err(e) => match reply_of(&e) {
                // The server answered the final dot with a refusal: nothing was delivered.
                Some(_) => refused(&e, "end of DATA", replies),
                None => Outcome::Unknown {
                    reason: format!(
                        "the connection failed while the message was written or before its reply: {e}"
                    ),
                },
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// mime's check accepts what lettre's envelope accepts, and nothing else: an
    /// address the JMAP server lets through is never refused when sent.
    #[test]
    fn address_checks_agree_with_the_smtp_client() {
        for s in [
            "a@x.org",
            "first.last+tag@sub.example.com",
            "\"a b\"@x.org",
            "user@[127.0.0.1]",
            "user@[::1]",
            "josé@exämple.org",
            "a@b@x.org",
            "\"a@b\"@x.org",
            "",
            "a",
            "@x.org",
            "a@",
            "a b@x.org",
            "a@x..org",
            "a@-x.org",
            ".a@x.org",
            "a@[300.1.1.1]",
            "a@localhost",
            "a@xn--nxasmq6b.com",
        ] {
            assert_eq!(valid_address(s), Address::from_str(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn bcc_is_removed_from_the_header_only() {
        let raw = b"From: a@x.org\r\nBcc: d@z.org,\r\n e@z.org\r\nTo: b@y.org\r\n\r\nBcc: stays in the body\r\n";
        assert_eq!(
            strip_bcc(raw),
            b"From: a@x.org\r\nTo: b@y.org\r\n\r\nBcc: stays in the body\r\n".to_vec()
        );
        assert_eq!(strip_bcc(b"bcc: x\nTo: y\n\nz"), b"To: y\n\nz".to_vec());
    }

    #[test]
    fn debug_hides_the_password() {
        let s = Server {
            host: "h".into(),
            port: 1,
            security: Security::Tls,
            username: "u".into(),
            password: "hunter2".into(),
            oauth2: false,
            ca_file: None,
            hello_name: "localhost".into(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
