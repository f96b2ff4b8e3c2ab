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

mod web_support;

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, corpus};
use web_support::{Serve, artifacts, os, prerequisites, run_script};

const USER: &str = "alice@example.org";
/// The login of alice's second account.
const HOME: &str = "bob@example.org";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
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
    let python = root.join(".venv/bin/python");
    prerequisites(&["playwright-core"])?;
    if !web_support::web_dir().join("dist/sw.js").exists() {
        bail!("web/dist/sw.js is missing: run `npm run build` in web/ (./scripts/test does)");
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

    // The push receiver is on loopback over http: allowed here only (tests).
    let serve = Serve::start(&format!(
        "push_subscription_allow_http = true\npush_subscription_allow_private = true\n\
         [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
         [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"none\"\nusername = \"{USER}\"\npassword = \"imap-pw\"\n\
         [[account]]\nuser = \"alice\"\nname = \"Home\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"none\"\nusername = \"{HOME}\"\npassword = \"imap-pw\"\n",
        dovecot.imap_port(),
        dovecot.imap_port(),
    ))?;
    let outcome = run_script(
        "push.mjs",
        &[
            ("TIDINGS_URL", serve.url().into()),
            ("TIDINGS_USER", "alice".into()),
            ("TIDINGS_PASSWORD", "pw".into()),
            ("PYTHON", os(&python)),
            ("ARTIFACTS", os(&artifacts("web-push-e2e"))),
        ],
        Duration::from_secs(240),
        |line| {
            if line == "DELIVER push" {
                dovecot.deliver(
                    USER,
                    &msg(
                        "Frida Push <frida@example.org>",
                        "Pushed while closed",
                        "pushed body",
                    ),
                )
            } else if let Some(subject) = line.strip_prefix("FLAGGED ") {
                // The outbox replays the change to Dovecot shortly after the client sent it.
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(20) {
                    if flagged_on_server(&dovecot, subject)? {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                bail!("{subject:?} is not \\Flagged on the server")
            } else {
                bail!("unexpected line from the e2e script: {line}")
            }
        },
    );
    if let Err(e) = outcome {
        bail!(
            "{e:#} ([push-e2e] lines above); server log:\n{}",
            serve.log()
        );
    }
    Ok(())
}
