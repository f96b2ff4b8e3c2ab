//! `tidings migrate`'s copy (`store::migrate::sqlite_to_postgres`) of a synced
//! 10,000-message store: the corpus of `initial_sync_backends` (seed 1, four folders)
//! written into a SQLite file store through `MailSync` as the sync writes it (headers,
//! then bodies), then copied into a fresh database of the test harness's private
//! PostgreSQL on loopback. Beside it, in the same run, the peer: the same data dir copied
//! file by file (the database and every blob, what a SQLite-to-SQLite move costs), and
//! the time the SQLite store took to build.
//!
//!     cargo run --release -p store --example migrate_to_postgres
//!
//! The copy runs in a child process of its own (this example run again with
//! `MIGRATE_CHILD` set), so its peak RSS (`VmHWM`) is the copy's alone, not the corpus's.
//! `N` (messages, default 10000) and `ROUNDS` (default 3) change the work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use mail_types::{MailboxId, ModSeq, Uid, UidValidity};
use std::path::Path;
use std::time::Instant;
use store::prelude::*;
use store::*;

const FOLDERS: &[&str] = &["INBOX", "Archive", "Sent", "Lists"];

/// Builds the synced store at `db`; returns the seconds it took.
async fn build(db: &Path, n: usize) -> f64 {
    let corpus = testkit::corpus::generate(1, n, FOLDERS);
    let s = SqliteStore::open(db).unwrap();
    let start = Instant::now();
    let u = s.create_user("u", "h").await.unwrap();
    // A sealed secret to carry over.
    let mut new = common::new_account(u, "a");
    new.server.password_enc = vec![1, 2, 3];
    let a = s.create_account(&new).await.unwrap();
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
    let list = s.mailboxes(a).await.unwrap();
    for folder in FOLDERS {
        let mb: MailboxId = list.iter().find(|m| m.raw_name == *folder).unwrap().id;
        let msgs: Vec<_> = corpus.iter().filter(|m| m.folder == *folder).collect();
        let mut news = Vec::new();
        let mut bodies = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let uid = Uid(u32::try_from(i + 1).unwrap());
            let end = m
                .raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(m.raw.len(), |p| p + 4);
            news.push(NewCopy {
                uid,
                flags: m.flags.clone(),
                modseq: ModSeq(1),
                internal_date: m.internal_date,
                size: u32::try_from(m.raw.len()).unwrap(),
                server_email_id: None,
                header_hash: mime::blob_id(&m.raw[..end]),
                parsed: mime::parse(&m.raw[..end]),
                raw: None,
            });
            bodies.push(NewBody {
                uid,
                raw: bytes::Bytes::from(m.raw.clone()),
                parsed: mime::parse(&m.raw),
            });
        }
        for c in news.chunks(250) {
            let b = MailboxChanges {
                new: c.to_vec(),
                ..MailboxChanges::new(UidValidity(7))
            };
            s.apply_mailbox_changes(a, mb, b).await.unwrap();
        }
        for c in bodies.chunks(50) {
            let b = MailboxChanges {
                bodies: c.to_vec(),
                ..MailboxChanges::new(UidValidity(7))
            };
            s.apply_mailbox_changes(a, mb, b).await.unwrap();
        }
    }
    start.elapsed().as_secs_f64()
}

/// The data dir copied file by file (the store file, its WAL, every blob).
fn copy_dir(from: &Path, to: &Path) -> u64 {
    std::fs::create_dir_all(to).unwrap();
    let mut bytes = 0;
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            bytes += copy_dir(&e.path(), &target);
        } else {
            bytes += std::fs::copy(e.path(), &target).unwrap();
        }
    }
    bytes
}

/// The child: one copy, then its time and peak RSS on stdout.
async fn child(db: &str, url: &str) {
    let start = Instant::now();
    let report = store::migrate::sqlite_to_postgres(Path::new(db), url, &mut |_| {})
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let rows: u64 = report.tables.iter().map(|(_, n)| n).sum();
    println!("{secs:.3} {rows} {hwm}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let (Ok(db), Ok(url)) = (std::env::var("MIGRATE_CHILD"), std::env::var("MIGRATE_URL")) {
        return child(&db, &url).await;
    }
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .clamp(1, 20);
    let pg = testkit::Postgres::shared().expect("private PostgreSQL");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = data.join("tidings.sqlite");
    let built = build(&db, n).await;
    println!("{n} messages: SQLite store built in {built:.3} s");
    let (mut copies, mut migrations) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let start = Instant::now();
        let bytes = copy_dir(&data, &dir.path().join(format!("copy{round}")));
        let copy = start.elapsed().as_secs_f64();
        let url = pg.fresh_database().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("MIGRATE_CHILD", &db)
            .env("MIGRATE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let secs: f64 = line.split(' ').next().unwrap().parse().unwrap();
        println!(
            "round {round}: data dir copied file by file ({:.1} MB) {copy:.3} s; \
             migrate to PostgreSQL (s, rows, peak RSS) {line}",
            bytes as f64 / 1e6
        );
        copies.push(copy);
        migrations.push(secs);
    }
    let (c, m) = (median(copies), median(migrations));
    println!(
        "{n} messages, median of {rounds}: file copy {c:.3} s, migrate {m:.3} s, migrate/copy {:.1}",
        m / c
    );
}
