//! What JMAP reads (`Reading`), on both backends with the same assertions: Email/query
//! filters, sorts, collapsed threads and windows, threads, views and mailbox counts, the
//! change log in pages that end inside a state, blobs, and full-text search in Latin with
//! accents, Greek, Cyrillic, Japanese and Thai. Then one test that stores the same
//! batches in both backends and compares what they read, field by field.

mod common;

use common::{on_both_backends, remote};
use mail_types::{AccountId, EmailId, MailboxId, ThreadId, UidValidity};
use std::collections::HashMap;
use store::prelude::*;
use store::*;

/// Seconds of the corpus' receivedAt (each message's offset is added).
const T0: i64 = 1_700_000_000;

/// One message of the corpus.
struct Mail {
    id: &'static str,
    mailbox: &'static str,
    uid: u32,
    /// receivedAt, seconds after [`T0`].
    at: i64,
    flags: &'static [&'static str],
    raw: String,
}

fn header(id: &str, from: &str, to: &str, subject: &str, extra: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 6 Nov 2023 10:00:00 +0100\r\nMIME-Version: 1.0\r\n{extra}"
    )
}

fn plain(id: &str, from: &str, to: &str, subject: &str, extra: &str, body: &str) -> String {
    format!(
        "{}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n",
        header(id, from, to, subject, extra)
    )
}

/// Six messages: a thread of two (m1, m2), Japanese (m3), Thai (m4), one with an
/// attachment and a header of its own (m5), and m6 in the Archive only; m1 is in both
/// mailboxes.
fn corpus() -> Vec<Mail> {
    let m1 = plain(
        "m1@x",
        "Alice Martin <alice@example.org>",
        "bob@example.com",
        "Café au lait",
        "",
        "We meet at the café tomorrow",
    );
    let m5 = format!(
        "{}Bcc: dave@example.org\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nnumbers attached, see the report\r\n\
         --b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"q3.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcOkw7zDtsOf\r\n--b--\r\n",
        header(
            "m5@x",
            "Carol <carol@example.org>",
            "team@example.org",
            "Quarterly report",
            "X-Priority: 1 (Highest)\r\n"
        )
    );
    vec![
        Mail {
            id: "m1@x",
            mailbox: "INBOX",
            uid: 1,
            at: 100,
            flags: &["\\Seen"],
            raw: m1.clone(),
        },
        Mail {
            id: "m2@x",
            mailbox: "INBOX",
            uid: 2,
            at: 200,
            flags: &[],
            raw: plain(
                "m2@x",
                "Bob <bob@example.com>",
                "alice@example.org",
                "Re: Café au lait",
                "In-Reply-To: <m1@x>\r\nReferences: <m1@x>\r\n",
                "Ελληνικά και русский текст",
            ),
        },
        Mail {
            id: "m3@x",
            mailbox: "INBOX",
            uid: 3,
            at: 300,
            flags: &["\\Flagged"],
            raw: plain(
                "m3@x",
                "Zoë <zoe@example.net>",
                "alice@example.org",
                "東京の予定",
                "Cc: carol@example.org\r\n",
                "来週、東京都に行きます。",
            ),
        },
        Mail {
            id: "m4@x",
            mailbox: "INBOX",
            uid: 4,
            at: 400,
            flags: &["\\Seen", "\\Flagged"],
            raw: plain(
                "m4@x",
                "somchai@example.co.th",
                "bob@example.com",
                "ภาษาไทย",
                "",
                "สวัสดีครับ ภาษาไทยง่ายมาก",
            ),
        },
        Mail {
            id: "m5@x",
            mailbox: "INBOX",
            uid: 5,
            at: 500,
            flags: &[],
            raw: m5,
        },
        Mail {
            id: "m1@x",
            mailbox: "Archive",
            uid: 1,
            at: 100,
            flags: &["\\Seen"],
            raw: m1,
        },
        Mail {
            id: "m6@x",
            mailbox: "Archive",
            uid: 2,
            at: 50,
            flags: &[],
            raw: plain(
                "m6@x",
                "News <news@example.com>",
                "bob@example.com",
                "Old newsletter",
                "",
                "Nothing new this week",
            ),
        },
    ]
}

/// The stored corpus: its account, mailboxes and Emails by Message-ID.
struct Stored {
    a: AccountId,
    inbox: MailboxId,
    archive: MailboxId,
    ids: HashMap<&'static str, EmailId>,
}

impl Stored {
    fn id(&self, m: &str) -> EmailId {
        self.ids[m]
    }

    fn ids(&self, ms: &[&str]) -> Vec<EmailId> {
        ms.iter().map(|m| self.id(m)).collect()
    }
}

/// Stores the corpus in a new account.
async fn store_corpus<S: Directory + MailSync + Reading>(s: &S) -> Stored {
    let a = common::account(s).await;
    store_corpus_in(s, a).await
}

fn cond(c: EmailCondition) -> Option<EmailFilter> {
    Some(EmailFilter::Condition(c))
}

fn filtered(f: Option<EmailFilter>) -> EmailQuery {
    EmailQuery {
        filter: f,
        ..EmailQuery::default()
    }
}

fn sort(key: EmailSortKey, ascending: bool) -> EmailSort {
    EmailSort {
        key,
        ascending,
        collation: Collation::UnicodeCasemap,
    }
}

async fn ids<S: Reading>(s: &S, a: AccountId, q: &EmailQuery) -> Vec<EmailId> {
    s.query_emails(a, q).await.expect("query").ids
}

on_both_backends!(
    filters_select_what_sqlite_selects,
    sorts_windows_and_collapsed_threads,
    views_threads_and_mailbox_counts,
    changes_pages_end_inside_a_state,
    blobs_are_read_per_account,
    search_finds_words_in_every_script,
);

async fn filters_select_what_sqlite_selects<S: Directory + MailSync + Reading>(s: &S) {
    use EmailCondition as C;
    let st = store_corpus(s).await;
    let a = st.a;
    let kw = |k: &str| k.to_string();
    // Sizes: the attachment's message and those at least as large, the others.
    let by_date = ["m5@x", "m4@x", "m3@x", "m2@x", "m1@x", "m6@x"];
    let size = |m: &str| {
        corpus()
            .iter()
            .find(|x| x.id == m)
            .map_or(0, |x| x.raw.len() as u64)
    };
    let big = size("m5@x");
    let larger: Vec<&str> = by_date.iter().copied().filter(|m| size(m) >= big).collect();
    let smaller: Vec<&str> = by_date.iter().copied().filter(|m| size(m) < big).collect();
    assert!(!larger.is_empty() && !smaller.is_empty());
    let cases: Vec<(&str, Option<EmailFilter>, Vec<&str>)> = vec![
        (
            "none",
            None,
            vec!["m5@x", "m4@x", "m3@x", "m2@x", "m1@x", "m6@x"],
        ),
        (
            "inbox",
            cond(C::InMailbox(st.inbox)),
            vec!["m5@x", "m4@x", "m3@x", "m2@x", "m1@x"],
        ),
        (
            "archive",
            cond(C::InMailbox(st.archive)),
            vec!["m1@x", "m6@x"],
        ),
        (
            "other than inbox",
            cond(C::InMailboxOtherThan(vec![st.inbox])),
            vec!["m1@x", "m6@x"],
        ),
        (
            "before",
            cond(C::Before(T0 + 300)),
            vec!["m2@x", "m1@x", "m6@x"],
        ),
        (
            "after",
            cond(C::After(T0 + 300)),
            vec!["m5@x", "m4@x", "m3@x"],
        ),
        ("min size", cond(C::MinSize(big)), larger.clone()),
        ("max size", cond(C::MaxSize(big)), smaller.clone()),
        (
            "flagged",
            cond(C::HasKeyword(kw("$flagged"))),
            vec!["m4@x", "m3@x"],
        ),
        (
            "keyword in any case",
            cond(C::HasKeyword(kw("$Flagged"))),
            vec!["m4@x", "m3@x"],
        ),
        (
            "unseen",
            cond(C::NotKeyword(kw("$seen"))),
            vec!["m5@x", "m3@x", "m2@x", "m6@x"],
        ),
        (
            "some in thread seen",
            cond(C::SomeInThreadHaveKeyword(kw("$seen"))),
            vec!["m4@x", "m2@x", "m1@x"],
        ),
        (
            "all in thread seen",
            cond(C::AllInThreadHaveKeyword(kw("$seen"))),
            vec!["m4@x"],
        ),
        (
            "none in thread seen",
            cond(C::NoneInThreadHaveKeyword(kw("$seen"))),
            vec!["m5@x", "m3@x", "m6@x"],
        ),
        ("attachment", cond(C::HasAttachment(true)), vec!["m5@x"]),
        (
            "no attachment",
            cond(C::HasAttachment(false)),
            vec!["m4@x", "m3@x", "m2@x", "m1@x", "m6@x"],
        ),
        ("from", cond(C::From("alice".into())), vec!["m1@x"]),
        (
            "from, ASCII case",
            cond(C::From("ALICE".into())),
            vec!["m1@x"],
        ),
        ("from, a name", cond(C::From("Zoë".into())), vec!["m3@x"]),
        // SQLite's LIKE ignores the case of ASCII letters only.
        ("from, non-ASCII case", cond(C::From("ZOË".into())), vec![]),
        ("from, a wildcard", cond(C::From("%".into())), vec![]),
        ("to", cond(C::To("alice".into())), vec!["m3@x", "m2@x"]),
        ("cc", cond(C::Cc("carol".into())), vec!["m3@x"]),
        ("bcc", cond(C::Bcc("dave".into())), vec!["m5@x"]),
        (
            "subject",
            cond(C::Subject("café".into())),
            vec!["m2@x", "m1@x"],
        ),
        (
            "subject without the accent",
            cond(C::Subject("CAFE".into())),
            vec!["m2@x", "m1@x"],
        ),
        // In the From of m1, not in any subject.
        ("subject only", cond(C::Subject("alice".into())), vec![]),
        (
            "subject, two words",
            cond(C::Subject("au report".into())),
            vec![],
        ),
        ("body", cond(C::Body("tomorrow".into())), vec!["m1@x"]),
        ("body only", cond(C::Body("quarterly".into())), vec![]),
        (
            "text in headers and body",
            cond(C::Text("alice".into())),
            vec!["m3@x", "m2@x", "m1@x"],
        ),
        (
            "text, words in the head and in the body",
            cond(C::Text("martin tomorrow".into())),
            vec!["m1@x"],
        ),
        (
            "header",
            cond(C::Header("X-Priority".into(), None)),
            vec!["m5@x"],
        ),
        (
            "header value",
            cond(C::Header("x-priority".into(), Some("HIGHEST".into()))),
            vec!["m5@x"],
        ),
        (
            "header value absent",
            cond(C::Header("X-Priority".into(), Some("lowest".into()))),
            vec![],
        ),
        (
            "not",
            Some(EmailFilter::Not(vec![EmailFilter::Condition(
                C::HasKeyword(kw("$seen")),
            )])),
            vec!["m5@x", "m3@x", "m2@x", "m6@x"],
        ),
        (
            "or",
            Some(EmailFilter::Or(vec![
                EmailFilter::Condition(C::From("alice".into())),
                EmailFilter::Condition(C::From("zoe".into())),
            ])),
            vec!["m3@x", "m1@x"],
        ),
        (
            "and with a mailbox",
            Some(EmailFilter::And(vec![
                EmailFilter::Condition(C::InMailbox(st.archive)),
                EmailFilter::Condition(C::NotKeyword(kw("$seen"))),
            ])),
            vec!["m6@x"],
        ),
        ("empty or", Some(EmailFilter::Or(vec![])), vec![]),
        (
            "empty and",
            Some(EmailFilter::And(vec![])),
            vec!["m5@x", "m4@x", "m3@x", "m2@x", "m1@x", "m6@x"],
        ),
        ("nothing", cond(C::Nothing), vec![]),
    ];
    for (name, f, want) in cases {
        let got = ids(s, a, &filtered(f.clone())).await;
        assert_eq!(got, st.ids(&want), "{name}: {f:?}");
        let counted = s
            .query_emails(
                a,
                &EmailQuery {
                    count: true,
                    ..filtered(f)
                },
            )
            .await
            .expect("count");
        assert_eq!(counted.total, Some(want.len()), "{name}: total");
    }
}

async fn sorts_windows_and_collapsed_threads<S: Directory + MailSync + Reading>(s: &S) {
    let st = store_corpus(s).await;
    let a = st.a;
    let inbox = cond(EmailCondition::InMailbox(st.inbox));
    let sorted = |sorts: Vec<EmailSort>| EmailQuery {
        sort: sorts,
        ..EmailQuery::default()
    };
    // Base subjects: "café au lait" twice (ties by id, ascending with the sort), then by
    // case-folded text: "old newsletter", "quarterly report", Thai, then Han.
    assert_eq!(
        ids(s, a, &sorted(vec![sort(EmailSortKey::Subject, true)])).await,
        st.ids(&["m1@x", "m2@x", "m6@x", "m5@x", "m4@x", "m3@x"])
    );
    // The sender's name, else its address: "zoë", "somchai@...", "news", "carol", "bob",
    // "alice martin".
    assert_eq!(
        ids(s, a, &sorted(vec![sort(EmailSortKey::From, false)])).await,
        st.ids(&["m3@x", "m4@x", "m6@x", "m5@x", "m2@x", "m1@x"])
    );
    assert_eq!(
        ids(
            s,
            a,
            &sorted(vec![
                sort(EmailSortKey::HasKeyword("$flagged".into()), false),
                sort(EmailSortKey::ReceivedAt, false),
            ])
        )
        .await,
        st.ids(&["m4@x", "m3@x", "m5@x", "m2@x", "m1@x", "m6@x"])
    );
    // By size, from the stored sizes.
    let mut by_size: Vec<(u32, &str)> = corpus()
        .iter()
        .filter(|m| m.mailbox == "INBOX" || m.id == "m6@x")
        .map(|m| (m.raw.len() as u32, m.id))
        .collect();
    by_size.sort();
    let want: Vec<&str> = by_size.iter().map(|(_, m)| *m).collect();
    assert_eq!(
        ids(s, a, &sorted(vec![sort(EmailSortKey::Size, true)])).await,
        st.ids(&want)
    );
    // Every message has a Date, the same one: sentAt ties, broken by id.
    let mut by_id = st.ids(&["m1@x", "m2@x", "m3@x", "m4@x", "m5@x", "m6@x"]);
    by_id.sort();
    assert_eq!(
        ids(s, a, &sorted(vec![sort(EmailSortKey::SentAt, true)])).await,
        by_id
    );
    assert_eq!(
        ids(
            s,
            a,
            &EmailQuery {
                sort: vec![sort(EmailSortKey::ReceivedAt, true)],
                ..filtered(inbox.clone())
            }
        )
        .await,
        st.ids(&["m1@x", "m2@x", "m3@x", "m4@x", "m5@x"])
    );
    // A window of the mailbox, with the total.
    let page = s
        .query_emails(
            a,
            &EmailQuery {
                window: Some((1, 2)),
                count: true,
                ..filtered(inbox.clone())
            },
        )
        .await
        .expect("window");
    assert_eq!(page.ids, st.ids(&["m4@x", "m3@x"]));
    assert_eq!(page.total, Some(5));
    // Collapsed: m1 goes under m2, its thread's newest.
    let collapsed = |window| EmailQuery {
        collapse_threads: true,
        window,
        count: true,
        ..filtered(inbox.clone())
    };
    let all = s
        .query_emails(a, &collapsed(None))
        .await
        .expect("collapsed");
    assert_eq!(all.ids, st.ids(&["m5@x", "m4@x", "m3@x", "m2@x"]));
    assert_eq!(all.total, Some(4));
    assert_eq!(
        all.threads[3],
        s.emails(a, &[st.id("m1@x")]).await.expect("m1")[0].thread
    );
    for (offset, limit) in [(0, 1), (1, 2), (3, 5), (4, 1)] {
        let page = s
            .query_emails(a, &collapsed(Some((offset, limit))))
            .await
            .expect("collapsed window");
        let want: Vec<EmailId> = all.ids.iter().skip(offset).take(limit).copied().collect();
        assert_eq!(page.ids, want, "{offset}+{limit}");
        assert_eq!(page.total, Some(4));
    }
    // queryChanges' upToId: reading stops at that id.
    let up_to = EmailQuery {
        stop_after: Some(st.id("m3@x")),
        ..filtered(inbox)
    };
    assert_eq!(ids(s, a, &up_to).await, st.ids(&["m5@x", "m4@x", "m3@x"]));
}

async fn views_threads_and_mailbox_counts<S: Directory + MailSync + Reading>(s: &S) {
    let st = store_corpus(s).await;
    let a = st.a;
    let views = s
        .emails(a, &[st.id("m2@x"), EmailId(1 << 40), st.id("m1@x")])
        .await
        .expect("views");
    assert_eq!(
        views.iter().map(|v| v.id).collect::<Vec<_>>(),
        st.ids(&["m2@x", "m1@x"]),
        "in the order asked, unknown ids left out"
    );
    let (m2, m1) = (&views[0], &views[1]);
    assert_eq!(m1.thread, m2.thread);
    let mut both = vec![st.inbox, st.archive];
    both.sort();
    assert_eq!(m1.mailboxes, both);
    assert_eq!(m2.mailboxes, vec![st.inbox]);
    assert_eq!(m1.keywords, vec!["$seen".to_string()]);
    assert!(m2.keywords.is_empty());
    assert_eq!(m1.subject.as_deref(), Some("Café au lait"));
    assert_eq!(m1.received_at, T0 + 100);
    assert_eq!(m1.sent_at, Some(1_699_261_200));
    assert_eq!(m1.sent_offset, 60);
    assert_eq!(m1.message_id.as_deref(), Some("m1@x"));
    assert_eq!(m2.in_reply_to, vec!["m1@x".to_string()]);
    assert_eq!(m2.references, vec!["m1@x".to_string()]);
    assert_eq!(
        m1.from,
        serde_json::json!([{ "name": "Alice Martin", "email": "alice@example.org" }])
    );
    assert!(m1.preview.contains("café tomorrow"), "{}", m1.preview);
    assert!(!m1.has_attachment);
    assert!(s.emails(a, &[st.id("m5@x")]).await.expect("m5")[0].has_attachment);
    assert!(
        s.emails(AccountId(a.0 + 1000), &[st.id("m1@x")])
            .await
            .expect("other")
            .is_empty()
    );

    let t3 = s.emails(a, &[st.id("m3@x")]).await.expect("m3")[0].thread;
    let threads = s
        .threads(a, &[m1.thread, ThreadId(1 << 40), t3])
        .await
        .expect("threads");
    assert_eq!(
        threads,
        vec![
            (m1.thread, st.ids(&["m1@x", "m2@x"])),
            (t3, st.ids(&["m3@x"]))
        ]
    );
    assert_eq!(
        s.emails_by_message_id(a, "nothing@x").await.expect("none"),
        vec![]
    );

    let boxes = s.mailbox_views(a).await.expect("mailboxes");
    let names: Vec<&str> = boxes.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["Archive", "INBOX"], "by name, bytewise");
    let inbox = &boxes[1];
    assert_eq!(inbox.role, Some(mail_types::Role::Inbox));
    // Unread: m2, m3, m5; threads: (m1, m2), m3, m4, m5, three of them unread.
    assert_eq!(
        (
            inbox.total_emails,
            inbox.unread_emails,
            inbox.total_threads,
            inbox.unread_threads
        ),
        (5, 3, 4, 3)
    );
    let archive = &boxes[0];
    assert_eq!(
        (
            archive.total_emails,
            archive.unread_emails,
            archive.total_threads,
            archive.unread_threads
        ),
        (2, 1, 2, 1)
    );
    let listed = s.mailbox_messages(st.inbox).await.expect("messages");
    assert_eq!(
        listed
            .iter()
            .map(|m| (m.uid.0, m.email))
            .collect::<Vec<_>>(),
        (1..=5)
            .map(|u| (u, st.id(&format!("m{u}@x"))))
            .collect::<Vec<_>>()
    );
    assert_eq!(listed[3].flags, ["\\Flagged", "\\Seen"]);
}

async fn changes_pages_end_inside_a_state<S: Directory + MailSync + Reading>(s: &S) {
    let a = common::account(s).await;
    let start = s.account_state(a).await.expect("state");
    let st = store_corpus_in(s, a).await;
    let now = s.account_state(a).await.expect("state");
    // Two batches: INBOX's five Emails under one state, the Archive's one new Email (and
    // m1 updated) under the next.
    let mut position = ChangePosition::whole(start);
    let mut created = Vec::new();
    let mut updated = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 10, "bounded");
        let page = s
            .changes_page(a, ObjectType::Email, position, 2)
            .await
            .expect("page")
            .expect("known state");
        assert!(page.created.len() + page.updated.len() + page.destroyed.len() <= 2);
        created.extend(page.created);
        updated.extend(page.updated);
        if !page.has_more {
            assert_eq!(page.new_position, ChangePosition::whole(now));
            break;
        }
        assert_ne!(
            page.new_position.row,
            i64::MAX,
            "a page ending inside a state"
        );
        position = page.new_position;
    }
    assert!(pages >= 3);
    created.sort();
    let mut all = st.ids(&["m1@x", "m2@x", "m3@x", "m4@x", "m5@x", "m6@x"]);
    all.sort();
    assert_eq!(
        created,
        all.iter().map(|e| e.0).collect::<Vec<_>>(),
        "each Email once"
    );
    // m1, created with the first batch, gained a mailbox in the second.
    assert_eq!(updated, vec![st.id("m1@x").0]);
    // The whole log since the start, in one call.
    let log = s.changes_since(a, start).await.expect("since");
    assert!(log.iter().all(|c| c.state > start && c.state <= now));
    assert!(
        log.iter()
            .any(|c| c.object == ObjectType::Email && c.op == ChangeOp::Created)
    );
    // A state in the future is unknown.
    let future = ChangePosition::whole(mail_types::State(now.0 + 1));
    assert!(matches!(
        s.changes_page(a, ObjectType::Email, future, 2)
            .await
            .expect("page"),
        Err(ChangesError::UnknownState)
    ));
    // Nothing after the last state.
    let page = s
        .changes_page(a, ObjectType::Email, ChangePosition::whole(now), 2)
        .await
        .expect("page")
        .expect("known");
    assert!(page.created.is_empty() && !page.has_more);
}

/// Stores the corpus in account `a` as the sync does: one batch per mailbox.
async fn store_corpus_in<S: Directory + MailSync + Reading>(s: &S, a: AccountId) -> Stored {
    s.apply_mailbox_list(a, &[remote("INBOX", 7), remote("Archive", 7)])
        .await
        .expect("list");
    let inbox = common::mailbox(s, a, "INBOX").await;
    let archive = common::mailbox(s, a, "Archive").await;
    for (name, mb) in [("INBOX", inbox), ("Archive", archive)] {
        let new = corpus()
            .into_iter()
            .filter(|m| m.mailbox == name)
            .map(|m| {
                let mut c = common::copy(m.uid, m.raw.as_bytes(), m.flags);
                c.internal_date = T0 + m.at;
                c
            })
            .collect();
        s.apply_mailbox_changes(
            a,
            mb,
            MailboxChanges {
                new,
                ..MailboxChanges::new(UidValidity(7))
            },
        )
        .await
        .expect("apply");
    }
    let mut ids = HashMap::new();
    for m in ["m1@x", "m2@x", "m3@x", "m4@x", "m5@x", "m6@x"] {
        let found = s.emails_by_message_id(a, m).await.expect("by message id");
        assert_eq!(found.len(), 1, "{m}");
        ids.insert(m, found[0]);
    }
    Stored {
        a,
        inbox,
        archive,
        ids,
    }
}

async fn blobs_are_read_per_account<S: Directory + MailSync + Reading>(s: &S) {
    let st = store_corpus(s).await;
    let a = st.a;
    let m1 = &s.emails(a, &[st.id("m1@x")]).await.expect("m1")[0];
    let blob = m1.blob_id.clone().expect("stored with its body");
    let raw = corpus()[0].raw.clone().into_bytes();
    assert_eq!(s.blob(&blob).await.expect("blob"), Some(raw.clone()));
    assert_eq!(
        s.blob_size(&blob).await.expect("size"),
        Some(raw.len() as u64)
    );
    assert!(s.blob_in_account(a, &blob).await.expect("in account"));
    assert_eq!(
        s.emails_with_blob(a, &blob).await.expect("emails"),
        vec![st.id("m1@x")]
    );
    // Another account does not reach it.
    let u = s.create_user("other", "h").await.expect("user");
    let b = s
        .create_account(&common::new_account(u, "b"))
        .await
        .expect("account");
    assert!(!s.blob_in_account(b, &blob).await.expect("other account"));
    assert!(s.emails_with_blob(b, &blob).await.expect("none").is_empty());
    let unknown = "0".repeat(64);
    assert_eq!(s.blob(&unknown).await.expect("unknown"), None);
    assert_eq!(s.blob_size(&unknown).await.expect("unknown"), None);
}

async fn search_finds_words_in_every_script<S: Directory + MailSync + Reading>(s: &S) {
    let st = store_corpus(s).await;
    let a = st.a;
    let cases: &[(&str, &[&str])] = &[
        // Latin with and without the accent, any case.
        ("café", &["m2@x", "m1@x"]),
        ("CAFE", &["m2@x", "m1@x"]),
        ("cafe tomorrow", &["m1@x"]),
        // Greek: the accent is a mark like Latin's.
        ("Ελληνικά", &["m2@x"]),
        ("ελληνικα", &["m2@x"]),
        ("РУССКИЙ", &["m2@x"]),
        ("русс", &[]),
        // Japanese has no spaces: a word inside a longer run is found.
        ("東京", &["m3@x"]),
        ("京都", &["m3@x"]),
        ("東京都に行きます", &["m3@x"]),
        ("東", &["m3@x"]),
        ("予定", &["m3@x"]),
        ("大阪", &[]),
        // Thai likewise.
        ("ภาษาไทย", &["m4@x"]),
        ("ไทย", &["m4@x"]),
        ("สวัสดี", &["m4@x"]),
        ("ง่าย", &["m4@x"]),
        // A word with punctuation is the phrase of its parts, in order.
        ("au-lait", &["m2@x", "m1@x"]),
        ("lait-au", &[]),
        ("alice@example.org", &["m3@x", "m2@x", "m1@x"]),
        ("example.net", &["m3@x"]),
        ("---", &[]),
        ("", &[]),
    ];
    for (q, want) in cases {
        assert_eq!(
            s.search(a, q).await.expect("search"),
            st.ids(want),
            "search {q:?}"
        );
    }
}

/// The same batches stored in both backends read the same: every Email's view field by
/// field (ids mapped through Message-IDs: each backend numbers its own), mailbox views,
/// and a set of queries.
#[tokio::test]
async fn both_backends_read_the_same() {
    let lite = common::sqlite();
    let pg = common::postgres().await;
    let l = store_corpus(&lite).await;
    let p = store_corpus(&pg).await;
    let names = ["m1@x", "m2@x", "m3@x", "m4@x", "m5@x", "m6@x"];
    let lv = lite
        .emails(l.a, &l.ids(&names))
        .await
        .expect("sqlite views");
    let pv = pg.emails(p.a, &p.ids(&names)).await.expect("pg views");
    assert_eq!(lv.len(), names.len());
    assert_eq!(pv.len(), names.len());
    let lite_box = HashMap::from([(l.inbox, "INBOX"), (l.archive, "Archive")]);
    let pg_box = HashMap::from([(p.inbox, "INBOX"), (p.archive, "Archive")]);
    let lite_thread: HashMap<ThreadId, Vec<EmailId>> =
        lv.iter().fold(HashMap::new(), |mut m, v| {
            m.entry(v.thread).or_default().push(v.id);
            m
        });
    let pg_thread: HashMap<ThreadId, Vec<EmailId>> = pv.iter().fold(HashMap::new(), |mut m, v| {
        m.entry(v.thread).or_default().push(v.id);
        m
    });
    for ((x, y), name) in lv.iter().zip(&pv).zip(names) {
        let boxes = |v: &EmailView, map: &HashMap<MailboxId, &str>| {
            let mut b: Vec<String> = v.mailboxes.iter().map(|m| map[m].to_string()).collect();
            b.sort();
            b
        };
        assert_eq!(boxes(x, &lite_box), boxes(y, &pg_box), "{name} mailboxes");
        assert_eq!(
            lite_thread[&x.thread].len(),
            pg_thread[&y.thread].len(),
            "{name} thread"
        );
        assert_eq!(x.blob_id, y.blob_id, "{name} blob");
        assert_eq!(x.keywords, y.keywords, "{name} keywords");
        assert_eq!(x.size, y.size, "{name} size");
        assert_eq!(x.received_at, y.received_at, "{name} receivedAt");
        assert_eq!(x.sent_at, y.sent_at, "{name} sentAt");
        assert_eq!(x.sent_offset, y.sent_offset, "{name} offset");
        assert_eq!(x.message_id, y.message_id, "{name} Message-ID");
        assert_eq!(x.in_reply_to, y.in_reply_to, "{name} In-Reply-To");
        assert_eq!(x.references, y.references, "{name} References");
        assert_eq!(x.subject, y.subject, "{name} subject");
        assert_eq!(x.from, y.from, "{name} from");
        assert_eq!(x.sender, y.sender, "{name} sender");
        assert_eq!(x.reply_to, y.reply_to, "{name} replyTo");
        assert_eq!(x.to, y.to, "{name} to");
        assert_eq!(x.cc, y.cc, "{name} cc");
        assert_eq!(x.bcc, y.bcc, "{name} bcc");
        assert_eq!(x.preview, y.preview, "{name} preview");
        assert_eq!(x.has_attachment, y.has_attachment, "{name} attachment");
        assert_eq!(x.blob_by_id, y.blob_by_id, "{name} blob by id");
    }
    let strip = |v: Vec<MailboxView>| -> Vec<(String, Option<mail_types::Role>, [u32; 4])> {
        v.into_iter()
            .map(|m| {
                (
                    m.name,
                    m.role,
                    [
                        m.total_emails,
                        m.unread_emails,
                        m.total_threads,
                        m.unread_threads,
                    ],
                )
            })
            .collect()
    };
    assert_eq!(
        strip(lite.mailbox_views(l.a).await.expect("sqlite")),
        strip(pg.mailbox_views(p.a).await.expect("pg"))
    );
    // Queries, mapped back to Message-IDs.
    let back = |st: &Stored, ids: Vec<EmailId>| -> Vec<&'static str> {
        ids.iter()
            .map(|i| *st.ids.iter().find(|(_, v)| *v == i).expect("known").0)
            .collect()
    };
    for text in ["example", "com", "bob", "report", "東京", "ภาษา", "week"] {
        let q = filtered(cond(EmailCondition::Text(text.into())));
        assert_eq!(
            back(&l, ids(&lite, l.a, &q).await),
            back(&p, ids(&pg, p.a, &q).await),
            "{text}"
        );
    }
    for key in [
        EmailSortKey::Subject,
        EmailSortKey::From,
        EmailSortKey::To,
        EmailSortKey::Size,
    ] {
        for collation in [
            Collation::UnicodeCasemap,
            Collation::AsciiCasemap,
            Collation::Octet,
        ] {
            let q = EmailQuery {
                sort: vec![EmailSort {
                    key: key.clone(),
                    ascending: true,
                    collation,
                }],
                ..EmailQuery::default()
            };
            assert_eq!(
                back(&l, ids(&lite, l.a, &q).await),
                back(&p, ids(&pg, p.a, &q).await),
                "{key:?} {collation:?}"
            );
        }
    }
}

/// 400 messages in one batch: "common" in 90 % of the bodies, "rare" in 1 %, "subj" in a
/// third of the subjects, received in a shuffled order.
fn many() -> MailboxChanges {
    let new = (1..=400u32)
        .map(|i| {
            let mut body = String::from("filler");
            if i % 10 != 0 {
                body.push_str(" common");
            }
            if i % 100 == 0 {
                body.push_str(" rare");
            }
            let subject = if i % 3 == 0 { "subj common" } else { "other" };
            let raw = plain(
                &format!("n{i}@x"),
                "a@example.org",
                "b@example.org",
                subject,
                "",
                &body,
            );
            let mut c = common::copy(i, raw.as_bytes(), &[]);
            c.internal_date = T0 + i64::from((i * 7919) % 401);
            c
        })
        .collect();
    MailboxChanges {
        new,
        ..MailboxChanges::new(UidValidity(7))
    }
}

/// With statistics, PostgreSQL tests a common word on each row walked instead of listing
/// its hits (`prefer_probe`): the pages are the same as SQLite's either way.
#[tokio::test]
async fn common_and_rare_words_page_the_same_on_both_backends() {
    let url = testkit::Postgres::shared()
        .expect("private PostgreSQL")
        .fresh_database()
        .expect("database");
    let pg = PgStore::connect(&url).await.expect("connect");
    let lite = common::sqlite();
    let la = common::account(&lite).await;
    let pa = common::account(&pg).await;
    lite.apply_mailbox_list(la, &[remote("INBOX", 7)])
        .await
        .expect("list");
    pg.apply_mailbox_list(pa, &[remote("INBOX", 7)])
        .await
        .expect("list");
    let linbox = common::mailbox(&lite, la, "INBOX").await;
    let pinbox = common::mailbox(&pg, pa, "INBOX").await;
    lite.apply_mailbox_changes(la, linbox, many())
        .await
        .expect("sqlite");
    pg.apply_mailbox_changes(pa, pinbox, many())
        .await
        .expect("pg");
    // The statistics autovacuum gathers after a sync.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("client");
    tokio::spawn(connection);
    client
        .batch_execute("ANALYZE email_text_head; ANALYZE email_text_body")
        .await
        .expect("analyze");
    let text = |t: &str| EmailFilter::Condition(EmailCondition::Text(t.into()));
    let filters = |inbox: MailboxId| {
        vec![
            text("common"),
            text("rare"),
            text("common subj"),
            text("common rare"),
            EmailFilter::And(vec![
                EmailFilter::Condition(EmailCondition::InMailbox(inbox)),
                text("common"),
            ]),
            EmailFilter::Or(vec![text("rare"), text("subj")]),
            EmailFilter::Not(vec![text("common")]),
        ]
    };
    for (lf, pf) in filters(linbox).into_iter().zip(filters(pinbox)) {
        for window in [Some((0, 1)), Some((0, 50)), Some((100, 20)), None] {
            let q = |f: EmailFilter| EmailQuery {
                filter: Some(f),
                window,
                count: true,
                ..EmailQuery::default()
            };
            let l = lite.query_emails(la, &q(lf.clone())).await.expect("sqlite");
            let p = pg.query_emails(pa, &q(pf.clone())).await.expect("pg");
            assert!(l.total.unwrap_or(0) > 0, "{lf:?} matches");
            assert_eq!(l, p, "{lf:?} {window:?}");
        }
    }
}
