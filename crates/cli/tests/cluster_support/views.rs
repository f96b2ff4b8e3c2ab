//! What the chaos tests compare: the mail server's view of an account (read by an
//! independent IMAP client), the store's view of it (psql), and JMAP over plain HTTP to
//! any node.

use super::rows;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use testkit::Postgres;
use testkit::imap_client::ImapClient;

/// Mailbox name -> Message-ID -> the flags of each copy with that Message-ID (sorted,
/// `\Recent` left out: it says which session saw the message first, not what the user
/// set). A message stored twice shows as two entries.
pub type View = BTreeMap<String, BTreeMap<String, Vec<Vec<String>>>>;

fn flags_of(words: &str) -> Vec<String> {
    let mut f: Vec<String> = words
        .split_whitespace()
        .filter(|w| !w.eq_ignore_ascii_case("\\Recent"))
        .map(str::to_owned)
        .collect();
    f.sort();
    f
}

fn bare_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

/// The server's view of `mailboxes`, through a fresh IMAP connection.
pub fn imap_view(port: u16, user: &str, pass: &str, mailboxes: &[&str]) -> Result<View> {
    let mut c = ImapClient::login(port, user, pass)?;
    let mut view = View::new();
    for m in mailboxes {
        let entry = view.entry((*m).to_owned()).or_default();
        c.select(m)?;
        let out = c.raw_command("UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")?;
        // One response per message; literals are inlined, so the header follows its line.
        for resp in out.split("\r\n* ").filter(|r| r.contains(" FETCH (")) {
            let flags = resp
                .split_once("FLAGS (")
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(inner, _)| flags_of(inner))
                .with_context(|| format!("no FLAGS in {resp:?}"))?;
            let id = resp
                .lines()
                .find_map(|l| {
                    let (k, v) = (l.get(..11)?, l.get(11..)?);
                    k.eq_ignore_ascii_case("message-id:").then(|| bare_id(v))
                })
                .with_context(|| format!("no Message-ID in {resp:?}"))?;
            entry.entry(id).or_default().push(flags);
        }
    }
    c.logout()?;
    Ok(view)
}

/// The store's view of the same mailboxes of account `account`.
pub fn store_view(pg: &Postgres, db: &str, account: i64, mailboxes: &[&str]) -> Result<View> {
    let mut view: View = mailboxes
        .iter()
        .map(|m| ((*m).to_owned(), BTreeMap::new()))
        .collect();
    for r in rows(
        pg,
        db,
        &format!(
            "SELECT b.name, e.message_id, c.flags FROM copy c \
             JOIN mailbox b ON b.id = c.mailbox_id JOIN email e ON e.id = c.email_id \
             WHERE b.account_id = {account}"
        ),
    )? {
        if let Some(m) = view.get_mut(&r[0]) {
            m.entry(bare_id(&r[1])).or_default().push(flags_of(&r[2]));
        }
    }
    Ok(view)
}

/// One JMAP request (as user `alice`, password `x`) over a fresh HTTP/1.1 connection to
/// the node on `port`; the whole response.
pub fn jmap(port: u16, calls: Value) -> Result<Value> {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail",
                  "urn:ietf:params:jmap:submission"],
        "methodCalls": calls,
    })
    .to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST /jmap/api HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YWxpY2U6eA==\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").context("no HTTP body")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("JMAP request refused: {head}\n{body}");
    }
    serde_json::from_str(body).with_context(|| format!("body {body:?}"))
}

/// One method call; its response's arguments (an error response fails).
pub fn call(port: u16, name: &str, args: Value) -> Result<Value> {
    let v = jmap(port, json!([[name, args, "0"]]))?;
    let first = &v["methodResponses"][0];
    if first[0] != name {
        bail!("{name} failed: {v}");
    }
    Ok(first[1].clone())
}
