//! The unified Inbox of three accounts in Debian's headless Chromium
//! (`web/e2e/bench-unified.mjs`): navigation start to the first rows on screen for a user
//! with three accounts opening the unified Inbox, beside a user with one account (the
//! same mailbox as the first of the three) opening its Inbox, in the same run. Each
//! account's INBOX holds TIDINGS_BENCH_MESSAGES (default 10000) messages, synced (headers
//! and bodies) by `tidings serve` from the private Dovecot before anything is measured.
//! Prints Markdown for BENCHMARKS.md.
//!
//! `cargo bench -p cli --bench web_unified` (needs web/dist built before the build,
//! web/node_modules and /usr/bin/chromium).

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, corpus};

const USERS: [&str; 3] = ["one@example.org", "two@example.org", "three@example.org"];
const PASS: &str = "pw";

fn account(user: &str, name: &str, login: &str, imap_port: u16) -> String {
    format!(
        "[[account]]\nuser = \"{user}\"\nname = \"{name}\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
         port = {imap_port}\nsecurity = \"none\"\nusername = \"{login}\"\npassword = \"{PASS}\"\n"
    )
}

fn main() -> Result<()> {
    let n: usize = std::env::var("TIDINGS_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web");
    if !web.join("dist/index.html").exists() || !web.join("node_modules").exists() {
        bail!("build the web client first: cd web && npm ci && npm run build");
    }
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    let t = Instant::now();
    for (i, u) in USERS.iter().enumerate() {
        dovecot.add_user(u, PASS)?;
        let seed = 7000 + u64::try_from(i)?;
        dovecot.seed_corpus(u, &corpus::generate(seed, n, &["INBOX"]))?;
    }
    eprintln!(
        "seeded 3 × {n} messages in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("t.toml");
    let imap = dovecot.imap_port();
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             [[user]]\nname = \"bench\"\npassword = \"x\"\n\
             [[user]]\nname = \"single\"\npassword = \"x\"\n{}{}{}{}",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            account("bench", "One", USERS[0], imap),
            account("bench", "Two", USERS[1], imap),
            account("bench", "Three", USERS[2], imap),
            account("single", "One", USERS[0], imap),
        ),
    )?;
    let bin = env!("CARGO_BIN_EXE_tidings");
    let mut serve = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()?;
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(120) {
            let _ = serve.kill();
            bail!("tidings serve never listened on {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every account's headers and bodies, so nothing else runs beside the measurement.
    let t = Instant::now();
    loop {
        let out = Command::new(bin)
            .args(["account", "list", "--config"])
            .arg(&config)
            .env("RUST_LOG", "error")
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // One line per account, each ending "..., N bodies".
        let done = text
            .lines()
            .filter(|l| {
                l.split(", ").any(|p| {
                    p.trim()
                        .strip_suffix(" bodies")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .is_some_and(|b| b >= n)
                })
            })
            .count();
        if done >= 4 {
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
    let out = Command::new("node")
        .arg("e2e/bench-unified.mjs")
        .current_dir(&web)
        .env("TIDINGS_URL", format!("http://127.0.0.1:{port}"))
        .stderr(Stdio::inherit())
        .output()
        .context("running node")?;
    let _ = serve.kill();
    let _ = serve.wait();
    if !out.status.success() {
        bail!("the browser benchmark failed");
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    eprintln!("{v}");
    let f = |who: &str, key: &str| {
        v[who][key]
            .as_f64()
            .map(|x| format!("{x:.1} ms"))
            .unwrap_or_else(|| "?".into())
    };
    println!(
        "| first {} rows on screen | one account, its Inbox | three accounts, unified Inbox | goal |",
        v["rows"]
    );
    println!("|---|---|---|---|");
    println!(
        "| navigation, cold cache | {} | {} | ≤ 400 ms (unified) |",
        f("single", "coldMs"),
        f("unified", "coldMs")
    );
    println!(
        "| navigation, warm cache (median) | {} | {} | ≤ 400 ms (unified) |",
        f("single", "warmMedianMs"),
        f("unified", "warmMedianMs")
    );
    println!(
        "| accounts among the rows on screen | – | {} | 3 |",
        v["unified"]["accountsOnScreen"]
    );
    Ok(())
}
