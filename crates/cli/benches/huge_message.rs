//! Memory of Email/get on a huge message: four clients ask at once for the text body value
//! of one 200 MB message. Reported: the server's resident set above idle at its peak, as a
//! multiple of the message size (goal: at most 2x), beside the peer: Dovecot's `imap`
//! processes answering the same four reads (`UID FETCH BODY.PEEK[TEXT]`) in the same run.
//!
//! `cargo bench -p cli --bench huge_message`; TIDINGS_BENCH_HUGE_MB (default 200) and
//! TIDINGS_BENCH_CLIENTS (default 4) change the size and the number of parallel requests.

mod common;

use anyhow::{Context, Result, bail};
use common::{env_usize, proc_stats};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, SeedMessage};

const USER: &str = "huge@example.org";
const PASS: &str = "pw";

/// A text/plain message of about `mb` MiB: 8-bit UTF-8 lines of 76 characters.
fn huge_message(mb: usize) -> Vec<u8> {
    let mut raw = b"From: Big <big@example.org>\r\nTo: huge@example.org\r\nSubject: huge\r\n\
Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <huge@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        .to_vec();
    let line = "Grüße aus dem großen Brief, Zeile für Zeile, bis der Speicher es merkt.....\r\n";
    let target = mb * 1024 * 1024;
    raw.reserve(target + line.len());
    while raw.len() < target {
        raw.extend_from_slice(line.as_bytes());
    }
    raw
}

/// Sum of the resident sets of the given processes, in KB (a process gone counts 0).
fn rss_kb(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| proc_stats(*p).ok())
        .map(|s| s.rss_kb)
        .sum()
}

/// Samples `pids` every 5 ms until `stop`, keeping the peak.
fn sampler(
    pids: Vec<u32>,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(600) {
            peak.fetch_max(rss_kb(&pids), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

/// One Email/get of the text body value over its own connection; the response's length.
/// Reads a Content-Length or a chunked body.
fn get_body_value(port: u16, id: &str) -> Result<usize> {
    let body = format!(
        r#"{{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],
        "methodCalls":[["Email/get",{{"accountId":"a1","ids":["{id}"],
        "properties":["bodyValues"],"fetchTextBodyValues":true}},"g"]]}}"#
    );
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    write!(
        s,
        "POST /jmap/api HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YmVuY2g6eA==\r\n\
         Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    if !status.contains(" 200 ") {
        bail!("HTTP status {status}");
    }
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
    }
    // Whatever the framing, count what arrives until the server closes.
    let mut n = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..1_000_000 {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

/// The four (or TIDINGS_BENCH_CLIENTS) reads at once; the peak resident set of `pids` above
/// `idle`, in KB, and the wall time.
fn measure<F>(pids: Vec<u32>, clients: usize, read: F) -> Result<(u64, Duration, usize)>
where
    F: Fn() -> Result<usize> + Send + Sync + 'static,
{
    let idle = rss_kb(&pids);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(idle));
    let s = sampler(pids, stop.clone(), peak.clone());
    let read = Arc::new(read);
    let t = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let read = read.clone();
            std::thread::spawn(move || read())
        })
        .collect();
    let mut min_len = usize::MAX;
    for h in handles {
        let n = h.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
        min_len = min_len.min(n);
    }
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = s.join();
    Ok((
        peak.load(Ordering::Relaxed).saturating_sub(idle),
        took,
        min_len,
    ))
}

/// Dovecot's `imap` processes (one per logged-in connection), by their command name.
fn imap_processes() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "imap")
        })
        .collect()
}

/// A logged-in IMAP connection with INBOX selected, ready to fetch.
fn imap_ready(port: u16) -> Result<(BufReader<TcpStream>, TcpStream)> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    let mut line = String::new();
    r.read_line(&mut line)?;
    for cmd in [format!("a LOGIN {USER} {PASS}"), "b SELECT INBOX".into()] {
        write!(w, "{cmd}\r\n")?;
        let tag = &cmd[..1];
        for _ in 0..100 {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                bail!("IMAP closed");
            }
            if line.starts_with(&format!("{tag} ")) {
                break;
            }
        }
    }
    Ok((r, w))
}

fn main() -> Result<()> {
    let mb = env_usize("TIDINGS_BENCH_HUGE_MB", 200);
    let clients = env_usize("TIDINGS_BENCH_CLIENTS", 4).max(1);
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    let raw = huge_message(mb);
    let size = raw.len();
    dovecot.seed(
        USER,
        "INBOX",
        &[SeedMessage {
            raw,
            flags: vec![],
            internal_date: 1_796_637_600,
        }],
    )?;

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
             [[account]]\nuser = \"bench\"\nname = \"huge\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
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
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()?;
    // Wait until the body is stored, so the sync's own buffers are gone before measuring.
    let t = Instant::now();
    loop {
        let out = Command::new(bin)
            .args(["account", "list", "--config"])
            .arg(&config)
            .env("RUST_LOG", "error")
            .output()?;
        if String::from_utf8_lossy(&out.stdout).contains(", 1 bodies") {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            let _ = serve.kill();
            bail!("the body was never synced");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Sign in once first: a Basic login is remembered, so the measured requests cost their
    // answer only, not a password check each (Argon2 takes ~19 MiB while it runs).
    let mut http = common::Http::connect(port, Duration::from_secs(30))?;
    http.post(r#"{"using":["urn:ietf:params:jmap:core"],"methodCalls":[["Core/echo",{},"e"]]}"#)?;
    drop(http);
    std::thread::sleep(Duration::from_secs(3));
    let id = "e1".to_string();

    let (tidings_kb, tidings_took, len) =
        measure(vec![serve.id()], clients, move || get_body_value(port, &id))?;
    serve.kill()?;
    serve.wait()?;
    if len < size * 9 / 10 {
        bail!("a response had {len} bytes for a {size}-byte body");
    }

    // The peer: Dovecot answering the same reads, connections opened (and measured idle)
    // first.
    let conns: Vec<_> = (0..clients)
        .map(|_| imap_ready(dovecot.imap_port()))
        .collect::<Result<_>>()?;
    let conns = Arc::new(std::sync::Mutex::new(conns));
    let (dovecot_kb, dovecot_took, _) = measure(imap_processes(), clients, move || {
        let (mut r, mut w) = conns
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .pop()
            .context("connection")?;
        w.write_all(b"c UID FETCH 1:* BODY.PEEK[TEXT]\r\n")?;
        let mut n = 0usize;
        let mut buf = Vec::new();
        for _ in 0..10_000_000 {
            buf.clear();
            let k = r.read_until(b'\n', &mut buf)?;
            if k == 0 || buf.starts_with(b"c OK") {
                break;
            }
            n += k;
        }
        Ok(n)
    })?;

    let mib = |kb: u64| kb as f64 / 1024.0;
    let size_mib = size as f64 / (1024.0 * 1024.0);
    println!("\n## Email/get of a {size_mib:.0} MiB text body, {clients} clients at once\n");
    println!("| server | peak RSS above idle | x message size | wall time |");
    println!("|---|---:|---:|---:|");
    println!(
        "| Tidings (Email/get, fetchTextBodyValues) | {:.0} MiB | {:.2} | {:.2} s |",
        mib(tidings_kb),
        mib(tidings_kb) / size_mib,
        tidings_took.as_secs_f64()
    );
    println!(
        "| Dovecot (UID FETCH BODY.PEEK[TEXT]) | {:.0} MiB | {:.2} | {:.2} s |",
        mib(dovecot_kb),
        mib(dovecot_kb) / size_mib,
        dovecot_took.as_secs_f64()
    );
    Ok(())
}
