//! The `quota` table (migration v9): what the account's IMAP server said of its quotas,
//! with the change log kept like every other type's (Quota/changes, push).

use super::write::{ChangeLog, Committed};
use super::*;
use crate::quota::{QuotaRecord, QuotaResource, QuotaValue};
use crate::{ChangeOp, Error, ObjectType, Result};
use mail_types::AccountId;
use rusqlite::{Connection, params};

/// The table, created by migration v9. AUTOINCREMENT: a Quota id names one quota for
/// good (RFC 8620 1.2), also after its root went away.
pub(super) const SCHEMA: &str = "
CREATE TABLE quota (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    -- The IMAP quota root (RFC 9208 3.3).
    root        TEXT NOT NULL,
    -- 'octets' | 'count' (RFC 9425 2).
    resource    TEXT NOT NULL,
    used        INTEGER NOT NULL DEFAULT 0,
    hard_limit  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, root, resource)
) STRICT;
";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn quotas(c: &Connection, account: AccountId) -> Result<Vec<QuotaRecord>> {
    let mut st = c.prepare_cached(
        "SELECT id, root, resource, used, hard_limit FROM quota WHERE account_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([account.0], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, root, resource, used, hard_limit) = row?;
        let resource = QuotaResource::from_name(&resource)
            .ok_or_else(|| Error::Corrupt(format!("quota {id}: resource {resource:?}")))?;
        out.push(QuotaRecord {
            id,
            value: QuotaValue {
                root,
                resource,
                used: u64::try_from(used).unwrap_or(0),
                hard_limit: u64::try_from(hard_limit).unwrap_or(0),
            },
        });
    }
    Ok(out)
}

/// Makes the stored quotas of `account` exactly `values`, in one transaction that bumps
/// the state and logs each created, changed or removed quota; nothing when nothing
/// changed. Returns whether anything did.
pub(super) fn apply(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    values: &[QuotaValue],
) -> Result<bool> {
    let tx = c.transaction()?;
    let stored = quotas(&tx, account)?;
    let mut log = ChangeLog::new(account);
    let mut changed = false;
    for (i, v) in values.iter().enumerate() {
        let key = |o: &QuotaValue| o.root == v.root && o.resource == v.resource;
        if values[..i].iter().any(key) {
            continue;
        }
        let same_quota =
            |r: &&QuotaRecord| r.value.root == v.root && r.value.resource == v.resource;
        match stored.iter().find(same_quota) {
            Some(r) if r.value == *v => {}
            Some(r) => {
                tx.execute(
                    "UPDATE quota SET used = ?2, hard_limit = ?3 WHERE id = ?1",
                    params![r.id, to_i64(v.used), to_i64(v.hard_limit)],
                )?;
                log.record(&tx, ObjectType::Quota, r.id, ChangeOp::Updated)?;
                changed = true;
            }
            None => {
                tx.execute(
                    "INSERT INTO quota (account_id, root, resource, used, hard_limit) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        account.0,
                        v.root,
                        v.resource.as_str(),
                        to_i64(v.used),
                        to_i64(v.hard_limit)
                    ],
                )?;
                log.record(
                    &tx,
                    ObjectType::Quota,
                    tx.last_insert_rowid(),
                    ChangeOp::Created,
                )?;
                changed = true;
            }
        }
    }
    for r in &stored {
        if !values
            .iter()
            .any(|v| v.root == r.value.root && v.resource == r.value.resource)
        {
            tx.execute("DELETE FROM quota WHERE id = ?1", [r.id])?;
            log.record(&tx, ObjectType::Quota, r.id, ChangeOp::Destroyed)?;
            changed = true;
        }
    }
    log.commit(tx, committed)?;
    Ok(changed)
}

#[async_trait]
impl Quotas for SqliteStore {
    async fn quotas(&self, account: AccountId) -> Result<Vec<crate::QuotaRecord>> {
        self.read_call(move |c| quota::quotas(c, account)).await
    }

    async fn apply_quotas(&self, account: AccountId, values: &[crate::QuotaValue]) -> Result<bool> {
        let values = values.to_vec();
        self.write(move |c, committed| quota::apply(c, committed, account, &values))
            .await
    }
}
