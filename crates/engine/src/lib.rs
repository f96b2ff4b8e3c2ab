//! The engine: one task per account that syncs, watches and reconnects.
//!
//! # Layout
//! - `Engine`: owns the account tasks and their shutdown signal.
//! - `account`: the loop of one account: IMAP (connect, full sync, watch, back off) or
//!   POP3 (retrieve new mail on a timer).
//! - `backoff`: exponential backoff with jitter.
//! - `bodies`: the priority lane, one message fetched now because someone asked for it.
//! - `lease`: the accounts this node holds (several nodes on one store), for the workers.
//! - `oauth`: OAuth 2.0 access tokens of OAuth2 accounts (refresh, expiry, rotation).
//! - `sieve`: ManageSieve (RFC 5804): tried at account start, connections for the API.
//!
//! No thread per account: every account is a tokio task, and a watching account costs one
//! idle socket (two with NOTIFY: the watcher and the worker).

mod account;
mod backoff;
// Bodies fetched on demand (the priority lane).
mod bodies;
mod lease;
pub mod oauth;
// Write-back: the outbox worker.
mod outbox;
pub mod sieve;
mod submission;
pub use submission::SubmitOptions;

pub use account::apply_body_policy;
pub use backoff::Backoff;
pub use bodies::{BodyFetchError, BodyFetcher};
pub use oauth::{OAuth, OAuthProvider, SecretSeal};

use lease::{Held, Holding, Holdings};
use mail_types::{AccountId, AccountKind, UserId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{AccountRecord, Lease, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Turns a stored (encrypted) account password into the clear text needed to log in.
pub type PasswordSource = Arc<dyn Fn(&AccountRecord) -> anyhow::Result<String> + Send + Sync>;

/// Who is looking right now. The push hub answers it: a user
/// with a live push connection (WebSocket with push enabled, EventSource) is "present",
/// and the NOTIFY watchers of that user's accounts flush Dovecot's held-back notifications
/// (`EngineOptions::notify_flush`), so what they see arrives in ~100 ms, not ~500 ms.
pub trait Presence: Send + Sync {
    fn is_present(&self, user: UserId) -> bool;

    /// Every user present on this node: what the node tells the others (several nodes on
    /// one store, `Leases::share_presence`), since a user's client may be connected to a
    /// node that does not hold the user's accounts.
    fn present_users(&self) -> Vec<UserId> {
        Vec::new()
    }
}

/// This node's [`Presence`] and the users the other nodes said are present there (renewed
/// by each beat): a watcher flushes for a user looking from any node.
struct Everywhere {
    here: Arc<dyn Presence>,
    elsewhere: std::sync::RwLock<HashSet<UserId>>,
}

impl Presence for Everywhere {
    fn is_present(&self, user: UserId) -> bool {
        self.here.is_present(user) || self.elsewhere.read().is_ok_and(|e| e.contains(&user))
    }

    fn present_users(&self) -> Vec<UserId> {
        self.here.present_users()
    }
}

/// Tunables of the account tasks.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// With NOTIFY, how often a full pass (one LIST-STATUS, then only what changed) runs
    /// anyway, for the changes a server does not notify (Dovecot: renames, deletes).
    pub notify_full_pass: std::time::Duration,
    /// How many IMAP connections may be opening
    /// (TCP, TLS, login) at once; the others wait their turn, so a node starting (or a
    /// server coming back) with 1,000 accounts does not open 2,000 TLS sessions at the
    /// same instant and time them out.
    pub connect_concurrency: usize,
    /// With NOTIFY, send a NOOP on the watcher connection
    /// this often while it is quiet and the account's user is present (`Presence`), or
    /// always with `notify_flush_always`. Dovecot 2.3 holds every NOTIFY (and IDLE) event
    /// back 500 ms after the first change it sees (`NOTIFY_DELAY_MSECS`); a NOOP makes it
    /// send what it holds at once, so a delivery is seen within this interval instead.
    /// Costs one round trip per interval per watched account; `None` waits for Dovecot.
    pub notify_flush: Option<std::time::Duration>,
    /// Flush on every NOTIFY watcher, whether or not anyone is looking.
    pub notify_flush_always: bool,
    /// Fetch the bodies of new messages in the background after their headers. Off, only
    /// headers are synced and a body comes when someone asks for it (`BodyFetcher`):
    /// what tests use to hold the body pass back.
    pub background_bodies: bool,
    /// ManageSieve not found at account start (the server unreachable then, or without
    /// it) is tried again this often until it is found, so the Session follows.
    pub sieve_retry: std::time::Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            notify_full_pass: std::time::Duration::from_secs(120),
            connect_concurrency: 32,
            notify_flush: Some(std::time::Duration::from_millis(100)),
            notify_flush_always: false,
            background_bodies: true,
            sieve_retry: std::time::Duration::from_secs(3600),
        }
    }
}

/// This node among the nodes sharing one store.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Unique among the nodes of the store (e.g. host and port).
    pub name: String,
    /// How long an account's lease lasts without renewal: a dead node's accounts are
    /// taken over by the others this long (plus one beat) after its last renewal. The
    /// engine's beat (`Engine::reconcile`) is to run every third of it.
    pub lease_ttl: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            name: format!("node-{}", std::process::id()),
            lease_ttl: Duration::from_secs(3),
        }
    }
}

/// The leases this node holds, with their holdings: what the keeper renews.
type LeaseTable = Arc<std::sync::Mutex<HashMap<AccountId, (Lease, Arc<Holding>)>>>;

/// An account this node works on.
struct Running {
    lease: Lease,
    holding: Arc<Holding>,
    /// Stops this account's tasks alone (its lease lost, the account removed).
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs the accounts this node holds (every account of a store of one node) until shut
/// down.
pub struct Engine {
    store: Arc<dyn Store>,
    passwords: PasswordSource,
    /// Providers and access tokens of OAuth2 accounts.
    oauth: Arc<OAuth>,
    shutdown_tx: watch::Sender<bool>,
    accounts: HashMap<AccountId, Running>,
    /// The same accounts, with their fenced stores, for the submission worker.
    holdings: Holdings,
    node: NodeOptions,
    options: EngineOptions,
    /// Who is looking (push latency); without it only `notify_flush_always` flushes.
    presence: Option<Arc<Everywhere>>,
    /// Permits of `EngineOptions::connect_concurrency`.
    connecting: Arc<tokio::sync::Semaphore>,
    submit_options: SubmitOptions,
    submit_task: Option<JoinHandle<()>>,
    /// The leases held and their holdings, for the keeper (`keep_leases`).
    leases: LeaseTable,
    keeper: Option<JoinHandle<()>>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, passwords: PasswordSource) -> Self {
        let (shutdown_tx, _) = watch::channel(false);
        Engine {
            store,
            passwords,
            oauth: Arc::new(OAuth::default()),
            shutdown_tx,
            accounts: HashMap::new(),
            holdings: Holdings::default(),
            node: NodeOptions::default(),
            options: EngineOptions::default(),
            presence: None,
            connecting: Arc::new(tokio::sync::Semaphore::new(
                EngineOptions::default().connect_concurrency,
            )),
            submit_options: SubmitOptions::default(),
            submit_task: None,
            leases: Arc::default(),
            keeper: None,
        }
    }

    pub fn with_options(mut self, options: EngineOptions) -> Self {
        self.connecting = Arc::new(tokio::sync::Semaphore::new(
            options.connect_concurrency.max(1),
        ));
        self.options = options;
        self
    }

    /// The priority lane of this engine's accounts (see `BodyFetcher`): what the API asks
    /// when it needs a body the sync has not stored yet.
    pub fn body_fetcher(&self) -> Arc<BodyFetcher> {
        BodyFetcher::new(
            self.store.clone(),
            self.passwords.clone(),
            self.oauth.clone(),
        )
    }

    /// ManageSieve connections of this engine's accounts, with their IMAP credentials.
    pub fn sieve(&self) -> Arc<sieve::Sieve> {
        Arc::new(sieve::Sieve::new(
            self.store.clone(),
            self.store.clone(),
            self.passwords.clone(),
            self.oauth.clone(),
        ))
    }

    /// The OAuth2 providers (and the store's encryption, for rotated refresh tokens).
    /// Without it, OAuth2 accounts fail with "no oauth_provider configured".
    pub fn with_oauth(mut self, oauth: Arc<OAuth>) -> Self {
        self.oauth = oauth;
        self
    }

    /// Tells the watchers who is looking (see `Presence`).
    pub fn with_presence(mut self, presence: Arc<dyn Presence>) -> Self {
        self.presence = Some(Arc::new(Everywhere {
            here: presence,
            elsewhere: Default::default(),
        }));
        self
    }

    /// This node's name and lease time (several nodes on one store).
    pub fn with_node(mut self, node: NodeOptions) -> Self {
        self.node = node;
        self
    }

    pub fn with_submit_options(mut self, options: SubmitOptions) -> Self {
        self.submit_options = options;
        self
    }

    /// Starts the submission worker (once): it sends what EmailSubmission/set queued.
    pub fn start_submissions(&mut self) {
        if self.submit_task.is_some() {
            return;
        }
        let worker = submission::Worker {
            store: self.store.clone(),
            holdings: self.holdings.clone(),
            passwords: self.passwords.clone(),
            oauth: self.oauth.clone(),
            shutdown: self.shutdown_tx.subscribe(),
            options: self.submit_options.clone(),
        };
        self.submit_task = Some(tokio::spawn(worker.run()));
    }

    /// Takes the accounts this node may hold (every account, on a store of one node) and
    /// starts the submission worker.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        self.reconcile().await?;
        self.start_submissions();
        if self.store.shared() && self.keeper.is_none() {
            self.keeper = Some(tokio::spawn(keep_leases(
                self.store.clone(),
                self.node.clone(),
                self.leases.clone(),
                self.shutdown_tx.subscribe(),
            )));
        }
        Ok(())
    }

    /// Starts the tasks of one account, held for good: for a store of one node (tests).
    /// With several nodes, accounts are taken by `reconcile`.
    pub fn start(&mut self, account: AccountRecord) {
        let lease = Lease {
            account: account.id,
            epoch: 1,
        };
        let store = self.store.clone();
        self.run_held(account, lease, store, Arc::new(Holding::for_good()));
    }

    fn run_held(
        &mut self,
        account: AccountRecord,
        lease: Lease,
        store: Arc<dyn Store>,
        holding: Arc<Holding>,
    ) {
        let id = account.id;
        let (stop, _) = watch::channel(false);
        self.holdings.insert(
            id,
            Held {
                store: store.clone(),
                holding: holding.clone(),
            },
        );
        let ctx = account::Ctx {
            store: store.clone(),
            passwords: self.passwords.clone(),
            oauth: self.oauth.clone(),
            shutdown: stop.subscribe(),
            options: self.options.clone(),
            presence: self.presence.clone().map(|p| p as Arc<dyn Presence>),
            connecting: self.connecting.clone(),
        };
        let task = match account.kind {
            // Write-back: the outbox worker runs beside the sync, on its own connection.
            AccountKind::Imap => {
                let octx = outbox::OutboxCtx {
                    store,
                    holding: holding.clone(),
                    epoch: lease.epoch,
                    passwords: self.passwords.clone(),
                    oauth: self.oauth.clone(),
                    shutdown: stop.subscribe(),
                    endpoint: account::endpoint(&account),
                };
                let a = account.clone();
                // ManageSieve is tried at start, beside the sync (see `sieve`).
                let (sieve, s, stop) = (self.sieve(), account.clone(), stop.subscribe());
                let retry = self.options.sieve_retry;
                tokio::spawn(async move {
                    tokio::join!(
                        account::run_imap(ctx, account),
                        outbox::run(octx, a),
                        sieve.discover_at_start(s, retry, stop)
                    );
                })
            }
            AccountKind::Pop3 => tokio::spawn(account::run_pop3(ctx, account)),
        };
        if let Ok(mut m) = self.leases.lock() {
            m.insert(id, (lease, holding.clone()));
        }
        self.accounts.insert(
            id,
            Running {
                lease,
                holding,
                stop,
                task,
            },
        );
    }

    /// Accounts with a running task.
    pub fn running(&self) -> Vec<AccountId> {
        let mut v: Vec<AccountId> = self.accounts.keys().copied().collect();
        v.sort_by_key(|a| a.0);
        v
    }

    /// The beat: tells the store this node is alive, renews the leases of the accounts
    /// it works on (stopping those it lost), gives up those above its share when more
    /// nodes joined, takes free accounts up to its share, starts tasks for accounts
    /// added and stops those of accounts removed. With several nodes it runs every third
    /// of the lease time (`NodeOptions::lease_ttl`); with one, at the account rescan.
    pub async fn reconcile(&mut self) -> anyhow::Result<()> {
        let began = Instant::now();
        let name = self.node.name.clone();
        let ttl = self.node.lease_ttl;
        let shared = self.store.shared();
        let live = self.store.heartbeat(&name, ttl).await?.max(1);
        if shared && let Some(p) = &self.presence {
            // Who looks from the other nodes; a failure keeps what the last beat learnt.
            match self
                .store
                .share_presence(&name, &p.here.present_users(), ttl)
                .await
            {
                Ok(users) => {
                    if let Ok(mut e) = p.elsewhere.write() {
                        *e = users.into_iter().collect();
                    }
                }
                Err(e) => tracing::warn!(node = %name, error = %e, "cannot share presence"),
            }
        }
        let accounts = self.store.list_accounts().await?;
        let present: HashSet<AccountId> = accounts.iter().map(|a| a.id).collect();
        // Removed: their data is gone, so aborting mid-transaction loses nothing.
        let removed: Vec<AccountId> = self
            .accounts
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        for id in removed {
            tracing::info!(account = %id, "account removed; stopping its task");
            self.stop_account(id, true);
        }
        if shared {
            let leases: Vec<Lease> = self.accounts.values().map(|r| r.lease).collect();
            let kept: HashSet<AccountId> = self
                .store
                .renew_all(&name, &leases, ttl)
                .await?
                .into_iter()
                .map(|l| l.account)
                .collect();
            let lost: Vec<AccountId> = self
                .accounts
                .keys()
                .filter(|id| !kept.contains(id))
                .copied()
                .collect();
            for id in lost {
                tracing::warn!(account = %id, node = %name,
                    "account lease lost (expired or taken over); stopping its work");
                self.stop_account(id, false);
            }
            let until = held_until(began, ttl);
            for r in self.accounts.values() {
                r.holding.extend(until);
            }
            // More nodes than when the accounts were taken: give up those above the share
            // (the newest first), so the newcomers find free accounts.
            let share = accounts.len().div_ceil(live) + store::leases::SHARE_SLACK;
            if self.accounts.len() > share {
                let mut ids = self.running();
                ids.reverse();
                for id in ids.into_iter().take(self.accounts.len() - share) {
                    if let Some(r) = self.accounts.get(&id) {
                        let lease = r.lease;
                        tracing::info!(account = %id, node = %name, live,
                            "giving the account up to a node that joined");
                        self.stop_account(id, false);
                        if let Err(e) = self.store.release(&name, lease).await {
                            tracing::warn!(account = %id, error = %e, "cannot release a lease");
                        }
                    }
                }
            }
        }
        let free: HashSet<AccountId> = self.store.free_accounts().await?.into_iter().collect();
        let by_id: HashMap<AccountId, AccountRecord> =
            accounts.into_iter().map(|a| (a.id, a)).collect();
        let mut ids: Vec<AccountId> = free
            .into_iter()
            .filter(|id| by_id.contains_key(id) && !self.accounts.contains_key(id))
            .collect();
        ids.sort_by_key(|a| a.0);
        // All taken first, then started: each start spawns work (TLS handshakes among it)
        // that would slow the next take, and a dead node's accounts wait for the last.
        // Each take is a round trip: a node starting beside 1,500 free accounts would beat
        // for seconds, and the leases it took first would run out before the next beat
        // renews them. So a beat takes for a sixth of the lease time at most (the next one
        // starts a third later and must renew before `held_until`, two thirds after this
        // one began), and the next beats take the rest. Counted from the first take, so a
        // slow beat still takes one.
        let free_left = ids.len();
        let taking = Instant::now();
        let mut taken = Vec::new();
        let mut failed = None;
        for (n, id) in ids.into_iter().enumerate() {
            if shared && taking.elapsed() >= ttl / 6 {
                tracing::info!(node = %name, taken = n, left = free_left - n,
                    "beat long enough; taking the other free accounts at the next beats");
                break;
            }
            match self.store.acquire(&name, id, ttl).await {
                Ok(Some(lease)) => taken.push((id, lease)),
                // Above its share, or another node was quicker.
                Ok(None) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        for (id, lease) in taken {
            let Some(account) = by_id.get(&id).cloned() else {
                continue;
            };
            tracing::info!(account = %id, name = %account.name, node = %name,
                epoch = lease.epoch, "account taken; starting");
            let (store, holding) = if shared {
                (
                    self.store.fenced(&name, lease),
                    Arc::new(Holding::until(held_until(began, ttl))),
                )
            } else {
                (self.store.clone(), Arc::new(Holding::for_good()))
            };
            self.run_held(account, lease, store, holding);
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Stops one account's tasks: at once (`abort`: its data is gone), or by their stop
    /// signal (the lease lost or given up: the fence refuses their writes meanwhile).
    fn stop_account(&mut self, id: AccountId, abort: bool) {
        self.holdings.remove(id);
        if let Ok(mut m) = self.leases.lock() {
            m.remove(&id);
        }
        if let Some(r) = self.accounts.remove(&id) {
            r.holding.lose();
            let _ = r.stop.send(true);
            if abort {
                r.task.abort();
            }
        }
    }

    /// Signals every task to stop, waits for them, and gives the leases up so that
    /// other nodes take the accounts at once.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for r in self.accounts.values() {
            let _ = r.stop.send(true);
        }
        if let Some(k) = self.keeper {
            let _ = k.await;
        }
        if let Some(t) = self.submit_task
            && let Err(e) = t.await
        {
            tracing::error!(error = %e, "submission worker failed");
        }
        for (id, r) in self.accounts {
            if let Err(e) = r.task.await {
                tracing::error!(account = %id, error = %e, "account task failed");
            }
            if self.store.shared()
                && let Err(e) = self.store.release(&self.node.name, r.lease).await
            {
                tracing::warn!(account = %id, error = %e, "cannot release a lease");
            }
        }
    }
}

/// Renews the node's leases every third of their time, on its own, whatever the caller's
/// beat does (a slow account rescan, a caller that never beats: tests): a held account's
/// holding is extended, a lost one's ended at once, so its workers stop writing before
/// the next beat stops them.
async fn keep_leases(
    store: Arc<dyn Store>,
    node: NodeOptions,
    leases: LeaseTable,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = node.lease_ttl / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let began = Instant::now();
        let held: Vec<(Lease, Arc<Holding>)> = match leases.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return,
        };
        if let Err(e) = store.heartbeat(&node.name, node.lease_ttl).await {
            tracing::warn!(node = %node.name, error = %e, "heartbeat failed");
            continue;
        }
        let list: Vec<Lease> = held.iter().map(|(l, _)| *l).collect();
        let kept: HashSet<AccountId> =
            match store.renew_all(&node.name, &list, node.lease_ttl).await {
                Ok(k) => k.into_iter().map(|l| l.account).collect(),
                Err(e) => {
                    // The holdings run out on their own if this goes on.
                    tracing::warn!(node = %node.name, error = %e, "cannot renew the leases");
                    continue;
                }
            };
        let until = held_until(began, node.lease_ttl);
        for (lease, holding) in held {
            if kept.contains(&lease.account) {
                holding.extend(until);
            } else {
                holding.lose();
            }
        }
    }
}

/// Until when a lease renewed (or taken) at `began` is surely this node's: a third of its
/// time is kept back for the request's own delay and the clocks' drift.
fn held_until(began: Instant, ttl: Duration) -> Instant {
    began + ttl.mul_f64(2.0 / 3.0)
}
