//! Several `tidings serve` nodes on one private PostgreSQL (testkit), against a private
//! Dovecot, each figure beside its peer measured in the same run. Prints Markdown for
//! BENCHMARKS.md ("Several nodes on one PostgreSQL").
//!
//! `cargo bench -p cli --bench cluster`; TIDINGS_BENCH_CLUSTER picks the parts (default
//! `takeover,push,watch,jmap`):
//! - `takeover`: 3 nodes, TIDINGS_BENCH_ACCOUNTS accounts (default 30); a node killed with
//!   SIGKILL TIDINGS_BENCH_KILLS times (default 5; the issue's 20), a fresh node started in
//!   its place each time. Per kill, from the kill until every account of the dead node is
//!   taken by a live node (its log's "account taken") and watched again (its log's
//!   "watching all mailboxes": NOTIFY is set, so the next delivery is told). Leases of
//!   TIDINGS_BENCH_LEASE_TTL_MS (default 3000, serve's default).
//! - `push`: one account, 3 nodes; TIDINGS_BENCH_DELIVERIES LMTP deliveries (default 50;
//!   the issue's 200) per phase, end of DATA to the `StateChange` at WebSocket clients of
//!   the account's user: one on a node that does not hold the account, one on the holding
//!   node, and one on a single SQLite node watching the same Dovecot user.
//! - `watch`: TIDINGS_BENCH_WATCH_ACCOUNTS accounts (default 300; the issue's 1500) on one
//!   Dovecot, 3 nodes started together: the time until every account is watched by the
//!   node holding it, and each node's share.
//! - `jmap`: TIDINGS_BENCH_CLIENTS clients (default 200) for TIDINGS_BENCH_SECONDS
//!   (default 10; the issue's figure: 30), each repeating first screen (`Email/query` +
//!   `Email/get` of 50), `Mailbox/get` and an `Email/set` keyword toggle on one of
//!   TIDINGS_BENCH_JMAP_ACCOUNTS accounts (default 6) of TIDINGS_BENCH_MESSAGES messages
//!   (default 1000): round-robin over 3 nodes, then all on one node of the same
//!   PostgreSQL, beside one node on SQLite (run first).

#[path = "../tests/cluster_support/mod.rs"]
mod cluster_support;
mod common;
#[path = "../tests/push_support/mod.rs"]
mod push_support;

use anyhow::{Context, Result, bail};
use cluster_support::{Node, field, holders, imap_account, rows, seed_inbox};
use common::{Http, env_usize, epoch_seconds, lmtp_deliver, log_epoch_seconds, pct, plain};
use push_support::{Ws, basic, changed, free_port, serve_accounts, ws_connect_when_up};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, Postgres, corpus};
use tokio::sync::mpsc;

/// The Tidings user of every bench (common::Http signs in as `bench`, password `x`).
const USER: &str = "bench";
const USER_PASS: &str = "x";
/// Accounts per Tidings user in the `watch` part (as in watch_many).
const ACCOUNTS_PER_USER: usize = 100;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tidings"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let parts = std::env::var("TIDINGS_BENCH_CLUSTER")
        .unwrap_or_else(|_| "takeover,push,watch,jmap".into());
    let ttl = env_usize("TIDINGS_BENCH_LEASE_TTL_MS", 3000) as u64;
    for part in parts.split(',').map(str::trim) {
        match part {
            "takeover" => {
                takeover(
                    env_usize("TIDINGS_BENCH_ACCOUNTS", 30),
                    env_usize("TIDINGS_BENCH_KILLS", 5),
                    ttl,
                )
                .await?
            }
            "push" => push(env_usize("TIDINGS_BENCH_DELIVERIES", 50).max(1), ttl).await?,
            "watch" => watch(env_usize("TIDINGS_BENCH_WATCH_ACCOUNTS", 300).max(3), ttl).await?,
            "jmap" => jmap(ttl).await?,
            other => bail!("unknown part {other:?} in TIDINGS_BENCH_CLUSTER"),
        }
    }
    Ok(())
}

/// Nodes on one private PostgreSQL, all with the same configuration but their name and
/// port.
struct Cluster {
    pg: Postgres,
    db: String,
    dir: tempfile::TempDir,
    common: String,
    ttl_ms: u64,
    nodes: Vec<(Node, u16)>,
    named: usize,
}

impl Cluster {
    /// `config` holds the users and accounts every node gets.
    fn new(config: &str, ttl_ms: u64) -> Result<Cluster> {
        let pg = Postgres::start()?;
        let url = pg.fresh_database()?;
        let db = url.rsplit('/').next().context("database name")?.to_owned();
        let dir = tempfile::tempdir()?;
        let common = format!(
            "store = \"{url}\"\nkey_file = \"{key}\"\n{config}",
            key = dir.path().join("key/secret.key").display(),
        );
        Ok(Cluster {
            pg,
            db,
            dir,
            common,
            ttl_ms,
            nodes: Vec::new(),
            named: 0,
        })
    }

    /// Starts a node with a name not used before (a fresh machine).
    fn start_node(&mut self) -> Result<()> {
        self.named += 1;
        let port = free_port()?;
        let name = format!("n{}", self.named);
        let node = Node::start_ttl(self.dir.path(), &name, &self.common, port, self.ttl_ms)?;
        self.nodes.push((node, port));
        Ok(())
    }

    /// The configuration file of the `i`th live node (for `tidings account list`).
    fn config(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(&self.nodes[i].0.name)
            .join("tidings.toml")
    }

    /// With TIDINGS_BENCH_LOG_DIR set, copies every node's log there as `PART-NODE.log`
    /// (the nodes' directories go with the cluster).
    fn keep_logs(&self, part: &str) -> Result<()> {
        let Some(to) = std::env::var_os("TIDINGS_BENCH_LOG_DIR") else {
            return Ok(());
        };
        let to = PathBuf::from(to);
        std::fs::create_dir_all(&to)?;
        for (n, _) in &self.nodes {
            std::fs::copy(&n.log, to.join(format!("{part}-{}.log", n.name)))?;
        }
        Ok(())
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(_, p)| *p).collect()
    }

    fn logs(&self) -> String {
        let nodes: Vec<&Node> = self.nodes.iter().map(|(n, _)| n).collect();
        nodes
            .iter()
            .map(|n| n.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    /// Waits until the first node made the configuration's `n` accounts.
    async fn wait_accounts(&self, n: usize) -> Result<()> {
        let start = Instant::now();
        loop {
            // Before the first node made the schema the table is not there: not yet.
            let made = rows(&self.pg, &self.db, "SELECT id FROM account").map_or(0, |r| r.len());
            if made == n {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(120) {
                bail!("{made} of {n} accounts made in 120 s:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Account -> holding node, where every account is held by a live node that watches
    /// it (its log says so after it took it); None while not.
    fn all_watched(&self, accounts: usize) -> Result<Option<BTreeMap<i64, String>>> {
        let h = holders(&self.pg, &self.db)?;
        if h.len() != accounts {
            return Ok(None);
        }
        let events: HashMap<&str, Events> = self
            .nodes
            .iter()
            .map(|(n, _)| (n.name.as_str(), Events::of(n)))
            .collect();
        let ok = h.iter().all(|(a, node)| {
            events
                .get(node.as_str())
                .is_some_and(|e| e.watching_since(*a, f64::MIN).is_some())
        });
        Ok(ok.then_some(h))
    }

    /// Polls [`Cluster::all_watched`] every `every`, for at most `limit`.
    async fn until_all_watched(
        &self,
        accounts: usize,
        every: Duration,
        limit: Duration,
    ) -> Result<BTreeMap<i64, String>> {
        let start = Instant::now();
        loop {
            if let Some(h) = self.all_watched(accounts)? {
                return Ok(h);
            }
            if start.elapsed() > limit {
                let h = holders(&self.pg, &self.db)?;
                bail!(
                    "not every account watched within {limit:?} ({} held)",
                    h.len()
                );
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// One node's "account taken" and "watching" log lines: per account, their instants in
/// seconds since the epoch, in log order.
struct Events {
    taken: HashMap<i64, Vec<f64>>,
    watching: HashMap<i64, Vec<f64>>,
}

impl Events {
    fn of(node: &Node) -> Events {
        let mut e = Events {
            taken: HashMap::new(),
            watching: HashMap::new(),
        };
        for line in node.log().lines() {
            let taken = line.contains("account taken");
            if !taken && !line.contains("watching all mailboxes") {
                continue;
            }
            let p = plain(line);
            let (Some(t), Some(a)) = (log_epoch_seconds(&p), field(&p, "account=")) else {
                continue;
            };
            let to = if taken { &mut e.taken } else { &mut e.watching };
            to.entry(a).or_default().push(t);
        }
        e
    }

    /// When this node last took `account` at or after `since`, and then started watching
    /// it: (taken, watching).
    fn watching_since(&self, account: i64, since: f64) -> Option<(f64, f64)> {
        let taken = *self.taken.get(&account)?.last()?;
        if taken < since {
            return None;
        }
        let watching = self
            .watching
            .get(&account)?
            .iter()
            .copied()
            .find(|w| *w >= taken)?;
        Some((taken, watching))
    }
}

/// Adds `logins` to Dovecot with a few messages each; returns the config's user and
/// accounts (all of user `bench`).
fn accounts_config(
    dovecot: &Dovecot,
    logins: &[(String, String)],
    seeded: usize,
) -> Result<String> {
    dovecot.add_users(logins)?;
    let mut config = format!("[[user]]\nname = \"{USER}\"\npassword = \"{USER_PASS}\"\n");
    for (login, pass) in logins {
        if seeded > 0 {
            seed_inbox(dovecot, login, seeded)?;
        }
        config.push_str(&imap_account(USER, login, pass, dovecot));
    }
    Ok(config)
}

/// A Markdown row of p50 / p99 / max of `v` (seconds).
fn seconds_row(name: &str, v: &mut [f64]) {
    let max = v.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "| {name} | {:.2} s | {:.2} s | {max:.2} s |",
        pct(v, 50.0),
        pct(v, 99.0)
    );
}

// --- takeover after kill -9

async fn takeover(accounts: usize, kills: usize, ttl: u64) -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    let logins: Vec<(String, String)> = (0..accounts)
        .map(|i| (format!("t{i}@example.org"), format!("pw-{i}")))
        .collect();
    let config = accounts_config(&dovecot, &logins, 3)?;
    let mut c = Cluster::new(&config, ttl)?;
    c.start_node()?;
    c.wait_accounts(accounts).await?;
    c.start_node()?;
    c.start_node()?;
    let (mut held, mut watched) = (Vec::new(), Vec::new());
    let mut moved = Vec::new();
    for k in 0..kills {
        // Shared out among the three (none above its share: a node that joined has had
        // what the others gave up), every account watched.
        let most = accounts.div_ceil(3) + store::leases::SHARE_SLACK;
        let settle = Instant::now();
        let h = loop {
            if let Some(h) = c.all_watched(accounts)? {
                let mut per: HashMap<&str, usize> = HashMap::new();
                for n in h.values() {
                    *per.entry(n.as_str()).or_default() += 1;
                }
                if per.len() == c.nodes.len() && per.values().all(|&n| n <= most) {
                    break h;
                }
            }
            if settle.elapsed() > Duration::from_secs(120) {
                bail!("not shared out and watched in 120 s:\n{}", c.logs());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        // Kill the nodes in turn, each at whatever it is doing.
        let victim = k % c.nodes.len();
        let name = c.nodes[victim].0.name.clone();
        let orphans: Vec<i64> = h
            .iter()
            .filter(|(_, n)| **n == name)
            .map(|(a, _)| *a)
            .collect();
        let t_kill = epoch_seconds();
        let (mut dead, _) = c.nodes.remove(victim);
        dead.child.kill()?; // SIGKILL
        dead.child.wait()?;
        let start = Instant::now();
        let (t_held, t_watched) = loop {
            let events: Vec<Events> = c.nodes.iter().map(|(n, _)| Events::of(n)).collect();
            let times: Option<Vec<(f64, f64)>> = orphans
                .iter()
                .map(|a| events.iter().find_map(|e| e.watching_since(*a, t_kill)))
                .collect();
            if let Some(times) = times {
                let held = times.iter().map(|t| t.0).fold(t_kill, f64::max) - t_kill;
                let watched = times.iter().map(|t| t.1).fold(t_kill, f64::max) - t_kill;
                break (held, watched);
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the accounts of {name} not watched again in 60 s:\n{}",
                    c.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // The database agrees: every orphan held by a live node.
        let now = holders(&c.pg, &c.db)?;
        for a in &orphans {
            if now.get(a).is_none_or(|n| *n == name) {
                bail!("account {a} of {name} not held by a live node: {now:?}");
            }
        }
        eprintln!(
            "kill {}: {name} held {} accounts; all taken after {t_held:.2} s, watched after {t_watched:.2} s",
            k + 1,
            orphans.len()
        );
        held.push(t_held);
        watched.push(t_watched);
        moved.push(orphans.len());
        c.start_node()?;
    }
    drop(c);
    println!(
        "\nTakeover after kill -9: 3 nodes on one PostgreSQL, {accounts} accounts, {kills} kills \
         (the nodes in turn, a fresh one started in each one's place once the others had \
         its accounts), leases of {ttl} ms renewed every {} ms; {}-{} accounts moved per kill\n",
        ttl / 3,
        moved.iter().min().unwrap_or(&0),
        moved.iter().max().unwrap_or(&0),
    );
    println!("| kill → every account of the dead node … | p50 | p99 | max |\n|---|---:|---:|---:|");
    seconds_row(
        "taken by a live node (its log's \"account taken\")",
        &mut held,
    );
    seconds_row(
        "watched again (its log's \"watching all mailboxes\"): goal ≤ 5 s",
        &mut watched,
    );
    println!();
    Ok(())
}

// --- push across nodes

/// Reads `ws`'s StateChanges on its own task; sends the instant of each one that changes
/// `account`'s Email state.
fn reader(mut ws: Ws, account: &'static str) -> mpsc::UnboundedReceiver<Instant> {
    let (tx, rx) = mpsc::unbounded_channel();
    ws.pushes.clear();
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(3600);
        while Instant::now() < deadline {
            match ws.push(Duration::from_secs(60)).await {
                Ok(Some(p)) => {
                    let email = changed(&p, account).is_some_and(|c| c.contains_key("Email"));
                    if email && tx.send(Instant::now()).is_err() {
                        break;
                    }
                }
                Ok(None) => continue,
                Err(_) => break,
            }
        }
    });
    rx
}

/// `n` LMTP deliveries to `login`; per delivery, end of DATA → each client's first Email
/// StateChange after it (ms).
async fn deliveries(
    n: usize,
    lmtp: u16,
    login: &str,
    phase: &str,
    clients: &mut [&mut mpsc::UnboundedReceiver<Instant>],
) -> Result<Vec<Vec<f64>>> {
    let mut out = vec![Vec::with_capacity(n); clients.len()];
    for i in 0..n {
        for rx in clients.iter_mut() {
            while rx.try_recv().is_ok() {}
        }
        let raw = corpus::message("x@example.org", login, &format!("{phase}-{i}"), "pushed");
        let rcpt = login.to_owned();
        let t0 = tokio::task::spawn_blocking(move || lmtp_deliver(lmtp, &rcpt, &raw)).await??;
        for (k, rx) in clients.iter_mut().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let t = tokio::time::timeout_at(deadline.into(), rx.recv())
                    .await
                    .with_context(|| format!("{phase}: no StateChange at client {k} in 10 s"))?
                    .with_context(|| format!("{phase}: client {k} closed"))?;
                if t >= t0 {
                    out[k].push(ms(t - t0));
                    break;
                }
            }
        }
        // The body's push passes; then a random phase of Dovecot's notification timers.
        let gap = 600 + rand::random::<u64>() % 400;
        tokio::time::sleep(Duration::from_millis(gap)).await;
    }
    Ok(out)
}

async fn push(n: usize, ttl: u64) -> Result<()> {
    const LOGIN: &str = "push@example.org";
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    let logins = [(LOGIN.to_owned(), "push-pw".to_owned())];
    let config = accounts_config(&dovecot, &logins, 1)?;
    let mut c = Cluster::new(&config, ttl)?;
    c.start_node()?;
    c.wait_accounts(1).await?;
    c.start_node()?;
    c.start_node()?;
    let h = c
        .until_all_watched(1, Duration::from_millis(100), Duration::from_secs(60))
        .await?;
    let holder = h.values().next().context("the holder")?.clone();
    let port_of = |holding: bool| {
        c.nodes
            .iter()
            .find(|(node, _)| (node.name == holder) == holding)
            .map(|(_, p)| *p)
            .context("a node")
    };
    let (holder_port, other_port) = (port_of(true)?, port_of(false)?);
    // The single-node reference: SQLite, watching the same Dovecot user.
    let single = serve_accounts(
        bin(),
        &dovecot,
        &[(USER, USER_PASS)],
        &[(USER, LOGIN, "push-pw")],
        "",
    )?;
    let auth = basic(USER, USER_PASS);
    let mut clients = Vec::new();
    for port in [other_port, single.port] {
        let mut ws = ws_connect_when_up(port, &auth).await?;
        ws.wait_emails("a1", 1).await?;
        ws.enable(Some(&["Email"]), None).await?;
        ws.settle(Duration::from_millis(500)).await?;
        clients.push(reader(ws, "a1"));
    }
    let [mut other, mut sqlite] =
        <[_; 2]>::try_from(clients).map_err(|_| anyhow::anyhow!("two clients"))?;
    let lmtp = dovecot.lmtp_port();
    // Phase 1: no client of the user on the holding node.
    let mut alone = deliveries(n, lmtp, LOGIN, "alone", &mut [&mut other, &mut sqlite]).await?;
    // Phase 2: a client on the holding node too.
    let mut ws = ws_connect_when_up(holder_port, &auth).await?;
    ws.enable(Some(&["Email"]), None).await?;
    ws.settle(Duration::from_millis(500)).await?;
    let mut on_holder = reader(ws, "a1");
    let mut both = deliveries(
        n,
        lmtp,
        LOGIN,
        "both",
        &mut [&mut on_holder, &mut other, &mut sqlite],
    )
    .await?;
    drop(single);
    drop(c);
    println!(
        "\nPush across nodes: end of LMTP DATA → Email StateChange at a WebSocket client, \
         {n} deliveries per phase (ms; one account, 3 nodes on one PostgreSQL, leases of \
         {ttl} ms; a single SQLite node watching the same Dovecot user in the same run)\n"
    );
    println!("| client | p50 | p95 | p99 |\n|---|---:|---:|---:|");
    let row = |name: &str, v: &mut Vec<f64>| {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            pct(v, 50.0),
            pct(v, 95.0),
            pct(v, 99.0)
        );
    };
    row(
        "phase 1: on a node that does not hold the account (no client on the holder)",
        &mut alone[0],
    );
    row("phase 1: single SQLite node", &mut alone[1]);
    row(
        "phase 2: on the holding node (the single-node figure)",
        &mut both[0],
    );
    row(
        "phase 2: on a node that does not hold the account (goal: p50 ≤ holding node + 10 ms)",
        &mut both[1],
    );
    row("phase 2: single SQLite node", &mut both[2]);
    println!();
    Ok(())
}

// --- many watched accounts over three nodes

async fn watch(n: usize, ttl: u64) -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions {
        // Each account holds a watcher and a worker connection.
        max_connections: Some(u32::try_from(3 * n + 100)?),
        ..DovecotOptions::default()
    })?;
    let short = testkit::raise_os_limits(4 * n as u64 + 1000);
    let logins: Vec<(String, String)> = (0..n)
        .map(|i| (format!("w{i}@example.org"), format!("pw-{i}")))
        .collect();
    dovecot.add_users(&logins)?;
    let mut config = String::new();
    for j in 0..n.div_ceil(ACCOUNTS_PER_USER) {
        config.push_str(&format!(
            "[[user]]\nname = \"u{j}\"\npassword = \"pw{j}\"\n"
        ));
    }
    for (i, (login, pass)) in logins.iter().enumerate() {
        config.push_str(&imap_account(
            &format!("u{}", i / ACCOUNTS_PER_USER),
            login,
            pass,
            &dovecot,
        ));
    }
    let mut c = Cluster::new(&config, ttl)?;
    // Started together: whichever makes the schema and the accounts first, the others wait.
    let start = Instant::now();
    for _ in 0..3 {
        c.start_node()?;
    }
    let mut last_report = Instant::now();
    let (all, first) = loop {
        if let Ok(Some(h)) = c.all_watched(n) {
            break (start.elapsed(), h);
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            let held = holders(&c.pg, &c.db).map_or(0, |h| h.len());
            eprintln!("{:.0} s: {held} held", start.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("not every account watched in 600 s:\n{}", logs_tail(&c));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let share = |h: &BTreeMap<i64, String>| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for node in h.values() {
            *m.entry(node.clone()).or_default() += 1;
        }
        m
    };
    let at_all = share(&first);
    // A little later: whatever the nodes still hand over once all are watching.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let later = share(&holders(&c.pg, &c.db)?);
    c.keep_logs("watch")?;
    let takes: usize = c
        .nodes
        .iter()
        .map(|(node, _)| node.takes().values().sum::<usize>())
        .sum();
    drop(c);
    println!(
        "\n{n} watched accounts (IMAPS, NOTIFY, one Dovecot) over 3 nodes on one PostgreSQL \
         started together, leases of {ttl} ms\n"
    );
    if !short.is_empty() {
        println!("OS limits not raised: {}\n", short.join("; "));
    }
    let within = |m: &BTreeMap<String, usize>| {
        let even = n as f64 / 3.0;
        m.len() == 3 && m.values().all(|&k| (k as f64 - even).abs() <= even * 0.1)
    };
    println!("| measure | value | goal |\n|---|---|---|");
    println!(
        "| start of the 3 nodes → all {n} watched by their holder | {:.1} s | ≤ 60 s |",
        all.as_secs_f64()
    );
    println!(
        "| accounts per node then | {at_all:?} ({}) | each within ±10 % of {:.0} |",
        if within(&at_all) { "even" } else { "NOT even" },
        n as f64 / 3.0
    );
    println!(
        "| accounts per node 10 s later | {later:?} ({}) | |",
        if within(&later) { "even" } else { "NOT even" }
    );
    println!("| accounts taken, all nodes (each handover is one more than {n}) | {takes} | |");
    println!();
    Ok(())
}

/// The last lines of every node's log (a failure's message at 1,500 accounts).
fn logs_tail(c: &Cluster) -> String {
    c.nodes
        .iter()
        .map(|(n, _)| {
            let log = n.log();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(30);
            format!("{}:\n{}", n.name, lines[from..].join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

// --- concurrent JMAP clients

/// Every account of `bench` and its INBOX id, through the Session and Mailbox/query.
fn accounts_and_inboxes(port: u16) -> Result<Vec<(String, String)>> {
    let mut http = Http::connect(port, Duration::from_secs(30))?;
    let session = http.get("/jmap/session")?;
    let mut ids: Vec<String> = session["accounts"]
        .as_object()
        .context("Session accounts")?
        .keys()
        .cloned()
        .collect();
    ids.sort();
    let mut out = Vec::new();
    for a in ids {
        let v = http.post(&format!(
            r#"{{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],
            "methodCalls":[["Mailbox/query",{{"accountId":"{a}","filter":{{"role":"inbox"}}}},"m"]]}}"#
        ))?;
        let inbox = v["methodResponses"][0][1]["ids"][0]
            .as_str()
            .with_context(|| format!("the inbox of {a}: {v}"))?
            .to_owned();
        out.push((a, inbox));
    }
    Ok(out)
}

/// Waits until `tidings account list` on `config` counts `bodies` bodies (the initial sync
/// done, so nothing else runs beside the clients).
async fn wait_bodies(config: &Path, bodies: usize, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let (have, text) = common::stored_bodies(bin(), config)?;
        if have >= bodies {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("{have} of {bodies} bodies after {limit:?}: {text}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What one client run did: latencies per request kind, errors, wall time.
#[derive(Default)]
struct Mix {
    first: Vec<f64>,
    mailboxes: Vec<f64>,
    set: Vec<f64>,
    errors: usize,
    /// The first few errors' texts, for the run's stderr.
    samples: Vec<String>,
    elapsed: Duration,
}

impl Mix {
    fn fail(&mut self, what: String) {
        self.errors += 1;
        if self.samples.len() < 3 {
            self.samples.push(what);
        }
    }
}

/// `clients` threads, client `i` on its own keep-alive connection to `ports[i % ports]`
/// and account `accounts[i % accounts]`, repeating first screen, Mailbox/get and an
/// Email/set toggling `$flagged` on an Email of the first screen its own, for `seconds`.
fn mix(ports: &[u16], accounts: &[(String, String)], clients: usize, seconds: u64) -> Result<Mix> {
    const USING: &str = r#""using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"]"#;
    // One request on each node first: a node remembers a verified password for a while,
    // and 70 connections of one user presenting it at the same instant to a node that
    // has not verified it yet are each counted as a guess and refused with 429 (api's
    // auth.rs), whatever the store.
    for port in ports {
        Http::connect(*port, Duration::from_secs(30))?.get("/jmap/session")?;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let port = ports[i % ports.len()];
            let (account, inbox) = accounts[i % accounts.len()].clone();
            // Clients of one account toggle different Emails of its first screen.
            let pick = (i / accounts.len()) % 50;
            std::thread::spawn(move || {
                let first = format!(
                    r##"{{{USING},"methodCalls":[
                    ["Email/query",{{"accountId":"{account}","filter":{{"inMailbox":"{inbox}"}},"sort":[{{"property":"receivedAt","isAscending":false}}],"limit":50}},"q"],
                    ["Email/get",{{"accountId":"{account}","#ids":{{"resultOf":"q","name":"Email/query","path":"/ids"}},
                      "properties":["threadId","mailboxIds","keywords","from","subject","receivedAt","preview","hasAttachment"]}},"g"]]}}"##
                );
                let mailboxes = format!(
                    r#"{{{USING},"methodCalls":[["Mailbox/get",{{"accountId":"{account}"}},"m"]]}}"#
                );
                let mut m = Mix::default();
                let mut http = Http::connect(port, Duration::from_secs(30)).ok();
                let mut flagged = false;
                // Bounded by the deadline, and by a count no run reaches.
                for _ in 0..1_000_000 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let Some(h) = http.as_mut() else {
                        m.fail("connect".into());
                        std::thread::sleep(Duration::from_millis(10));
                        http = Http::connect(port, Duration::from_secs(30)).ok();
                        continue;
                    };
                    let t = Instant::now();
                    let target = match h.post(&first) {
                        Ok(v) => {
                            let list = v["methodResponses"][1][1]["list"].as_array();
                            match list.filter(|l| l.len() == 50) {
                                Some(l) => {
                                    m.first.push(ms(t.elapsed()));
                                    l[pick]["id"].as_str().map(str::to_owned)
                                }
                                None => {
                                    m.fail(format!("first screen: {v}"));
                                    None
                                }
                            }
                        }
                        Err(e) => {
                            m.fail(format!("first screen: {e:#}"));
                            None
                        }
                    };
                    let Some(target) = target else {
                        http = Http::connect(port, Duration::from_secs(30)).ok();
                        continue;
                    };
                    let t = Instant::now();
                    match h.post(&mailboxes) {
                        Ok(v) if v["methodResponses"][0][1]["list"].as_array().is_some_and(|l| !l.is_empty()) => {
                            m.mailboxes.push(ms(t.elapsed()))
                        }
                        r => {
                            m.fail(format!("Mailbox/get: {r:?}"));
                            http = Http::connect(port, Duration::from_secs(30)).ok();
                            continue;
                        }
                    }
                    flagged = !flagged;
                    let value = if flagged { "true" } else { "null" };
                    let set = format!(
                        r#"{{{USING},"methodCalls":[["Email/set",{{"accountId":"{account}","update":{{"{target}":{{"keywords/$flagged":{value}}}}}}},"s"]]}}"#
                    );
                    let t = Instant::now();
                    match h.post(&set) {
                        Ok(v) if v["methodResponses"][0][1]["updated"].get(&target).is_some() => {
                            m.set.push(ms(t.elapsed()))
                        }
                        r => {
                            m.fail(format!("Email/set: {r:?}"));
                            http = Http::connect(port, Duration::from_secs(30)).ok();
                        }
                    }
                }
                m
            })
        })
        .collect();
    let mut out = Mix::default();
    for h in handles {
        let m = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        out.first.extend(m.first);
        out.mailboxes.extend(m.mailboxes);
        out.set.extend(m.set);
        out.errors += m.errors;
        if out.samples.len() < 5 {
            out.samples.extend(m.samples);
        }
    }
    for e in &out.samples {
        eprintln!("error: {}", e.chars().take(300).collect::<String>());
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

async fn jmap(ttl: u64) -> Result<()> {
    let k = env_usize("TIDINGS_BENCH_JMAP_ACCOUNTS", 6).max(1);
    let m = env_usize("TIDINGS_BENCH_MESSAGES", 1000).max(120);
    let clients = env_usize("TIDINGS_BENCH_CLIENTS", 200).max(1);
    let seconds = env_usize("TIDINGS_BENCH_SECONDS", 10).max(1) as u64;
    let dovecot = Dovecot::start(DovecotOptions {
        max_connections: Some(u32::try_from(4 * k + 100)?),
        ..DovecotOptions::default()
    })?;
    let logins: Vec<(String, String)> = (0..k)
        .map(|i| (format!("j{i}@example.org"), format!("pw-{i}")))
        .collect();
    let config = accounts_config(&dovecot, &logins, 0)?;
    for (i, (login, _)) in logins.iter().enumerate() {
        let msgs = corpus::generate(4242 + i as u64, m, &["INBOX", "Archive"]);
        dovecot.seed_corpus(login, &msgs)?;
    }
    let bodies = k * m;
    let sync_limit = Duration::from_secs(1800);

    // One node on SQLite, first.
    let accounts: Vec<(&str, &str, &str)> = logins
        .iter()
        .map(|(l, p)| (USER, l.as_str(), p.as_str()))
        .collect();
    let single = serve_accounts(bin(), &dovecot, &[(USER, USER_PASS)], &accounts, "")?;
    let t = Instant::now();
    wait_bodies(&single.config, bodies, sync_limit).await?;
    eprintln!("SQLite: synced in {:.1} s", t.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids = accounts_and_inboxes(single.port)?;
    let port = single.port;
    let sqlite = tokio::task::spawn_blocking({
        let ids = ids.clone();
        move || mix(&[port], &ids, clients, seconds)
    })
    .await??;
    drop(single);

    // Three nodes on PostgreSQL.
    let mut c = Cluster::new(&config, ttl)?;
    c.start_node()?;
    c.wait_accounts(k).await?;
    c.start_node()?;
    c.start_node()?;
    let t = Instant::now();
    wait_bodies(&c.config(0), bodies, sync_limit).await?;
    c.until_all_watched(k, Duration::from_millis(500), Duration::from_secs(120))
        .await?;
    eprintln!("PostgreSQL: synced in {:.1} s", t.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids = accounts_and_inboxes(c.nodes[0].1)?;
    let ports = c.ports();
    let three = tokio::task::spawn_blocking({
        let ids = ids.clone();
        move || mix(&ports, &ids, clients, seconds)
    })
    .await??;

    // One node of the same database: the others stopped, their accounts taken over.
    for _ in 1..c.nodes.len() {
        let (mut n, _) = c.nodes.remove(1);
        n.child.kill()?;
        n.child.wait()?;
    }
    let start = Instant::now();
    loop {
        if let Some(h) = c.all_watched(k)?
            && h.values().all(|n| *n == c.nodes[0].0.name)
        {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("one node never took every account:\n{}", c.logs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let port = c.nodes[0].1;
    let one = tokio::task::spawn_blocking({
        let ids = ids.clone();
        move || mix(&[port], &ids, clients, seconds)
    })
    .await??;
    drop(c);

    println!(
        "\n{clients} concurrent JMAP clients, {seconds} s each, keep-alive HTTP/1.1; each repeats \
         first screen (Email/query + Email/get of 50), Mailbox/get and an Email/set toggling \
         $flagged, on one of {k} accounts of {m} messages (same run, same Dovecot)\n"
    );
    println!(
        "| setup | requests | errors | per second | p50 | p99 | first screen p50 | Email/set p50 |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (name, mut r) in [
        ("3 nodes on one PostgreSQL, clients round-robin", three),
        ("1 node on the same PostgreSQL", one),
        ("1 node on SQLite (the embedded reference)", sqlite),
    ] {
        let mut all: Vec<f64> = r
            .first
            .iter()
            .chain(&r.mailboxes)
            .chain(&r.set)
            .copied()
            .collect();
        println!(
            "| {name} | {} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            all.len(),
            r.errors,
            all.len() as f64 / r.elapsed.as_secs_f64(),
            pct(&mut all, 50.0),
            pct(&mut all, 99.0),
            pct(&mut r.first, 50.0),
            pct(&mut r.set, 50.0),
        );
    }
    println!();
    Ok(())
}
