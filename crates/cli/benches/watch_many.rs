//! One node watching many IMAP accounts at once: `tidings serve` with N accounts
//! (TIDINGS_BENCH_ACCOUNTS, default 1,000), each its own Dovecot user, over IMAPS, on a
//! private Dovecot configured for many connections. Measures
//! - the time from the start of `tidings serve` until every account's sync status is `ok`
//!   (the engine sets it once the account's watcher is in place, see engine/src/account.rs),
//! - the resident set and OS threads of the process with no accounts (a run with the same
//!   users and none) and with N watching (/proc/PID/status VmRSS, Threads), and the peak
//!   thread count during start-up,
//! - for deliveries to random accounts (TIDINGS_BENCH_DELIVERIES, default 20): from the end
//!   of LMTP DATA to the `StateChange` at a WebSocket client of the account's user, beside
//!   a bare IMAP client with NOTIFY (nothing selected) on the same Dovecot user, same run.
//!
//! Prints Markdown for BENCHMARKS.md.
//! `cargo bench -p cli --bench watch_many` (TIDINGS_BENCH_NOTIFY_FLUSH_MS sets Tidings'
//! `imap_notify_flush_ms`; unset, serve's default applies: every user here is connected,
//! so every watcher flushes every 100 ms).

mod common;
#[path = "../tests/push_support/mod.rs"]
mod push_support;

use anyhow::{Context, Result, bail};
use common::{Bare, ProcStats, bare_watcher, env_usize, lmtp_deliver, print_table, proc_stats};
use push_support::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use store::SqliteStore;
use store::prelude::*;
use testkit::{Dovecot, DovecotOptions, corpus};
use tokio::sync::mpsc;

/// Accounts per Tidings user (the last user may have fewer).
const ACCOUNTS_PER_USER: usize = 100;
/// How long start-up may take before the bench gives up.
const START_LIMIT: Duration = Duration::from_secs(300);

fn login(i: usize) -> String {
    format!("w{i}@example.org")
}

fn password(i: usize) -> String {
    format!("pw-{i}")
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tidings"))
}

/// Waits until the server accepts TCP connections, then until it is quiet.
async fn wait_listening(port: u16) -> Result<()> {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("tidings serve never listened");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Status names of every account, by login.
async fn statuses(store: &SqliteStore) -> Result<HashMap<String, (String, String)>> {
    Ok(store
        .list_accounts()
        .await?
        .into_iter()
        .map(|a| {
            (
                a.server.username.clone(),
                (format!("a{}", a.id.0), a.status.name().to_string()),
            )
        })
        .collect())
}

/// One WebSocket client per Tidings user, push enabled for Email.
async fn connect_all(port: u16, users: &[(String, String)]) -> Result<Vec<Ws>> {
    let mut sockets = Vec::new();
    for (u, p) in users {
        let mut ws = ws_connect_when_up(port, &basic(u, p)).await?;
        ws.enable(Some(&["Email"]), None).await?;
        sockets.push(ws);
    }
    Ok(sockets)
}

async fn run(n: usize, deliveries: usize) -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions {
        // Each account holds a watcher and a worker connection (and the outbox worker's
        // when it has work); the bare clients add a few.
        max_connections: Some(u32::try_from(3 * n + 100)?),
        // TIDINGS_BENCH_DOVECOT_DIR keeps Dovecot's state and log there.
        state_dir: std::env::var_os("TIDINGS_BENCH_DOVECOT_DIR").map(Into::into),
        ..DovecotOptions::default()
    })?;
    let short = testkit::raise_os_limits(4 * n as u64 + 1000);
    let users: Vec<(String, String)> = (0..n).map(|i| (login(i), password(i))).collect();
    let t = Instant::now();
    dovecot.add_users(&users)?;
    eprintln!("{n} Dovecot users in {:.1} s", t.elapsed().as_secs_f64());

    let tidings_users: Vec<(String, String)> = (0..n.div_ceil(ACCOUNTS_PER_USER))
        .map(|j| (format!("u{j}"), format!("pw{j}")))
        .collect();
    let tu: Vec<(&str, &str)> = tidings_users
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    let accounts: Vec<(&str, &str, &str)> = users
        .iter()
        .enumerate()
        .map(|(i, (l, p))| (tu[i / ACCOUNTS_PER_USER].0, l.as_str(), p.as_str()))
        .collect();
    // Unset: serve's default (a NOOP flush every 100 ms while the user has a push client,
    // which every user here has); 0: never.
    let extra = match std::env::var("TIDINGS_BENCH_NOTIFY_FLUSH_MS") {
        Ok(ms) => format!("imap_notify_flush_ms = {}\n", ms.trim().parse::<u64>()?),
        Err(_) => String::new(),
    };

    // The same server with the same users and no account: what the process costs anyway.
    // Both runs are measured with the users' WebSocket clients connected, so both carry
    // the memory the Argon2 verification of their passwords left in the allocator.
    let base = {
        let serve = serve_accounts(bin(), &dovecot, &tu, &[], &extra)?;
        wait_listening(serve.port).await?;
        let _sockets = connect_all(serve.port, &tidings_users).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        proc_stats(serve.pid())?
    };

    let started = Instant::now();
    let serve = serve_accounts(bin(), &dovecot, &tu, &accounts, &extra)?;
    let mut peak_threads = 0;
    let mut store: Option<SqliteStore> = None;
    let mut last_report = Instant::now();
    let (all_watching, ids) = loop {
        if let Ok(s) = proc_stats(serve.pid()) {
            peak_threads = peak_threads.max(s.threads);
        }
        if store.is_none() && serve.store_path().exists() {
            store = SqliteStore::open(&serve.store_path()).ok();
        }
        if let Some(st) = &store
            && let Ok(map) = statuses(st).await
        {
            let ok = map.values().filter(|(_, s)| s == "ok").count();
            if map.len() == n && ok == n {
                let ids: HashMap<String, String> =
                    map.into_iter().map(|(l, (id, _))| (l, id)).collect();
                break (started.elapsed(), ids);
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                let mut by: HashMap<&str, usize> = HashMap::new();
                for (_, s) in map.values() {
                    *by.entry(s.as_str()).or_default() += 1;
                }
                eprintln!("{:.0} s: {by:?}", started.elapsed().as_secs_f64());
                last_report = Instant::now();
            }
        }
        if started.elapsed() > START_LIMIT {
            bail!("not every account was watching after {START_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut sockets = connect_all(serve.port, &tidings_users).await?;
    // Let the last first passes' memory settle (freed buffers, idle blocking threads).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after: ProcStats = proc_stats(serve.pid())?;
    for ws in &mut sockets {
        ws.settle(Duration::from_millis(300)).await?;
        ws.pushes.clear();
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (mut bare, mut push, mut added) = (vec![], vec![], vec![]);
    let imap = dovecot.imap_port();
    let lmtp = dovecot.lmtp_port();
    for k in 0..deliveries {
        let i = rand::random::<usize>() % n;
        let (l, p) = users[i].clone();
        let account = ids.get(&l).context("account of the login")?.clone();
        let ws = &mut sockets[i / ACCOUNTS_PER_USER];
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (bl, bp) = (l.clone(), p.clone());
        std::thread::spawn(move || {
            if let Err(e) = bare_watcher(imap, &bl, &bp, Bare::Notify, Duration::from_secs(5), tx) {
                eprintln!("bare NOTIFY client of {bl}: {e:#}");
            }
        });
        // NOTIFY SET STATUS answers with the STATUS of every mailbox first. Its login also
        // starts Dovecot's 500 ms notification timer in every NOTIFY session of the user
        // (see docs/design/watching.md): wait until that has run out, or the delivery
        // rides on it and both clients look faster than Dovecot is.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        while rx.try_recv().is_ok() {}
        let raw = corpus::message("x@example.org", &l, &format!("many-{k}"), "watched");
        let rcpt = l.clone();
        let t0 = tokio::task::spawn_blocking(move || lmtp_deliver(lmtp, &rcpt, &raw)).await??;
        let t_push = loop {
            let p = ws
                .push(Duration::from_secs(10))
                .await?
                .with_context(|| format!("no StateChange for {account}"))?;
            if changed(&p, &account).is_some_and(|c| c.contains_key("Email")) {
                break Instant::now();
            }
        };
        let t_bare = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .context("no STATUS at the bare NOTIFY client in 10 s")?
            .context("bare NOTIFY client ended")?;
        bare.push(ms(t_bare - t0));
        push.push(ms(t_push - t0));
        added.push(ms(t_push.saturating_duration_since(t_bare)));
        // The body's push, then a random phase before the next delivery.
        ws.settle(Duration::from_millis(300)).await?;
        ws.pushes.clear();
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 400)).await;
    }
    let end = proc_stats(serve.pid())?;

    let kb = |a: u64, b: u64| a as f64 - b as f64;
    println!("\n`tidings serve` watching {n} IMAP accounts (IMAPS, NOTIFY) on one Dovecot\n");
    if !short.is_empty() {
        println!("OS limits not raised: {}\n", short.join("; "));
    }
    println!("| measure | value | goal |\n|---|---:|---|");
    println!(
        "| start of `tidings serve` → all {n} watching | {:.1} s | ≤ 60 s |",
        all_watching.as_secs_f64()
    );
    println!(
        "| RSS with no account / with {n} watching | {:.1} MB / {:.1} MB | |",
        base.rss_kb as f64 / 1024.0,
        after.rss_kb as f64 / 1024.0
    );
    println!(
        "| RSS growth per watched account | {:.1} KB | ≤ 100 KB |",
        kb(after.rss_kb, base.rss_kb) / n as f64
    );
    println!(
        "| OS threads with no account / with {n} watching / peak during start-up | {} / {} / {peak_threads} | no thread per account |",
        base.threads, after.threads
    );
    println!(
        "| RSS after the {deliveries} deliveries | {:.1} MB | |",
        end.rss_kb as f64 / 1024.0
    );
    println!();
    print_table(
        &format!(
            "{deliveries} LMTP deliveries to random accounts among the {n} (ms, from the end of DATA):"
        ),
        &mut [
            (
                "bare IMAP client, NOTIFY, same Dovecot user: → STATUS",
                &mut bare,
            ),
            (
                "Tidings: → StateChange at a WebSocket client of the user",
                &mut push,
            ),
            ("Tidings adds: bare STATUS → StateChange", &mut added),
        ],
    );
    Ok(())
}

fn main() -> Result<()> {
    let n = env_usize("TIDINGS_BENCH_ACCOUNTS", 1000).max(1);
    let deliveries = env_usize("TIDINGS_BENCH_DELIVERIES", 20);
    tokio::runtime::Runtime::new()?.block_on(run(n, deliveries))
}
