//! Push latency against Dovecot, beside the floor measured in the same run: for each of N
//! LMTP deliveries (default 200), the time from the end of LMTP DATA (the final dot sent)
//! to
//! - a bare IMAP client IDLEing on INBOX seeing `EXISTS` (Dovecot's IDLE floor),
//! - a bare IMAP client with NOTIFY (nothing selected) seeing `STATUS INBOX` (the NOTIFY
//!   floor, which Tidings' own watcher rides on),
//! - the same with a NOOP every TIDINGS_BENCH_NOTIFY_FLUSH_MS (default 100, Tidings'
//!   `imap_notify_flush_ms` while its user is connected, as here),
//! - a Tidings WebSocket client (RFC 8887) seeing the `StateChange` for Email,
//! - that client holding the new message from `Email/changes` + `Email/get` sent on the push.
//!
//! Prints a Markdown table for BENCHMARKS.md.
//!
//! `cargo bench -p cli --bench push_latency` (TIDINGS_BENCH_DELIVERIES, default 200;
//! TIDINGS_BENCH_NOTIFY_FLUSH_MS sets Tidings' `imap_notify_flush_ms` and the third
//! bare client's NOOP interval; 0: neither flushes).

mod common;
#[path = "../tests/push_support/mod.rs"]
mod push_support;

use anyhow::{Context, Result, bail};
use common::{Bare, bare_watcher, lmtp_deliver, print_table};
use push_support::*;
use serde_json::json;
use std::path::Path;
use std::time::SystemTime;
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, corpus};
use tokio::sync::mpsc;

const USER: &str = "push@example.org";
const PASS: &str = "push-pw";

async fn next_instant(rx: &mut mpsc::UnboundedReceiver<Instant>, what: &str) -> Result<Instant> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .with_context(|| format!("no {what} in 10 s"))?
        .with_context(|| format!("{what} watcher ended"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = std::env::var("TIDINGS_BENCH_DELIVERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    dovecot.deliver(
        USER,
        &corpus::message("x@example.org", USER, "warm-up", "x"),
    )?;
    // TIDINGS_BENCH_NOTIFY_FLUSH_MS: Tidings' watcher sends a NOOP this often while the
    // user has a push client (the `imap_notify_flush_ms` setting, default 100; 0: never),
    // which makes Dovecot send what it holds back. A third bare client does the same.
    let flush = common::env_usize("TIDINGS_BENCH_NOTIFY_FLUSH_MS", 100) as u64;
    let extra = format!("imap_notify_flush_ms = {flush}");
    // The server's debug log of the watcher says when Dovecot told it ("told by the
    // server"): what Tidings adds is measured from that line to the StateChange.
    let logs = tempfile::tempdir()?;
    let log_path = logs.path().join("serve.log");
    let serve = serve_logged(
        Path::new(env!("CARGO_BIN_EXE_tidings")),
        &dovecot,
        &[("bench", "pw")],
        &[("bench", USER, PASS)],
        &extra,
        Some((&log_path, "info,engine::account=debug")),
    )?;
    let mut log_read = 0usize;
    let auth = basic("bench", "pw");
    let mut ws = ws_connect_when_up(serve.port, &auth).await?;
    ws.wait_emails("a1", 1).await?;
    ws.enable(Some(&["Email"]), None).await?;
    ws.settle(Duration::from_millis(1000)).await?;
    let (_, mut state) = ws.email_ids("a1").await?;

    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel();
    let (notify_tx, mut notify_rx) = mpsc::unbounded_channel();
    let (flush_tx, mut flush_rx) = mpsc::unbounded_channel();
    let imap = dovecot.imap_port();
    // TIDINGS_BENCH_IDLE=0: no bare IDLE client (to see its effect on the NOTIFY floor).
    let with_idle = std::env::var("TIDINGS_BENCH_IDLE").map_or(true, |v| v != "0");
    let with_flush = flush > 0;
    for (mode, tx) in [
        (Bare::Idle, idle_tx),
        (Bare::Notify, notify_tx),
        (
            Bare::NotifyFlush(Duration::from_millis(flush.max(10))),
            flush_tx,
        ),
    ] {
        if matches!(mode, Bare::Idle) && !with_idle
            || matches!(mode, Bare::NotifyFlush(_)) && !with_flush
        {
            continue;
        }
        std::thread::spawn(move || {
            let quiet = Duration::from_secs(600);
            if let Err(e) = bare_watcher(imap, USER, PASS, mode, quiet, tx) {
                eprintln!("bare watcher ({mode:?}): {e:#}");
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // NOTIFY SET STATUS answers with the current STATUS of every mailbox first.
    while notify_rx.try_recv().is_ok() {}
    while flush_rx.try_recv().is_ok() {}

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (mut idle, mut notify, mut push, mut added, mut get, mut get_after) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut flushed, mut added_flushed, mut added_own) = (vec![], vec![], vec![]);
    let mut untold = 0usize;
    let lmtp = dovecot.lmtp_port();
    let mut stale = 0usize;
    let (mut notify_before, mut notify_extra) = (0usize, 0usize);
    // TIDINGS_BENCH_GAP_MS: a longer pause between deliveries (default 0, plus 0-400 ms).
    let extra_gap: u64 = std::env::var("TIDINGS_BENCH_GAP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for i in 0..n {
        let subject = format!("bench-{i}");
        let raw = corpus::message("x@example.org", USER, &subject, "latency");
        let t0 = tokio::task::spawn_blocking(move || lmtp_deliver(lmtp, USER, &raw)).await??;
        let t0_day = day_seconds(std::time::SystemTime::now()) - t0.elapsed().as_secs_f64();
        // The push first (the socket is read by this task), then the bare clients, whose
        // instants were taken on their own threads. A push that does not yet hold the new
        // message (a late one of the previous body) is skipped and counted.
        let (t_push, t_get, id, t_push_day) = loop {
            let p = ws
                .push(Duration::from_secs(10))
                .await?
                .context("no StateChange")?;
            let t_push = Instant::now();
            let t_push_day = day_seconds(std::time::SystemTime::now());
            if changed(&p, "a1").and_then(|c| c.get("Email")).is_none() {
                bail!("push without Email: {p}");
            }
            let r = ws
                .call(json!([
                    ["Email/changes", {"accountId": "a1", "sinceState": state}, "c"],
                    ["Email/get", {"accountId": "a1", "#ids": {"resultOf": "c", "name": "Email/changes", "path": "/created"},
                      "properties": ["subject"]}, "g"]
                ]))
                .await?;
            let t_get = Instant::now();
            state = r["methodResponses"][0][1]["newState"]
                .as_str()
                .context("newState")?
                .to_string();
            let hit = r["methodResponses"][1][1]["list"]
                .as_array()
                .and_then(|l| l.iter().find(|e| e["subject"] == subject.as_str()))
                .and_then(|e| e["id"].as_str().map(str::to_string));
            match hit {
                Some(id) => break (t_push, t_get, id, t_push_day),
                None if stale < n => stale += 1,
                None => bail!("pushes never held {subject}"),
            }
        };
        let t_idle = if with_idle {
            next_instant(&mut idle_rx, "IDLE EXISTS").await?
        } else {
            t0
        };
        let t_notify = next_instant(&mut notify_rx, "NOTIFY STATUS").await?;
        let t_flush = if with_flush {
            Some(next_instant(&mut flush_rx, "NOTIFY + NOOP STATUS").await?)
        } else {
            None
        };
        // A STATUS the bare client got before the delivery was made is not the delivery's
        // (Dovecot told it of something else, e.g. the previous message's body fetch).
        if t_notify < t0 {
            notify_before += 1;
        }
        // The body lands in a second transaction: wait for it and let its push pass.
        let body_wait = Instant::now();
        loop {
            let r = ws
                .call(json!([["Email/get", {"accountId": "a1", "ids": [id], "properties": ["blobId"]}, "b"]]))
                .await?;
            if r["methodResponses"][0][1]["list"][0]["blobId"].is_string() {
                break;
            }
            if body_wait.elapsed() > Duration::from_secs(10) {
                bail!("the body of {subject} never arrived");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ws.settle(Duration::from_millis(100)).await?;
        ws.pushes.clear();
        state = ws.email_ids("a1").await?.1;
        while idle_rx.try_recv().is_ok() {}
        while notify_rx.try_recv().is_ok() {
            notify_extra += 1;
        }
        while flush_rx.try_recv().is_ok() {}
        // Deliveries at random phases of Dovecot's notification timers.
        let gap = extra_gap + rand::random::<u64>() % 400;
        tokio::time::sleep(Duration::from_millis(gap)).await;
        idle.push(ms(t_idle - t0));
        notify.push(ms(t_notify - t0));
        push.push(ms(t_push - t0));
        added.push(ms(t_push.saturating_duration_since(t_notify)));
        // The watcher's last "told by the server" between the delivery and the push.
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let told = log
            .get(log_read..)
            .unwrap_or("")
            .lines()
            .filter(|l| l.contains("told by the server"))
            .filter_map(line_seconds)
            .filter(|t| *t >= t0_day - 0.001 && *t <= t_push_day)
            .reduce(f64::max);
        log_read = log.len();
        match told {
            Some(t) => added_own.push((t_push_day - t) * 1000.0),
            None => untold += 1,
        }
        if let Some(t) = t_flush {
            flushed.push(ms(t - t0));
            added_flushed.push(ms(t_push.saturating_duration_since(t)));
        }
        get.push(ms(t_get - t0));
        get_after.push(ms(t_get - t_push));
    }
    // A change made through JMAP by another client of the user: Email/set on one socket,
    // StateChange on the other (no mail server in the path).
    let mut other = ws_connect(serve.port, &auth, None).await?;
    let (ids, _) = other.email_ids("a1").await?;
    let target = ids.first().context("an Email")?.clone();
    ws.settle(Duration::from_millis(300)).await?;
    let mut jmap = Vec::new();
    let mut noop_sets = 0usize;
    print_table(
        &format!(
            "Push latency over {n} LMTP deliveries to one account (ms; same run, same Dovecot; \
             {stale} late pushes of a previous body skipped; the bare NOTIFY client's first \
             STATUS came before the end of DATA {notify_before} times, and {notify_extra} more \
             STATUS lines came after the one counted; {untold} pushes without a log line of \
             the watcher between delivery and push):"
        ),
        &mut [
            (
                "bare IMAP client, IDLE on INBOX: end of DATA → EXISTS",
                &mut idle,
            ),
            (
                "bare IMAP client, NOTIFY: end of DATA → STATUS",
                &mut notify,
            ),
            (
                &format!("bare IMAP client, NOTIFY + NOOP every {flush} ms: end of DATA → STATUS"),
                &mut flushed,
            ),
            ("Tidings WebSocket: end of DATA → StateChange", &mut push),
            (
                "Tidings adds: its watcher told by Dovecot (its log) → StateChange",
                &mut added_own,
            ),
            ("Tidings adds: bare NOTIFY STATUS → StateChange", &mut added),
            (
                "Tidings adds: bare NOTIFY + NOOP STATUS → StateChange",
                &mut added_flushed,
            ),
            ("Tidings: end of DATA → new message in Email/get", &mut get),
            (
                "Tidings: StateChange → Email/changes+Email/get answered",
                &mut get_after,
            ),
        ],
    );
    for i in 0..n {
        // Set, then remove (a patch removes with null).
        let flag = if i % 2 == 0 { json!(true) } else { json!(null) };
        let t0 = Instant::now();
        other
            .send(
                &json!({"@type": "Request", "id": format!("set{i}"), "using": USING,
                "methodCalls": [["Email/set", {"accountId": "a1",
                    "update": {target.clone(): {"keywords/$flagged": flag}}}, "s"]]}),
            )
            .await?;
        if ws.push(Duration::from_secs(2)).await?.is_none() {
            // The sync may have brought the server's (older) flags back meanwhile, so this
            // set changed nothing and moved no state: not a sample.
            let r = other.recv(Duration::from_secs(5)).await?;
            let a = r.as_ref().map(|r| &r["methodResponses"][0][1]);
            if a.is_some_and(|a| a["oldState"] == a["newState"] && a["updated"].is_object()) {
                noop_sets += 1;
                continue;
            }
            bail!("no StateChange after Email/set: {r:?}");
        }
        jmap.push(ms(t0.elapsed()));
        other
            .recv(Duration::from_secs(10))
            .await?
            .context("no Email/set response")?;
        // The outbox replays it to Dovecot, and the watcher is told of it (within the
        // 100 ms flush) and resyncs: let that pass, so each set is timed on its own.
        ws.settle(Duration::from_millis(250)).await?;
        ws.pushes.clear();
    }
    print_table(
        &format!(
            "Email/set on one socket → StateChange on another socket of the user, {} sets \
             (ms; no mail server in the path; {noop_sets} sets that changed nothing skipped):",
            jmap.len()
        ),
        &mut [("Tidings: Email/set sent → StateChange", &mut jmap)],
    );
    Ok(())
}

/// Seconds since midnight UTC (the log's clock and ours are the same machine's).
fn day_seconds(t: SystemTime) -> f64 {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_nanos()) / 1e9
}

/// The time of day of a tracing log line (`2026-12-02T05:10:00.123456Z ...`, possibly
/// wrapped in ANSI colours), in seconds since midnight UTC.
fn line_seconds(line: &str) -> Option<f64> {
    let plain = common::plain(line);
    let stamp = plain.split_whitespace().next()?;
    let time = stamp.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}
