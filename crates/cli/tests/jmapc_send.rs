//! Sending with an independent JMAP client (Python's jmapc) through a live `tidings serve`
//! over HTTPS, into the testkit's Postfix, which delivers into the private Dovecot.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, SeedMessage, Smtp};

const USER: &str = "alice@example.org";
const PASS: &str = "imap-pw";

/// The Python that has jmapc: `TIDINGS_PYTHON`, else the repository's `.venv`.
fn python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TIDINGS_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        return Ok(venv);
    }
    bail!("no Python with jmapc: run ./scripts/test, or set TIDINGS_PYTHON")
}

#[test]
fn jmapc_sends_a_draft_and_sees_the_smtp_reply() -> Result<()> {
    let python = python()?;
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    dovecot.seed(
        USER,
        "Drafts",
        &[SeedMessage {
            raw: format!(
                "From: Alice <{USER}>\r\nTo: {USER}\r\nSubject: from jmapc\r\n\
                 Message-ID: <jmapc@example.org>\r\n\r\nsent by jmapc\r\n"
            )
            .into_bytes(),
            flags: vec!["\\Draft".into()],
            internal_date: 1_795_000_000,
        }],
    )?;
    let smtp = Smtp::start(&dovecot)?;
    let tls_dir = dovecot.ca_file().parent().context("tls dir")?.to_path_buf();
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"{USER}\"\npassword = \"{PASS}\"\n\
             ca_file = \"{}\"\n\
             [account.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            tls_dir.join("server.pem").display(),
            tls_dir.join("server.key").display(),
            dovecot.imaps_port(),
            dovecot.ca_file().display(),
            smtp.submissions_port(),
        ),
    )?;
    let mut serve = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jmap-client/jmapc_send.py");
    let run = |rcpt: &str| -> Result<serde_json::Value> {
        let start = Instant::now();
        loop {
            let out = Command::new(&python)
                .arg(&script)
                .arg(format!("127.0.0.1:{port}"))
                .args(["alice", "pw", rcpt])
                .env("REQUESTS_CA_BUNDLE", dovecot.ca_file())
                .output()?;
            // The draft may not be synced yet (no draft, no identity yet): try again.
            if out.status.success() {
                return Ok(serde_json::from_slice(&out.stdout)?);
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "jmapc never sent: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let ok = run(USER);
    let refused = run("nobody@refused.test");
    serve.kill()?;
    serve.wait()?;
    let (ok, refused) = (ok?, refused?);
    assert_eq!(ok["identity"], USER, "{ok}");
    assert_eq!(ok["undo"], "final", "{ok}");
    assert_eq!(ok["delivered"], "queued", "{ok}");
    assert!(
        ok["reply"].as_str().is_some_and(|r| r.starts_with("250")),
        "{ok}"
    );
    assert_eq!(ok["mail_from"], USER);
    assert!(ok["send_at"].is_string(), "{ok}");
    assert_eq!(refused["delivered"], "no", "{refused}");
    assert!(
        refused["reply"]
            .as_str()
            .is_some_and(|r| r.starts_with("550")),
        "{refused}"
    );
    assert_eq!(smtp.accepted_message_ids(), vec!["jmapc@example.org"]);
    let start = Instant::now();
    loop {
        let mut c = ImapClient::login(dovecot.imap_port(), USER, PASS)?;
        c.select("INBOX")?;
        if c.uids()?.len() == 1 {
            break;
        }
        if start.elapsed() > Duration::from_secs(15) {
            bail!("the sent message never reached INBOX");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
