//! [`BodyPolicy`] for PostgreSQL: the body policy and the download budget per UTC day,
//! with the SQLite backend's semantics (sqlite/policy.rs).

use super::*;
use crate::model::AccountPolicy;
use async_trait::async_trait;
use mail_types::{AccountId, DownloadBudget};

#[async_trait]
impl BodyPolicy for PgStore {
    async fn account_policy(&self, account: AccountId) -> Result<AccountPolicy> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT bodies_days, daily_download_mb FROM account_policy WHERE account_id = $1",
            )
            .await?;
        let row = c.query_opt(&st, &[&account.0]).await?;
        let (days, mb): (Option<i64>, Option<i64>) =
            row.map(|r| (r.get(0), r.get(1))).unwrap_or((None, None));
        Ok(AccountPolicy {
            bodies_days: days.and_then(|d| u32::try_from(d).ok()),
            daily_download_mb: mb.and_then(|m| u64::try_from(m).ok()),
        })
    }

    async fn set_account_policy(&self, account: AccountId, p: &AccountPolicy) -> Result<()> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO account_policy (account_id, bodies_days, daily_download_mb) \
                 VALUES ($1, $2, $3) ON CONFLICT (account_id) DO UPDATE SET \
                 bodies_days = excluded.bodies_days, \
                 daily_download_mb = excluded.daily_download_mb",
            )
            .await?;
        let days = p.bodies_days.map(i64::from);
        let mb = p.daily_download_mb.map(to_i64);
        c.execute(&st, &[&account.0, &days, &mb]).await?;
        Ok(())
    }

    async fn set_download_limit(&self, account: AccountId, limit_mb: Option<u64>) -> Result<()> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO account_policy (account_id, limit_mb) VALUES ($1, $2) \
                 ON CONFLICT (account_id) DO UPDATE SET limit_mb = excluded.limit_mb",
            )
            .await?;
        c.execute(&st, &[&account.0, &limit_mb.map(to_i64)]).await?;
        Ok(())
    }

    async fn set_background_stopped(&self, account: AccountId, day: i64) -> Result<()> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO account_policy (account_id, stopped_day) VALUES ($1, $2) \
                 ON CONFLICT (account_id) DO UPDATE SET stopped_day = excluded.stopped_day",
            )
            .await?;
        c.execute(&st, &[&account.0, &day]).await?;
        Ok(())
    }

    async fn add_downloaded(&self, account: AccountId, day: i64, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Nodes fetching bodies of one account add at once: the upsert adds atomically.
        let add = tx
            .prepare_cached(
                "INSERT INTO download_day (account_id, day, bytes) VALUES ($1, $2, $3) \
                 ON CONFLICT (account_id, day) DO UPDATE SET \
                 bytes = download_day.bytes + excluded.bytes",
            )
            .await?;
        tx.execute(&add, &[&account.0, &day, &to_i64(bytes)])
            .await?;
        // Only today's row is ever read; older ones go (bounded: one row per account).
        let old = tx
            .prepare_cached("DELETE FROM download_day WHERE account_id = $1 AND day < $2")
            .await?;
        tx.execute(&old, &[&account.0, &day]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn download_budget(&self, account: AccountId, day: i64) -> Result<DownloadBudget> {
        let c = self.client().await?;
        // One statement: the bytes and the policy row as of the same snapshot.
        let st = c
            .prepare_cached(
                "SELECT (SELECT bytes FROM download_day WHERE account_id = $1 AND day = $2), \
                 p.limit_mb, p.daily_download_mb, p.stopped_day, p.account_id IS NOT NULL \
                 FROM (SELECT 1) one LEFT JOIN account_policy p ON p.account_id = $1",
            )
            .await?;
        let r = c.query_one(&st, &[&account.0, &day]).await?;
        let used: i64 = r.get::<_, Option<i64>>(0).unwrap_or(0);
        let (limit, configured, stopped_day): (Option<i64>, Option<i64>, Option<i64>) =
            (r.get(1), r.get(2), r.get(3));
        let has_policy: bool = r.get(4);
        // The limit the engine put in force; before it has connected, the configured one.
        let limit_mb = match (has_policy, limit, configured) {
            (true, Some(l), _) => u64::try_from(l).ok(),
            (true, None, Some(c)) => u64::try_from(c).ok(),
            _ => None,
        }
        .filter(|l| *l > 0);
        Ok(DownloadBudget {
            used: u64::try_from(used).unwrap_or(0),
            limit_mb,
            day,
            background_stopped: stopped_day == Some(day) && limit_mb.is_some(),
        })
    }
}
