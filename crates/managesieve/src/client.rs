//! The ManageSieve connection and its commands (RFC 5804 2).

use crate::error::{Error, Result};
use crate::parse::{Limits, Response, Status, Token, parse_response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use mail_net::Stream;
use mail_net::sasl::{self, OAuthMechanism};
use mail_types::Security;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Where and how to connect.
#[derive(Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// The roots to trust (the engine shares one per CA file).
    pub tls: Arc<rustls::ClientConfig>,
    /// For the TCP connect, the TLS handshake and the greeting together.
    pub connect_timeout: Duration,
    /// For each response.
    pub read_timeout: Duration,
    pub limits: Limits,
}

impl Config {
    pub fn new(
        host: String,
        port: u16,
        security: Security,
        tls: Arc<rustls::ClientConfig>,
    ) -> Config {
        Config {
            host,
            port,
            security,
            tls,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

/// How to log in. `Debug` never shows a secret.
pub enum Auth<'a> {
    Plain {
        username: &'a str,
        password: &'a str,
    },
    /// An OAuth 2.0 access token: OAUTHBEARER (RFC 7628) when offered, else XOAUTH2.
    OAuth2 { username: &'a str, token: &'a str },
}

impl std::fmt::Debug for Auth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Plain { username, .. } => write!(f, "Plain({username})"),
            Auth::OAuth2 { username, .. } => write!(f, "OAuth2({username})"),
        }
    }
}

/// What the server advertises (RFC 5804 1.7).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capabilities {
    pub implementation: Option<String>,
    /// The Sieve extensions the server's interpreter supports (`SIEVE`), lower case.
    pub sieve: Vec<String>,
    /// SASL mechanisms, upper case.
    pub sasl: Vec<String>,
    pub starttls: bool,
    pub max_redirects: Option<u32>,
    /// URI schemes of the enotify extension (`NOTIFY`).
    pub notify: Vec<String>,
    pub version: Option<String>,
}

impl Capabilities {
    fn from_lines(lines: &[Vec<Token>]) -> Capabilities {
        let mut c = Capabilities::default();
        for line in lines {
            let (Some(Token::Str(name)), value) = (line.first(), line.get(1)) else {
                continue;
            };
            let value = match value {
                Some(Token::Str(v)) => Some(String::from_utf8_lossy(v).into_owned()),
                _ => None,
            };
            let words = |v: &Option<String>| -> Vec<String> {
                v.as_deref()
                    .unwrap_or("")
                    .split_ascii_whitespace()
                    .map(str::to_owned)
                    .collect()
            };
            match String::from_utf8_lossy(name).to_ascii_uppercase().as_str() {
                "IMPLEMENTATION" => c.implementation = value,
                "SIEVE" => {
                    c.sieve = words(&value)
                        .into_iter()
                        .map(|w| w.to_ascii_lowercase())
                        .collect()
                }
                "SASL" => {
                    c.sasl = words(&value)
                        .into_iter()
                        .map(|w| w.to_ascii_uppercase())
                        .collect()
                }
                "STARTTLS" => c.starttls = true,
                "MAXREDIRECTS" => c.max_redirects = value.and_then(|v| v.trim().parse().ok()),
                "NOTIFY" => {
                    c.notify = words(&value)
                        .into_iter()
                        .map(|w| w.to_ascii_lowercase())
                        .collect()
                }
                "VERSION" => c.version = value,
                _ => {}
            }
        }
        c
    }

    pub fn has_extension(&self, name: &str) -> bool {
        self.sieve.iter().any(|e| e.eq_ignore_ascii_case(name))
    }
}

/// One entry of LISTSCRIPTS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptInfo {
    pub name: String,
    pub active: bool,
}

/// A connection to a ManageSieve server.
pub struct Client {
    stream: Stream,
    buf: Vec<u8>,
    config: Config,
    capabilities: Capabilities,
}

impl Client {
    /// Connects, reads the greeting (the capability list, RFC 5804 1.7) and, with
    /// `Security::Starttls`, upgrades to TLS and reads the capabilities again (RFC 5804
    /// 2.2: they may differ after TLS). Not logged in yet.
    pub async fn connect(config: Config) -> Result<Client> {
        let limit = config.connect_timeout;
        tokio::time::timeout(limit, Self::connect_inner(config))
            .await
            .map_err(|_| Error::Timeout("connect"))?
    }

    async fn connect_inner(config: Config) -> Result<Client> {
        let tcp = TcpStream::connect((config.host.as_str(), config.port)).await?;
        let _ = tcp.set_nodelay(true);
        let stream = match config.security {
            Security::Tls => Stream::Tls(Box::new(tls(&config, tcp).await?)),
            Security::Starttls | Security::None => Stream::Plain(tcp),
        };
        let mut client = Client {
            stream,
            buf: Vec::new(),
            config,
            capabilities: Capabilities::default(),
        };
        let greeting = client.read_response("greeting").await?;
        client.capabilities = Capabilities::from_lines(&greeting.data);
        if client.config.security == Security::Starttls {
            if !client.capabilities.starttls {
                return Err(Error::Unsupported("STARTTLS"));
            }
            client.command("STARTTLS", b"STARTTLS\r\n").await?;
            // Bytes the server sent before the handshake would be an injection attempt.
            if !client.buf.is_empty() {
                return Err(Error::Tls(
                    "data after STARTTLS before the handshake".into(),
                ));
            }
            let Stream::Plain(tcp) = std::mem::replace(&mut client.stream, Stream::Gone) else {
                return Err(Error::Tls("STARTTLS on a TLS connection".into()));
            };
            client.stream = Stream::Tls(Box::new(tls(&client.config, tcp).await?));
            let again = client.read_response("capabilities after STARTTLS").await?;
            client.capabilities = Capabilities::from_lines(&again.data);
        }
        Ok(client)
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// AUTHENTICATE with an initial response (RFC 5804 2.1), then CAPABILITY again: a
    /// server may say more to a logged-in user (MAXREDIRECTS, OWNER).
    pub async fn authenticate(&mut self, auth: &Auth<'_>) -> Result<()> {
        let (mechanism, initial) = match auth {
            Auth::Plain { username, password } => {
                if !self.offers("PLAIN") {
                    return Err(Error::Unsupported("SASL PLAIN"));
                }
                ("PLAIN", sasl::plain(username, password))
            }
            Auth::OAuth2 { username, token } => {
                let mech = OAuthMechanism::choose(|m| self.offers(m))
                    .ok_or(Error::Unsupported("SASL OAUTHBEARER or XOAUTH2"))?;
                // RFC 7628 3.1: the same message as IMAP and POP3 send, host and port
                // included (servers that check the token's audience use them).
                let host = self.config.host.as_str();
                let initial = mech.initial_response(username, token, host, self.config.port);
                (mech.name(), initial)
            }
        };
        let mut line = format!("AUTHENTICATE \"{mechanism}\" ").into_bytes();
        push_string(&mut line, B64.encode(&initial).as_bytes());
        line.extend_from_slice(b"\r\n");
        self.write(&line).await?;
        // A refused token comes as a challenge carrying the error (RFC 7628 3.2.2), which
        // the client answers with an empty response to get the final NO. Bounded: a
        // server that keeps challenging is broken.
        for _ in 0..3 {
            match self.read_line_or_response("AUTHENTICATE").await? {
                Either::Challenge => self.write(b"\"\"\r\n").await?,
                Either::Final(r) => {
                    return match r.status {
                        Status::Ok => {
                            self.capability().await?;
                            Ok(())
                        }
                        Status::No => Err(Error::Auth(r.text.unwrap_or_default())),
                        Status::Bye => Err(Error::Bye {
                            code: r.code,
                            text: r.text.unwrap_or_default(),
                        }),
                    };
                }
            }
        }
        Err(Error::Auth("the server kept challenging".into()))
    }

    fn offers(&self, mechanism: &str) -> bool {
        self.capabilities.sasl.iter().any(|m| m == mechanism)
    }

    /// CAPABILITY (RFC 5804 2.4): refreshes [`Client::capabilities`].
    pub async fn capability(&mut self) -> Result<&Capabilities> {
        let r = self.command("CAPABILITY", b"CAPABILITY\r\n").await?;
        self.capabilities = Capabilities::from_lines(&r.data);
        Ok(&self.capabilities)
    }

    /// LISTSCRIPTS (RFC 5804 2.7).
    pub async fn list_scripts(&mut self) -> Result<Vec<ScriptInfo>> {
        let r = self.command("LISTSCRIPTS", b"LISTSCRIPTS\r\n").await?;
        let mut out = Vec::with_capacity(r.data.len());
        for line in &r.data {
            match line.as_slice() {
                [Token::Str(name)] => out.push(ScriptInfo {
                    name: String::from_utf8_lossy(name).into_owned(),
                    active: false,
                }),
                [Token::Str(name), Token::Atom(a)] if a.eq_ignore_ascii_case("ACTIVE") => {
                    out.push(ScriptInfo {
                        name: String::from_utf8_lossy(name).into_owned(),
                        active: true,
                    })
                }
                _ => {
                    return Err(Error::Protocol(crate::parse::ParseError::Malformed(
                        "LISTSCRIPTS line",
                    )));
                }
            }
        }
        Ok(out)
    }

    /// GETSCRIPT (RFC 5804 2.9): the script's bytes.
    pub async fn get_script(&mut self, name: &str) -> Result<Vec<u8>> {
        let line = command_line("GETSCRIPT", &[name.as_bytes()]);
        let mut r = self.command("GETSCRIPT", &line).await?;
        match r.data.pop().and_then(|mut l| l.pop()) {
            Some(Token::Str(s)) if r.data.is_empty() => Ok(s),
            _ => Err(Error::Protocol(crate::parse::ParseError::Malformed(
                "GETSCRIPT without one string",
            ))),
        }
    }

    /// PUTSCRIPT (RFC 5804 2.6): stores (or replaces) a script after the server checked
    /// it. Returns the server's warnings (the `WARNINGS` code), if any.
    pub async fn put_script(&mut self, name: &str, content: &[u8]) -> Result<Option<String>> {
        self.check_size(content)?;
        let line = command_line("PUTSCRIPT", &[name.as_bytes(), content]);
        let r = self.command("PUTSCRIPT", &line).await?;
        Ok(warnings(&r))
    }

    /// CHECKSCRIPT (RFC 5804 2.12): whether the server would accept the script; its
    /// warnings, if any.
    pub async fn check_script(&mut self, content: &[u8]) -> Result<Option<String>> {
        self.check_size(content)?;
        let line = command_line("CHECKSCRIPT", &[content]);
        let r = self.command("CHECKSCRIPT", &line).await?;
        Ok(warnings(&r))
    }

    /// SETACTIVE (RFC 5804 2.8); the empty name deactivates every script.
    pub async fn set_active(&mut self, name: &str) -> Result<()> {
        let line = command_line("SETACTIVE", &[name.as_bytes()]);
        self.command("SETACTIVE", &line).await.map(drop)
    }

    /// DELETESCRIPT (RFC 5804 2.10): NO with code ACTIVE for the active script.
    pub async fn delete_script(&mut self, name: &str) -> Result<()> {
        let line = command_line("DELETESCRIPT", &[name.as_bytes()]);
        self.command("DELETESCRIPT", &line).await.map(drop)
    }

    /// RENAMESCRIPT (RFC 5804 2.11a).
    pub async fn rename_script(&mut self, old: &str, new: &str) -> Result<()> {
        let line = command_line("RENAMESCRIPT", &[old.as_bytes(), new.as_bytes()]);
        self.command("RENAMESCRIPT", &line).await.map(drop)
    }

    /// HAVESPACE (RFC 5804 2.5): `Ok(())` when a script of `size` bytes named `name` would
    /// fit; NO with a QUOTA code when not.
    pub async fn have_space(&mut self, name: &str, size: u64) -> Result<()> {
        let mut line = b"HAVESPACE ".to_vec();
        push_string(&mut line, name.as_bytes());
        line.extend_from_slice(format!(" {size}\r\n").as_bytes());
        self.command("HAVESPACE", &line).await.map(drop)
    }

    /// LOGOUT (RFC 5804 2.3). Errors are of no interest: the connection ends anyway.
    pub async fn logout(mut self) {
        if self.write(b"LOGOUT\r\n").await.is_ok() {
            let _ = self.read_response("LOGOUT").await;
        }
        let _ = self.stream.shutdown().await;
    }

    fn check_size(&self, content: &[u8]) -> Result<()> {
        if content.len() > self.config.limits.max_literal {
            return Err(Error::Invalid("script larger than the client's limit"));
        }
        Ok(())
    }

    /// Sends one command and reads its response; NO and BYE become errors.
    async fn command(&mut self, name: &'static str, line: &[u8]) -> Result<Response> {
        self.write(line).await?;
        let r = self.read_response(name).await?;
        match r.status {
            Status::Ok => Ok(r),
            Status::No => Err(Error::No {
                command: name,
                code: r.code,
                text: r.text.unwrap_or_default(),
            }),
            Status::Bye => Err(Error::Bye {
                code: r.code,
                text: r.text.unwrap_or_default(),
            }),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let limit = self.config.read_timeout;
        tokio::time::timeout(limit, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| Error::Timeout("write"))??;
        Ok(())
    }

    /// Reads more bytes into the buffer; the caller has bounded what it will hold.
    async fn fill(&mut self, what: &'static str) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(self.config.read_timeout, self.stream.read(&mut chunk))
            .await
            .map_err(|_| Error::Timeout(what))??;
        if n == 0 {
            return Err(Error::Closed);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_response(&mut self, what: &'static str) -> Result<Response> {
        loop {
            if let Some((r, used)) = parse_response(&self.buf, &self.config.limits)? {
                self.buf.drain(..used);
                return Ok(r);
            }
            self.fill(what).await?;
        }
    }

    /// During AUTHENTICATE: a lone string line is a server challenge (RFC 5804 2.1).
    async fn read_line_or_response(&mut self, what: &'static str) -> Result<Either> {
        loop {
            if let Some((tokens, used)) = crate::parse::parse_line(&self.buf, &self.config.limits)?
            {
                if crate::parse::final_line(&tokens)?.is_none() {
                    self.buf.drain(..used);
                    return Ok(Either::Challenge);
                }
                return Ok(Either::Final(self.read_response(what).await?));
            }
            self.fill(what).await?;
        }
    }
}

enum Either {
    Challenge,
    Final(Response),
}

async fn tls(config: &Config, tcp: TcpStream) -> Result<TlsStream<TcpStream>> {
    Ok(mail_net::tls_handshake(config.tls.clone(), &config.host, tcp).await?)
}

fn warnings(r: &Response) -> Option<String> {
    r.code
        .as_ref()
        .filter(|c| c.name() == "WARNINGS")
        .map(|_| r.text.clone().unwrap_or_default())
}

/// `NAME arg arg CRLF` with each argument a string.
fn command_line(name: &str, args: &[&[u8]]) -> Vec<u8> {
    let mut line = name.as_bytes().to_vec();
    for a in args {
        line.push(b' ');
        push_string(&mut line, a);
    }
    line.extend_from_slice(b"\r\n");
    line
}

/// A quoted string when it can be one, else a non-synchronizing literal `{n+}` (RFC 5804
/// 4: literal-c2s, the only literal form a client sends).
fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= 1024 && s.iter().all(|&c| c != 0 && c != b'\r' && c != b'\n');
    if quotable {
        out.push(b'"');
        for &c in s {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}+}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        let mut out = Vec::new();
        push_string(&mut out, b"a\"b\\c");
        assert_eq!(out, b"\"a\\\"b\\\\c\"");
        let mut out = Vec::new();
        push_string(&mut out, b"x\r\ny");
        assert_eq!(out, b"{4+}\r\nx\r\ny");
    }

    #[test]
    fn capabilities_of_pigeonhole() {
        let buf = b"\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\"SIEVE\" \"fileinto Vacation date\"\r\n\"NOTIFY\" \"mailto\"\r\n\"SASL\" \"plain login\"\r\n\"STARTTLS\"\r\n\"MAXREDIRECTS\" \"4\"\r\n\"VERSION\" \"1.0\"\r\nOK \"ready\"\r\n";
        let (r, _) = parse_response(buf, &Limits::default()).unwrap().unwrap();
        let c = Capabilities::from_lines(&r.data);
        assert_eq!(c.implementation.as_deref(), Some("Dovecot Pigeonhole"));
        assert!(c.has_extension("vacation") && c.has_extension("date"));
        assert_eq!(c.sasl, vec!["PLAIN", "LOGIN"]);
        assert!(c.starttls);
        assert_eq!(c.max_redirects, Some(4));
        assert_eq!(c.notify, vec!["mailto"]);
    }
}
