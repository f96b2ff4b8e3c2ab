//! The submission queue on both backends: partial successes, crashes during an attempt,
//! refusals, delivery reports, what happens to the bytes; and on PostgreSQL, two nodes
//! racing to begin one submission or to give an account its first identity, and the queue
//! waking every node's worker.
//!
//! Whether a submission still holds its bytes is not part of the role (only what it
//! hands out is): [`RawView`] reads the row's `raw` column on a connection of the test's
//! own, as the store keeps it.

mod common;

use mail_types::{AccountId, EmailId, ThreadId};
use std::collections::HashSet;
use store::prelude::*;
use store::{
    AttemptResult, CancelOutcome, DeliveryEntry, DraftFate, IdentityRecord, NewSubmission, PgStore,
    SentCopy, SqliteStore, SubmissionPhase, SubmissionRecord,
};

/// The bytes a submission's row keeps (empty once dropped), and whether a blob is stored.
trait RawView {
    async fn raw(&self, id: i64) -> Vec<u8>;
    async fn has_blob(&self, id: &str) -> bool;
}

/// A SQLite store in a file, and a connection of the test's own to it.
struct Lite {
    c: rusqlite::Connection,
    _dir: tempfile::TempDir,
}

impl RawView for Lite {
    async fn raw(&self, id: i64) -> Vec<u8> {
        self.c
            .query_row("SELECT raw FROM submission WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .expect("raw")
    }

    async fn has_blob(&self, id: &str) -> bool {
        self.c
            .query_row("SELECT count(*) FROM blob WHERE id = ?1", [id], |r| {
                r.get::<_, i64>(0)
            })
            .expect("blob")
            > 0
    }
}

fn lite() -> (SqliteStore, Lite) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let s = SqliteStore::open(&path).expect("store");
    let c = rusqlite::Connection::open(&path).expect("connection");
    (s, Lite { c, _dir: dir })
}

/// A PostgreSQL store on a new database, and a plain client of the test's own to it.
struct Pg(tokio_postgres::Client);

impl RawView for Pg {
    async fn raw(&self, id: i64) -> Vec<u8> {
        self.0
            .query_one("SELECT raw FROM submission WHERE id = $1", &[&id])
            .await
            .expect("raw")
            .get(0)
    }

    async fn has_blob(&self, id: &str) -> bool {
        self.0
            .query_opt("SELECT 1 FROM blob WHERE id = $1", &[&id])
            .await
            .expect("blob")
            .is_some()
    }
}

async fn pg() -> (PgStore, Pg) {
    let url = testkit::Postgres::shared()
        .expect("private PostgreSQL")
        .fresh_database()
        .expect("database");
    let s = PgStore::connect(&url).await.expect("connect");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("client");
    tokio::spawn(connection);
    (s, Pg(client))
}

/// One test per backend for each check `async fn NAME(s, view)`.
macro_rules! on_both {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    let (s, v) = super::lite();
                    super::$check(&s, &v).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    let (s, v) = super::pg().await;
                    super::$check(&s, &v).await
                }
            )*
        }
    };
}

/// A submission of `account` to two recipients, due now, its Sent copy to be appended.
fn new_submission(account: AccountId) -> NewSubmission {
    NewSubmission {
        account,
        identity: 1,
        email: EmailId(1),
        thread: ThreadId(1),
        envelope_json: "{}".into(),
        mail_from: "a@x.org".into(),
        rcpt_to: vec!["a@y.org".into(), "b@d.test".into()],
        raw: b"From: a@x.org\r\n\r\nhi\r\n".to_vec(),
        blob_id: None,
        message_id: Some("m@x.org".into()),
        send_at: 0,
        sent_copy: SentCopy::Append,
        draft: DraftFate::Keep,
    }
}

async fn queue<S: Submissions>(s: &S, account: AccountId) -> i64 {
    s.create_submission(&new_submission(account))
        .await
        .expect("queue")
}

fn entry(email: &str, delivered: &str, reply: &str, settled: bool) -> DeliveryEntry {
    DeliveryEntry {
        email: email.into(),
        smtp_reply: reply.into(),
        delivered: delivered.into(),
        settled,
    }
}

async fn row<S: Submissions>(
    s: &S,
    v: &impl RawView,
    account: AccountId,
    id: i64,
) -> (SubmissionRecord, Vec<u8>) {
    let rec = s
        .submissions(account)
        .await
        .expect("submissions")
        .into_iter()
        .find(|s| s.id == id)
        .expect("the submission");
    (rec, v.raw(id).await)
}

async fn a_partial_success_makes_the_sent_copy_due_and_a_crash_keeps_what_was_settled<
    S: Directory + Submissions,
>(
    s: &S,
    v: &impl RawView,
) {
    let a = common::account(s).await;
    let id = queue(s, a).await;
    assert!(s.begin_submission(id).await.expect("begin").is_some());
    let delivery = vec![
        entry("a@y.org", "queued", "250 ok", true),
        entry("b@d.test", "queued", "451 later", false),
    ];
    let retry = AttemptResult::Retry {
        next_attempt: 5,
        delivery,
        error: String::new(),
    };
    s.finish_submission(id, &retry).await.expect("finish");
    let (sub, raw) = row(s, v, a, id).await;
    assert_eq!(sub.phase, SubmissionPhase::Queued);
    assert_eq!(
        sub.sent_copy,
        SentCopy::Due,
        "someone has it: the copy is due now"
    );
    assert!(!raw.is_empty(), "the retry needs the bytes");
    assert_eq!(s.pending_sent_copies(a).await.expect("pending").len(), 1);
    s.set_sent_copy_done(id).await.expect("copy done");
    assert!(
        !row(s, v, a, id).await.1.is_empty(),
        "still queued: bytes kept"
    );
    // The retry is cut by a crash: only the deferred recipient becomes unknown.
    assert!(s.begin_submission(id).await.expect("begin").is_some());
    assert_eq!(s.recover_submissions(a).await.expect("recover"), vec![id]);
    let (sub, raw) = row(s, v, a, id).await;
    assert_eq!(sub.phase, SubmissionPhase::Done);
    assert_eq!(sub.delivery[0].smtp_reply, "250 ok");
    assert_eq!(sub.delivery[1].delivered, "unknown");
    assert_eq!(sub.sent_copy, SentCopy::Done);
    assert!(raw.is_empty());
    // A report applies once.
    let bounce = [entry("A@y.org", "no", "550 gone", true)];
    assert!(s.apply_dsn(a, id, "blob1", &bounce).await.expect("dsn"));
    assert!(!s.apply_dsn(a, id, "blob1", &bounce).await.expect("dsn"));
    let other = AccountId(a.0 + 1);
    assert!(!s.apply_dsn(other, id, "blob2", &bounce).await.expect("dsn"));
    let (sub, _) = row(s, v, a, id).await;
    assert_eq!(sub.delivery[0].delivered, "no");
    assert_eq!(sub.delivery[0].smtp_reply, "550 gone");
    assert_eq!(sub.dsn_blob_ids, vec!["blob1".to_owned()]);
}

async fn unknown_after_a_crash_gets_a_sent_copy_and_a_refusal_none<S: Directory + Submissions>(
    s: &S,
    v: &impl RawView,
) {
    let a = common::account(s).await;
    let cut = queue(s, a).await;
    assert!(s.begin_submission(cut).await.expect("begin").is_some());
    s.recover_submissions(a).await.expect("recover");
    let (sub, raw) = row(s, v, a, cut).await;
    assert!(sub.delivery.iter().all(|d| d.delivered == "unknown"));
    assert_eq!(sub.sent_copy, SentCopy::Due);
    assert!(!raw.is_empty(), "the copy is made from the bytes");
    let refused = queue(s, a).await;
    assert!(s.begin_submission(refused).await.expect("begin").is_some());
    let fin = AttemptResult::Final {
        delivery: vec![
            entry("a@y.org", "no", "550 no", true),
            entry("b@d.test", "no", "550 no", true),
        ],
        error: "every recipient was refused".into(),
    };
    s.finish_submission(refused, &fin).await.expect("finish");
    let (sub, raw) = row(s, v, a, refused).await;
    assert_eq!(sub.sent_copy, SentCopy::None);
    // Not sent: the message goes back to Drafts, made from these bytes.
    assert_eq!(sub.draft, DraftFate::Restore);
    assert!(!raw.is_empty());
    let followups: Vec<i64> = s
        .draft_followups(10, &[a])
        .await
        .expect("followups")
        .into_iter()
        .map(|(s, _)| s.id)
        .collect();
    assert_eq!(followups, vec![refused]);
    s.set_draft_done(refused).await.expect("draft done");
    assert!(
        row(s, v, a, refused).await.1.is_empty(),
        "restored: bytes dropped"
    );
    let pending: Vec<i64> = s
        .pending_sent_copies(a)
        .await
        .expect("pending")
        .into_iter()
        .map(|(s, _)| s.id)
        .collect();
    assert_eq!(pending, vec![cut]);
}

/// What the JMAP side writes: a reschedule and a cancel only before the attempt, a
/// destroy never during one, the first identity given once and never deletable, the Sent
/// copy policy. The queue is read per account (those a node holds).
async fn cancel_destroy_and_identities<S: Directory + Submissions>(s: &S, v: &impl RawView) {
    let a = common::account(s).await;
    let canceled = queue(s, a).await;
    let sending = queue(s, a).await;
    let due = async |now: i64, accounts: &[AccountId]| {
        s.due_submissions(now, 10, accounts)
            .await
            .expect("due")
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(due(i64::MAX, &[a]).await, [canceled, sending]);
    let elsewhere = [AccountId(a.0 + 1)];
    assert!(
        due(i64::MAX, &elsewhere).await.is_empty(),
        "not this node's"
    );
    assert_eq!(s.next_submission_at(&elsewhere).await.expect("next"), None);
    assert!(
        s.reschedule_submission(a, sending, 100)
            .await
            .expect("reschedule")
    );
    assert_eq!(due(99, &[a]).await, [canceled]);
    assert_eq!(due(100, &[a]).await, [canceled, sending]);
    assert!(
        !s.reschedule_submission(elsewhere[0], sending, 0)
            .await
            .expect("reschedule"),
        "not that account's"
    );
    assert!(s.reschedule_submission(a, sending, 0).await.expect("back"));
    assert_eq!(s.next_submission_at(&[a]).await.expect("next"), Some(0));
    assert_eq!(
        s.cancel_submission(a, canceled).await.expect("cancel"),
        CancelOutcome::Canceled
    );
    let (sub, raw) = row(s, v, a, canceled).await;
    assert_eq!(sub.phase, SubmissionPhase::Done);
    assert!(sub.delivery.iter().all(|d| d.delivered == "no"));
    assert_eq!(sub.draft, DraftFate::Restore);
    assert!(!raw.is_empty(), "the draft is restored from the bytes");
    assert_eq!(
        s.begin_submission(canceled).await.expect("begin"),
        None,
        "a canceled submission is not sent"
    );
    assert!(s.begin_submission(sending).await.expect("begin").is_some());
    assert!(
        !s.reschedule_submission(a, sending, 100)
            .await
            .expect("reschedule"),
        "being sent: too late"
    );
    assert_eq!(
        s.cancel_submission(a, sending).await.expect("cancel"),
        CancelOutcome::TooLate
    );
    assert_eq!(
        s.cancel_submission(AccountId(a.0 + 1), sending)
            .await
            .expect("cancel"),
        CancelOutcome::NotFound
    );
    assert!(!s.destroy_submission(a, sending).await.expect("destroy"));
    assert!(s.destroy_submission(a, canceled).await.expect("destroy"));
    assert!(!s.destroy_submission(a, canceled).await.expect("destroy"));
    assert_eq!(s.next_submission_at(&[a]).await.expect("next"), None);

    s.ensure_identity(a, "me@x.org").await.expect("ensure");
    s.ensure_identity(a, "other@x.org").await.expect("ensure");
    let ids = s.identities(a).await.expect("identities");
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(
        (ids[0].email.as_str(), ids[0].may_delete),
        ("me@x.org", false)
    );
    assert!(!s.destroy_identity(a, ids[0].id).await.expect("destroy"));
    let second = IdentityRecord {
        id: 0,
        account: a,
        name: "Me".into(),
        email: "me2@x.org".into(),
        reply_to: "null".into(),
        bcc: "null".into(),
        text_signature: "--".into(),
        html_signature: String::new(),
        may_delete: false,
    };
    let id2 = s.create_identity(&second).await.expect("create");
    assert!(
        s.update_identity(&IdentityRecord {
            id: id2,
            name: "Me too".into(),
            email: "ignored@x.org".into(),
            ..second.clone()
        })
        .await
        .expect("update")
    );
    let stored = s.identities(a).await.expect("identities");
    assert_eq!(stored.len(), 2);
    assert_eq!(
        (
            stored[1].name.as_str(),
            stored[1].email.as_str(),
            stored[1].may_delete
        ),
        ("Me too", "me2@x.org", true)
    );
    assert!(s.destroy_identity(a, id2).await.expect("destroy"));
    assert!(
        !s.update_identity(&IdentityRecord { id: id2, ..second })
            .await
            .expect("update")
    );

    assert!(!s.server_files_sent(a).await.expect("policy"));
    s.set_server_files_sent(a, true).await.expect("policy");
    assert!(s.server_files_sent(a).await.expect("policy"));
    s.set_server_files_sent(a, false).await.expect("policy");
    assert!(!s.server_files_sent(a).await.expect("policy"));
}

/// A submission queued with its message's blob names it instead of holding the bytes
/// twice, keeps it while it may still send it (the upload that brought it expired), and
/// lets it go once sent.
async fn a_submission_keeps_its_blob_until_sent<S: Directory + Uploads + Submissions>(
    s: &S,
    v: &impl RawView,
) {
    let a = common::account(s).await;
    let message = b"From: a@x.org\r\nSubject: kept\r\n\r\nthe exact bytes\r\n".to_vec();
    let upload = s
        .put_upload(a, "message/rfc822", message.clone())
        .await
        .expect("upload");
    let id = s
        .create_submission(&NewSubmission {
            raw: message.clone(),
            blob_id: Some(upload.blob_id.clone()),
            sent_copy: SentCopy::None,
            ..new_submission(a)
        })
        .await
        .expect("queue");
    assert!(v.raw(id).await.is_empty(), "the bytes are the blob's");
    assert_eq!(s.expire_uploads(i64::MAX).await.expect("expire"), 1);
    assert!(v.has_blob(&upload.blob_id).await, "the submission needs it");
    assert_eq!(
        s.begin_submission(id).await.expect("begin"),
        Some(message),
        "the submission sends its exact bytes"
    );
    let sent = AttemptResult::Final {
        delivery: vec![
            entry("a@y.org", "queued", "250 ok", true),
            entry("b@d.test", "queued", "250 ok", true),
        ],
        error: String::new(),
    };
    s.finish_submission(id, &sent).await.expect("finish");
    assert!(
        !v.has_blob(&upload.blob_id).await,
        "sent, nothing else to make of it: the blob goes"
    );
}

on_both!(
    a_submission_keeps_its_blob_until_sent,
    a_partial_success_makes_the_sent_copy_due_and_a_crash_keeps_what_was_settled,
    unknown_after_a_crash_gets_a_sent_copy_and_a_refusal_none,
    cancel_destroy_and_identities,
);

/// Two nodes begin the same due submissions at the same moment: each is begun by exactly
/// one of them (the attempt is a compare-and-set), and counted as one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_to_begin_a_submission_begin_it_once() {
    const N: usize = 20;
    let pg = testkit::Postgres::shared().expect("private PostgreSQL");
    let (_, a, b) = common::two_nodes(pg).await;
    let account = common::account(&a).await;
    let mut ids = Vec::with_capacity(N);
    for _ in 0..N {
        ids.push(queue(&a, account).await);
    }
    let begin_all = |s: PgStore, ids: Vec<i64>| async move {
        let mut won = HashSet::new();
        for id in ids {
            if s.begin_submission(id).await.expect("begin").is_some() {
                won.insert(id);
            }
        }
        won
    };
    let (on_a, on_b) = tokio::join!(
        tokio::spawn(begin_all(a.clone(), ids.clone())),
        tokio::spawn(begin_all(b.clone(), ids.clone()))
    );
    let (on_a, on_b) = (on_a.expect("node a"), on_b.expect("node b"));
    assert!(
        on_a.is_disjoint(&on_b),
        "begun by both: {:?}",
        on_a.intersection(&on_b)
    );
    assert_eq!(on_a.len() + on_b.len(), N, "begun by neither");
    for s in a.submissions(account).await.expect("submissions") {
        assert_eq!(
            (s.phase, s.attempts),
            (SubmissionPhase::Sending, 1),
            "{}",
            s.id
        );
    }
}

/// A submission queued (or canceled: its draft goes back) through one node wakes the
/// submission worker of every node, at once.
#[tokio::test]
async fn queuing_on_one_node_wakes_the_submission_worker_of_every_node() {
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(5);
    let pg = testkit::Postgres::shared().expect("private PostgreSQL");
    let (_, a, b) = common::two_nodes(pg).await;
    let account = common::account(&a).await;
    let (mut on_a, mut on_b) = (a.submission_signal(), b.submission_signal());
    let id = queue(&a, account).await;
    for (node, rx) in [("a", &mut on_a), ("b", &mut on_b)] {
        tokio::time::timeout(WITHIN, rx.changed())
            .await
            .unwrap_or_else(|_| panic!("node {node}'s worker not woken"))
            .expect("signal open");
        rx.mark_unchanged();
    }
    assert_eq!(
        b.cancel_submission(account, id).await.expect("cancel"),
        CancelOutcome::Canceled
    );
    for (node, rx) in [("a", &mut on_a), ("b", &mut on_b)] {
        tokio::time::timeout(WITHIN, rx.changed())
            .await
            .unwrap_or_else(|_| panic!("node {node}'s worker not woken by the cancel"))
            .expect("signal open");
    }
}

/// The figures of BENCHMARKS.md ("The send queue on PostgreSQL beside SQLite"): one
/// submission at a time through the queue's three commits (queued by EmailSubmission/set,
/// begun by the worker before its SMTP transaction, finished with the reply), on both
/// backends in one run. Bounded: `ROUNDS` submissions per backend.
#[tokio::test]
#[ignore = "a measurement: cargo test --release -p store --test submission -- --ignored --nocapture send_queue_latency"]
async fn send_queue_latency() {
    const ROUNDS: usize = 300;
    async fn run<S: Directory + Submissions>(s: &S) -> [Vec<std::time::Duration>; 3] {
        let a = common::account(s).await;
        let mut times: [Vec<std::time::Duration>; 3] = Default::default();
        let sent = AttemptResult::Final {
            delivery: vec![
                entry("a@y.org", "queued", "250 ok", true),
                entry("b@d.test", "queued", "250 ok", true),
            ],
            error: String::new(),
        };
        for _ in 0..ROUNDS {
            let t = std::time::Instant::now();
            let id = queue(s, a).await;
            times[0].push(t.elapsed());
            let t = std::time::Instant::now();
            assert!(s.begin_submission(id).await.expect("begin").is_some());
            times[1].push(t.elapsed());
            let t = std::time::Instant::now();
            s.finish_submission(id, &sent).await.expect("finish");
            times[2].push(t.elapsed());
        }
        times
    }
    fn pct(v: &mut [std::time::Duration], p: usize) -> f64 {
        v.sort_unstable();
        v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1000.0
    }
    let (lite_store, _lite) = lite();
    let (pg_store, _pg) = pg().await;
    let mut sqlite = run(&lite_store).await;
    let mut postgres = run(&pg_store).await;
    for (i, step) in ["create", "begin", "finish"].iter().enumerate() {
        println!(
            "{step:>6}: SQLite p50 {:.2} ms p99 {:.2} ms | PostgreSQL p50 {:.2} ms p99 {:.2} ms",
            pct(&mut sqlite[i], 50),
            pct(&mut sqlite[i], 99),
            pct(&mut postgres[i], 50),
            pct(&mut postgres[i], 99),
        );
    }
}

/// Two nodes giving the same accounts their first identity at the same moment (each
/// node's JMAP session does it on first use): every account gets exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_give_an_account_one_first_identity() {
    const N: usize = 20;
    let pg = testkit::Postgres::shared().expect("private PostgreSQL");
    let (_, a, b) = common::two_nodes(pg).await;
    let u = a.create_user("u", "h").await.expect("user");
    let mut accounts = Vec::with_capacity(N);
    for i in 0..N {
        let new = common::new_account(u, &format!("a{i}"));
        accounts.push(a.create_account(&new).await.expect("account"));
    }
    let ensure_all = |s: PgStore, accounts: Vec<AccountId>| async move {
        for account in accounts {
            s.ensure_identity(account, "me@x.org")
                .await
                .expect("ensure");
        }
    };
    let (on_a, on_b) = tokio::join!(
        tokio::spawn(ensure_all(a.clone(), accounts.clone())),
        tokio::spawn(ensure_all(b.clone(), accounts.clone()))
    );
    on_a.expect("node a");
    on_b.expect("node b");
    for account in accounts {
        assert_eq!(a.identities(account).await.expect("identities").len(), 1);
    }
}
