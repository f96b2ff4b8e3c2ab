//! What a server keeps stays private: the data dir is readable by its owner only whatever the
//! umask, and no log line carries mail content, even at the most verbose level.

mod push_support;

use anyhow::{Context, Result, bail};
use push_support::{basic, serve_logged, ws_connect_when_up};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions};

/// A word that appears only in the mail: in the subject, the sender's name, the text and the
/// HTML bodies and an attachment's name.
const MARKER: &str = "Quixotrembling";

fn marked_message() -> Vec<u8> {
    format!(
        "From: \"{MARKER} Sender\" <sender@example.org>\r\n\
         To: alice@example.org\r\n\
         Subject: About {MARKER}\r\n\
         Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <marked@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
         \r\n\
         --outer\r\n\
         Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
         \r\n\
         --alt\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         The plain {MARKER} text.\r\n\
         --alt\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         \r\n\
         <html><body><p onclick=\"x()\">The <b>{MARKER}</b> html.</p><script>evil()</script></body></html>\r\n\
         --alt--\r\n\
         --outer\r\n\
         Content-Type: application/octet-stream; name=\"{MARKER}.bin\"\r\n\
         Content-Disposition: attachment; filename=\"{MARKER}.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         AAECAwQ=\r\n\
         --outer--\r\n"
    )
    .into_bytes()
}

fn mode(p: &Path) -> Result<u32> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("{}", p.display()))?
        .permissions()
        .mode()
        & 0o777)
}

/// Every folder and file under `root` (bounded).
fn walk(root: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
            if out.len() > 10_000 {
                bail!("too many files under {}", root.display());
            }
        }
    }
    Ok(out)
}

/// One HTTP/1.1 GET; the status and the body.
async fn http_get(port: u16, path: &str, auth: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await??;
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    Ok((status, body.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_stays_private_and_mail_never_reaches_the_log() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user("alice@example.org", "imap-pw")?;
    dovecot.deliver("alice@example.org", &marked_message())?;
    let dir = tempfile::tempdir()?;
    // The server runs under umask 000: every mode it gets is its own choice.
    let wrapper = dir.path().join("tidings-umask0");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\numask 000\nexec '{}' \"$@\"\n",
            env!("CARGO_BIN_EXE_tidings")
        ),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    let log = dir.path().join("serve.log");
    let serve = serve_logged(
        &wrapper,
        &dovecot,
        &[("alice", "web-pw")],
        &[("alice", "alice@example.org", "imap-pw")],
        "",
        Some((&log, "trace")),
    )?;
    let auth = basic("alice", "web-pw");
    let mut ws = ws_connect_when_up(serve.port, &auth).await?;
    let ids = ws.wait_emails("a1", 1).await?;

    // Read the message every way a client can: the content passes through the parser, the
    // HTML sanitiser, the full-text index and the download path while the log is at trace.
    let start = Instant::now();
    let email = loop {
        let r = ws
            .call(json!([
                ["Email/get", {"accountId": "a1", "ids": ids,
                    "properties": ["subject", "from", "preview", "bodyValues", "textBody",
                                   "htmlBody", "attachments", "blobId", "headers"],
                    "fetchAllBodyValues": true}, "g"],
                ["Email/query", {"accountId": "a1", "filter": {"text": MARKER}}, "q"],
                ["SearchSnippet/get", {"accountId": "a1", "filter": {"text": MARKER},
                    "emailIds": ids}, "s"]
            ]))
            .await?;
        let email = r["methodResponses"][0][1]["list"][0].clone();
        if email["bodyValues"]
            .as_object()
            .is_some_and(|b| !b.is_empty())
            && r["methodResponses"][1][1]["ids"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
        {
            break email;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the body never arrived: {r}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(email.to_string().contains(MARKER), "{email}");
    let html_blob = email["htmlBody"][0]["blobId"]
        .as_str()
        .context("html part blobId")?;
    let (status, html) = http_get(serve.port, &format!("/web/html/a1/{html_blob}"), &auth).await?;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(MARKER) && !html.contains("evil()"), "{html}");
    let blob = email["blobId"].as_str().context("blobId")?;
    let (status, raw) = http_get(
        serve.port,
        &format!("/jmap/download/a1/{blob}/m.eml?accept=message/rfc822"),
        &auth,
    )
    .await?;
    assert_eq!(status, 200);
    assert!(raw.contains(MARKER));

    // The data dir: 0700 folders and 0600 files, whatever the umask.
    let data = serve
        .store_path()
        .parent()
        .context("data dir")?
        .to_path_buf();
    assert_eq!(mode(&data)?, 0o700, "data dir");
    let mut seen_blob = false;
    for p in walk(&data)? {
        let m = mode(&p)?;
        if p.is_dir() {
            assert_eq!(m, 0o700, "{}", p.display());
        } else {
            assert_eq!(m, 0o600, "{}", p.display());
            seen_blob |= p.starts_with(data.join("blobs"));
        }
    }
    assert!(seen_blob, "no blob file was written");
    assert!(data.join("tidings.sqlite-wal").exists());
    // The VAPID private key (beside the secret key file): the owner's only, never logged.
    let vapid = data.parent().context("dir")?.join("key/vapid.pem");
    assert_eq!(mode(&vapid)?, 0o600, "{}", vapid.display());
    let pem = std::fs::read_to_string(&vapid)?;
    let secret: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(secret.len() > 100, "{pem}");

    drop(ws);
    drop(serve);
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("DEBUG") || text.contains("TRACE"),
        "the log ran at trace"
    );
    // Past the fixed ASN.1 prefix every P-256 PKCS#8 key shares: the private scalar.
    assert!(
        !text.contains(&secret[48..88]),
        "the VAPID private key reached the log"
    );
    let leaks: Vec<&str> = text.lines().filter(|l| l.contains(MARKER)).collect();
    assert!(
        leaks.is_empty(),
        "{} log lines carry mail content, e.g. {:?}",
        leaks.len(),
        leaks
            .first()
            .map(|l| l.chars().take(300).collect::<String>())
    );
    Ok(())
}

#[test]
fn a_data_dir_others_can_read_is_warned_about() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir(&data)?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))?;
    let run = || -> Result<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["account", "list", "--data-dir"])
            .arg(&data)
            .arg("--key-file")
            .arg(dir.path().join("key/k"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "account list failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let stderr = run()?;
    assert!(
        stderr.contains("readable by other users") && stderr.contains(&*data.to_string_lossy()),
        "{stderr}"
    );
    // The store it created is private all the same.
    assert_eq!(mode(&data.join("tidings.sqlite"))?, 0o600);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
    let stderr = run()?;
    assert!(!stderr.contains("readable by other users"), "{stderr}");
    Ok(())
}
