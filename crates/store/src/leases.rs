//! Account leases: which node syncs an account, drains its outbox and sends its
//! submissions, so that exactly one does at a time (docs/design/postgres.md, "Leases").
//!
//! A node registers with [`Leases::heartbeat`] (so every node knows how many are alive),
//! takes accounts with [`Leases::acquire`] and keeps them with [`Leases::renew`] before
//! their time-to-live runs out. A node that stops renewing (dead, or paused) loses its
//! accounts once their lease expires: any other node may then take them, and each change
//! of hands raises the account's fencing epoch. A node writes for an account only under
//! the lease it holds, and the store refuses a write whose epoch is no longer the
//! account's ([`crate::Error::Fenced`]): a node that was paused past its lease and wakes
//! up writes nothing.
//!
//! Times are the store's clock, never a node's: nodes whose clocks disagree still agree
//! on who holds what.

use crate::Result;
use async_trait::async_trait;
use mail_types::{AccountId, UserId};
use std::time::Duration;

/// A node's hold on one account. The epoch grows each time the account changes hands (or
/// its holder took it again after letting it expire), never goes back, and is never
/// handed out twice for one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub account: AccountId,
    pub epoch: i64,
}

/// How many accounts a node may hold beyond its even share (`ceil(accounts / live
/// nodes)`): a little room, so that a node joining or leaving does not make the others
/// drop and take accounts back and forth over one account.
pub const SHARE_SLACK: usize = 1;

/// The leases of accounts among the nodes on one store. Nodes are named by the caller
/// (unique among the nodes on a store, e.g. host and port).
#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Registers `node` as alive for `ttl` from now, or extends it; how many nodes are
    /// alive, `node` included.
    async fn heartbeat(&self, node: &str, ttl: Duration) -> Result<usize>;

    /// Takes `account` for `node` for `ttl`: granted when the account is free (never
    /// leased, released, or its holder's lease expired) and `node` holds fewer than its
    /// share (`ceil(accounts / live nodes)` + [`SHARE_SLACK`]); `None` otherwise. Asked
    /// again by a holder whose lease is still running, it extends it under the same epoch.
    async fn acquire(&self, node: &str, account: AccountId, ttl: Duration)
    -> Result<Option<Lease>>;

    /// Extends `lease` to `ttl` from now; false when `node` no longer holds it (it
    /// expired or changed hands), after which the node must stop working on the account.
    async fn renew(&self, node: &str, lease: Lease, ttl: Duration) -> Result<bool>;

    /// Gives `lease` up at once (a node stopping, or shedding accounts above its share):
    /// the next taker needs no wait.
    async fn release(&self, node: &str, lease: Lease) -> Result<()>;

    /// [`Leases::renew`] of each of `leases` (one heartbeat's worth); the leases still
    /// held, extended. A backend may do it in one statement.
    async fn renew_all(&self, node: &str, leases: &[Lease], ttl: Duration) -> Result<Vec<Lease>> {
        let mut kept = Vec::with_capacity(leases.len());
        for l in leases {
            if self.renew(node, *l, ttl).await? {
                kept.push(*l);
            }
        }
        Ok(kept)
    }

    /// The accounts no node holds an unexpired lease of: those worth an
    /// [`Leases::acquire`].
    async fn free_accounts(&self) -> Result<Vec<AccountId>>;

    /// Records that `present` are the users with a live push client on `node` (for `ttl`)
    /// and returns those with one on any other live node: the node holding a user's
    /// accounts hurries their servers' notifications while the user is looking from
    /// anywhere. A store of one node has no other node.
    async fn share_presence(
        &self,
        _node: &str,
        _present: &[UserId],
        _ttl: Duration,
    ) -> Result<Vec<UserId>> {
        Ok(Vec::new())
    }

    /// Whether other nodes may share this store. A store of one node (SQLite) grants every
    /// lease for good, and nothing it hands out ever needs to be given back.
    fn shared(&self) -> bool;
}

/// Store handles fenced with a lease: what a node writes for an account it holds.
pub trait Fencing: Send + Sync + 'static {
    /// This store for the writes `node` makes under `lease`: once the lease is lost (it
    /// expired, or another node took the account), each write fails with
    /// [`crate::Error::Fenced`] and changes nothing. A single-node store hands out itself.
    fn fenced(&self, node: &str, lease: Lease) -> std::sync::Arc<dyn crate::Store>;
}
