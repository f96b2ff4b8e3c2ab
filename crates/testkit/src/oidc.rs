//! A real OAuth 2.0 authorization server on a free loopback port: `oidc-provider` (npm)
//! run by `oidc/server.mjs` under Node. It serves OpenID discovery, the token endpoint
//! (`refresh_token` grant, RFC 6749 6), introspection (RFC 7662, what Dovecot asks with
//! [`crate::DovecotOAuth2`]) and revocation (RFC 7009).
//!
//! Clients: `tidings` / `tidings-secret` (confidential, `client_secret_post`),
//! `tidings-public` (public, no secret) and `dovecot` / `dovecot-secret` (the resource
//! server, introspection only).
//!
//! Needs `node` and `npm ci` run in `crates/testkit/oidc` (scripts/lib.sh does it).

use anyhow::{Context, Result, anyhow, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The confidential client Tidings authenticates as.
pub const CLIENT_ID: &str = "tidings";
pub const CLIENT_SECRET: &str = "tidings-secret";
/// The public client (PKCE-style: no secret at the token endpoint).
pub const PUBLIC_CLIENT_ID: &str = "tidings-public";

/// How long the Node process may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one harness request to the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct AuthServerOptions {
    /// Lifetime of issued access tokens (default one hour).
    pub access_token_ttl: Option<Duration>,
    /// Issue a new refresh token on every refresh (and invalidate the old one).
    pub rotate_refresh_tokens: bool,
    /// The device authorization grant (RFC 8628) for the `tidings` client, with
    /// oidc-provider's development login and consent pages (see [`AuthServer::approve_device`]).
    pub device_flow: bool,
    /// How long a device code lives (default 10 minutes).
    pub device_code_ttl: Option<Duration>,
}

pub struct AuthServer {
    child: Option<Child>,
    port: u16,
}

impl AuthServer {
    pub fn start(opts: AuthServerOptions) -> Result<AuthServer> {
        Self::start_with_args(opts, &[])
    }

    /// A server a browser can sign in at: oidc-provider's development login and consent
    /// pages (any login name, any password; the name becomes `sub` and `email`), and the
    /// `tidings` clients also accept `redirect_uris` (a sign-in's callback).
    pub fn start_for_sign_in(
        opts: AuthServerOptions,
        redirect_uris: &[String],
    ) -> Result<AuthServer> {
        let mut args = vec!["--dev-interactions".to_string()];
        for r in redirect_uris {
            args.push("--redirect-uri".into());
            args.push(r.clone());
        }
        Self::start_with_args(opts, &args)
    }

    fn start_with_args(opts: AuthServerOptions, extra: &[String]) -> Result<AuthServer> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc");
        if !dir.join("node_modules/oidc-provider").is_dir() {
            bail!(
                "oidc-provider is not installed: run `npm ci` in {} (scripts/lib.sh does)",
                dir.display()
            );
        }
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("server.mjs"))
            .current_dir(&dir)
            // Our end of stdin closing tells the server to exit, even if we are killed.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(ttl) = opts.access_token_ttl {
            cmd.arg("--access-ttl")
                .arg(ttl.as_secs().max(1).to_string());
        }
        if opts.rotate_refresh_tokens {
            cmd.arg("--rotate");
        }
        if opts.device_flow {
            cmd.arg("--device-flow");
        }
        if let Some(ttl) = opts.device_code_ttl {
            cmd.arg("--device-ttl")
                .arg(ttl.as_secs().max(1).to_string());
        }
        cmd.args(extra);
        let mut child = cmd
            .spawn()
            .context("starting node (is Node.js installed?)")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let r = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(r);
            // Keep draining: Node dies of EPIPE when it writes to a closed stdout.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                let _ = child.kill();
                return Err(anyhow!(e).context("reading the auth server's first line"));
            }
            Err(_) => {
                let _ = child.kill();
                bail!("the auth server did not start within {START_TIMEOUT:?}");
            }
        };
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("auth server said {line:?}"))?;
        let port = v["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .context("auth server port")?;
        Ok(AuthServer {
            child: Some(child),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The issuer; OpenID discovery is at `{issuer}/.well-known/openid-configuration`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer())
    }

    /// The introspection URL with Dovecot's client credentials in it, for
    /// [`crate::DovecotOAuth2`].
    pub fn introspection_url(&self) -> String {
        format!(
            "http://dovecot:dovecot-secret@127.0.0.1:{}/token/introspection",
            self.port
        )
    }

    /// A refresh token of `user` for `client`, as if the user had signed in and consented
    /// in a browser.
    pub fn mint_refresh_token(&self, user: &str, client: &str) -> Result<String> {
        let path = format!(
            "/test/mint?user={}&client={}",
            form_encode(user),
            form_encode(client)
        );
        let (status, body) = self.post(&path, "")?;
        if status != 200 {
            bail!("minting a refresh token: HTTP {status}: {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        v["refresh_token"]
            .as_str()
            .map(str::to_string)
            .context("no refresh_token in the answer")
    }

    /// A fresh access token for a refresh token (the confidential client).
    pub fn access_token(&self, refresh_token: &str) -> Result<String> {
        let body = format!(
            "grant_type=refresh_token&refresh_token={}&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}",
            form_encode(refresh_token)
        );
        let (status, body) = self.post("/token", &body)?;
        if status != 200 {
            bail!("refreshing: HTTP {status}: {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        v["access_token"]
            .as_str()
            .map(str::to_string)
            .context("no access_token in the answer")
    }

    /// Revokes a refresh token (RFC 7009): its grant and every token of it end.
    pub fn revoke(&self, refresh_token: &str) -> Result<()> {
        let body = format!(
            "token={}&token_type_hint=refresh_token&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}",
            form_encode(refresh_token)
        );
        let (status, body) = self.post("/token/revocation", &body)?;
        if status != 200 {
            bail!("revoking: HTTP {status}: {body}");
        }
        Ok(())
    }

    /// Ends every access token issued to `user` (their grants and refresh tokens stay
    /// valid); returns how many there were.
    pub fn revoke_access_tokens(&self, user: &str) -> Result<u64> {
        let (status, body) = self.post(
            &format!("/test/revoke-access-tokens?user={}", form_encode(user)),
            "",
        )?;
        if status != 200 {
            bail!("revoking access tokens: HTTP {status}: {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        v["revoked"].as_u64().context("no count in the answer")
    }

    /// The user side of a device sign-in (RFC 8628 3.3), as a person's browser does it:
    /// the code entry page, the confirmation, then oidc-provider's development login (as
    /// `user`) and consent pages, following the redirects with the cookies they set.
    pub fn approve_device(&self, user_code: &str, user: &str) -> Result<()> {
        let mut b = Browser::default();
        let interaction = self.confirm_device(&mut b, user_code, false)?;
        let resume = self.submit_interaction(
            &mut b,
            &interaction,
            &format!("prompt=login&login={}&password=x", form_encode(user)),
        )?;
        let (status, head, _) = self.request(&mut b, "GET", &resume, "")?;
        let consent = location(&head).filter(|_| status == 303).with_context(|| {
            format!("after the login, HTTP {status} instead of the consent page")
        })?;
        let resume = self.submit_interaction(&mut b, &consent, "prompt=consent")?;
        let (status, _, body) = self.request(&mut b, "GET", &resume, "")?;
        if status != 200 || !body.contains("Sign-in Success") {
            bail!("the device sign-in did not succeed: HTTP {status}");
        }
        Ok(())
    }

    /// The person declines at the confirmation page ("Abort").
    pub fn deny_device(&self, user_code: &str) -> Result<()> {
        let mut b = Browser::default();
        self.confirm_device(&mut b, user_code, true)?;
        Ok(())
    }

    /// Enters the user code and confirms (or aborts); returns the interaction's path.
    fn confirm_device(&self, b: &mut Browser, user_code: &str, abort: bool) -> Result<String> {
        let (status, _, page) = self.request(b, "GET", "/device", "")?;
        if status != 200 {
            bail!("the code entry page: HTTP {status}");
        }
        let form = format!("xsrf={}&user_code={}", xsrf(&page)?, form_encode(user_code));
        let (status, _, page) = self.request(b, "POST", "/device", &form)?;
        if status != 200 {
            bail!("entering the user code: HTTP {status}");
        }
        let answer = if abort { "abort=yes" } else { "confirm=yes" };
        let form = format!(
            "xsrf={}&user_code={}&{answer}",
            xsrf(&page)?,
            form_encode(user_code)
        );
        let (status, head, _) = self.request(b, "POST", "/device", &form)?;
        if abort {
            return Ok(String::new());
        }
        location(&head)
            .filter(|_| status == 303)
            .with_context(|| format!("confirming the code: HTTP {status}, no login page"))
    }

    /// Submits a development interaction form; returns where it sends the browser back.
    fn submit_interaction(&self, b: &mut Browser, path: &str, form: &str) -> Result<String> {
        let (status, head, _) = self.request(b, "POST", path, form)?;
        location(&head)
            .filter(|_| status == 303)
            .with_context(|| format!("submitting {path}: HTTP {status}"))
    }

    /// One request with the browser's cookies (sent whatever their path: the names the
    /// provider reads are distinct); remembers the cookies the answer sets.
    fn request(
        &self,
        b: &mut Browser,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, String, String)> {
        let origin = self.issuer();
        let path = path.strip_prefix(&origin).unwrap_or(path);
        let cookies = b
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        s.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Cookie: {cookies}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let mut raw = Vec::new();
        s.take(1 << 20).read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, rest) = text.split_once("\r\n\r\n").context("HTTP answer")?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("HTTP status")?;
        for line in head.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if !name.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let pair = value.trim().split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    b.cookies.retain(|(n, _)| n != k);
                } else if let Some(c) = b.cookies.iter_mut().find(|(n, _)| n == k) {
                    c.1 = v.to_string();
                } else {
                    b.cookies.push((k.to_string(), v.to_string()));
                }
            }
        }
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        Ok((status, head.to_string(), body))
    }

    /// Stops the server (its port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One HTTP/1.1 POST on loopback, `Connection: close`; returns status and body.
    fn post(&self, path: &str, body: &str) -> Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        s.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let mut raw = Vec::new();
        s.take(1 << 20).read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, rest) = text.split_once("\r\n\r\n").context("HTTP answer")?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("HTTP status")?;
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        Ok((status, body))
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The cookies of one person's browser session.
#[derive(Default)]
struct Browser {
    cookies: Vec<(String, String)>,
}

/// The `Location` of an answer.
fn location(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("location")
            .then(|| value.trim().to_string())
    })
}

/// The anti-forgery token of a device flow form.
fn xsrf(page: &str) -> Result<String> {
    let (_, rest) = page
        .split_once("name=\"xsrf\" value=\"")
        .context("no xsrf field in the page")?;
    Ok(rest.split('"').next().unwrap_or("").to_string())
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    for _ in 0..10_000 {
        let Some((len, rest)) = s.split_once("\r\n") else {
            break;
        };
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `application/x-www-form-urlencoded` for a value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
