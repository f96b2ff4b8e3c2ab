//! The store's write paths: change log exactness, threads independent of arrival order,
//! moves that keep the Email, UIDVALIDITY epochs.

use mail_types::{AccountId, MailboxId, ModSeq, State, Uid, UidValidity};
use store::prelude::*;
use store::*;

mod common;
use common::{copy, mailbox, msg, remote};

async fn setup() -> (SqliteStore, AccountId) {
    let s = SqliteStore::open_in_memory().expect("store");
    let a = common::account(&s).await;
    (s, a)
}

/// The trigger-kept counters equal a count of the rows.
async fn assert_counters(s: &SqliteStore, a: AccountId) {
    for m in s.mailboxes(a).await.expect("mailboxes") {
        let msgs = s.mailbox_messages(m.id).await.expect("msgs");
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

async fn add(s: &SqliteStore, a: AccountId, mb: MailboxId, copies: Vec<NewCopy>) -> State {
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

#[tokio::test]
async fn changes_come_in_pages_that_never_exceed_max() {
    let (s, a) = setup().await;
    s.apply_mailbox_list(a, &[remote("INBOX", 7)])
        .await
        .expect("list");
    let inbox = mailbox(&s, a, "INBOX").await;
    let start = s.account_state(a).await.expect("state");
    // Five Emails in one transaction: pages must split inside it.
    let copies = (1..=5)
        .map(|i| copy(i, &msg(&format!("p{i}"), &[], &format!("s{i}")), &[]))
        .collect();
    add(&s, a, inbox, copies).await;
    let mut pos = ChangePosition::whole(start);
    let mut seen = Vec::new();
    for round in 0..10 {
        let page = s
            .changes_page(a, ObjectType::Email, pos, 2)
            .await
            .expect("page")
            .expect("known state");
        assert!(page.created.len() + page.updated.len() + page.destroyed.len() <= 2);
        seen.extend(page.created.clone());
        pos = page.new_position;
        if !page.has_more {
            assert!(round >= 2, "five changes need three pages of two");
            break;
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    assert_eq!(
        pos,
        ChangePosition::whole(s.account_state(a).await.expect("state"))
    );

    // Nothing since the current state; an unknown state is refused.
    let none = s
        .changes_page(a, ObjectType::Email, pos, 100)
        .await
        .expect("page")
        .expect("known");
    assert!(none.created.is_empty() && !none.has_more);
    let future = ChangePosition::whole(State(pos.state + 10));
    assert_eq!(
        s.changes_page(a, ObjectType::Email, future, 10)
            .await
            .expect("page"),
        Err(ChangesError::UnknownState)
    );

    // Created then destroyed between two states: not reported at all.
    let before = s.account_state(a).await.expect("state");
    add(&s, a, inbox, vec![copy(9, &msg("tmp", &[], "tmp"), &[])]).await;
    s.apply_mailbox_changes(
        a,
        inbox,
        MailboxChanges {
            expunged: vec![Uid(9)],
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("expunge");
    s.collect_orphans(a).await.expect("gc");
    let page = s
        .changes_page(a, ObjectType::Email, ChangePosition::whole(before), 100)
        .await
        .expect("page")
        .expect("known");
    assert!(
        page.created.is_empty() && page.destroyed.is_empty(),
        "{page:?}"
    );
    // Mailbox counts follow.
    let views = s.mailbox_views(a).await.expect("views");
    let inbox_view = views.iter().find(|v| v.id == inbox).expect("inbox");
    assert_eq!(inbox_view.total_emails, 5);
    assert_eq!(inbox_view.unread_emails, 5);
    assert_eq!(inbox_view.total_threads, 5);
}

// --- push: the event bus -----------------------------------------------------------------

/// Every committed write announces the account's new state and exactly the types it
/// changed; a write that changes nothing announces nothing; the change log answers the
/// same types for a reconnecting client.
#[tokio::test]
async fn commits_are_announced_with_the_types_they_changed() {
    use store::events::{PushType, TypeSet};
    let (s, a) = setup().await;
    let mut rx = s.events().subscribe();
    s.apply_mailbox_list(a, &[remote("INBOX", 7)])
        .await
        .expect("list");
    let c = rx.try_recv().expect("mailbox list announced");
    assert_eq!(c.account, a);
    assert_eq!(
        c.types,
        [PushType::Mailbox].into_iter().collect::<TypeSet>()
    );
    let inbox = mailbox(&s, a, "INBOX").await;
    let s0 = s.account_state(a).await.expect("state");
    assert_eq!(c.state, s0);

    let s1 = add(&s, a, inbox, vec![copy(1, &msg("m1", &[], "hi"), &[])]).await;
    let c = rx.try_recv().expect("delivery announced");
    assert_eq!(c.state, s1);
    let delivery: TypeSet = [
        PushType::Email,
        PushType::Mailbox,
        PushType::Thread,
        PushType::EmailDelivery,
    ]
    .into_iter()
    .collect();
    assert_eq!(c.types, delivery);
    assert_eq!(s.changed_types_since(a, s0).await.expect("types"), delivery);

    // Nothing visible: nothing announced.
    add(&s, a, inbox, vec![copy(1, &msg("m1", &[], "hi"), &[])]).await;
    assert!(rx.try_recv().is_err(), "a no-op write was announced");

    // A flag change is Email and Mailbox, not a delivery.
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
    let c = rx.try_recv().expect("flag change announced");
    let flags: TypeSet = [PushType::Email, PushType::Mailbox].into_iter().collect();
    assert_eq!((c.state, c.types), (s2, flags));
    assert_eq!(s.changed_types_since(a, s1).await.expect("types"), flags);
    assert_eq!(
        s.changed_types_since(a, s2).await.expect("types"),
        TypeSet::EMPTY
    );

    // A draft that shows up from the server is new Email, not a delivery (RFC 8621 1.5),
    // live and for a client coming back with the older state.
    let s3 = add(
        &s,
        a,
        inbox,
        vec![copy(2, &msg("d1", &[], "draft"), &["\\Draft"])],
    )
    .await;
    let c = rx.try_recv().expect("draft announced");
    assert_eq!(c.state, s3);
    assert!(c.types.contains(PushType::Email), "{:?}", c.types);
    assert!(!c.types.contains(PushType::EmailDelivery), "{:?}", c.types);
    let since = s.changed_types_since(a, s2).await.expect("types");
    assert!(!since.contains(PushType::EmailDelivery), "{since:?}");
    // ... while a client from before the first message still hears of that delivery.
    assert!(
        s.changed_types_since(a, s0)
            .await
            .expect("types")
            .contains(PushType::EmailDelivery)
    );

    // A refused write (another UIDVALIDITY) announces nothing.
    let refused = s
        .apply_mailbox_changes(
            a,
            inbox,
            MailboxChanges {
                new: vec![copy(2, &msg("m2", &[], "yo"), &[])],
                ..MailboxChanges::new(UidValidity(8))
            },
        )
        .await;
    assert!(refused.is_err());
    assert!(rx.try_recv().is_err(), "a refused write was announced");
}

/// A LIST taken before a rename of the user was confirmed shows the old name; applied after
/// the confirmation it would rename the mailbox back. The mailbox epoch keeps it out.
async fn a_list_taken_across_a_confirmed_rename_is_not_applied<S: Directory + MailSync + Outbox>(
    s: &S,
) {
    let a = common::account(s).await;
    s.apply_mailbox_list(a, &[remote("INBOX", 7), remote("Projects", 8)])
        .await
        .expect("list");
    let projects = mailbox(s, a, "Projects").await;
    // The sync starts a pass: epoch read, LIST sent (the server still has "Projects").
    let epoch = s.mailbox_epoch(a);
    let stale = [remote("INBOX", 7), remote("Projects", 8)];
    // Meanwhile the user renames, and the worker replays it and the server confirms.
    s.update_mailbox(
        a,
        projects,
        MailboxPatch {
            name: Some("Work".into()),
            ..MailboxPatch::default()
        },
    )
    .await
    .expect("update")
    .expect("accepted");
    let entries = s.outbox_next(a, 10).await.expect("next");
    assert_eq!(entries.len(), 1, "{entries:?}");
    s.outbox_complete(
        a,
        vec![OutboxDone {
            id: entries[0].id,
            rev: entries[0].rev,
            new_uid: None,
            raw_name: Some("Work".into()),
            old_raw_name: Some("Projects".into()),
        }],
    )
    .await
    .expect("complete");
    // The stale list arrives: nothing is applied, the mailbox keeps its new name.
    s.apply_mailbox_list_at(a, &stale, epoch)
        .await
        .expect("stale list");
    assert_eq!(mailbox(s, a, "Work").await, projects);
    // A list taken after the confirmation is applied as usual.
    let fresh = [remote("INBOX", 7), remote("Work", 8), remote("Later", 9)];
    s.apply_mailbox_list_at(a, &fresh, s.mailbox_epoch(a))
        .await
        .expect("fresh list");
    assert_eq!(mailbox(s, a, "Work").await, projects);
    mailbox(s, a, "Later").await;
}

common::on_both_backends!(a_list_taken_across_a_confirmed_rename_is_not_applied);

/// RFC 8621 4.1.1: an Email's blobId exists from the moment it does and never changes. One
/// created from its header alone is named after its id (`bm<id>`), before and after its
/// body is stored; one stored with its bytes keeps the content address (`b<sha256>`).
#[tokio::test]
async fn an_email_has_one_blob_id_from_its_header_on() {
    let (s, a) = setup().await;
    s.apply_mailbox_list(a, &[remote("INBOX", 7)])
        .await
        .expect("list");
    let inbox = mailbox(&s, a, "INBOX").await;
    let raw = msg("h@x", &[], "header first");
    let mut header_only = copy(1, &raw, &[]);
    header_only.raw = None;
    header_only.parsed = mime::parse_header(&raw);
    let whole = msg("w@x", &[], "whole");
    add(&s, a, inbox, vec![header_only, copy(2, &whole, &[])]).await;
    let msgs = s.mailbox_messages(inbox).await.expect("msgs");
    let id_of = |uid: u32| msgs.iter().find(|m| m.uid.0 == uid).expect("copy").email;
    let (first, second) = (id_of(1), id_of(2));
    let views = s.emails(a, &[first, second]).await.expect("views");
    assert_eq!(views[0].blob_id, None);
    assert_eq!(views[0].jmap_blob_id(), format!("bm{}", first.0));
    assert_eq!(
        views[1].jmap_blob_id(),
        format!("b{}", mime::blob_id(&whole))
    );
    // Where the lane fetches it from.
    let sources = s.body_sources(a, first).await.expect("sources");
    assert_eq!(sources.len(), 1);
    assert_eq!((sources[0].mailbox, sources[0].uid), (inbox, Uid(1)));
    assert_eq!(sources[0].uidvalidity, UidValidity(7));

    s.apply_mailbox_changes(
        a,
        inbox,
        MailboxChanges {
            bodies: vec![NewBody {
                uid: Uid(1),
                raw: bytes::Bytes::copy_from_slice(&raw),
                parsed: mime::parse(&raw),
            }],
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("body");
    let after = s.emails(a, &[first]).await.expect("views");
    assert_eq!(
        after[0].blob_id,
        Some(mime::blob_id(&raw)),
        "the body is stored"
    );
    assert_eq!(
        after[0].jmap_blob_id(),
        format!("bm{}", first.0),
        "and the id stays"
    );
    assert_counters(&s, a).await;
}

/// A store of schema version 1 keeps the blobIds its clients saw: Emails with a body keep
/// their content address, those without one are named after their id from then on.
#[tokio::test]
async fn migrating_to_version_3_keeps_the_blob_ids_clients_saw() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.sqlite");
    let (first, second, raw_second) = {
        let s = SqliteStore::open(&path).expect("store");
        let a = common::account(&s).await;
        s.apply_mailbox_list(a, &[remote("INBOX", 7)])
            .await
            .expect("list");
        let inbox = mailbox(&s, a, "INBOX").await;
        let raw = msg("h@x", &[], "header first");
        let mut header_only = copy(1, &raw, &[]);
        header_only.raw = None;
        header_only.parsed = mime::parse_header(&raw);
        let whole = msg("w@x", &[], "whole");
        add(&s, a, inbox, vec![header_only, copy(2, &whole, &[])]).await;
        let msgs = s.mailbox_messages(inbox).await.expect("msgs");
        let id_of = |uid: u32| msgs.iter().find(|m| m.uid.0 == uid).expect("copy").email;
        (id_of(1), id_of(2), whole)
    };
    // Back to version 2 (as a build before this one left it).
    {
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch(
            "ALTER TABLE email DROP COLUMN blob_by_id; ALTER TABLE account DROP COLUMN auth; \
             ALTER TABLE account DROP COLUMN oauth_provider; \
             ALTER TABLE account DROP COLUMN provider; \
             DROP TABLE account_policy; DROP TABLE download_day; \
             DROP INDEX email_gm_thread; ALTER TABLE email DROP COLUMN gm_msgid; \
             ALTER TABLE email DROP COLUMN gm_thrid; PRAGMA user_version = 2;",
        )
        .expect("downgrade");
        c.execute_batch("ALTER TABLE email DROP COLUMN sent_offset;")
            .expect("downgrade v6");
        c.execute_batch("DROP INDEX email_message_id;")
            .expect("downgrade the Message-ID index");
        c.execute_batch(
            "DROP TABLE sieve_snapshot; DROP TABLE sieve_script; DROP TABLE account_sieve;",
        )
        .expect("downgrade v10");
        c.execute_batch("DROP TABLE quota;").expect("downgrade v11");
    }
    let s = SqliteStore::open(&path).expect("migrated");
    let views = s
        .emails(AccountId(1), &[first, second])
        .await
        .expect("views");
    assert_eq!(views[0].jmap_blob_id(), format!("bm{}", first.0));
    assert_eq!(
        views[1].jmap_blob_id(),
        format!("b{}", mime::blob_id(&raw_second))
    );
}

/// Two processes opening a new store at once (the server and `tidings account list`) both
/// get it: the one that loses the race for the WAL switch or the migrations waits.
#[test]
fn two_openers_of_a_new_store_both_get_it() {
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s.sqlite");
        let openers: Vec<_> = (0..3)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SqliteStore::open(&path).map(|_| ()))
            })
            .collect();
        for o in openers {
            let r = o.join().expect("opener thread");
            assert!(r.is_ok(), "round {round}: {:?}", r.err());
        }
    }
}
