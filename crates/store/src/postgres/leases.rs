//! [`Leases`] for PostgreSQL (schema version 3), and the fencing check a write makes in
//! its own transaction.
//!
//! Each statement decides on the server's clock (`now()`), so nodes need not agree on the
//! time. Taking a lease is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE`: two nodes
//! asking at once are ordered by the row lock, and the second sees the first's lease
//! (PostgreSQL re-checks the `WHERE` against the row as committed), so an account is
//! never granted to two.

use super::*;
use crate::leases::{Lease, Leases, SHARE_SLACK};
use async_trait::async_trait;
use mail_types::{AccountId, UserId};
use std::time::Duration;

/// How long a fenced transaction may sit idle between two statements before PostgreSQL
/// ends its session. The store's transactions do nothing between their statements but
/// compute, so only a frozen or stuck node gets there, and it must not keep the lease row
/// locked: a takeover waits for that lock.
const FROZEN_AFTER: &str = "5s";

/// The lease a fenced store handle writes under ([`PgStore::fenced`]).
#[derive(Debug)]
pub(super) struct Fence {
    pub(super) node: String,
    pub(super) lease: Lease,
}

impl Fence {
    /// Refuses the write of `tx` to `account` unless this lease is still the account's,
    /// unexpired. The lease row stays key-share-locked to the commit, so a takeover (which
    /// locks it `FOR UPDATE`) waits for this transaction: the write lands before the lease
    /// changes hands, or not at all. A renewal (a plain UPDATE of `expires_at`) does not
    /// wait for it: under `FOR SHARE` one long write held up the renewal of every lease of
    /// its node, whose leases then ran out while it was alive and busy.
    /// The expiry is checked on the clock now, not at the transaction's start: a node
    /// paused inside a transaction past its lease is refused too.
    pub(super) async fn check(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        account: AccountId,
    ) -> Result<()> {
        let refused = Error::Fenced {
            account,
            epoch: self.lease.epoch,
        };
        if account != self.lease.account {
            return Err(refused);
        }
        tx.batch_execute(&format!(
            "SET LOCAL idle_in_transaction_session_timeout = '{FROZEN_AFTER}'"
        ))
        .await?;
        let st = tx
            .prepare_cached(
                "SELECT 1 FROM account_lease WHERE account_id = $1 AND node = $2 \
                 AND epoch = $3 AND expires_at > clock_timestamp() FOR KEY SHARE",
            )
            .await?;
        let held = tx
            .query_opt(&st, &[&account.0, &self.node, &self.lease.epoch])
            .await?;
        match held {
            Some(_) => Ok(()),
            None => {
                tracing::warn!(account = %account, node = %self.node, epoch = self.lease.epoch,
                    "write refused: the lease is no longer held");
                Err(refused)
            }
        }
    }
}

impl PgStore {
    /// This store for the writes `node` makes under `lease`: each transaction that logs a
    /// change checks, inside itself, that the lease is still held ([`Error::Fenced`]
    /// otherwise), and a write to another account than the lease's is refused.
    pub fn fenced(&self, node: &str, lease: Lease) -> PgStore {
        PgStore {
            fence: Some(Arc::new(Fence {
                node: node.to_owned(),
                lease,
            })),
            ..self.clone()
        }
    }
}

impl crate::leases::Fencing for PgStore {
    fn fenced(&self, node: &str, lease: Lease) -> Arc<dyn crate::Store> {
        Arc::new(PgStore::fenced(self, node, lease))
    }
}

fn seconds(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

#[async_trait]
impl Leases for PgStore {
    async fn heartbeat(&self, node: &str, ttl: Duration) -> Result<usize> {
        let c = self.beat_client().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO node (name, alive_until) VALUES ($1, now() + make_interval(secs => $2)) \
                 ON CONFLICT (name) DO UPDATE SET alive_until = EXCLUDED.alive_until",
            )
            .await?;
        c.execute(&st, &[&node, &seconds(ttl)]).await?;
        let live: i64 = c
            .query_one("SELECT count(*) FROM node WHERE alive_until > now()", &[])
            .await?
            .get(0);
        Ok(usize::try_from(live).unwrap_or(0))
    }

    async fn acquire(
        &self,
        node: &str,
        account: AccountId,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let mut c = self.beat_client().await?;
        // The share: counted without a lock, so two takes of one node at once may pass
        // it by one; the slack absorbs that.
        let st = c
            .prepare_cached(
                "SELECT (SELECT count(*) FROM account), \
                 (SELECT count(*) FROM node WHERE name <> $1 AND alive_until > now()), \
                 (SELECT count(*) FROM account_lease WHERE node = $1 \
                  AND expires_at > now() AND account_id <> $2)",
            )
            .await?;
        let row = c.query_one(&st, &[&node, &account.0]).await?;
        let (accounts, others, held): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let live = others.max(0) as usize + 1;
        let share = (accounts.max(0) as usize).div_ceil(live) + SHARE_SLACK;
        if held.max(0) as usize >= share {
            return Ok(None);
        }
        let st = c
            .prepare_cached(
                "INSERT INTO account_lease (account_id, node, epoch, expires_at) \
                 VALUES ($1, $2, 1, now() + make_interval(secs => $3)) \
                 ON CONFLICT (account_id) DO UPDATE SET \
                     node = EXCLUDED.node, \
                     expires_at = EXCLUDED.expires_at, \
                     epoch = CASE WHEN account_lease.node = EXCLUDED.node \
                                   AND account_lease.expires_at > now() \
                             THEN account_lease.epoch ELSE account_lease.epoch + 1 END \
                 WHERE account_lease.node = EXCLUDED.node OR account_lease.expires_at <= now() \
                 RETURNING epoch",
            )
            .await?;
        // The row locked first, FOR UPDATE: a fenced write running under the current lease
        // holds it key-share-locked (Fence::check), which the upsert's own lock would not
        // wait for.
        let tx = c.transaction().await?;
        let lock = tx
            .prepare_cached("SELECT 1 FROM account_lease WHERE account_id = $1 FOR UPDATE")
            .await?;
        tx.query_opt(&lock, &[&account.0]).await?;
        let granted = tx
            .query_opt(&st, &[&account.0, &node, &seconds(ttl)])
            .await?;
        tx.commit().await?;
        Ok(granted.map(|r| {
            let epoch = r.get(0);
            tracing::debug!(account = %account, node, epoch, "lease taken");
            Lease { account, epoch }
        }))
    }

    async fn renew(&self, node: &str, lease: Lease, ttl: Duration) -> Result<bool> {
        let c = self.beat_client().await?;
        let st = c
            .prepare_cached(
                "UPDATE account_lease SET expires_at = now() + make_interval(secs => $4) \
                 WHERE account_id = $1 AND node = $2 AND epoch = $3 AND expires_at > now()",
            )
            .await?;
        let n = c
            .execute(&st, &[&lease.account.0, &node, &lease.epoch, &seconds(ttl)])
            .await?;
        Ok(n == 1)
    }

    async fn release(&self, node: &str, lease: Lease) -> Result<()> {
        let c = self.beat_client().await?;
        // Expired, not deleted: the next taker's epoch follows this one.
        let st = c
            .prepare_cached(
                "UPDATE account_lease SET expires_at = '-infinity' \
                 WHERE account_id = $1 AND node = $2 AND epoch = $3",
            )
            .await?;
        c.execute(&st, &[&lease.account.0, &node, &lease.epoch])
            .await?;
        Ok(())
    }

    async fn renew_all(&self, node: &str, leases: &[Lease], ttl: Duration) -> Result<Vec<Lease>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let accounts: Vec<i64> = leases.iter().map(|l| l.account.0).collect();
        let epochs: Vec<i64> = leases.iter().map(|l| l.epoch).collect();
        let c = self.beat_client().await?;
        // One statement for a node's whole holding: a node of 500 accounts renews them
        // every beat.
        let st = c
            .prepare_cached(
                "UPDATE account_lease l SET expires_at = now() + make_interval(secs => $4) \
                 FROM unnest($2::bigint[], $3::bigint[]) AS h(account_id, epoch) \
                 WHERE l.account_id = h.account_id AND l.epoch = h.epoch AND l.node = $1 \
                   AND l.expires_at > now() \
                 RETURNING l.account_id, l.epoch",
            )
            .await?;
        let rows = c
            .query(&st, &[&node, &accounts, &epochs, &seconds(ttl)])
            .await?;
        Ok(rows
            .iter()
            .map(|r| Lease {
                account: AccountId(r.get(0)),
                epoch: r.get(1),
            })
            .collect())
    }

    async fn free_accounts(&self) -> Result<Vec<AccountId>> {
        let c = self.beat_client().await?;
        let st = c
            .prepare_cached(
                "SELECT a.id FROM account a WHERE NOT EXISTS (SELECT 1 FROM account_lease l \
                 WHERE l.account_id = a.id AND l.expires_at > now()) ORDER BY a.id",
            )
            .await?;
        let rows = c.query(&st, &[]).await?;
        Ok(rows.iter().map(|r| AccountId(r.get(0))).collect())
    }

    async fn share_presence(
        &self,
        node: &str,
        present: &[UserId],
        ttl: Duration,
    ) -> Result<Vec<UserId>> {
        let users: Vec<i64> = present.iter().map(|u| u.0).collect();
        let c = self.client().await?;
        // One statement: this node's rows replaced, every expired row gone, the others'
        // read (from the statement's snapshot, which holds no row of this one's writes).
        let st = c
            .prepare_cached(
                "WITH gone AS (DELETE FROM node_presence                      WHERE (node = $1 AND user_id <> ALL($2)) OR expires_at <= now()),                  up AS (INSERT INTO node_presence (node, user_id, expires_at)                      SELECT $1, u, now() + make_interval(secs => $3) FROM unnest($2::BIGINT[]) u                      ON CONFLICT (node, user_id) DO UPDATE SET expires_at = EXCLUDED.expires_at)                  SELECT DISTINCT user_id FROM node_presence                  WHERE node <> $1 AND expires_at > now()",
            )
            .await?;
        let rows = c.query(&st, &[&node, &users, &seconds(ttl)]).await?;
        Ok(rows.iter().map(|r| UserId(r.get(0))).collect())
    }

    fn shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Two nodes on a new database of the test binary's PostgreSQL.
    async fn two_nodes() -> (PgStore, PgStore) {
        let pg = testkit::Postgres::shared().expect("private PostgreSQL");
        let url = pg.fresh_database().expect("database");
        let a = PgStore::connect(&url).await.expect("node a");
        let b = PgStore::connect(&url).await.expect("node b");
        (a, b)
    }

    /// An account of only the rows a lease needs (its settings play no part here).
    async fn bare_account(s: &PgStore) -> AccountId {
        let row = s
            .client()
            .await
            .expect("connection")
            .query_one(
                "WITH u AS (INSERT INTO app_user (name, password_hash) VALUES ('u', 'h') \
                 RETURNING id) INSERT INTO account (user_id, name, kind, host, port, security, \
                 username, password_enc) SELECT id, 'a', 'imap', 'h', 1, 'none', 'u', '' FROM u \
                 RETURNING id",
                &[],
            )
            .await
            .expect("account");
        AccountId(row.get(0))
    }

    /// `account` leased to node "a" for `ttl`, and the fence of that lease.
    async fn held_by_a(a: &PgStore, account: AccountId, ttl: Duration) -> (Lease, Fence) {
        let lease = a
            .acquire("a", account, ttl)
            .await
            .expect("acquire")
            .expect("granted");
        let fence = Fence {
            node: "a".into(),
            lease,
        };
        (lease, fence)
    }

    /// A node frozen inside a fenced transaction, after the check, holds the lease row:
    /// PostgreSQL ends its session once it sat idle [`FROZEN_AFTER`], the takeover then
    /// goes through, and the frozen transaction can commit nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_frozen_in_a_fenced_transaction_does_not_block_a_takeover() {
        let (a, b) = two_nodes().await;
        let account = bare_account(&a).await;
        let ttl = Duration::from_secs(1);
        let (lease, fence) = held_by_a(&a, account, ttl).await;
        let mut c = a.client().await.expect("connection");
        let tx = c.transaction().await.expect("transaction");
        fence.check(&tx, account).await.expect("held");
        // Node a freezes here, inside its transaction.
        tokio::time::sleep(ttl).await;
        let start = Instant::now();
        let taken = tokio::time::timeout(Duration::from_secs(30), b.acquire("b", account, ttl))
            .await
            .expect("the takeover is not blocked for good")
            .expect("acquire")
            .expect("taken over");
        assert!(taken.epoch > lease.epoch);
        // The takeover waited for the frozen transaction's end, not longer.
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{:?}",
            start.elapsed()
        );
        assert!(
            tx.commit().await.is_err(),
            "the frozen transaction's session is gone"
        );
    }

    /// Every connection of the store's pool taken by long work (a node busy syncing): the
    /// heartbeat, the renewal and a take still go through at once, on the beat's own
    /// connections, so the node keeps its leases and can take a dead node's accounts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_pool_does_not_hold_the_lease_beat_up() {
        let pg = testkit::Postgres::shared().expect("private PostgreSQL");
        let url = pg.fresh_database().expect("database");
        let a = PgStore::connect(&url).await.expect("node a");
        let account = bare_account(&a).await;
        let mut busy = Vec::new();
        for _ in 0..POOL_SIZE {
            busy.push(a.client().await.expect("connection"));
        }
        let ttl = Duration::from_secs(2);
        let within = Duration::from_secs(5);
        let beat = async {
            a.heartbeat("a", ttl).await.expect("heartbeat");
            let lease = a
                .acquire("a", account, ttl)
                .await
                .expect("acquire")
                .expect("granted");
            a.renew_all("a", &[lease], ttl).await.expect("renew")
        };
        let kept = tokio::time::timeout(within, beat)
            .await
            .expect("the beat waited for the busy pool");
        assert_eq!(kept.len(), 1);
        drop(busy);
    }

    /// A fenced write in progress does not hold up its own node's renewal (the node would
    /// lose every lease it holds behind one long write), and still holds up a takeover.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_fenced_write_does_not_hold_the_renewal_up() {
        let (a, b) = two_nodes().await;
        let account = bare_account(&a).await;
        let ttl = Duration::from_secs(1);
        let (lease, fence) = held_by_a(&a, account, ttl).await;
        let mut c = a.client().await.expect("connection");
        let tx = c.transaction().await.expect("transaction");
        fence.check(&tx, account).await.expect("held");
        let kept = tokio::time::timeout(Duration::from_secs(2), a.renew_all("a", &[lease], ttl))
            .await
            .expect("the renewal waited for the write")
            .expect("renew");
        assert_eq!(kept, vec![lease]);
        // Past the lease, another node's take waits for the write to end.
        tokio::time::sleep(ttl).await;
        let take = b.acquire("b", account, ttl);
        tokio::pin!(take);
        assert!(
            tokio::time::timeout(Duration::from_millis(500), &mut take)
                .await
                .is_err(),
            "the takeover did not wait for the running write"
        );
        tx.commit().await.expect("commit");
        let taken = take.await.expect("acquire").expect("taken over");
        assert!(taken.epoch > lease.epoch);
    }
}
