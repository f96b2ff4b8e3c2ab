//! Per-account ManageSieve settings, what the last try found, and the permanent JMAP ids
//! of Sieve scripts (RFC 9661), whose names the server may change under us.

use super::*;
use crate::Result;
use crate::model::SieveSettings;
use mail_types::AccountId;
use rusqlite::{Connection, OptionalExtension, params};

/// The tables, created by their migration.
pub(super) const SCHEMA: &str = "
CREATE TABLE account_sieve (
    account_id   INTEGER PRIMARY KEY REFERENCES account(id) ON DELETE CASCADE,
    -- 0: never try ManageSieve for this account (the configuration said `sieve = false`).
    enabled      INTEGER NOT NULL DEFAULT 1,
    -- '' : the IMAP host (RFC 5804 1.8).
    host         TEXT NOT NULL DEFAULT '',
    -- 0: the registered port 4190.
    port         INTEGER NOT NULL DEFAULT 0,
    -- The server's capabilities (JSON) from the last successful try; '' when the last try
    -- failed or none was made: the Session then offers neither Sieve nor VacationResponse.
    capabilities TEXT NOT NULL DEFAULT '',
    checked_at   INTEGER NOT NULL DEFAULT 0
) STRICT;
-- AUTOINCREMENT: an id never names another script later (DESIGN.md invariant 8).
CREATE TABLE sieve_script (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    UNIQUE (account_id, name)
) STRICT;
-- The scripts as JMAP last saw them under each recent SieveScript state (a digest of the
-- scripts: ManageSieve keeps no change log), so SieveScript/changes can tell what changed
-- since one of them.
CREATE TABLE sieve_snapshot (
    account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    -- JSON: [[id, digest of its name, activity and content], ...]
    scripts    TEXT NOT NULL,
    seen_at    INTEGER NOT NULL,
    PRIMARY KEY (account_id, state)
) STRICT;
";

/// How many states back SieveScript/changes can answer from.
const SNAPSHOTS: i64 = 32;

pub(super) fn settings(c: &Connection, account: AccountId) -> Result<SieveSettings> {
    let row: Option<(i64, String, i64, String, i64)> = c
        .query_row(
            "SELECT enabled, host, port, capabilities, checked_at FROM account_sieve \
             WHERE account_id = ?1",
            [account.0],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    Ok(match row {
        Some((enabled, host, port, caps, at)) => SieveSettings {
            enabled: enabled != 0,
            host: (!host.is_empty()).then_some(host),
            port: u16::try_from(port).ok().filter(|p| *p != 0),
            capabilities: (!caps.is_empty()).then_some(caps),
            checked_at: at,
        },
        None => SieveSettings::default(),
    })
}

pub(super) fn set_settings(c: &Connection, account: AccountId, s: &SieveSettings) -> Result<()> {
    c.execute(
        "INSERT INTO account_sieve (account_id, enabled, host, port) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (account_id) DO UPDATE SET enabled = excluded.enabled, \
         host = excluded.host, port = excluded.port",
        params![
            account.0,
            i64::from(s.enabled),
            s.host.as_deref().unwrap_or(""),
            i64::from(s.port.unwrap_or(0))
        ],
    )?;
    Ok(())
}

pub(super) fn set_found(
    c: &Connection,
    account: AccountId,
    capabilities: Option<&str>,
    at: i64,
) -> Result<()> {
    c.execute(
        "INSERT INTO account_sieve (account_id, capabilities, checked_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (account_id) DO UPDATE SET capabilities = excluded.capabilities, \
         checked_at = excluded.checked_at",
        params![account.0, capabilities.unwrap_or(""), at],
    )?;
    Ok(())
}

/// The id of each name, in order: known names keep theirs, new ones get new ids, and
/// names the server no longer has are forgotten (their ids are never handed out again).
pub(super) fn script_ids(
    c: &mut Connection,
    account: AccountId,
    names: &[String],
) -> Result<Vec<i64>> {
    let tx = c.transaction()?;
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        tx.execute(
            "INSERT INTO sieve_script (account_id, name) VALUES (?1, ?2) \
             ON CONFLICT (account_id, name) DO NOTHING",
            params![account.0, name],
        )?;
        ids.push(tx.query_row(
            "SELECT id FROM sieve_script WHERE account_id = ?1 AND name = ?2",
            params![account.0, name],
            |r| r.get(0),
        )?);
    }
    let known: Vec<(i64, String)> = {
        let mut st = tx.prepare("SELECT id, name FROM sieve_script WHERE account_id = ?1")?;
        let rows = st.query_map([account.0], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, name) in known {
        if !names.contains(&name) {
            tx.execute("DELETE FROM sieve_script WHERE id = ?1", [id])?;
        }
    }
    tx.commit()?;
    Ok(ids)
}

/// After RENAMESCRIPT: the id follows the script to its new name.
pub(super) fn rename_script(c: &Connection, account: AccountId, id: i64, name: &str) -> Result<()> {
    c.execute(
        "DELETE FROM sieve_script WHERE account_id = ?1 AND name = ?2 AND id <> ?3",
        params![account.0, name, id],
    )?;
    c.execute(
        "UPDATE sieve_script SET name = ?3 WHERE account_id = ?1 AND id = ?2",
        params![account.0, id, name],
    )?;
    Ok(())
}

/// Records the scripts seen under `state` (once), keeping the most recent ones.
pub(super) fn put_snapshot(
    c: &Connection,
    account: AccountId,
    state: &str,
    scripts: &str,
    at: i64,
) -> Result<()> {
    let added = c.execute(
        "INSERT INTO sieve_snapshot (account_id, state, scripts, seen_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (account_id, state) DO NOTHING",
        params![account.0, state, scripts, at],
    )?;
    if added > 0 {
        c.execute(
            "DELETE FROM sieve_snapshot WHERE account_id = ?1 AND rowid NOT IN \
             (SELECT rowid FROM sieve_snapshot WHERE account_id = ?1 \
              ORDER BY seen_at DESC, rowid DESC LIMIT ?2)",
            params![account.0, SNAPSHOTS],
        )?;
    }
    Ok(())
}

pub(super) fn snapshot(c: &Connection, account: AccountId, state: &str) -> Result<Option<String>> {
    Ok(c.query_row(
        "SELECT scripts FROM sieve_snapshot WHERE account_id = ?1 AND state = ?2",
        params![account.0, state],
        |r| r.get(0),
    )
    .optional()?)
}

#[async_trait]
impl SieveState for SqliteStore {
    async fn sieve_settings(&self, account: AccountId) -> Result<SieveSettings> {
        self.call(move |c| sieve::settings(c, account)).await
    }

    async fn set_sieve_settings(&self, account: AccountId, s: &SieveSettings) -> Result<()> {
        let s = s.clone();
        self.call(move |c| sieve::set_settings(c, account, &s))
            .await
    }

    async fn set_sieve_found(
        &self,
        account: AccountId,
        capabilities: Option<&str>,
        at: i64,
    ) -> Result<()> {
        let caps = capabilities.map(str::to_owned);
        self.call(move |c| sieve::set_found(c, account, caps.as_deref(), at))
            .await
    }

    async fn sieve_script_ids(&self, account: AccountId, names: &[String]) -> Result<Vec<i64>> {
        let names = names.to_vec();
        self.call(move |c| sieve::script_ids(c, account, &names))
            .await
    }

    async fn put_sieve_snapshot(
        &self,
        account: AccountId,
        state: &str,
        scripts: &str,
        at: i64,
    ) -> Result<()> {
        let (state, scripts) = (state.to_owned(), scripts.to_owned());
        self.call(move |c| sieve::put_snapshot(c, account, &state, &scripts, at))
            .await
    }

    async fn sieve_snapshot(&self, account: AccountId, state: &str) -> Result<Option<String>> {
        let state = state.to_owned();
        self.call(move |c| sieve::snapshot(c, account, &state))
            .await
    }

    async fn rename_sieve_script(&self, account: AccountId, id: i64, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.call(move |c| sieve::rename_script(c, account, id, &name))
            .await
    }
}
