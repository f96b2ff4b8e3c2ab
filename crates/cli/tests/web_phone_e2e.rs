//! The web client on a phone and under an accessibility audit: Debian's headless
//! Chromium at 390×844, driven by playwright-core (`web/e2e/phone.mjs`), against a real
//! `tidings serve` synced from the private Dovecot, sending through the testkit's Postfix.
//! The script also runs axe-core (a devDependency, injected into the page, never part of
//! `web/dist`) on the main screens in light and dark, and checks the desktop list at
//! 1280 px.
//!
//! Needs `web/dist` (embedded at compile time), `web/node_modules` and `/usr/bin/chromium`:
//! `./scripts/test` provides all three.

mod web_support;

use anyhow::Result;
use std::time::Duration;
use testkit::{Dovecot, DovecotOptions, Smtp, corpus};
use web_support::{Serve, artifacts, os, prerequisites, run_script};

const USER: &str = "alice@example.org";

/// Sixty characters: the desktop list must show it whole at 1280 px.
const LONG_SUBJECT: &str = "Minutes of the planning meeting about the spring garden fair";

#[test]
fn web_client_on_a_phone_and_under_axe() -> Result<()> {
    prerequisites(&["playwright-core", "axe-core"])?;
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
    let serve = Serve::start(&format!(
        "[[user]]\nname = \"alice\"\npassword = \"pw\"\n\
         [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"tls\"\nusername = \"{USER}\"\npassword = \"imap-pw\"\n\
         ca_file = \"{}\"\n\
         [account.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\n",
        dovecot.imaps_port(),
        dovecot.ca_file().display(),
        smtp.submissions_port(),
    ))?;
    let artifacts = artifacts("web-phone-e2e");
    let outcome = run_script(
        "phone.mjs",
        &[
            ("TIDINGS_URL", serve.url().into()),
            ("TIDINGS_USER", "alice".into()),
            ("TIDINGS_PASSWORD", "pw".into()),
            ("LONG_SUBJECT", LONG_SUBJECT.into()),
            ("ARTIFACTS", os(&artifacts)),
        ],
        Duration::from_secs(300),
        |line| anyhow::bail!("unexpected line from the e2e script: {line}"),
    );
    if outcome.is_err() {
        eprintln!("server log:\n{}", serve.log());
    }
    eprintln!("screenshots in {}", artifacts.display());
    outcome
}
