//! The accounts this node holds, for the workers that write for them.
//!
//! With several nodes on one store (PostgreSQL), each account is worked on by the one
//! node holding its lease (`store::Leases`; docs/design/postgres.md, "Leases"). The
//! engine's beat takes, renews and gives up leases; each held account gets a store handle
//! fenced with its lease (the store refuses its writes once the lease is lost) and a
//! [`Holding`], the node's own view of how long the lease is surely still its own.
//!
//! IMAP and SMTP servers know nothing of leases: a node asks [`Holding::holds`] right
//! before each command that changes something there. The deadline is measured on the
//! monotonic clock from before the renewal was asked, minus a margin, and that clock keeps
//! running while a process is stopped: a node paused past its lease finds it lost the
//! moment it wakes, before it sends anything.

use mail_types::AccountId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use store::Store;
use tokio::sync::watch;

/// How long this node may still act for one account.
#[derive(Debug)]
pub(crate) struct Holding {
    /// `None`: for good (a store of one node).
    until: Mutex<Option<Instant>>,
}

impl Holding {
    /// Held for as long as the node runs: the store has no other node.
    pub fn for_good() -> Holding {
        Holding {
            until: Mutex::new(None),
        }
    }

    /// Held until `until`, unless extended.
    pub fn until(until: Instant) -> Holding {
        Holding {
            until: Mutex::new(Some(until)),
        }
    }

    /// Whether the hold can end (several nodes on one store): only then is it worth
    /// asking again in the middle of a command.
    pub fn can_end(&self) -> bool {
        self.until.lock().map_or(true, |u| u.is_some())
    }

    /// Whether the node may still write to the account's servers now.
    pub fn holds(&self) -> bool {
        match self.until.lock() {
            Ok(u) => u.is_none_or(|t| Instant::now() < t),
            // A panic while the deadline was held: claim nothing.
            Err(_) => false,
        }
    }

    /// The lease was renewed: held until `until` (never shortened).
    pub fn extend(&self, until: Instant) {
        if let Ok(mut u) = self.until.lock()
            && let Some(t) = u.as_mut()
        {
            *t = (*t).max(until);
        }
    }

    /// The lease is lost: nothing more is written.
    pub fn lose(&self) {
        if let Ok(mut u) = self.until.lock() {
            *u = Some(Instant::now());
        }
    }
}

/// An account this node holds: its fenced store and its holding.
#[derive(Clone)]
pub(crate) struct Held {
    pub store: Arc<dyn Store>,
    pub holding: Arc<Holding>,
}

/// The accounts this node holds, shared by the engine (which changes it on its beat) and
/// the engine-wide submission worker (which sends for these accounts only).
#[derive(Clone)]
pub(crate) struct Holdings {
    map: Arc<RwLock<HashMap<AccountId, Held>>>,
    /// Bumped on every change, so the submission worker looks at new accounts at once.
    changed: watch::Sender<u64>,
}

impl Default for Holdings {
    fn default() -> Self {
        Holdings {
            map: Arc::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl Holdings {
    pub fn get(&self, account: AccountId) -> Option<Held> {
        self.map.read().ok()?.get(&account).cloned()
    }

    /// The accounts held, in id order.
    pub fn accounts(&self) -> Vec<AccountId> {
        let mut v: Vec<AccountId> = match self.map.read() {
            Ok(m) => m.keys().copied().collect(),
            Err(_) => Vec::new(),
        };
        v.sort_by_key(|a| a.0);
        v
    }

    pub fn insert(&self, account: AccountId, held: Held) {
        if let Ok(mut m) = self.map.write() {
            m.insert(account, held);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn remove(&self, account: AccountId) {
        if let Ok(mut m) = self.map.write()
            && let Some(h) = m.remove(&account)
        {
            h.holding.lose();
        }
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_holding_ends_at_its_deadline_and_only_grows() {
        let h = Holding::until(Instant::now() + Duration::from_millis(50));
        assert!(h.holds());
        h.extend(Instant::now());
        assert!(h.holds(), "an earlier deadline does not shorten it");
        std::thread::sleep(Duration::from_millis(60));
        assert!(!h.holds());
        h.extend(Instant::now() + Duration::from_secs(5));
        assert!(h.holds());
        h.lose();
        assert!(!h.holds());
        let g = Holding::for_good();
        g.extend(Instant::now());
        assert!(g.holds());
    }
}
