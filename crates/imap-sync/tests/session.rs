//! The `Session` methods the engine's outbox and sync loop use instead of command text of
//! their own, against a private Dovecot: flags read back after a STORE, a search by
//! Message-ID, leaving a mailbox (also when none is selected), and what arrived
//! unsolicited during a command.

mod common;

use anyhow::{Context, Result};
use common::env;
use imap_sync::response::Response;
use std::time::Duration;
use testkit::{DovecotOptions, SeedMessage};

fn message(id: &str, subject: &str) -> SeedMessage {
    SeedMessage {
        raw: format!(
            "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\
             Message-ID: <{id}>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n{subject}\r\n"
        )
        .into_bytes(),
        flags: vec![],
        internal_date: 1_700_000_000,
    }
}

/// Every step is bounded: a server that stops answering fails the test, not the run.
async fn within<T>(f: impl std::future::Future<Output = imap_sync::Result<T>>) -> Result<T> {
    Ok(tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .context("no answer within 30 s")??)
}

#[tokio::test]
async fn session_methods_say_what_the_outbox_means() -> Result<()> {
    let e = env(DovecotOptions::default()).await?;
    e.dovecot.seed(
        common::USER,
        "INBOX",
        &[
            message("one@example.org", "first"),
            message("two@example.org", "second"),
        ],
    )?;
    let mut s = e.session().await?;
    assert!(s.condstore(), "the private Dovecot offers CONDSTORE");

    // A STORE reports the MODSEQ it produced (RFC 7162 3.1.3), and a flag fetch reads
    // back the same flags and MODSEQ; a UID the server lacks is left out.
    within(s.select("INBOX")).await?;
    let out = within(s.uid_store(&[1], true, &["\\Flagged".to_string()], None)).await?;
    let stored = out
        .highest_modseq
        .context("no MODSEQ reported for the STORE")?;
    let flags = within(s.uid_fetch_flags(&[1, 2, 99])).await?;
    assert_eq!(
        flags.iter().map(|f| f.uid).collect::<Vec<_>>(),
        [1, 2],
        "{flags:?}"
    );
    assert!(flags[0].flags.iter().any(|f| f == "\\Flagged"), "{flags:?}");
    assert!(
        !flags[1].flags.iter().any(|f| f == "\\Flagged"),
        "{flags:?}"
    );
    assert_eq!(flags[0].modseq, Some(stored));

    // By Message-ID: the message carrying it, none for an unknown one, and none (nothing
    // sent) for one that cannot be quoted.
    assert_eq!(
        within(s.search_message_id("INBOX", "<two@example.org>")).await?,
        Some(2)
    );
    assert_eq!(
        within(s.search_message_id("INBOX", "<three@example.org>")).await?,
        None
    );
    assert_eq!(
        within(s.search_message_id("INBOX", "<a\r\nb@example.org>")).await?,
        None
    );

    // Leaving: once from the examined INBOX, then again with nothing selected (the server
    // refuses, which is where we wanted to be).
    within(s.leave_examined()).await?;
    within(s.leave_examined()).await?;
    within(s.unselect_if_offered()).await?;

    // A flag change by another client arrives during our next command, unsolicited
    // (RFC 3501 7: the server may send it with any command's answer); it is taken once.
    within(s.select("INBOX")).await?;
    s.clear_unsolicited();
    let mut other = e.client()?;
    other.select("INBOX")?;
    other.store_flags("1", "+FLAGS", &["\\Seen"])?;
    other.logout()?;
    within(s.uid_store(&[2], true, &["\\Answered".to_string()], None)).await?;
    let seen = s.take_unsolicited();
    assert!(
        seen.iter().any(|r| matches!(r, Response::Fetch(f)
            if f.uid == Some(1) && f.flags.as_ref().is_some_and(|fl| fl.iter().any(|x| x == "\\Seen")))),
        "the other client's change was not reported: {seen:?}"
    );
    assert!(s.take_unsolicited().is_empty(), "taken twice");
    s.logout().await;
    Ok(())
}
