//! Work queued: the signals that wake the engine's workers when a commit gave them work.
//!
//! A commit that queued work names its queue and account (see the SQLite backend's
//! `ChangeLog::queued`), and the store, after the commit, bumps that signal and no other:
//! the outbox worker of account A is not woken, and reads nothing, for account B's change.
//! The outbox is replayed per account, so each account has its own signal; submissions
//! are sent by one engine-wide worker, so every account's submission queue rings the one
//! signal that worker waits on.
//!
//! Both are generation counters on a tokio `watch`: a bump while the worker is busy is kept
//! (its next `changed()` returns at once), and a worker that subscribes before it reads
//! its queue misses nothing queued after that read. What was queued before a worker
//! started (a restart, another process) is found by the read every worker makes first.
//!
//! An account's signal is made when its worker subscribes and dropped with the account
//! ([`WorkSignals::forget`]) or once no worker listens any more.

use mail_types::AccountId;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// The queue a commit gave work to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// The account's write-back queue (the user's changes, replayed to the IMAP server).
    Outbox,
    /// The submission queue (EmailSubmission: a message to send, or one canceled whose
    /// draft goes back).
    Submissions,
}

/// The "work queued" signals of a store.
pub struct WorkSignals {
    outboxes: Mutex<HashMap<AccountId, watch::Sender<u64>>>,
    submissions: watch::Sender<u64>,
}

impl Default for WorkSignals {
    fn default() -> Self {
        WorkSignals {
            outboxes: Mutex::default(),
            submissions: watch::channel(0).0,
        }
    }
}

impl WorkSignals {
    /// The signal of `account`'s outbox, made on first use.
    pub fn outbox(&self, account: AccountId) -> watch::Receiver<u64> {
        match self.outboxes.lock() {
            Ok(mut m) => m
                .entry(account)
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
            // A panic while the map was held: a detached signal still lets the worker run
            // on its poll, it is only not woken early.
            Err(_) => watch::channel(0).1,
        }
    }

    /// The signal of every account's submission queue (the engine has one worker for all).
    pub fn submissions(&self) -> watch::Receiver<u64> {
        self.submissions.subscribe()
    }

    /// `account`'s `queue` received work in a commit that just returned.
    pub fn queued(&self, account: AccountId, queue: Queue) {
        match queue {
            Queue::Outbox => {
                let Ok(mut m) = self.outboxes.lock() else {
                    return;
                };
                // No worker listens (a POP3 account, another process's store, a stopped
                // worker): nothing to wake, and the entry goes.
                if let Some(tx) = m.get(&account) {
                    if tx.receiver_count() == 0 {
                        m.remove(&account);
                    } else {
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            }
            Queue::Submissions => self.submissions.send_modify(|n| *n = n.wrapping_add(1)),
        }
    }

    /// Every signal once: work may have been queued that this process was not told of (the
    /// PostgreSQL bus lost its listening connection for a while), so every worker reads
    /// its queue again.
    pub fn ring_all(&self) {
        if let Ok(mut m) = self.outboxes.lock() {
            m.retain(|_, tx| tx.receiver_count() > 0);
            for tx in m.values() {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        self.submissions.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The account is gone: its signal goes with it (a worker still waiting sees it closed).
    pub fn forget(&self, account: AccountId) {
        if let Ok(mut m) = self.outboxes.lock() {
            m.remove(&account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_account_that_got_work_is_woken() {
        let w = WorkSignals::default();
        let (a, b) = (AccountId(1), AccountId(2));
        let ra = w.outbox(a);
        let mut rb = w.outbox(b);
        let mut rs = w.submissions();
        w.queued(b, Queue::Outbox);
        assert_eq!(ra.has_changed().ok(), Some(false));
        assert_eq!(rb.has_changed().ok(), Some(true));
        assert_eq!(rs.has_changed().ok(), Some(false));
        rb.mark_unchanged();
        w.queued(a, Queue::Submissions);
        assert_eq!(ra.has_changed().ok(), Some(false));
        assert_eq!(rb.has_changed().ok(), Some(false));
        assert_eq!(rs.has_changed().ok(), Some(true));
        rs.mark_unchanged();
        // Forgotten with its account: the worker still holding the signal sees it closed.
        w.forget(a);
        assert!(ra.has_changed().is_err());
        w.queued(b, Queue::Outbox);
        assert_eq!(rb.has_changed().ok(), Some(true));
    }

    #[test]
    fn a_signal_nobody_listens_to_is_dropped() {
        let w = WorkSignals::default();
        let a = AccountId(1);
        drop(w.outbox(a));
        w.queued(a, Queue::Outbox);
        assert!(w.outboxes.lock().map(|m| m.is_empty()).unwrap_or(false));
        // A worker subscribing later gets a fresh signal that works.
        let r = w.outbox(a);
        w.queued(a, Queue::Outbox);
        assert_eq!(r.has_changed().ok(), Some(true));
    }
}
