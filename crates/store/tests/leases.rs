//! Account leases: one holder per account, fair shares between nodes, a silent node's
//! accounts taken over after the time-to-live with a higher epoch, and a paused node's
//! write under its lost lease refused with nothing written (a quota, the sending of a
//! submission).

mod common;

use common::on_both_backends;
use common::quota;
use mail_types::{AccountId, UserId};
use std::collections::HashSet;
use std::time::Duration;
use store::prelude::*;
use store::{Error, Lease, PgStore};
use testkit::Postgres;

const LONG: Duration = Duration::from_secs(60);

/// What every backend does: a lease is granted, renewed, released and granted again
/// under an epoch not below the first (SQLite: the one node always holds everything).
async fn grant_renew_release<S: Directory + Leases>(s: &S) {
    let account = common::account(s).await;
    assert_eq!(s.heartbeat("n1", LONG).await.expect("heartbeat"), 1);
    let lease = s
        .acquire("n1", account, LONG)
        .await
        .expect("acquire")
        .expect("granted");
    assert_eq!(lease.account, account);
    assert!(s.renew("n1", lease, LONG).await.expect("renew"));
    s.release("n1", lease).await.expect("release");
    let again = s
        .acquire("n1", account, LONG)
        .await
        .expect("acquire")
        .expect("granted again");
    assert!(again.epoch >= lease.epoch);
}

on_both_backends!(grant_renew_release);

fn db(url: &str) -> &str {
    url.rsplit('/').next().expect("database name")
}

/// `n` accounts of a new user `user`, made through `s`.
async fn accounts(s: &PgStore, user: &str, n: usize) -> Vec<AccountId> {
    let user = s.create_user(user, "h").await.expect("user");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let new = common::new_account(user, &format!("a{i}"));
        out.push(s.create_account(&new).await.expect("account"));
    }
    out
}

/// Asks for every account once, in order; the leases granted.
async fn take_all(s: &PgStore, node: &str, accounts: &[AccountId], ttl: Duration) -> Vec<Lease> {
    let mut got = Vec::new();
    for &a in accounts {
        if let Some(l) = s.acquire(node, a, ttl).await.expect("acquire") {
            got.push(l);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_thirty_accounts_evenly() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (url, a, b) = common::two_nodes(pg).await;
    let all = accounts(&a, "u", 30).await;
    a.heartbeat("a", LONG).await.expect("heartbeat a");
    assert_eq!(b.heartbeat("b", LONG).await.expect("heartbeat b"), 2);
    // Both at once, in the same order: they compete for every account.
    let (on_a, on_b) = tokio::join!(take_all(&a, "a", &all, LONG), take_all(&b, "b", &all, LONG));
    let ids = |ls: &[Lease]| ls.iter().map(|l| l.account).collect::<HashSet<_>>();
    let (ids_a, ids_b) = (ids(&on_a), ids(&on_b));
    assert!(ids_a.is_disjoint(&ids_b), "an account granted to both");
    assert_eq!(
        ids_a.len() + ids_b.len(),
        30,
        "an account granted to neither"
    );
    let share = 30usize.div_ceil(2) + store::leases::SHARE_SLACK;
    assert!(
        ids_a.len() <= share && ids_b.len() <= share,
        "uneven: {} and {}",
        ids_a.len(),
        ids_b.len()
    );
    // The table says the same, independently.
    let held = pg
        .psql(
            db(&url),
            "SELECT string_agg(node || '=' || n, ',' ORDER BY node) FROM \
             (SELECT node, count(*) AS n FROM account_lease WHERE expires_at > now() \
              GROUP BY node) t",
        )
        .expect("leases");
    assert_eq!(held, format!("a={},b={}", ids_a.len(), ids_b.len()));
}

#[tokio::test]
async fn a_silent_node_s_accounts_are_taken_over_with_a_higher_epoch() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (_, a, b) = common::two_nodes(pg).await;
    let all = accounts(&a, "u", 4).await;
    let ttl = Duration::from_secs(2);
    a.heartbeat("a", ttl).await.expect("heartbeat a");
    let held = take_all(&a, "a", &all, ttl).await;
    assert_eq!(held.len(), 4, "a single live node takes every account");
    b.heartbeat("b", LONG).await.expect("heartbeat b");

    // Renewed in time, the leases last past their first time-to-live.
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.heartbeat("a", ttl).await.expect("heartbeat a");
    for l in &held {
        assert!(a.renew("a", *l, ttl).await.expect("renew"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(take_all(&b, "b", &all, LONG).await.is_empty(), "still a's");

    // Node a goes silent: once its leases ran out, b takes every account over.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let taken = take_all(&b, "b", &all, LONG).await;
    assert_eq!(taken.len(), 4, "b takes over every account of a");
    for (old, new) in held.iter().zip(&taken) {
        assert_eq!(old.account, new.account);
        assert!(new.epoch > old.epoch, "{old:?} then {new:?}");
        assert!(
            !a.renew("a", *old, ttl).await.expect("renew"),
            "a lost {old:?}"
        );
    }
    assert!(take_all(&a, "a", &all, ttl).await.is_empty(), "now b's");
}

/// Two nodes on a new database (its URL, a, b), an account leased to a for a second,
/// that lease, a's store fenced with it, and the lease's time-to-live.
async fn leased_to_a(
    pg: &Postgres,
) -> (
    String,
    PgStore,
    PgStore,
    AccountId,
    Lease,
    PgStore,
    Duration,
) {
    let (url, a, b) = common::two_nodes(pg).await;
    let account = accounts(&a, "u", 1).await[0];
    let ttl = Duration::from_secs(1);
    let lease = a
        .acquire("a", account, ttl)
        .await
        .expect("acquire")
        .expect("granted");
    let on_a = a.fenced("a", lease);
    (url, a, b, account, lease, on_a, ttl)
}

#[tokio::test]
async fn a_paused_node_writes_nothing_under_a_lost_lease() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (url, _, b, account, lease, on_a, ttl) = leased_to_a(pg).await;
    // While the lease runs, a's writes land.
    assert!(on_a.apply_quotas(account, &quota(1)).await.expect("write"));
    let before = |what: &str| {
        pg.psql(
            db(&url),
            "SELECT a.state || ' ' || string_agg(q.used::text, ',') FROM account a \
             JOIN quota q ON q.account_id = a.id GROUP BY a.state",
        )
        .expect(what)
    };
    let written = before("state and quota");

    // a is paused past its lease: refused, even before anyone took the account.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let err = on_a.apply_quotas(account, &quota(2)).await;
    assert!(
        matches!(err, Err(Error::Fenced { epoch, .. }) if epoch == lease.epoch),
        "{err:?}"
    );
    // b takes the account over; a wakes up and writes: refused, nothing changed.
    let taken = b
        .acquire("b", account, LONG)
        .await
        .expect("acquire")
        .expect("taken over");
    assert!(taken.epoch > lease.epoch);
    let err = on_a.apply_quotas(account, &quota(3)).await;
    assert!(matches!(err, Err(Error::Fenced { .. })), "{err:?}");
    assert_eq!(before("state and quota"), written);
    // A lease is for its own account only.
    let other = accounts(&b, "v", 1).await;
    let err = b.fenced("b", taken).apply_quotas(other[0], &quota(4)).await;
    assert!(matches!(err, Err(Error::Fenced { .. })), "{err:?}");
    // The new holder writes.
    assert!(
        b.fenced("b", taken)
            .apply_quotas(account, &quota(5))
            .await
            .expect("write")
    );
    assert_ne!(before("state and quota"), written);
}

/// A due submission of `account` to one recipient, its Sent copy and the draft's
/// destruction to follow once sent.
fn submission(account: AccountId, n: u32) -> store::NewSubmission {
    store::NewSubmission {
        account,
        identity: 1,
        email: mail_types::EmailId(i64::from(n)),
        thread: mail_types::ThreadId(i64::from(n)),
        envelope_json: "{}".into(),
        mail_from: "a@example.org".into(),
        rcpt_to: vec!["b@example.org".into()],
        raw: format!("From: a@example.org\r\nSubject: {n}\r\n\r\nhi\r\n").into_bytes(),
        blob_id: None,
        message_id: Some(format!("m{n}@example.org")),
        send_at: 0,
        sent_copy: store::SentCopy::Append,
        draft: store::DraftFate::DestroyWhenSent,
    }
}

fn accepted() -> store::AttemptResult {
    store::AttemptResult::Final {
        delivery: vec![store::DeliveryEntry {
            email: "b@example.org".into(),
            smtp_reply: "250 2.0.0 Ok".into(),
            delivered: "queued".into(),
            settled: true,
        }],
        error: String::new(),
    }
}

fn fenced<T: std::fmt::Debug>(r: store::Result<T>, lease: Lease) {
    assert!(
        matches!(r, Err(Error::Fenced { epoch, .. }) if epoch == lease.epoch),
        "{r:?}"
    );
}

/// The sending side of fencing: a node paused past its lease can neither finish the
/// attempt it began nor begin another, nor file what follows (nothing changes); a node
/// starting up leaves a live attempt alone; the new holder makes the cut attempt final
/// (never sent again) and sends the rest.
#[tokio::test]
async fn a_node_that_lost_its_lease_cannot_begin_or_finish_a_submission() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (url, a, b, account, lease, on_a, ttl) = leased_to_a(pg).await;
    let first = a
        .create_submission(&submission(account, 1))
        .await
        .expect("queue");
    let second = a
        .create_submission(&submission(account, 2))
        .await
        .expect("queue");
    assert!(on_a.begin_submission(first).await.expect("begin").is_some());
    // Another node starting up now must not take a's attempt for a cut one.
    assert_eq!(
        b.recover_submissions(account).await.expect("recover"),
        Vec::<i64>::new()
    );

    let state = || {
        pg.psql(db(&url), "SELECT state FROM account")
            .expect("state")
    };
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let (state_then, queue_then) = (state(), b.submissions(account).await.expect("queue"));
    fenced(on_a.finish_submission(first, &accepted()).await, lease);
    fenced(on_a.begin_submission(second).await, lease);
    let taken = b
        .acquire("b", account, LONG)
        .await
        .expect("acquire")
        .expect("taken over");
    assert!(taken.epoch > lease.epoch);
    fenced(on_a.finish_submission(first, &accepted()).await, lease);
    fenced(on_a.begin_submission(second).await, lease);
    fenced(on_a.recover_submissions(account).await, lease);
    assert_eq!(state(), state_then);
    assert_eq!(b.submissions(account).await.expect("queue"), queue_then);

    // The new holder: a's attempt may have reached the server, so it is final with its
    // recipient unknown and is never begun again; the other is b's to send.
    let on_b = b.fenced("b", taken);
    assert_eq!(
        on_b.recover_submissions(account).await.expect("recover"),
        vec![first]
    );
    assert_eq!(on_b.begin_submission(first).await.expect("begin"), None);
    let cut = &b.submissions(account).await.expect("queue")[0];
    assert_eq!(cut.phase, store::SubmissionPhase::Done);
    assert_eq!(cut.delivery[0].delivered, "unknown");
    assert_eq!(cut.attempts, 1);
    assert!(
        on_b.begin_submission(second)
            .await
            .expect("begin")
            .is_some()
    );
    on_b.finish_submission(second, &accepted())
        .await
        .expect("finish");

    // What follows a send is the holder's too: the Sent copy, the draft, the reports.
    let (state_then, queue_then) = (state(), b.submissions(account).await.expect("queue"));
    fenced(on_a.set_sent_copy_done(first).await, lease);
    fenced(
        on_a.apply_dsn(account, first, "report", &accepted_entries())
            .await,
        lease,
    );
    assert_eq!(state(), state_then);
    assert_eq!(b.submissions(account).await.expect("queue"), queue_then);
    on_b.set_sent_copy_done(first).await.expect("copy done");
    let followups = on_b
        .draft_followups(10, &[account])
        .await
        .expect("followups");
    assert_eq!(followups[0].0.id, first, "{followups:?}");
    fenced(on_a.set_draft_done(first).await, lease);
    on_b.set_draft_done(first).await.expect("draft done");
    let done = &b.submissions(account).await.expect("queue");
    assert_eq!(
        done.iter()
            .map(|s| (s.id, s.phase, s.sent_copy, s.draft))
            .collect::<Vec<_>>(),
        [
            (
                first,
                store::SubmissionPhase::Done,
                store::SentCopy::Done,
                store::DraftFate::Done
            ),
            (
                second,
                store::SubmissionPhase::Done,
                store::SentCopy::Due,
                store::DraftFate::Destroy
            ),
        ]
    );
}

fn accepted_entries() -> Vec<store::DeliveryEntry> {
    match accepted() {
        store::AttemptResult::Final { delivery, .. } => delivery,
        store::AttemptResult::Retry { delivery, .. } => delivery,
    }
}

/// A node's beat: the accounts worth asking for are those no node holds, and renewing a
/// node's holding in one call keeps exactly the leases it still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_accounts_and_renew_all_follow_the_leases() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (_url, a, b) = common::two_nodes(pg).await;
    assert!(a.shared());
    let ids = accounts(&a, "beat", 4).await;
    a.heartbeat("a", LONG).await.expect("heartbeat");
    b.heartbeat("b", LONG).await.expect("heartbeat");
    assert_eq!(a.free_accounts().await.expect("free"), ids);
    let short = Duration::from_secs(1);
    let held_a = take_all(&a, "a", &ids[..2], short).await;
    let held_b = take_all(&b, "b", &ids[2..3], LONG).await;
    assert_eq!((held_a.len(), held_b.len()), (2, 1));
    assert_eq!(b.free_accounts().await.expect("free"), vec![ids[3]]);
    // b renews its own lease and a's: only its own is renewed.
    let mut mixed = held_b.clone();
    mixed.extend(held_a.iter().copied());
    assert_eq!(b.renew_all("b", &mixed, LONG).await.expect("renew"), held_b);
    // a's leases run out: free again, and a's renewal keeps nothing.
    tokio::time::sleep(short + Duration::from_millis(300)).await;
    let mut free = b.free_accounts().await.expect("free");
    free.sort_by_key(|x| x.0);
    assert_eq!(free, vec![ids[0], ids[1], ids[3]]);
    assert!(
        a.renew_all("a", &held_a, LONG)
            .await
            .expect("renew")
            .is_empty()
    );
    assert!(a.renew_all("a", &[], LONG).await.expect("renew").is_empty());
}

/// One node (SQLite): every account is free for it and renewals keep everything.
#[tokio::test]
async fn a_single_node_store_holds_everything_for_good() {
    let s = common::sqlite();
    assert!(!s.shared());
    let account = common::account(&s).await;
    assert_eq!(s.free_accounts().await.expect("free"), vec![account]);
    let lease = s
        .acquire("n", account, LONG)
        .await
        .expect("acquire")
        .expect("granted");
    assert_eq!(
        s.renew_all("n", &[lease], LONG).await.expect("renew"),
        vec![lease]
    );
}

/// The outbox's replay is the lease holder's work: a node paused past its lease can
/// neither count an attempt, nor record an error, a completion or a refusal, and nothing
/// changes; the new holder's completion lands.
#[tokio::test]
async fn a_paused_node_cannot_settle_outbox_entries_under_a_lost_lease() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (url, a, b) = common::two_nodes(pg).await;
    let account = accounts(&a, "u", 1).await[0];
    a.apply_mailbox_list(account, &[common::remote("INBOX", 7)])
        .await
        .expect("list");
    let inbox = common::mailbox(&a, account, "INBOX").await;
    let raw = common::msg("m1@x", &[], "hello");
    a.apply_mailbox_changes(
        account,
        inbox,
        store::MailboxChanges {
            new: vec![common::copy(1, &raw, &[])],
            ..store::MailboxChanges::new(mail_types::UidValidity(7))
        },
    )
    .await
    .expect("seed");
    let email = pg
        .psql(db(&url), "SELECT email_id FROM copy")
        .expect("email");
    let email = mail_types::EmailId(email.parse().expect("an id"));
    // The user's change, through any node: queued.
    let r = b
        .update_emails(
            account,
            vec![store::EmailPatch {
                email,
                keywords_add: vec!["$seen".into()],
                keywords_remove: vec![],
                mailboxes_add: vec![],
                mailboxes_remove: vec![],
            }],
        )
        .await
        .expect("update");
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    let ttl = Duration::from_secs(1);
    let lease = a
        .acquire("a", account, ttl)
        .await
        .expect("acquire")
        .expect("granted");
    let on_a = a.fenced("a", lease);
    let entry = on_a.outbox_next(account, 10).await.expect("next")[0].clone();
    // While the lease runs, a's worker records its attempt.
    assert!(on_a.outbox_begin(entry.id, None).await.expect("begin"));
    let outbox = || {
        pg.psql(
            db(&url),
            "SELECT string_agg(id || ':' || attempts || ':' || last_error, ',') FROM outbox",
        )
        .expect("outbox rows")
    };
    let state = || {
        pg.psql(db(&url), "SELECT state FROM account")
            .expect("state")
    };
    let (rows, at) = (outbox(), state());

    // a is paused past its lease, b takes the account over, a wakes up: refused.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let taken = b
        .acquire("b", account, LONG)
        .await
        .expect("acquire")
        .expect("taken over");
    let done = store::OutboxDone {
        id: entry.id,
        rev: entry.rev,
        new_uid: None,
        raw_name: None,
        old_raw_name: None,
    };
    let fenced = |r: Result<(), Error>, what: &str| {
        assert!(matches!(r, Err(Error::Fenced { .. })), "{what}: {r:?}");
    };
    fenced(on_a.outbox_begin(entry.id, None).await.map(|_| ()), "begin");
    fenced(on_a.outbox_defer(entry.id, "timeout").await, "defer");
    fenced(
        on_a.outbox_complete(account, vec![done.clone()]).await,
        "complete",
    );
    fenced(on_a.outbox_refuse(account, entry.id, "NO").await, "refuse");
    assert_eq!((outbox(), state()), (rows, at), "nothing changed");

    // The new holder completes it.
    b.fenced("b", taken)
        .outbox_complete(account, vec![done])
        .await
        .expect("complete");
    assert_eq!(outbox(), "", "the entry is done");
}

/// Each node learns which users look from the other nodes: what one node says it has
/// replaces what it said before, and a node that stops saying anything (dead) is forgotten
/// once its rows' time runs out.
#[tokio::test]
async fn nodes_share_who_has_a_push_client() {
    let pg = testkit::Postgres::shared().expect("private PostgreSQL");
    let (_url, a, b) = common::two_nodes(pg).await;
    let ttl = Duration::from_secs(60);
    let sorted = |mut v: Vec<UserId>| {
        v.sort();
        v
    };
    assert!(
        a.share_presence("a", &[UserId(1), UserId(2)], ttl)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        sorted(b.share_presence("b", &[UserId(3)], ttl).await.unwrap()),
        vec![UserId(1), UserId(2)]
    );
    assert_eq!(
        a.share_presence("a", &[UserId(2)], ttl).await.unwrap(),
        vec![UserId(3)]
    );
    assert_eq!(
        b.share_presence("b", &[], ttl).await.unwrap(),
        vec![UserId(2)]
    );
    assert!(
        a.share_presence("a", &[UserId(2)], ttl)
            .await
            .unwrap()
            .is_empty()
    );
    // Node b's rows go by themselves when it stops renewing them.
    b.share_presence("b", &[UserId(4)], Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        a.share_presence("a", &[], ttl).await.unwrap(),
        vec![UserId(4)]
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(a.share_presence("a", &[], ttl).await.unwrap().is_empty());
    // One node alone (SQLite) has nobody elsewhere.
    let s = common::sqlite();
    assert!(
        s.share_presence("a", &[UserId(1)], ttl)
            .await
            .unwrap()
            .is_empty()
    );
}
