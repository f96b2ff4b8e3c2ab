//! A POP3 client session: RFC 1939 commands, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034
//! SASL PLAIN. Knows nothing of the store.
//!
//! Every read has a timeout, every line and every message has a size bound, and every
//! server answer is checked before it is trusted, so a broken or hostile server ends in a
//! typed [`Error`], never a panic or unbounded memory.

use crate::error::{ClosedDuring, Error, Result};
use base64::Engine as _;
use bytes::BytesMut;
use mail_net::sasl::{self, OAuthMechanism};
use mail_net::{Credentials, Endpoint, Login, Stream};
use mail_types::Security;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest status or list line we accept. RFC 2449 4 bounds responses to 512 octets; we
/// allow more for servers with chatty `-ERR` texts, while bounding memory.
pub const MAX_LINE: usize = 64 * 1024;
/// Longest line inside a message. RFC 5322 2.1.1 says 998, but real mail (HTML without
/// line breaks, badly encoded attachments) has much longer lines.
pub const MAX_MESSAGE_LINE: usize = 1024 * 1024;
/// Largest message we retrieve; bigger ones are refused rather than trusted with memory.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;
/// Most entries in a UIDL or LIST answer; a server listing more is taken to be lying.
pub const MAX_LIST_ENTRIES: usize = 5_000_000;
/// Time we wait for the server to say anything while a command runs.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for TCP connect, TLS handshake, greeting, CAPA and STLS.
pub use mail_net::CONNECT_TIMEOUT;
/// RFC 2449 4: a command line, CRLF included, is at most 255 octets. RFC 5034 4 applies
/// this to AUTH with an initial response too, so a longer one is sent after the `+`.
const MAX_COMMAND_LINE: usize = 255;

/// The server's RFC 2449 capability list (one capability per line, tag first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Each line as sent, e.g. `"SASL PLAIN LOGIN"`, `"UIDL"`, `"STLS"`.
    pub lines: Vec<String>,
}

impl Capabilities {
    /// Whether a capability tag is listed (case-insensitive, RFC 2449 6).
    pub fn has(&self, tag: &str) -> bool {
        self.lines.iter().any(|l| {
            l.split_ascii_whitespace()
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case(tag))
        })
    }

    /// The SASL mechanisms of the `SASL` capability (RFC 2449 6.3).
    pub fn sasl_mechanisms(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|l| {
                let mut words = l.split_ascii_whitespace();
                let tag = words.next()?;
                tag.eq_ignore_ascii_case("SASL")
                    .then(|| words.map(str::to_ascii_uppercase).collect::<Vec<_>>())
            })
            .flatten()
            .collect()
    }
}

/// Answer of `STAT` (RFC 1939 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub count: u32,
    pub size: u64,
}

/// One line of a `UIDL` answer (RFC 1939 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidlEntry {
    /// Message number in this session (1-based).
    pub number: u32,
    /// The server's persistent unique id (0x21..0x7E, RFC 1939 7).
    pub uidl: String,
}

/// One line of a `LIST` answer (RFC 1939 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEntry {
    pub number: u32,
    /// Size in octets as the server counts it (RFC 1939 5: may differ from RETR's bytes).
    pub size: u64,
}

/// A one-line server answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Ok(String),
    Err(String),
    /// RFC 5034 4: `+ ` followed by a base64 challenge (only during AUTH).
    Continue(String),
}

/// Strips the line ending (CRLF, or a bare LF from sloppy servers).
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Printable excerpt of a server line for error messages (never of message content).
fn excerpt(line: &[u8]) -> String {
    let mut s: String = strip_eol(line)
        .iter()
        .take(80)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    if line.len() > 80 {
        s.push_str("...");
    }
    s
}

/// Parses a status line (RFC 1939 3): `+OK` or `-ERR`, then optional text.
fn parse_reply(line: &[u8]) -> Result<Reply> {
    let body = strip_eol(line);
    let text_after = |rest: &[u8]| -> Option<String> {
        match rest.split_first() {
            None => Some(String::new()),
            Some((b' ', text)) => Some(String::from_utf8_lossy(text).trim().to_string()),
            Some(_) => None,
        }
    };
    let reply = if let Some(rest) = strip_prefix_ci(body, b"+OK") {
        text_after(rest).map(Reply::Ok)
    } else if let Some(rest) = strip_prefix_ci(body, b"-ERR") {
        text_after(rest).map(Reply::Err)
    } else if let Some(rest) = body.strip_prefix(b"+") {
        text_after(rest).map(Reply::Continue)
    } else {
        None
    };
    reply.ok_or_else(|| Error::Protocol(format!("expected +OK or -ERR, got {:?}", excerpt(line))))
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// The end of a multi-line response (RFC 1939 3): a line holding only the dot.
fn is_terminator(line: &[u8]) -> bool {
    strip_eol(line) == b"."
}

/// RFC 1939 3: a line of a multi-line response beginning with the termination octet has
/// had one prepended ("byte-stuffed"); the receiver removes it.
fn unstuff(line: &[u8]) -> &[u8] {
    line.strip_prefix(b".").unwrap_or(line)
}

/// Parses a decimal field of a list or STAT line.
fn parse_num<T: std::str::FromStr>(word: Option<&str>, what: &str, line: &str) -> Result<T> {
    word.filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| Error::Protocol(format!("{what}: bad line {:?}", excerpt(line.as_bytes()))))
}

/// Whether a string is a valid unique-id: RFC 1939 7 allows 1 to 70 octets in 0x21..0x7E.
/// We accept up to 512 (some servers exceed 70) but no spaces, controls or 8-bit bytes.
fn valid_uidl(s: &str) -> bool {
    !s.is_empty() && s.len() <= 512 && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// One line of a UIDL answer: `msg uidl` (RFC 1939 7).
fn parse_uidl_line(line: &str) -> Result<UidlEntry> {
    let mut words = line.split_ascii_whitespace();
    let number = parse_num(words.next(), "UIDL", line)?;
    let uidl = words.next().unwrap_or_default();
    if !valid_uidl(uidl) || words.next().is_some() || number == 0 {
        return Err(Error::Protocol(format!(
            "UIDL: bad line {:?}",
            excerpt(line.as_bytes())
        )));
    }
    Ok(UidlEntry {
        number,
        uidl: uidl.to_string(),
    })
}

/// One line of a LIST answer: `msg size` (RFC 1939 5; more words are allowed, 5 LIST).
fn parse_list_line(line: &str) -> Result<ListEntry> {
    let mut words = line.split_ascii_whitespace();
    let number = parse_num(words.next(), "LIST", line)?;
    let size = parse_num(words.next(), "LIST", line)?;
    if number == 0 {
        return Err(Error::Protocol(format!(
            "LIST: bad line {:?}",
            excerpt(line.as_bytes())
        )));
    }
    Ok(ListEntry { number, size })
}

/// Classifies a `-ERR` to an authentication command. RFC 3206 / RFC 2449 8 response codes
/// tell a locked mailbox or a server fault (worth retrying) from bad credentials.
fn auth_failure(command: &'static str, text: String) -> Error {
    let code = text
        .strip_prefix('[')
        .and_then(|t| t.split_once(']'))
        .map(|(c, _)| c.to_ascii_uppercase());
    match code.as_deref() {
        Some("IN-USE") | Some("SYS/TEMP") | Some("SYS/PERM") | Some("LOGIN-DELAY") => {
            Error::Refused { command, text }
        }
        _ => Error::Auth(text),
    }
}

/// One POP3 session. Created by [`Pop3Client::connect`] in the AUTHORIZATION state;
/// [`Pop3Client::login`] moves it to TRANSACTION; [`Pop3Client::quit`] to UPDATE, where the
/// server performs the `DELE`s (RFC 1939 6). Dropping a client without `quit` deletes
/// nothing.
pub struct Pop3Client {
    stream: Stream,
    rbuf: BytesMut,
    caps: Capabilities,
    read_timeout: Duration,
    /// Set when a response was cut short (timeout, overlong line, framing error): what
    /// follows on the wire cannot be matched to our commands any more.
    broken: bool,
}

impl std::fmt::Debug for Pop3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Client")
            .field("caps", &self.caps)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Pop3Client {
    /// Connects (implicit TLS, STLS or plain, as `ep.security` says), reads the greeting
    /// and the capabilities. With `Starttls`, the session is upgraded before this returns,
    /// and refused if the server lacks `STLS`.
    pub async fn connect(ep: &Endpoint) -> Result<Pop3Client> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(ep)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout),
        }
    }

    async fn connect_inner(ep: &Endpoint) -> Result<Pop3Client> {
        let stream = mail_net::open(ep).await?;
        let mut c = Pop3Client {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            caps: Capabilities::default(),
            read_timeout: READ_TIMEOUT,
            broken: false,
        };
        // RFC 1939 4: the greeting is a positive response; a -ERR greeting means the
        // server will not serve us now.
        match c.read_reply().await? {
            Reply::Ok(_) => {}
            Reply::Err(text) => {
                return Err(Error::Refused {
                    command: "greeting",
                    text,
                });
            }
            Reply::Continue(_) => {
                return Err(Error::Protocol("greeting was a continuation".into()));
            }
        }
        c.caps = c.capa().await?.unwrap_or_default();
        if ep.security == Security::Starttls {
            c.stls(ep).await?;
        }
        Ok(c)
    }

    /// Connects and authenticates.
    pub async fn connect_and_login(ep: &Endpoint, creds: &Credentials) -> Result<Pop3Client> {
        let mut c = Self::connect(ep).await?;
        c.login(creds).await?;
        Ok(c)
    }

    /// Connects and authenticates as `login` says (password, or OAuth 2.0 bearer token).
    pub async fn connect_and_login_with(ep: &Endpoint, login: &Login) -> Result<Pop3Client> {
        let mut c = Self::connect(ep).await?;
        match login {
            Login::Password(creds) => c.login(creds).await?,
            Login::OAuth2 {
                username,
                access_token,
            } => c.auth_bearer(ep, username, access_token).await?,
        }
        Ok(c)
    }

    /// The capabilities of the last CAPA (empty when the server has no CAPA).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Changes the per-read timeout (tests use short ones).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.read_timeout = timeout;
    }

    /// RFC 2595 4: STLS, then the TLS handshake, then CAPA again (the old list may have
    /// been forged by a man in the middle and must be discarded).
    async fn stls(&mut self, ep: &Endpoint) -> Result<()> {
        if !self.caps.has("STLS") {
            return Err(Error::Unsupported("STLS"));
        }
        self.simple("STLS", "STLS").await?;
        if !self.rbuf.is_empty() {
            // Anything after the +OK arrived in plaintext and would be read as if it came
            // through TLS (the STARTTLS command injection class, CVE-2011-0411).
            self.broken = true;
            return Err(Error::Protocol(
                "server sent data after +OK to STLS, before the TLS handshake".into(),
            ));
        }
        match std::mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(tcp) => {
                self.stream = Stream::Tls(Box::new(mail_net::tls_wrap(ep, tcp).await?));
            }
            other => {
                self.stream = other;
                return Err(Error::Protocol("STLS on a TLS connection".into()));
            }
        }
        self.caps = self.capa().await?.unwrap_or_default();
        Ok(())
    }

    /// RFC 2449 5: CAPA. `None` when the server answers -ERR (an RFC 1939-only server).
    pub async fn capa(&mut self) -> Result<Option<Capabilities>> {
        self.send("CAPA").await?;
        match self.read_reply().await? {
            Reply::Ok(_) => {}
            Reply::Err(_) => return Ok(None),
            Reply::Continue(_) => return Err(self.fail("CAPA answered with a continuation")),
        }
        let lines = self.read_text_lines("CAPA", |l| Ok(l.to_string())).await?;
        Ok(Some(Capabilities { lines }))
    }

    /// Authenticates: `AUTH PLAIN` (RFC 5034, with initial response) when CAPA lists SASL
    /// PLAIN, else USER/PASS (RFC 1939 7). Bad credentials give [`Error::Auth`].
    pub async fn login(&mut self, creds: &Credentials) -> Result<()> {
        // A CR or LF would end the command line early and let the rest run as another
        // command; NUL separates the PLAIN fields (RFC 4616 2).
        let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
        if bad(&creds.username) || bad(&creds.password) {
            return Err(Error::Auth(
                "user name or password contains CR, LF or NUL".into(),
            ));
        }
        let plain = self.caps.sasl_mechanisms().iter().any(|m| m == "PLAIN");
        if plain {
            self.auth_plain(creds).await
        } else {
            self.user_pass(creds).await
        }
    }

    async fn auth_plain(&mut self, creds: &Credentials) -> Result<()> {
        let ir = base64::engine::general_purpose::STANDARD
            .encode(sasl::plain(&creds.username, &creds.password));
        let with_ir = format!("AUTH PLAIN {ir}");
        if with_ir.len() + 2 <= MAX_COMMAND_LINE {
            self.send(&with_ir).await?;
        } else {
            // RFC 5034 4: too long for one command line; send it after the empty challenge.
            self.send("AUTH PLAIN").await?;
            match self.read_reply().await? {
                Reply::Continue(_) => self.send(&ir).await?,
                Reply::Err(text) => return Err(auth_failure("AUTH", text)),
                Reply::Ok(_) => {
                    return Err(self.fail("AUTH PLAIN succeeded without credentials"));
                }
            }
        }
        match self.read_reply().await? {
            Reply::Ok(_) => Ok(()),
            Reply::Err(text) => Err(auth_failure("AUTH", text)),
            Reply::Continue(_) => {
                // PLAIN is one message; a further challenge is not something we can answer.
                // RFC 5034 4: "*" cancels the exchange, answered by -ERR.
                self.send("*").await?;
                let _ = self.read_reply().await;
                Err(Error::Protocol(
                    "server sent a challenge after the PLAIN response".into(),
                ))
            }
        }
    }

    /// RFC 5034 AUTH with OAUTHBEARER (RFC 7628), else XOAUTH2, as CAPA's SASL line
    /// offers. A refused token comes back as a JSON error challenge (RFC 7628 3.2.2),
    /// answered with ^A (3.2.3) before the final -ERR: [`Error::TokenRejected`].
    pub async fn auth_bearer(&mut self, ep: &Endpoint, user: &str, token: &str) -> Result<()> {
        let bad = |s: &str| {
            s.bytes()
                .any(|b| b == b'\r' || b == b'\n' || b == 0 || b == 1)
        };
        if bad(user) || bad(token) {
            return Err(Error::Auth(
                "user name or token contains CR, LF, NUL or ^A".into(),
            ));
        }
        let mechs = self.caps.sasl_mechanisms();
        let mech = OAuthMechanism::choose(|m| mechs.iter().any(|x| x == m))
            .ok_or(Error::Unsupported("SASL OAUTHBEARER or XOAUTH2"))?;
        let name = mech.name();
        let ir = base64::engine::general_purpose::STANDARD
            .encode(mech.initial_response(user, token, &ep.host, ep.port));
        let with_ir = format!("AUTH {name} {ir}");
        if with_ir.len() + 2 <= MAX_COMMAND_LINE {
            self.send(&with_ir).await?;
        } else {
            // RFC 5034 4: too long for one command line (bearer tokens usually are); send
            // it after the empty challenge.
            self.send(&format!("AUTH {name}")).await?;
            match self.read_reply().await? {
                Reply::Continue(_) => self.send(&ir).await?,
                Reply::Err(text) => return Err(auth_failure("AUTH", text)),
                Reply::Ok(_) => {
                    return Err(self.fail("AUTH succeeded without credentials"));
                }
            }
        }
        match self.read_reply().await? {
            Reply::Ok(_) => Ok(()),
            Reply::Err(text) => Err(auth_failure("AUTH", text)),
            Reply::Continue(challenge) => {
                let failure = base64::engine::general_purpose::STANDARD
                    .decode(challenge.trim())
                    .map_err(|_| "an OAuth error challenge that is not base64".to_string())
                    .and_then(|j| sasl::parse_error_challenge(&j));
                self.send(&base64::engine::general_purpose::STANDARD.encode(sasl::ERROR_ACK))
                    .await?;
                let text = match self.read_reply().await? {
                    Reply::Err(text) => text,
                    Reply::Ok(_) => {
                        return Err(self.fail("AUTH succeeded after an OAuth error challenge"));
                    }
                    Reply::Continue(_) => {
                        return Err(self.fail("a second challenge after the OAuth error"));
                    }
                };
                match failure {
                    Ok(failure) => Err(Error::TokenRejected { failure, text }),
                    Err(why) => Err(Error::Protocol(format!(
                        "authentication refused with {why}"
                    ))),
                }
            }
        }
    }

    async fn user_pass(&mut self, creds: &Credentials) -> Result<()> {
        self.send(&format!("USER {}", creds.username)).await?;
        match self.read_reply().await? {
            Reply::Ok(_) => {}
            Reply::Err(text) => return Err(auth_failure("USER", text)),
            Reply::Continue(_) => return Err(self.fail("USER answered with a continuation")),
        }
        self.send(&format!("PASS {}", creds.password)).await?;
        match self.read_reply().await? {
            Reply::Ok(_) => Ok(()),
            Reply::Err(text) => Err(auth_failure("PASS", text)),
            Reply::Continue(_) => Err(self.fail("PASS answered with a continuation")),
        }
    }

    /// RFC 1939 5: STAT, the message count and total size.
    pub async fn stat(&mut self) -> Result<Stat> {
        let text = self.simple("STAT", "STAT").await?;
        let mut words = text.split_ascii_whitespace();
        let count = parse_num(words.next(), "STAT", &text)?;
        let size = parse_num(words.next(), "STAT", &text)?;
        Ok(Stat { count, size })
    }

    /// RFC 1939 7: UIDL without argument, every message's unique-id. A `-ERR` gives
    /// [`Error::Refused`] (the server has no UIDL).
    pub async fn uidl(&mut self) -> Result<Vec<UidlEntry>> {
        self.simple("UIDL", "UIDL").await?;
        self.read_text_lines("UIDL", parse_uidl_line).await
    }

    /// RFC 1939 5: LIST without argument, every message's size.
    pub async fn list(&mut self) -> Result<Vec<ListEntry>> {
        self.simple("LIST", "LIST").await?;
        self.read_text_lines("LIST", parse_list_line).await
    }

    /// RFC 1939 5: RETR, the whole message. Dot-unstuffed; line ends are kept exactly as
    /// sent (CRLF on the wire), so the bytes are the message as the server holds it.
    pub async fn retr(&mut self, n: u32) -> Result<Vec<u8>> {
        self.simple("RETR", &format!("RETR {n}")).await?;
        let mut msg = Vec::new();
        loop {
            let line = match self.read_line(MAX_MESSAGE_LINE).await {
                Ok(l) => l,
                Err(e) => return Err(self.in_multiline(e, "RETR")),
            };
            if is_terminator(&line) {
                return Ok(msg);
            }
            let data = unstuff(&line);
            if msg.len() + data.len() > MAX_MESSAGE {
                return Err(self.fail(&format!("message {n} is larger than {MAX_MESSAGE} bytes")));
            }
            msg.extend_from_slice(data);
        }
    }

    /// RFC 1939 5: DELE marks a message; the server removes it only at QUIT.
    pub async fn dele(&mut self, n: u32) -> Result<()> {
        self.simple("DELE", &format!("DELE {n}")).await.map(drop)
    }

    /// RFC 1939 5: RSET unmarks every message marked by DELE in this session.
    pub async fn rset(&mut self) -> Result<()> {
        self.simple("RSET", "RSET").await.map(drop)
    }

    /// RFC 1939 5: NOOP.
    pub async fn noop(&mut self) -> Result<()> {
        self.simple("NOOP", "NOOP").await.map(drop)
    }

    /// RFC 1939 6: QUIT enters the UPDATE state, where the server removes the messages
    /// marked by DELE. A `-ERR` here means some were not removed.
    pub async fn quit(mut self) -> Result<()> {
        let r = self.simple("QUIT", "QUIT").await.map(drop);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.shutdown()).await;
        r
    }

    // --- wire --------------------------------------------------------------------------

    /// Marks the session unusable and builds a protocol error.
    fn fail(&mut self, msg: &str) -> Error {
        self.broken = true;
        Error::Protocol(msg.to_string())
    }

    /// Errors while reading a multi-line response leave the session unusable; a close is
    /// reported with the command it cut.
    fn in_multiline(&mut self, e: Error, command: &'static str) -> Error {
        self.broken = true;
        match e {
            Error::Closed(_) => Error::Closed(ClosedDuring::MultiLine(command)),
            other => other,
        }
    }

    /// Sends a command and reads its status line; `-ERR` becomes [`Error::Refused`].
    async fn simple(&mut self, name: &'static str, line: &str) -> Result<String> {
        self.send(line).await?;
        match self.read_reply().await? {
            Reply::Ok(text) => Ok(text),
            Reply::Err(text) => Err(Error::Refused {
                command: name,
                text,
            }),
            Reply::Continue(_) => Err(self.fail(&format!("{name} answered with a continuation"))),
        }
    }

    /// Writes one command line (CRLF appended) and flushes.
    async fn send(&mut self, line: &str) -> Result<()> {
        if self.broken {
            return Err(Error::Protocol(
                "the session is unusable after an earlier framing error".into(),
            ));
        }
        let mut data = Vec::with_capacity(line.len() + 2);
        data.extend_from_slice(line.as_bytes());
        data.extend_from_slice(b"\r\n");
        let stream = &mut self.stream;
        let fut = async {
            stream.write_all(&data).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.read_timeout, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.broken = true;
                Err(Error::Io(e))
            }
            Err(_) => {
                self.broken = true;
                Err(Error::Timeout)
            }
        }
    }

    async fn read_reply(&mut self) -> Result<Reply> {
        let line = self.read_line(MAX_LINE).await?;
        parse_reply(&line).inspect_err(|_| self.broken = true)
    }

    /// Reads the body of a multi-line response made of short text lines (CAPA, UIDL,
    /// LIST), unstuffed, each parsed as it arrives: a bad line fails at once rather than
    /// after the server decides to end (or never ends) the list.
    async fn read_text_lines<T>(
        &mut self,
        command: &'static str,
        parse: impl Fn(&str) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        loop {
            let line = match self.read_line(MAX_LINE).await {
                Ok(l) => l,
                Err(e) => return Err(self.in_multiline(e, command)),
            };
            if is_terminator(&line) {
                return Ok(out);
            }
            if out.len() >= MAX_LIST_ENTRIES {
                return Err(self.fail(&format!("{command}: more than {MAX_LIST_ENTRIES} lines")));
            }
            let body = unstuff(strip_eol(&line));
            let Ok(text) = std::str::from_utf8(body) else {
                return Err(self.fail(&format!("{command}: line is not text: {:?}", excerpt(body))));
            };
            match parse(text) {
                Ok(v) => out.push(v),
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
    }

    /// Reads one line, LF included, of at most `max` octets before the CRLF.
    async fn read_line(&mut self, max: usize) -> Result<BytesMut> {
        if self.broken {
            return Err(Error::Protocol(
                "the session is unusable after an earlier framing error".into(),
            ));
        }
        // Resume the LF search where the last read left off, so a long line arriving in
        // many reads is scanned once.
        let mut scanned = 0;
        loop {
            if let Some(i) = self.rbuf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i + 1;
                if end > max + 2 {
                    return Err(self.fail(&format!("line longer than {max} bytes")));
                }
                return Ok(self.rbuf.split_to(end));
            }
            scanned = self.rbuf.len();
            if scanned > max + 2 {
                return Err(self.fail(&format!("line longer than {max} bytes")));
            }
            if self.rbuf.capacity() - self.rbuf.len() < 16 * 1024 {
                self.rbuf.reserve(64 * 1024);
            }
            let read =
                tokio::time::timeout(self.read_timeout, self.stream.read_buf(&mut self.rbuf));
            let n = match read.await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    self.broken = true;
                    return Err(Error::Io(e));
                }
                Err(_) => {
                    self.broken = true;
                    return Err(Error::Timeout);
                }
            };
            if n == 0 {
                self.broken = true;
                return Err(Error::Closed(ClosedDuring::Idle));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply(b"+OK ready\r\n").ok(),
            Some(Reply::Ok("ready".into()))
        );
        assert_eq!(parse_reply(b"+OK\r\n").ok(), Some(Reply::Ok(String::new())));
        assert_eq!(
            parse_reply(b"-ERR [AUTH] nope\r\n").ok(),
            Some(Reply::Err("[AUTH] nope".into()))
        );
        assert_eq!(
            parse_reply(b"+ \r\n").ok(),
            Some(Reply::Continue(String::new()))
        );
        assert!(parse_reply(b"+OKAY\r\n").is_err());
        assert!(parse_reply(b"hello\r\n").is_err());
        assert!(parse_reply(b"\xff\xfe\r\n").is_err());
    }

    #[test]
    fn stuffing_and_terminator() {
        assert!(is_terminator(b".\r\n"));
        assert!(is_terminator(b".\n"));
        assert!(!is_terminator(b"..\r\n"));
        assert_eq!(unstuff(b"..\r\n"), b".\r\n");
        assert_eq!(unstuff(b".hidden\r\n"), b"hidden\r\n");
        assert_eq!(unstuff(b"plain\r\n"), b"plain\r\n");
    }

    #[test]
    fn capabilities() {
        let c = Capabilities {
            lines: vec!["TOP".into(), "uidl".into(), "SASL plain LOGIN".into()],
        };
        assert!(c.has("UIDL"));
        assert!(!c.has("STLS"));
        assert_eq!(c.sasl_mechanisms(), vec!["PLAIN", "LOGIN"]);
    }

    #[test]
    fn uidls() {
        assert!(valid_uidl("00000001abcdef"));
        assert!(!valid_uidl(""));
        assert!(!valid_uidl("a b"));
        assert!(!valid_uidl("caf\u{e9}"));
    }

    #[test]
    fn auth_codes() {
        assert!(matches!(
            auth_failure("PASS", "[AUTH] bad".into()),
            Error::Auth(_)
        ));
        assert!(matches!(auth_failure("PASS", "bad".into()), Error::Auth(_)));
        assert!(matches!(
            auth_failure("PASS", "[IN-USE] locked".into()),
            Error::Refused { .. }
        ));
    }
}
