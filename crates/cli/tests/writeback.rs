//! Write-back against the private Dovecot: changes made through JMAP on a live `tidings
//! serve` reach the server, as a second, independent IMAP client (testkit's ImapClient)
//! sees them; they survive `kill -9`, a server that is down for a while, and another
//! device changing the same messages.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, SeedMessage, corpus};

const USER: &str = "alice@example.org";
const PASS: &str = "imap-pw";
const BASIC: &str = "Basic YWxpY2U6cHc="; // alice:pw

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Env {
    dovecot: Dovecot,
    _dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Dovecot with `n` messages in INBOX (subjects `m0`...), one in Archive, and a running
/// `tidings serve` that has synced them.
fn start(n: usize) -> Result<Env> {
    start_with(n, false)
}

/// With `second`, alice also has an account "other" (bob@example.org, one message).
fn start_with(n: usize, second: bool) -> Result<Env> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    let seed = |subject: &str, i: usize| SeedMessage {
        raw: corpus::message("bob@example.org", USER, subject, "hello"),
        flags: Vec::new(),
        internal_date: 1_700_000_000 + i as i64,
    };
    let inbox: Vec<SeedMessage> = (0..n).map(|i| seed(&format!("m{i}"), i)).collect();
    dovecot.seed(USER, "INBOX", &inbox)?;
    dovecot.seed(USER, "Archive", &[seed("archived", 0)])?;
    let mut extra = String::new();
    if second {
        dovecot.add_user("bob@example.org", "bob-pw")?;
        dovecot.seed("bob@example.org", "INBOX", &[seed("bobs", 0)])?;
        extra = format!(
            "[[account]]\nuser = \"alice\"\nname = \"other\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"bob@example.org\"\npassword = \"bob-pw\"\n\
             ca_file = \"{}\"\n",
            dovecot.imaps_port(),
            dovecot.ca_file().display()
        );
    }
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"{USER}\"\npassword = \"{PASS}\"\n\
             ca_file = \"{}\"\n{extra}",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.imaps_port(),
            dovecot.ca_file().display()
        ),
    )?;
    let mut env = Env {
        dovecot,
        _dir: dir,
        config,
        port,
        child: None,
    };
    env.serve()?;
    env.wait(Duration::from_secs(60), "the initial sync", |e| {
        Ok(e.total("INBOX")? == n as u64)
    })?;
    Ok(env)
}

impl Env {
    fn serve(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.config.with_file_name("serve.log"))?;
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_tidings"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .env(
                    "RUST_LOG",
                    std::env::var("WRITEBACK_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()?,
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if self
                .post(&json!({"using": ["urn:ietf:params:jmap:core"], "methodCalls": []}))
                .is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        bail!("serve never answered; log:\n{}", self.log())
    }

    fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?; // SIGKILL
            c.wait()?;
        }
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.config.with_file_name("serve.log")).unwrap_or_default()
    }

    fn upload(&self, bytes: &[u8]) -> Result<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "POST /jmap/upload/a1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {BASIC}\r\n\
             Content-Type: message/rfc822\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        )?;
        s.write_all(bytes)?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let (head, body) = out.split_once("\r\n\r\n").context("no header end")?;
        if !head.starts_with("HTTP/1.1 201") && !head.starts_with("HTTP/1.1 200") {
            bail!("upload: {head}: {body}");
        }
        Ok(serde_json::from_str(body)?)
    }

    fn upload_as(&self, bytes: &[u8], content_type: &str) -> Result<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "POST /jmap/upload/a1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {BASIC}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        )?;
        s.write_all(bytes)?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let (head, body) = out.split_once("\r\n\r\n").context("no header end")?;
        if !head.starts_with("HTTP/1.1 201") && !head.starts_with("HTTP/1.1 200") {
            bail!("upload: {head}: {body}");
        }
        Ok(serde_json::from_str(body)?)
    }

    /// The bytes of a blob (binary safe: read to the end of a closed connection).
    fn download(&self, blob: &str) -> Result<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "GET /jmap/download/a1/{blob}/f.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: {BASIC}\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no header end")?;
        let head = String::from_utf8_lossy(&out[..end]).to_string();
        if !head.starts_with("HTTP/1.1 200") {
            bail!("download: {head}");
        }
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            bail!("download: chunked answer: {head}");
        }
        Ok(out[end + 4..].to_vec())
    }

    fn post(&self, body: &Value) -> Result<Value> {
        let body = body.to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "POST /jmap/api HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {BASIC}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let (head, body) = out.split_once("\r\n\r\n").context("no header end")?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("HTTP {head}: {body}");
        }
        Ok(serde_json::from_str(body)?)
    }

    /// One method call; its response arguments.
    fn call(&self, method: &str, args: Value) -> Result<Value> {
        let v = self.post(&json!({
            "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
            "methodCalls": [[method, args, "c"]],
        }))?;
        let r = &v["methodResponses"][0];
        if r[0] == "error" {
            bail!("{method}: {}", r[1]);
        }
        Ok(r[1].clone())
    }

    fn mailboxes(&self) -> Result<Vec<Value>> {
        Ok(
            self.call("Mailbox/get", json!({"accountId": "a1"}))?["list"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        )
    }

    fn mailbox_id(&self, name: &str) -> Result<String> {
        self.mailboxes()?
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["id"].as_str().map(str::to_string))
            .with_context(|| format!("no mailbox {name}"))
    }

    fn total(&self, name: &str) -> Result<u64> {
        Ok(self
            .mailboxes()?
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["totalEmails"].as_u64())
            .unwrap_or(0))
    }

    /// Email ids by subject, of one mailbox.
    fn emails(&self, mailbox: &str) -> Result<Vec<(String, String)>> {
        let mid = self.mailbox_id(mailbox)?;
        let q = self.call(
            "Email/query",
            json!({"accountId": "a1", "filter": {"inMailbox": mid}, "limit": 20000}),
        )?;
        let ids = q["ids"].clone();
        if ids.as_array().is_none_or(|a| a.is_empty()) {
            return Ok(Vec::new());
        }
        let g = self.call(
            "Email/get",
            json!({"accountId": "a1", "ids": ids, "properties": ["subject"]}),
        )?;
        Ok(g["list"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e["subject"].as_str().unwrap_or("").to_string(),
                    e["id"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }

    fn imap(&self) -> Result<ImapClient> {
        ImapClient::login(self.dovecot.imap_port(), USER, PASS)
    }

    fn wait(
        &self,
        limit: Duration,
        what: &str,
        mut f: impl FnMut(&Env) -> Result<bool>,
    ) -> Result<Duration> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < limit {
            match f(self) {
                Ok(true) => return Ok(start.elapsed()),
                Ok(false) => {}
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "{what} did not happen within {limit:?} (last error: {last:?}); log:\n{}",
            self.log()
        )
    }
}

/// Subject -> (uid, flags) of a mailbox, as an independent client sees it.
fn server_view(c: &mut ImapClient, mailbox: &str) -> Result<Vec<(String, u32, Vec<String>)>> {
    c.select(mailbox)?;
    let out = c.raw_command("UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")?;
    let mut v = Vec::new();
    let mut cur: Option<(u32, Vec<String>)> = None;
    for line in out.split("\r\n") {
        if line.starts_with("* ") && line.contains(" FETCH (") {
            let uid = line
                .split_once("UID ")
                .and_then(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|d| d.parse().ok())
                .context("uid")?;
            let flags = line
                .split_once("FLAGS (")
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(f, _)| f.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
            cur = Some((uid, flags));
        } else if let Some(s) = line.strip_prefix("Subject: ")
            && let Some((uid, flags)) = cur.take()
        {
            v.push((s.trim().to_string(), uid, flags));
        }
    }
    Ok(v)
}

/// Whether a LIST answer names this mailbox (quoted or as an atom).
fn listed(list: &str, name: &str) -> bool {
    list.split("\r\n")
        .filter(|l| l.starts_with("* LIST") || l.starts_with("* LSUB"))
        .filter_map(|l| l.rsplit(' ').next())
        .any(|n| n.trim_matches('"') == name)
}

fn flags_of(view: &[(String, u32, Vec<String>)], subject: &str) -> Option<Vec<String>> {
    view.iter()
        .find(|(s, _, _)| s == subject)
        .map(|(_, _, f)| f.clone())
}

fn id_of(list: &[(String, String)], subject: &str) -> Result<String> {
    list.iter()
        .find(|(s, _)| s == subject)
        .map(|(_, id)| id.clone())
        .with_context(|| format!("no email {subject}"))
}

#[test]
fn every_jmap_change_shows_on_the_server() -> Result<()> {
    let env = start(12)?;
    let inbox = env.emails("INBOX")?;
    let archive = env.mailbox_id("Archive")?;
    let inbox_id = env.mailbox_id("INBOX")?;
    let drafts = env.mailbox_id("Drafts")?;

    // Keywords by patch path, a whole keyword set, a move, a copy, a destroy.
    let r = env.call(
        "Email/set",
        json!({"accountId": "a1",
            "update": {
                id_of(&inbox, "m0")?: {"keywords/$seen": true},
                id_of(&inbox, "m1")?: {"keywords/$flagged": true, "keywords/$answered": true},
                id_of(&inbox, "m2")?: {"keywords": {"$seen": true, "$label1": true}},
                id_of(&inbox, "m3")?: {"mailboxIds": {archive.clone(): true}},
                id_of(&inbox, "m4")?: {format!("mailboxIds/{archive}"): true},
                id_of(&inbox, "m5")?: {"subject": "nope"},
            },
            "destroy": [id_of(&inbox, "m6")?],
            "create": {"d1": {
                "mailboxIds": {drafts.clone(): true},
                "keywords": {"$draft": true, "$seen": true},
                "from": [{"name": "Alice", "email": USER}],
                "to": [{"email": "bob@example.org"}],
                "subject": "a draft",
                "textBody": [{"partId": "t", "type": "text/plain"}],
                "bodyValues": {"t": {"value": "Dear Bob,\nhello.\n"}},
            }},
        }),
    )?;
    assert_eq!(
        r["notUpdated"][id_of(&inbox, "m5")?]["type"],
        "invalidProperties",
        "{r}"
    );
    assert_eq!(r["updated"].as_object().map(|m| m.len()), Some(5), "{r}");
    assert_eq!(r["destroyed"][0], id_of(&inbox, "m6")?, "{r}");
    assert!(r["created"]["d1"]["id"].is_string(), "{r}");
    assert_ne!(r["oldState"], r["newState"]);

    // Visible through JMAP at once (before the server has it).
    let g = env.call(
        "Email/get",
        json!({"accountId": "a1", "ids": [id_of(&inbox, "m0")?, id_of(&inbox, "m3")?, id_of(&inbox, "m4")?],
               "properties": ["keywords", "mailboxIds"]}),
    )?;
    assert_eq!(g["list"][0]["keywords"], json!({"$seen": true}));
    assert_eq!(g["list"][1]["mailboxIds"], json!({archive.clone(): true}));
    assert_eq!(
        g["list"][2]["mailboxIds"],
        json!({archive.clone(): true, inbox_id.clone(): true})
    );

    // On the server, as another client sees it.
    let mut c = env.imap()?;
    env.wait(Duration::from_secs(10), "the changes on the server", |_| {
        let inbox = server_view(&mut c, "INBOX")?;
        let arch = server_view(&mut c, "Archive")?;
        let dr = server_view(&mut c, "Drafts")?;
        let has = |v: &[(String, u32, Vec<String>)], s: &str, f: &str| {
            flags_of(v, s).is_some_and(|fl| fl.iter().any(|x| x.eq_ignore_ascii_case(f)))
        };
        Ok(has(&inbox, "m0", "\\Seen")
            && has(&inbox, "m1", "\\Flagged")
            && has(&inbox, "m1", "\\Answered")
            && has(&inbox, "m2", "$label1")
            && flags_of(&inbox, "m3").is_none()
            && flags_of(&arch, "m3").is_some()
            && flags_of(&inbox, "m4").is_some()
            && flags_of(&arch, "m4").is_some()
            && flags_of(&inbox, "m6").is_none()
            && inbox.len() == 10
            && has(&dr, "a draft", "\\Draft"))
    })?;
    // Nothing waits any more, and nothing was refused.
    env.wait(Duration::from_secs(5), "an empty outbox", |e| {
        let o = e.call("Outbox/get", json!({"accountId": "a1"}))?;
        Ok(o["pending"] == 0 && o["failures"] == json!([]))
    })?;
    // The draft on the server is the message JMAP serves, with its text.
    let raw = c.raw_command("UID FETCH 1:* (BODY.PEEK[TEXT])")?;
    assert!(raw.contains("Dear Bob,"), "{raw}");

    // Un-setting keywords, and the next sync pass does not undo or duplicate anything.
    env.call(
        "Email/set",
        json!({"accountId": "a1", "update": {id_of(&inbox, "m0")?: {"keywords/$seen": null}}}),
    )?;
    env.wait(
        Duration::from_secs(10),
        "\\Seen cleared on the server",
        |_| {
            let v = server_view(&mut c, "INBOX")?;
            Ok(flags_of(&v, "m0").is_some_and(|f| f.is_empty()))
        },
    )?;
    assert_eq!(env.total("INBOX")?, 10);
    assert_eq!(env.total("Archive")?, 3);
    Ok(())
}

#[test]
fn mailbox_changes_show_on_the_server() -> Result<()> {
    let env = start(3)?;
    let inbox = env.emails("INBOX")?;
    let r = env.call(
        "Mailbox/set",
        json!({"accountId": "a1", "create": {
            "p": {"name": "Projects", "parentId": null, "isSubscribed": true},
            "c": {"name": "Äpfel", "parentId": "#p"},
        }}),
    )?;
    let projects = r["created"]["p"]["id"]
        .as_str()
        .context("created")?
        .to_string();
    let child = r["created"]["c"]["id"]
        .as_str()
        .context("created child")?
        .to_string();
    // A message moved into the new mailbox right away, before the server has it.
    env.post(&json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Email/set", {"accountId": "a1",
            "update": {id_of(&inbox, "m0")?: {"mailboxIds": {child.clone(): true}}}}, "e"]],
    }))?;
    let mut c = env.imap()?;
    env.wait(Duration::from_secs(10), "CREATE and the move", |_| {
        let list = c.raw_command("LIST \"\" \"*\"")?;
        let lsub = c.raw_command("LSUB \"\" \"Projects\"")?;
        // (testkit's client takes UTF-8 names and encodes them itself)
        let moved = server_view(&mut c, "Projects/Äpfel").unwrap_or_default();
        Ok(listed(&list, "Projects/&AMQ-pfel")
            && listed(&lsub, "Projects")
            && flags_of(&moved, "m0").is_some())
    })?;
    // (Leave the mailbox: a Maildir mailbox another session holds open is recreated by it
    // after a DELETE.)
    c.select("INBOX")?;
    // Rename and move in the hierarchy, then destroy with its emails.
    let r = env.call(
        "Mailbox/set",
        json!({"accountId": "a1", "update": {projects.clone(): {"name": "Work"}}}),
    )?;
    assert!(r["updated"][&projects].is_null(), "{r}");
    env.wait(Duration::from_secs(10), "RENAME", |_| {
        let list = c.raw_command("LIST \"\" \"*\"")?;
        Ok(listed(&list, "Work") && !listed(&list, "Projects"))
    })?;
    let r = env.call(
        "Mailbox/set",
        json!({"accountId": "a1", "update": {child.clone(): {"parentId": null}}}),
    )?;
    assert!(r["updated"][&child].is_null(), "{r}");
    env.wait(Duration::from_secs(10), "the move to the top level", |_| {
        let list = c.raw_command("LIST \"\" \"*\"")?;
        Ok(listed(&list, "&AMQ-pfel") && !listed(&list, "Work/&AMQ-pfel"))
    })?;
    let r = env.call(
        "Mailbox/set",
        json!({"accountId": "a1", "destroy": [child.clone()]}),
    )?;
    assert_eq!(r["notDestroyed"][&child]["type"], "mailboxHasEmail", "{r}");
    let r = env.call(
        "Mailbox/set",
        json!({"accountId": "a1", "destroy": [child.clone(), projects.clone()],
               "onDestroyRemoveEmails": true}),
    )?;
    assert_eq!(r["destroyed"].as_array().map(Vec::len), Some(2), "{r}");
    // Asked on a new connection each time: Dovecot 2.3's mailbox list index can go stale
    // in a session that watched concurrent renames and deletes ("Corrupted mailbox list
    // index ... name_id=7 not in index header"), listing for seconds what is gone from disk.
    env.wait(Duration::from_secs(10), "DELETE", |env| {
        let list = env.imap()?.raw_command("LIST \"\" \"*\"")?;
        if listed(&list, "&AMQ-pfel") || listed(&list, "Work") {
            bail!("the server still lists: {list}");
        }
        Ok(true)
    })?;
    // The server refuses to create a mailbox under a non-selectable name: the local
    // mailbox is reverted and the reason is shown through JMAP.
    let r = env.call(
        "Mailbox/set",
        json!({"accountId": "a1", "create": {"x": {"name": "INBOX", "parentId": null}}}),
    )?;
    assert!(r["notCreated"]["x"].is_object(), "{r}");
    Ok(())
}

#[test]
fn a_refused_change_is_reverted_and_shown() -> Result<()> {
    let env = start(2)?;
    // Fine for JMAP (400 bytes of UTF-8), too long for Dovecot's Maildir once encoded in
    // modified UTF-7 (a file name of over 255 bytes): the server says NO.
    let long = "é".repeat(200);
    let r = env.call(
        "Mailbox/set",
        json!({"accountId": "a1", "create": {"x": {"name": "Kept"}, "y": {"name": long.clone()}}}),
    )?;
    // A mailbox change waits for the server's answer while it is reachable: the refusal
    // is the answer (notCreated, with the server's words), nothing shown and taken back.
    assert_eq!(r["notCreated"]["y"]["type"], "invalidProperties", "{r}");
    assert!(
        r["notCreated"]["y"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{r}"
    );
    assert!(env.mailbox_id(&long).is_err());
    // Created means on the server.
    assert!(r["created"]["x"]["id"].is_string(), "{r}");
    let mut c = env.imap()?;
    assert!(listed(&c.raw_command("LIST \"\" \"*\"")?, "Kept"));
    // The refusal is kept for Outbox/get too, as every refused change.
    let o = env.call("Outbox/get", json!({"accountId": "a1"}))?;
    assert!(
        o["failures"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x["kind"] == "create_mailbox")),
        "{o}"
    );
    // Dismissed failures go away.
    let o = env.call("Outbox/get", json!({"accountId": "a1"}))?;
    let fid = o["failures"][0]["id"].clone();
    let o = env.call("Outbox/get", json!({"accountId": "a1", "dismiss": [fid]}))?;
    assert_eq!(o["failures"], json!([]), "{o}");
    Ok(())
}

/// The keywords message `i` is given in round `r` of the crash test.
fn intended(i: usize, r: usize) -> Value {
    let mut k = serde_json::Map::new();
    if (i + r).is_multiple_of(2) {
        k.insert("$seen".into(), json!(true));
    }
    if (i + r).is_multiple_of(3) {
        k.insert("$flagged".into(), json!(true));
    }
    k.insert(format!("$k{r}"), json!(true));
    Value::Object(k)
}

fn server_flag_set(flags: &[String]) -> std::collections::BTreeSet<String> {
    flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .map(|f| f.to_ascii_lowercase())
        .collect()
}

#[test]
fn kill_9_while_1000_changes_are_queued_loses_and_duplicates_nothing() -> Result<()> {
    const N: usize = 200;
    const ROUNDS: usize = 5;
    let mut env = start(N)?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    eprintln!("kill points seed {seed}");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let inbox = env.emails("INBOX")?;
    let archive = env.mailbox_id("Archive")?;
    let drafts = env.mailbox_id("Drafts")?;
    let ids: Vec<String> = (0..N)
        .map(|i| id_of(&inbox, &format!("m{i}")))
        .collect::<Result<_>>()?;
    // 5 rounds of 200 keyword changes (1,000), 20 moves, 10 destroys, 10 drafts; a kill -9
    // after a random part of the calls, at a random moment of the drain.
    let mut kills = 0;
    for r in 0..ROUNDS {
        let mut update = serde_json::Map::new();
        for (i, id) in ids.iter().enumerate() {
            if i >= 190 {
                continue; // destroyed below
            }
            let mut patch = serde_json::Map::new();
            patch.insert("keywords".into(), intended(i, r));
            if r == 2 && (150..170).contains(&i) {
                patch.insert("mailboxIds".into(), json!({archive.clone(): true}));
            }
            update.insert(id.clone(), Value::Object(patch));
        }
        let mut args = json!({"accountId": "a1", "update": update});
        if r == 3 {
            args["destroy"] = json!(ids[190..].to_vec());
            let mut create = serde_json::Map::new();
            for d in 0..10 {
                create.insert(
                    format!("d{d}"),
                    json!({"mailboxIds": {drafts.clone(): true}, "keywords": {"$draft": true},
                           "subject": format!("draft {d}"), "from": [{"email": USER}],
                           "textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "x"}}}),
                );
            }
            args["create"] = Value::Object(create);
        }
        let resp = env.call("Email/set", args)?;
        assert!(
            nothing(&resp["notUpdated"]),
            "round {r}: {}\n{}",
            resp["notUpdated"],
            env.log()
        );
        if next() % 3 != 0 || r == ROUNDS - 1 {
            std::thread::sleep(Duration::from_millis(next() % 40));
            env.kill9()?;
            kills += 1;
            env.serve()?;
        }
    }
    env.wait(Duration::from_secs(60), "the outbox to drain", |e| {
        Ok(e.call("Outbox/get", json!({"accountId": "a1"}))?["pending"] == 0)
    })?;
    let o = env.call("Outbox/get", json!({"accountId": "a1"}))?;
    assert_eq!(o["failures"], json!([]), "{o}");
    eprintln!("{kills} kills");

    let mut c = env.imap()?;
    let inbox_view = server_view(&mut c, "INBOX")?;
    let archive_view = server_view(&mut c, "Archive")?;
    let drafts_view = server_view(&mut c, "Drafts")?;
    assert_eq!(inbox_view.len(), N - 10 - 20, "INBOX on the server");
    assert_eq!(archive_view.len(), 1 + 20, "Archive on the server");
    for (i, id) in ids.iter().enumerate() {
        let subject = format!("m{i}");
        let view = if (150..170).contains(&i) {
            &archive_view
        } else {
            &inbox_view
        };
        let found: Vec<_> = view.iter().filter(|(s, _, _)| *s == subject).collect();
        if i >= 190 {
            assert!(found.is_empty(), "{subject} destroyed");
            continue;
        }
        assert_eq!(found.len(), 1, "{subject} exactly once");
        let want: std::collections::BTreeSet<String> = intended(i, ROUNDS - 1)
            .as_object()
            .map(|m| {
                m.keys()
                    .map(|k| match k.as_str() {
                        "$seen" => "\\seen".to_string(),
                        "$flagged" => "\\flagged".to_string(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if server_flag_set(&found[0].2) != want {
            let g = env.call(
                "Email/get",
                json!({"accountId": "a1", "ids": [id], "properties": ["keywords", "mailboxIds"]}),
            )?;
            let log = env.log();
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("full diff")).collect();
            panic!(
                "{subject} flags: server {:?}, intended {want:?}; JMAP {g}; log:\n{}",
                found[0].2,
                lines.join("\n")
            );
        }
    }
    for d in 0..10 {
        let n = drafts_view
            .iter()
            .filter(|(s, _, _)| *s == format!("draft {d}"))
            .count();
        assert_eq!(n, 1, "draft {d} appended exactly once");
    }
    // And the store agrees with the server once a sync pass has run over it.
    assert_eq!(env.total("INBOX")?, (N - 30) as u64);
    assert_eq!(env.total("Drafts")?, 10);
    Ok(())
}

#[test]
fn changes_queue_while_the_server_is_down_and_drain_after() -> Result<()> {
    let mut env = start(10)?;
    let inbox = env.emails("INBOX")?;
    let archive = env.mailbox_id("Archive")?;
    env.dovecot.stop();
    let mut update = serde_json::Map::new();
    for i in 0..5 {
        update.insert(
            id_of(&inbox, &format!("m{i}"))?,
            json!({"keywords/$seen": true}),
        );
    }
    update.insert(
        id_of(&inbox, "m9")?,
        json!({"mailboxIds": {archive.clone(): true}}),
    );
    let r = env.call("Email/set", json!({"accountId": "a1", "update": update}))?;
    assert_eq!(r["updated"].as_object().map(|m| m.len()), Some(6), "{r}");
    // The client sees them at once, and that they wait.
    let g = env.call(
        "Email/get",
        json!({"accountId": "a1", "ids": [id_of(&inbox, "m0")?, id_of(&inbox, "m9")?],
               "properties": ["keywords", "mailboxIds"]}),
    )?;
    assert_eq!(g["list"][0]["keywords"], json!({"$seen": true}));
    assert_eq!(g["list"][1]["mailboxIds"], json!({archive.clone(): true}));
    env.wait(Duration::from_secs(10), "a visible retry", |e| {
        let o = e.call("Outbox/get", json!({"accountId": "a1"}))?;
        Ok(o["pending"].as_u64().unwrap_or(0) >= 2 && o["lastError"].is_string())
    })?;
    std::thread::sleep(Duration::from_secs(2));
    // Still shown while the server is away (a sync attempt must not undo them).
    assert_eq!(env.total("Archive")?, 2);
    env.dovecot.restart()?;
    let mut c = env.imap()?;
    env.wait(
        Duration::from_secs(40),
        "the drain after the restart",
        |_| {
            let v = server_view(&mut c, "INBOX")?;
            let a = server_view(&mut c, "Archive")?;
            Ok((0..5).all(|i| {
                flags_of(&v, &format!("m{i}")).is_some_and(|f| f.iter().any(|x| x == "\\Seen"))
            }) && flags_of(&a, "m9").is_some()
                && flags_of(&v, "m9").is_none())
        },
    )?;
    Ok(())
}

#[test]
fn two_devices_changing_the_same_messages_converge() -> Result<()> {
    let mut env = start(10)?;
    let inbox = env.emails("INBOX")?;
    let mut other = env.imap()?;
    // Tidings marks every message read; before it reaches the server (killed at once),
    // the other device flags m0-m4 and marks m5 answered.
    let mut update = serde_json::Map::new();
    for i in 0..10 {
        update.insert(
            id_of(&inbox, &format!("m{i}"))?,
            json!({"keywords/$seen": true}),
        );
    }
    env.call("Email/set", json!({"accountId": "a1", "update": update}))?;
    env.kill9()?;
    other.select("INBOX")?;
    let view = server_view(&mut other, "INBOX")?;
    let uid = |s: &str| view.iter().find(|(x, _, _)| x == s).map(|(_, u, _)| *u);
    for i in 0..5 {
        if let Some(u) = uid(&format!("m{i}")) {
            other.store_flags(&u.to_string(), "+FLAGS", &["\\Flagged"])?;
        }
    }
    if let Some(u) = uid("m5") {
        other.store_flags(&u.to_string(), "+FLAGS", &["\\Answered"])?;
    }
    // Meanwhile on Tidings (restarted): m6's $seen is taken back, m7 gets a label.
    env.serve()?;
    env.call(
        "Email/set",
        json!({"accountId": "a1", "update": {
            id_of(&inbox, "m6")?: {"keywords/$seen": null},
            id_of(&inbox, "m7")?: {"keywords/$label": true}}}),
    )?;
    // The documented result: a per-flag merge; each device's flags survive.
    let want = |i: usize| -> Vec<&str> {
        let mut w = Vec::new();
        if i != 6 {
            w.push("\\seen");
        }
        if i < 5 {
            w.push("\\flagged");
        }
        if i == 5 {
            w.push("\\answered");
        }
        if i == 7 {
            w.push("$label");
        }
        w.sort();
        w
    };
    env.wait(Duration::from_secs(20), "convergence on the server", |_| {
        let v = server_view(&mut other, "INBOX")?;
        Ok((0..10).all(|i| {
            flags_of(&v, &format!("m{i}")).is_some_and(|f| {
                let mut got: Vec<String> = server_flag_set(&f).into_iter().collect();
                got.sort();
                got == want(i)
            })
        }))
    })?;
    // And JMAP shows the same merge.
    env.wait(Duration::from_secs(20), "convergence in JMAP", |e| {
        let g = e.call(
            "Email/get",
            json!({"accountId": "a1", "ids": (0..10).map(|i| id_of(&inbox, &format!("m{i}"))).collect::<Result<Vec<_>>>()?,
                   "properties": ["keywords"]}),
        )?;
        let list = g["list"].as_array().cloned().unwrap_or_default();
        Ok(list.len() == 10
            && list.iter().enumerate().all(|(i, e)| {
                let mut got: Vec<String> = e["keywords"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                got.sort();
                let mut w: Vec<String> = want(i)
                    .iter()
                    .map(|f| match *f {
                        "\\seen" => "$seen".to_string(),
                        "\\flagged" => "$flagged".to_string(),
                        "\\answered" => "$answered".to_string(),
                        o => o.to_string(),
                    })
                    .collect();
                w.sort();
                got == w
            }))
    })?;
    Ok(())
}

#[test]
fn import_and_copy_between_accounts_reach_the_servers() -> Result<()> {
    let env = start_with(2, true)?;
    env.wait(Duration::from_secs(30), "the second account's sync", |e| {
        let v = e.call("Mailbox/get", json!({"accountId": "a2"}))?;
        Ok(v["list"].as_array().is_some_and(|l| {
            l.iter()
                .any(|m| m["name"] == "INBOX" && m["totalEmails"] == 1)
        }))
    })?;
    let archive = env.mailbox_id("Archive")?;
    let inbox = env.mailbox_id("INBOX")?;
    let raw = corpus::message("carol@example.org", USER, "imported", "from a file");
    let up = env.upload(&raw)?;
    let blob = up["blobId"].as_str().context("blobId")?.to_string();
    let r = env.call(
        "Email/import",
        json!({"accountId": "a1", "emails": {
            "i1": {"blobId": blob, "mailboxIds": {inbox.clone(): true, archive.clone(): true},
                   "keywords": {"$seen": true}},
            "bad": {"blobId": "b0000000000000000000000000000000000000000000000000000000000000000",
                    "mailboxIds": {inbox.clone(): true}},
        }}),
    )?;
    assert_eq!(r["notCreated"]["bad"]["type"], "blobNotFound", "{r}");
    let imported = r["created"]["i1"]["id"]
        .as_str()
        .context("imported")?
        .to_string();
    let g = env.call(
        "Email/get",
        json!({"accountId": "a1", "ids": [imported.clone()], "properties": ["subject", "mailboxIds", "keywords"]}),
    )?;
    assert_eq!(g["list"][0]["subject"], "imported");
    assert_eq!(
        g["list"][0]["mailboxIds"],
        json!({inbox.clone(): true, archive.clone(): true})
    );
    let mut alice = env.imap()?;
    env.wait(Duration::from_secs(15), "the import on the server", |_| {
        let a_inbox = server_view(&mut alice, "INBOX")?;
        let a_arch = server_view(&mut alice, "Archive")?;
        Ok(
            flags_of(&a_inbox, "imported").is_some_and(|f| f.iter().any(|x| x == "\\Seen"))
                && flags_of(&a_arch, "imported").is_some()
                && a_inbox.iter().filter(|(s, _, _)| s == "imported").count() == 1,
        )
    })?;
    alice.select("INBOX")?;
    // Copy it to the other account (bob's server account), destroying the original.
    let v = env.call("Mailbox/get", json!({"accountId": "a2"}))?;
    let other_inbox = v["list"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["name"] == "INBOX"))
        .and_then(|m| m["id"].as_str())
        .context("a2 inbox")?
        .to_string();
    let resp = env.post(&json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Email/copy", {"fromAccountId": "a1", "accountId": "a2",
            "create": {"c1": {"id": imported.clone(), "mailboxIds": {other_inbox.clone(): true}}},
            "onSuccessDestroyOriginal": true}, "c"]],
    }))?;
    let calls = &resp["methodResponses"];
    assert_eq!(calls[0][0], "Email/copy", "{resp}");
    assert!(calls[0][1]["created"]["c1"]["id"].is_string(), "{resp}");
    assert_eq!(calls[1][0], "Email/set", "{resp}");
    assert_eq!(calls[1][1]["destroyed"][0], imported.as_str(), "{resp}");

    let mut bob = ImapClient::login(env.dovecot.imap_port(), "bob@example.org", "bob-pw")?;
    env.wait(
        Duration::from_secs(15),
        "import, copy and destroy on the servers",
        |_| {
            let a_inbox = server_view(&mut alice, "INBOX")?;
            let a_arch = server_view(&mut alice, "Archive")?;
            let b_inbox = server_view(&mut bob, "INBOX")?;
            let copies = b_inbox.iter().filter(|(s, _, _)| s == "imported").count();
            Ok(flags_of(&a_inbox, "imported").is_none()
                && flags_of(&a_arch, "imported").is_none()
                && copies == 1
                && flags_of(&b_inbox, "imported").is_some_and(|f| f.iter().any(|x| x == "\\Seen")))
        },
    )?;
    Ok(())
}

#[test]
fn pop3_changes_stay_local_and_say_so() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    for i in 0..3 {
        dovecot.deliver(
            USER,
            &corpus::message("b@example.org", USER, &format!("p{i}"), "x"),
        )?;
    }
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[account]]\nuser = \"alice\"\nname = \"pop\"\nkind = \"pop3\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"{USER}\"\npassword = \"{PASS}\"\n\
             ca_file = \"{}\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.pop3s_port(),
            dovecot.ca_file().display()
        ),
    )?;
    let mut env = Env {
        dovecot,
        _dir: dir,
        config,
        port,
        child: None,
    };
    env.serve()?;
    env.wait(Duration::from_secs(30), "the POP3 retrieval", |e| {
        Ok(e.total("INBOX")? == 3)
    })?;
    let inbox = env.emails("INBOX")?;
    let r = env.call(
        "Email/set",
        json!({"accountId": "a1", "update": {id_of(&inbox, "p0")?: {"keywords/$seen": true}},
               "destroy": [id_of(&inbox, "p1")?]}),
    )?;
    assert!(r["updated"].is_object() && r["destroyed"].is_array(), "{r}");
    let o = env.call("Outbox/get", json!({"accountId": "a1"}))?;
    assert_eq!(o["localOnly"], true, "{o}");
    assert_eq!(o["pending"], 0, "{o}");
    assert_eq!(env.total("INBOX")?, 2);
    let g = env.call(
        "Email/get",
        json!({"accountId": "a1", "ids": [id_of(&inbox, "p0")?], "properties": ["keywords"]}),
    )?;
    assert_eq!(g["list"][0]["keywords"], json!({"$seen": true}));
    // The server is untouched: all three messages are still there (Dovecot's POP3 RETR
    // marks them \Seen by itself, so flags say nothing here).
    let mut c = env.imap()?;
    let v = server_view(&mut c, "INBOX")?;
    assert_eq!(v.len(), 3, "{v:?}");
    // Mailboxes cannot be created on a POP3 account.
    let r = env.call(
        "Mailbox/set",
        json!({"accountId": "a1", "create": {"x": {"name": "Local"}}}),
    )?;
    assert_eq!(r["notCreated"]["x"]["type"], "forbidden", "{r}");
    // ifInState that is not the current state: stateMismatch, nothing changed.
    let v = env.post(&json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Email/set", {"accountId": "a1", "ifInState": "0",
            "update": {id_of(&inbox, "p2")?: {"keywords/$flagged": true}}}, "s"]],
    }))?;
    assert_eq!(v["methodResponses"][0][1]["type"], "stateMismatch", "{v}");
    Ok(())
}

/// The message literal of `UID FETCH ... BODY.PEEK[]` as text (the literal's length
/// counts octets; a draft built by mail-builder is 7-bit).
fn literal(answer: &str) -> Option<String> {
    let open = answer.find("BODY[] {")? + "BODY[] {".len();
    let close = open + answer[open..].find('}')?;
    let n: usize = answer[open..close].parse().ok()?;
    let start = close + 3; // "}\r\n"
    answer.get(start..start + n).map(str::to_string)
}

#[test]
fn a_draft_with_attachments_reaches_the_server_and_reads_back() -> Result<()> {
    use mail_parser::MimeHeaders;
    let env = start(1)?;
    let drafts = env.mailbox_id("Drafts")?;
    let archive = env.mailbox_id("Archive")?;
    // An upload that is not text (every byte value), as a browser sends a file.
    let pdf: Vec<u8> = (0..5000u32).map(|i| (i * 37 % 256) as u8).collect();
    let up = env.upload_as(&pdf, "application/pdf")?;
    let blob = up["blobId"].as_str().context("blobId")?.to_string();

    // Refusals first: an unknown blob, bodyStructure beside textBody, a Content-* field on
    // the Email, a header given twice.
    let r = env.call(
        "Email/set",
        json!({"accountId": "a1", "create": {
            "nb": {"mailboxIds": {drafts.clone(): true},
                   "attachments": [{"blobId": format!("b{}", "0".repeat(64)), "type": "image/png"}]},
            "two": {"mailboxIds": {drafts.clone(): true},
                    "bodyStructure": {"partId": "1"}, "textBody": [{"partId": "1"}],
                    "bodyValues": {"1": {"value": "x"}}},
            "ct": {"mailboxIds": {drafts.clone(): true}, "header:Content-Type": " text/html"},
            "dup": {"mailboxIds": {drafts.clone(): true}, "subject": "a",
                    "header:Subject:asText": "b"},
        }}),
    )?;
    assert_eq!(r["notCreated"]["nb"]["type"], "blobNotFound", "{r}");
    assert_eq!(
        r["notCreated"]["nb"]["notFound"][0],
        format!("b{}", "0".repeat(64))
    );
    for k in ["two", "ct", "dup"] {
        assert_eq!(r["notCreated"][k]["type"], "invalidProperties", "{k}: {r}");
    }
    assert!(nothing(&r["created"]), "{r}");

    // A draft with text and HTML, one attachment, a header of its own, in two mailboxes.
    let r = env.call(
        "Email/set",
        json!({"accountId": "a1", "create": {"d": {
            "mailboxIds": {drafts.clone(): true, archive.clone(): true},
            "keywords": {"$draft": true},
            "from": [{"name": "Alice", "email": USER}],
            "to": [{"email": "bob@example.org"}],
            "subject": "report attached",
            "header:X-Tidings-Test:asText": "kept as written",
            "textBody": [{"partId": "t", "type": "text/plain"}],
            "htmlBody": [{"partId": "h", "type": "text/html"}],
            "bodyValues": {"t": {"value": "See the report."},
                           "h": {"value": "<p>See the <b>report</b>.</p>"}},
            "attachments": [{"blobId": blob.clone(), "type": "application/pdf",
                             "name": "report.pdf", "disposition": "attachment"}],
        }}}),
    )?;
    let id = r["created"]["d"]["id"]
        .as_str()
        .with_context(|| format!("created: {r}"))?
        .to_string();

    // An independent IMAP client finds it in both mailboxes, with the attachment's bytes.
    let mut c = env.imap()?;
    let mut server_raw = String::new();
    env.wait(Duration::from_secs(15), "the draft on the server", |_| {
        c.select("Drafts")?;
        let a = c.raw_command("UID FETCH 1:* (BODY.PEEK[])")?;
        match literal(&a) {
            Some(m) if m.contains("report attached") => {
                server_raw = m;
                Ok(true)
            }
            _ => Ok(false),
        }
    })?;
    env.wait(Duration::from_secs(15), "the copy in Archive", |_| {
        c.select("Archive")?;
        let a = c.raw_command("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")?;
        Ok(a.contains("report attached"))
    })?;
    let parsed = mail_parser::MessageParser::default()
        .parse(server_raw.as_bytes())
        .context("the server's copy parses")?;
    assert_eq!(parsed.subject(), Some("report attached"));
    assert_eq!(
        parsed.header_raw("X-Tidings-Test").map(str::trim),
        Some("kept as written")
    );
    assert_eq!(
        parsed.body_text(0).as_deref().map(str::trim),
        Some("See the report.")
    );
    assert!(
        parsed
            .body_html(0)
            .is_some_and(|h| h.contains("<b>report</b>")),
        "{server_raw}"
    );
    assert_eq!(parsed.attachment_count(), 1, "{server_raw}");
    let att = parsed.attachment(0).context("attachment")?;
    assert_eq!(att.attachment_name(), Some("report.pdf"));
    assert_eq!(att.contents(), pdf.as_slice(), "the attachment's bytes");
    assert!(
        server_raw.contains("multipart/alternative") && server_raw.contains("multipart/mixed"),
        "{server_raw}"
    );

    // Email/get serves the same: the attachment, both bodies, the header, both mailboxes.
    let g = env.call(
        "Email/get",
        json!({"accountId": "a1", "ids": [id],
               "properties": ["mailboxIds", "attachments", "textBody", "htmlBody",
                              "bodyValues", "header:X-Tidings-Test:asText", "hasAttachment"],
               "fetchTextBodyValues": true}),
    )?;
    let e = &g["list"][0];
    assert_eq!(e["mailboxIds"][&drafts], true, "{e}");
    assert_eq!(e["mailboxIds"][&archive], true, "{e}");
    assert_eq!(e["hasAttachment"], true, "{e}");
    assert_eq!(e["header:X-Tidings-Test:asText"], "kept as written");
    assert_eq!(e["attachments"][0]["name"], "report.pdf", "{e}");
    assert_eq!(e["attachments"][0]["type"], "application/pdf");
    assert_eq!(e["attachments"][0]["size"], 5000);
    assert_eq!(e["htmlBody"][0]["type"], "text/html");
    let text_part = e["textBody"][0]["partId"].as_str().context("text part")?;
    assert_eq!(
        e["bodyValues"][text_part]["value"].as_str().map(str::trim),
        Some("See the report.")
    );
    // Downloading the attachment's blob gives the uploaded bytes back.
    let part_blob = e["attachments"][0]["blobId"]
        .as_str()
        .context("part blob")?;
    assert_eq!(env.download(part_blob)?, pdf);

    // bodyStructure form: a forward of that attachment by its part blob id, with an inline
    // text part of its own.
    let r = env.call(
        "Email/set",
        json!({"accountId": "a1", "create": {"f": {
            "mailboxIds": {drafts.clone(): true},
            "subject": "forwarded by structure",
            "bodyStructure": {"type": "multipart/mixed", "subParts": [
                {"partId": "1", "type": "text/plain", "header:X-Part:asText": "first"},
                {"blobId": part_blob, "name": "again.pdf", "disposition": "attachment"},
            ]},
            "bodyValues": {"1": {"value": "Forwarding."}},
        }}}),
    )?;
    let fid = r["created"]["f"]["id"]
        .as_str()
        .with_context(|| format!("created: {r}"))?
        .to_string();
    let g = env.call(
        "Email/get",
        json!({"accountId": "a1", "ids": [fid], "properties": ["attachments", "bodyStructure"],
               "bodyProperties": ["partId", "type", "name", "size", "subParts",
                                  "header:X-Part:asText"]}),
    )?;
    let e = &g["list"][0];
    assert_eq!(e["attachments"][0]["name"], "again.pdf", "{e}");
    // The type came with the blob (the original part's).
    assert_eq!(e["attachments"][0]["type"], "application/pdf", "{e}");
    assert_eq!(e["attachments"][0]["size"], 5000, "{e}");
    assert_eq!(
        e["bodyStructure"]["subParts"][0]["header:X-Part:asText"], "first",
        "{e}"
    );
    env.wait(Duration::from_secs(15), "the forward on the server", |_| {
        c.select("Drafts")?;
        let a = c.raw_command("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")?;
        Ok(a.contains("forwarded by structure"))
    })?;
    Ok(())
}

#[test]
fn a_flag_change_the_server_refuses_is_reverted_and_shown() -> Result<()> {
    let env = start(2)?;
    let inbox = env.emails("INBOX")?;
    let (m0, m1) = (id_of(&inbox, "m0")?, id_of(&inbox, "m1")?);
    // A keyword JMAP allows (up to 255 characters) but Dovecot refuses (longer than its
    // mail_max_keyword_length of 50): the STORE is refused for good.
    let long = "k".repeat(120);
    let r = env.call(
        "Email/set",
        json!({"accountId": "a1", "update": {
            m0.clone(): {format!("keywords/{long}"): true},
        }}),
    )?;
    assert!(
        r["updated"][&m0].is_null() && nothing(&r["notUpdated"]),
        "{r}"
    );
    // Shown at once (optimistic).
    let kw = |e: &Env, id: &str| -> Result<Value> {
        Ok(e.call(
            "Email/get",
            json!({"accountId": "a1", "ids": [id], "properties": ["keywords"]}),
        )?["list"][0]["keywords"]
            .clone())
    };
    assert_eq!(kw(&env, &m0)?[&long], true);
    env.wait(Duration::from_secs(15), "the refusal", |e| {
        let o = e.call("Outbox/get", json!({"accountId": "a1"}))?;
        Ok(o["failures"].as_array().is_some_and(|f| {
            f.iter()
                .any(|x| x["objectId"] == m0.as_str() && x["kind"] == "flags")
        }) && o["pending"] == 0)
    })?;
    // Reverted through JMAP, and the server never had it.
    assert!(kw(&env, &m0)?.get(&long).is_none(), "{}", kw(&env, &m0)?);
    let mut c = env.imap()?;
    let v = server_view(&mut c, "INBOX")?;
    assert!(
        flags_of(&v, "m0").is_some_and(|f| !f.iter().any(|x| x.eq_ignore_ascii_case(&long))),
        "{v:?}"
    );
    // The account keeps working: a later change goes through.
    env.call(
        "Email/set",
        json!({"accountId": "a1", "update": {m1.clone(): {"keywords/$flagged": true}}}),
    )?;
    env.wait(
        Duration::from_secs(15),
        "a later change on the server",
        |_| {
            let v = server_view(&mut c, "INBOX")?;
            Ok(flags_of(&v, "m1").is_some_and(|f| f.iter().any(|x| x == "\\Flagged")))
        },
    )?;
    Ok(())
}

#[test]
fn mailbox_sort_order_is_kept_and_orders_queries() -> Result<()> {
    let env = start(1)?;
    let state = env.call("Mailbox/get", json!({"accountId": "a1", "ids": []}))?["state"].clone();
    let r = env.call(
        "Mailbox/set",
        json!({"accountId": "a1", "create": {"z": {"name": "Zeta", "sortOrder": 0}}}),
    )?;
    assert_eq!(r["created"]["z"]["sortOrder"], 0, "{r}");
    let zeta = r["created"]["z"]["id"].as_str().context("id")?.to_string();
    let inbox = env.mailbox_id("INBOX")?;
    let r = env.call(
        "Mailbox/set",
        json!({"accountId": "a1", "update": {inbox.clone(): {"sortOrder": 500}}}),
    )?;
    assert!(
        r["updated"][&inbox].is_null() && nothing(&r["notUpdated"]),
        "{r}"
    );
    let bad = env.call(
        "Mailbox/set",
        json!({"accountId": "a1", "update": {inbox.clone(): {"sortOrder": -1}}}),
    )?;
    assert_eq!(
        bad["notUpdated"][&inbox]["type"], "invalidProperties",
        "{bad}"
    );
    let order = |e: &Env| -> Result<Vec<String>> {
        let q = e.call(
            "Mailbox/query",
            json!({"accountId": "a1", "sort": [{"property": "sortOrder"}, {"property": "name"}]}),
        )?;
        Ok(q["ids"]
            .as_array()
            .context("ids")?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    };
    let ids = order(&env)?;
    assert_eq!(ids.first(), Some(&zeta), "{ids:?}");
    assert_eq!(ids.last(), Some(&inbox), "{ids:?}");
    let sort_of = |e: &Env, id: &str| -> Result<Value> {
        Ok(e.call(
            "Mailbox/get",
            json!({"accountId": "a1", "ids": [id], "properties": ["sortOrder"]}),
        )?["list"][0]["sortOrder"]
            .clone())
    };
    assert_eq!(sort_of(&env, &inbox)?, 500);
    // A change clients are told about.
    let ch = env.call(
        "Mailbox/changes",
        json!({"accountId": "a1", "sinceState": state}),
    )?;
    assert!(
        ch["updated"]
            .as_array()
            .is_some_and(|u| u.iter().any(|x| x == inbox.as_str())),
        "{ch}"
    );
    // Kept through the server's confirmation of Zeta and a sync pass (IMAP has no order).
    let mut c = env.imap()?;
    env.wait(Duration::from_secs(10), "Zeta on the server", |_| {
        Ok(listed(&c.raw_command("LIST \"\" \"*\"")?, "Zeta"))
    })?;
    env.dovecot
        .deliver(USER, &corpus::message("bob@example.org", USER, "new", "x"))?;
    env.wait(Duration::from_secs(15), "the new message synced", |e| {
        Ok(e.total("INBOX")? == 2)
    })?;
    assert_eq!(sort_of(&env, &inbox)?, 500);
    assert_eq!(sort_of(&env, &zeta)?, 0);
    Ok(())
}

/// An empty `/set` map: `{}` (as Tidings sends it) or null (RFC 8620 5.3 allows both).
fn nothing(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(|m| m.is_empty())
}
