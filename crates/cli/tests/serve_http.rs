//! `tidings serve` answers the JMAP Session resource on its `listen` address, for Basic and
//! for an API token made with `tidings token create`.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One HTTP/1.1 GET over a fresh connection; returns the status code and the body.
fn get(port: u16, path: &str, authorization: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[test]
fn serve_answers_the_session_resource() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display()
        ),
    )?;
    let bin = env!("CARGO_BIN_EXE_tidings");
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let basic = "Basic YWxpY2U6cHc="; // alice:pw
    let start = Instant::now();
    let result = loop {
        match get(port, "/.well-known/jmap", basic) {
            Ok(r) => break r,
            Err(_) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => {
                let _ = child.kill();
                bail!("serve never answered: {e}");
            }
        }
    };
    assert_eq!(result.0, 200, "{}", result.1);
    let v: serde_json::Value = serde_json::from_str(&result.1)?;
    assert_eq!(v["username"], "alice");
    assert_eq!(v["apiUrl"], format!("http://127.0.0.1:{port}/jmap/api"));

    let out = Command::new(bin)
        .args(["token", "create", "--user", "alice", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .output()?;
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    assert!(token.starts_with("tid_"));
    let (status, _) = get(port, "/jmap/session", &format!("Bearer {token}"))?;
    assert_eq!(status, 200);
    let (status, _) = get(port, "/jmap/session", "Bearer tid_wrong")?;
    assert_eq!(status, 401);
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// One HTTP/1.1 POST of a JSON body; returns the status code and the body.
fn post(port: u16, path: &str, authorization: &str, body: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[test]
fn mail_synced_from_dovecot_is_visible_through_jmap() -> Result<()> {
    use testkit::{Dovecot, DovecotOptions, corpus};
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user("alice@example.org", "imap-pw")?;
    for i in 0..3 {
        dovecot.deliver(
            "alice@example.org",
            &corpus::message("b@example.org", "alice@example.org", &format!("n{i}"), "x"),
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
             [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"alice@example.org\"\npassword = \"imap-pw\"\n\
             ca_file = \"{}\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.imaps_port(),
            dovecot.ca_file().display()
        ),
    )?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let basic = "Basic YWxpY2U6cHc="; // alice:pw
    let request = r#"{"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Mailbox/get", {"accountId": "a1", "properties": ["name", "role", "totalEmails", "unreadEmails"]}, "m"],
                        ["Email/changes", {"accountId": "a1", "sinceState": "0"}, "e"]]}"#;
    let start = Instant::now();
    let (inbox, emails) = loop {
        if let Ok((200, body)) = post(port, "/jmap/api", basic, request) {
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let inbox = v["methodResponses"][0][1]["list"]
                .as_array()
                .and_then(|l| l.iter().find(|m| m["role"] == "inbox").cloned());
            if let Some(inbox) = inbox
                && inbox["totalEmails"] == 3
            {
                break (inbox, v["methodResponses"][1][1].clone());
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("INBOX never showed 3 emails through JMAP");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(inbox["unreadEmails"], 3);
    assert_eq!(emails["created"].as_array().map(|a| a.len()), Some(3));

    // The client's first screen in one request: newest two of INBOX, their Emails and
    // Threads, chained with result references (RFC 8620 3.7).
    let request = serde_json::json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [
            ["Email/query", {"accountId": "a1", "filter": {"inMailbox": inbox["id"]},
                "sort": [{"property": "receivedAt", "isAscending": false}], "limit": 2,
                "calculateTotal": true}, "q"],
            ["Email/get", {"accountId": "a1", "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["subject", "from", "keywords", "mailboxIds", "threadId", "receivedAt", "preview"]}, "g"],
            ["Thread/get", {"accountId": "a1", "#ids": {"resultOf": "g", "name": "Email/get", "path": "/list/*/threadId"}}, "t"],
            ["Email/query", {"accountId": "a1", "filter": {"text": "n1"}}, "s"],
            ["Email/query", {"accountId": "a1", "sort": [{"property": "subject", "collation": "i;klingon"}]}, "badsort"],
            ["Email/query", {"accountId": "a1", "filter": {"operator": "XOR", "conditions": [{"text": "x"}]}}, "badfilter"],
            ["SearchSnippet/get", {"accountId": "a1", "filter": {"text": "n1"},
                "#emailIds": {"resultOf": "s", "name": "Email/query", "path": "/ids"}}, "snip"],
            ["Email/query", {"accountId": "a1", "filter": {"from": "B@EXAMPLE"}, "calculateTotal": true}, "from"],
            ["Email/query", {"accountId": "a1", "filter": {"subject": "n1"}, "calculateTotal": true}, "subj"],
            ["Email/query", {"accountId": "a1", "filter": {"hasKeyword": "$seen"}, "calculateTotal": true}, "seen"],
            ["Email/query", {"accountId": "a1", "filter": {"notKeyword": "$seen", "minSize": 1}, "calculateTotal": true}, "unseen"],
            ["Email/query", {"accountId": "a1", "filter": {"after": "2100-01-01T00:00:00Z"}, "calculateTotal": true}, "future"],
            ["Email/query", {"accountId": "a1", "filter": {"before": "2100-01-01T00:00:00Z", "hasAttachment": false}, "calculateTotal": true}, "past"],
            ["Email/query", {"accountId": "a1", "filter": {"inMailboxOtherThan": [inbox["id"]]}, "calculateTotal": true}, "elsewhere"],
            ["Email/query", {"accountId": "a1", "filter": {"to": "nobody@nowhere"}, "calculateTotal": true}, "to"]
        ]
    })
    .to_string();
    let (status, body) = post(port, "/jmap/api", basic, &request)?;
    child.kill()?;
    child.wait()?;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let r = &v["methodResponses"];
    assert_eq!(r[0][1]["total"], 3);
    assert_eq!(r[0][1]["ids"].as_array().map(|a| a.len()), Some(2));
    let list = r[1][1]["list"].as_array().context("Email/get list")?;
    assert_eq!(list.len(), 2);
    // Newest first: the last delivered is "n2".
    assert_eq!(list[0]["subject"], "n2");
    assert_eq!(list[0]["from"][0]["email"], "b@example.org");
    assert!(list[0]["mailboxIds"][inbox["id"].as_str().context("id")?] == true);
    assert_eq!(r[2][1]["list"].as_array().map(|a| a.len()), Some(2));
    assert_eq!(
        r[3][1]["ids"].as_array().map(|a| a.len()),
        Some(1),
        "{}",
        r[3]
    );
    assert_eq!(r[4][1]["type"], "unsupportedSort");
    assert_eq!(r[5][1]["type"], "unsupportedFilter");
    assert_eq!(r[6][1]["list"][0]["subject"], "<mark>n1</mark>");
    let total = |i: usize| r[i][1]["total"].clone();
    assert_eq!(total(7), 3, "from, case-insensitive: {}", r[7]);
    assert_eq!(total(8), 1, "subject: {}", r[8]);
    assert_eq!(total(9), 0, "hasKeyword: {}", r[9]);
    assert_eq!(total(10), 3, "notKeyword + minSize: {}", r[10]);
    assert_eq!(total(11), 0, "after: {}", r[11]);
    assert_eq!(total(12), 3, "before + hasAttachment: {}", r[12]);
    assert_eq!(total(13), 0, "inMailboxOtherThan: {}", r[13]);
    assert_eq!(total(14), 0, "to: {}", r[14]);
    Ok(())
}

/// A raw GET with extra header lines; returns status, the header block and the body.
fn get_raw(port: u16, path: &str, extra: &str) -> Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YWxpY2U6cHc=\r\n{extra}Connection: close\r\n\r\n"
    )?;
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

/// `tidings serve` for user alice (password `pw`) with one IMAP account on `dovecot`'s
/// alice@example.org (password `imap-pw`); the child, its port and its data dir.
fn serve_alice(
    dovecot: &testkit::Dovecot,
) -> Result<(std::process::Child, u16, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
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
    Ok((child, port, dir))
}

#[test]
fn a_synced_message_downloads_as_its_blob() -> Result<()> {
    use testkit::{Dovecot, DovecotOptions, corpus};
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user("alice@example.org", "imap-pw")?;
    let raw = corpus::message("b@example.org", "alice@example.org", "Blob me", "the body");
    dovecot.deliver("alice@example.org", &raw)?;
    let (mut child, port, _dir) = serve_alice(&dovecot)?;
    let request = r##"{"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Email/query", {"accountId": "a1"}, "q"],
            ["Email/get", {"accountId": "a1", "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
             "properties": ["blobId", "size"]}, "g"]]}"##;
    let start = Instant::now();
    let email = loop {
        if let Ok((200, body)) = post(port, "/jmap/api", "Basic YWxpY2U6cHc=", request) {
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let e = &v["methodResponses"][1][1]["list"][0];
            if e["blobId"].is_string() {
                break e.clone();
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("the message body never arrived");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let blob = email["blobId"].as_str().context("blobId")?;
    let path = format!("/jmap/download/a1/{blob}/message.eml?type=message/rfc822");
    let (status, head, body) = get_raw(port, &path, "")?;
    let ranged = get_raw(port, &path, "Range: bytes=0-9\r\n")?;
    let missing = get_raw(port, "/jmap/download/a1/b0000/x.eml", "")?;
    let foreign = get_raw(port, &format!("/jmap/download/a2/{blob}/x.eml"), "")?;
    child.kill()?;
    child.wait()?;
    assert_eq!(status, 200, "{head}");
    // As the server holds it: LMTP prepended its trace headers to what was delivered.
    assert!(
        body.ends_with(&raw),
        "the download is the delivered message"
    );
    assert!(body.starts_with(b"Return-Path:"));
    assert_eq!(Some(body.len() as u64), email["size"].as_u64());
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: message/rfc822"));
    assert!(lower.contains("content-disposition: attachment; filename=\"message.eml\""));
    assert!(lower.contains("x-content-type-options: nosniff"));
    assert_eq!(ranged.0, 206);
    assert_eq!(ranged.2, body[..10].to_vec());
    assert_eq!(missing.0, 404);
    assert_eq!(foreign.0, 404);
    Ok(())
}

/// An HTML mail's `cid:` image (multipart/related) is shown from the server's own download
/// of that part: the sanitised page points at it, and that URL serves the image's bytes.
#[test]
fn an_html_mail_shows_its_cid_images_from_the_server() -> Result<()> {
    use testkit::{Dovecot, DovecotOptions};
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user("alice@example.org", "imap-pw")?;
    let raw = b"From: b@example.org\r\nTo: alice@example.org\r\nSubject: logo\r\n\
Message-ID: <cid-test@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/related; boundary=\"r\"\r\n\r\n--r\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<p>Our logo: <img src=\"cid:logo@example.org\"></p>\r\n\
--r\r\nContent-Type: image/png; name=\"logo.png\"\r\nContent-ID: <logo@example.org>\r\n\
Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgoAAAANSUhEUg==\r\n--r--\r\n";
    dovecot.deliver("alice@example.org", raw)?;
    let (mut child, port, _dir) = serve_alice(&dovecot)?;
    let request = r##"{"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Email/query", {"accountId": "a1"}, "q"],
            ["Email/get", {"accountId": "a1", "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
             "properties": ["blobId", "htmlBody"]}, "g"]]}"##;
    let start = Instant::now();
    let html_blob = loop {
        if let Ok((200, body)) = post(port, "/jmap/api", "Basic YWxpY2U6cHc=", request) {
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let e = &v["methodResponses"][1][1]["list"][0];
            if e["blobId"].is_string()
                && let Some(b) = e["htmlBody"][0]["blobId"].as_str()
            {
                break b.to_string();
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("the message never arrived");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (status, head, page) = get_raw(port, &format!("/web/html/a1/{html_blob}"), "")?;
    let page = String::from_utf8_lossy(&page).to_string();
    let src = page
        .split("src=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(|s| s.replace("&amp;", "&"));
    let image = match &src {
        Some(s) => Some(get_raw(port, s, "")?),
        None => None,
    };
    child.kill()?;
    child.wait()?;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("img-src 'self' data:"),
        "{head}"
    );
    let src = src.with_context(|| format!("no image in {page}"))?;
    assert!(src.starts_with("/jmap/download/a1/"), "{src}");
    let (status, head, bytes) = image.context("image")?;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: image/png"),
        "{head}"
    );
    assert_eq!(
        bytes,
        [
            0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R'
        ]
    );
    Ok(())
}

/// Kills the server when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The config's HTTP limits reach the listener: an idle connection is closed after
/// `http_idle_timeout_ms`, an address holds at most `http_max_connections_per_address`
/// while another is served, and behind a `trusted_proxies` entry the client named by
/// `X-Forwarded-For` is the one limited for its wrong passwords, not every client of
/// the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_the_configured_http_limits() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             trusted_proxies = [\"127.0.0.9\"]\nhttp_idle_timeout_ms = 700\n\
             http_max_connections_per_address = 2\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display()
        ),
    )?;
    let _child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let connect = |n: u8| async move {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(std::net::SocketAddr::from(([127, 0, 0, n], 0)))?;
        s.connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
    };
    // One request on a kept-alive connection; `None` when the server closed it.
    async fn ask(s: &mut tokio::net::TcpStream, extra: &str) -> Option<u16> {
        s.write_all(format!("GET /jmap/session HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return head.split(' ').nth(1).and_then(|c| c.parse().ok());
                }
            }
            match tokio::time::timeout(Duration::from_secs(20), s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("no answer within 20 s"),
            }
        }
    }
    let start = Instant::now();
    let mut first = loop {
        if let Ok(mut s) = connect(1).await
            && ask(&mut s, "").await == Some(401)
        {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The cap: a second connection is served, a third from the same address is not,
    // another address is.
    let mut second = connect(1).await?;
    assert_eq!(ask(&mut second, "").await, Some(401));
    let mut third = connect(1).await?;
    assert_eq!(ask(&mut third, "").await, None);
    let mut other = connect(2).await?;
    assert_eq!(ask(&mut other, "").await, Some(401));
    // The idle timeout: both kept-alive connections are closed about 700 ms later.
    let idle = Instant::now();
    let mut b = [0u8; 16];
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), first.read(&mut b)).await??,
        0
    );
    assert!(
        idle.elapsed() < Duration::from_secs(3),
        "{:?}",
        idle.elapsed()
    );
    drop((first, second, third, other));

    // Behind the trusted proxy 127.0.0.9: wrong passwords of client 203.0.113.5 limit
    // that client, not 203.0.113.6.
    let basic = |pw: &str| {
        format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("alice:{pw}")
            )
        )
    };
    let via = |client: &str, pw: &str| {
        format!(
            "Authorization: {}\r\nX-Forwarded-For: {client}\r\n",
            basic(pw)
        )
    };
    let mut proxy = connect(9).await?;
    for _ in 0..11 {
        assert_eq!(
            ask(&mut proxy, &via("203.0.113.5", "wrong")).await,
            Some(401)
        );
    }
    assert_eq!(ask(&mut proxy, &via("203.0.113.5", "pw")).await, Some(429));
    assert_eq!(ask(&mut proxy, &via("203.0.113.6", "pw")).await, Some(200));
    Ok(())
}
