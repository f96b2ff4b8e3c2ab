//! Opening a message whose body the sync has not fetched yet, while a 100,000-message
//! initial sync runs on the same account: `Email/get` with bodyValues of a 20 KB message
//! (`tidings serve` fetches it on its priority lane), beside the same `UID FETCH uid
//! BODY.PEEK[]` by a bare IMAP client (already logged in, mailbox selected: the floor) in
//! the same run, on the same private Dovecot. Prints a Markdown table for BENCHMARKS.md.
//!
//! The big corpus is in INBOX and the probe messages in a mailbox synced after it, so while
//! the probes run the sync is in its INBOX body pass: the probes' headers are stored,
//! their bodies are not, and the background pass is busy on the same account.
//!
//! `cargo bench -p cli --bench open_unfetched` (TIDINGS_BENCH_MESSAGES, default 100000;
//! TIDINGS_BENCH_PROBES, probes per side, default 100; TIDINGS_BENCH_SERVE_LOG, the
//! server's RUST_LOG, default error).

mod common;

use anyhow::{Context, Result, bail};
use common::{Http, env_usize, pct};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, SeedMessage, corpus};

const USER: &str = "bench@example.org";
const PASS: &str = "bench";
const PROBES: &str = "Probes";

/// A ~20 KB text message, different for each `i`, with a marker word to check the answer.
fn probe(i: usize) -> Vec<u8> {
    let mut body = String::with_capacity(21_000);
    let mut n = 0usize;
    while body.len() < 20_000 {
        body.push_str(&format!(
            "Line {n} of probe {i}: quarterly figures, minutes and the plan for next week.\r\n"
        ));
        n += 1;
    }
    body.push_str(&format!("marker{i}\r\n"));
    corpus::message("carol@example.net", USER, &format!("Probe {i}"), &body)
}

/// Bodies stored so far, from `tidings account list` ("..., N bodies").
fn bodies_stored(bin: &str, config: &std::path::Path) -> Result<usize> {
    let out = Command::new(bin)
        .args(["account", "list", "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split(", ").find_map(|p| {
                p.trim()
                    .strip_suffix(" bodies")
                    .and_then(|n| n.trim().parse::<usize>().ok())
            })
        })
        .sum())
}

fn main() -> Result<()> {
    let n = env_usize("TIDINGS_BENCH_MESSAGES", 100_000);
    let probes = env_usize("TIDINGS_BENCH_PROBES", 100).max(2);
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    let t = Instant::now();
    {
        let msgs = corpus::generate(4242, n, &["INBOX"]);
        dovecot.seed_corpus(USER, &msgs)?;
    }
    // Probe i for Tidings, probe probes + i for the bare client: each side opens messages
    // nobody has read before.
    let seeded: Vec<SeedMessage> = (0..2 * probes)
        .map(|i| SeedMessage {
            raw: probe(i),
            flags: vec![],
            internal_date: corpus::CORPUS_END + i as i64,
        })
        .collect();
    dovecot.seed(USER, PROBES, &seeded)?;
    eprintln!(
        "seeded {n} + {} messages in {:.1} s",
        2 * probes,
        t.elapsed().as_secs_f64()
    );

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
            dovecot.imap_port(),
        ),
    )?;
    let bin = env!("CARGO_BIN_EXE_tidings");
    let mut serve = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("TIDINGS_BENCH_SERVE_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdout(Stdio::null())
        .spawn()?;
    let result = measure(bin, &config, port, &dovecot, n, probes);
    let _ = serve.kill();
    let _ = serve.wait();
    result
}

fn measure(
    bin: &str,
    config: &std::path::Path,
    port: u16,
    dovecot: &Dovecot,
    n: usize,
    probes: usize,
) -> Result<()> {
    // Wait for the probes' headers (synced after INBOX's): their Email ids, oldest first.
    let t = Instant::now();
    let ids: Vec<String> = loop {
        if let Ok(mut h) = Http::connect(port, Duration::from_secs(30))
            && let Ok(v) = h.post(
                r#"{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],
                "methodCalls":[["Mailbox/get",{"accountId":"a1","properties":["name"]},"m"]]}"#,
            )
            && let Some(mailbox) = v["methodResponses"][0][1]["list"]
                .as_array()
                .and_then(|l| l.iter().find(|m| m["name"] == PROBES))
                .and_then(|m| m["id"].as_str())
            && let Ok(v) = h.post(&format!(
                r#"{{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],
                "methodCalls":[["Email/query",{{"accountId":"a1","filter":{{"inMailbox":"{mailbox}"}},
                 "sort":[{{"property":"receivedAt","isAscending":true}}],"limit":1000}},"q"]]}}"#
            ))
            && let Some(list) = v["methodResponses"][0][1]["ids"].as_array()
            && list.len() >= 2 * probes
        {
            break list
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect();
        }
        if t.elapsed() > Duration::from_secs(1800) {
            bail!("the probes' headers never synced");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let before = bodies_stored(bin, config)?;
    eprintln!(
        "headers synced in {:.1} s; {before} of {} bodies stored when the probes start",
        t.elapsed().as_secs_f64(),
        n + 2 * probes
    );

    let mut imap = ImapClient::login(dovecot.imap_port(), USER, PASS)?;
    imap.select(PROBES)?;
    let uids = imap.uids()?;
    if uids.len() < 2 * probes {
        bail!("the bare client sees {} probes", uids.len());
    }
    let mut http = Http::connect(port, Duration::from_secs(60))?;
    let (mut tidings, mut bare) = (Vec::new(), Vec::new());
    for i in 0..probes {
        let body = format!(
            r#"{{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],
            "methodCalls":[["Email/get",{{"accountId":"a1","ids":["{}"],
             "properties":["subject","from","receivedAt","preview","textBody","htmlBody","attachments","bodyValues"],
             "fetchTextBodyValues":true,"fetchHTMLBodyValues":true}},"g"]]}}"#,
            ids[i]
        );
        let t = Instant::now();
        let v = http.post(&body)?;
        tidings.push(t.elapsed().as_secs_f64() * 1000.0);
        let e = &v["methodResponses"][0][1]["list"][0];
        let part = e["textBody"][0]["partId"].as_str().context("textBody")?;
        let text = e["bodyValues"][part]["value"].as_str().unwrap_or("");
        if !text.contains(&format!("marker{i}")) {
            bail!("probe {i} answered without its body: {v}");
        }

        let uid = uids[probes + i];
        let t = Instant::now();
        let got = imap.raw_command(&format!("UID FETCH {uid} BODY.PEEK[]"))?;
        bare.push(t.elapsed().as_secs_f64() * 1000.0);
        if !got.contains(&format!("marker{}", probes + i)) {
            bail!("the bare client's probe {i} came without its body");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = bodies_stored(bin, config)?;
    if after >= n {
        eprintln!("warning: the body pass finished during the probes ({after} stored)");
    }
    println!(
        "Opening a 20 KB message not fetched yet, {probes} probes per side, while the initial \
         sync of {n} messages runs ({before} -> {after} bodies stored during the probes), ms\n"
    );
    println!("| measure | p50 | p95 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        (
            "Tidings: Email/get with bodyValues (fetched on demand)",
            &mut tidings,
        ),
        ("bare IMAP client: UID FETCH BODY.PEEK[] (peer)", &mut bare),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
            pct(v, 50.0),
            pct(v, 95.0),
            pct(v, 99.0),
            pct(v, 100.0)
        );
    }
    println!();
    Ok(())
}
