//! The web client on a phone and under an accessibility audit: Debian's headless
//! Chromium at 390×844, driven by playwright-core (`web/e2e/phone.mjs`), against a real
//! `tidings serve` synced from the private Dovecot, sending through the testkit's Postfix.
//! The script also runs axe-core (a devDependency, injected into the page, never part of
//! `web/dist`) on the main screens in light and dark, and checks the desktop list at
//! 1280 px.
//!
//! Needs `web/dist` (embedded at compile time), `web/node_modules` and `/usr/bin/chromium`:
//! `./scripts/test` provides all three.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, Smtp, corpus};

const USER: &str = "alice@example.org";

/// Sixty characters: the desktop list must show it whole at 1280 px.
const LONG_SUBJECT: &str = "Minutes of the planning meeting about the spring garden fair";

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

#[test]
fn web_client_on_a_phone_and_under_axe() -> Result<()> {
    let web = web_dir();
    if !web.join("dist/index.html").exists() {
        bail!("web/dist is missing: run `npm ci && npm run build` in web/ (./scripts/test does)");
    }
    for m in ["playwright-core", "axe-core"] {
        if !web.join("node_modules").join(m).exists() {
            bail!("web/node_modules/{m} is missing: run `npm ci` in web/ (./scripts/test does)");
        }
    }
    if !chromium().exists() {
        bail!(
            "{} is missing: install Debian's chromium",
            chromium().display()
        );
    }
    assert_eq!(LONG_SUBJECT.chars().count(), 60);
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, "imap-pw")?;
    let msg = |from: &str, subject: &str, body: &str| corpus::message(from, USER, subject, body);
    dovecot.deliver(
        USER,
        &msg("carol@example.org", "Quarterly report", "numbers are up"),
    )?;
    dovecot.deliver(
        USER,
        &msg("dan@example.org", LONG_SUBJECT, "the agenda is attached"),
    )?;
    dovecot.deliver(
        USER,
        &msg(
            "erin@example.org",
            "Lunch on Friday?",
            "shall we meet at noon",
        ),
    )?;
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
             [account.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.imaps_port(),
            dovecot.ca_file().display(),
            smtp.submissions_port(),
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
        .map(|t| PathBuf::from(t).join("web-phone-e2e"))
        .unwrap_or_else(|| web.join("test-results"));
    let run = || -> Result<()> {
        let mut node = Command::new("node")
            .arg("e2e/phone.mjs")
            .current_dir(&web)
            .env("TIDINGS_URL", format!("http://127.0.0.1:{port}"))
            .env("TIDINGS_USER", "alice")
            .env("TIDINGS_PASSWORD", "pw")
            .env("LONG_SUBJECT", LONG_SUBJECT)
            .env("CHROMIUM", chromium())
            .env("ARTIFACTS", &artifacts)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node")?;
        // The whole browser run is bounded: polled, then killed past the limit.
        let start = Instant::now();
        let status = loop {
            if let Some(s) = node.try_wait()? {
                break s;
            }
            if start.elapsed() > Duration::from_secs(300) {
                let _ = node.kill();
                let _ = node.wait();
                bail!("the browser run took longer than 300 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut out = String::new();
        if let Some(mut o) = node.stdout.take() {
            std::io::Read::read_to_string(&mut o, &mut out)?;
        }
        if !status.success() || !out.contains("DONE") {
            bail!("the browser checks failed (see [phone] lines above)");
        }
        Ok(())
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
    eprintln!("screenshots in {}", artifacts.display());
    outcome
}
