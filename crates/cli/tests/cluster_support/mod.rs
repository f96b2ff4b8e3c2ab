//! What the cluster tests share: `tidings serve` nodes on one PostgreSQL, their logs,
//! and the database's view of who holds what.

#![allow(dead_code)]

pub mod views;

use anyhow::{Result, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Dovecot, Postgres, SeedMessage};

/// The lease time the nodes run with (a dead node's accounts are free this long after
/// its last renewal).
pub const LEASE_TTL_MS: u64 = 2000;

/// One `tidings serve` of the cluster; killed when dropped.
pub struct Node {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    /// The port it listens on (0: any, not known).
    pub port: u16,
}

impl Node {
    pub fn start(dir: &Path, name: &str, common: &str) -> Result<Node> {
        Node::start_on(dir, name, common, 0)
    }

    /// [`Node::start`] listening on `port` (0: any).
    pub fn start_on(dir: &Path, name: &str, common: &str, port: u16) -> Result<Node> {
        Node::start_ttl(dir, name, common, port, LEASE_TTL_MS)
    }

    /// [`Node::start_on`] with leases of `lease_ttl_ms` (the benches set it).
    pub fn start_ttl(
        dir: &Path,
        name: &str,
        common: &str,
        port: u16,
        lease_ttl_ms: u64,
    ) -> Result<Node> {
        let own = dir.join(name);
        std::fs::create_dir_all(&own)?;
        let config = own.join("tidings.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{data}\"\nnode_name = \"{name}\"\n\
                 lease_ttl_ms = {lease_ttl_ms}\n{common}",
                data = own.join("data").display(),
            ),
        )?;
        let log = own.join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            // Plain lines, so that `takes` and the benches read the fields (`account=a7`).
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()?;
        Ok(Node {
            name: name.into(),
            child,
            log,
            port,
        })
    }

    /// Sends `signal` (`STOP`, `CONT`) with kill(1).
    pub fn signal(&self, signal: &str) -> Result<()> {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()?
            .success();
        if !ok {
            bail!("kill -{signal} {} failed", self.name);
        }
        Ok(())
    }

    /// The epoch of each time this node took an account (its log's "account taken"
    /// lines): (account, epoch).
    pub fn taken_epochs(&self) -> Vec<(i64, i64)> {
        self.log()
            .lines()
            .filter(|l| l.contains("account taken"))
            .filter_map(|l| Some((field(l, "account=")?, field(l, "epoch=")?)))
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times this node started working on each account (its log's "account
    /// taken" lines).
    pub fn takes(&self) -> HashMap<i64, usize> {
        let mut n = HashMap::new();
        for line in self.log().lines().filter(|l| l.contains("account taken")) {
            if let Some(id) = field(line, "account=") {
                *n.entry(id).or_default() += 1;
            }
        }
        n
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every node's log, for a failure's message.
pub fn logs(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(Node::log)
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The number after `key` in a log line (`account=a7` or `account=7`).
pub fn field(line: &str, key: &str) -> Option<i64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Rows of a query, each a `|`-separated line.
pub fn rows(pg: &Postgres, db: &str, sql: &str) -> Result<Vec<Vec<String>>> {
    Ok(pg
        .psql(db, sql)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('|').map(|f| f.trim().to_owned()).collect())
        .collect())
}

/// Account id -> the node holding an unexpired lease of it.
pub fn holders(pg: &Postgres, db: &str) -> Result<BTreeMap<i64, String>> {
    let mut m = BTreeMap::new();
    for r in rows(
        pg,
        db,
        "SELECT account_id, node FROM account_lease WHERE expires_at > now()",
    )? {
        m.insert(r[0].parse()?, r[1].clone());
    }
    Ok(m)
}

/// Account id -> the messages stored in its INBOX.
pub fn inbox_counts(pg: &Postgres, db: &str) -> Result<BTreeMap<i64, usize>> {
    let mut m = BTreeMap::new();
    for r in rows(
        pg,
        db,
        "SELECT a.id, count(c.mailbox_id) FROM account a \
         LEFT JOIN mailbox b ON b.account_id = a.id AND b.name = 'INBOX' \
         LEFT JOIN copy c ON c.mailbox_id = b.id GROUP BY a.id",
    )? {
        m.insert(r[0].parse()?, r[1].parse()?);
    }
    Ok(m)
}

pub fn message(user: &str, i: usize) -> Vec<u8> {
    format!(
        "From: someone@example.net\r\nTo: {user}\r\nSubject: message {i}\r\n\
         Message-ID: <{i}.{user}>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nbody {i}\r\n"
    )
    .into_bytes()
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
pub async fn until<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes a Dovecot user of each of `users` (password `pass`) with `seeded` messages in its
/// INBOX, and returns what every node's configuration shares: the store at `url`, the key
/// under `dir` (the stored passwords are sealed with it), and user `alice` (password `x`)
/// with one IMAP account per Dovecot user (`a0`, `a1`, ...).
pub fn seeded_accounts(
    dovecot: &Dovecot,
    url: &str,
    dir: &Path,
    users: &[String],
    pass: &str,
    seeded: usize,
) -> Result<String> {
    let mut accounts = String::new();
    for (i, u) in users.iter().enumerate() {
        dovecot.add_user(u, pass)?;
        seed_inbox(dovecot, u, seeded)?;
        accounts.push_str(&imap_account_named(
            "alice",
            &format!("a{i}"),
            u,
            pass,
            dovecot,
        ));
    }
    Ok(format!(
        "store = \"{url}\"\nkey_file = \"{key}\"\n[[user]]\nname = \"alice\"\npassword = \"x\"\n{accounts}",
        key = dir.join("key/secret.key").display(),
    ))
}

/// Waits until the first node made the `n` accounts of the configuration (before it made
/// the schema the table is not there: not yet).
pub async fn accounts_made(pg: &Postgres, db: &str, n: usize, nodes: &[Node]) -> Result<()> {
    until("the accounts made", Duration::from_secs(60), || {
        let made = rows(pg, db, "SELECT id FROM account").map_or(0, |r| r.len());
        Ok((made == n).then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(nodes)))
}

/// `n` messages (`message(login, 0..n)`) in the INBOX of Dovecot user `login`.
pub fn seed_inbox(dovecot: &Dovecot, login: &str, n: usize) -> Result<()> {
    let seed: Vec<SeedMessage> = (0..n)
        .map(|i| SeedMessage {
            raw: message(login, i),
            flags: vec![],
            internal_date: 1_796_000_000 + i as i64,
        })
        .collect();
    dovecot.seed(login, "INBOX", &seed)
}

/// A `[[account]]` of the config: `user`'s IMAP account `login` on `dovecot`, over IMAPS,
/// named after the login.
pub fn imap_account(user: &str, login: &str, pass: &str, dovecot: &testkit::Dovecot) -> String {
    imap_account_named(user, login, login, pass, dovecot)
}

/// [`imap_account`] named `name`.
pub fn imap_account_named(
    user: &str,
    name: &str,
    login: &str,
    pass: &str,
    dovecot: &testkit::Dovecot,
) -> String {
    format!(
        "[[account]]\nuser = \"{user}\"\nname = \"{name}\"\nkind = \"imap\"\n\
         host = \"127.0.0.1\"\nport = {port}\nsecurity = \"tls\"\nusername = \"{login}\"\n\
         password = \"{pass}\"\nca_file = \"{ca}\"\n",
        port = dovecot.imaps_port(),
        ca = dovecot.ca_file().display(),
    )
}
