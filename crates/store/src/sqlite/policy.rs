//! Per-account body policy and download accounting (see `mail_types::budget`).

use super::*;
use crate::Result;
use crate::model::AccountPolicy;
use mail_types::{AccountId, DownloadBudget, MailboxId, Uid};
use rusqlite::{Connection, OptionalExtension, params};

/// The table holding it, created by migration v6.
pub(super) const SCHEMA: &str = "
CREATE TABLE account_policy (
    account_id        INTEGER PRIMARY KEY REFERENCES account(id) ON DELETE CASCADE,
    -- Background bodies only of messages received in the last N days; NULL: all.
    bodies_days       INTEGER,
    -- The configured daily download limit in MB; NULL: the provider profile's default,
    -- 0: unlimited.
    daily_download_mb INTEGER,
    -- The limit in force, written by the engine once it knows the provider profile;
    -- NULL: unlimited.
    limit_mb          INTEGER,
    -- The UTC day the background body pass last stopped at the budget.
    stopped_day       INTEGER
) STRICT;
CREATE TABLE download_day (
    account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    -- UTC day number (Unix seconds / 86400).
    day        INTEGER NOT NULL,
    bytes      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day)
) STRICT;
";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn policy(c: &Connection, account: AccountId) -> Result<AccountPolicy> {
    let row: Option<(Option<i64>, Option<i64>)> = c
        .query_row(
            "SELECT bodies_days, daily_download_mb FROM account_policy WHERE account_id = ?1",
            [account.0],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (days, mb) = row.unwrap_or((None, None));
    Ok(AccountPolicy {
        bodies_days: days.and_then(|d| u32::try_from(d).ok()),
        daily_download_mb: mb.and_then(|m| u64::try_from(m).ok()),
    })
}

pub(super) fn set_policy(c: &Connection, account: AccountId, p: &AccountPolicy) -> Result<()> {
    c.execute(
        "INSERT INTO account_policy (account_id, bodies_days, daily_download_mb) \
         VALUES (?1, ?2, ?3) ON CONFLICT (account_id) DO UPDATE SET \
         bodies_days = excluded.bodies_days, daily_download_mb = excluded.daily_download_mb",
        params![
            account.0,
            p.bodies_days.map(i64::from),
            p.daily_download_mb.map(to_i64)
        ],
    )?;
    Ok(())
}

pub(super) fn set_limit(c: &Connection, account: AccountId, limit_mb: Option<u64>) -> Result<()> {
    c.execute(
        "INSERT INTO account_policy (account_id, limit_mb) VALUES (?1, ?2) \
         ON CONFLICT (account_id) DO UPDATE SET limit_mb = excluded.limit_mb",
        params![account.0, limit_mb.map(to_i64)],
    )?;
    Ok(())
}

pub(super) fn set_stopped(c: &Connection, account: AccountId, day: i64) -> Result<()> {
    c.execute(
        "INSERT INTO account_policy (account_id, stopped_day) VALUES (?1, ?2) \
         ON CONFLICT (account_id) DO UPDATE SET stopped_day = excluded.stopped_day",
        params![account.0, day],
    )?;
    Ok(())
}

pub(super) fn add(c: &Connection, account: AccountId, day: i64, bytes: u64) -> Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    c.execute(
        "INSERT INTO download_day (account_id, day, bytes) VALUES (?1, ?2, ?3) \
         ON CONFLICT (account_id, day) DO UPDATE SET bytes = bytes + excluded.bytes",
        params![account.0, day, to_i64(bytes)],
    )?;
    // Only today's row is ever read; older ones go (bounded: one row per account).
    c.execute(
        "DELETE FROM download_day WHERE account_id = ?1 AND day < ?2",
        params![account.0, day],
    )?;
    Ok(())
}

pub(super) fn budget(c: &Connection, account: AccountId, day: i64) -> Result<DownloadBudget> {
    let used: i64 = c
        .query_row(
            "SELECT bytes FROM download_day WHERE account_id = ?1 AND day = ?2",
            params![account.0, day],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    // The limit the engine put in force; before it has connected, the configured one.
    let row: Option<(Option<i64>, Option<i64>, Option<i64>)> = c
        .query_row(
            "SELECT limit_mb, daily_download_mb, stopped_day FROM account_policy \
             WHERE account_id = ?1",
            [account.0],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let stopped = row.is_some_and(|r| r.2 == Some(day));
    let limit = row.map(|r| (r.0, r.1));
    let limit_mb = match limit {
        Some((Some(l), _)) => u64::try_from(l).ok(),
        Some((None, Some(configured))) => u64::try_from(configured).ok(),
        _ => None,
    }
    .filter(|l| *l > 0);
    Ok(DownloadBudget {
        used: u64::try_from(used).unwrap_or(0),
        limit_mb,
        day,
        background_stopped: stopped && limit_mb.is_some(),
    })
}

pub(super) fn missing_bodies(
    c: &Connection,
    mailbox: MailboxId,
    received_since: Option<i64>,
    limit: usize,
) -> Result<Vec<(Uid, u64)>> {
    let mut st = c.prepare_cached(
        "SELECT c.uid, e.size FROM email e CROSS JOIN copy c ON c.email_id = e.id \
         WHERE e.account_id = (SELECT account_id FROM mailbox WHERE id = ?1) \
         AND e.blob_id IS NULL AND c.mailbox_id = ?1 AND c.uid < 4294967296 \
         AND e.received_at >= ?3 \
         ORDER BY c.uid DESC LIMIT ?2",
    )?;
    let rows = st.query_map(
        params![
            mailbox.0,
            i64::try_from(limit).unwrap_or(i64::MAX),
            received_since.unwrap_or(i64::MIN)
        ],
        |r| {
            Ok((
                Uid(r.get(0)?),
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            ))
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[async_trait]
impl BodyPolicy for SqliteStore {
    async fn account_policy(&self, account: AccountId) -> Result<AccountPolicy> {
        self.call(move |c| policy::policy(c, account)).await
    }

    async fn set_account_policy(&self, account: AccountId, p: &AccountPolicy) -> Result<()> {
        let p = *p;
        self.call(move |c| policy::set_policy(c, account, &p)).await
    }

    async fn set_download_limit(&self, account: AccountId, limit_mb: Option<u64>) -> Result<()> {
        self.call(move |c| policy::set_limit(c, account, limit_mb))
            .await
    }

    async fn set_background_stopped(&self, account: AccountId, day: i64) -> Result<()> {
        self.call(move |c| policy::set_stopped(c, account, day))
            .await
    }

    async fn add_downloaded(&self, account: AccountId, day: i64, bytes: u64) -> Result<()> {
        self.call(move |c| policy::add(c, account, day, bytes))
            .await
    }

    async fn download_budget(
        &self,
        account: AccountId,
        day: i64,
    ) -> Result<mail_types::DownloadBudget> {
        self.call(move |c| policy::budget(c, account, day)).await
    }
}
