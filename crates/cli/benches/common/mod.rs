//! What the bench binaries share (each includes this module with `mod common;` and uses
//! the parts it needs): a keep-alive JMAP client over plain HTTP/1.1, the way a JMAP
//! client talks to its server, and the environment knobs.
#![allow(dead_code)]

use anyhow::{Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `name` from the environment as a number, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A keep-alive HTTP/1.1 connection to `/jmap/api`, signed in as the benches' user
/// `bench` (password `x`).
pub struct Http {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Http {
    pub fn connect(port: u16, read_timeout: Duration) -> Result<Http> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(read_timeout))?;
        Ok(Http {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// POSTs a JMAP request and returns the response object (an error unless 200).
    pub fn post(&mut self, body: &str) -> Result<serde_json::Value> {
        write!(
            self.writer,
            "POST /jmap/api HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YmVuY2g6eA==\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        self.response()
    }

    fn response(&mut self) -> Result<serde_json::Value> {
        let mut status = String::new();
        self.reader.read_line(&mut status)?;
        if !status.contains(" 200 ") {
            bail!("HTTP status {status}");
        }
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse()?;
            }
        }
        let mut buf = vec![0u8; len];
        self.reader.read_exact(&mut buf)?;
        Ok(serde_json::from_slice(&buf)?)
    }
}

impl Http {
    /// GETs `path` and returns the JSON body (an error unless 200), e.g. the Session.
    pub fn get(&mut self, path: &str) -> Result<serde_json::Value> {
        write!(
            self.writer,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YmVuY2g6eA==\r\n\r\n"
        )?;
        self.response()
    }
}

/// A tracing log line without its ANSI colours.
pub fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut esc = false;
    for ch in line.chars() {
        match (esc, ch) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// The instant of a tracing log line (`2026-12-02T05:10:00.123456Z ...`, colours
/// stripped), in seconds since the Unix epoch.
pub fn log_epoch_seconds(plain_line: &str) -> Option<f64> {
    let stamp = plain_line.split_whitespace().next()?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let mut t = time.trim_end_matches('Z').split(':');
    let h: f64 = t.next()?.parse().ok()?;
    let min: f64 = t.next()?.parse().ok()?;
    let s: f64 = t.next()?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// Now, in seconds since the Unix epoch (the clock of the servers' logs: same machine).
pub fn epoch_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// --- push and watching benches: pieces shared by push_latency, watch_cost and
// watch_many.

/// What `/proc/PID` says about a process: CPU time (utime + stime, clock ticks), resident
/// set (KB) and OS threads.
#[derive(Debug, Clone, Copy)]
pub struct ProcStats {
    pub cpu_ticks: u64,
    pub rss_kb: u64,
    pub threads: u64,
}

pub fn proc_stats(pid: u32) -> Result<ProcStats> {
    use anyhow::Context;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).context("utime")?.parse()?;
    let stime: u64 = f.get(12).context("stime")?.parse()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{name} in /proc/{pid}/status"))
    };
    Ok(ProcStats {
        cpu_ticks: utime + stime,
        rss_kb: field("VmRSS:")?,
        threads: field("Threads:")?,
    })
}

/// The `p`th percentile (nearest rank) of `v`, which it sorts.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[i.min(v.len() - 1)]
}

/// A Markdown table of p50/p95/p99 per measure.
pub fn print_table(title: &str, rows: &mut [(&str, &mut Vec<f64>)]) {
    println!("{title}\n");
    println!("| measure | p50 | p95 | p99 |");
    println!("|---|---:|---:|---:|");
    for (name, v) in rows.iter_mut() {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            pct(v, 50.0),
            pct(v, 95.0),
            pct(v, 99.0)
        );
    }
    println!();
}

/// One LMTP delivery to `rcpt`; returns the instant the final dot was sent (the start of
/// every latency the push benches report).
pub fn lmtp_deliver(port: u16, rcpt: &str, raw: &[u8]) -> Result<std::time::Instant> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let reply = |r: &mut BufReader<TcpStream>, code: &str| -> Result<()> {
        loop {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 {
                bail!("LMTP closed");
            }
            if !l.starts_with(code) {
                bail!("LMTP: expected {code}, got {l}");
            }
            if l.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    };
    reply(&mut r, "220")?;
    w.write_all(b"LHLO localhost\r\n")?;
    reply(&mut r, "250")?;
    w.write_all(b"MAIL FROM:<bench@localhost>\r\n")?;
    reply(&mut r, "250")?;
    write!(w, "RCPT TO:<{rcpt}>\r\n")?;
    reply(&mut r, "250")?;
    w.write_all(b"DATA\r\n")?;
    reply(&mut r, "354")?;
    // corpus messages have CRLF line ends and no line starting with a dot.
    w.write_all(raw)?;
    if !raw.ends_with(b"\r\n") {
        w.write_all(b"\r\n")?;
    }
    w.write_all(b".\r\n")?;
    w.flush()?;
    let t0 = std::time::Instant::now();
    reply(&mut r, "250")?;
    w.write_all(b"QUIT\r\n")?;
    Ok(t0)
}

/// The NOTIFY command of Tidings' watcher, for the bare clients to use the same.
pub const NOTIFY_SET: &str = "NOTIFY SET STATUS (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))";

/// How a bare watcher listens.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // each bench uses some of them
pub enum Bare {
    /// SELECT INBOX + IDLE: sends the instant of every `EXISTS`.
    Idle,
    /// NOTIFY with nothing selected (the floor Tidings' watcher rides on): every `STATUS`.
    Notify,
    /// NOTIFY, and a NOOP whenever the server was silent this long (what Tidings' watcher
    /// does while its user is connected: Dovecot then sends what it holds back at once).
    NotifyFlush(Duration),
}

/// A bare blocking IMAP watcher (run it on its own thread), see `Bare`. Returns when the
/// server is silent for `quiet` (NOOP answers do not count), closes, or the receiver is
/// gone.
pub fn bare_watcher(
    port: u16,
    user: &str,
    pass: &str,
    mode: Bare,
    quiet: Duration,
    tx: tokio::sync::mpsc::UnboundedSender<std::time::Instant>,
) -> Result<()> {
    let notify = !matches!(mode, Bare::Idle);
    let flush = match mode {
        Bare::NotifyFlush(f) => Some(f),
        _ => None,
    };
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    let mut expect = |r: &mut BufReader<TcpStream>, tag: &str| -> Result<()> {
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                bail!("IMAP closed");
            }
            if let Some(rest) = line.strip_prefix(tag) {
                if tag.ends_with(' ') && !rest.starts_with("OK") {
                    bail!("IMAP: {line}");
                }
                return Ok(());
            }
        }
    };
    expect(&mut r, "* OK")?; // the greeting
    write!(w, "a LOGIN \"{user}\" \"{pass}\"\r\n")?;
    expect(&mut r, "a ")?;
    if notify {
        write!(w, "b {NOTIFY_SET}\r\n")?;
        expect(&mut r, "b ")?;
    } else {
        write!(w, "b SELECT INBOX\r\n")?;
        expect(&mut r, "b ")?;
        write!(w, "c IDLE\r\n")?;
        expect(&mut r, "+")?;
    }
    s.set_read_timeout(Some(flush.unwrap_or(quiet)))?;
    let mut last_heard = std::time::Instant::now();
    let mut l = String::new();
    loop {
        // A line cut by a read timeout goes on in the next read (read_line appends).
        match r.read_line(&mut l) {
            Ok(0) => return Ok(()),
            Ok(_) if !l.ends_with('\n') => continue,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if flush.is_none() || last_heard.elapsed() >= quiet {
                    return Ok(());
                }
                write!(w, "n NOOP\r\n")?;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let l = std::mem::take(&mut l);
        if l.starts_with("n ") {
            continue;
        }
        last_heard = std::time::Instant::now();
        let hit = if notify {
            l.starts_with("* STATUS")
        } else {
            l.starts_with("* ") && l.trim_end().ends_with("EXISTS")
        };
        if hit && tx.send(std::time::Instant::now()).is_err() {
            return Ok(());
        }
    }
}

/// How many bodies the accounts of the configuration `config` hold, as `tidings account
/// list` reports them (one line per account, each ending "..., N bodies"), and that
/// report.
pub fn stored_bodies(
    bin: &std::path::Path,
    config: &std::path::Path,
) -> anyhow::Result<(usize, String)> {
    let out = std::process::Command::new(bin)
        .args(["account", "list", "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let bodies = text
        .lines()
        .filter_map(|l| {
            l.split(", ").find_map(|p| {
                p.trim()
                    .strip_suffix(" bodies")
                    .and_then(|n| n.trim().parse::<usize>().ok())
            })
        })
        .sum();
    Ok((bodies, text))
}
