//! The web client's performance goals in Debian's headless Chromium, measured with the
//! Performance API by `web/e2e/bench.mjs`, on an INBOX of TIDINGS_BENCH_MESSAGES (default
//! 100000) synced by `tidings serve` from the private Dovecot. Prints Markdown for
//! BENCHMARKS.md.
//!
//! `cargo bench -p cli --bench web_client` (needs web/dist built before the build,
//! web/node_modules and /usr/bin/chromium, as `./scripts/test` provides).
//!
//! The peer is the floor any JMAP web client has: the same first-screen request
//! (`Email/query` + `Email/get`, one HTTP request) fetched by the page itself.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, corpus};

const USER: &str = "big@example.org";
const PASS: &str = "big";

fn main() -> Result<()> {
    let n: usize = std::env::var("TIDINGS_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web");
    if !web.join("dist/index.html").exists() || !web.join("node_modules").exists() {
        bail!("build the web client first: cd web && npm ci && npm run build");
    }
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    let t = Instant::now();
    {
        let msgs = corpus::generate(4242, n, &["INBOX"]);
        dovecot.seed_corpus(USER, &msgs)?;
    }
    eprintln!("seeded {n} messages in {:.1} s", t.elapsed().as_secs_f64());
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             [[user]]\nname = \"bench\"\npassword = \"x\"\n\
             [[account]]\nuser = \"bench\"\nname = \"big\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
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
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()?;
    // Wait until it listens: it has then written its key file, which the `account list`
    // below would otherwise race to create (and read half written).
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(120) {
            let _ = serve.kill();
            bail!("tidings serve never listened on {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Wait for headers and bodies, so nothing else runs beside the measurement.
    let t = Instant::now();
    loop {
        let out = Command::new(bin)
            .args(["account", "list", "--config"])
            .arg(&config)
            .env("RUST_LOG", "error")
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let bodies: usize = text
            .split(", ")
            .find_map(|p| {
                p.trim()
                    .strip_suffix(" bodies")
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0);
        if bodies >= n {
            break;
        }
        if t.elapsed() > Duration::from_secs(3600) {
            let _ = serve.kill();
            bail!("the sync never finished: {text}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("synced in {:.1} s", t.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(2));
    // For profiling by hand: keep the synced server up (at most the given seconds, or
    // until the file `hold` beside the config is removed) before measuring.
    if let Some(secs) = std::env::var("TIDINGS_BENCH_HOLD")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let flag = dir.path().join("hold");
        std::fs::write(&flag, b"")?;
        eprintln!(
            "holding for {secs} s: http://127.0.0.1:{port}/ (bench / x); rm {} to go on",
            flag.display()
        );
        let t = Instant::now();
        while flag.exists() && t.elapsed() < Duration::from_secs(secs) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut results = Vec::new();
    for threads in ["0", "1"] {
        let out = Command::new("node")
            .arg("e2e/bench.mjs")
            .current_dir(&web)
            .env("TIDINGS_URL", format!("http://127.0.0.1:{port}"))
            .env("TIDINGS_USER", "bench")
            .env("TIDINGS_PASSWORD", "x")
            .env("BENCH_THREADS", threads)
            .stderr(Stdio::inherit())
            .output()
            .context("running node")?;
        if !out.status.success() {
            let _ = serve.kill();
            bail!("the browser benchmark failed");
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        // Everything measured, including the start-up breakdown per navigation.
        eprintln!("conversations={threads}: {v}");
        results.push((threads, v));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    println!("| measure | single messages | conversations | goal |");
    println!("|---|---|---|---|");
    let row = |name: &str, key: &str, unit: &str, goal: &str| {
        let f = |v: &serde_json::Value| {
            v[key]
                .as_f64()
                .map(|x| format!("{x:.1}{unit}"))
                .unwrap_or_else(|| "?".into())
        };
        println!(
            "| {name} | {} | {} | {goal} |",
            f(&results[0].1),
            f(&results[1].1)
        );
    };
    row("list rows (total)", "total", "", "");
    row(
        "navigation to 50 rows on screen, cold cache",
        "navigationColdMs",
        " ms",
        "≤ 500 ms",
    );
    row(
        "the same, warm cache (median)",
        "navigationWarmMedianMs",
        " ms",
        "≤ 500 ms",
    );
    row(
        "floor: the first-screen JMAP request from the page (median)",
        "floorMs",
        " ms",
        "",
    );
    row(
        "opening a message, all opens (median)",
        "openMedianMs",
        " ms",
        "≤ 100 ms",
    );
    row("opening a message (p95)", "openP95Ms", " ms", "");
    row(
        "opening a message not fetched ahead (median)",
        "openNotAheadMedianMs",
        " ms",
        "≤ 100 ms",
    );
    row(
        "opening a message not fetched ahead (p95)",
        "openNotAheadP95Ms",
        " ms",
        "",
    );
    row(
        "opening the next message, fetched ahead (median)",
        "openAheadMedianMs",
        " ms",
        "≤ 100 ms",
    );
    row(
        "first-screen JavaScript, compressed",
        "firstScreenJsGzipBytes",
        " B",
        "≤ 150 KB",
    );
    row("scroll: frames", "scrollFrames", "", "");
    row(
        "scroll: seconds for the whole list",
        "scrollSeconds",
        " s",
        "",
    );
    row(
        "scroll: frame time p50",
        "scrollFrameP50Ms",
        " ms",
        "16.7 ms",
    );
    row("scroll: frame time p95", "scrollFrameP95Ms", " ms", "");
    row("scroll: frame time p99", "scrollFrameP99Ms", " ms", "");
    row("scroll: frames over 20 ms", "scrollFramesOver20Ms", "", "");
    row("scroll: long tasks", "longTasks", "", "0 over 50 ms");
    row("scroll: longest task", "longestTaskMs", " ms", "≤ 50 ms");
    Ok(())
}
