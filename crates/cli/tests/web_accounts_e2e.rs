//! Several accounts in the web client, end to end: Debian's headless Chromium driven by
//! playwright-core (`web/e2e/accounts-multi.mjs`) against a real `tidings serve` whose
//! user has three accounts on the private Dovecot (two whose logins are addresses, one
//! whose login is not) and sends through the testkit's Postfix. The browser checks each
//! account's folders in the sidebar, the unified Inbox with a live delivery to each
//! account, a draft saved, reopened from Drafts, edited and sent (its Sent copy and its
//! delivery read back here), an account added elsewhere appearing without a reload, and
//! a first identity made from the composer.
//!
//! The script asks this test to deliver (`DELIVER <user> <subject…>` on its stdout, `OK`
//! back on its stdin).
//!
//! Needs `web/dist` (embedded at compile time), `web/node_modules` and `/usr/bin/chromium`.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, Smtp, corpus};

const WORK: &str = "alice@example.org";
const HOME: &str = "bob@example.org";
/// A login that is not an address: its account starts without an identity.
const PLAIN: &str = "dave";
/// The account the script adds while the client is open.
const EXTRA: &str = "carol@example.org";
const MAIL_PASSWORD: &str = "imap-pw";
/// The whole browser run.
const LIMIT: Duration = Duration::from_secs(300);

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

fn prerequisites() -> Result<()> {
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
    Ok(())
}

/// One `[[account]]` of alice's on the private Dovecot, sending through Postfix.
fn account(name: &str, login: &str, dovecot: &Dovecot, smtp: &Smtp) -> String {
    format!(
        "[[account]]\nuser = \"alice\"\nname = \"{name}\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"tls\"\nusername = \"{login}\"\npassword = \"{MAIL_PASSWORD}\"\n\
         ca_file = \"{}\"\n\
         [account.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\n",
        dovecot.imaps_port(),
        dovecot.ca_file().display(),
        smtp.submissions_port(),
    )
}

#[test]
fn several_accounts_in_headless_chromium() -> Result<()> {
    prerequisites()?;
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    for u in [WORK, HOME, PLAIN, EXTRA] {
        dovecot.add_user(u, MAIL_PASSWORD)?;
    }
    let msg = |to: &str, from: &str, subject: &str| corpus::message(from, to, subject, "hello");
    dovecot.deliver(WORK, &msg(WORK, "carol@example.org", "Work report"))?;
    dovecot.deliver(HOME, &msg(HOME, "mum@example.org", "Home dinner"))?;
    dovecot.deliver(PLAIN, &msg(PLAIN, "erin@example.org", "Plain hello"))?;
    dovecot.deliver(EXTRA, &msg(EXTRA, "fred@example.org", "Extra news"))?;
    let smtp = Smtp::start(&dovecot)?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             setup_ca_file = \"{}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n{}{}{}",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.ca_file().display(),
            account("Work", WORK, &dovecot, &smtp),
            account("Home", HOME, &dovecot, &smtp),
            account("Plain", PLAIN, &dovecot, &smtp),
        ),
    )?;
    let log_path = dir.path().join("serve.log");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("WEB_E2E_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log_path)?))
        .spawn()?;
    let artifacts = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| PathBuf::from(t).join("web-accounts-e2e"))
        .unwrap_or_else(|| web_dir().join("test-results"));
    let mut node = Command::new("node")
        .arg("e2e/accounts-multi.mjs")
        .current_dir(web_dir())
        .env("TIDINGS_URL", format!("http://127.0.0.1:{port}"))
        .env("TIDINGS_USER", "alice")
        .env("TIDINGS_PASSWORD", "pw")
        .env("EXTRA_USER", EXTRA)
        .env("MAIL_PASSWORD", MAIL_PASSWORD)
        .env("IMAPS_PORT", dovecot.imaps_port().to_string())
        .env("SMTPS_PORT", smtp.submissions_port().to_string())
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
                if start.elapsed() > LIMIT {
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
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("DELIVER"), Some(to), Some(subject)) if [WORK, HOME].contains(&to) => {
                dovecot.deliver(to, &msg(to, "gina@example.org", subject))?;
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
    let server_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    outcome?;
    if killed {
        bail!("the browser run took longer than {} s", LIMIT.as_secs());
    }
    if !status.success() || !done {
        bail!(
            "the browser checks failed (see [accounts-multi] lines above); server log:\n{server_log}"
        );
    }
    if server_log.contains(MAIL_PASSWORD) {
        bail!("a password is in the server log");
    }
    eprintln!("screenshots in {}", artifacts.display());
    Ok(())
}
