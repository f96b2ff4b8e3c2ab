//! The write-back's keyword batch (`update_emails` with keyword-only patches goes through
//! set-based statements): the same store state, change log and outbox entries as the
//! per-patch path, with coalescing into pending flag entries and mixed requests kept in
//! order.

use mail_types::{
    AccountId, AccountKind, EmailId, MailboxId, ModSeq, Role, Security, State, Uid, UidValidity,
};
use store::prelude::*;
use store::*;

async fn setup() -> (SqliteStore, AccountId, MailboxId, MailboxId) {
    let s = SqliteStore::open_in_memory().expect("store");
    let u = s.create_user("u", "h").await.expect("user");
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
        .expect("account");
    let remote = |name: &str| RemoteMailbox {
        raw_name: name.into(),
        name: name.into(),
        delimiter: Some("/".into()),
        role: (name == "INBOX").then_some(Role::Inbox),
        subscribed: true,
        selectable: true,
        uidvalidity: Some(7),
    };
    s.apply_mailbox_list(a, &[remote("INBOX"), remote("Archive")])
        .await
        .expect("list");
    let id = |name: &str, l: &[MailboxRecord]| l.iter().find(|m| m.name == name).expect(name).id;
    let l = s.mailboxes(a).await.expect("mailboxes");
    (s, a, id("INBOX", &l), id("Archive", &l))
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

async fn keywords(s: &SqliteStore, a: AccountId, e: EmailId) -> Vec<String> {
    let mut k = s.emails(a, &[e]).await.expect("emails")[0].keywords.clone();
    k.sort();
    k
}

#[tokio::test]
async fn keyword_batches_apply_log_and_queue_like_single_patches() {
    let (s, a, inbox, archive) = setup().await;
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
    let msgs = s.mailbox_messages(inbox).await.expect("messages");
    let e: Vec<EmailId> = {
        let mut v: Vec<(u32, EmailId)> = msgs.iter().map(|m| (m.uid.0, m.email)).collect();
        v.sort();
        v.into_iter().map(|(_, e)| e).collect()
    };
    // Email 0 already has a pending flag entry (coalesced into), email 1 is already read
    // (no change, no entry), email 5 is moved in the same request (its own path, in order).
    s.update_emails(a, vec![kw(&["$flagged"], true, e[0])])
        .await
        .expect("first");
    let before = s.account_state(a).await.expect("state");
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
    assert_eq!(keywords(&s, a, e[0]).await, vec!["$flagged", "$seen"]);
    assert_eq!(keywords(&s, a, e[1]).await, vec!["$seen"]);
    assert_eq!(keywords(&s, a, e[2]).await, vec!["$seen"]);
    assert_eq!(keywords(&s, a, e[3]).await, Vec::<String>::new());
    assert_eq!(keywords(&s, a, e[4]).await, vec!["work"]);
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
    let after = s.account_state(a).await.expect("state");
    assert_eq!(after, State(before.0 + 1));
    let changes = s.changes_since(a, before).await.expect("changes");
    let logged = |t: ObjectType, id: i64| changes.iter().any(|c| c.object == t && c.id == id);
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
#[tokio::test]
async fn a_mailbox_destroyed_while_its_create_is_in_flight_is_deleted_on_the_server() {
    let (s, a, _, _) = setup().await;
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
