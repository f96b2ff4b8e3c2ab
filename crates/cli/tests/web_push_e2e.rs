//! The installable app, Web Push and offline reading end to end: Debian's headless
//! Chromium driven by playwright-core (`web/e2e/push.mjs`) against a real `tidings serve`
//! synced from the private Dovecot.
//!
//! - Web Push: the page registers a PushSubscription (RFC 8620 7.2) whose endpoint is a
//!   loopback receiver of the script; the server's pushes (RFC 8291, VAPID per RFC 8292)
//!   are decrypted with Python's http_ece and handed to the service worker through the
//!   DevTools protocol; a delivery made here while the app's tab is closed must end as a
//!   notification with sender and subject.
//! - Offline: with the network cut in Chromium, the app reloads from its cache, reads a
//!   message and queues a flag; back online, the flag must reach Dovecot (checked here
//!   over IMAP). A second account (another Dovecot user) is fetched ahead too: offline,
//!   its Inbox, one of its messages and the unified Inbox open from the cache.
//!
//! Needs `web/dist`, `web/node_modules`, `/usr/bin/chromium` and `.venv` with http_ece:
//! `./scripts/test` provides them.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, corpus};

const USER: &str = "alice@example.org";
/// The login of alice's second account.
const HOME: &str = "bob@example.org";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Whether the message of INBOX with `subject` carries `\Flagged` on the server.
fn flagged_on_server(dovecot: &Dovecot, subject: &str) -> Result<bool> {
    let mut c = ImapClient::login(dovecot.imap_port(), USER, "imap-pw")?;
    c.select("INBOX")?;
    let found = c.raw_command(&format!("UID SEARCH SUBJECT \"{subject}\""))?;
    let uid: u32 = found
        .lines()
        .find_map(|l| l.strip_prefix("* SEARCH "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .with_context(|| format!("no message {subject:?} in INBOX: {found}"))?;
    let flags = c.fetch_flags()?;
    c.logout()?;
    Ok(flags
        .iter()
        .any(|(u, f)| *u == uid && f.iter().any(|x| x.eq_ignore_ascii_case("\\Flagged"))))
}

#[test]
fn web_push_and_offline_in_headless_chromium() -> Result<()> {
    let root = repo();
    let web = root.join("web");
    let python = root.join(".venv/bin/python");
    if !web.join("dist/sw.js").exists() || !web.join("node_modules/playwright-core").exists() {
        bail!("web/dist or web/node_modules is missing: run `npm ci && npm run build` in web/");
    }
    if !chromium().exists() {
        bail!(
            "{} is missing: install Debian's chromium",
            chromium().display()
        );
    }
    let ece = Command::new(&python)
        .args(["-c", "import http_ece"])
        .status();
    if !ece.is_ok_and(|s| s.success()) {
        bail!(
            "{} has no http_ece: ./scripts/test installs it",
            python.display()
        );
    }
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, "imap-pw")?;
    dovecot.add_user(HOME, "imap-pw")?;
    dovecot.deliver(
        HOME,
        &corpus::message("mum@example.org", HOME, "Family dinner", "bring dessert"),
    )?;
    let msg = |from: &str, subject: &str, body: &str| corpus::message(from, USER, subject, body);
    dovecot.deliver(
        USER,
        &msg("carol@example.org", "Quarterly report", "numbers are up"),
    )?;
    dovecot.deliver(
        USER,
        &msg("billing@example.org", "Invoice 2041", "due soon"),
    )?;
    dovecot.deliver(
        USER,
        &msg("billing@example.org", "Invoice 2042", "due later"),
    )?;

    // An HTML message: offline, its sanitised page comes from the service worker's cache.
    dovecot.deliver(
        USER,
        b"From: News <news@example.org>\r\nTo: alice@example.org\r\nSubject: Offline newsletter\r\n\
          Date: Mon, 07 Dec 2026 09:00:00 +0000\r\nMessage-ID: <offline-html@example.org>\r\n\
          MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
          <p>Read <b>without a network</b>.</p>\r\n",
    )?;

    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("t.toml");
    // The push receiver is on loopback over http: allowed here only (tests).
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             push_subscription_allow_http = true\npush_subscription_allow_private = true\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"none\"\nusername = \"{USER}\"\npassword = \"imap-pw\"\n\
             [[account]]\nuser = \"alice\"\nname = \"Home\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"none\"\nusername = \"{HOME}\"\npassword = \"imap-pw\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.imap_port(),
            dovecot.imap_port(),
        ),
    )?;
    let log = std::fs::File::create(dir.path().join("serve.log"))?;
    let mut serve = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("WEB_E2E_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()?;
    let artifacts = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| PathBuf::from(t).join("web-push-e2e"))
        .unwrap_or_else(|| web.join("test-results"));
    let mut node = Command::new("node")
        .arg("e2e/push.mjs")
        .current_dir(&web)
        .env("TIDINGS_URL", format!("http://127.0.0.1:{port}"))
        .env("TIDINGS_USER", "alice")
        .env("TIDINGS_PASSWORD", "pw")
        .env("CHROMIUM", chromium())
        .env("PYTHON", &python)
        .env("ARTIFACTS", &artifacts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting node")?;
    let pid = node.id();
    // A watchdog: the whole browser run is bounded.
    let finished = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let finished = finished.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !finished.load(Ordering::Relaxed) {
                if start.elapsed() > Duration::from_secs(240) {
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
    };
    let mut stdin = node.stdin.take().context("node stdin")?;
    let stdout = BufReader::new(node.stdout.take().context("node stdout")?);
    let mut done = false;
    let mut outcome: Result<()> = Ok(());
    for line in stdout.lines() {
        let line = line?;
        if line == "DELIVER push" {
            dovecot.deliver(
                USER,
                &msg(
                    "Frida Push <frida@example.org>",
                    "Pushed while closed",
                    "pushed body",
                ),
            )?;
            writeln!(stdin, "OK")?;
        } else if let Some(subject) = line.strip_prefix("FLAGGED ") {
            // The outbox replays the change to Dovecot shortly after the client sent it.
            let start = Instant::now();
            let mut on = false;
            while !on && start.elapsed() < Duration::from_secs(20) {
                on = flagged_on_server(&dovecot, subject)?;
                if !on {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            if on {
                writeln!(stdin, "OK")?;
            } else {
                outcome = Err(anyhow::anyhow!(
                    "{subject:?} is not \\Flagged on the server"
                ));
                writeln!(stdin, "NO")?;
            }
        } else if line == "DONE" {
            done = true;
        } else {
            outcome = Err(anyhow::anyhow!(
                "unexpected line from the e2e script: {line}"
            ));
            writeln!(stdin, "NO")?;
        }
    }
    let status = node.wait()?;
    finished.store(true, Ordering::Relaxed);
    let killed = watchdog.join().unwrap_or(false);
    let _ = serve.kill();
    let _ = serve.wait();
    let fail = |why: String| -> Result<()> {
        bail!(
            "{why}; server log:\n{}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        )
    };
    outcome?;
    if killed {
        return fail("the browser run took longer than 240 s".into());
    }
    if !status.success() || !done {
        return fail("the browser checks failed (see [push-e2e] lines above)".into());
    }
    Ok(())
}
