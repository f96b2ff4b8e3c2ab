//! "Work queued" signals and announcements: a commit wakes the worker of the account and
//! queue it gave work to, and no other; the bus hears only the account that changed.

use mail_types::{AccountId, AccountKind, EmailId, MailboxId, ModSeq, Role, Security};
use mail_types::{Uid, UidValidity};
use store::prelude::*;
use store::*;

async fn account(s: &SqliteStore, u: mail_types::UserId, name: &str) -> (AccountId, MailboxId) {
    let a = s
        .create_account(&NewAccount {
            user: u,
            name: name.into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "h".into(),
                port: 1,
                security: Security::None,
                username: name.into(),
                password_enc: vec![],
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await
        .expect("account");
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
    .expect("list");
    let inbox = s.mailboxes(a).await.expect("mailboxes")[0].id;
    let raw =
        format!("From: x@example.org\r\nSubject: {name}\r\nMessage-ID: <{name}@x>\r\n\r\nhi\r\n")
            .into_bytes();
    s.apply_mailbox_changes(
        a,
        inbox,
        MailboxChanges {
            new: vec![NewCopy {
                uid: Uid(1),
                flags: Vec::new(),
                modseq: ModSeq(1),
                internal_date: 1_700_000_000,
                size: raw.len() as u32,
                server_email_id: None,
                header_hash: mime::blob_id(&raw),
                parsed: mime::parse(&raw),
                raw: Some(bytes::Bytes::from(raw)),
            }],
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("message");
    (a, inbox)
}

async fn only_email(s: &SqliteStore, inbox: MailboxId) -> EmailId {
    s.mailbox_messages(inbox).await.expect("messages")[0].email
}

fn seen(email: EmailId) -> EmailPatch {
    EmailPatch {
        email,
        keywords_add: vec!["$seen".into()],
        keywords_remove: Vec::new(),
        mailboxes_add: Vec::new(),
        mailboxes_remove: Vec::new(),
    }
}

#[tokio::test]
async fn work_queued_in_one_account_wakes_that_account_only() {
    let s = SqliteStore::open_in_memory().expect("store");
    let u = s.create_user("u", "h").await.expect("user");
    let (a, a_inbox) = account(&s, u, "a").await;
    let (b, b_inbox) = account(&s, u, "b").await;

    // Queued before anyone listens: found by the first look at the queue, as a worker
    // starting (or restarting) makes before it waits.
    let a_email = only_email(&s, a_inbox).await;
    s.update_emails(a, vec![seen(a_email)]).await.expect("a");
    let a_signal = s.outbox_signal(a);
    let mut b_signal = s.outbox_signal(b);
    let mut submissions = s.submission_signal();
    let mut bus = s.events().subscribe();
    let queued = s.outbox_next(a, 10).await.expect("next");
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert!(!a_signal.has_changed().expect("open"));

    // B's flag change wakes B's outbox worker, not A's, and not the submission worker;
    // the bus hears of B only.
    let b_email = only_email(&s, b_inbox).await;
    s.update_emails(b, vec![seen(b_email)]).await.expect("b");
    assert!(
        b_signal.has_changed().expect("open"),
        "B's worker not woken"
    );
    assert!(
        !a_signal.has_changed().expect("open"),
        "A's worker woken for B's change"
    );
    assert!(!submissions.has_changed().expect("open"));
    let change = bus.try_recv().expect("B's change announced");
    assert_eq!(change.account, b);
    assert!(bus.try_recv().is_err(), "one announcement per commit");
    b_signal.mark_unchanged();

    // A second change while B's worker is busy (has not waited again) is kept for it.
    s.create_mailbox(b, "Later", None, true)
        .await
        .expect("create")
        .expect("created");
    s.update_emails(b, vec![seen(b_email)])
        .await
        .expect("again");
    assert!(b_signal.has_changed().expect("open"));
    b_signal.mark_unchanged();

    // A submission wakes the submission worker, and no outbox worker.
    s.ensure_identity(a, "a@example.org")
        .await
        .expect("identity");
    let identity = s.identities(a).await.expect("identities")[0].id;
    let email = s.emails(a, &[a_email]).await.expect("email")[0].clone();
    let id = s
        .create_submission(&NewSubmission {
            account: a,
            identity,
            email: a_email,
            thread: email.thread,
            envelope_json: "{}".into(),
            mail_from: "a@example.org".into(),
            rcpt_to: vec!["b@example.org".into()],
            raw: b"From: a@example.org\r\n\r\nhi\r\n".to_vec(),
            blob_id: None,
            message_id: None,
            send_at: i64::MAX,
            sent_copy: SentCopy::Append,
            draft: DraftFate::Keep,
        })
        .await
        .expect("submission");
    assert!(
        submissions.has_changed().expect("open"),
        "submission worker not woken"
    );
    submissions.mark_unchanged();
    assert!(!a_signal.has_changed().expect("open"));
    assert!(!b_signal.has_changed().expect("open"));
    // Canceling it gives the worker its draft to put back.
    assert_eq!(
        s.cancel_submission(a, id).await.expect("cancel"),
        CancelOutcome::Canceled
    );
    assert!(submissions.has_changed().expect("open"));

    // A sync batch queues nothing.
    let before = s.account_state(b).await.expect("state");
    s.apply_mailbox_changes(
        b,
        b_inbox,
        MailboxChanges {
            flags: vec![FlagUpdate {
                uid: Uid(1),
                flags: vec!["\\Flagged".into()],
                modseq: ModSeq(5),
            }],
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("sync");
    assert!(s.account_state(b).await.expect("state") > before);
    assert!(!b_signal.has_changed().expect("open"));

    // The signal goes with its account.
    assert!(s.delete_account(b).await.expect("delete"));
    assert!(b_signal.has_changed().is_err(), "B's signal outlived B");
    assert!(!a_signal.has_changed().expect("open"));
}
