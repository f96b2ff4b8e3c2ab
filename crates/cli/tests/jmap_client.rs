//! A real, independent JMAP client library (Python's jmapc, installed by scripts/test into
//! `.venv`) against a live `tidings serve` over HTTPS, synced from the private Dovecot.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, corpus};

/// The Python that has jmapc: `TIDINGS_PYTHON`, else the repository's `.venv`.
fn python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TIDINGS_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        return Ok(venv);
    }
    bail!(
        "no Python with jmapc: run ./scripts/test (it creates .venv with jmapc), \
         or set TIDINGS_PYTHON"
    )
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[test]
fn jmapc_lists_mailboxes_and_reads_inbox() -> Result<()> {
    let python = python()?;
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user("alice@example.org", "imap-pw")?;
    for i in 0..4 {
        dovecot.deliver(
            "alice@example.org",
            &corpus::message(
                "carol@example.org",
                "alice@example.org",
                &format!("Report {i}"),
                "numbers are up",
            ),
        )?;
    }
    // One message with an attachment whose bytes the download must give back exactly.
    let attachment: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&attachment)
    };
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    let with_attachment = format!(
        "From: carol@example.org\r\nTo: alice@example.org\r\nSubject: With attachment\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <att@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nSee the figures attached.\r\n--b1\r\n\
         Content-Type: application/octet-stream; name=\"figures.bin\"\r\n\
         Content-Disposition: attachment; filename=\"figures.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        lines.join("\r\n")
    );
    dovecot.deliver("alice@example.org", with_attachment.as_bytes())?;
    let tls_dir = dovecot.ca_file().parent().context("tls dir")?.to_path_buf();
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"alice@example.org\"\npassword = \"imap-pw\"\n\
             ca_file = \"{}\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            tls_dir.join("server.pem").display(),
            tls_dir.join("server.key").display(),
            dovecot.imaps_port(),
            dovecot.ca_file().display()
        ),
    )?;
    let mut serve = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jmap-client/jmapc_check.py");
    let start = Instant::now();
    let out = loop {
        let out = Command::new(&python)
            .arg(&script)
            .arg(format!("127.0.0.1:{port}"))
            .args(["alice", "pw"])
            .env("REQUESTS_CA_BUNDLE", dovecot.ca_file())
            .output()?;
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            if v["total"] == 5 {
                break v;
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = serve.kill();
            bail!(
                "jmapc never saw the synced INBOX: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Email/changes after a delivery gives exactly the new message.
    let since = out["email_state"]
        .as_str()
        .context("email state")?
        .to_string();
    dovecot.deliver(
        "alice@example.org",
        &corpus::message("dan@example.org", "alice@example.org", "Late news", "fresh"),
    )?;
    let start = Instant::now();
    let changes = loop {
        let o = Command::new(&python)
            .arg(&script)
            .arg(format!("127.0.0.1:{port}"))
            .args(["alice", "pw", "changes", &since])
            .env("REQUESTS_CA_BUNDLE", dovecot.ca_file())
            .output()?;
        if o.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
            if v["created"].as_array().is_some_and(|c| !c.is_empty()) {
                break v;
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = serve.kill();
            bail!(
                "Email/changes never showed the delivery: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    serve.kill()?;
    serve.wait()?;
    assert_eq!(changes["created"].as_array().map(|c| c.len()), Some(1));
    assert_ne!(changes["new_state"], since);
    assert_eq!(out["username"], "alice");
    assert_eq!(out["primary_mail"], "a1");
    assert_eq!(out["echo"]["hello"], "tidings");
    assert_eq!(out["identities"], serde_json::json!(["alice@example.org"]));
    assert_eq!(out["mailboxes"]["INBOX"]["total"], 5);
    assert_eq!(out["mailboxes"]["INBOX"]["unread"], 5);
    // RFC 2046 5.1.1: the CRLF before a boundary belongs to the boundary.
    assert_eq!(out["body"], "See the figures attached.");
    assert_eq!(out["attachment"]["name"], "figures.bin");
    assert_eq!(out["attachment"]["size"], attachment.len());
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&attachment))
    };
    assert_eq!(
        out["attachment"]["sha256"], sha,
        "the downloaded attachment is exact"
    );
    assert_eq!(out["mailboxes"]["Trash"]["role"], "trash");
    assert_eq!(
        out["subjects"],
        serde_json::json!(["With attachment", "Report 3", "Report 2"])
    );
    assert_eq!(out["from"][0], "carol@example.org");
    assert_eq!(out["previews"], serde_json::json!([true, true, true]));
    assert_eq!(out["threads"], 3);
    assert_eq!(
        out["or_by_subject"],
        serde_json::json!(["Report 1", "With attachment"])
    );
    Ok(())
}
