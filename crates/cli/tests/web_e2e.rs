//! The web client end to end: Debian's headless Chromium, driven by
//! playwright-core (`web/e2e/run.mjs`), against a real `tidings serve` synced from the
//! private Dovecot. The script asks this test to deliver mail over LMTP (`DELIVER kind`
//! on its stdout, `OK` back on its stdin), so the live checks see real deliveries.
//!
//! Needs `web/dist` (the built client, embedded at compile time), `web/node_modules` and
//! `/usr/bin/chromium`: `./scripts/test` provides all three.

mod web_support;

use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, Smtp, corpus};
use web_support::{Serve, artifacts, chromium, os, prerequisites, run_script};

const USER: &str = "alice@example.org";

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
    prerequisites(&["playwright-core"])?;
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
    let serve = Serve::start(&format!(
        "[[user]]\nname = \"alice\"\npassword = \"pw\"\n\
         [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"tls\"\nusername = \"{USER}\"\npassword = \"imap-pw\"\n\
         ca_file = \"{}\"\n\
         [account.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\n\
         [[user]]\nname = \"bob\"\npassword = \"pw2\"\n\
         [[account]]\nuser = \"bob\"\nname = \"nosmtp\"\nkind = \"imap\"\n\
         host = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\nusername = \"{USER}\"\n\
         password = \"imap-pw\"\nca_file = \"{}\"\n",
        dovecot.imaps_port(),
        dovecot.ca_file().display(),
        smtp.submissions_port(),
        // The demo's case: an account without [account.smtp] (a second user, on the same
        // mailbox).
        dovecot.imaps_port(),
        dovecot.ca_file().display(),
    ))?;
    let artifacts = artifacts("web-e2e");
    let outcome = run_script(
        "run.mjs",
        &[
            ("TIDINGS_URL", serve.url().into()),
            ("TIDINGS_USER", "alice".into()),
            ("TIDINGS_PASSWORD", "pw".into()),
            ("TIDINGS_NOSMTP_USER", "bob".into()),
            ("TIDINGS_NOSMTP_PASSWORD", "pw2".into()),
            ("ARTIFACTS", os(&artifacts)),
        ],
        Duration::from_secs(300),
        |line| {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some("DELIVER"), Some("hostile"), Some(tracker)) => {
                    dovecot.deliver(USER, &hostile_message(tracker))?;
                    Ok(())
                }
                (Some("DELIVER"), Some("live"), n) => {
                    let subject = format!("Live delivery {}", n.unwrap_or("1"));
                    dovecot.deliver(USER, &msg("erin@example.org", &subject, "just arrived"))?;
                    Ok(())
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
                    Ok(())
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
                    Ok(())
                }
                _ => bail!("unexpected line from the e2e script: {line}"),
            }
        },
    );
    if let Err(e) = outcome {
        bail!("{e:#} ([e2e] lines above); server log:\n{}", serve.log());
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
    prerequisites(&["playwright-core"])?;
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
    let serve = Serve::start(&format!(
        "imap_background_bodies = false\n\
         [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
         [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"none\"\nusername = \"{USER}\"\npassword = \"imap-pw\"\n",
        dovecot.imap_port(),
    ))?;
    let bin = env!("CARGO_BIN_EXE_tidings");
    // `tidings account list` ends each account's line with "..., N bodies".
    let bodies = || -> Result<Option<(usize, String)>> {
        let out = Command::new(bin)
            .args(["account", "list", "--config"])
            .arg(serve.config())
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
            .current_dir(web_support::web_dir())
            .env("E2E_STEP", "unfetched")
            .env("TIDINGS_URL", serve.url())
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
    if outcome.is_err() {
        eprintln!("server log:\n{}", serve.log());
    }
    outcome
}
