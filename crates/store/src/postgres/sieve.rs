//! [`SieveState`] for PostgreSQL, with the SQLite backend's semantics (sqlite/sieve.rs).

use super::*;
use crate::model::SieveSettings;
use async_trait::async_trait;
use mail_types::AccountId;

/// How many states back SieveScript/changes can answer from (as for SQLite).
const SNAPSHOTS: i64 = 32;

#[async_trait]
impl SieveState for PgStore {
    async fn sieve_settings(&self, account: AccountId) -> Result<SieveSettings> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT enabled, host, port, capabilities, checked_at FROM account_sieve \
                 WHERE account_id = $1",
            )
            .await?;
        Ok(match c.query_opt(&st, &[&account.0]).await? {
            Some(r) => {
                let (host, port, caps): (String, i64, String) = (r.get(1), r.get(2), r.get(3));
                SieveSettings {
                    enabled: r.get(0),
                    host: (!host.is_empty()).then_some(host),
                    port: u16::try_from(port).ok().filter(|p| *p != 0),
                    capabilities: (!caps.is_empty()).then_some(caps),
                    checked_at: r.get(4),
                }
            }
            None => SieveSettings::default(),
        })
    }

    async fn set_sieve_settings(&self, account: AccountId, s: &SieveSettings) -> Result<()> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO account_sieve (account_id, enabled, host, port) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (account_id) DO UPDATE SET \
                 enabled = excluded.enabled, host = excluded.host, port = excluded.port",
            )
            .await?;
        let host = s.host.as_deref().unwrap_or("");
        let port = i64::from(s.port.unwrap_or(0));
        c.execute(&st, &[&account.0, &s.enabled, &host, &port])
            .await?;
        Ok(())
    }

    async fn set_sieve_found(
        &self,
        account: AccountId,
        capabilities: Option<&str>,
        at: i64,
    ) -> Result<()> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO account_sieve (account_id, capabilities, checked_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (account_id) DO UPDATE SET \
                 capabilities = excluded.capabilities, checked_at = excluded.checked_at",
            )
            .await?;
        c.execute(&st, &[&account.0, &capabilities.unwrap_or(""), &at])
            .await?;
        Ok(())
    }

    /// The id of each name, in order: known names keep theirs, new ones get new ids, and
    /// names the server no longer has are forgotten (their ids are never handed out again).
    async fn sieve_script_ids(&self, account: AccountId, names: &[String]) -> Result<Vec<i64>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The upsert returns the row's id whether it inserted it or found it (a no-op
        // update, where DO NOTHING would return no row for a known name).
        let upsert = tx
            .prepare_cached(
                "INSERT INTO sieve_script (account_id, name) VALUES ($1, $2) \
                 ON CONFLICT (account_id, name) DO UPDATE SET name = excluded.name \
                 RETURNING id",
            )
            .await?;
        let mut ids = Vec::with_capacity(names.len());
        for name in names {
            ids.push(tx.query_one(&upsert, &[&account.0, name]).await?.get(0));
        }
        let forget = tx
            .prepare_cached(
                "DELETE FROM sieve_script WHERE account_id = $1 AND NOT (name = ANY($2))",
            )
            .await?;
        tx.execute(&forget, &[&account.0, &names]).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn put_sieve_snapshot(
        &self,
        account: AccountId,
        state: &str,
        scripts: &str,
        at: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO sieve_snapshot (account_id, state, scripts, seen_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, state) DO NOTHING",
            )
            .await?;
        if tx
            .execute(&insert, &[&account.0, &state, &scripts, &at])
            .await?
            > 0
        {
            let prune = tx
                .prepare_cached(
                    "DELETE FROM sieve_snapshot WHERE account_id = $1 AND seq NOT IN \
                     (SELECT seq FROM sieve_snapshot WHERE account_id = $1 \
                      ORDER BY seen_at DESC, seq DESC LIMIT $2)",
                )
                .await?;
            tx.execute(&prune, &[&account.0, &SNAPSHOTS]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn sieve_snapshot(&self, account: AccountId, state: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT scripts FROM sieve_snapshot WHERE account_id = $1 AND state = $2",
            )
            .await?;
        Ok(c.query_opt(&st, &[&account.0, &state])
            .await?
            .map(|r| r.get(0)))
    }

    async fn rename_sieve_script(&self, account: AccountId, id: i64, name: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "DELETE FROM sieve_script WHERE account_id = $1 AND name = $2 AND id <> $3",
            &[&account.0, &name, &id],
        )
        .await?;
        tx.execute(
            "UPDATE sieve_script SET name = $3 WHERE account_id = $1 AND id = $2",
            &[&account.0, &id, &name],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
