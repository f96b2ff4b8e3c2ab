//! The store's part of an initial sync on both backends, side by side in one run: the
//! 10,000-message corpus (`testkit::corpus`, seed 1, four folders) written as `imap-sync`
//! writes it: every header in batches of 250 (its default `batch`), then every body in
//! batches of 50 (`body_batch`), each batch one `apply_mailbox_changes`. No IMAP and no
//! parsing in the timed part (the batches are built first), so the figures are the
//! store's alone: SQLite in a file store (WAL, as `tidings serve` opens it) and PostgreSQL
//! on the test harness's private server on loopback (started by this example).
//!
//!     cargo run --release -p store --example initial_sync_backends
//!
//! `N` (messages, default 10000) and `ROUNDS` (default 3, each on a new store) change the
//! work; it prints each round and the median of each backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use mail_types::{AccountId, MailboxId, ModSeq, Uid, UidValidity};
use std::time::{Duration, Instant};
use store::prelude::*;
use store::*;

const FOLDERS: &[&str] = &["INBOX", "Archive", "Sent", "Lists"];
const HEADER_BATCH: usize = 250;
const BODY_BATCH: usize = 50;

/// One folder's batches: headers first, then bodies.
struct Work {
    folder: String,
    headers: Vec<MailboxChanges>,
    bodies: Vec<MailboxChanges>,
}

fn work(n: usize) -> Vec<Work> {
    let corpus = testkit::corpus::generate(1, n, FOLDERS);
    FOLDERS
        .iter()
        .map(|folder| {
            let msgs: Vec<_> = corpus.iter().filter(|m| m.folder == *folder).collect();
            let mut news = Vec::new();
            let mut bodies = Vec::new();
            for (i, m) in msgs.iter().enumerate() {
                let uid = Uid(u32::try_from(i + 1).expect("uid"));
                let end = m
                    .raw
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(m.raw.len(), |p| p + 4);
                let header = &m.raw[..end];
                news.push(NewCopy {
                    uid,
                    flags: m.flags.clone(),
                    modseq: ModSeq(1),
                    internal_date: m.internal_date,
                    size: u32::try_from(m.raw.len()).expect("size"),
                    server_email_id: None,
                    header_hash: mime::blob_id(header),
                    parsed: mime::parse(header),
                    raw: None,
                });
                bodies.push(NewBody {
                    uid,
                    raw: bytes::Bytes::from(m.raw.clone()),
                    parsed: mime::parse(&m.raw),
                });
            }
            let batch = |new: Vec<NewCopy>, bodies: Vec<NewBody>| MailboxChanges {
                new,
                bodies,
                ..MailboxChanges::new(UidValidity(7))
            };
            Work {
                folder: folder.to_string(),
                headers: news
                    .chunks(HEADER_BATCH)
                    .map(|c| batch(c.to_vec(), vec![]))
                    .collect(),
                bodies: bodies
                    .chunks(BODY_BATCH)
                    .map(|c| batch(vec![], c.to_vec()))
                    .collect(),
            }
        })
        .collect()
}

async fn account<S: Directory + MailSync>(s: &S) -> AccountId {
    let a = common::account(s).await;
    let remote: Vec<RemoteMailbox> = FOLDERS
        .iter()
        .map(|f| RemoteMailbox {
            raw_name: f.to_string(),
            name: f.to_string(),
            delimiter: Some("/".into()),
            role: None,
            subscribed: true,
            selectable: true,
            uidvalidity: Some(7),
        })
        .collect();
    s.apply_mailbox_list(a, &remote).await.unwrap();
    a
}

/// Headers then bodies of every folder; the time of the writes alone.
async fn sync<S: Directory + MailSync>(s: &S, work: &[Work]) -> (Duration, Duration) {
    let a = account(s).await;
    let boxes: Vec<MailboxId> = {
        let list = s.mailboxes(a).await.unwrap();
        work.iter()
            .map(|w| list.iter().find(|m| m.raw_name == w.folder).unwrap().id)
            .collect()
    };
    let start = Instant::now();
    for (w, mb) in work.iter().zip(&boxes) {
        for b in &w.headers {
            s.apply_mailbox_changes(a, *mb, b.clone()).await.unwrap();
        }
    }
    let headers = start.elapsed();
    let start = Instant::now();
    for (w, mb) in work.iter().zip(&boxes) {
        for b in &w.bodies {
            s.apply_mailbox_changes(a, *mb, b.clone()).await.unwrap();
        }
    }
    let bodies = start.elapsed();
    // Everything arrived, counted once.
    let stored: u32 = s
        .mailboxes(a)
        .await
        .unwrap()
        .iter()
        .map(|m| m.progress.bodies)
        .sum();
    let expected: usize = work
        .iter()
        .map(|w| w.bodies.iter().map(|b| b.bodies.len()).sum::<usize>())
        .sum();
    assert_eq!(stored as usize, expected, "bodies stored");
    (headers, bodies)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .clamp(1, 20);
    let work = work(n);
    let pg = testkit::Postgres::shared().expect("private PostgreSQL");
    let (mut sq, mut pq) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let (h, b) = sync(&s, &work).await;
        println!(
            "round {round} sqlite:   headers {:.3} s, bodies {:.3} s, total {:.3} s",
            h.as_secs_f64(),
            b.as_secs_f64(),
            (h + b).as_secs_f64()
        );
        sq.push((h + b).as_secs_f64());
        let p = PgStore::connect(&pg.fresh_database().unwrap())
            .await
            .unwrap();
        let (h, b) = sync(&p, &work).await;
        println!(
            "round {round} postgres: headers {:.3} s, bodies {:.3} s, total {:.3} s",
            h.as_secs_f64(),
            b.as_secs_f64(),
            (h + b).as_secs_f64()
        );
        pq.push((h + b).as_secs_f64());
    }
    let (s, p) = (median(sq), median(pq));
    println!(
        "{n} messages, median of {rounds}: sqlite {s:.3} s, postgres {p:.3} s, postgres/sqlite {:.2}",
        p / s
    );
}
