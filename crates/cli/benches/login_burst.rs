//! Memory under bursts of failed logins: `tidings serve` (this build, or any binary named by
//! TIDINGS_BENCH_PEER_BIN beside it, same run) takes TIDINGS_BENCH_BURSTS (default 10)
//! bursts of TIDINGS_BENCH_PARALLEL (default 300) parallel Basic logins with a wrong
//! password, each from its own loopback address (the client socket bound to 127.b.x.y),
//! half for a real user and half for unknown names. Measures the server's resident set
//! (/proc/PID/status VmRSS) before, at its highest during the bursts (sampled every 50 ms,
//! and VmHWM), and 2 s after the last burst, with the answers the clients got.
//!
//! Prints Markdown for BENCHMARKS.md: `cargo bench -p cli --bench login_burst`.

mod common;

use anyhow::{Context, Result, bail};
use common::{env_usize, proc_stats};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one login may take before the bench counts it as unanswered.
const LOGIN_LIMIT: Duration = Duration::from_secs(60);

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn basic(user: &str, pw: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// One GET of the Session resource from `from`; the status, or 0 when there was none.
async fn login(from: IpAddr, port: u16, authorization: String) -> u16 {
    let attempt = async {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(SocketAddr::new(from, 0))?;
        let mut c = s.connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        c.write_all(
            format!(
                "GET /jmap/session HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        c.read_to_end(&mut out).await?;
        let status = String::from_utf8_lossy(&out)
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        anyhow::Ok(status)
    };
    match tokio::time::timeout(LOGIN_LIMIT, attempt).await {
        Ok(Ok(s)) => s,
        _ => 0,
    }
}

struct Run {
    rss_before_kb: u64,
    rss_peak_kb: u64,
    hwm_kb: u64,
    rss_after_kb: u64,
    burst_secs: Vec<f64>,
    answers: BTreeMap<u16, usize>,
}

async fn run(bin: &str, bursts: usize, parallel: usize) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"right\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display()
        ),
    )?;
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let result = async {
        let start = Instant::now();
        while login(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            basic("alice", "right"),
        )
        .await
            != 200
        {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("{bin} never answered");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before_kb = proc_stats(pid)?.rss_kb;
        let peak = Arc::new(AtomicU64::new(rss_before_kb));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling) = (peak.clone(), sampling.clone());
            tokio::spawn(async move {
                while sampling.load(Ordering::SeqCst) {
                    if let Ok(s) = proc_stats(pid) {
                        peak.fetch_max(s.rss_kb, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let mut answers = BTreeMap::new();
        let mut burst_secs = Vec::new();
        for b in 0..bursts {
            let t = Instant::now();
            let tasks: Vec<_> = (0..parallel)
                .map(|i| {
                    let from = IpAddr::V4(Ipv4Addr::new(
                        127,
                        u8::try_from(b % 250 + 1).unwrap_or(1),
                        u8::try_from(i / 250).unwrap_or(0),
                        u8::try_from(i % 250 + 1).unwrap_or(1),
                    ));
                    let user = if i % 2 == 0 {
                        "alice".to_string()
                    } else {
                        format!("nobody{b}x{i}")
                    };
                    tokio::spawn(login(from, port, basic(&user, &format!("wrong{i}"))))
                })
                .collect();
            for t in tasks {
                *answers.entry(t.await.unwrap_or(0)).or_insert(0) += 1;
            }
            burst_secs.push(t.elapsed().as_secs_f64());
        }
        sampling.store(false, Ordering::SeqCst);
        let _ = sampler.await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_after_kb = proc_stats(pid)?.rss_kb;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let hwm_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmHWM")?;
        Ok(Run {
            rss_before_kb,
            rss_peak_kb: peak.load(Ordering::SeqCst),
            hwm_kb,
            rss_after_kb,
            burst_secs,
            answers,
        })
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let bursts = env_usize("TIDINGS_BENCH_BURSTS", 10);
    let parallel = env_usize("TIDINGS_BENCH_PARALLEL", 300);
    let mut bins = vec![(
        "tidings (this build)".to_string(),
        env!("CARGO_BIN_EXE_tidings").to_string(),
    )];
    if let Ok(peer) = std::env::var("TIDINGS_BENCH_PEER_BIN") {
        bins.push((format!("peer: {peer}"), peer));
    }
    println!(
        "{bursts} bursts of {parallel} parallel failed Basic logins, each from its own \
         loopback address; half for user alice, half for unknown names.\n"
    );
    println!(
        "| server | RSS before | highest RSS during | VmHWM | RSS 2 s after | burst time (median / max) | answers |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (name, bin) in bins {
        let mut r = run(&bin, bursts, parallel).await?;
        r.burst_secs.sort_by(f64::total_cmp);
        let median = r
            .burst_secs
            .get(r.burst_secs.len() / 2)
            .copied()
            .unwrap_or(0.0);
        let max = r.burst_secs.last().copied().unwrap_or(0.0);
        let answers: Vec<String> = r
            .answers
            .iter()
            .map(|(s, n)| {
                if *s == 0 {
                    format!("{n}× none")
                } else {
                    format!("{n}× {s}")
                }
            })
            .collect();
        println!(
            "| {name} | {:.0} MB | {:.0} MB | {:.0} MB | {:.0} MB | {median:.1} s / {max:.1} s | {} |",
            mb(r.rss_before_kb),
            mb(r.rss_peak_kb),
            mb(r.hwm_kb),
            mb(r.rss_after_kb),
            answers.join(", ")
        );
    }
    Ok(())
}
