//! The write-back's keyword batch (`update_emails` with keyword-only patches goes through
//! set-based statements): the same store state, change log and outbox entries as the
//! per-patch path, with coalescing into pending flag entries and mixed requests kept in
//! order. On both backends.
//!
//! What a check reads back beyond the roles it writes through goes through [`View`]:
//! `Reading` on SQLite; PostgreSQL has no `Reading` yet, so there the check reads the
//! tables on a connection of its own, with the SQLite backend's meaning of each read.

mod common;

use common::{mailbox, remote};
use mail_types::{AccountId, EmailId, MailboxId, ModSeq, State, Uid, UidValidity};
use store::prelude::*;
use store::*;

/// The reads the checks make after writing.
trait View {
    async fn account_state(&self, a: AccountId) -> State;
    /// The objects the change log holds after `since`.
    async fn changed(&self, a: AccountId, since: State) -> Vec<(ObjectType, i64)>;
    /// The Emails of a mailbox's server copies, by UID.
    async fn emails_by_uid(&self, mailbox: MailboxId) -> Vec<(u32, EmailId)>;
    /// An Email's keywords, sorted.
    async fn keywords(&self, a: AccountId, e: EmailId) -> Vec<String>;
    /// Whether the store still holds blob `id`'s bytes.
    async fn has_blob(&self, id: &str) -> bool;
}

impl View for SqliteStore {
    async fn account_state(&self, a: AccountId) -> State {
        Reading::account_state(self, a).await.expect("state")
    }
    async fn changed(&self, a: AccountId, since: State) -> Vec<(ObjectType, i64)> {
        let changes = Reading::changes_since(self, a, since)
            .await
            .expect("changes");
        changes.iter().map(|c| (c.object, c.id)).collect()
    }
    async fn emails_by_uid(&self, mailbox: MailboxId) -> Vec<(u32, EmailId)> {
        let msgs = Reading::mailbox_messages(self, mailbox)
            .await
            .expect("messages");
        msgs.iter().map(|m| (m.uid.0, m.email)).collect()
    }
    async fn keywords(&self, a: AccountId, e: EmailId) -> Vec<String> {
        let mut k = self.emails(a, &[e]).await.expect("emails")[0]
            .keywords
            .clone();
        k.sort();
        k
    }
    async fn has_blob(&self, id: &str) -> bool {
        Reading::blob(self, id).await.expect("blob").is_some()
    }
}

/// A `PgStore` and a plain client on the same database.
struct Pg(PgStore, tokio_postgres::Client);

impl View for Pg {
    async fn account_state(&self, a: AccountId) -> State {
        let r = self
            .1
            .query_one("SELECT state FROM account WHERE id = $1", &[&a.0])
            .await
            .expect("state");
        State(r.get(0))
    }
    async fn changed(&self, a: AccountId, since: State) -> Vec<(ObjectType, i64)> {
        let rows = self
            .1
            .query(
                "SELECT type, object_id FROM change WHERE account_id = $1 AND state > $2",
                &[&a.0, &since.0],
            )
            .await
            .expect("changes");
        rows.iter()
            .map(|r| {
                let t = ObjectType::from_name(r.get(0)).expect("a change type");
                (t, r.get(1))
            })
            .collect()
    }
    async fn emails_by_uid(&self, mailbox: MailboxId) -> Vec<(u32, EmailId)> {
        let rows = self
            .1
            .query(
                "SELECT uid, email_id FROM copy WHERE mailbox_id = $1 AND uid < $2",
                &[&mailbox.0, &PLACEHOLDER_UID_BASE],
            )
            .await
            .expect("copies");
        rows.iter()
            .map(|r| {
                (
                    u32::try_from(r.get::<_, i64>(0)).expect("UID"),
                    EmailId(r.get(1)),
                )
            })
            .collect()
    }
    async fn keywords(&self, a: AccountId, e: EmailId) -> Vec<String> {
        let r = self
            .1
            .query_one(
                "SELECT keywords::text FROM email WHERE id = $1 AND account_id = $2",
                &[&e.0, &a.0],
            )
            .await
            .expect("email");
        let mut k: Vec<String> = serde_json::from_str(r.get(0)).expect("keywords");
        k.sort();
        k
    }
    async fn has_blob(&self, id: &str) -> bool {
        let r = self
            .1
            .query_one("SELECT EXISTS (SELECT 1 FROM blob WHERE id = $1)", &[&id])
            .await
            .expect("blob");
        r.get(0)
    }
}

/// A `PgStore` on a new database of the private PostgreSQL, with its own client.
async fn pg() -> Pg {
    let url = testkit::Postgres::shared()
        .expect("private PostgreSQL")
        .fresh_database()
        .expect("database");
    let store = PgStore::connect(&url).await.expect("connect");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("client");
    tokio::spawn(connection);
    Pg(store, client)
}

/// The roles the checks write through.
trait Roles: Directory + MailSync + Outbox {}
impl<S: Directory + MailSync + Outbox> Roles for S {}

async fn setup<S: Roles>(s: &S) -> (AccountId, MailboxId, MailboxId) {
    let a = common::account(s).await;
    s.apply_mailbox_list(a, &[remote("INBOX", 7), remote("Archive", 7)])
        .await
        .expect("list");
    (
        a,
        mailbox(s, a, "INBOX").await,
        mailbox(s, a, "Archive").await,
    )
}

mod sqlite {
    #[tokio::test]
    async fn keyword_batches_apply_log_and_queue_like_single_patches() {
        let s = crate::common::sqlite();
        super::keyword_batches_apply_log_and_queue_like_single_patches(&s, &s).await
    }

    #[tokio::test]
    async fn a_mailbox_destroyed_while_its_create_is_in_flight_is_deleted_on_the_server() {
        let s = crate::common::sqlite();
        super::a_mailbox_destroyed_while_its_create_is_in_flight_is_deleted_on_the_server(&s).await
    }

    #[tokio::test]
    async fn the_sync_keeps_pending_changes_on_top_until_the_worker_settles_them() {
        let s = crate::common::sqlite();
        super::the_sync_keeps_pending_changes_on_top_until_the_worker_settles_them(&s, &s).await
    }

    #[tokio::test]
    async fn destroying_emails_queues_the_expunge_of_each_copy_in_order() {
        let s = crate::common::sqlite();
        super::destroying_emails_queues_the_expunge_of_each_copy_in_order(&s, &s).await
    }
}

mod postgres {
    #[tokio::test]
    async fn keyword_batches_apply_log_and_queue_like_single_patches() {
        let pg = super::pg().await;
        super::keyword_batches_apply_log_and_queue_like_single_patches(&pg.0, &pg).await
    }

    #[tokio::test]
    async fn a_mailbox_destroyed_while_its_create_is_in_flight_is_deleted_on_the_server() {
        let pg = super::pg().await;
        super::a_mailbox_destroyed_while_its_create_is_in_flight_is_deleted_on_the_server(&pg.0)
            .await
    }

    #[tokio::test]
    async fn the_sync_keeps_pending_changes_on_top_until_the_worker_settles_them() {
        let pg = super::pg().await;
        super::the_sync_keeps_pending_changes_on_top_until_the_worker_settles_them(&pg.0, &pg).await
    }

    #[tokio::test]
    async fn destroying_emails_queues_the_expunge_of_each_copy_in_order() {
        let pg = super::pg().await;
        super::destroying_emails_queues_the_expunge_of_each_copy_in_order(&pg.0, &pg).await
    }
}

fn copy(uid: u32, flags: &[&str]) -> NewCopy {
    let raw = format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: s{uid}\r\nMessage-ID: <m{uid}@x>\r\n\r\nbody\r\n"
    )
    .into_bytes();
    NewCopy {
        uid: Uid(uid),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        modseq: ModSeq(1),
        internal_date: 1_700_000_000 + i64::from(uid),
        size: raw.len() as u32,
        server_email_id: None,
        header_hash: mime::blob_id(&raw),
        parsed: mime::parse(&raw),
        raw: Some(bytes::Bytes::from(raw)),
    }
}

fn kw(p: &[&str], add: bool, email: EmailId) -> EmailPatch {
    let k: Vec<String> = p.iter().map(|s| s.to_string()).collect();
    EmailPatch {
        email,
        keywords_add: if add { k.clone() } else { Vec::new() },
        keywords_remove: if add { Vec::new() } else { k },
        mailboxes_add: Vec::new(),
        mailboxes_remove: Vec::new(),
    }
}

async fn keyword_batches_apply_log_and_queue_like_single_patches<S: Roles>(s: &S, v: &impl View) {
    let (a, inbox, archive) = setup(s).await;
    s.apply_mailbox_changes(
        a,
        inbox,
        MailboxChanges {
            new: (1..=6)
                .map(|u| copy(u, if u == 2 { &["\\Seen"] } else { &[] }))
                .collect(),
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("seed");
    let e: Vec<EmailId> = {
        let mut v = v.emails_by_uid(inbox).await;
        v.sort();
        v.into_iter().map(|(_, e)| e).collect()
    };
    // Email 0 already has a pending flag entry (coalesced into), email 1 is already read
    // (no change, no entry), email 5 is moved in the same request (its own path, in order).
    s.update_emails(a, vec![kw(&["$flagged"], true, e[0])])
        .await
        .expect("first");
    let before = v.account_state(a).await;
    let res = s
        .update_emails(
            a,
            vec![
                kw(&["$seen"], true, e[0]),
                kw(&["$seen"], true, e[1]),
                kw(&["$seen"], true, e[2]),
                kw(&["$seen"], true, EmailId(99_999)),
                EmailPatch {
                    email: e[5],
                    keywords_add: Vec::new(),
                    keywords_remove: Vec::new(),
                    mailboxes_add: vec![archive],
                    mailboxes_remove: vec![inbox],
                },
                kw(&["$seen"], true, e[3]),
                // The same Email twice in one run: applied in order (seen, then not).
                kw(&["$seen"], false, e[3]),
                kw(&["work"], true, e[4]),
            ],
        )
        .await
        .expect("update");
    assert_eq!(res.len(), 8);
    assert!(matches!(res[3], Err(WriteRefusal::NotFound)), "{res:?}");
    assert!(
        res.iter().enumerate().all(|(i, r)| i == 3 || r.is_ok()),
        "{res:?}"
    );
    assert_eq!(v.keywords(a, e[0]).await, vec!["$flagged", "$seen"]);
    assert_eq!(v.keywords(a, e[1]).await, vec!["$seen"]);
    assert_eq!(v.keywords(a, e[2]).await, vec!["$seen"]);
    assert_eq!(v.keywords(a, e[3]).await, Vec::<String>::new());
    assert_eq!(v.keywords(a, e[4]).await, vec!["work"]);
    // The copies carry the flags (what the sync compares and the worker sends).
    let flags: std::collections::HashMap<u32, Vec<String>> = s
        .mailbox_copies(inbox)
        .await
        .expect("copies")
        .into_iter()
        .map(|c| (c.uid.0, c.flags))
        .collect();
    assert_eq!(flags[&1], vec!["\\Flagged", "\\Seen"]);
    assert_eq!(flags[&3], vec!["\\Seen"]);
    assert_eq!(flags[&5], vec!["work"]);
    // One new state for the whole request, every changed Email and mailbox logged under it.
    let after = v.account_state(a).await;
    assert_eq!(after, State(before.0 + 1));
    let changes = v.changed(a, before).await;
    let logged = |t: ObjectType, id: i64| changes.iter().any(|c| c.0 == t && c.1 == id);
    for i in [0, 2, 3, 4, 5] {
        assert!(
            logged(ObjectType::Email, e[i].0),
            "email {i} logged: {changes:?}"
        );
    }
    assert!(!logged(ObjectType::Email, e[1].0), "no change, no row");
    assert!(logged(ObjectType::Mailbox, inbox.0) && logged(ObjectType::Mailbox, archive.0));
    // The outbox: email 0 still one (coalesced) entry; 2, 3 (set then cleared: one entry
    // whose net effect is a removal), 4 one each; 1 none; 5 its move, in request order.
    let entries = s.outbox_next(a, 100).await.expect("next");
    let of = |e: EmailId| -> Vec<&OutboxEntry> {
        entries.iter().filter(|x| x.email == Some(e)).collect()
    };
    let flags_of = |x: &OutboxEntry| match &x.op {
        OutboxOp::Flags { add, remove } => Some((add.clone(), remove.clone())),
        _ => None,
    };
    assert_eq!(of(e[0]).len(), 1);
    assert_eq!(
        flags_of(of(e[0])[0]),
        Some((vec!["\\Flagged".to_string(), "\\Seen".to_string()], vec![]))
    );
    assert!(of(e[1]).is_empty());
    assert_eq!(
        flags_of(of(e[2])[0]),
        Some((vec!["\\Seen".to_string()], vec![]))
    );
    assert_eq!(of(e[3]).len(), 1);
    assert_eq!(
        flags_of(of(e[3])[0]),
        Some((vec![], vec!["\\Seen".to_string()]))
    );
    assert_eq!(
        flags_of(of(e[4])[0]),
        Some((vec!["work".to_string()], vec![]))
    );
    assert!(matches!(of(e[5])[0].op, OutboxOp::Move { .. }));
    // Ids follow the request: 2 before the move of 5, the move before 3's entry.
    let pos = |e: EmailId| {
        entries
            .iter()
            .position(|x| x.email == Some(e))
            .expect("entry")
    };
    assert!(pos(e[2]) < pos(e[5]) && pos(e[5]) < pos(e[3]) && pos(e[3]) < pos(e[4]));
    // The worker's targets: the server copies of each Email.
    assert_eq!(of(e[2])[0].targets.len(), 1);
}

/// A mailbox destroyed while its CREATE is on its way to the server (the worker counted
/// the attempt, then sent it) is deleted on the server once the CREATE is confirmed; one
/// destroyed before the worker began is never sent at all.
async fn a_mailbox_destroyed_while_its_create_is_in_flight_is_deleted_on_the_server<S: Roles>(
    s: &S,
) {
    let (a, _, _) = setup(s).await;
    let kinds = |l: &[OutboxEntry]| l.iter().map(|e| e.op.kind()).collect::<Vec<_>>();

    // Destroyed before the worker began: nothing is left to send.
    let early = s
        .create_mailbox(a, "early", None, true)
        .await
        .expect("create")
        .expect("created");
    let queued = s.outbox_next(a, 10).await.expect("next");
    assert_eq!(kinds(&queued), ["create_mailbox", "subscribe"]);
    s.destroy_mailbox(a, early, false)
        .await
        .expect("destroy")
        .expect("destroyed");
    assert!(s.outbox_next(a, 10).await.expect("next").is_empty());
    assert!(
        !s.outbox_begin(queued[0].id, None).await.expect("begin"),
        "a CREATE taken back is not sent"
    );

    // Destroyed after the worker began the CREATE.
    let late = s
        .create_mailbox(a, "late", None, true)
        .await
        .expect("create")
        .expect("created");
    let queued = s.outbox_next(a, 10).await.expect("next");
    let create = queued
        .iter()
        .find(|e| e.op.kind() == "create_mailbox")
        .expect("create entry")
        .clone();
    assert!(s.outbox_begin(create.id, None).await.expect("begin"));
    s.destroy_mailbox(a, late, false)
        .await
        .expect("destroy")
        .expect("destroyed");
    assert!(
        s.outbox_has(a, late.0, "create_mailbox")
            .await
            .expect("has")
    );
    assert_eq!(
        kinds(&s.outbox_next(a, 10).await.expect("next")),
        ["create_mailbox"],
        "the subscribe of a mailbox that is gone is dropped, the CREATE in flight stays"
    );
    s.outbox_complete(
        a,
        vec![OutboxDone {
            id: create.id,
            rev: create.rev,
            new_uid: None,
            raw_name: Some("late".into()),
            old_raw_name: None,
        }],
    )
    .await
    .expect("complete");
    let after = s.outbox_next(a, 10).await.expect("next");
    assert_eq!(
        after.iter().map(|e| e.op.clone()).collect::<Vec<_>>(),
        [OutboxOp::DeleteMailbox {
            raw_name: "late".into()
        }]
    );
    assert!(
        s.mailboxes(a)
            .await
            .expect("mailboxes")
            .iter()
            .all(|m| m.id != late),
        "the mailbox stays destroyed locally"
    );
}

/// The overlay (docs/design/writeback.md, "The sync and the outbox"): a sync batch that
/// read the server before the worker replayed the user's changes undoes none of them (a
/// flag set, a copy moved away, an Email destroyed, a mailbox created), and the worker's
/// answers settle them: a moved copy gets its server UID, a refused flag change is
/// reverted and shown, an APPEND keeps its message until the server has it.
async fn the_sync_keeps_pending_changes_on_top_until_the_worker_settles_them<S: Roles>(
    s: &S,
    v: &impl View,
) {
    let (a, inbox, archive) = setup(s).await;
    s.apply_mailbox_changes(
        a,
        inbox,
        MailboxChanges {
            new: (1..=3).map(|u| copy(u, &[])).collect(),
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("seed");
    let e: Vec<EmailId> = {
        let mut v = v.emails_by_uid(inbox).await;
        v.sort();
        v.into_iter().map(|(_, e)| e).collect()
    };
    let moved = EmailPatch {
        email: e[1],
        keywords_add: Vec::new(),
        keywords_remove: Vec::new(),
        mailboxes_add: vec![archive],
        mailboxes_remove: vec![inbox],
    };
    let res = s
        .update_emails(a, vec![kw(&["$seen"], true, e[0]), moved])
        .await
        .expect("update");
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let res = s.destroy_emails(a, vec![e[2]]).await.expect("destroy");
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let created = s
        .create_mailbox(a, "New", None, false)
        .await
        .expect("create")
        .expect("created");
    let draft = s
        .append_email(
            a,
            AppendRequest {
                mailbox: archive,
                raw: copy(9, &[]).raw.expect("raw").to_vec(),
                keywords: vec!["$draft".into()],
                received_at: 1_700_000_009,
            },
        )
        .await
        .expect("append")
        .expect("appended");

    // A pass that read the server before any of it was replayed.
    s.apply_mailbox_list(a, &[remote("INBOX", 7), remote("Archive", 7)])
        .await
        .expect("stale list");
    s.apply_mailbox_changes(
        a,
        inbox,
        MailboxChanges {
            new: (2..=3).map(|u| copy(u, &[])).collect(),
            flags: vec![FlagUpdate {
                uid: Uid(1),
                flags: vec!["$Junk".into()],
                modseq: ModSeq(2),
            }],
            ..MailboxChanges::new(UidValidity(7))
        },
    )
    .await
    .expect("stale batch");
    let copies = s.mailbox_copies(inbox).await.expect("copies");
    let got: Vec<(u32, Vec<String>)> = copies.into_iter().map(|c| (c.uid.0, c.flags)).collect();
    assert_eq!(
        got,
        [(1, vec!["$Junk".to_string(), "\\Seen".to_string()])],
        "the server's new flag taken, the user's kept on top, removed copies not back"
    );
    assert_eq!(v.keywords(a, e[0]).await, ["$junk", "$seen"]);
    let list = s.mailboxes(a).await.expect("mailboxes");
    let new = list.iter().find(|m| m.id == created);
    // No wire name yet: the worker tells it by the NUL byte it starts with.
    assert!(
        new.is_some_and(|m| m.raw_name.starts_with('\u{0}')),
        "the created mailbox stays while its CREATE is queued: {new:?}"
    );

    // The worker: the move confirmed with its server UID, the flag change refused, the
    // draft destroyed before its APPEND went out and then appended.
    let entries = s.outbox_next(a, 100).await.expect("next");
    let kinds: Vec<&str> = entries.iter().map(|x| x.op.kind()).collect();
    assert_eq!(
        kinds,
        ["flags", "move", "expunge", "create_mailbox", "append"]
    );
    assert_eq!(s.outbox_status(a).await.expect("status").pending, 5);
    s.outbox_complete(
        a,
        vec![OutboxDone {
            id: entries[1].id,
            rev: entries[1].rev,
            new_uid: Some((7, 40)),
            raw_name: None,
            old_raw_name: None,
        }],
    )
    .await
    .expect("complete move");
    assert_eq!(v.emails_by_uid(archive).await, [(40, e[1])]);
    s.outbox_refuse(a, entries[0].id, "NO [CANNOT] no")
        .await
        .expect("refuse");
    assert_eq!(v.keywords(a, e[0]).await, ["$junk"]);
    let status = s.outbox_status(a).await.expect("status");
    assert_eq!(status.pending, 3);
    assert_eq!(
        status
            .failures
            .iter()
            .map(|f| (f.kind.as_str(), f.object, f.reason.as_str()))
            .collect::<Vec<_>>(),
        [("flags", Some(e[0].0), "NO [CANNOT] no")]
    );
    s.outbox_dismiss(a, status.failures.iter().map(|f| f.id).collect())
        .await
        .expect("dismiss");
    assert!(
        s.outbox_status(a)
            .await
            .expect("status")
            .failures
            .is_empty()
    );

    let append = entries.last().expect("append entry");
    let OutboxOp::Append { blob_id, .. } = &append.op else {
        panic!("not an append: {append:?}");
    };
    let res = s.destroy_emails(a, vec![draft]).await.expect("destroy");
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    assert!(
        v.has_blob(blob_id).await,
        "the queued APPEND keeps its message"
    );
    assert!(s.outbox_begin(append.id, Some(41)).await.expect("begin"));
    s.outbox_defer(append.id, "network: timeout")
        .await
        .expect("defer");
    assert_eq!(
        s.outbox_status(a)
            .await
            .expect("status")
            .last_error
            .as_deref(),
        Some("network: timeout")
    );
    let again = s.outbox_next(a, 100).await.expect("next");
    let replay = again
        .iter()
        .find(|x| x.id == append.id)
        .expect("still queued");
    assert_eq!(replay.attempts, 1);
    assert!(matches!(
        replay.op,
        OutboxOp::Append {
            uidnext_before: Some(41),
            ..
        }
    ));
    s.outbox_complete(
        a,
        vec![OutboxDone {
            id: replay.id,
            rev: replay.rev,
            new_uid: Some((7, 41)),
            raw_name: None,
            old_raw_name: None,
        }],
    )
    .await
    .expect("complete append");
    assert!(
        !v.has_blob(blob_id).await,
        "nothing needs the bytes any more"
    );
}

/// Email/set destroy of several Emails (one of them in two mailboxes, one unknown, one
/// named twice): each refused or accepted in request order, each copy's expunge queued
/// by Email as requested, then by mailbox and UID, and the removed copies kept out of a
/// sync batch that still lists them.
async fn destroying_emails_queues_the_expunge_of_each_copy_in_order<S: Roles>(
    s: &S,
    v: &impl View,
) {
    let (a, inbox, archive) = setup(s).await;
    for (mailbox, uids) in [(inbox, 1..=4), (archive, 1..=1)] {
        s.apply_mailbox_changes(
            a,
            mailbox,
            MailboxChanges {
                new: uids.map(|u| copy(u, &[])).collect(),
                ..MailboxChanges::new(UidValidity(7))
            },
        )
        .await
        .expect("seed");
    }
    let e: Vec<EmailId> = {
        let mut v = v.emails_by_uid(inbox).await;
        v.sort();
        v.into_iter().map(|(_, e)| e).collect()
    };
    assert_eq!(
        v.emails_by_uid(archive).await,
        [(1, e[0])],
        "one Email, two copies"
    );
    let res = s
        .destroy_emails(a, vec![e[0], e[2], EmailId(99_999), e[0]])
        .await
        .expect("destroy");
    assert_eq!(
        res,
        [
            Ok(()),
            Ok(()),
            Err(WriteRefusal::NotFound),
            Err(WriteRefusal::NotFound)
        ]
    );
    let queued: Vec<(Option<EmailId>, OutboxOp)> = s
        .outbox_next(a, 100)
        .await
        .expect("next")
        .into_iter()
        .map(|x| (x.email, x.op))
        .collect();
    let expunge = |mailbox: MailboxId, uid: i64| OutboxOp::Expunge {
        mailbox,
        uid,
        flags: String::new(),
        modseq: 1,
    };
    assert_eq!(
        queued,
        [
            (Some(e[0]), expunge(inbox, 1)),
            (Some(e[0]), expunge(archive, 1)),
            (Some(e[2]), expunge(inbox, 3)),
        ]
    );
    // A pass that listed the mailboxes before the expunges were replayed.
    for (mailbox, uids) in [(inbox, 1..=4), (archive, 1..=1)] {
        s.apply_mailbox_changes(
            a,
            mailbox,
            MailboxChanges {
                new: uids.map(|u| copy(u, &[])).collect(),
                ..MailboxChanges::new(UidValidity(7))
            },
        )
        .await
        .expect("stale batch");
    }
    let mut left = v.emails_by_uid(inbox).await;
    left.sort();
    assert_eq!(left, [(2, e[1]), (4, e[3])]);
    assert!(v.emails_by_uid(archive).await.is_empty());
}
