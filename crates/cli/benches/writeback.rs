//! Write-back: marking 1,000 messages read in one `Email/set` (request time, time until the
//! server has it, UID STORE commands sent), and the outbox draining 10,000 mixed changes,
//! each beside a plain IMAP client issuing the same changes as batched commands in the same
//! run. Prints Markdown for BENCHMARKS.md.
//!
//! `cargo bench -p cli --bench writeback` (TIDINGS_BENCH_MESSAGES, default 12000;
//! TIDINGS_BENCH_ROUNDS, default 20).

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, SeedMessage, corpus};

mod common;
use common::{Http, env_usize};

const USER: &str = "w@example.org";
const PEER: &str = "peer@example.org";
const PASS: &str = "pw";

impl Http {
    fn call(&mut self, method: &str, args: Value) -> Result<Value> {
        let body = json!({"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                          "methodCalls": [[method, args, "c"]]})
        .to_string();
        let r = self.post(&body)?["methodResponses"][0].clone();
        if r[0] == "error" {
            bail!("{method}: {}", r[1]);
        }
        Ok(r[1].clone())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn seen_count(c: &mut ImapClient) -> Result<usize> {
    let out = c.raw_command("UID SEARCH SEEN")?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("* SEARCH"))
        .map(|r| r.split_whitespace().count())
        .sum())
}

/// CPU time used so far by every thread of a process (`/proc/<pid>/task/*/schedstat`, in
/// ns): what the server spends on a request, independent of how loaded the machine is.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Whether the account's initial sync is over, bodies included (the Session's sync
/// capability leaves `syncing`), so no body fetch runs beside the measurements.
fn sync_done(port: u16) -> Result<bool> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET /jmap/session HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YmVuY2g6eA==\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: Value = serde_json::from_str(body)?;
    let status = &v["accounts"]["a1"]["accountCapabilities"]["urn:tidings:params:sync"]["status"];
    Ok(status == "ok")
}

fn store_lines(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("UID STORE"))
        .count()
}

fn main() -> Result<()> {
    let n = env_usize("TIDINGS_BENCH_MESSAGES", 12_000).max(11_000);
    let rounds = env_usize("TIDINGS_BENCH_ROUNDS", 20).max(2) & !1;
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    let seeded: Vec<SeedMessage> = (0..n)
        .map(|i| SeedMessage {
            raw: corpus::message("a@example.org", USER, &format!("w{i}"), "body"),
            flags: if i < 3000 {
                vec!["\\Seen".into()]
            } else {
                Vec::new()
            },
            internal_date: 1_700_000_000 + i as i64,
        })
        .collect();
    for u in [USER, PEER] {
        dovecot.add_user(u, PASS)?;
        dovecot.seed(u, "INBOX", &seeded)?;
        dovecot.seed(u, "Archive", &seeded[..1])?;
    }
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("t.toml");
    let log = dir.path().join("serve.log");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             [[user]]\nname = \"bench\"\npassword = \"x\"\n\
             [[account]]\nuser = \"bench\"\nname = \"w\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"none\"\nusername = \"{USER}\"\npassword = \"{PASS}\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.imap_port()
        ),
    )?;
    let bin = env!("CARGO_BIN_EXE_tidings");
    let mut serve = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error,imap_sync::write=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log)?))
        .spawn()?;
    let result = run(port, n, rounds, &dovecot, &log, serve.id());
    let _ = serve.kill();
    let _ = serve.wait();
    result
}

/// Every matching id, page by page (the server caps a page).
fn ids(h: &mut Http, filter: Value, limit: usize) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for _ in 0..1000 {
        let q = h.call(
            "Email/query",
            json!({"accountId": "a1", "filter": filter, "position": out.len(), "limit": 1000}),
        )?;
        let page: Vec<String> = q["ids"]
            .as_array()
            .context("ids")?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        if page.is_empty() || out.len() >= limit {
            break;
        }
        out.extend(page);
    }
    out.truncate(limit);
    Ok(out)
}

fn run(
    port: u16,
    n: usize,
    rounds: usize,
    dovecot: &Dovecot,
    log: &std::path::Path,
    pid: u32,
) -> Result<()> {
    // The initial sync, bodies included (nothing else runs beside the measurements).
    let t = Instant::now();
    let mut h = loop {
        if let Ok(mut h) = Http::connect(port, Duration::from_secs(60))
            && let Ok(v) = h.call("Mailbox/get", json!({"accountId": "a1"}))
            && v["list"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|m| m["role"] == "inbox" && m["totalEmails"] == n)
            })
            && sync_done(port).unwrap_or(false)
        {
            break h;
        }
        if t.elapsed() > Duration::from_secs(900) {
            bail!("initial sync did not finish");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(3));
    let inbox = h.call("Mailbox/get", json!({"accountId": "a1"}))?["list"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["role"] == "inbox").cloned())
        .context("inbox")?["id"]
        .clone();
    let archive = h.call("Mailbox/get", json!({"accountId": "a1"}))?["list"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["name"] == "Archive").cloned())
        .context("archive")?["id"]
        .clone();
    eprintln!("synced {n} in {:.1} s", t.elapsed().as_secs_f64());

    // 1. 1,000 messages marked read (and back) in one Email/set, `rounds` times.
    let unseen = ids(
        &mut h,
        json!({"inMailbox": inbox, "notKeyword": "$seen"}),
        n,
    )?;
    let thousand: Vec<String> = unseen[..1000].to_vec();
    let mut c = ImapClient::login(dovecot.imap_port(), USER, PASS)?;
    c.select("INBOX")?;
    let base_seen = seen_count(&mut c)?;
    let mut req = Vec::new();
    let mut req_cpu = Vec::new();
    let mut on_server = Vec::new();
    let stores_before = store_lines(log);
    for r in 0..rounds {
        let on = r % 2 == 0;
        let mut update = serde_json::Map::new();
        for id in &thousand {
            update.insert(
                id.clone(),
                json!({"keywords/$seen": if on { Value::Bool(true) } else { Value::Null }}),
            );
        }
        let want = if on { base_seen + 1000 } else { base_seen };
        let cpu = cpu_ns(pid);
        let t = Instant::now();
        let resp = h.call("Email/set", json!({"accountId": "a1", "update": update}))?;
        req.push(t.elapsed());
        req_cpu.push(Duration::from_nanos(cpu_ns(pid).saturating_sub(cpu)));
        if resp["updated"].as_object().map(|m| m.len()) != Some(1000) {
            bail!("not all updated: {}", resp["notUpdated"]);
        }
        loop {
            if seen_count(&mut c)? == want {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("round {r}: the server never got it");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        on_server.push(t.elapsed());
        // The next round starts once the worker has recorded the server's answer and the
        // watcher's resync of our own STORE is over (both take the store's lock): the
        // request is timed on its own, not queued behind the previous round's aftermath.
        for _ in 0..3000 {
            if h.call("Outbox/get", json!({"accountId": "a1"}))?["pending"] == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(300));
    let stores = store_lines(log) - stores_before;
    // The peer: the same change as one batched command.
    let mut peer = ImapClient::login(dovecot.imap_port(), PEER, PASS)?;
    peer.select("INBOX")?;
    let mut peer_t = Vec::new();
    for r in 0..rounds {
        let op = if r % 2 == 0 {
            "+FLAGS.SILENT"
        } else {
            "-FLAGS.SILENT"
        };
        let t = Instant::now();
        peer.store_flags("3001:4000", op, &["\\Seen"])?;
        peer_t.push(t.elapsed());
    }
    let (rq50, rq95) = (percentile(&mut req, 0.5), percentile(&mut req, 0.95));
    let (sv50, sv95) = (
        percentile(&mut on_server, 0.5),
        percentile(&mut on_server, 0.95),
    );
    let pr50 = percentile(&mut peer_t, 0.5);
    let (cpu50, cpu95) = (
        percentile(&mut req_cpu, 0.5),
        percentile(&mut req_cpu, 0.95),
    );
    println!("### Marking 1,000 messages read in one Email/set ({n} in INBOX, {rounds} rounds)\n");
    println!("| | p50 | p95 |");
    println!("|---|---|---|");
    println!(
        "| Email/set request (visible through JMAP) | {:.1} ms | {:.1} ms |",
        ms(rq50),
        ms(rq95)
    );
    println!(
        "| server CPU during the request (all threads) | {:.1} ms | {:.1} ms |",
        ms(cpu50),
        ms(cpu95)
    );
    println!(
        "| until the server has all 1,000 (second IMAP client polling) | {:.1} ms | {:.1} ms |",
        ms(sv50),
        ms(sv95)
    );
    println!(
        "| peer: one `UID STORE 3001:4000 +FLAGS.SILENT (\\Seen)` | {:.1} ms | |",
        ms(pr50)
    );
    println!(
        "\nUID STORE commands sent by the outbox: {stores} for {rounds} rounds ({:.1} per Email/set of 1,000, one mailbox); on the server {:.1}x the peer's single command; the request {:.2}x it.\n",
        stores as f64 / rounds as f64,
        sv50.as_secs_f64() / pr50.as_secs_f64().max(1e-6),
        rq50.as_secs_f64() / pr50.as_secs_f64().max(1e-6)
    );

    // 2. 10,000 mixed changes on distinct messages, through 10 Email/set calls; until the
    // outbox is empty.
    let seen = ids(
        &mut h,
        json!({"inMailbox": inbox, "hasKeyword": "$seen"}),
        n,
    )?;
    let unseen = ids(
        &mut h,
        json!({"inMailbox": inbox, "notKeyword": "$seen"}),
        n,
    )?;
    if seen.len() < 2000 || unseen.len() < 8000 {
        bail!(
            "unexpected state: {} seen, {} unseen",
            seen.len(),
            unseen.len()
        );
    }
    let mut changes: Vec<(String, Value)> = Vec::new();
    for id in &unseen[0..4000] {
        changes.push((id.clone(), json!({"keywords/$seen": true})));
    }
    for id in &seen[0..2000] {
        changes.push((id.clone(), json!({"keywords/$seen": null})));
    }
    for id in &unseen[4000..6000] {
        changes.push((id.clone(), json!({"keywords/$flagged": true})));
    }
    for id in &unseen[6000..7000] {
        changes.push((
            id.clone(),
            json!({"mailboxIds": {archive.as_str().unwrap_or(""): true}}),
        ));
    }
    let destroy: Vec<String> = unseen[7000..8000].to_vec();
    let cpu = cpu_ns(pid);
    let t = Instant::now();
    for chunk in changes.chunks(1000) {
        let update: serde_json::Map<String, Value> = chunk.iter().cloned().collect();
        h.call("Email/set", json!({"accountId": "a1", "update": update}))?;
    }
    h.call("Email/set", json!({"accountId": "a1", "destroy": destroy}))?;
    let queued = t.elapsed();
    loop {
        let o = h.call("Outbox/get", json!({"accountId": "a1"}))?;
        if o["pending"] == 0 {
            if o["failures"] != json!([]) {
                bail!("failures: {}", o["failures"]);
            }
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the outbox did not drain: {o}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let drained = t.elapsed();
    let drain_cpu = Duration::from_nanos(cpu_ns(pid).saturating_sub(cpu));
    // The peer: the same 10,000 changes as batched commands on its identical mailbox.
    let t = Instant::now();
    peer.select("INBOX")?;
    peer.store_flags("3001:7000", "+FLAGS.SILENT", &["\\Seen"])?;
    peer.store_flags("1:2000", "-FLAGS.SILENT", &["\\Seen"])?;
    peer.store_flags("7001:9000", "+FLAGS.SILENT", &["\\Flagged"])?;
    peer.move_uids("9001:10000", "Archive")?;
    peer.expunge_uids("10001:11000")?;
    let peer_mixed = t.elapsed();
    // Checked on the server by a second client.
    c.select("Archive")?;
    let archived = c.uids()?.len();
    c.select("INBOX")?;
    let left = c.uids()?.len();
    if archived != 1001 || left != n - 2000 {
        bail!("server state: Archive {archived}, INBOX {left}");
    }
    println!("### Outbox draining 10,000 mixed changes\n");
    println!(
        "4,000 + set $seen, 2,000 - $seen, 2,000 + $flagged, 1,000 moves, 1,000 destroys, each on a distinct message; 11 Email/set calls.\n"
    );
    println!("| | time | changes/s |");
    println!("|---|---|---|");
    println!(
        "| Email/set calls (all visible through JMAP) | {:.0} ms | {:.0} |",
        ms(queued),
        10_000.0 / queued.as_secs_f64()
    );
    println!(
        "| until the outbox is empty (on the server) | {:.0} ms | {:.0} |",
        ms(drained),
        10_000.0 / drained.as_secs_f64()
    );
    println!(
        "| server CPU until the outbox is empty (all threads) | {:.0} ms | |",
        ms(drain_cpu)
    );
    println!(
        "| peer: the same changes as 6 batched IMAP commands | {:.0} ms | {:.0} |",
        ms(peer_mixed),
        10_000.0 / peer_mixed.as_secs_f64()
    );
    println!(
        "\nOutbox drain / peer: {:.1}x\n",
        drained.as_secs_f64() / peer_mixed.as_secs_f64().max(1e-6)
    );
    Ok(())
}
