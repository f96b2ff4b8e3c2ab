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

mod web_support;

use anyhow::{Result, bail};
use std::time::Duration;
use testkit::{Dovecot, DovecotOptions, Smtp, corpus};
use web_support::{Serve, artifacts, os, prerequisites, run_script};

const WORK: &str = "alice@example.org";
const HOME: &str = "bob@example.org";
/// A login that is not an address: its account starts without an identity.
const PLAIN: &str = "dave";
/// The account the script adds while the client is open.
const EXTRA: &str = "carol@example.org";
const MAIL_PASSWORD: &str = "imap-pw";
/// The whole browser run.
const LIMIT: Duration = Duration::from_secs(300);

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
    prerequisites(&["playwright-core"])?;
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
    let serve = Serve::start(&format!(
        "setup_ca_file = \"{}\"\n\
         [[user]]\nname = \"alice\"\npassword = \"pw\"\n{}{}{}",
        dovecot.ca_file().display(),
        account("Work", WORK, &dovecot, &smtp),
        account("Home", HOME, &dovecot, &smtp),
        account("Plain", PLAIN, &dovecot, &smtp),
    ))?;
    let artifacts = artifacts("web-accounts-e2e");
    let outcome = run_script(
        "accounts-multi.mjs",
        &[
            ("TIDINGS_URL", serve.url().into()),
            ("TIDINGS_USER", "alice".into()),
            ("TIDINGS_PASSWORD", "pw".into()),
            ("EXTRA_USER", EXTRA.into()),
            ("MAIL_PASSWORD", MAIL_PASSWORD.into()),
            ("IMAPS_PORT", dovecot.imaps_port().to_string().into()),
            ("SMTPS_PORT", smtp.submissions_port().to_string().into()),
            ("ARTIFACTS", os(&artifacts)),
        ],
        LIMIT,
        |line| {
            let mut parts = line.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("DELIVER"), Some(to), Some(subject)) if [WORK, HOME].contains(&to) => {
                    dovecot.deliver(to, &msg(to, "gina@example.org", subject))
                }
                _ => bail!("unexpected line from the e2e script: {line}"),
            }
        },
    );
    let server_log = serve.log();
    drop(serve);
    if let Err(e) = outcome {
        bail!("{e:#} ([accounts-multi] lines above); server log:\n{server_log}");
    }
    if server_log.contains(MAIL_PASSWORD) {
        bail!("a password is in the server log");
    }
    eprintln!("screenshots in {}", artifacts.display());
    Ok(())
}
