//! Shared by the push tests and the push benchmark: a `tidings serve` child over a private
//! Dovecot, a JMAP-over-WebSocket client (tokio-tungstenite) and an EventSource reader.
#![allow(clippy::unwrap_used, dead_code)]

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const WAIT: Duration = Duration::from_secs(15);

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn basic(user: &str, pw: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// A `tidings serve` child process; killed on drop.
pub struct Serve {
    pub port: u16,
    /// The config file it was started with (for `tidings account ... --config`).
    pub config: std::path::PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Serve {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Users `(tidings user, password, dovecot login, dovecot password)`, one IMAP account
/// each, in this order (so the first is account `a1`, the second `a2`, ...).
pub fn serve(
    bin: &Path,
    dovecot: &testkit::Dovecot,
    users: &[(&str, &str, &str, &str)],
) -> Result<Serve> {
    serve_with(bin, dovecot, users, "")
}

/// Like [`serve`], with extra top-level config lines.
pub fn serve_with(
    bin: &Path,
    dovecot: &testkit::Dovecot,
    users: &[(&str, &str, &str, &str)],
    extra: &str,
) -> Result<Serve> {
    let tidings_users: Vec<(&str, &str)> = users.iter().map(|(u, pw, _, _)| (*u, *pw)).collect();
    let accounts: Vec<(&str, &str, &str)> =
        users.iter().map(|(u, _, l, lpw)| (*u, *l, *lpw)).collect();
    serve_accounts(bin, dovecot, &tidings_users, &accounts, extra)
}

/// Many watched accounts: Tidings users `(name, password)` and IMAP accounts
/// `(tidings user, dovecot login, dovecot password)` (named after the login; the first is
/// `a1`), over IMAPS.
pub fn serve_accounts(
    bin: &Path,
    dovecot: &testkit::Dovecot,
    users: &[(&str, &str)],
    accounts: &[(&str, &str, &str)],
    extra: &str,
) -> Result<Serve> {
    serve_logged(bin, dovecot, users, accounts, extra, None)
}

/// `serve_accounts` with the server's log written to `log.0` at filter `log.1`
/// (`RUST_LOG` syntax); without, TIDINGS_TEST_SERVE_LOG=FILE keeps it.
pub fn serve_logged(
    bin: &Path,
    dovecot: &testkit::Dovecot,
    users: &[(&str, &str)],
    accounts: &[(&str, &str, &str)],
    extra: &str,
    log: Option<(&Path, &str)>,
) -> Result<Serve> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    // The push tests run once more on PostgreSQL in the test command: a fresh database of
    // the test binary's private PostgreSQL.
    let store = if std::env::var("TIDINGS_TEST_STORE").as_deref() == Ok("postgres") {
        format!(
            "store = \"{}\"\n",
            testkit::Postgres::shared()?.fresh_database()?
        )
    } else {
        String::new()
    };
    let mut cfg = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n{store}{extra}\n",
        dir.path().join("data").display(),
        dir.path().join("key/k").display()
    );
    for (u, pw) in users {
        cfg.push_str(&format!("[[user]]\nname = \"{u}\"\npassword = \"{pw}\"\n"));
    }
    for (u, login, lpw) in accounts {
        cfg.push_str(&format!(
            "[[account]]\nuser = \"{u}\"\nname = \"{login}\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"{login}\"\npassword = \"{lpw}\"\n\
             ca_file = \"{}\"\n",
            dovecot.imaps_port(),
            dovecot.ca_file().display()
        ));
    }
    let config = dir.path().join("t.toml");
    std::fs::write(&config, cfg)?;
    // TIDINGS_TEST_SERVE_LOG=FILE keeps the server's log (for a failing run).
    let stderr = match (log, std::env::var_os("TIDINGS_TEST_SERVE_LOG")) {
        (Some((f, _)), _) => Stdio::from(std::fs::File::create(f)?),
        (None, Some(f)) => Stdio::from(std::fs::File::create(f)?),
        (None, None) => Stdio::null(),
    };
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(stderr);
    if let Some((_, filter)) = log {
        cmd.env("RUST_LOG", filter);
    }
    let child = cmd.spawn()?;
    Ok(Serve {
        port,
        config,
        child,
        _dir: dir,
    })
}

impl Serve {
    /// The store file of this server's data dir.
    pub fn store_path(&self) -> std::path::PathBuf {
        self._dir.path().join("data/tidings.sqlite")
    }
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A JMAP-over-WebSocket client that keeps the StateChange messages it sees while
/// waiting for a Response.
pub struct Ws {
    pub socket: Socket,
    pub pushes: VecDeque<(Instant, Value)>,
    next_id: u64,
}

/// Opens the socket; the HTTP status of a refused upgrade is the error text.
pub async fn ws_connect(port: u16, auth: &str, origin: Option<&str>) -> Result<Ws> {
    let mut req = format!("ws://127.0.0.1:{port}/jmap/ws").into_client_request()?;
    let h = req.headers_mut();
    h.insert("authorization", auth.parse()?);
    h.insert("sec-websocket-protocol", "jmap".parse()?);
    if let Some(o) = origin {
        h.insert("origin", o.parse()?);
    }
    // Small buffers (many clients in one process) and no Nagle delay.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (socket, resp) =
        tokio_tungstenite::connect_async_with_config(req, Some(config), true).await?;
    let proto = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok());
    if proto != Some("jmap") {
        bail!("server chose subprotocol {proto:?}");
    }
    Ok(Ws {
        socket,
        pushes: VecDeque::new(),
        next_id: 1,
    })
}

/// The HTTP status a refused WebSocket upgrade got.
pub async fn ws_refused(port: u16, auth: &str, origin: Option<&str>, proto: bool) -> Result<u16> {
    let mut req = format!("ws://127.0.0.1:{port}/jmap/ws").into_client_request()?;
    let h = req.headers_mut();
    h.insert("authorization", auth.parse()?);
    if proto {
        h.insert("sec-websocket-protocol", "jmap".parse()?);
    }
    if let Some(o) = origin {
        h.insert("origin", o.parse()?);
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => bail!("the upgrade was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Ok(r.status().as_u16()),
        Err(e) => bail!("unexpected error {e}"),
    }
}

pub const USING: [&str; 2] = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"];

impl Ws {
    pub async fn send(&mut self, v: &Value) -> Result<()> {
        self.socket
            .send(Message::Text(v.to_string().into()))
            .await?;
        Ok(())
    }

    /// The next JSON message, within `within`.
    pub async fn recv(&mut self, within: Duration) -> Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => bail!("socket closed"),
                Ok(Some(m)) => m?,
            };
            match m {
                Message::Text(t) => return Ok(Some(serde_json::from_str(t.as_str())?)),
                Message::Close(_) => bail!("socket closed by the server"),
                _ => continue,
            }
        }
    }

    /// Sends a Request and returns its Response (StateChanges in between are kept).
    pub async fn call(&mut self, calls: Value) -> Result<Value> {
        let id = format!("r{}", self.next_id);
        self.next_id += 1;
        self.send(&json!({"@type": "Request", "id": id, "using": USING, "methodCalls": calls}))
            .await?;
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let Some(v) = self.recv(WAIT).await? else {
                break;
            };
            match v["@type"].as_str() {
                Some("StateChange") => self.pushes.push_back((Instant::now(), v)),
                Some("Response") if v["requestId"] == id.as_str() => return Ok(v),
                _ => bail!("unexpected message {v}"),
            }
        }
        bail!("no Response to {id}")
    }

    pub async fn enable(&mut self, types: Option<&[&str]>, push_state: Option<&str>) -> Result<()> {
        let mut v = json!({"@type": "WebSocketPushEnable", "dataTypes": types});
        if let Some(p) = push_state {
            v["pushState"] = json!(p);
        }
        self.send(&v).await
    }

    /// The next StateChange within `within`.
    pub async fn push(&mut self, within: Duration) -> Result<Option<Value>> {
        if let Some((_, v)) = self.pushes.pop_front() {
            return Ok(Some(v));
        }
        match self.recv(within).await? {
            None => Ok(None),
            Some(v) if v["@type"] == "StateChange" => Ok(Some(v)),
            Some(v) => bail!("unexpected message {v}"),
        }
    }

    /// Pushes until none came for `quiet`; returns them all (bounded by WAIT).
    pub async fn settle(&mut self, quiet: Duration) -> Result<Vec<Value>> {
        let start = Instant::now();
        let mut out = Vec::new();
        while start.elapsed() < WAIT {
            match self.push(quiet).await? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(out)
    }

    /// The ids of `Email/changes` from `since`: (created, updated, destroyed, newState).
    pub async fn email_changes(
        &mut self,
        account: &str,
        since: &str,
    ) -> Result<(Vec<String>, Vec<String>, Vec<String>, String)> {
        let r = self
            .call(json!([["Email/changes", {"accountId": account, "sinceState": since}, "c"]]))
            .await?;
        let a = &r["methodResponses"][0][1];
        if r["methodResponses"][0][0] != "Email/changes" {
            bail!("Email/changes failed: {r}");
        }
        let ids = |k: &str| -> Vec<String> {
            let mut v: Vec<String> = a[k]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        Ok((
            ids("created"),
            ids("updated"),
            ids("destroyed"),
            a["newState"].as_str().context("newState")?.to_string(),
        ))
    }

    /// Email ids of the account (all of them).
    pub async fn email_ids(&mut self, account: &str) -> Result<(Vec<String>, String)> {
        let r = self
            .call(json!([["Email/query", {"accountId": account}, "q"],
                         ["Email/get", {"accountId": account, "ids": [], "properties": ["id"]}, "g"]]))
            .await?;
        let ids = r["methodResponses"][0][1]["ids"]
            .as_array()
            .context("Email/query ids")?
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        let state = r["methodResponses"][1][1]["state"]
            .as_str()
            .context("Email/get state")?
            .to_string();
        Ok((ids, state))
    }

    /// Waits until the account shows `n` Emails.
    pub async fn wait_emails(&mut self, account: &str, n: usize) -> Result<Vec<String>> {
        let start = Instant::now();
        loop {
            let (ids, _) = self.email_ids(account).await?;
            if ids.len() == n {
                return Ok(ids);
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("{account} shows {} Emails, not {n}", ids.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Connects until the server answers (it is starting).
pub async fn ws_connect_when_up(port: u16, auth: &str) -> Result<Ws> {
    let start = Instant::now();
    loop {
        match ws_connect(port, auth, None).await {
            Ok(w) => return Ok(w),
            Err(e) if start.elapsed() > Duration::from_secs(30) => bail!("serve never up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The `changed` object of a StateChange for one account: type name -> state.
pub fn changed<'a>(v: &'a Value, account: &str) -> Option<&'a serde_json::Map<String, Value>> {
    v["changed"][account].as_object()
}

/// An EventSource reader over a raw HTTP/1.1 connection.
pub struct EventSource {
    stream: tokio::net::TcpStream,
    buf: String,
    pub status: u16,
    pub head: String,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

impl EventSource {
    pub async fn open(port: u16, auth: &str, query: &str, last_id: Option<&str>) -> Result<Self> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let last = last_id
            .map(|l| format!("Last-Event-ID: {l}\r\n"))
            .unwrap_or_default();
        stream
            .write_all(
                format!(
                    "GET /jmap/eventsource/?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                     Authorization: {auth}\r\nAccept: text/event-stream\r\n{last}\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut es = EventSource {
            stream,
            buf: String::new(),
            status: 0,
            head: String::new(),
        };
        let deadline = Instant::now() + WAIT;
        while !es.buf.contains("\r\n\r\n") {
            if Instant::now() > deadline || !es.read_some(WAIT).await? {
                bail!("no response head");
            }
        }
        let (head, rest) = es.buf.split_once("\r\n\r\n").context("head")?;
        es.head = head.to_string();
        es.status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("status")?;
        es.buf = rest.to_string();
        Ok(es)
    }

    /// Reads more; false at end of stream or timeout.
    async fn read_some(&mut self, within: Duration) -> Result<bool> {
        let mut b = [0u8; 8192];
        match tokio::time::timeout(within, self.stream.read(&mut b)).await {
            Err(_) => Ok(false),
            Ok(Ok(0)) => Ok(false),
            Ok(Ok(n)) => {
                self.buf.push_str(&String::from_utf8_lossy(&b[..n]));
                Ok(true)
            }
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// The next event (comments skipped) within `within`; None on timeout or end.
    pub async fn next(&mut self, within: Duration) -> Result<Option<Event>> {
        let deadline = Instant::now() + within;
        loop {
            // Chunk framing lines hold no ':' at line start and no "event:", so the event
            // lines are found by scanning for the blank line that ends an event.
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf[..end].to_string();
                self.buf.drain(..end + 2);
                let mut ev = Event {
                    name: String::new(),
                    id: None,
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        ev.name = v.into();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.into());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        ev.data = v.into();
                    }
                }
                if ev.name.is_empty() {
                    continue;
                }
                return Ok(Some(ev));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.read_some(left).await? {
                return Ok(None);
            }
        }
    }

    /// Whether the server ended the response (chunked terminator, or the socket closed)
    /// within `within`.
    pub async fn ended(&mut self, within: Duration) -> Result<bool> {
        let deadline = Instant::now() + within;
        loop {
            if self.buf.contains("0\r\n\r\n") {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let mut b = [0u8; 4096];
            match tokio::time::timeout(left, self.stream.read(&mut b)).await {
                Err(_) => return Ok(false),
                Ok(Ok(0)) => return Ok(true),
                Ok(Ok(n)) => self.buf.push_str(&String::from_utf8_lossy(&b[..n])),
                Ok(Err(_)) => return Ok(true),
            }
        }
    }
}
