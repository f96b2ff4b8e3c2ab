//! Email/query's filter tree and sorts, Email/queryChanges and Mailbox/queryChanges, the
//! `header:` properties of Email/get, blob upload and Email/parse: against `tidings serve`
//! synced from the private Dovecot, checked against what was seeded there.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, SeedMessage};

const BASIC: &str = "Basic YWxpY2U6cHc="; // alice:pw

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One HTTP/1.1 request; returns status, header block and body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    extra: &str,
    body: &[u8],
) -> Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {BASIC}\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("header end")?;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status")?;
    Ok((status, head, out[split + 4..].to_vec()))
}

struct Serve {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(dovecot: &Dovecot) -> Result<Serve> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let config = dir.path().join("t.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
                 [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
                 [[user]]\nname = \"bob\"\npassword = \"pw2\"\n\
                 [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
                 port = {}\nsecurity = \"none\"\nusername = \"alice@example.org\"\npassword = \"imap-pw\"\n",
                dir.path().join("data").display(),
                dir.path().join("key/k").display(),
                dovecot.imap_port(),
            ),
        )?;
        let child = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Serve {
            port,
            child,
            _dir: dir,
        })
    }

    /// Posts method calls; returns the methodResponses.
    fn call(&self, calls: Value) -> Result<Value> {
        let body = json!({
            "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
            "methodCalls": calls,
        })
        .to_string();
        let (status, _, body) = http(
            self.port,
            "POST",
            "/jmap/api",
            "Content-Type: application/json\r\n",
            body.as_bytes(),
        )?;
        if status != 200 {
            bail!("status {status}: {}", String::from_utf8_lossy(&body));
        }
        let v: Value = serde_json::from_slice(&body)?;
        Ok(v["methodResponses"].clone())
    }

    /// Waits until `n` Emails have their bodies stored; returns subject -> id and the
    /// mailbox ids by name. Asking for `preview` is what makes sure of the bodies: a
    /// body the background pass has not stored yet is fetched for it.
    fn wait_synced(&self, n: usize) -> Result<(Vec<(String, String)>, Value)> {
        let start = Instant::now();
        loop {
            let r = self.call(json!([
                ["Email/query", {"accountId": "a1"}, "q"],
                ["Email/get", {"accountId": "a1", "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": ["subject", "blobId", "preview"]}, "g"],
                ["Mailbox/get", {"accountId": "a1", "properties": ["name"]}, "m"]
            ]));
            if let Ok(r) = r
                && let Some(list) = r[1][1]["list"].as_array()
                && list.len() == n
                && list.iter().all(|e| e["blobId"].is_string())
            {
                let emails = list
                    .iter()
                    .map(|e| {
                        (
                            e["subject"].as_str().unwrap_or("").to_string(),
                            e["id"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect();
                let mut boxes = serde_json::Map::new();
                for m in r[2][1]["list"].as_array().into_iter().flatten() {
                    boxes.insert(
                        m["name"].as_str().unwrap_or("").to_string(),
                        m["id"].clone(),
                    );
                }
                return Ok((emails, Value::Object(boxes)));
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("the account never showed {n} synced Emails");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn message(from: &str, subject: &str, date: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: alice@example.org\r\nSubject: {subject}\r\nDate: {date}\r\n\
         Message-ID: <{}@example.org>\r\n{extra}MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        format!("{subject}{from}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>(),
    )
    .into_bytes()
}

fn seed(raw: Vec<u8>, flags: &[&str], internal_date: i64) -> SeedMessage {
    SeedMessage {
        raw,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        internal_date,
    }
}

const T0: i64 = 1_780_000_000;

/// INBOX: apple (seen, X-Priority 1), banana (flagged), cherry (X-Priority 3), the reply to
/// cherry (seen, flagged, long), date (long); Archive: elder (seen). Received in that
/// order; sent in another.
fn mailbox_fixture(dovecot: &Dovecot) -> Result<()> {
    let inbox = vec![
        seed(
            message(
                "Zed <zed@example.org>",
                "Re: apple pie",
                "Mon, 05 Jan 2026 10:00:00 +0000",
                "X-Priority: 1 (Highest)\r\nList-Unsubscribe: <mailto:leave@example.org>\r\n",
                "short",
            ),
            &["\\Seen"],
            T0 + 10,
        ),
        seed(
            message(
                "amy@example.org",
                "banana split",
                "Sun, 04 Jan 2026 10:00:00 +0000",
                "",
                "short too",
            ),
            &["\\Flagged"],
            T0 + 20,
        ),
        seed(
            message(
                "Emile <emile@example.org>",
                "Cherry tart",
                "Sat, 03 Jan 2026 10:00:00 +0000",
                "X-Priority: 3\r\n",
                "a tart",
            ),
            &[],
            T0 + 30,
        ),
        seed(
            message(
                "bob <bob@example.org>",
                "Re: Cherry tart",
                "Fri, 02 Jan 2026 10:00:00 +0000",
                "In-Reply-To: <CherrytartEmileemileexampleorg@example.org>\r\nReferences: <CherrytartEmileemileexampleorg@example.org>\r\n",
                &"long reply ".repeat(300),
            ),
            &["\\Seen", "\\Flagged"],
            T0 + 40,
        ),
        seed(
            message(
                "Carl <carl@example.org>",
                "date fruit",
                "Thu, 01 Jan 2026 10:00:00 +0000",
                "",
                &"dates ".repeat(100),
            ),
            &[],
            T0 + 50,
        ),
    ];
    dovecot.seed("alice@example.org", "INBOX", &inbox)?;
    dovecot.seed(
        "alice@example.org",
        "Archive",
        &[seed(
            message(
                "dave <dave@example.org>",
                "elder flower",
                "Tue, 06 Jan 2026 10:00:00 +0000",
                "",
                "flowers",
            ),
            &["\\Seen"],
            T0 + 60,
        )],
    )?;
    Ok(())
}

/// The subjects of a query response's ids.
fn subjects(r: &Value, by_id: &[(String, String)]) -> Vec<String> {
    r["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|id| {
            by_id
                .iter()
                .find(|(_, i)| i == id.as_str().unwrap_or(""))
                .map(|(s, _)| s.clone())
                .unwrap_or_else(|| format!("?{id}"))
        })
        .collect()
}

fn query(filter: Value, sort: Value) -> Value {
    json!({"accountId": "a1", "filter": filter, "sort": sort, "calculateTotal": true})
}

#[test]
fn email_query_filters_sorts_and_query_changes() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user("alice@example.org", "imap-pw")?;
    mailbox_fixture(&dovecot)?;
    let serve = Serve::start(&dovecot)?;
    let (emails, boxes) = serve.wait_synced(6)?;
    let inbox = boxes["INBOX"].clone();
    let archive = boxes["Archive"].clone();
    let desc = json!([{"property": "receivedAt", "isAscending": false}]);
    let asc = json!([{"property": "receivedAt"}]);
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "OR",
            query(
                json!({"operator": "OR", "conditions": [{"from": "zed"}, {"from": "CARL"}]}),
                desc.clone(),
            ),
            vec!["date fruit", "Re: apple pie"],
        ),
        (
            "NOT in INBOX",
            query(
                json!({"operator": "AND", "conditions": [{"inMailbox": inbox},
                    {"operator": "NOT", "conditions": [{"hasKeyword": "$seen"}]}]}),
                desc.clone(),
            ),
            vec!["date fruit", "Cherry tart", "banana split"],
        ),
        (
            "nested",
            query(
                json!({"operator": "OR", "conditions": [
                    {"operator": "AND", "conditions": [{"inMailbox": archive}, {"hasKeyword": "$seen"}]},
                    {"operator": "NOT", "conditions": [
                        {"operator": "OR", "conditions": [{"hasKeyword": "$seen"}, {"hasKeyword": "$flagged"}]}]}
                ]}),
                asc.clone(),
            ),
            vec!["Cherry tart", "date fruit", "elder flower"],
        ),
        (
            "header exists",
            query(json!({"header": ["x-priority"]}), asc.clone()),
            vec!["Re: apple pie", "Cherry tart"],
        ),
        (
            "header value",
            query(json!({"header": ["X-Priority", "highest"]}), asc.clone()),
            vec!["Re: apple pie"],
        ),
        (
            "someInThreadHaveKeyword",
            query(json!({"someInThreadHaveKeyword": "$flagged"}), asc.clone()),
            vec!["banana split", "Cherry tart", "Re: Cherry tart"],
        ),
        (
            "noneInThreadHaveKeyword",
            query(json!({"noneInThreadHaveKeyword": "$flagged"}), asc.clone()),
            vec!["Re: apple pie", "date fruit", "elder flower"],
        ),
        (
            "allInThreadHaveKeyword",
            query(json!({"allInThreadHaveKeyword": "$seen"}), asc.clone()),
            vec!["Re: apple pie", "elder flower"],
        ),
        (
            "inMailboxOtherThan",
            query(json!({"inMailboxOtherThan": [inbox]}), asc.clone()),
            vec!["elder flower"],
        ),
        (
            "sentAt",
            query(Value::Null, json!([{"property": "sentAt"}])),
            vec![
                "date fruit",
                "Re: Cherry tart",
                "Cherry tart",
                "banana split",
                "Re: apple pie",
                "elder flower",
            ],
        ),
        (
            "size desc in INBOX",
            query(
                json!({"inMailbox": inbox, "minSize": 600}),
                json!([{"property": "size", "isAscending": false}]),
            ),
            vec!["Re: Cherry tart", "date fruit"],
        ),
        (
            "from, case-insensitive",
            query(Value::Null, json!([{"property": "from"}])),
            vec![
                "banana split",
                "Re: Cherry tart",
                "date fruit",
                "elder flower",
                "Cherry tart",
                "Re: apple pie",
            ],
        ),
        (
            "from, i;octet",
            query(
                Value::Null,
                json!([{"property": "from", "collation": "i;octet", "isAscending": false}]),
            ),
            vec![
                "elder flower",
                "Re: Cherry tart",
                "banana split",
                "Re: apple pie",
                "Cherry tart",
                "date fruit",
            ],
        ),
        (
            "subject (base subject), then receivedAt desc",
            query(
                Value::Null,
                json!([{"property": "subject"}, {"property": "receivedAt", "isAscending": false}]),
            ),
            vec![
                "Re: apple pie",
                "banana split",
                "Re: Cherry tart",
                "Cherry tart",
                "date fruit",
                "elder flower",
            ],
        ),
        (
            "hasKeyword, then receivedAt",
            query(
                json!({"inMailbox": inbox}),
                json!([{"property": "hasKeyword", "keyword": "$flagged", "isAscending": false},
                       {"property": "receivedAt"}]),
            ),
            vec![
                "banana split",
                "Re: Cherry tart",
                "Re: apple pie",
                "Cherry tart",
                "date fruit",
            ],
        ),
    ];
    let calls: Vec<Value> = cases
        .iter()
        .map(|(name, args, _)| json!(["Email/query", args, name]))
        .collect();
    let r = serve.call(Value::Array(calls))?;
    for (i, (name, _, want)) in cases.iter().enumerate() {
        assert_eq!(r[i][0], "Email/query", "{name}: {}", r[i]);
        assert_eq!(subjects(&r[i][1], &emails), *want, "{name}: {}", r[i]);
        assert_eq!(r[i][1]["total"], want.len(), "{name}");
    }

    // The errors: each the RFC's type.
    let r = serve.call(json!([
        ["Email/query", {"accountId": "a1", "sort": [{"property": "color"}]}, "1"],
        ["Email/query", {"accountId": "a1", "sort": [{"property": "subject", "collation": "i;klingon"}]}, "2"],
        ["Email/query", {"accountId": "a1", "filter": {"colour": "red"}}, "3"],
        ["Email/query", {"accountId": "a1", "filter": {"operator": "XOR", "conditions": []}}, "4"],
        ["Email/query", {"accountId": "a1", "sort": [{"property": "hasKeyword"}]}, "5"],
        ["Email/query", {"accountId": "a1", "filter": {"header": []}}, "6"]
    ]))?;
    assert_eq!(r[0][1]["type"], "unsupportedSort", "{}", r[0]);
    assert_eq!(r[1][1]["type"], "unsupportedSort", "{}", r[1]);
    assert_eq!(r[2][1]["type"], "unsupportedFilter", "{}", r[2]);
    assert_eq!(r[3][1]["type"], "unsupportedFilter", "{}", r[3]);
    assert_eq!(r[4][1]["type"], "invalidArguments", "{}", r[4]);
    assert_eq!(r[5][1]["type"], "invalidArguments", "{}", r[5]);

    // header: properties of Email/get, from the stored message.
    let apple = &emails
        .iter()
        .find(|(s, _)| s == "Re: apple pie")
        .context("apple")?
        .1;
    let r = serve.call(json!([
        ["Email/get", {"accountId": "a1", "ids": [apple], "properties": [
            "header:Subject", "header:subject:asText", "header:From:asAddresses",
            "header:From:asGroupedAddresses", "header:Message-ID:asMessageIds",
            "header:Date:asDate", "header:List-Unsubscribe:asURLs", "header:X-Priority:all",
            "header:X-Missing", "header:X-Missing:all", "headers", "bodyStructure"],
            "bodyProperties": ["partId", "type", "header:Content-Type:asText"]}, "h"],
        ["Email/get", {"accountId": "a1", "ids": [apple], "properties": ["header:From:asDate"]}, "bad"]
    ]))?;
    let e = &r[0][1]["list"][0];
    assert_eq!(e["header:Subject"], " Re: apple pie", "{e}");
    assert_eq!(e["header:subject:asText"], "Re: apple pie");
    assert_eq!(
        e["header:From:asAddresses"],
        json!([{"name": "Zed", "email": "zed@example.org"}])
    );
    assert_eq!(
        e["header:From:asGroupedAddresses"],
        json!([{"name": null, "addresses": [{"name": "Zed", "email": "zed@example.org"}]}])
    );
    assert_eq!(
        e["header:Message-ID:asMessageIds"],
        json!(["ReapplepieZedzedexampleorg@example.org"])
    );
    assert_eq!(e["header:Date:asDate"], "2026-01-05T10:00:00Z");
    assert_eq!(
        e["header:List-Unsubscribe:asURLs"],
        json!(["mailto:leave@example.org"])
    );
    assert_eq!(e["header:X-Priority:all"], json!([" 1 (Highest)"]));
    assert_eq!(e["header:X-Missing"], Value::Null);
    assert_eq!(e["header:X-Missing:all"], json!([]));
    assert!(
        e["headers"]
            .as_array()
            .context("headers")?
            .contains(&json!({"name": "X-Priority", "value": " 1 (Highest)"}))
    );
    assert_eq!(
        e["bodyStructure"]["header:Content-Type:asText"], "text/plain; charset=utf-8",
        "{e}"
    );
    assert_eq!(r[1][1]["type"], "invalidArguments", "{}", r[1]);

    // queryChanges: the state of three queries, then a delivery and a flag change.
    let unseen = json!({"operator": "NOT", "conditions": [{"hasKeyword": "$seen"}]});
    let r = serve.call(json!([
        ["Email/query", {"accountId": "a1", "filter": {"inMailbox": inbox}, "sort": desc}, "inbox"],
        ["Email/query", {"accountId": "a1", "filter": unseen, "sort": desc}, "unseen"],
        ["Email/query", {"accountId": "a1", "sort": desc, "collapseThreads": true}, "threads"],
        ["Mailbox/query", {"accountId": "a1", "sort": [{"property": "name"}]}, "boxes"],
        ["Email/query", {"accountId": "a1", "filter": {"someInThreadHaveKeyword": "$seen"}}, "thread-kw"]
    ]))?;
    for i in 0..4 {
        assert_eq!(r[i][1]["canCalculateChanges"], true, "{}", r[i]);
    }
    assert_eq!(r[4][1]["canCalculateChanges"], false, "{}", r[4]);
    let state = r[0][1]["queryState"].clone();
    let old_inbox = r[0][1]["ids"].clone();
    let old_threads = r[2][1]["ids"].clone();
    assert_eq!(old_threads.as_array().map(|a| a.len()), Some(5));
    let banana = &emails
        .iter()
        .find(|(s, _)| s == "banana split")
        .context("banana")?
        .1;
    let mut imap = testkit::imap_client::ImapClient::login(
        dovecot.imap_port(),
        "alice@example.org",
        "imap-pw",
    )?;
    imap.select("INBOX")?;
    imap.store_flags("2", "+FLAGS", &["\\Seen"])?; // banana split
    imap.create("Later")?;
    dovecot.deliver(
        "alice@example.org",
        &message(
            "fay@example.org",
            "Re: Cherry tart",
            "Wed, 07 Jan 2026 10:00:00 +0000",
            "References: <CherrytartEmileemileexampleorg@example.org>\r\n",
            "me too",
        ),
    )?;
    let (emails, _) = serve.wait_synced(7)?;
    let newest = emails
        .iter()
        .find(|(_, id)| {
            !old_inbox
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o == id.as_str())
        })
        .context("the new Email")?
        .1
        .clone();
    // Wait for the flag change too.
    let start = Instant::now();
    loop {
        let r = serve.call(json!([["Email/get", {"accountId": "a1", "ids": [banana], "properties": ["keywords"]}, "k"]]))?;
        if r[0][1]["list"][0]["keywords"]["$seen"] == true {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the flag change never arrived");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = serve.call(json!([
        ["Email/queryChanges", {"accountId": "a1", "filter": {"inMailbox": inbox}, "sort": desc,
            "sinceQueryState": state, "calculateTotal": true}, "inbox"],
        ["Email/queryChanges", {"accountId": "a1", "filter": unseen, "sort": desc,
            "sinceQueryState": state}, "unseen"],
        ["Email/queryChanges", {"accountId": "a1", "sort": desc, "collapseThreads": true,
            "sinceQueryState": state}, "threads"],
        ["Mailbox/queryChanges", {"accountId": "a1", "sort": [{"property": "name"}],
            "sinceQueryState": state}, "boxes"],
        ["Email/queryChanges", {"accountId": "a1", "filter": {"inMailbox": inbox}, "sort": desc,
            "sinceQueryState": state, "maxChanges": 1}, "too-many"],
        ["Email/queryChanges", {"accountId": "a1", "sinceQueryState": "999999"}, "future"],
        ["Email/queryChanges", {"accountId": "a1", "filter": {"someInThreadHaveKeyword": "$seen"},
            "sinceQueryState": state}, "thread-kw"],
        ["Email/query", {"accountId": "a1", "filter": {"inMailbox": inbox}, "sort": desc}, "now-inbox"],
        ["Email/query", {"accountId": "a1", "sort": desc, "collapseThreads": true}, "now-threads"],
        ["Email/query", {"accountId": "a1", "filter": unseen, "sort": desc}, "now-unseen"],
        ["Mailbox/query", {"accountId": "a1", "sort": [{"property": "name"}]}, "now-boxes"]
    ]))?;
    for i in 0..4 {
        assert_eq!(
            r[i][0],
            format!("{}/queryChanges", if i == 3 { "Mailbox" } else { "Email" }),
            "{}",
            r[i]
        );
        assert_eq!(r[i][1]["oldQueryState"], state);
    }
    assert_eq!(r[0][1]["total"], 6);
    assert_eq!(
        r[0][1]["added"][0],
        json!({"id": newest, "index": 0}),
        "{}",
        r[0]
    );
    assert!(
        r[1][1]["removed"]
            .as_array()
            .context("removed")?
            .iter()
            .any(|x| x == banana.as_str())
    );
    assert_eq!(r[1][1]["added"][0]["id"], json!(newest), "{}", r[1]);
    assert_eq!(r[4][1]["type"], "tooManyChanges", "{}", r[4]);
    assert_eq!(r[5][1]["type"], "cannotCalculateChanges", "{}", r[5]);
    assert_eq!(r[6][1]["type"], "cannotCalculateChanges", "{}", r[6]);
    // Applying each answer to the old ids gives the new query's ids.
    let apply = |old: &Value, ch: &Value| -> Vec<Value> {
        let removed: Vec<&Value> = ch["removed"].as_array().into_iter().flatten().collect();
        let mut ids: Vec<Value> = old
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| !removed.contains(i))
            .cloned()
            .collect();
        for a in ch["added"].as_array().into_iter().flatten() {
            let at = (a["index"].as_u64().unwrap_or(0) as usize).min(ids.len());
            ids.insert(at, a["id"].clone());
        }
        ids
    };
    assert_eq!(
        apply(&old_inbox, &r[0][1]),
        r[7][1]["ids"].as_array().cloned().unwrap_or_default()
    );
    let threads_after = apply(&old_threads, &r[2][1]);
    assert_eq!(
        threads_after,
        r[8][1]["ids"].as_array().cloned().unwrap_or_default(),
        "{}",
        r[2]
    );
    assert!(
        r[3][1]["added"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| r[10][1]["ids"][a["index"].as_u64().unwrap_or(99) as usize] == a["id"]),
        "the new mailbox is added at its place: {}",
        r[3]
    );
    // upToId: a client that cached the old results only up to the Email before "banana
    // split" gets an answer that, applied to that cache, is the new results up to the same
    // Email; the flag change of "banana split", after it, is not added back (a run to the
    // end of the results would add it past the cache).
    let old: Vec<Value> = old_inbox.as_array().cloned().unwrap_or_default();
    let at = old
        .iter()
        .position(|i| i == banana.as_str())
        .context("banana in the old inbox")?;
    anyhow::ensure!(at >= 1, "banana split is first in {old:?}");
    let upto = old[at - 1].clone();
    let u = serve.call(json!([["Email/queryChanges", {"accountId": "a1",
        "filter": {"inMailbox": inbox}, "sort": desc, "sinceQueryState": state,
        "upToId": upto, "calculateTotal": true}, "u"]]))?;
    let now: Vec<Value> = r[7][1]["ids"].as_array().cloned().unwrap_or_default();
    let cut = now.iter().position(|i| *i == upto).context("upToId now")?;
    assert_eq!(
        apply(&Value::Array(old[..at].to_vec()), &u[0][1]),
        now[..=cut].to_vec(),
        "{}",
        u[0]
    );
    assert_eq!(u[0][1]["total"], 6, "{}", u[0]);
    Ok(())
}

/// A message with a text part, an attached message (itself with a text body) and a file.
fn message_with_attached_message() -> Vec<u8> {
    b"From: Ann <ann@example.org>\r\nTo: alice@example.org\r\nSubject: Fwd: minutes\r\n\
Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <outer@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nForwarding the minutes.\r\n--o\r\n\
Content-Type: message/rfc822\r\n\r\n\
From: Bob <bob@example.org>\r\nTo: team@example.org\r\nSubject: minutes\r\n\
Date: Mon, 30 Nov 2026 09:00:00 +0000\r\nMessage-ID: <inner@example.org>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nWe agreed on everything.\r\n--o\r\n\
Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n0123456789\r\n--o--\r\n"
        .to_vec()
}

#[test]
fn upload_parse_and_download() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user("alice@example.org", "imap-pw")?;
    let serve = Serve::start(&dovecot)?;
    serve.wait_synced(0)?;
    let raw = message_with_attached_message();
    let (status, head, body) = http(
        serve.port,
        "POST",
        "/jmap/upload/a1/",
        "Content-Type: message/rfc822\r\n",
        &raw,
    )?;
    assert_eq!(status, 201, "{head}");
    let up: Value = serde_json::from_slice(&body)?;
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&raw))
    };
    assert_eq!(up["blobId"], format!("b{sha}"));
    assert_eq!(up["accountId"], "a1");
    assert_eq!(up["type"], "message/rfc822");
    assert_eq!(up["size"], raw.len());
    let blob = up["blobId"].as_str().context("blobId")?.to_string();
    // Not a message; larger than a default axum body limit (2 MB), smaller than ours.
    let png: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let (status, _, body) = http(
        serve.port,
        "POST",
        "/jmap/upload/a1",
        "Content-Type: image/png\r\n",
        &png,
    )?;
    assert_eq!(status, 201);
    let png_blob = serde_json::from_slice::<Value>(&body)?["blobId"]
        .as_str()
        .context("png blob")?
        .to_string();

    let r = serve.call(json!([
        ["Email/parse", {"accountId": "a1", "blobIds": [blob, png_blob, format!("b{}", "0".repeat(64)), "nonsense"],
            "fetchTextBodyValues": true}, "p"],
    ]))?;
    let p = &r[0][1];
    assert_eq!(p["notParsable"], json!([png_blob]), "{p}");
    assert_eq!(p["notFound"].as_array().map(|a| a.len()), Some(2), "{p}");
    let e = &p["parsed"][&blob];
    assert_eq!(e["subject"], "Fwd: minutes");
    assert_eq!(
        e["from"],
        json!([{"name": "Ann", "email": "ann@example.org"}])
    );
    assert_eq!(e["messageId"], json!(["outer@example.org"]));
    assert_eq!(e["sentAt"], "2026-12-01T10:00:00Z");
    let text_part = e["textBody"][0]["partId"].as_str().context("text part")?;
    assert_eq!(
        e["bodyValues"][text_part]["value"],
        "Forwarding the minutes."
    );
    let attached = e["attachments"]
        .as_array()
        .context("attachments")?
        .iter()
        .find(|a| a["type"] == "message/rfc822")
        .context("the attached message")?;
    let inner_blob = attached["blobId"]
        .as_str()
        .context("inner blob")?
        .to_string();

    // The attached message parses too, and its own parts download.
    let r = serve.call(json!([
        ["Email/parse", {"accountId": "a1", "blobIds": [inner_blob],
            "properties": ["subject", "from", "textBody", "bodyValues", "header:Message-ID:asMessageIds", "blobId", "size"],
            "fetchTextBodyValues": true}, "p"],
    ]))?;
    let inner = &r[0][1]["parsed"][&inner_blob];
    assert_eq!(inner["subject"], "minutes", "{}", r[0]);
    assert_eq!(inner["from"][0]["email"], "bob@example.org");
    assert_eq!(
        inner["header:Message-ID:asMessageIds"],
        json!(["inner@example.org"])
    );
    let inner_text = inner["textBody"][0]["blobId"]
        .as_str()
        .context("inner text blob")?;
    let (status, _, body) = http(
        serve.port,
        "GET",
        &format!("/jmap/download/a1/{inner_text}/t.txt"),
        "",
        b"",
    )?;
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body).trim_end(),
        "We agreed on everything."
    );
    let (status, _, body) = http(
        serve.port,
        "GET",
        &format!("/jmap/download/a1/{blob}/m.eml"),
        "",
        b"",
    )?;
    assert_eq!(status, 200);
    assert_eq!(body, raw, "the upload downloads as uploaded");

    // Another user sees neither the upload nor the account.
    let bob = "Authorization: Basic Ym9iOnB3Mg==\r\n"; // bob:pw2
    let other = |method: &str, path: &str| -> Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", serve.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{bob}Content-Length: 3\r\nConnection: close\r\n\r\nabc"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        out.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("status")
    };
    assert_eq!(
        other("GET", &format!("/jmap/download/a1/{blob}/m.eml"))?,
        404
    );
    assert_eq!(other("POST", "/jmap/upload/a1/")?, 404);

    // maxConcurrentUpload (4): four uploads still sending hold the slots; a fifth is
    // refused; once they are gone, uploads go through again.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(("127.0.0.1", serve.port))?;
        write!(
            s,
            "POST /jmap/upload/a1/ HTTP/1.1\r\nHost: x\r\nAuthorization: {BASIC}\r\n\
                   Content-Length: 1000\r\n\r\npartial"
        )?;
        slow.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, body) = http(serve.port, "POST", "/jmap/upload/a1/", "", b"fifth")?;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("maxConcurrentUpload"));
    drop(slow);
    let start = Instant::now();
    loop {
        let (status, _, _) = http(serve.port, "POST", "/jmap/upload/a1/", "", b"later")?;
        if status == 201 {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("the upload slots were never given back (last status {status})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // maxSizeUpload: refused from the declared length, before the body is read.
    let mut s = TcpStream::connect(("127.0.0.1", serve.port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST /jmap/upload/a1/ HTTP/1.1\r\nHost: x\r\nAuthorization: {BASIC}\r\n\
               Content-Length: 60000000\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(
        out.contains("urn:ietf:params:jmap:error:limit") && out.contains("maxSizeUpload"),
        "{out}"
    );
    Ok(())
}
