//! JMAP's reads on both backends, side by side in one run, on the same 100,000 messages
//! (`testkit::corpus`, seed 1, four folders) stored through `MailSync` in batches of 250
//! (header and body together; the load is not timed): SQLite in a file store (WAL, as
//! `tidings serve` opens it), PostgreSQL on the test harness's private server on
//! loopback (started by this example).
//!
//!     cargo run --release -p store --example reading_backends
//!
//! After the load PostgreSQL gets the `VACUUM ANALYZE` autovacuum would run in the next
//! minutes. Measured, each over `ROUNDS` rounds (default 200) after 5 not counted, the
//! two backends taking turns, p50 and p99:
//! - the first screen: Email/query of the Inbox by receivedAt newest first, threads
//!   collapsed, 50 of them, then Email/get of those 50 (`query_emails` + `emails`);
//! - the full-text first page: the 50 newest Emails with a common word ("the", in nearly
//!   every message) and with a rare one ("Καλημέρα", in about 1 % of the subjects, found
//!   without its accent too), then Email/get of them.
//!
//! `N` (messages, default 100000) and `ROUNDS` change the work; `PG_URL` names an empty
//! database to use instead of the private server's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use mail_types::{AccountId, EmailId, MailboxId, ModSeq, Role, Uid, UidValidity};
use std::time::{Duration, Instant};
use store::prelude::*;
use store::*;

const FOLDERS: &[&str] = &["INBOX", "Archive", "Sent", "Lists"];
const BATCH: usize = 250;
const WARMUP: usize = 5;

/// Each folder's batches, headers and bodies together.
fn work(n: usize) -> Vec<(String, Vec<MailboxChanges>)> {
    let corpus = testkit::corpus::generate(1, n, FOLDERS);
    FOLDERS
        .iter()
        .map(|folder| {
            let news: Vec<NewCopy> = corpus
                .iter()
                .filter(|m| m.folder == *folder)
                .enumerate()
                .map(|(i, m)| NewCopy {
                    uid: Uid(u32::try_from(i + 1).expect("uid")),
                    flags: m.flags.clone(),
                    modseq: ModSeq(1),
                    internal_date: m.internal_date,
                    size: u32::try_from(m.raw.len()).expect("size"),
                    server_email_id: None,
                    header_hash: mime::blob_id(&m.raw),
                    parsed: mime::parse(&m.raw),
                    raw: Some(bytes::Bytes::from(m.raw.clone())),
                })
                .collect();
            let batches = news
                .chunks(BATCH)
                .map(|c| MailboxChanges {
                    new: c.to_vec(),
                    ..MailboxChanges::new(UidValidity(7))
                })
                .collect();
            (folder.to_string(), batches)
        })
        .collect()
}

/// Stores the work in a new account; its id and Inbox.
async fn load<S: Directory + MailSync>(
    s: &S,
    work: &[(String, Vec<MailboxChanges>)],
) -> (AccountId, MailboxId) {
    let a = common::account(s).await;
    let remote: Vec<RemoteMailbox> = FOLDERS
        .iter()
        .map(|f| RemoteMailbox {
            raw_name: f.to_string(),
            name: f.to_string(),
            delimiter: Some("/".into()),
            role: (*f == "INBOX").then_some(Role::Inbox),
            subscribed: true,
            selectable: true,
            uidvalidity: Some(7),
        })
        .collect();
    s.apply_mailbox_list(a, &remote).await.unwrap();
    let list = s.mailboxes(a).await.unwrap();
    let id = |name: &str| list.iter().find(|m| m.raw_name == name).unwrap().id;
    for (folder, batches) in work {
        for b in batches {
            s.apply_mailbox_changes(a, id(folder), b.clone())
                .await
                .unwrap();
        }
    }
    (a, id("INBOX"))
}

fn first_screen(inbox: MailboxId) -> EmailQuery {
    EmailQuery {
        filter: Some(EmailFilter::Condition(EmailCondition::InMailbox(inbox))),
        sort: vec![EmailSort {
            key: EmailSortKey::ReceivedAt,
            ascending: false,
            collation: Collation::default(),
        }],
        collapse_threads: true,
        window: Some((0, 50)),
        ..EmailQuery::default()
    }
}

fn text_page(word: &str) -> EmailQuery {
    EmailQuery {
        filter: Some(EmailFilter::Condition(EmailCondition::Text(word.into()))),
        window: Some((0, 50)),
        ..EmailQuery::default()
    }
}

/// Query then get its page on each backend, `rounds` times, the two interleaved so that
/// both see the same load of the machine: the times of each, and the last pages.
async fn measure(
    lite: (&SqliteStore, AccountId, &EmailQuery),
    pg: (&PgStore, AccountId, &EmailQuery),
    rounds: usize,
) -> [(Vec<Duration>, Vec<EmailId>); 2] {
    async fn once<S: Reading>(s: &S, a: AccountId, q: &EmailQuery) -> (Duration, Vec<EmailId>) {
        let start = Instant::now();
        let page = s.query_emails(a, q).await.unwrap().ids;
        let views = s.emails(a, &page).await.unwrap();
        let took = start.elapsed();
        assert_eq!(views.len(), page.len());
        (took, page)
    }
    let mut out: [(Vec<Duration>, Vec<EmailId>); 2] = Default::default();
    for i in 0..rounds + WARMUP {
        let (l, lp) = once(lite.0, lite.1, lite.2).await;
        let (p, pp) = once(pg.0, pg.1, pg.2).await;
        if i >= WARMUP {
            out[0].0.push(l);
            out[1].0.push(p);
        }
        out[0].1 = lp;
        out[1].1 = pp;
    }
    out
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let i = ((ms.len() as f64 - 1.0) * p).round() as usize;
    ms[i.min(ms.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .clamp(1, 10_000);
    let work = work(n);
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    let start = Instant::now();
    let (la, linbox) = load(&lite, &work).await;
    println!(
        "sqlite:   {n} messages stored in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    // An empty database of a server of one's own (to look at the plans afterwards), or
    // one of the private server.
    let url = match std::env::var("PG_URL") {
        Ok(url) => url,
        Err(_) => testkit::Postgres::shared()
            .expect("private PostgreSQL")
            .fresh_database()
            .unwrap(),
    };
    let pgs = PgStore::connect(&url).await.unwrap();
    let start = Instant::now();
    let (pa, pinbox) = load(&pgs, &work).await;
    println!(
        "postgres: {n} messages stored in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    // What autovacuum does in the minutes after a sync (statistics, the visibility map),
    // done now rather than in the middle of the measurement.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    drop(work);

    let cases: [(&str, EmailQuery, EmailQuery); 3] = [
        (
            "first screen (Inbox, collapsed, 50 + get)",
            first_screen(linbox),
            first_screen(pinbox),
        ),
        (
            "full text, common word \"the\" (50 + get)",
            text_page("the"),
            text_page("the"),
        ),
        (
            "full text, rare word \"Καλημέρα\" (50 + get)",
            text_page("Καλημέρα"),
            text_page("Καλημέρα"),
        ),
    ];
    for (name, lq, pq) in cases {
        let [(lt, lpage), (pt, ppage)] = measure((&lite, la, &lq), (&pgs, pa, &pq), rounds).await;
        // Both backends hold the same mail under the same ids (each numbered from 1 in
        // the same order), so the pages must be the same.
        assert_eq!(lpage, ppage, "{name}: the backends disagree");
        let total = lite
            .query_emails(
                la,
                &EmailQuery {
                    count: true,
                    window: Some((0, 1)),
                    ..lq.clone()
                },
            )
            .await
            .unwrap()
            .total
            .unwrap_or(0);
        let (l50, l99, p50, p99) = (pct(&lt, 0.5), pct(&lt, 0.99), pct(&pt, 0.5), pct(&pt, 0.99));
        println!(
            "{name}: {} on the page, {total} matches; sqlite p50 {l50:.2} ms p99 {l99:.2} ms; \
             postgres p50 {p50:.2} ms p99 {p99:.2} ms; p50 ratio {:.2}x",
            lpage.len(),
            p50 / l50
        );
    }
}
