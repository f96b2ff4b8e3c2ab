//! A Gmail-shaped IMAP server on free loopback ports: `hoodiecrow-imap` (npm) run by
//! `hoodiecrow/server.mjs` under Node, with X-GM-EXT-1 advertised, X-GM-THRID added, the
//! mailbox tree Gmail has (INBOX, `[Gmail]/All Mail` with `\All`, Sent Mail, Drafts,
//! Important, Starred, Trash, Spam, user label folders) and Gmail's rule that the label
//! folders and X-GM-LABELS always agree (see the script's header for what it adds to
//! hoodiecrow and why).
//!
//! The test talks to it over a small HTTP control API: add a message with labels, change
//! labels as another client would, read a message as the server sees it (labels, flags,
//! folders, and how often its header and body were FETCHed).
//!
//! Needs `node` and `npm ci` run in `crates/testkit/hoodiecrow` (scripts/lib.sh does it).

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The login the server accepts.
pub const USER: &str = "alice@gmail.test";
pub const PASSWORD: &str = "secret";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Ways the server can lie about X-GM-EXT-1 (it still advertises it).
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// No folder carries `\All`.
    pub no_all_mail: bool,
    /// X-GM-MSGID is answered with a non-number.
    pub bad_msgid: bool,
    /// X-GM-EXT-1 is not advertised (the same server as a client unaware of Gmail sees it).
    pub no_extension: bool,
    /// User label folders to create (default `Work`, `Travel`).
    pub labels: Option<Vec<String>>,
}

/// A message as the server sees it.
#[derive(Debug, Clone)]
pub struct ServerMessage {
    pub msgid: String,
    pub labels: Vec<String>,
    pub flags: Vec<String>,
    /// The folders holding a copy, sorted.
    pub folders: Vec<String>,
    /// FETCHes of BODY[HEADER] (or RFC822.HEADER) of any of its copies.
    pub header_fetches: u64,
    /// FETCHes of BODY[] (or RFC822) of any of its copies.
    pub body_fetches: u64,
}

pub struct Server {
    child: Option<Child>,
    imap: u16,
    control: u16,
}

impl Server {
    pub fn start(opts: ServerOptions) -> Result<Server> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hoodiecrow");
        if !dir.join("node_modules/hoodiecrow-imap").is_dir() {
            bail!(
                "hoodiecrow-imap is not installed: run `npm ci` in {} (scripts/lib.sh does)",
                dir.display()
            );
        }
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("server.mjs"))
            .args(["--user", USER, "--pass", PASSWORD])
            .current_dir(&dir)
            // Our end of stdin closing tells the server to exit, even if we are killed.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if opts.no_all_mail {
            cmd.arg("--no-all-mail");
        }
        if opts.bad_msgid {
            cmd.arg("--bad-msgid");
        }
        if opts.no_extension {
            cmd.arg("--no-x-gm-ext");
        }
        if let Some(labels) = &opts.labels {
            cmd.arg("--labels").arg(labels.join(","));
        }
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
                return Err(anyhow!(e).context("reading the Gmail server's first line"));
            }
            Err(_) => {
                let _ = child.kill();
                bail!("the Gmail server did not start within {START_TIMEOUT:?}");
            }
        };
        let v: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("Gmail server said {line:?}"))?;
        let port = |k: &str| {
            v[k].as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .with_context(|| format!("Gmail server {k} port"))
        };
        Ok(Server {
            imap: port("imap")?,
            control: port("control")?,
            child: Some(child),
        })
    }

    /// The IMAP port (plain, no TLS).
    pub fn port(&self) -> u16 {
        self.imap
    }

    /// Adds a message with these labels (`\Inbox`, `\Sent`, `\Draft`, `\Important`, or a
    /// user label) and flags; `thrid` is its X-GM-THRID (default: its own X-GM-MSGID).
    /// Returns its X-GM-MSGID.
    pub fn add_message(
        &self,
        raw: &str,
        labels: &[&str],
        flags: &[&str],
        thrid: Option<&str>,
    ) -> Result<String> {
        let v = self.call(
            "/add",
            &json!({ "raw": raw, "labels": labels, "flags": flags, "thrid": thrid }),
        )?;
        v["msgid"]
            .as_str()
            .map(str::to_string)
            .context("no msgid in the answer")
    }

    /// Another client adds and removes labels of a message (its folders follow).
    pub fn change_labels(&self, msgid: &str, add: &[&str], remove: &[&str]) -> Result<()> {
        self.call(
            "/labels",
            &json!({ "msgid": msgid, "add": add, "remove": remove }),
        )?;
        Ok(())
    }

    /// A message as the server sees it now.
    pub fn message(&self, msgid: &str) -> Result<ServerMessage> {
        let v = self.call("/message", &json!({ "msgid": msgid }))?;
        let strings = |k: &str| -> Vec<String> {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(ServerMessage {
            msgid: msgid.to_string(),
            labels: strings("labels"),
            flags: strings("flags"),
            folders: strings("folders"),
            header_fetches: v["counters"]["header"].as_u64().unwrap_or(0),
            body_fetches: v["counters"]["body"].as_u64().unwrap_or(0),
        })
    }

    /// FETCHes of headers and of whole bodies so far, all messages together.
    pub fn fetch_counts(&self) -> Result<(u64, u64)> {
        let v = self.call("/counters", &json!({}))?;
        Ok((
            v["header"].as_u64().unwrap_or(0),
            v["body"].as_u64().unwrap_or(0),
        ))
    }

    /// Stops the server (its ports then refuse connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One JSON POST to the control API on loopback.
    fn call(&self, path: &str, body: &Value) -> Result<Value> {
        let body = body.to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.control))?;
        s.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        s.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.control,
            body.len()
        )?;
        let mut raw = Vec::new();
        s.take(1 << 20).read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, rest) = text.split_once("\r\n\r\n").context("HTTP answer")?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("HTTP status")?;
        if status != 200 {
            bail!("Gmail server {path}: HTTP {status}: {rest}");
        }
        Ok(serde_json::from_str(rest)?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
