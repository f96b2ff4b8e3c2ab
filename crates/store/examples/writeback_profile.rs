//! Profiling aid for the write-back path of the store alone (no HTTP, no IMAP): 12,000
//! Emails in INBOX, then `rounds` times 1,000 of them marked read (and back) with
//! `update_emails`, each followed by the worker's `outbox_next` + `outbox_complete` and the
//! sync writing the server's new flags, as in `cargo bench -p cli --bench writeback`.
//! Prints the time of each step. Run under callgrind with
//! `valgrind --tool=callgrind target/release/examples/writeback_profile`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mail_types::{AccountKind, EmailId, ModSeq, Role, Security, Uid, UidValidity};
use std::time::Instant;
use store::prelude::*;
use store::*;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    let u = s.create_user("u", "h").await.unwrap();
    let a = s
        .create_account(&NewAccount {
            user: u,
            name: "a".into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "h".into(),
                port: 1,
                security: Security::None,
                username: "u".into(),
                password_enc: vec![],
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await
        .unwrap();
    s.apply_mailbox_list(
        a,
        &[RemoteMailbox {
            raw_name: "INBOX".into(),
            name: "INBOX".into(),
            delimiter: Some("/".into()),
            role: Some(Role::Inbox),
            subscribed: true,
            selectable: true,
            uidvalidity: Some(7),
        }],
    )
    .await
    .unwrap();
    let inbox = s
        .mailboxes(a)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.name == "INBOX")
        .unwrap()
        .id;
    let t = Instant::now();
    for chunk in (1..=n).collect::<Vec<_>>().chunks(500) {
        let new = chunk
            .iter()
            .map(|&uid| {
                let raw = format!(
                    "From: a@example.org\r\nTo: b@example.org\r\nSubject: message {uid}\r\n\
                     Message-ID: <m{uid}@example.org>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n\
                     body text of message {uid}\r\n"
                )
                .into_bytes();
                NewCopy {
                    uid: Uid(uid),
                    flags: Vec::new(),
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
        s.apply_mailbox_changes(
            a,
            inbox,
            MailboxChanges {
                new,
                ..MailboxChanges::new(UidValidity(7))
            },
        )
        .await
        .unwrap();
    }
    eprintln!("seeded {n} in {:.1} s", t.elapsed().as_secs_f64());
    let ids: Vec<EmailId> = s
        .mailbox_messages(inbox)
        .await
        .unwrap()
        .into_iter()
        .take(1000)
        .map(|m| m.email)
        .collect();
    let uids: Vec<u32> = s
        .mailbox_messages(inbox)
        .await
        .unwrap()
        .into_iter()
        .take(1000)
        .map(|m| m.uid.0)
        .collect();
    let mut modseq = 2u64;
    for r in 0..rounds {
        let on = r % 2 == 0;
        let patches: Vec<EmailPatch> = ids
            .iter()
            .map(|&email| EmailPatch {
                email,
                keywords_add: if on { vec!["$seen".into()] } else { vec![] },
                keywords_remove: if on { vec![] } else { vec!["$seen".into()] },
                mailboxes_add: vec![],
                mailboxes_remove: vec![],
            })
            .collect();
        let t = Instant::now();
        let res = s.update_emails(a, patches).await.unwrap();
        let t_update = t.elapsed();
        assert!(res.iter().all(|r| r.is_ok()));
        let t = Instant::now();
        let entries = s.outbox_next(a, 5000).await.unwrap();
        let t_next = t.elapsed();
        let t = Instant::now();
        s.outbox_complete(
            a,
            entries
                .iter()
                .map(|e| OutboxDone {
                    id: e.id,
                    rev: e.rev,
                    new_uid: None,
                    raw_name: None,
                    old_raw_name: None,
                })
                .collect(),
        )
        .await
        .unwrap();
        let t_complete = t.elapsed();
        modseq += 1;
        let t = Instant::now();
        s.apply_mailbox_changes(
            a,
            inbox,
            MailboxChanges {
                flags: uids
                    .iter()
                    .map(|&uid| FlagUpdate {
                        uid: Uid(uid),
                        flags: if on { vec!["\\Seen".into()] } else { vec![] },
                        modseq: ModSeq(modseq),
                    })
                    .collect(),
                highestmodseq: Some(ModSeq(modseq)),
                ..MailboxChanges::new(UidValidity(7))
            },
        )
        .await
        .unwrap();
        let t_sync = t.elapsed();
        eprintln!(
            "round {r}: update_emails {:.1} ms, outbox_next {:.1} ms ({} entries), complete {:.1} ms, sync flags {:.1} ms",
            t_update.as_secs_f64() * 1e3,
            t_next.as_secs_f64() * 1e3,
            entries.len(),
            t_complete.as_secs_f64() * 1e3,
            t_sync.as_secs_f64() * 1e3
        );
    }
}
