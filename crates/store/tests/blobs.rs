//! A blob is deleted only when nothing needs its bytes: not while a queued APPEND or a
//! submission still has to send them, though the Email that named it was destroyed
//! (DESIGN.md invariant 9: what the user wrote is never lost).

use mail_types::{AccountId, EmailId, MailboxId, Role};
use store::prelude::*;
use store::*;

mod common;

async fn setup() -> (tempfile::TempDir, SqliteStore, AccountId, MailboxId) {
    let dir = tempfile::tempdir().expect("tempdir");
    // On disk, so that the blob files are real files.
    let s = SqliteStore::open(&dir.path().join("tidings.db")).expect("store");
    let a = common::account(&s).await;
    s.apply_mailbox_list(
        a,
        &[RemoteMailbox {
            raw_name: "Drafts".into(),
            name: "Drafts".into(),
            delimiter: Some("/".into()),
            role: Some(Role::Drafts),
            subscribed: true,
            selectable: true,
            uidvalidity: Some(7),
        }],
    )
    .await
    .expect("list");
    let drafts = s.mailboxes(a).await.expect("mailboxes")[0].id;
    (dir, s, a, drafts)
}

fn draft(n: u32) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: draft {n}\r\n\
         Message-ID: <d{n}@example.org>\r\n\r\nwritten by hand {n}\r\n"
    )
    .into_bytes()
}

/// A draft stored locally, its APPEND queued: (Email, its blob).
async fn new_draft(s: &SqliteStore, a: AccountId, drafts: MailboxId, n: u32) -> (EmailId, String) {
    let email = s
        .append_email(
            a,
            AppendRequest {
                mailbox: drafts,
                raw: draft(n),
                keywords: vec!["$draft".into()],
                received_at: 1_700_000_000,
            },
        )
        .await
        .expect("append")
        .expect("appended");
    let blob = s
        .emails(a, &[email])
        .await
        .expect("emails")
        .first()
        .and_then(|e| e.blob_id.clone())
        .expect("blob id");
    (email, blob)
}

async fn destroy(s: &SqliteStore, a: AccountId, email: EmailId) {
    let r = s.destroy_emails(a, vec![email]).await.expect("destroy");
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    assert!(s.emails(a, &[email]).await.expect("emails").is_empty());
}

#[tokio::test]
async fn a_queued_append_keeps_its_blob() {
    let (_dir, s, a, drafts) = setup().await;
    let (email, blob) = new_draft(&s, a, drafts, 1).await;
    // Destroyed before the outbox replayed the APPEND: the APPEND still runs first.
    destroy(&s, a, email).await;
    let pending = s.outbox_next(a, 10).await.expect("outbox");
    let (entry, append) = pending
        .iter()
        .find_map(|e| match &e.op {
            OutboxOp::Append { blob_id, .. } => Some((e, blob_id.clone())),
            _ => None,
        })
        .expect("the APPEND is still queued");
    assert_eq!(append, blob);
    assert_eq!(
        s.blob(&blob).await.expect("read blob"),
        Some(draft(1)),
        "the queued APPEND can still read its message"
    );
    // Once the server has it, nothing needs the local bytes: they go (no leak).
    s.outbox_complete(
        a,
        vec![OutboxDone {
            id: entry.id,
            rev: entry.rev,
            new_uid: Some((1, 1)),
            raw_name: None,
            old_raw_name: None,
        }],
    )
    .await
    .expect("complete");
    assert_eq!(s.blob(&blob).await.expect("read blob"), None);
}

#[tokio::test]
async fn a_submission_holds_its_blob_until_done() {
    let (_dir, s, a, drafts) = setup().await;
    let (email, blob) = new_draft(&s, a, drafts, 2).await;
    let thread = s.emails(a, &[email]).await.expect("emails")[0].thread;
    let id = s
        .create_submission(&NewSubmission {
            account: a,
            identity: 1,
            email,
            thread,
            envelope_json: "{}".into(),
            mail_from: "a@example.org".into(),
            rcpt_to: vec!["b@example.org".into()],
            raw: draft(2),
            blob_id: Some(blob.clone()),
            message_id: Some("d2@example.org".into()),
            send_at: 0,
            sent_copy: SentCopy::None,
            draft: DraftFate::Keep,
        })
        .await
        .expect("submission");
    // The client destroys the draft (and the APPEND of it is done): only the submission
    // needs the bytes now.
    destroy(&s, a, email).await;
    let pending = s.outbox_next(a, 10).await.expect("outbox");
    let done: Vec<OutboxDone> = pending
        .iter()
        .map(|e| OutboxDone {
            id: e.id,
            rev: e.rev,
            new_uid: None,
            raw_name: None,
            old_raw_name: None,
        })
        .collect();
    s.outbox_complete(a, done).await.expect("complete");
    s.collect_orphans(a).await.expect("gc");
    assert_eq!(
        s.begin_submission(id).await.expect("begin"),
        Some(draft(2)),
        "the submission sends its exact bytes"
    );
    let sent = AttemptResult::Final {
        delivery: vec![DeliveryEntry {
            email: "b@example.org".into(),
            smtp_reply: "250 2.0.0 Ok".into(),
            delivered: "queued".into(),
            settled: true,
        }],
        error: String::new(),
    };
    s.finish_submission(id, &sent).await.expect("finish");
    // Sent, nothing else to make of it: the last reference went, and the blob with it.
    assert_eq!(s.blob(&blob).await.expect("read blob"), None);
}
