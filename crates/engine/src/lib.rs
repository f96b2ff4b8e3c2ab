//! The engine: one task per account that syncs, watches and reconnects.
//!
//! # Layout
//! - `Engine`: owns the account tasks and their shutdown signal.
//! - `account`: the loop of one account: IMAP (connect, full sync, watch, back off) or
//!   POP3 (retrieve new mail on a timer).
//! - `backoff`: exponential backoff with jitter.
//! - `bodies`: the priority lane, one message fetched now because someone asked for it.
//! - `oauth`: OAuth 2.0 access tokens of OAuth2 accounts (refresh, expiry, rotation).
//! - `sieve`: ManageSieve (RFC 5804): tried at account start, connections for the API.
//!
//! No thread per account: every account is a tokio task, and a watching account costs one
//! idle socket (two with NOTIFY: the watcher and the worker).

mod account;
mod backoff;
// Bodies fetched on demand (the priority lane).
mod bodies;
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

use mail_types::{AccountId, AccountKind, UserId};
use std::sync::Arc;
use store::{AccountRecord, Store};
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

/// Runs every account of the store until shut down.
pub struct Engine {
    store: Arc<dyn Store>,
    passwords: PasswordSource,
    /// Providers and access tokens of OAuth2 accounts.
    oauth: Arc<OAuth>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<(AccountId, JoinHandle<()>)>,
    options: EngineOptions,
    /// Who is looking (push latency); without it only `notify_flush_always` flushes.
    presence: Option<Arc<dyn Presence>>,
    /// Permits of `EngineOptions::connect_concurrency`.
    connecting: Arc<tokio::sync::Semaphore>,
    submit_options: SubmitOptions,
    submit_task: Option<JoinHandle<()>>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, passwords: PasswordSource) -> Self {
        let (shutdown_tx, _) = watch::channel(false);
        Engine {
            store,
            passwords,
            oauth: Arc::new(OAuth::default()),
            shutdown_tx,
            tasks: Vec::new(),
            options: EngineOptions::default(),
            presence: None,
            connecting: Arc::new(tokio::sync::Semaphore::new(
                EngineOptions::default().connect_concurrency,
            )),
            submit_options: SubmitOptions::default(),
            submit_task: None,
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
        self.presence = Some(presence);
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
            passwords: self.passwords.clone(),
            oauth: self.oauth.clone(),
            shutdown: self.shutdown_tx.subscribe(),
            options: self.submit_options.clone(),
        };
        self.submit_task = Some(tokio::spawn(worker.run()));
    }

    /// Starts a task for every account in the store.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for a in self.store.list_accounts().await? {
            self.start(a);
        }
        self.start_submissions();
        Ok(())
    }

    /// Starts the task of one account.
    pub fn start(&mut self, account: AccountRecord) {
        let id = account.id;
        let ctx = account::Ctx {
            store: self.store.clone(),
            passwords: self.passwords.clone(),
            oauth: self.oauth.clone(),
            shutdown: self.shutdown_tx.subscribe(),
            options: self.options.clone(),
            presence: self.presence.clone(),
            connecting: self.connecting.clone(),
        };
        let handle = match account.kind {
            // Write-back: the outbox worker runs beside the sync, on its own connection.
            AccountKind::Imap => {
                let octx = outbox::OutboxCtx {
                    store: self.store.clone(),
                    passwords: self.passwords.clone(),
                    oauth: self.oauth.clone(),
                    shutdown: self.shutdown_tx.subscribe(),
                    endpoint: account::endpoint(&account),
                };
                let a = account.clone();
                // ManageSieve is tried at start, beside the sync (see `sieve`).
                let (sieve, s, stop) =
                    (self.sieve(), account.clone(), self.shutdown_tx.subscribe());
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
        self.tasks.push((id, handle));
    }

    /// Accounts with a running task.
    pub fn running(&self) -> Vec<AccountId> {
        self.tasks.iter().map(|(id, _)| *id).collect()
    }

    /// Starts tasks for accounts added to the store since, and stops those of accounts
    /// removed (their data is gone, so aborting mid-transaction loses nothing).
    pub async fn reconcile(&mut self) -> anyhow::Result<()> {
        let accounts = self.store.list_accounts().await?;
        let present: std::collections::HashSet<AccountId> = accounts.iter().map(|a| a.id).collect();
        self.tasks.retain(|(id, handle)| {
            let keep = present.contains(id);
            if !keep {
                tracing::info!(account = %id, "account removed; stopping its task");
                handle.abort();
            }
            keep
        });
        let running: std::collections::HashSet<AccountId> = self.running().into_iter().collect();
        for a in accounts {
            if !running.contains(&a.id) {
                tracing::info!(account = %a.id, name = %a.name, "new account; starting");
                self.start(a);
            }
        }
        Ok(())
    }

    /// Signals every task to stop and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(t) = self.submit_task
            && let Err(e) = t.await
        {
            tracing::error!(error = %e, "submission worker failed");
        }
        for (id, t) in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(account = %id, error = %e, "account task failed");
            }
        }
    }
}
