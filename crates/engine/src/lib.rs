//! The engine: one task per account that syncs, watches and reconnects.
//!
//! # Layout
//! - `Engine`: owns the account tasks and their shutdown signal.
//! - `account`: the loop of one IMAP account (connect, full sync, watch, back off).
//! - `backoff`: exponential backoff with jitter.
//!
//! No thread per account: every account is a tokio task, and a watching account costs one
//! idle socket (two with NOTIFY: the watcher and the worker).

mod account;
mod backoff;

pub use account::{AccountEvent, WatchMode};
pub use backoff::Backoff;

use mail_types::{AccountId, AccountKind};
use std::sync::Arc;
use store::{AccountRecord, Store};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Turns a stored (encrypted) account password into the clear text needed to log in.
pub type PasswordSource = Arc<dyn Fn(&AccountRecord) -> anyhow::Result<String> + Send + Sync>;

/// Runs every account of the store until shut down.
pub struct Engine {
    store: Arc<dyn Store>,
    passwords: PasswordSource,
    shutdown_tx: watch::Sender<bool>,
    events: broadcast::Sender<AccountEvent>,
    tasks: Vec<(AccountId, JoinHandle<()>)>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, passwords: PasswordSource) -> Self {
        let (shutdown_tx, _) = watch::channel(false);
        let (events, _) = broadcast::channel(1024);
        Engine {
            store,
            passwords,
            shutdown_tx,
            events,
            tasks: Vec::new(),
        }
    }

    /// Events the account tasks publish after each committed change (push builds on this).
    pub fn subscribe(&self) -> broadcast::Receiver<AccountEvent> {
        self.events.subscribe()
    }

    /// Starts a task for every account in the store.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for a in self.store.list_accounts().await? {
            self.start(a);
        }
        Ok(())
    }

    /// Starts the task of one account.
    pub fn start(&mut self, account: AccountRecord) {
        let id = account.id;
        let ctx = account::Ctx {
            store: self.store.clone(),
            passwords: self.passwords.clone(),
            shutdown: self.shutdown_tx.subscribe(),
            events: self.events.clone(),
        };
        let handle = match account.kind {
            AccountKind::Imap => tokio::spawn(account::run_imap(ctx, account)),
            AccountKind::Pop3 => tokio::spawn(account::run_unsupported(ctx, account)),
        };
        self.tasks.push((id, handle));
    }

    /// Signals every task to stop and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for (id, t) in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(account = %id, error = %e, "account task failed");
            }
        }
    }
}
