//! The user's Email/set of 1,000 keyword changes on both backends, side by side in one
//! run: `N` Emails (default 5,000) in INBOX, then `ROUNDS` (default 30) times 1,000 of them
//! marked read or unread with one `update_emails` (the store's part of Email/set: copies,
//! keywords, change log and outbox entries in one transaction), each followed by the
//! worker's replay of the queue (`outbox_next` of the 1,000 entries, then
//! `outbox_complete` of all of them). SQLite is a file store (WAL, as `tidings serve`
//! opens it); PostgreSQL the test harness's private server on loopback (started here).
//!
//!     cargo run --release -p store --example writeback_backends
//!
//! Prints p50 and p99 of each step per backend and the ratio of the p50s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mail_types::{EmailId, ModSeq, Role, Uid, UidValidity};
use std::time::{Duration, Instant};
use store::prelude::*;
use store::*;

/// Emails changed by one Email/set.
const CHANGES: usize = 1_000;

/// Times of one backend's rounds.
#[derive(Default)]
struct Times {
    set: Vec<Duration>,
    replay: Vec<Duration>,
}

fn percentile(v: &[Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// A new account with `n` Emails in INBOX (ids 1..=n in a new store).
async fn seed<S: Directory + MailSync>(s: &S, n: u32) -> mail_types::AccountId {
    let u = s.create_user("u", "h").await.unwrap();
    let account = NewAccount {
        user: u,
        name: "a".into(),
        kind: mail_types::AccountKind::Imap,
        server: ServerSettings {
            host: "h".into(),
            port: 1,
            security: mail_types::Security::None,
            username: "u".into(),
            password_enc: vec![],
            ca_file: None,
        },
        smtp: None,
        pop3_delete_after_days: None,
        auth: Default::default(),
    };
    let a = s.create_account(&account).await.unwrap();
    let inbox = RemoteMailbox {
        raw_name: "INBOX".into(),
        name: "INBOX".into(),
        delimiter: Some("/".into()),
        role: Some(Role::Inbox),
        subscribed: true,
        selectable: true,
        uidvalidity: Some(7),
    };
    s.apply_mailbox_list(a, &[inbox]).await.unwrap();
    let inbox = s.mailboxes(a).await.unwrap()[0].id;
    for chunk in (1..=n).collect::<Vec<_>>().chunks(500) {
        let new = chunk
            .iter()
            .map(|&uid| {
                let raw = format!(
                    "From: a@example.org\r\nTo: b@example.org\r\nSubject: message {uid}\r\n\
                     Message-ID: <m{uid}@example.org>\r\n\r\nbody text of message {uid}\r\n"
                )
                .into_bytes();
                NewCopy {
                    uid: Uid(uid),
                    flags: vec![],
                    modseq: ModSeq(1),
                    internal_date: 1_700_000_000 + i64::from(uid),
                    size: raw.len() as u32,
                    server_email_id: None,
                    header_hash: mime::blob_id(&raw),
                    parsed: mime::parse(&raw),
                    raw: Some(bytes::Bytes::from(raw)),
                }
            })
            .collect();
        let ch = MailboxChanges {
            new,
            ..MailboxChanges::new(UidValidity(7))
        };
        s.apply_mailbox_changes(a, inbox, ch).await.unwrap();
    }
    a
}

/// Round `round` of one backend: 1,000 Emails (a window moving through the mailbox) read
/// or unread, then the queue replayed.
async fn round<S: Outbox>(s: &S, a: mail_types::AccountId, n: usize, round: usize, t: &mut Times) {
    let first = (round / 2 * CHANGES) % n.saturating_sub(CHANGES).max(1);
    let keyword = vec!["$seen".to_string()];
    let read = round.is_multiple_of(2);
    let patches: Vec<EmailPatch> = (first..first + CHANGES)
        .map(|i| EmailPatch {
            email: EmailId(i as i64 + 1),
            keywords_add: if read { keyword.clone() } else { vec![] },
            keywords_remove: if read { vec![] } else { keyword.clone() },
            mailboxes_add: vec![],
            mailboxes_remove: vec![],
        })
        .collect();
    let start = Instant::now();
    let res = s.update_emails(a, patches).await.unwrap();
    t.set.push(start.elapsed());
    assert!(res.iter().all(Result::is_ok), "every Email exists");

    let start = Instant::now();
    let entries = s.outbox_next(a, CHANGES).await.unwrap();
    assert_eq!(entries.len(), CHANGES, "one entry per changed Email");
    let done = entries
        .iter()
        .map(|e| OutboxDone {
            id: e.id,
            rev: e.rev,
            new_uid: None,
            raw_name: None,
            old_raw_name: None,
        })
        .collect();
    s.outbox_complete(a, done).await.unwrap();
    t.replay.push(start.elapsed());
    assert_eq!(s.outbox_status(a).await.unwrap().pending, 0);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
        .max(CHANGES);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .clamp(2, 200);
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    let pg = testkit::Postgres::shared().expect("private PostgreSQL");
    let post = PgStore::connect(&pg.fresh_database().unwrap())
        .await
        .unwrap();
    let (la, pa) = (seed(&lite, n as u32).await, seed(&post, n as u32).await);
    let (mut lt, mut pt) = (Times::default(), Times::default());
    // Alternating, so both see the same machine load.
    for r in 0..rounds {
        round(&lite, la, n, r, &mut lt).await;
        round(&post, pa, n, r, &mut pt).await;
    }
    println!("{n} Emails, {rounds} rounds of {CHANGES} keyword changes (p50 / p99, ms):");
    for (name, t) in [("sqlite", &lt), ("postgres", &pt)] {
        println!(
            "  {name:9} Email/set {:8.1} / {:8.1}   replay (next + complete) {:8.1} / {:8.1}",
            percentile(&t.set, 0.5),
            percentile(&t.set, 0.99),
            percentile(&t.replay, 0.5),
            percentile(&t.replay, 0.99),
        );
    }
    println!(
        "  postgres/sqlite p50: Email/set {:.2}x, replay {:.2}x",
        percentile(&pt.set, 0.5) / percentile(&lt.set, 0.5),
        percentile(&pt.replay, 0.5) / percentile(&lt.replay, 0.5)
    );
}
