//! The sync's writes (`MailSync`) on both backends: change log exactness, threads
//! independent of arrival order, moves that keep the Email, UIDVALIDITY epochs, renames.
//!
//! What a check reads back goes through `Reading`, on both backends.

mod common;

use common::{copy, mailbox, msg, remote};

use mail_types::{AccountId, MailboxId, ModSeq, State, Uid, UidValidity};
use std::sync::atomic::{AtomicUsize, Ordering};
use store::prelude::*;
use store::*;

/// One test per backend for each check (`async fn NAME<S>(s: &S, v: &impl Reading)`).
macro_rules! on_both_backends_with_view {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    let s = crate::common::sqlite();
                    super::$check(&s, &s).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    let s = crate::common::postgres().await;
                    super::$check(&s, &s).await
                }
            )*
        }
    };
}

on_both_backends_with_view!(
    every_change_is_logged_under_one_new_state,
    threads_do_not_depend_on_arrival_order,
    a_move_keeps_the_email_and_orphans_are_collected,
    another_uidvalidity_is_refused_until_reset,
    a_batch_of_the_old_epoch_is_refused_after_a_reset,
    renames_keep_the_mailbox_and_parents_follow_names,
);

/// A new account of a new user (each call its own, so one store holds several runs).
async fn setup<S: Directory>(s: &S) -> AccountId {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let u = s.create_user(&format!("u{n}"), "h").await.expect("user");
    s.create_account(&common::new_account(u, "a"))
        .await
        .expect("account")
}

/// The trigger-kept counters equal a count of the rows.
async fn assert_counters<S: MailSync>(s: &S, v: &impl Reading, a: AccountId) {
    for m in s.mailboxes(a).await.expect("mailboxes") {
        let msgs = v.mailbox_messages(m.id).await.expect("msgs");
        assert_eq!(
            m.progress.headers as usize,
            msgs.len(),
            "copies of {}",
            m.name
        );
        let bodies = msgs.iter().filter(|x| x.blob_id.is_some()).count();
        assert_eq!(m.progress.bodies as usize, bodies, "bodies of {}", m.name);
    }
}

async fn add<S: MailSync>(s: &S, a: AccountId, mb: MailboxId, copies: Vec<NewCopy>) -> State {
    s.apply_mailbox_changes(
        a,
        mb,
        MailboxChanges {
            new: copies,
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("apply")
}

async fn every_change_is_logged_under_one_new_state<S: Directory + MailSync>(
    s: &S,
    v: &impl Reading,
) {
    let a = setup(s).await;
    s.apply_mailbox_list(a, &[remote("INBOX", 7)])
        .await
        .expect("list");
    let inbox = mailbox(s, a, "INBOX").await;
    let s0 = v.account_state(a).await.expect("state");
    let s1 = add(
        s,
        a,
        inbox,
        vec![
            copy(1, &msg("m1", &[], "hi"), &[]),
            copy(2, &msg("m2", &[], "yo"), &[]),
        ],
    )
    .await;
    assert_eq!(s1.0, s0.0 + 1, "one transaction, one state");
    let changes = v.changes_since(a, s0).await.expect("changes");
    let created: Vec<_> = changes
        .iter()
        .filter(|c| c.object == ObjectType::Email && c.op == ChangeOp::Created)
        .collect();
    assert_eq!(created.len(), 2);
    assert!(changes.iter().all(|c| c.state == s1));

    // A batch that changes nothing visible does not move the state.
    let same = s
        .apply_mailbox_changes(
            a,
            inbox,
            MailboxChanges {
                uidnext: Some(Uid(3)),
                ..MailboxChanges::new(UidValidity(7))
            },
        )
        .await
        .expect("noop");
    assert_eq!(same, s1);
    // Re-applying the same copies (a refetch after a crash) adds nothing.
    let again = add(s, a, inbox, vec![copy(1, &msg("m1", &[], "hi"), &[])]).await;
    assert_eq!(again, s1);
    assert_eq!(v.mailbox_messages(inbox).await.expect("msgs").len(), 2);

    // A flag change is an Email update, and a Mailbox update (unread counts).
    let s2 = s
        .apply_mailbox_changes(
            a,
            inbox,
            MailboxChanges {
                flags: vec![FlagUpdate {
                    uid: Uid(1),
                    flags: vec!["\\Seen".into()],
                    modseq: ModSeq(2),
                }],
                ..MailboxChanges::new(UidValidity(7))
            },
        )
        .await
        .expect("flags");
    let ch = v.changes_since(a, s1).await.expect("changes");
    assert!(ch.iter().all(|c| c.state == s2));
    assert_eq!(
        ch.iter().filter(|c| c.object == ObjectType::Email).count(),
        1
    );
    assert!(
        ch.iter()
            .any(|c| c.object == ObjectType::Mailbox && c.op == ChangeOp::Updated)
    );
}

async fn threads_do_not_depend_on_arrival_order<S: Directory + MailSync>(s: &S, v: &impl Reading) {
    let raws = [
        msg("root", &[], "Plan"),
        msg("r1", &["root"], "Re: Plan"),
        msg("r2", &["root", "r1"], "Re: Plan"),
        msg("r3", &["root", "r1", "r2"], "Re: Plan"),
    ];
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [3, 0, 2, 1], [1, 3, 0, 2]] {
        let a = setup(s).await;
        s.apply_mailbox_list(a, &[remote("INBOX", 7)])
            .await
            .expect("list");
        let inbox = mailbox(s, a, "INBOX").await;
        for (i, idx) in order.iter().enumerate() {
            add(s, a, inbox, vec![copy(i as u32 + 1, &raws[*idx], &[])]).await;
        }
        let threads: std::collections::HashSet<_> = v
            .mailbox_messages(inbox)
            .await
            .expect("msgs")
            .into_iter()
            .map(|m| m.thread)
            .collect();
        assert_eq!(threads.len(), 1, "order {order:?} split the thread");
    }
    // An unrelated message gets its own thread; a reply with no references joins by subject.
    let a = setup(s).await;
    s.apply_mailbox_list(a, &[remote("INBOX", 7)])
        .await
        .expect("list");
    let inbox = mailbox(s, a, "INBOX").await;
    add(
        s,
        a,
        inbox,
        vec![copy(1, &msg("x1", &[], "Budget 2027"), &[])],
    )
    .await;
    add(s, a, inbox, vec![copy(2, &msg("x2", &[], "Lunch"), &[])]).await;
    add(
        s,
        a,
        inbox,
        vec![copy(3, &msg("x3", &[], "RE: Budget 2027"), &[])],
    )
    .await;
    let m = v.mailbox_messages(inbox).await.expect("msgs");
    assert_eq!(m[0].thread, m[2].thread);
    assert_ne!(m[0].thread, m[1].thread);
}

async fn a_move_keeps_the_email_and_orphans_are_collected<S: Directory + MailSync>(
    s: &S,
    v: &impl Reading,
) {
    let a = setup(s).await;
    s.apply_mailbox_list(a, &[remote("INBOX", 7), remote("Archive", 8)])
        .await
        .expect("list");
    let inbox = mailbox(s, a, "INBOX").await;
    let archive = mailbox(s, a, "Archive").await;
    let raw = msg("mv", &[], "moving");
    add(s, a, inbox, vec![copy(1, &raw, &["\\Seen"])]).await;
    add(
        s,
        a,
        inbox,
        vec![copy(2, &msg("gone", &[], "deleted"), &[])],
    )
    .await;
    let before = v.mailbox_messages(inbox).await.expect("msgs");
    let state = v.account_state(a).await.expect("state");
    // Seen as expunge in INBOX, then new in Archive.
    s.apply_mailbox_changes(
        a,
        inbox,
        MailboxChanges {
            expunged: vec![Uid(1), Uid(2)],
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("expunge");
    s.apply_mailbox_changes(
        a,
        archive,
        MailboxChanges {
            new: vec![copy(1, &raw, &["\\Seen"])],
            ..MailboxChanges::new(UidValidity(8))
        },
    )
    .await
    .expect("new");
    assert_eq!(
        s.collect_orphans(a).await.expect("gc"),
        1,
        "only the deleted one goes"
    );
    let after = v.mailbox_messages(archive).await.expect("msgs");
    assert_eq!(
        after[0].email, before[0].email,
        "the moved message kept its Email id"
    );
    let changes = v.changes_since(a, state).await.expect("changes");
    assert!(changes.iter().any(|c| c.object == ObjectType::Email
        && c.op == ChangeOp::Destroyed
        && c.id == before[1].email.0));
    assert!(
        !changes
            .iter()
            .any(|c| c.op == ChangeOp::Destroyed && c.id == before[0].email.0)
    );
    assert!(
        v.blob(after[0].blob_id.as_deref().expect("blob"))
            .await
            .expect("blob")
            .is_some()
    );
    assert_counters(s, v, a).await;
    // A header-only copy whose body arrives later counts once it does.
    let late = msg("late", &[], "late body");
    s.apply_mailbox_changes(
        a,
        inbox,
        MailboxChanges {
            new: vec![NewCopy {
                raw: None,
                ..copy(9, &late, &[])
            }],
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("header");
    assert_counters(s, v, a).await;
    assert_eq!(
        s.mailboxes(a)
            .await
            .expect("l")
            .iter()
            .find(|m| m.id == inbox)
            .expect("inbox")
            .progress
            .bodies,
        0
    );
    s.apply_mailbox_changes(
        a,
        inbox,
        MailboxChanges {
            bodies: vec![NewBody {
                uid: Uid(9),
                parsed: mime::parse(&late),
                raw: bytes::Bytes::from(late.clone()),
            }],
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("body");
    assert_counters(s, v, a).await;
    assert_eq!(
        s.mailboxes(a)
            .await
            .expect("l")
            .iter()
            .find(|m| m.id == inbox)
            .expect("inbox")
            .progress
            .bodies,
        1
    );
    // Its text is searchable once the body is in; its subject was from the header on.
    assert_eq!(v.search(a, "late").await.expect("search").len(), 1);
    assert_eq!(v.search(a, "body text").await.expect("search").len(), 2);
}

async fn another_uidvalidity_is_refused_until_reset<S: Directory + MailSync>(
    s: &S,
    v: &impl Reading,
) {
    let a = setup(s).await;
    s.apply_mailbox_list(a, &[remote("INBOX", 7)])
        .await
        .expect("list");
    let inbox = mailbox(s, a, "INBOX").await;
    add(s, a, inbox, vec![copy(1, &msg("a", &[], "a"), &[])]).await;
    let wrong = s
        .apply_mailbox_changes(
            a,
            inbox,
            MailboxChanges {
                new: vec![copy(1, &msg("b", &[], "b"), &[])],
                ..MailboxChanges::new(UidValidity(99))
            },
        )
        .await;
    assert!(wrong.is_err());
    s.reset_mailbox(inbox, UidValidity(99))
        .await
        .expect("reset");
    assert!(v.mailbox_messages(inbox).await.expect("msgs").is_empty());
    s.apply_mailbox_changes(
        a,
        inbox,
        MailboxChanges {
            new: vec![copy(1, &msg("b", &[], "b"), &[])],
            ..MailboxChanges::new(UidValidity(99))
        },
    )
    .await
    .expect("new epoch");
    assert_eq!(v.mailbox_messages(inbox).await.expect("msgs").len(), 1);
    assert_counters(s, v, a).await;
}

/// Flags, expunges and bodies carry their UIDVALIDITY like new copies do: a batch made
/// before a reset (the UID then named another message) is refused with a typed error and
/// leaves the message of the new epoch as it is.
async fn a_batch_of_the_old_epoch_is_refused_after_a_reset<S: Directory + MailSync>(
    s: &S,
    v: &impl Reading,
) {
    let a = setup(s).await;
    s.apply_mailbox_list(a, &[remote("INBOX", 7)])
        .await
        .expect("list");
    let inbox = mailbox(s, a, "INBOX").await;
    add(s, a, inbox, vec![copy(1, &msg("a", &[], "old"), &[])]).await;
    s.reset_mailbox(inbox, UidValidity(99))
        .await
        .expect("reset");
    let late = msg("b", &[], "new epoch");
    s.apply_mailbox_changes(
        a,
        inbox,
        MailboxChanges {
            new: vec![NewCopy {
                raw: None,
                ..copy(1, &late, &[])
            }],
            ..MailboxChanges::new(UidValidity(99))
        },
    )
    .await
    .expect("new epoch");
    let state = v.account_state(a).await.expect("state");

    let old = |changes: MailboxChanges| s.apply_mailbox_changes(a, inbox, changes);
    let flags = old(MailboxChanges {
        flags: vec![FlagUpdate {
            uid: Uid(1),
            flags: vec!["\\Seen".into()],
            modseq: ModSeq(5),
        }],
        ..MailboxChanges::new(UidValidity(7))
    })
    .await;
    assert!(
        matches!(
            flags,
            Err(Error::UidValidityChanged { mailbox, stored: UidValidity(99), given: UidValidity(7) })
                if mailbox == inbox
        ),
        "{flags:?}"
    );
    let expunge = old(MailboxChanges {
        expunged: vec![Uid(1)],
        ..MailboxChanges::new(UidValidity(7))
    })
    .await;
    assert!(
        matches!(expunge, Err(Error::UidValidityChanged { .. })),
        "{expunge:?}"
    );
    let body = old(MailboxChanges {
        bodies: vec![NewBody {
            uid: Uid(1),
            parsed: mime::parse(&msg("a", &[], "old")),
            raw: bytes::Bytes::from(msg("a", &[], "old")),
        }],
        ..MailboxChanges::new(UidValidity(7))
    })
    .await;
    assert!(
        matches!(body, Err(Error::UidValidityChanged { .. })),
        "{body:?}"
    );

    let now = v.mailbox_messages(inbox).await.expect("msgs");
    assert_eq!(now.len(), 1, "the new epoch's message stays");
    assert!(
        now[0].flags.is_empty(),
        "old-epoch flags applied: {:?}",
        now[0].flags
    );
    assert_eq!(now[0].subject.as_deref(), Some("new epoch"));
    assert_eq!(
        s.mailboxes(a)
            .await
            .expect("list")
            .iter()
            .find(|m| m.id == inbox)
            .expect("inbox")
            .progress
            .bodies,
        0,
        "the old epoch's body was stored for the new message"
    );
    assert_eq!(v.account_state(a).await.expect("state"), state);
    assert_counters(s, v, a).await;
}

async fn renames_keep_the_mailbox_and_parents_follow_names<S: Directory + MailSync>(
    s: &S,
    _v: &impl Reading,
) {
    let a = setup(s).await;
    s.apply_mailbox_list(
        a,
        &[remote("INBOX", 7), remote("Work", 8), remote("Work/Q1", 9)],
    )
    .await
    .expect("list");
    let work = mailbox(s, a, "Work").await;
    let q1 = s
        .mailboxes(a)
        .await
        .expect("l")
        .into_iter()
        .find(|m| m.name == "Work/Q1")
        .expect("q1");
    assert_eq!(q1.parent, Some(work));
    let out = s
        .apply_mailbox_list(
            a,
            &[
                remote("INBOX", 7),
                remote("Clients", 8),
                remote("Clients/Q1", 9),
            ],
        )
        .await
        .expect("list");
    assert_eq!(out.renamed.len(), 2);
    assert!(out.destroyed.is_empty() && out.created.is_empty());
    assert_eq!(mailbox(s, a, "Clients").await, work);
    let out = s
        .apply_mailbox_list(a, &[remote("INBOX", 7)])
        .await
        .expect("list");
    assert_eq!(out.destroyed.len(), 2);
}
