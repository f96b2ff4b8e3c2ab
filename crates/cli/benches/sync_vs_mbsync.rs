//! Initial sync, no-change resync and resync after 100 flag changes: `tidings account sync`
//! beside `mbsync` (isync) on the same private Dovecot and the same generated corpus, in
//! one run. Prints a Markdown table for BENCHMARKS.md.
//!
//! `cargo bench -p cli --bench sync_vs_mbsync` (TIDINGS_BENCH_MESSAGES, default 10000;
//! TIDINGS_BENCH_ROUNDS, default 3).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use store::SqliteStore;
use store::prelude::*;
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, corpus};

const USER: &str = "bench@example.org";
const PASS: &str = "bench";
const FOLDERS: [&str; 5] = ["INBOX", "Archive", "Sent", "Work", "Lists/rust-users"];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(cmd: &mut Command) -> Result<(Duration, String)> {
    let start = Instant::now();
    let out = cmd.output().context("spawning")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{:?} failed: {}{}",
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
}

struct Peers {
    dir: PathBuf,
    tidings_config: PathBuf,
    mbsync_config: PathBuf,
    /// The same with `FSync no`: mbsync without its per-message fsync, the fastest it goes.
    mbsync_nofsync_config: PathBuf,
}

impl Peers {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn maildir(&self) -> PathBuf {
        self.dir.join("maildir")
    }
    fn maildir_nofsync(&self) -> PathBuf {
        self.dir.join("maildir-nofsync")
    }
    fn fresh(&self) -> Result<()> {
        for d in [self.data_dir(), self.maildir(), self.maildir_nofsync()] {
            if d.exists() {
                std::fs::remove_dir_all(&d)?;
            }
            if d != self.data_dir() {
                std::fs::create_dir_all(&d)?;
            }
        }
        Ok(())
    }
    fn mbsync(&self) -> Result<Duration> {
        self.mbsync_with(&self.mbsync_config)
    }
    fn mbsync_nofsync(&self) -> Result<Duration> {
        self.mbsync_with(&self.mbsync_nofsync_config)
    }
    fn mbsync_with(&self, config: &Path) -> Result<Duration> {
        // mbsync pauses ~1 s when started twice within a second; keep the gap outside the timing.
        std::thread::sleep(Duration::from_millis(1100));
        Ok(run(Command::new("mbsync")
            .arg("-q")
            .arg("-c")
            .arg(config)
            .arg("-a"))?
        .0)
    }
    fn tidings(&self) -> Result<(Duration, Option<u64>)> {
        let (took, out) = run(Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["account", "sync", "--config"])
            .arg(&self.tidings_config)
            .env("RUST_LOG", "error"))?;
        let rss = out
            .lines()
            .find_map(|l| l.strip_prefix("peak RSS "))
            .and_then(|v| v.trim_end_matches(" KB").parse().ok());
        Ok((took, rss))
    }
}

fn write_configs(dir: &Path, port: u16) -> Result<Peers> {
    let tidings_config = dir.join("tidings.toml");
    std::fs::write(
        &tidings_config,
        format!(
            "data_dir = \"{}\"\nkey_file = \"{}\"\n[[user]]\nname = \"bench\"\npassword = \"x\"\n\
             [[account]]\nuser = \"bench\"\nname = \"bench\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {port}\nsecurity = \"none\"\nusername = \"{USER}\"\npassword = \"{PASS}\"\n",
            dir.join("data").display(),
            dir.join("key/secret.key").display(),
        ),
    )?;
    let mbsync_config = dir.join("mbsyncrc");
    let mbsync_nofsync_config = dir.join("mbsyncrc-nofsync");
    let mbsyncrc = |maildir: &Path, global: &str| {
        format!(
            "{global}IMAPAccount bench\nHost 127.0.0.1\nPort {port}\nUser {USER}\nPass {PASS}\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount bench\n\n\
             MaildirStore local\nPath {m}/\nInbox {m}/INBOX\nSubFolders Verbatim\n\n\
             Channel bench\nFar :remote:\nNear :local:\nPatterns *\nCreate Near\nSync Pull\nSyncState *\n",
            m = maildir.display(),
        )
    };
    std::fs::write(&mbsync_config, mbsyncrc(&dir.join("maildir"), ""))?;
    std::fs::write(
        &mbsync_nofsync_config,
        mbsyncrc(&dir.join("maildir-nofsync"), "FSync no\n\n"),
    )?;
    // `tidings account sync` imports users and accounts through `serve`'s config import only;
    // create them here with the CLI so the data dir is ready.
    Ok(Peers {
        dir: dir.to_path_buf(),
        tidings_config,
        mbsync_config,
        mbsync_nofsync_config,
    })
}

fn setup_tidings(p: &Peers) -> Result<()> {
    let bin = env!("CARGO_BIN_EXE_tidings");
    let mut add = Command::new(bin);
    add.args(["user", "add", "bench", "--config"])
        .arg(&p.tidings_config);
    pipe(&mut add, "x")?;
    let mut acc = Command::new(bin);
    acc.args([
        "account",
        "add",
        "--user",
        "bench",
        "--name",
        "bench",
        "--host",
        "127.0.0.1",
        "--security",
        "none",
        "--username",
        USER,
        "--port",
    ])
    .arg(port_of(&p.tidings_config)?)
    .arg("--config")
    .arg(&p.tidings_config);
    pipe(&mut acc, PASS)
}

fn port_of(config: &Path) -> Result<String> {
    let text = std::fs::read_to_string(config)?;
    text.lines()
        .find_map(|l| l.strip_prefix("port = "))
        .map(str::to_string)
        .context("port in config")
}

fn pipe(cmd: &mut Command, input: &str) -> Result<()> {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{input}\n").as_bytes())?;
    if !child.wait()?.success() {
        bail!("{cmd:?} failed");
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Time until the newest 50 INBOX messages are in the store, polled from beside the sync.
fn newest_50(p: &Peers) -> Result<Duration> {
    p.fresh()?;
    setup_tidings(p)?;
    let db = p.data_dir().join("tidings.sqlite");
    let rt = tokio::runtime::Runtime::new()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["account", "sync", "--config"])
        .arg(&p.tidings_config)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let start = Instant::now();
    let store = SqliteStore::open(&db)?;
    let took = rt.block_on(async {
        loop {
            let mut n = 0;
            for a in store.list_accounts().await? {
                for m in store.mailboxes(a.id).await? {
                    if m.name == "INBOX" {
                        n = m.progress.headers;
                    }
                }
            }
            if n >= 50 {
                return Ok::<_, anyhow::Error>(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(120) {
                bail!("INBOX never reached 50 messages");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })?;
    child.wait()?;
    Ok(took)
}

fn main() -> Result<()> {
    // `cargo bench` passes --bench; nothing else to parse.
    let n = env_usize("TIDINGS_BENCH_MESSAGES", 10_000);
    let rounds = env_usize("TIDINGS_BENCH_ROUNDS", 3).max(1);
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    let (bytes, count) = {
        let msgs = corpus::generate(42, n, &FOLDERS);
        let bytes: usize = msgs.iter().map(|m| m.raw.len()).sum();
        dovecot.seed_corpus(USER, &msgs)?;
        (bytes, msgs.len())
    };
    eprintln!(
        "corpus: {count} messages, {:.1} MB in {} folders",
        bytes as f64 / 1e6,
        FOLDERS.len()
    );
    let dir = tempfile::tempdir()?;
    let peers = write_configs(dir.path(), dovecot.imap_port())?;

    // Warm Dovecot's own indexes and the page cache for both peers alike.
    peers.fresh()?;
    peers.mbsync()?;
    peers.fresh()?;
    setup_tidings(&peers)?;
    peers.tidings()?;

    let (mut m_init, mut t_init, mut m_noop, mut t_noop, mut m_flags, mut t_flags) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut n_init, mut n_noop, mut n_flags) = (vec![], vec![], vec![]);
    let mut rss = 0u64;
    for round in 0..rounds {
        peers.fresh()?;
        m_init.push(peers.mbsync()?);
        n_init.push(peers.mbsync_nofsync()?);
        setup_tidings(&peers)?;
        let (t, r) = peers.tidings()?;
        t_init.push(t);
        rss = rss.max(r.unwrap_or(0));

        m_noop.push(peers.mbsync()?);
        n_noop.push(peers.mbsync_nofsync()?);
        t_noop.push(peers.tidings()?.0);

        let mut c = ImapClient::login(dovecot.imap_port(), USER, PASS)?;
        c.select("INBOX")?;
        let uids = c.uids()?;
        let set: Vec<String> = uids.iter().rev().take(100).map(|u| u.to_string()).collect();
        let op = if round % 2 == 0 { "+FLAGS" } else { "-FLAGS" };
        c.store_flags(&set.join(","), op, &["\\Flagged"])?;
        c.logout()?;
        m_flags.push(peers.mbsync()?);
        n_flags.push(peers.mbsync_nofsync()?);
        t_flags.push(peers.tidings()?.0);
    }
    let first50 = newest_50(&peers)?;

    let row = |name: &str, t: Vec<Duration>, m: Vec<Duration>, n: Vec<Duration>| {
        let (t, m, n) = (median(t), median(m), median(n));
        println!(
            "| {name} | {:.3} s | {:.3} s | {:.3} s | {:.2} | {:.2} |",
            t.as_secs_f64(),
            m.as_secs_f64(),
            n.as_secs_f64(),
            t.as_secs_f64() / m.as_secs_f64(),
            t.as_secs_f64() / n.as_secs_f64()
        );
    };
    println!(
        "\n{count} messages, {:.1} MB, {} folders; median of {rounds} rounds\n",
        bytes as f64 / 1e6,
        FOLDERS.len()
    );
    println!(
        "| measure | tidings | mbsync | mbsync, FSync no | ratio | ratio to FSync no |\n|---|---|---|---|---|---|"
    );
    row(
        "initial sync (headers, bodies, store, index)",
        t_init,
        m_init,
        n_init,
    );
    row("resync, nothing changed", t_noop, m_noop, n_noop);
    row("resync after 100 flag changes", t_flags, m_flags, n_flags);
    println!(
        "\nnewest 50 INBOX messages in the store after {:.3} s",
        first50.as_secs_f64()
    );
    println!(
        "peak RSS of tidings during the initial sync: {:.1} MB",
        rss as f64 / 1024.0
    );
    Ok(())
}
