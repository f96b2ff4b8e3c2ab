//! The bus across nodes on PostgreSQL (LISTEN/NOTIFY): a change committed on one node is
//! announced on every node, and a node whose listening connection was lost (its backend
//! terminated, the server restarted) announces what it missed once it listens again.

mod common;

use common::quota;
use mail_types::{AccountId, State};
use std::time::Duration;
use store::events::{AccountChange, PushType, TypeSet};
use store::prelude::*;
use store::{MailboxChanges, NewCopy, PgStore, RemoteMailbox};
use testkit::Postgres;
use tokio::sync::broadcast;

/// The longest a change may take to arrive (a reconnection's backoff included).
const WAIT: Duration = Duration::from_secs(30);

async fn next(rx: &mut broadcast::Receiver<AccountChange>) -> AccountChange {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a change within the wait")
        .expect("the bus is open")
}

fn db(url: &str) -> &str {
    url.rsplit('/').next().expect("database name")
}

/// The account's state as committed, read by psql.
fn committed_state(pg: &Postgres, url: &str, account: AccountId) -> State {
    let s = pg
        .psql(
            db(url),
            &format!("SELECT state FROM account WHERE id = {}", account.0),
        )
        .expect("state");
    State(s.parse().expect("a number"))
}

fn quota_only() -> TypeSet {
    [PushType::Quota].into_iter().collect()
}

/// Two nodes on a new database of `pg`, its URL, and an account made through the first.
async fn two_nodes(pg: &Postgres) -> (String, [PgStore; 2], AccountId) {
    let (url, a, b) = common::two_nodes(pg).await;
    let account = common::account(&a).await;
    (url, [a, b], account)
}

#[tokio::test]
async fn a_change_on_one_node_is_announced_on_every_node() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (url, [a, b], account) = two_nodes(pg).await;
    let (mut on_a, mut on_b) = (a.events().subscribe(), b.events().subscribe());
    for used in 1..=3 {
        assert!(a.apply_quotas(account, &quota(used)).await.expect("write"));
        let expected = AccountChange {
            account,
            state: committed_state(pg, &url, account),
            types: quota_only(),
        };
        assert_eq!(next(&mut on_b).await, expected, "on the other node");
        assert_eq!(next(&mut on_a).await, expected, "on the writing node");
    }
    // A write that changed nothing announces nothing: the next announcement is the next
    // state's.
    assert!(!a.apply_quotas(account, &quota(3)).await.expect("no-op"));
    assert!(b.apply_quotas(account, &quota(4)).await.expect("write"));
    let state = committed_state(pg, &url, account);
    assert_eq!(next(&mut on_a).await.state, state);
    assert_eq!(next(&mut on_b).await.state, state);
}

/// A change published by hand (a writer outside the change log) reaches every node too.
#[tokio::test]
async fn a_published_change_reaches_every_node() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (_, [a, b], account) = two_nodes(pg).await;
    let (mut on_a, mut on_b) = (a.events().subscribe(), b.events().subscribe());
    let change = AccountChange {
        account,
        state: State(7),
        types: [PushType::Email, PushType::EmailDelivery]
            .into_iter()
            .collect(),
    };
    a.events().publish(change);
    assert_eq!(next(&mut on_b).await, change);
    assert_eq!(next(&mut on_a).await, change);
}

/// The outbox of an account is drained by the node holding its lease: work queued through
/// another node wakes that node's worker, and a commit that queued nothing wakes nobody.
#[tokio::test]
async fn work_queued_on_one_node_wakes_the_worker_on_another() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (_, [a, b], account) = two_nodes(pg).await;
    a.apply_mailbox_list(account, &[common::remote("INBOX", 7)])
        .await
        .expect("list");
    let inbox = common::mailbox(&a, account, "INBOX").await;
    let raw = common::msg("m1@x", &[], "hello");
    a.apply_mailbox_changes(
        account,
        inbox,
        MailboxChanges {
            new: vec![common::copy(1, &raw, &[])],
            ..MailboxChanges::new(mail_types::UidValidity(7))
        },
    )
    .await
    .expect("seed");
    let mut worker = b.outbox_signal(account);
    let mut on_b = b.events().subscribe();
    // A commit that queued nothing: once node B announced it, the worker was not woken.
    assert!(a.apply_quotas(account, &quota(1)).await.expect("write"));
    // The seed's own announcements may still be on their way: skipped.
    let quota_at = tokio::time::timeout(WAIT, async {
        loop {
            let c = next(&mut on_b).await;
            if c.types == quota_only() {
                return c;
            }
        }
    })
    .await
    .expect("the quota change announced");
    assert_eq!(quota_at.account, account);
    assert_eq!(worker.has_changed().ok(), Some(false));

    let created = a
        .create_mailbox(account, "New", None, false)
        .await
        .expect("create")
        .expect("created");
    tokio::time::timeout(WAIT, worker.changed())
        .await
        .expect("woken within the wait")
        .expect("signal open");
    assert!(
        b.outbox_has(account, created.0, "create_mailbox")
            .await
            .expect("has"),
        "the work is there for it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listening_connection_announces_what_it_missed() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (url, [a, b], account) = two_nodes(pg).await;
    let mut on_b = b.events().subscribe();
    let worker = b.outbox_signal(account);
    assert!(a.apply_quotas(account, &quota(1)).await.expect("write"));
    assert_eq!(
        next(&mut on_b).await.state,
        committed_state(pg, &url, account)
    );

    // No new connection to the database (the nodes' pooled ones stay), then both
    // listeners' backends terminated: the next write is committed while nobody listens.
    let name = db(&url);
    pg.psql(
        "postgres",
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
    )
    .expect("closing the database");
    let killed = pg
        .psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND application_name = 'tidings-bus'"
            ),
        )
        .expect("terminating the listeners");
    assert_eq!(killed, "2", "one listener per node");
    assert!(a.apply_quotas(account, &quota(2)).await.expect("write"));
    assert!(a.apply_quotas(account, &quota(3)).await.expect("write"));
    let heard = tokio::time::timeout(Duration::from_millis(500), on_b.recv()).await;
    assert!(heard.is_err(), "nothing can be heard now: {heard:?}");

    pg.psql(
        "postgres",
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    )
    .expect("opening the database");
    let missed = committed_state(pg, &url, account);
    // Once it listens again, node B announces the state it missed, with the types.
    assert_eq!(
        next(&mut on_b).await,
        AccountChange {
            account,
            state: missed,
            types: quota_only()
        }
    );
    // Work queued while nobody listened was not heard either: every worker looks again.
    assert_eq!(worker.has_changed().ok(), Some(true));
    // And hears live changes again.
    assert!(a.apply_quotas(account, &quota(4)).await.expect("write"));
    assert_eq!(
        next(&mut on_b).await.state,
        committed_state(pg, &url, account)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_listened_to_again() {
    let mut pg = Postgres::start().expect("private PostgreSQL");
    let (url, [a, b], account) = two_nodes(&pg).await;
    let mut on_b = b.events().subscribe();
    assert!(a.apply_quotas(account, &quota(1)).await.expect("write"));
    assert_eq!(
        next(&mut on_b).await.state,
        committed_state(&pg, &url, account)
    );

    tokio::task::block_in_place(|| pg.restart()).expect("restart");
    // Node A's pooled connection died with the server: a write fails until the pool
    // opens a new one.
    let mut written = false;
    for _ in 0..50 {
        if a.apply_quotas(account, &quota(2)).await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(written, "node a writes again after the restart");
    assert_eq!(
        next(&mut on_b).await,
        AccountChange {
            account,
            state: committed_state(&pg, &url, account),
            types: quota_only()
        }
    );
    assert!(a.apply_quotas(account, &quota(3)).await.expect("write"));
    assert_eq!(
        next(&mut on_b).await.state,
        committed_state(&pg, &url, account)
    );
}

/// Latency from a write's start to its announcement: on another node through PostgreSQL
/// (LISTEN/NOTIFY), beside SQLite's in-process bus on the same writes, in one run.
/// `cargo test --release -p store --test bus -- --ignored --nocapture announcement_latency`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand for BENCHMARKS.md"]
async fn announcement_latency() {
    const WRITES: u64 = 300;
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (_, [a, b], account) = two_nodes(pg).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let lite = store::SqliteStore::open(&dir.path().join("tidings.db")).expect("sqlite store");
    let lite_account = common::account(&lite).await;

    let mut rows = Vec::new();
    for name in [
        "PostgreSQL, announced on another node",
        "SQLite, in-process bus",
    ] {
        let on_pg = name.starts_with("PostgreSQL");
        let mut rx = if on_pg {
            b.events().subscribe()
        } else {
            lite.events().subscribe()
        };
        let (mut total, mut write) = (Vec::new(), Vec::new());
        for used in 1..=WRITES {
            let start = std::time::Instant::now();
            let changed = if on_pg {
                a.apply_quotas(account, &quota(used)).await
            } else {
                lite.apply_quotas(lite_account, &quota(used)).await
            };
            assert!(changed.expect("write"));
            write.push(start.elapsed());
            next(&mut rx).await;
            total.push(start.elapsed());
        }
        rows.push((name, percentiles(&mut write), percentiles(&mut total)));
    }
    println!("| {WRITES} quota writes | write p50 / p99 | write to announcement p50 / p99 |");
    println!("|---|---|---|");
    for (name, w, t) in rows {
        println!(
            "| {name} | {:.2} / {:.2} ms | {:.2} / {:.2} ms |",
            w.0, w.1, t.0, t.1
        );
    }
}

/// p50 and p99 in milliseconds.
fn percentiles(v: &mut [Duration]) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.5), at(0.99))
}

/// Mail synced on one node is announced on the other with the types a client follows:
/// Email, Mailbox (its counts) and EmailDelivery (new mail, RFC 8621 1.5).
#[tokio::test]
async fn new_mail_synced_on_one_node_is_announced_with_its_types() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let (url, [a, b], account) = two_nodes(pg).await;
    a.apply_mailbox_list(
        account,
        &[RemoteMailbox {
            raw_name: "INBOX".into(),
            name: "INBOX".into(),
            delimiter: Some("/".into()),
            role: Some(mail_types::Role::Inbox),
            subscribed: true,
            selectable: true,
            uidvalidity: Some(7),
        }],
    )
    .await
    .expect("mailbox list");
    let inbox = a.mailboxes(account).await.expect("mailboxes")[0].id;
    let mut on_b = b.events().subscribe();
    let raw = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\nMessage-ID: <n1@x>\r\n\r\nbody\r\n";
    a.apply_mailbox_changes(
        account,
        inbox,
        MailboxChanges {
            new: vec![NewCopy {
                uid: mail_types::Uid(1),
                flags: Vec::new(),
                modseq: mail_types::ModSeq(1),
                internal_date: 1_700_000_000,
                size: raw.len() as u32,
                server_email_id: None,
                header_hash: mime::blob_id(raw),
                parsed: mime::parse(raw),
                raw: Some(bytes::Bytes::from_static(raw)),
            }],
            ..MailboxChanges::new(mail_types::UidValidity(7))
        },
    )
    .await
    .expect("batch");
    // The mailbox list's own announcement may still be on its way to node B: the batch's
    // is the one at the state committed now (a few at most, each bounded by `next`).
    let state = committed_state(pg, &url, account);
    let mut got = next(&mut on_b).await;
    for _ in 0..3 {
        if got.state >= state {
            break;
        }
        got = next(&mut on_b).await;
    }
    assert_eq!(got.account, account);
    assert_eq!(got.state, state);
    for t in [PushType::Email, PushType::Mailbox, PushType::EmailDelivery] {
        assert!(got.types.contains(t), "{t:?} in {got:?}");
    }
}
