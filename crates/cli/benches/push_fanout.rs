//! Many idle push clients on one node: N WebSocket clients (default 10,000) of one user
//! enable push; the server's RSS growth per client is measured, then one LMTP delivery is
//! pushed to all of them and the spread from the first to the last StateChange is timed.
//!
//! `cargo bench -p cli --bench push_fanout` (TIDINGS_BENCH_CLIENTS, default 10000; needs
//! `ulimit -n` above the client count).

#[path = "../tests/push_support/mod.rs"]
mod push_support;

use anyhow::{Context, Result, bail};
use push_support::*;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, corpus};
use tokio::sync::mpsc;

const USER: &str = "fan@example.org";
const PASS: &str = "fan-pw";

fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

/// Connects, enables push and waits until the server has processed it (a Core/echo after
/// the enable is answered in order).
async fn client(port: u16, auth: &str) -> Result<Ws> {
    let mut last = None;
    for _ in 0..5 {
        match ws_connect(port, auth, None).await {
            Ok(mut ws) => {
                ws.enable(None, None).await?;
                ws.call(json!([["Core/echo", {}, "e"]])).await?;
                return Ok(ws);
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Err(last.context("no attempt")?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = std::env::var("TIDINGS_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    dovecot.deliver(
        USER,
        &corpus::message("x@example.org", USER, "warm-up", "x"),
    )?;
    let serve = serve_with(
        Path::new(env!("CARGO_BIN_EXE_tidings")),
        &dovecot,
        &[("fan", "pw", USER, PASS)],
        &format!("push_connections_per_user = {}", n + 100),
    )?;
    let auth = basic("fan", "pw");
    let mut probe = ws_connect_when_up(serve.port, &auth).await?;
    probe.wait_emails("a1", 1).await?;
    probe.enable(None, None).await?;
    probe.settle(Duration::from_millis(1000)).await?;
    // Warm up the per-connection paths before the baseline.
    let mut warm = Vec::new();
    for _ in 0..50 {
        warm.push(client(serve.port, &auth).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = rss_kb(serve.pid())?;

    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<()>>();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for _ in 0..n {
        let (tx, ready_tx, auth, sem) = (tx.clone(), ready_tx.clone(), auth.clone(), sem.clone());
        let port = serve.port;
        tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let ws = client(port, &auth).await;
            drop(permit);
            let mut ws = match ws {
                Ok(ws) => {
                    let _ = ready_tx.send(Ok(()));
                    ws
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            // Idle until the push; keep reading afterwards (pings), bounded.
            let mut told = false;
            let until = Instant::now() + Duration::from_secs(600);
            while Instant::now() < until {
                match ws.push(Duration::from_secs(60)).await {
                    Ok(Some(_)) if !told => {
                        told = true;
                        let _ = tx.send(Instant::now());
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
    }
    for i in 0..n {
        match tokio::time::timeout(Duration::from_secs(120), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => bail!("client {i} failed: {e:#}"),
            _ => bail!("only {i} of {n} clients connected"),
        }
    }
    let connect_time = start.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss1 = rss_kb(serve.pid())?;

    let raw = corpus::message("x@example.org", USER, "to everyone", "x");
    let lmtp_done = {
        dovecot.deliver(USER, &raw)?;
        Instant::now()
    };
    let mut first = None;
    let mut last = lmtp_done;
    for i in 0..n {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(t)) => {
                first.get_or_insert(t);
                last = last.max(t);
            }
            _ => bail!("only {i} of {n} clients got the StateChange"),
        }
    }
    let first = first.context("no push")?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("Push fan-out to {n} idle WebSocket clients of one user (one node):\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| connect + enable push, all clients | {:.1} s |",
        connect_time.as_secs_f64()
    );
    println!(
        "| server RSS: before / after | {} MB / {} MB |",
        rss0 / 1024,
        rss1 / 1024
    );
    println!(
        "| server RSS growth per client | {:.1} KB |",
        (rss1 as f64 - rss0 as f64) / n as f64
    );
    println!(
        "| first → last client's StateChange | {:.1} ms |",
        ms(last - first)
    );
    println!(
        "| LMTP delivery answered → last client's StateChange | {:.1} ms |",
        ms(last.saturating_duration_since(lmtp_done))
    );
    drop(warm);
    Ok(())
}
