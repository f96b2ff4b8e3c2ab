//! The cluster under the two failures a lease has to survive, on one private PostgreSQL,
//! Dovecot and Postfix:
//! - `kill -9` of a node, 20 times at random points (a seeded RNG: the seed is printed,
//!   `TIDINGS_CHAOS_SEED` replays it) during the initial sync, the write-back of 1,000
//!   queued changes and sending: the dead node's accounts are held again by a live node
//!   within 5 s, and at the end the IMAP server (read by an independent client), the store
//!   and Postfix's log hold exactly the intended state: nothing lost, nothing applied or
//!   sent twice;
//! - `kill -STOP` of a node past its lease while it replays queued changes, then
//!   `kill -CONT`: it writes nothing more for the accounts it lost, neither to the IMAP
//!   server nor to the store, and takes its share again afterwards.

mod cluster_support;
mod push_support;

use cluster_support::views::{View, call, imap_view, store_view};
use cluster_support::{
    LEASE_TTL_MS, Node, field, holders, imap_account_named, inbox_counts, logs, message, rows,
    until,
};

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, Postgres, SeedMessage, Smtp};

const PASS: &str = "pw";
/// Where every test message is sent: a Dovecot user that is no account of the cluster, so
/// the accounts' own mailboxes change only by what the test asks.
const SINK: &str = "sink@example.org";
/// The bound: a dead node's accounts are held again within this.
const TAKEOVER: Duration = Duration::from_secs(5);
/// The longest one may take on a loaded test machine.
const TAKEOVER_LOADED: Duration = Duration::from_secs(8);

/// One test at a time: each runs three nodes with their own PostgreSQL, Dovecot and
/// Postfix, and two of them at once on a small machine would measure its cores, not the
/// takeover.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn user(i: usize) -> String {
    format!("u{i}@example.org")
}

fn draft(user: &str, k: usize) -> Vec<u8> {
    format!(
        "From: {user}\r\nTo: {SINK}\r\nSubject: note {k}\r\nMessage-ID: <s{k}.{user}>\r\n\
         Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nnote {k}\r\n"
    )
    .into_bytes()
}

/// A message of the Bulk mailbox: a body of some size, so that the initial sync's body
/// pass takes a while.
fn bulk_message(user: &str, n: usize) -> Vec<u8> {
    let mut m = message(user, BULK_FROM + n);
    for line in 0..100 {
        m.extend_from_slice(format!("line {line} of a longer body, to be fetched\r\n").as_bytes());
    }
    m
}

fn seeds(raws: impl Iterator<Item = Vec<u8>>, flags: &[&str]) -> Vec<SeedMessage> {
    raws.enumerate()
        .map(|(n, raw)| SeedMessage {
            raw,
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            internal_date: 1_796_000_000 + n as i64,
        })
        .collect()
}

/// Messages of the Bulk mailbox are numbered from here (`message(user, BULK_FROM + n)`).
const BULK_FROM: usize = 1000;

/// PostgreSQL, Dovecot (and Postfix when asked), `accounts` users each seeded with
/// `seeded` INBOX messages, `bulk` in Bulk (only there to be synced) and an empty Archive,
/// the first `senders` with `drafts` drafts each; the nodes' shared configuration.
struct World {
    pg: Postgres,
    db: String,
    dovecot: Dovecot,
    smtp: Option<Smtp>,
    dir: tempfile::TempDir,
    common: String,
    /// Account id -> Dovecot user.
    users: BTreeMap<i64, String>,
    nodes: Vec<Node>,
    /// Killed nodes, kept for their logs.
    dead: Vec<Node>,
    started: usize,
}

impl World {
    fn start(
        accounts: usize,
        seeded: usize,
        bulk: usize,
        senders: usize,
        drafts: usize,
        smtp: bool,
    ) -> Result<World> {
        let pg = Postgres::start()?;
        let url = pg.fresh_database()?;
        let db = url.rsplit('/').next().context("database name")?.to_owned();
        let dovecot = Dovecot::start(DovecotOptions::default())?;
        let mut logins: Vec<(String, String)> =
            (0..accounts).map(|i| (user(i), PASS.to_owned())).collect();
        logins.push((SINK.to_owned(), PASS.to_owned()));
        dovecot.add_users(&logins)?;
        let smtp = if smtp {
            Some(Smtp::start(&dovecot)?)
        } else {
            None
        };
        let mut config = String::new();
        for i in 0..accounts {
            let u = user(i);
            dovecot.seed(
                &u,
                "INBOX",
                &seeds((0..seeded).map(|n| message(&u, n)), &[]),
            )?;
            dovecot.seed(&u, "Archive", &[])?;
            let b = (0..bulk).map(|n| bulk_message(&u, n));
            dovecot.seed(&u, "Bulk", &seeds(b, &[]))?;
            let d = if i < senders { drafts } else { 0 };
            dovecot.seed(
                &u,
                "Drafts",
                &seeds((0..d).map(|k| draft(&u, k)), &["\\Draft"]),
            )?;
            dovecot.seed(&u, "Sent", &[])?;
            config.push_str(&imap_account_named(
                "alice",
                &format!("m{i}"),
                &u,
                PASS,
                &dovecot,
            ));
            if let Some(s) = &smtp {
                config.push_str(&format!(
                    "[account.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\n",
                    s.submission_port()
                ));
            }
        }
        let dir = tempfile::tempdir()?;
        let common = format!(
            "store = \"{url}\"\nkey_file = \"{key}\"\n[[user]]\nname = \"alice\"\npassword = \"x\"\n{config}",
            key = dir.path().join("key/secret.key").display(),
        );
        Ok(World {
            pg,
            db,
            dovecot,
            smtp,
            dir,
            common,
            users: BTreeMap::new(),
            nodes: Vec::new(),
            dead: Vec::new(),
            started: 0,
        })
    }

    /// Starts one more node under a new name.
    fn add_node(&mut self) -> Result<()> {
        self.started += 1;
        let port = push_support::free_port()?;
        let node = Node::start_on(
            self.dir.path(),
            &format!("n{}", self.started),
            &self.common,
            port,
        )?;
        self.nodes.push(node);
        Ok(())
    }

    /// The first node (it makes the accounts from the configuration), then two more.
    async fn three_nodes(&mut self, accounts: usize) -> Result<()> {
        self.add_node()?;
        let (pg, db) = (&self.pg, &self.db);
        until("the accounts made", Duration::from_secs(60), || {
            let made = rows(pg, db, "SELECT id FROM account").map_or(0, |r| r.len());
            Ok((made == accounts).then_some(()))
        })
        .await
        .with_context(|| logs(&self.nodes))?;
        for r in rows(&self.pg, &self.db, "SELECT id, username FROM account")? {
            self.users.insert(r[0].parse()?, r[1].clone());
        }
        self.add_node()?;
        self.add_node()
    }

    /// Every node's log, what is queued and what the database's sessions are doing: a
    /// failure's message.
    fn all_logs(&self) -> String {
        let q = |sql: &str| {
            rows(&self.pg, &self.db, sql).map_or_else(|e| format!("{e:#}"), |r| format!("{r:?}"))
        };
        format!(
            "{}\n---dead---\n{}\n---outbox---\n{}\n---sessions---\n{}",
            logs(&self.nodes),
            logs(&self.dead),
            q("SELECT account_id, kind, attempts, last_error FROM outbox ORDER BY id LIMIT 40"),
            q(
                "SELECT application_name, state, wait_event_type, wait_event, \
               now() - xact_start, left(query, 120) FROM pg_stat_activity \
               WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ),
        )
    }

    fn live(&self) -> BTreeSet<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    fn any_port(&self, rng: &mut StdRng) -> Result<u16> {
        Ok(self.nodes.choose(rng).context("no node")?.port)
    }

    /// A random node holding accounts, preferring one that holds an account of `among`.
    fn pick(&self, rng: &mut StdRng, among: &BTreeSet<i64>) -> Result<String> {
        let h = holders(&self.pg, &self.db)?;
        let holds = |n: &Node, only: bool| {
            h.iter()
                .any(|(a, x)| *x == n.name && (!only || among.contains(a)))
        };
        let mut names: Vec<&Node> = self.nodes.iter().filter(|n| holds(n, true)).collect();
        if names.is_empty() {
            names = self.nodes.iter().filter(|n| holds(n, false)).collect();
        }
        Ok(names
            .choose(rng)
            .context("no node holds an account")?
            .name
            .clone())
    }

    /// Accounts the query `sql` returns (its first column).
    fn accounts_of(&self, sql: &str) -> Result<BTreeSet<i64>> {
        rows(&self.pg, &self.db, sql)?
            .iter()
            .map(|r| Ok(r[0].parse()?))
            .collect()
    }

    /// `kill -9` of node `name`; once its accounts are held again, a fresh node is started
    /// in its place. Returns the time from the kill until every account the dead node held
    /// is held by a live node under a fresh lease. Every sample meanwhile: each account
    /// held by one node, a live one or the dead one (whose lease has not run out yet).
    /// `busy` (SQL, accounts with work queued) says how much of the dead node's work was
    /// left when it died.
    async fn kill(&mut self, name: &str, phase: &str, busy: &str) -> Result<Duration> {
        // The cluster at three: the last kill's fresh node at work (holding accounts)
        // before the next kill, or the survivors would be one and a node still starting.
        let (pg, db) = (&self.pg, &self.db);
        let live = self.live();
        until("three nodes at work", Duration::from_secs(30), || {
            let at_work: BTreeSet<String> = holders(pg, db)?.into_values().collect();
            Ok(live.iter().all(|n| at_work.contains(n)).then_some(()))
        })
        .await
        .with_context(|| self.all_logs())?;
        let index = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .context("no such node")?;
        let mut victim = self.nodes.remove(index);
        let marks: Vec<usize> = self.nodes.iter().map(|n| n.log().len()).collect();
        victim.child.kill()?; // SIGKILL
        let killed = Instant::now();
        victim.child.wait()?;
        self.dead.push(victim);
        // Read after the kill: the leases it held then, and which of them had work left.
        let orphans: Vec<i64> = holders(&self.pg, &self.db)?
            .into_iter()
            .filter(|(_, n)| n == name)
            .map(|(a, _)| a)
            .collect();
        let left = self.accounts_of(busy)?;
        let live = self.live();
        let (pg, db) = (&self.pg, &self.db);
        let took = until(
            &format!("the accounts of {name} taken over ({phase})"),
            Duration::from_secs(30),
            || {
                let h = holders(pg, db)?;
                if let Some((a, n)) = h.iter().find(|(_, n)| !live.contains(*n) && *n != name) {
                    bail!("account {a} held by {n}, neither live nor just killed");
                }
                Ok(orphans
                    .iter()
                    .all(|a| h.get(a).is_some_and(|n| live.contains(n)))
                    .then(|| killed.elapsed()))
            },
        )
        .await
        .with_context(|| self.all_logs())?;
        if took > TAKEOVER {
            // What the survivors did meanwhile, for the failure this becomes at the end.
            for (n, mark) in self.nodes.iter().zip(marks) {
                let log = n.log();
                let lines: Vec<&str> = log
                    .get(mark..)
                    .unwrap_or("")
                    .lines()
                    .filter(|l| !l.contains(" INFO ") || l.contains("account taken"))
                    .take(40)
                    .collect();
                eprintln!(
                    "slow takeover: {} since the kill:\n{}",
                    n.name,
                    lines.join("\n")
                );
            }
        }
        let busy_held = orphans.iter().filter(|a| left.contains(a)).count();
        eprintln!(
            "{phase}: killed {name} holding {} accounts ({busy_held} with work left); \
             held again after {took:?}",
            orphans.len()
        );
        self.add_node()?;
        Ok(took)
    }

    /// Every node answers on its port: up before the test sends it requests.
    async fn listening(&self) -> Result<()> {
        for n in &self.nodes {
            let port = n.port;
            until("a node listening", Duration::from_secs(30), || {
                Ok(std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(drop))
            })
            .await
            .with_context(|| n.log())?;
        }
        Ok(())
    }

    /// Account id -> JMAP account id.
    fn jmap_id(account: i64) -> String {
        format!("a{account}")
    }

    /// Role or name -> JMAP mailbox id, of one account.
    fn mailbox_ids(&self, port: u16, account: i64) -> Result<HashMap<String, String>> {
        let r = call(
            port,
            "Mailbox/get",
            json!({"accountId": World::jmap_id(account)}),
        )?;
        let mut m = HashMap::new();
        for b in r["list"].as_array().context("Mailbox/get")? {
            let id = b["id"].as_str().context("mailbox id")?.to_owned();
            m.insert(b["name"].as_str().unwrap_or("").to_owned(), id);
        }
        Ok(m)
    }

    /// Message-ID -> JMAP Email id of the Emails in one mailbox of an account.
    fn emails_in(&self, port: u16, account: i64, mailbox: &str) -> Result<HashMap<String, String>> {
        let a = World::jmap_id(account);
        let r = crate::cluster_support::views::jmap(
            port,
            json!([
                ["Email/query", {"accountId": a, "filter": {"inMailbox": mailbox}, "limit": 1000}, "q"],
                ["Email/get", {"accountId": a, "#ids": {"resultOf": "q", "name": "Email/query",
                    "path": "/ids"}, "properties": ["messageId"]}, "g"]
            ]),
        )?;
        let mut m = HashMap::new();
        for e in r["methodResponses"][1][1]["list"]
            .as_array()
            .with_context(|| format!("Email/get: {r}"))?
        {
            let mid = e["messageId"][0].as_str().context("messageId")?.to_owned();
            m.insert(mid, e["id"].as_str().context("id")?.to_owned());
        }
        Ok(m)
    }

    fn outbox_pending(&self) -> Result<usize> {
        Ok(rows(&self.pg, &self.db, "SELECT count(*) FROM outbox")?
            .first()
            .and_then(|r| r[0].parse().ok())
            .unwrap_or(0))
    }

    async fn outbox_drained(&self, limit: Duration) -> Result<()> {
        until("the outbox drained", limit, || {
            Ok((self.outbox_pending()? == 0).then_some(()))
        })
        .await
        .with_context(|| self.all_logs())
    }

    /// No (account, epoch) was ever taken twice, by any node, living or dead: no two nodes
    /// worked on an account under the same lease.
    fn epochs_unique(&self) -> Result<usize> {
        let mut seen: HashMap<(i64, i64), &str> = HashMap::new();
        for n in self.nodes.iter().chain(&self.dead) {
            for e in n.taken_epochs() {
                if let Some(other) = seen.insert(e, &n.name) {
                    let key = format!("account={} ", e.0);
                    let about: Vec<String> = self
                        .nodes
                        .iter()
                        .chain(&self.dead)
                        .flat_map(|n| {
                            let log = n.log();
                            log.lines()
                                .filter(|l| l.contains(&key) || l.contains("renew"))
                                .map(|l| format!("{}: {l}", n.name))
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    bail!(
                        "account {} epoch {} taken by {other} and {}:\n{}",
                        e.0,
                        e.1,
                        n.name,
                        about.join("\n")
                    );
                }
            }
        }
        Ok(seen.len())
    }
}

/// What the user asked for one message.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Change {
    Flag,
    Seen,
    Move,
    Destroy,
}

/// The `p`th percentile (nearest rank).
fn percentile(v: &[Duration], p: usize) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s.get((s.len() * p).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_during_sync_writeback_and_sending_lose_and_repeat_nothing() -> Result<()> {
    const ACCOUNTS: usize = 30;
    const SEEDED: usize = 45;
    /// Enough that the initial sync is still running over the first kills.
    const BULK: usize = 200;
    const CHANGES: usize = 1000;
    const SENDERS: usize = 12;
    const DRAFTS: usize = 3;
    /// Kills in the three phases: initial sync, write-back, sending.
    const KILLS: [usize; 3] = [6, 7, 7];
    let seed: u64 = match std::env::var("TIDINGS_CHAOS_SEED") {
        Ok(s) => s.parse().context("TIDINGS_CHAOS_SEED")?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    };
    let _alone = ONE_AT_A_TIME.lock().await;
    eprintln!("chaos seed {seed} (TIDINGS_CHAOS_SEED={seed} replays the same choices)");
    let mut rng = StdRng::seed_from_u64(seed);
    let began = Instant::now();
    let mut w = World::start(ACCOUNTS, SEEDED, BULK, SENDERS, DRAFTS, true)?;
    w.three_nodes(ACCOUNTS).await?;
    let mut takeovers = Vec::new();

    // Phase 1: kills while the accounts are first synced, from when all three nodes work.
    let (pg, db) = (&w.pg, &w.db);
    until("three nodes at work", Duration::from_secs(60), || {
        let at_work: BTreeSet<String> = holders(pg, db)?.into_values().collect();
        Ok((at_work.len() == 3).then_some(()))
    })
    .await
    .with_context(|| w.all_logs())?;
    let per_account = SEEDED + BULK;
    let copies = "SELECT a.id, count(c.mailbox_id) FROM account a \
                  LEFT JOIN mailbox b ON b.account_id = a.id \
                  LEFT JOIN copy c ON c.mailbox_id = b.id GROUP BY a.id";
    // Headers first, then the bodies (the background body pass).
    let unsynced = format!(
        "{copies} HAVING count(c.mailbox_id) < {per_account} \
         UNION SELECT account_id, 0 FROM email WHERE blob_id IS NULL"
    );
    for _ in 0..KILLS[0] {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        let stored: usize = rows(&w.pg, &w.db, copies)?
            .iter()
            .map(|r| r[1].parse::<usize>().unwrap_or(0))
            .sum();
        let bodies = rows(
            &w.pg,
            &w.db,
            "SELECT count(*) FROM email WHERE blob_id IS NULL",
        )?;
        eprintln!(
            "initial sync: {stored} of {} stored, {} without their body",
            ACCOUNTS * per_account + SENDERS * DRAFTS,
            bodies.first().map_or("?", |r| r[0].as_str())
        );
        let victim = w.pick(&mut rng, &w.accounts_of(&unsynced)?)?;
        takeovers.push(w.kill(&victim, "initial sync", &unsynced).await?);
    }
    until("every account synced", Duration::from_secs(120), || {
        let c = inbox_counts(&w.pg, &w.db)?;
        let left = rows(&w.pg, &w.db, &unsynced)?.len();
        Ok((c.len() == ACCOUNTS && c.values().all(|&n| n == SEEDED) && left == 0).then_some(()))
    })
    .await
    .with_context(|| w.all_logs())?;
    eprintln!("phase 1 done at {:?}", began.elapsed());

    // Phase 2: 1,000 changes through any node, queued in seven waves, a kill in each.
    let accounts: Vec<i64> = w.users.keys().copied().collect();
    w.listening().await?;
    let port = w.any_port(&mut rng)?;
    let mut boxes = HashMap::new();
    let mut inbox = HashMap::new();
    for &a in &accounts {
        let b = w.mailbox_ids(port, a)?;
        let ids = w.emails_in(port, a, b.get("INBOX").context("INBOX")?)?;
        if ids.len() != SEEDED {
            bail!("account {a}: {} Emails in INBOX", ids.len());
        }
        inbox.insert(a, ids);
        boxes.insert(a, b);
    }
    let mut all: Vec<(i64, usize)> = accounts
        .iter()
        .flat_map(|&a| (0..SEEDED).map(move |n| (a, n)))
        .collect();
    all.shuffle(&mut rng);
    let plan: Vec<(i64, usize, Change)> = all
        .into_iter()
        .take(CHANGES)
        .map(|(a, n)| {
            let c = match rng.gen_range(0..8) {
                0..=2 => Change::Flag,
                3 => Change::Seen,
                4 | 5 => Change::Move,
                _ => Change::Destroy,
            };
            (a, n, c)
        })
        .collect();
    let queued = "SELECT DISTINCT account_id FROM outbox";
    for wave in plan.chunks(CHANGES.div_ceil(KILLS[1])) {
        // The victim's accounts are asked last, so it dies replaying them.
        w.listening().await?;
        let victim = w.pick(&mut rng, &BTreeSet::new())?;
        let h = holders(&w.pg, &w.db)?;
        let mut per_account: BTreeMap<i64, (Map<String, Value>, Vec<String>)> = BTreeMap::new();
        for &(a, n, c) in wave {
            let u = &w.users[&a];
            let id = inbox[&a]
                .get(&format!("{n}.{u}"))
                .with_context(|| format!("message {n} of {u}"))?
                .clone();
            let (update, destroy) = per_account.entry(a).or_default();
            match c {
                Change::Flag => {
                    update.insert(id, json!({"keywords/$flagged": true}));
                }
                Change::Seen => {
                    update.insert(id, json!({"keywords/$seen": true}));
                }
                Change::Move => {
                    let b = &boxes[&a];
                    let to = b.get("Archive").context("Archive")?;
                    update.insert(id, json!({"mailboxIds": {to: true}}));
                }
                Change::Destroy => destroy.push(id),
            }
        }
        // The other accounts' changes first; then the victim's, through another node, while
        // the victim is killed at a random moment of their replay.
        let (mine, others): (Vec<_>, Vec<_>) = per_account
            .into_iter()
            .partition(|(a, _)| h.get(a) == Some(&victim));
        let set = |port: u16, a: i64, update: Map<String, Value>, destroy: Vec<String>| {
            let want = update.len() + destroy.len();
            let r = call(
                port,
                "Email/set",
                json!({"accountId": World::jmap_id(a), "update": update, "destroy": destroy}),
            )?;
            let done = r["updated"].as_object().map_or(0, Map::len)
                + r["destroyed"].as_array().map_or(0, Vec::len);
            if done != want {
                bail!("Email/set on account {a}: {r}");
            }
            Ok(())
        };
        for (a, (update, destroy)) in others {
            set(w.any_port(&mut rng)?, a, update, destroy)?;
        }
        let port = w
            .nodes
            .iter()
            .find(|n| n.name != victim)
            .context("a second node")?
            .port;
        let asked = mine.len();
        let (tx, rx) = std::sync::mpsc::channel();
        let asking = std::thread::spawn(move || -> Result<()> {
            for (a, (update, destroy)) in mine {
                set(port, a, update, destroy)?;
                let _ = tx.send(());
            }
            Ok(())
        });
        // Killed after a random number of them were queued (and some replayed).
        let before = rng.gen_range(0..asked.max(1));
        for _ in 0..before {
            rx.recv_timeout(Duration::from_secs(30))
                .context("Email/set of the victim's accounts")?;
        }
        takeovers.push(w.kill(&victim, "write-back", queued).await?);
        asking
            .join()
            .map_err(|_| anyhow::anyhow!("the Email/set thread panicked"))??;
        eprintln!(
            "write-back: {} of {asked} Email/set for its accounts made after the kill",
            asked - before
        );
    }
    w.outbox_drained(Duration::from_secs(120)).await?;
    eprintln!("phase 2 done at {:?}", began.elapsed());

    // Phase 3: the senders' drafts submitted in waves through any node, with no undo
    // window; a kill once Postfix has begun to receive each wave.
    let smtp = w.smtp.take().context("Postfix")?;
    let senders: Vec<i64> = accounts.iter().copied().take(SENDERS).collect();
    w.listening().await?;
    let mut drafts: Vec<(i64, String, String)> = Vec::new();
    for &a in &senders {
        let p = w.any_port(&mut rng)?;
        let d = boxes[&a].get("Drafts").context("Drafts")?;
        for (mid, id) in w.emails_in(p, a, d)? {
            drafts.push((a, mid, id));
        }
    }
    if drafts.len() != SENDERS * DRAFTS {
        bail!("{} drafts synced", drafts.len());
    }
    drafts.shuffle(&mut rng);
    let mut identities: HashMap<i64, String> = HashMap::new();
    let mut submitted: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let unsent = "SELECT DISTINCT account_id FROM submission WHERE undo_status <> 'final'";
    for k in 0..KILLS[2] {
        // A victim holding drafts still to send; its drafts go first in the wave.
        let waiting: BTreeSet<i64> = drafts.iter().map(|d| d.0).collect();
        w.listening().await?;
        let victim = w.pick(&mut rng, &waiting)?;
        let h = holders(&w.pg, &w.db)?;
        drafts.sort_by_key(|d| h.get(&d.0) == Some(&victim));
        let take = drafts.len().div_ceil(KILLS[2] - k);
        let wave: Vec<_> = drafts.split_off(drafts.len() - take);
        let before = smtp.accepted_message_ids().len();
        for (a, mid, id) in &wave {
            let p = w.any_port(&mut rng)?;
            let acc = World::jmap_id(*a);
            if !identities.contains_key(a) {
                let r = call(p, "Identity/get", json!({"accountId": acc}))?;
                let i = r["list"][0]["id"].as_str().context("identity")?;
                identities.insert(*a, i.to_owned());
            }
            let identity = &identities[a];
            let u = &w.users[a];
            let r = call(
                p,
                "EmailSubmission/set",
                json!({"accountId": acc, "create": {"s": {"identityId": identity, "emailId": id,
                    "envelope": {"mailFrom": {"email": u, "parameters": {"HOLDFOR": "0"}},
                                 "rcptTo": [{"email": SINK}]}}}}),
            )?;
            let sid = r["created"]["s"]["id"]
                .as_str()
                .with_context(|| format!("not created: {r}"))?;
            submitted.insert(mid.clone(), (*a, sid.to_owned()));
        }
        // Killed once Postfix began to receive the wave, a random moment later.
        let start = Instant::now();
        while smtp.accepted_message_ids().len() == before {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("Postfix received nothing\n{}", w.all_logs());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..30)));
        let at = smtp.accepted_message_ids().len();
        takeovers.push(w.kill(&victim, "sending", unsent).await?);
        eprintln!(
            "sending: {at} of {} received by Postfix at the kill",
            submitted.len()
        );
    }

    // Drained: every submission final (bounded), every change replayed.
    let by_account = {
        let mut m: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for (a, sid) in submitted.values() {
            m.entry(*a).or_default().push(sid.clone());
        }
        m
    };
    let mut outcome: BTreeMap<String, String> = BTreeMap::new();
    w.listening().await?;
    let start = Instant::now();
    loop {
        outcome.clear();
        let p = w.any_port(&mut rng)?;
        for (a, sids) in &by_account {
            let r = call(
                p,
                "EmailSubmission/get",
                json!({"accountId": World::jmap_id(*a), "ids": sids}),
            )?;
            for s in r["list"].as_array().context("EmailSubmission/get")? {
                let d = &s["deliveryStatus"][SINK];
                let delivered = d["delivered"].as_str().unwrap_or("");
                // Final, and either refused or unknown, or accepted with the server's reply.
                let settled = s["undoStatus"] == "final"
                    && (delivered != "queued"
                        || d["smtpReply"]
                            .as_str()
                            .is_some_and(|t| t.starts_with("250")));
                if settled {
                    outcome.insert(
                        s["id"].as_str().unwrap_or("").to_owned(),
                        delivered.to_owned(),
                    );
                }
            }
        }
        if outcome.len() == submitted.len() {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            bail!("not all submissions final: {outcome:?}\n{}", w.all_logs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    w.outbox_drained(Duration::from_secs(60)).await?;
    eprintln!("phase 3 done at {:?}", began.elapsed());

    // Every kill: held again within the bound; no lease ever worked under twice.
    let worst = takeovers.iter().max().copied().unwrap_or_default();
    eprintln!(
        "takeover after kill -9 (lease {LEASE_TTL_MS} ms), {} kills: p50 {:?}, p99 {:?}, \
         max {worst:?}",
        takeovers.len(),
        percentile(&takeovers, 50),
        percentile(&takeovers, 99)
    );
    assert_eq!(takeovers.len(), KILLS.iter().sum::<usize>());
    let leases = w.epochs_unique()?;
    // A node that lost a lease while alive was starved past its lease time (in this test
    // no node is paused): how often, for the report.
    let starved: usize = w
        .nodes
        .iter()
        .chain(&w.dead)
        .map(|n| n.log().matches("account lease lost").count())
        .sum();
    eprintln!("{leases} leases taken, none twice; {starved} lost by a live node");

    // Postfix: nothing received twice; every accepted submission received once; one cut
    // by a kill between its begin and its reply is `unknown` (never sent again: at most
    // once is what SMTP allows), at most one per kill of that phase.
    let received = smtp.accepted_message_ids();
    let mut times: HashMap<&str, usize> = HashMap::new();
    for id in &received {
        *times.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "submitted twice: {twice:?}");
    let mut unknown = 0;
    for (mid, (_, sid)) in &submitted {
        match outcome.get(sid).map(String::as_str) {
            Some("queued") => assert_eq!(
                times.get(mid.as_str()),
                Some(&1),
                "{mid} accepted but not in Postfix's log"
            ),
            Some("unknown") => unknown += 1,
            other => panic!("{mid}: delivered {other:?}"),
        }
    }
    eprintln!(
        "{} submitted, {} received by Postfix, {unknown} unknown (cut by a kill)",
        submitted.len(),
        received.len()
    );
    assert!(unknown <= KILLS[2], "{unknown} unknown");
    assert!(
        received.iter().all(|id| submitted.contains_key(id)),
        "Postfix received what nobody submitted: {received:?}"
    );
    // Delivered to the sink once each (LMTP; bounded wait).
    let want_sink: BTreeMap<String, Vec<Vec<String>>> = times
        .keys()
        .map(|id| ((*id).to_owned(), vec![vec![]]))
        .collect();
    let dovecot_port = w.dovecot.imap_port();
    until("the sink's deliveries", Duration::from_secs(30), || {
        let v = imap_view(dovecot_port, SINK, PASS, &["INBOX"])?;
        Ok((v.get("INBOX") == Some(&want_sink)).then_some(()))
    })
    .await?;

    // Every account, read by an independent IMAP client: exactly the intended state.
    let planned: HashMap<(i64, usize), Change> =
        plan.iter().map(|&(a, n, c)| ((a, n), c)).collect();
    let mut checked = 0;
    for &a in &accounts {
        let u = &w.users[&a];
        let mut want = View::new();
        let (mut inb, mut arch) = (BTreeMap::new(), BTreeMap::new());
        for n in 0..SEEDED {
            let id = format!("{n}.{u}");
            match planned.get(&(a, n)) {
                None => {
                    inb.insert(id, vec![vec![]]);
                }
                Some(Change::Flag) => {
                    inb.insert(id, vec![vec!["\\Flagged".to_owned()]]);
                }
                Some(Change::Seen) => {
                    inb.insert(id, vec![vec!["\\Seen".to_owned()]]);
                }
                Some(Change::Move) => {
                    arch.insert(id, vec![vec![]]);
                }
                Some(Change::Destroy) => {}
            }
        }
        want.insert("INBOX".into(), inb);
        let bulk = (0..BULK).map(|n| (format!("{}.{u}", BULK_FROM + n), vec![vec![]]));
        want.insert("Bulk".into(), bulk.collect());
        want.insert("Archive".into(), arch);
        let (mut drafts_left, mut sent) = (BTreeMap::new(), BTreeMap::new());
        if senders.contains(&a) {
            for k in 0..DRAFTS {
                let id = format!("s{k}.{u}");
                drafts_left.insert(id.clone(), vec![vec!["\\Draft".to_owned()]]);
                sent.insert(id, vec![vec!["\\Seen".to_owned()]]);
            }
        }
        want.insert("Drafts".into(), drafts_left);
        want.insert("Sent".into(), sent);
        let names = ["INBOX", "Archive", "Bulk", "Drafts", "Sent"];
        let server = imap_view(dovecot_port, u, PASS, &names)?;
        assert_eq!(server, want, "account {a} ({u}) on the server");
        let stored = store_view(&w.pg, &w.db, a, &names)?;
        assert_eq!(
            stored, server,
            "account {a} ({u}): the store against the server"
        );
        checked += server.values().map(|m| m.len()).sum::<usize>();
    }
    eprintln!(
        "{checked} messages checked on {} accounts; done at {:?}",
        accounts.len(),
        began.elapsed()
    );
    // Nine kills in ten within the bound, and none beyond a margin for a loaded
    // test machine: a takeover during the initial sync, on 2 cores shared with other
    // builds, has taken up to 6 s (BENCHMARKS.md has the runs). Before the lease fixes,
    // up to 9.2 s.
    assert!(
        percentile(&takeovers, 90) <= TAKEOVER && worst <= TAKEOVER_LOADED,
        "takeovers: {takeovers:?}"
    );
    Ok(())
}

/// The store rows of one account a stale writer could touch: its copies and their flags,
/// its outbox, its submissions and its change log's length.
fn account_rows(w: &World, account: i64) -> Result<Vec<Vec<String>>> {
    rows(
        &w.pg,
        &w.db,
        &format!(
            "SELECT 'copy', c.mailbox_id::text, c.uid::text, c.flags, c.modseq::text \
               FROM copy c JOIN mailbox b ON b.id = c.mailbox_id WHERE b.account_id = {account} \
             UNION ALL SELECT 'mailbox', id::text, uidnext::text, highestmodseq::text, '' \
               FROM mailbox WHERE account_id = {account} \
             UNION ALL SELECT 'outbox', count(*)::text, '', '', '' FROM outbox WHERE account_id = {account} \
             UNION ALL SELECT 'change', count(*)::text, '', '', '' FROM change WHERE account_id = {account} \
             ORDER BY 1, 2, 3"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_past_its_lease_writes_nothing_for_the_accounts_it_lost() -> Result<()> {
    stopped_past_its_lease(false).await
}

/// The same with an APPEND among the queued changes: a node stopped while its APPEND is on
/// the wire (the command sent, the server's go-ahead on its way) sends nothing of it when
/// it wakes, so the new holder's copy is the only one (docs/design/postgres.md, "Leases").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_mid_append_does_not_append_twice() -> Result<()> {
    stopped_past_its_lease(true).await
}

/// A node stopped (SIGSTOP) past its lease while it replays queued flag changes (and an
/// APPEND per account, with `append`), resumed after the others took over and the user
/// undid half of the flags through another node.
async fn stopped_past_its_lease(append: bool) -> Result<()> {
    const ACCOUNTS: usize = 12;
    const SEEDED: usize = 30;
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut rng = StdRng::seed_from_u64(7);
    let mut w = World::start(ACCOUNTS, SEEDED, 0, 0, 0, false)?;
    w.three_nodes(ACCOUNTS).await?;
    let (pg, db) = (&w.pg, &w.db);
    until(
        "every account held by three nodes and synced",
        Duration::from_secs(90),
        || {
            let h = holders(pg, db)?;
            let c = inbox_counts(pg, db)?;
            let nodes: BTreeSet<&String> = h.values().collect();
            Ok(
                (h.len() == ACCOUNTS && nodes.len() == 3 && c.values().all(|&n| n == SEEDED))
                    .then_some(()),
            )
        },
    )
    .await
    .with_context(|| w.all_logs())?;

    // The victim and what it holds; the changes are queued through another node, and the
    // victim is stopped once it has begun replaying them.
    let h = holders(&w.pg, &w.db)?;
    let vi = rng.gen_range(0..w.nodes.len());
    let victim = w.nodes[vi].name.clone();
    let lost: Vec<i64> = h
        .iter()
        .filter(|(_, n)| **n == victim)
        .map(|(a, _)| *a)
        .collect();
    let other = w.nodes[(vi + 1) % w.nodes.len()].port;
    let mut flagged: HashMap<i64, Vec<String>> = HashMap::new();
    let mut calls = Vec::new();
    for &a in &lost {
        let b = w.mailbox_ids(other, a)?;
        let ids = w.emails_in(other, a, b.get("INBOX").context("INBOX")?)?;
        let update: Map<String, Value> = ids
            .values()
            .map(|id| (id.clone(), json!({"keywords/$flagged": true})))
            .collect();
        flagged.insert(a, ids.values().cloned().collect());
        // And one new message in Archive: an APPEND to be made once.
        let create = if append {
            json!({"n": {"mailboxIds": {b.get("Archive").context("Archive")?: true},
                "messageId": [format!("new.{}", w.users[&a])],
                "from": [{"email": "someone@example.net"}], "subject": "appended once",
                "bodyValues": {"1": {"value": "hello"}},
                "textBody": [{"partId": "1", "type": "text/plain"}]}})
        } else {
            json!({})
        };
        calls.push(
            json!([["Email/set", {"accountId": World::jmap_id(a), "update": update,
            "create": create}, "0"]]),
        );
    }
    let pending_at = |w: &World| -> Result<usize> {
        let list = lost
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Ok(rows(
            &w.pg,
            &w.db,
            &format!("SELECT count(*) FROM outbox WHERE account_id IN ({list})"),
        )?
        .first()
        .and_then(|r| r[0].parse().ok())
        .unwrap_or(0))
    };
    // The changes are queued one account after the other through another node; the
    // victim is stopped once the first are queued (it is replaying them), so the rest
    // queue while it is frozen.
    let (tx, rx) = std::sync::mpsc::channel();
    let asking = std::thread::spawn(move || -> Result<()> {
        for c in calls {
            let r = crate::cluster_support::views::jmap(other, c)?;
            let set = &r["methodResponses"][0][1];
            if set["updated"].is_null() || (append && set["created"]["n"].is_null()) {
                bail!("Email/set: {r}");
            }
            let _ = tx.send(());
        }
        Ok(())
    });
    rx.recv_timeout(Duration::from_secs(30))
        .context("the first Email/set")?;
    std::thread::sleep(Duration::from_millis(rng.gen_range(0..30)));
    w.nodes[vi].signal("STOP")?;
    let stopped = Instant::now();
    let pending = pending_at(&w)?;
    asking
        .join()
        .map_err(|_| anyhow::anyhow!("the Email/set thread panicked"))??;
    eprintln!(
        "{victim} stopped holding {} accounts, {pending} changes queued for them at the stop, \
         {} once all were made",
        lost.len(),
        pending_at(&w)?
    );

    // The others take its accounts over and replay the rest.
    let (pg, db) = (&w.pg, &w.db);
    let taken = until("its accounts taken over", Duration::from_secs(30), || {
        let h = holders(pg, db)?;
        Ok(lost
            .iter()
            .all(|a| h.get(a).is_some_and(|n| *n != victim))
            .then(|| stopped.elapsed()))
    })
    .await
    .with_context(|| w.all_logs())?;
    eprintln!("taken over {taken:?} after the stop");
    until(
        "the queued changes replayed",
        Duration::from_secs(60),
        || Ok((pending_at(&w)? == 0).then_some(())),
    )
    .await
    .with_context(|| w.all_logs())?;

    // The user then unflags half of them through another node; replayed by the new holder.
    let third = w.nodes[(vi + 2) % w.nodes.len()].port;
    let mut unflagged: BTreeSet<String> = BTreeSet::new();
    for &a in &lost {
        let half: Vec<&String> = flagged[&a].iter().take(SEEDED / 2).collect();
        let update: Map<String, Value> = half
            .iter()
            .map(|id| ((*id).clone(), json!({"keywords/$flagged": null})))
            .collect();
        let r = call(
            third,
            "Email/set",
            json!({"accountId": World::jmap_id(a), "update": update}),
        )?;
        if r["updated"].as_object().map_or(0, Map::len) != half.len() {
            bail!("Email/set: {r}");
        }
        unflagged.extend(half.into_iter().cloned());
    }
    until("the unflagging replayed", Duration::from_secs(60), || {
        Ok((pending_at(&w)? == 0).then_some(()))
    })
    .await
    .with_context(|| w.all_logs())?;

    // What the server and the store hold now, once the new holders synced the last of it
    // (the store's HIGHESTMODSEQ caught up with the server's, RFC 7162 3.1.2.1).
    let names = ["INBOX", "Archive"];
    let port = w.dovecot.imap_port();
    until("the new holders synced", Duration::from_secs(30), || {
        for &a in &lost {
            let mut c = ImapClient::login(port, &w.users[&a], PASS)?;
            for m in names {
                let server: u64 = c
                    .select(m)?
                    .iter()
                    .find_map(|l| field(l, "HIGHESTMODSEQ "))
                    .context("HIGHESTMODSEQ")?
                    .try_into()?;
                let stored = rows(
                    &w.pg,
                    &w.db,
                    &format!(
                        "SELECT highestmodseq FROM mailbox WHERE account_id = {a} AND name = '{m}'"
                    ),
                )?;
                if stored.first().and_then(|r| r[0].parse::<u64>().ok()) != Some(server) {
                    return Ok(None);
                }
            }
            c.logout()?;
        }
        Ok(Some(()))
    })
    .await
    .with_context(|| w.all_logs())?;
    let mut before: HashMap<i64, (View, Vec<Vec<String>>)> = HashMap::new();
    for &a in &lost {
        let server = imap_view(port, &w.users[&a], PASS, &names)?;
        let inbox = server.get("INBOX").context("INBOX")?;
        let flagged_now = inbox
            .values()
            .filter(|f| f[0].contains(&"\\Flagged".to_owned()))
            .count();
        assert_eq!(flagged_now, SEEDED - SEEDED / 2, "account {a}: {server:?}");
        let appended = usize::from(append);
        assert_eq!(server["Archive"].len(), appended, "account {a}: one APPEND");
        assert!(
            server["Archive"].values().all(|c| c.len() == 1),
            "{server:?}"
        );
        before.insert(a, (server, account_rows(&w, a)?));
    }

    let its_epochs: HashMap<i64, i64> = w.nodes[vi].taken_epochs().into_iter().collect();

    // Woken: a few lease times to do whatever it had left.
    let quiet = w.nodes[vi].log().len();
    w.nodes[vi].signal("CONT")?;
    tokio::time::sleep(Duration::from_millis(4 * LEASE_TTL_MS)).await;
    let woken = w.nodes[vi].log();
    let said: Vec<&str> = woken
        .get(quiet..)
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(12)
        .collect();
    eprintln!("{victim} after the wake:\n{}", said.join("\n"));
    for &a in &lost {
        let server = imap_view(port, &w.users[&a], PASS, &names)?;
        assert_eq!(
            server, before[&a].0,
            "account {a}: the woken node wrote to the server"
        );
        assert_eq!(
            account_rows(&w, a)?,
            before[&a].1,
            "account {a}: the store rows changed after the wake"
        );
        assert_eq!(
            store_view(&w.pg, &w.db, a, &names)?,
            server,
            "account {a}: the store against the server"
        );
    }
    // Its log says it lost them; the lease rows of those accounts moved on to a higher
    // epoch than the one it worked under (taken over; it may have taken one back since,
    // under a new epoch again).
    let log = w.nodes[vi].log();
    for r in rows(
        &w.pg,
        &w.db,
        "SELECT account_id, node, epoch FROM account_lease",
    )? {
        let a: i64 = r[0].parse()?;
        if let Some(old) = its_epochs.get(&a).filter(|_| lost.contains(&a)) {
            let epoch: i64 = r[2].parse()?;
            assert!(
                epoch > *old,
                "account {a}: epoch {epoch} not above {victim}'s {old}: {r:?}"
            );
        }
    }
    assert!(
        log.lines().any(|l| l.contains("account lease lost")),
        "{victim} never noticed the lost leases:\n{log}"
    );
    // It takes its share again: accounts left free by the others' share limits.
    let (pg, db) = (&w.pg, &w.db);
    let share = until(
        "the woken node holding its share",
        Duration::from_secs(30),
        || {
            let h = holders(pg, db)?;
            let mine = h.values().filter(|n| **n == victim).count();
            Ok((h.len() == ACCOUNTS && mine >= 2).then_some(mine))
        },
    )
    .await
    .with_context(|| w.all_logs())?;
    eprintln!("{victim} holds {share} accounts again");
    Ok(())
}
