//! The JMAP API on a large synced account, beside Dovecot's own IMAP answering the same
//! questions in the same run. Prints Markdown for BENCHMARKS.md.
//!
//! `cargo bench -p cli --bench jmap_api` (TIDINGS_BENCH_MESSAGES, default 100000;
//! TIDINGS_BENCH_SMALL, default 10000: a second account for the size comparison;
//! TIDINGS_BENCH_REQUESTS, default 200; TIDINGS_BENCH_CLIENTS, default 200, and
//! TIDINGS_BENCH_SECONDS, default 30, for the concurrent run).
//!
//! - first screen: `Email/query` INBOX by receivedAt desc, limit 50, + `Email/get` of those
//!   50 with preview, one HTTP request; beside IMAP `UID SORT (REVERSE ARRIVAL)` + `UID FETCH`
//!   of the same 50 (envelope, flags);
//! - full text: `Email/query` with a `text` filter over the account; beside IMAP
//!   `UID SEARCH TEXT` in INBOX (Dovecot without an FTS plugin scans);
//! - `Email/changes` after 10 new messages, on the large account and on a small one;
//! - many clients at once, each on its own connection, issuing the first-screen request
//!   for a fixed time; beside as many IMAP clients as Dovecot's default process limit
//!   allows (90) issuing the same SORT + FETCH.

use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, corpus};

mod common;
use common::{Http, env_usize};

const USER: &str = "big@example.org";
const PASS: &str = "big";
const SMALL_USER: &str = "small@example.org";

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let n = env_usize("TIDINGS_BENCH_MESSAGES", 100_000);
    let n_small = env_usize("TIDINGS_BENCH_SMALL", 10_000);
    let requests = env_usize("TIDINGS_BENCH_REQUESTS", 200).max(10);
    let clients = env_usize("TIDINGS_BENCH_CLIENTS", 200).max(1);
    let seconds = env_usize("TIDINGS_BENCH_SECONDS", 30).max(1);
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    dovecot.add_user(SMALL_USER, PASS)?;
    let t = Instant::now();
    {
        let msgs = corpus::generate(4242, n, &["INBOX", "Archive"]);
        dovecot.seed_corpus(USER, &msgs)?;
        let msgs = corpus::generate(4343, n_small, &["INBOX", "Archive"]);
        dovecot.seed_corpus(SMALL_USER, &msgs)?;
    }
    eprintln!(
        "seeded {n} + {n_small} messages in {:.1} s",
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
             port = {}\nsecurity = \"none\"\nusername = \"{USER}\"\npassword = \"{PASS}\"\n\
             [[account]]\nuser = \"bench\"\nname = \"small\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"none\"\nusername = \"{SMALL_USER}\"\npassword = \"{PASS}\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.imap_port(),
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
    // Wait for the initial sync: INBOX complete through the API.
    let t = Instant::now();
    let inbox_count = loop {
        if let Ok(mut h) = Http::connect(port, Duration::from_secs(30))
            && let Ok(v) = h.post(
                r#"{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],
                "methodCalls":[["Mailbox/get",{"accountId":"a1","properties":["role","totalEmails"]},"m"],
                ["Email/query",{"accountId":"a1","calculateTotal":true,"limit":0},"q"]]}"#,
            )
        {
            let total = v["methodResponses"][1][1]["total"].as_u64().unwrap_or(0);
            if total as usize >= n {
                let inbox = v["methodResponses"][0][1]["list"]
                    .as_array()
                    .and_then(|l| l.iter().find(|m| m["role"] == "inbox").cloned())
                    .context("inbox")?;
                break inbox["totalEmails"].as_u64().unwrap_or(0);
            }
        }
        if t.elapsed() > Duration::from_secs(1800) {
            let _ = serve.kill();
            bail!("initial sync did not finish");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "headers synced in {:.1} s; INBOX has {inbox_count}",
        t.elapsed().as_secs_f64()
    );
    // Measure only once the bodies are in too, so nothing else runs beside the requests.
    loop {
        let (bodies, text) = common::stored_bodies(std::path::Path::new(bin), &config)?;
        if bodies >= n + n_small {
            break;
        }
        if t.elapsed() > Duration::from_secs(3600) {
            let _ = serve.kill();
            bail!("bodies never finished: {text}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("bodies synced after {:.1} s", t.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(2));

    let mut http = Http::connect(port, Duration::from_secs(30))?;
    let inbox_id = {
        let v = http.post(
            r#"{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],
            "methodCalls":[["Mailbox/query",{"accountId":"a1","filter":{"role":"inbox"}},"m"]]}"#,
        )?;
        v["methodResponses"][0][1]["ids"][0]
            .as_str()
            .context("inbox id")?
            .to_string()
    };
    let first_screen = format!(
        r##"{{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],"methodCalls":[
        ["Email/query",{{"accountId":"a1","filter":{{"inMailbox":"{inbox_id}"}},"sort":[{{"property":"receivedAt","isAscending":false}}],"limit":50}},"q"],
        ["Email/get",{{"accountId":"a1","#ids":{{"resultOf":"q","name":"Email/query","path":"/ids"}},
          "properties":["threadId","mailboxIds","keywords","from","subject","receivedAt","preview","hasAttachment"]}},"g"]]}}"##
    );
    let mut jmap_first = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let v = http.post(&first_screen)?;
        jmap_first.push(t.elapsed());
        if v["methodResponses"][1][1]["list"]
            .as_array()
            .map(|l| l.len())
            != Some(50)
        {
            bail!("first screen returned {}", v["methodResponses"][1][1]);
        }
    }

    // The same through Dovecot's IMAP: SORT the INBOX newest first, FETCH the first 50.
    let mut imap = ImapClient::login(dovecot.imap_port(), USER, PASS)?;
    imap.set_timeout(Duration::from_secs(600))?;
    imap.select("INBOX")?;
    // Dovecot builds its sort index on the first SORT; both sides are measured warm.
    imap.raw_command("UID SORT (REVERSE ARRIVAL) UTF-8 ALL")?;
    let mut imap_first = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let sorted = imap.raw_command("UID SORT (REVERSE ARRIVAL) UTF-8 ALL")?;
        let uids: Vec<&str> = sorted
            .lines()
            .find(|l| l.starts_with("* SORT"))
            .map(|l| l.split_whitespace().skip(2).take(50).collect())
            .unwrap_or_default();
        if uids.len() != 50 {
            bail!("IMAP SORT gave {} uids", uids.len());
        }
        imap.raw_command(&format!(
            "UID FETCH {} (UID FLAGS ENVELOPE)",
            uids.join(",")
        ))?;
        imap_first.push(t.elapsed());
    }

    // Full text over the account; IMAP searches the INBOX (one mailbox) for the same word.
    let word = "budget";
    let text_query = format!(
        r#"{{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],"methodCalls":[
        ["Email/query",{{"accountId":"a1","filter":{{"text":"{word}"}},"limit":50,"calculateTotal":true}},"q"]]}}"#
    );
    let fts_runs = (requests / 4).max(10);
    let mut jmap_text = Vec::new();
    let mut hits = 0;
    for _ in 0..fts_runs {
        let t = Instant::now();
        let v = http.post(&text_query)?;
        jmap_text.push(t.elapsed());
        hits = v["methodResponses"][0][1]["total"].as_u64().unwrap_or(0);
    }
    // The first page of hits without a total: what a search box shows first.
    let text_page = text_query.replace(r#","calculateTotal":true"#, "");
    let mut jmap_text_page = Vec::new();
    for _ in 0..fts_runs {
        let t = Instant::now();
        let v = http.post(&text_page)?;
        jmap_text_page.push(t.elapsed());
        if v["methodResponses"][0][1]["ids"]
            .as_array()
            .map(|a| a.len())
            != Some(50)
        {
            bail!("text query page: {}", v["methodResponses"][0][1]);
        }
    }
    let mut imap_text = Vec::new();
    // Each IMAP scan takes seconds: three are enough for a median.
    for _ in 0..3 {
        let t = Instant::now();
        imap.raw_command(&format!("UID SEARCH TEXT {word}"))?;
        imap_text.push(t.elapsed());
    }
    imap.logout()?;
    eprintln!(
        "first screen p50 {:.2} ms (IMAP {:.2} ms); text page p50 {:.2} ms, with total {:.2} ms, \
         {hits} hits (IMAP {:.2} ms)",
        ms(percentile(&mut jmap_first.clone(), 0.5)),
        ms(percentile(&mut imap_first.clone(), 0.5)),
        ms(percentile(&mut jmap_text_page.clone(), 0.5)),
        ms(percentile(&mut jmap_text.clone(), 0.5)),
        ms(percentile(&mut imap_text.clone(), 0.5)),
    );

    // Email/changes after 10 new messages, on both accounts; beside IMAP CONDSTORE's
    // `UID FETCH 1:* (FLAGS) (CHANGEDSINCE m)` on the INBOX that got them.
    let mut changes_rows = Vec::new();
    for (account, user, size) in [("a1", USER, n), ("a2", SMALL_USER, n_small)] {
        let (j, i) = changes_after_ten(&mut http, &dovecot, account, user, requests)?;
        eprintln!(
            "Email/changes at {size}: p50 {:.2} ms (IMAP {:.2} ms)",
            ms(percentile(&mut j.clone(), 0.5)),
            ms(percentile(&mut i.clone(), 0.5))
        );
        changes_rows.push((size, j, i));
    }

    // Many clients at once, each on its own keep-alive connection, for a fixed time.
    let concurrent = concurrent_jmap(port, &first_screen, clients, seconds)?;
    eprintln!(
        "{clients} clients: {} requests, {} errors in {:.1} s",
        concurrent.latencies.len(),
        concurrent.errors,
        concurrent.elapsed.as_secs_f64()
    );
    let imap_clients = clients.min(90);
    let concurrent_imap = concurrent_imap(dovecot.imap_port(), imap_clients, seconds)?;
    serve.kill()?;
    serve.wait()?;

    println!(
        "\n{n} messages ({inbox_count} in INBOX); {requests} requests each, keep-alive HTTP/1.1 and one IMAP connection\n"
    );
    println!(
        "| request | tidings p50 | p99 | Dovecot IMAP p50 | p99 | ratio p50 |\n|---|---|---|---|---|---|"
    );
    let row = |name: &str, t: &mut Vec<Duration>, i: &mut Vec<Duration>| {
        let (tp50, tp99) = (percentile(t, 0.5), percentile(t, 0.99));
        let (ip50, ip99) = (percentile(i, 0.5), percentile(i, 0.99));
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} |",
            ms(tp50),
            ms(tp99),
            ms(ip50),
            ms(ip99),
            ms(tp50) / ms(ip50)
        );
    };
    row(
        "INBOX newest 50 with preview (Email/query + Email/get)",
        &mut jmap_first,
        &mut imap_first,
    );
    let mut imap_text_again = imap_text.clone();
    row(
        &format!("full text \"{word}\", first 50 of {hits} hits (IMAP: INBOX only)"),
        &mut jmap_text_page,
        &mut imap_text_again,
    );
    row(
        "the same with calculateTotal",
        &mut jmap_text,
        &mut imap_text,
    );
    println!(
        "\n| Email/changes after 10 new messages | tidings p50 | p99 | IMAP CHANGEDSINCE p50 | p99 | ratio p50 |\n|---|---|---|---|---|---|"
    );
    for (size, mut j, mut i) in changes_rows {
        let (tp50, tp99) = (percentile(&mut j, 0.5), percentile(&mut j, 0.99));
        let (ip50, ip99) = (percentile(&mut i, 0.5), percentile(&mut i, 0.99));
        println!(
            "| account of {size} messages | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} |",
            ms(tp50),
            ms(tp99),
            ms(ip50),
            ms(ip99),
            ms(tp50) / ms(ip50)
        );
    }
    println!(
        "\n| {seconds} s of first screens | clients | requests | errors | per second | p50 | p99 |\n|---|---|---|---|---|---|---|"
    );
    for (name, c, mut r) in [
        ("tidings (JMAP)", clients, concurrent),
        ("Dovecot IMAP (SORT + FETCH)", imap_clients, concurrent_imap),
    ] {
        let done = r.latencies.len();
        let (p50, p99) = if done > 0 {
            (
                ms(percentile(&mut r.latencies, 0.5)),
                ms(percentile(&mut r.latencies, 0.99)),
            )
        } else {
            (0.0, 0.0)
        };
        println!(
            "| {name} | {c} | {done} | {} | {:.1} | {p50:.2} ms | {p99:.2} ms |",
            r.errors,
            done as f64 / r.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// Email/changes after 10 deliveries to `user` (JMAP account `account`), timed
/// `requests` times, and the same question through IMAP CONDSTORE.
fn changes_after_ten(
    http: &mut Http,
    dovecot: &Dovecot,
    account: &str,
    user: &str,
    requests: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let state = {
        let v = http.post(&format!(
            r#"{{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],
            "methodCalls":[["Email/get",{{"accountId":"{account}","ids":[]}},"g"]]}}"#
        ))?;
        v["methodResponses"][0][1]["state"]
            .as_str()
            .context("state")?
            .to_string()
    };
    let mut imap = ImapClient::login(dovecot.imap_port(), user, PASS)?;
    imap.set_timeout(Duration::from_secs(600))?;
    let selected = imap.raw_command("SELECT INBOX (CONDSTORE)")?;
    let modseq: u64 = selected
        .split("HIGHESTMODSEQ ")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .and_then(|m| m.trim().parse().ok())
        .context("HIGHESTMODSEQ")?;
    for i in 0..10 {
        dovecot.deliver(
            user,
            &corpus::message("x@example.org", user, &format!("new {i}"), "fresh"),
        )?;
    }
    let changes = format!(
        r#"{{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],"methodCalls":[
        ["Email/changes",{{"accountId":"{account}","sinceState":"{state}"}},"c"]]}}"#
    );
    let t = Instant::now();
    loop {
        let v = http.post(&changes)?;
        if v["methodResponses"][0][1]["created"]
            .as_array()
            .map(|c| c.len())
            == Some(10)
        {
            break;
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!(
                "the 10 deliveries never showed: {}",
                v["methodResponses"][0]
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut jmap = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        http.post(&changes)?;
        jmap.push(t.elapsed());
    }
    imap.raw_command("NOOP")?;
    let fetch = format!("UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE {modseq})");
    let mut out = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let r = imap.raw_command(&fetch)?;
        out.push(t.elapsed());
        if r.matches("FETCH (").count() < 10 {
            bail!("CHANGEDSINCE gave {r}");
        }
    }
    imap.logout()?;
    Ok((jmap, out))
}

/// What one concurrent run did.
struct Concurrent {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

/// `clients` threads, each on its own keep-alive connection, posting `body` until
/// `seconds` have passed. A request that fails (status, parse, not 50 Emails) counts as an
/// error and the client reconnects.
fn concurrent_jmap(port: u16, body: &str, clients: usize, seconds: usize) -> Result<Concurrent> {
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let body = body.to_string();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                let mut http = Http::connect(port, Duration::from_secs(30)).ok();
                while Instant::now() < deadline {
                    let Some(h) = http.as_mut() else {
                        errors += 1;
                        std::thread::sleep(Duration::from_millis(10));
                        http = Http::connect(port, Duration::from_secs(30)).ok();
                        continue;
                    };
                    let t = Instant::now();
                    match h.post(&body) {
                        Ok(v)
                            if v["methodResponses"][1][1]["list"]
                                .as_array()
                                .map(|l| l.len())
                                == Some(50) =>
                        {
                            lat.push(t.elapsed())
                        }
                        _ => {
                            errors += 1;
                            http = Http::connect(port, Duration::from_secs(30)).ok();
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut out = Concurrent {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for h in handles {
        let (l, e) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        out.latencies.extend(l);
        out.errors += e;
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

/// The same load on Dovecot: each client logs in, selects INBOX and repeats `UID SORT
/// (REVERSE ARRIVAL)` + `UID FETCH` of the first 50.
fn concurrent_imap(port: u16, clients: usize, seconds: usize) -> Result<Concurrent> {
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                let Ok(mut imap) = ImapClient::login(port, USER, PASS) else {
                    return (lat, 1);
                };
                if imap.set_timeout(Duration::from_secs(120)).is_err()
                    || imap.select("INBOX").is_err()
                {
                    return (lat, 1);
                }
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = (|| -> Result<()> {
                        let sorted = imap.raw_command("UID SORT (REVERSE ARRIVAL) UTF-8 ALL")?;
                        let uids: Vec<&str> = sorted
                            .lines()
                            .find(|l| l.starts_with("* SORT"))
                            .map(|l| l.split_whitespace().skip(2).take(50).collect())
                            .unwrap_or_default();
                        if uids.len() != 50 {
                            bail!("SORT gave {} uids", uids.len());
                        }
                        imap.raw_command(&format!(
                            "UID FETCH {} (UID FLAGS ENVELOPE)",
                            uids.join(",")
                        ))?;
                        Ok(())
                    })();
                    match ok {
                        Ok(()) => lat.push(t.elapsed()),
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
                let _ = imap.logout();
                (lat, errors)
            })
        })
        .collect();
    let mut out = Concurrent {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for h in handles {
        let (l, e) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        out.latencies.extend(l);
        out.errors += e;
    }
    out.elapsed = start.elapsed();
    Ok(out)
}
