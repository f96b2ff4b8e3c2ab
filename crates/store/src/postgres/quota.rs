//! [`Quotas`] for PostgreSQL, with the SQLite backend's semantics (sqlite/quota.rs): the
//! quotas as the IMAP server last reported them, each change logged as type Quota.

use super::changelog::ChangeLog;
use super::*;
use crate::quota::{QuotaRecord, QuotaResource, QuotaValue};
use crate::{ChangeOp, ObjectType};
use async_trait::async_trait;
use mail_types::AccountId;

async fn stored(
    c: &impl deadpool_postgres::GenericClient,
    account: AccountId,
) -> Result<Vec<QuotaRecord>> {
    let st = c
        .prepare_cached(
            "SELECT id, root, resource, used, hard_limit FROM quota WHERE account_id = $1 \
             ORDER BY id",
        )
        .await?;
    c.query(&st, &[&account.0])
        .await?
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let resource: String = r.get(2);
            Ok(QuotaRecord {
                id,
                value: QuotaValue {
                    root: r.get(1),
                    resource: QuotaResource::from_name(&resource).ok_or_else(|| {
                        Error::Corrupt(format!("quota {id}: resource {resource:?}"))
                    })?,
                    used: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
                    hard_limit: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                },
            })
        })
        .collect()
}

#[async_trait]
impl Quotas for PgStore {
    async fn quotas(&self, account: AccountId) -> Result<Vec<QuotaRecord>> {
        stored(&self.client().await?, account).await
    }

    /// Makes the stored quotas exactly `values` in one transaction that bumps the state
    /// and logs each created, changed or removed quota; nothing when nothing changed.
    async fn apply_quotas(&self, account: AccountId, values: &[QuotaValue]) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Two calls for one account (a node taking over from another) apply one after the
        // other: the second compares with what the first committed.
        tx.execute(
            "SELECT 1 FROM account WHERE id = $1 FOR NO KEY UPDATE",
            &[&account.0],
        )
        .await?;
        let stored = stored(&tx, account).await?;
        let mut log = ChangeLog::of(self, account);
        let mut changed = false;
        for (i, v) in values.iter().enumerate() {
            let key = |o: &QuotaValue| o.root == v.root && o.resource == v.resource;
            if values[..i].iter().any(key) {
                continue;
            }
            let (used, limit) = (to_i64(v.used), to_i64(v.hard_limit));
            match stored.iter().find(|r| key(&r.value)) {
                Some(r) if r.value == *v => {}
                Some(r) => {
                    tx.execute(
                        "UPDATE quota SET used = $2, hard_limit = $3 WHERE id = $1",
                        &[&r.id, &used, &limit],
                    )
                    .await?;
                    log.record(&tx, ObjectType::Quota, r.id, ChangeOp::Updated)
                        .await?;
                    changed = true;
                }
                None => {
                    let id: i64 = tx
                        .query_one(
                            "INSERT INTO quota (account_id, root, resource, used, hard_limit) \
                             VALUES ($1, $2, $3, $4, $5) RETURNING id",
                            &[&account.0, &v.root, &v.resource.as_str(), &used, &limit],
                        )
                        .await?
                        .get(0);
                    log.record(&tx, ObjectType::Quota, id, ChangeOp::Created)
                        .await?;
                    changed = true;
                }
            }
        }
        for r in &stored {
            if !values
                .iter()
                .any(|v| v.root == r.value.root && v.resource == r.value.resource)
            {
                tx.execute("DELETE FROM quota WHERE id = $1", &[&r.id])
                    .await?;
                log.record(&tx, ObjectType::Quota, r.id, ChangeOp::Destroyed)
                    .await?;
                changed = true;
            }
        }
        log.commit(tx).await?;
        Ok(changed)
    }
}
