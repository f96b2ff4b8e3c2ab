//! The web client end to end: Debian's headless Chromium, driven by
//! playwright-core (`web/e2e/run.mjs`), against a real `tidings serve` synced from the
//! private Dovecot. The script asks this test to deliver mail over LMTP (`DELIVER kind`
//! on its stdout, `OK` back on its stdin), so the live checks see real deliveries.
//!
//! Needs `web/dist` (the built client, embedded at compile time), `web/node_modules` and
//! `/usr/bin/chromium`: `./scripts/test` provides all three.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, Smtp, corpus};

const USER: &str = "alice@example.org";

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// A 1×1 PNG, so that the inline preview has a real image to decode.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn photo_message() -> Vec<u8> {
    format!(
        "From: Bea <bea@example.org>\r\nTo: alice@example.org\r\nSubject: Holiday photo\r\n\
         Date: Tue, 01 Dec 2026 09:00:00 +0000\r\nMessage-ID: <photo@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nThe beach, as promised.\r\n--b1\r\n\
         Content-Type: image/png; name=\"beach.png\"\r\n\
         Content-Disposition: attachment; filename=\"beach.png\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{PNG_B64}\r\n--b1--\r\n"
    )
    .into_bytes()
}

/// HTML carrying every trick the client must defuse; each one would hit the tracker.
fn hostile_message(tracker: &str) -> Vec<u8> {
    let t = format!("http://127.0.0.1:{tracker}");
    format!(
        "From: News <news@tracker.example>\r\nTo: alice@example.org\r\nSubject: Totally safe newsletter\r\n\
         Date: Tue, 01 Dec 2026 11:00:00 +0000\r\nMessage-ID: <hostile@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n\
         <html><head><script>window.parent.__pwned=1;fetch('{t}/script')</script></head><body>\r\n\
         <p>Hello!</p><img src=\"{t}/pixel.gif\" onerror=\"fetch('{t}/onerror')\">\r\n\
         <a href=\"javascript:fetch('{t}/js')\">Read our news</a>\r\n\
         <div style=\"width: expression(alert(1)); background: url({t}/css.png)\">styled</div>\r\n\
         <svg onload=\"fetch('{t}/svg')\"></svg><iframe src=\"{t}/frame\"></iframe>\r\n\
         <form action=\"{t}/form\"><input name=q></form></body></html>\r\n"
    )
    .into_bytes()
}

#[test]
fn web_client_in_headless_chromium() -> Result<()> {
    let web = web_dir();
    if !web.join("dist/index.html").exists() {
        bail!("web/dist is missing: run `npm ci && npm run build` in web/ (./scripts/test does)");
    }
    if !web.join("node_modules/playwright-core").exists() {
        bail!("web/node_modules is missing: run `npm ci` in web/ (./scripts/test does)");
    }
    if !chromium().exists() {
        bail!(
            "{} is missing: install Debian's chromium (./scripts/test does)",
            chromium().display()
        );
    }
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, "imap-pw")?;
    let msg = |from: &str, subject: &str, body: &str| corpus::message(from, USER, subject, body);
    dovecot.deliver(
        USER,
        &msg(
            "carol@example.org",
            "Quarterly report",
            "numbers are up, see https://example.org/q3 (not javascript:alert(1))",
        ),
    )?;
    dovecot.deliver(
        USER,
        &msg("billing@example.org", "Invoice 2041", "due soon"),
    )?;
    dovecot.deliver(
        USER,
        &msg("billing@example.org", "Invoice 2042", "due later"),
    )?;
    dovecot.deliver(
        USER,
        &msg("dan@example.org", "Friday?", "shall we have lunch at noon"),
    )?;
    dovecot.deliver(USER, &photo_message())?;

    // Sending goes through the testkit's Postfix, which delivers back into Dovecot.
    let smtp = Smtp::start(&dovecot)?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"{USER}\"\npassword = \"imap-pw\"\n\
             ca_file = \"{}\"\n\
             [account.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\n\
             [[user]]\nname = \"bob\"\npassword = \"pw2\"\n\
             [[account]]\nuser = \"bob\"\nname = \"nosmtp\"\nkind = \"imap\"\n\
             host = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\nusername = \"{USER}\"\n\
             password = \"imap-pw\"\nca_file = \"{}\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.imaps_port(),
            dovecot.ca_file().display(),
            smtp.submissions_port(),
            // The demo's case: an account without [account.smtp] (a second user, on
            // the same mailbox).
            dovecot.imaps_port(),
            dovecot.ca_file().display(),
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
        .map(|t| PathBuf::from(t).join("web-e2e"))
        .unwrap_or_else(|| web.join("test-results"));
    let mut node = Command::new("node")
        .arg("e2e/run.mjs")
        .current_dir(&web)
        .env("TIDINGS_URL", format!("http://127.0.0.1:{port}"))
        .env("TIDINGS_USER", "alice")
        .env("TIDINGS_PASSWORD", "pw")
        .env("TIDINGS_NOSMTP_USER", "bob")
        .env("TIDINGS_NOSMTP_PASSWORD", "pw2")
        .env("CHROMIUM", chromium())
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
                if start.elapsed() > Duration::from_secs(300) {
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
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some("DELIVER"), Some("hostile"), Some(tracker)) => {
                dovecot.deliver(USER, &hostile_message(tracker))?;
                writeln!(stdin, "OK")?;
            }
            (Some("DELIVER"), Some("live"), n) => {
                let subject = format!("Live delivery {}", n.unwrap_or("1"));
                dovecot.deliver(USER, &msg("erin@example.org", &subject, "just arrived"))?;
                writeln!(stdin, "OK")?;
            }
            (Some("DELIVER"), Some("imap-changes"), _) => {
                // Another device: reads the third message (Invoice 2042), files the second
                // (Invoice 2041) away.
                let mut c = ImapClient::login(dovecot.imap_port(), USER, "imap-pw")?;
                c.select("INBOX")?;
                let uids = c.uids()?;
                let (Some(second), Some(third)) = (uids.get(1), uids.get(2)) else {
                    bail!("INBOX has fewer than three messages: {uids:?}");
                };
                c.store_flags(&third.to_string(), "+FLAGS", &["\\Seen"])?;
                c.move_uids(&second.to_string(), "Archive")?;
                c.logout()?;
                writeln!(stdin, "OK")?;
            }
            (Some("DELIVER"), Some("imap-flag"), Some(on)) => {
                // Another device flags (or unflags) the first message, Quarterly report.
                let mut c = ImapClient::login(dovecot.imap_port(), USER, "imap-pw")?;
                c.select("INBOX")?;
                let Some(first) = c.uids()?.first().copied() else {
                    bail!("INBOX is empty");
                };
                let op = if on == "on" { "+FLAGS" } else { "-FLAGS" };
                c.store_flags(&first.to_string(), op, &["\\Flagged"])?;
                c.logout()?;
                writeln!(stdin, "OK")?;
            }
            (Some("DONE"), _, _) => done = true,
            _ => {
                outcome = Err(anyhow::anyhow!(
                    "unexpected line from the e2e script: {line}"
                ));
                writeln!(stdin, "NO")?;
            }
        }
    }
    let status = node.wait()?;
    finished.store(true, Ordering::Relaxed);
    let killed = watchdog.join().unwrap_or(false);
    let _ = serve.kill();
    let _ = serve.wait();
    outcome?;
    if killed {
        bail!("the browser run took longer than 300 s");
    }
    if !status.success() || !done {
        bail!(
            "the browser checks failed (see [e2e] lines above); server log:\n{}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
    }
    eprintln!("screenshots in {}", artifacts.display());
    Ok(())
}

/// Opening a message the background body pass has not reached: `tidings serve` runs with
/// `imap_background_bodies = false` (headers only), so no body is stored when the browser
/// opens the message; the reader must show it all the same (`E2E_STEP=unfetched` in
/// `web/e2e/run.mjs`, a self-contained step with its own browser and sign-in).
#[test]
fn web_client_opens_a_message_not_fetched_yet() -> Result<()> {
    let web = web_dir();
    if !web.join("dist/index.html").exists() || !web.join("node_modules/playwright-core").exists() {
        bail!("web/dist or web/node_modules is missing: run `npm ci && npm run build` in web/");
    }
    if !chromium().exists() {
        bail!(
            "{} is missing: install Debian's chromium",
            chromium().display()
        );
    }
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, "imap-pw")?;
    dovecot.deliver(
        USER,
        &corpus::message(
            "gina@example.org",
            USER,
            "Not fetched yet",
            "This body is fetched when opened.",
        ),
    )?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             imap_background_bodies = false\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"none\"\nusername = \"{USER}\"\npassword = \"imap-pw\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.imap_port(),
        ),
    )?;
    let bin = env!("CARGO_BIN_EXE_tidings");
    let log = std::fs::File::create(dir.path().join("serve.log"))?;
    let mut serve = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()?;
    // `tidings account list` ends each account's line with "..., N bodies".
    let bodies = || -> Result<Option<(usize, String)>> {
        let out = Command::new(bin)
            .args(["account", "list", "--config"])
            .arg(&config)
            .env("RUST_LOG", "error")
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let n = text.lines().find_map(|l| {
            l.split(", ").find_map(|p| {
                p.trim()
                    .strip_suffix(" bodies")
                    .and_then(|n| n.trim().parse::<usize>().ok())
            })
        });
        Ok(n.map(|n| (n, text)))
    };
    let run = || -> Result<()> {
        // The header is synced (the account is watching), its body is not.
        let start = Instant::now();
        loop {
            if let Some((n, text)) = bodies()?
                && text.contains("\tok")
                && text.contains("1/1 messages")
            {
                if n != 0 {
                    bail!("a body was stored with the background pass held back: {text}");
                }
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("the account never synced");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = Command::new("node")
            .arg("e2e/run.mjs")
            .current_dir(&web)
            .env("E2E_STEP", "unfetched")
            .env("TIDINGS_URL", format!("http://127.0.0.1:{port}"))
            .env("TIDINGS_USER", "alice")
            .env("TIDINGS_PASSWORD", "pw")
            .env("CHROMIUM", chromium())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("running node")?;
        if !status.status.success() || !String::from_utf8_lossy(&status.stdout).contains("DONE") {
            bail!("the browser step failed (see [e2e] lines above)");
        }
        match bodies()? {
            Some((n, _)) if n >= 1 => Ok(()),
            other => bail!("opening it did not store its body: {other:?}"),
        }
    };
    let outcome = run();
    let _ = serve.kill();
    let _ = serve.wait();
    if outcome.is_err() {
        eprintln!(
            "server log:\n{}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
    }
    outcome
}
