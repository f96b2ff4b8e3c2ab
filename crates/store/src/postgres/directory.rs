//! [`Directory`] for PostgreSQL, with the SQLite backend's semantics (sqlite/directory.rs).

use super::*;
use crate::model::*;
use async_trait::async_trait;
use mail_types::{AccountAuth, AccountId, AccountKind, Security, State, SyncStatus, UserId};
use tokio_postgres::Row;

const USER_COLUMNS: &str = "u.id, u.name, u.password_hash";

fn user_from_row(r: &Row) -> UserRecord {
    UserRecord {
        id: UserId(r.get(0)),
        name: r.get(1),
        password_hash: r.get(2),
    }
}

const ACCOUNT_COLUMNS: &str = "a.id, a.user_id, u.name, a.name, a.kind, a.host, a.port, \
     a.security, a.username, a.password_enc, a.ca_file, a.smtp_host, a.smtp_port, \
     a.smtp_security, a.smtp_username, a.smtp_password_enc, a.pop3_delete_after_days, \
     a.sync_status, a.sync_error, a.status_at, a.state, a.auth, a.oauth_provider, a.provider";

fn parse_security(s: &str) -> Result<Security> {
    Security::from_name(s).ok_or_else(|| Error::Corrupt(format!("security {s}")))
}

fn account_from_row(r: &Row) -> Result<AccountRecord> {
    let kind: String = r.get(4);
    let port: i64 = r.get(6);
    let security: String = r.get(7);
    let smtp_host: Option<String> = r.get(11);
    let smtp_port: Option<i64> = r.get(12);
    let smtp_security: Option<String> = r.get(13);
    let smtp_username: Option<String> = r.get(14);
    let smtp_password: Option<Vec<u8>> = r.get(15);
    let status: String = r.get(17);
    let error: String = r.get(18);
    let auth: String = r.get(21);
    let oauth_provider: String = r.get(22);
    let smtp = match (smtp_host, smtp_port, smtp_security) {
        (Some(host), Some(port), Some(sec)) => Some(ServerSettings {
            host,
            port: u16::try_from(port).map_err(|_| Error::Corrupt("smtp port".into()))?,
            security: parse_security(&sec)?,
            username: smtp_username.unwrap_or_default(),
            password_enc: smtp_password.unwrap_or_default(),
            ca_file: None,
        }),
        _ => None,
    };
    Ok(AccountRecord {
        id: AccountId(r.get(0)),
        user: UserId(r.get(1)),
        user_name: r.get(2),
        name: r.get(3),
        kind: AccountKind::from_name(&kind)
            .ok_or_else(|| Error::Corrupt(format!("account kind {kind}")))?,
        server: ServerSettings {
            host: r.get(5),
            port: u16::try_from(port).map_err(|_| Error::Corrupt("port".into()))?,
            security: parse_security(&security)?,
            username: r.get(8),
            password_enc: r.get(9),
            ca_file: r.get(10),
        },
        smtp,
        pop3_delete_after_days: r
            .get::<_, Option<i64>>(16)
            .and_then(|d| u32::try_from(d).ok()),
        auth: AccountAuth::from_parts(&auth, &oauth_provider)
            .ok_or_else(|| Error::Corrupt(format!("account auth {auth}")))?,
        status: SyncStatus::from_parts(&status, &error),
        status_at: r.get(19),
        state: State(r.get(20)),
        provider: r.get(23),
    })
}

/// The account's columns that `create_account` and `update_account` write, in the order
/// of [`account_values`].
const ACCOUNT_SETTINGS: &str = "name, kind, host, port, security, username, password_enc, \
     ca_file, smtp_host, smtp_port, smtp_security, smtp_username, smtp_password_enc, \
     pop3_delete_after_days, auth, oauth_provider";

/// The values of [`ACCOUNT_SETTINGS`], owned (the statement borrows them).
struct AccountValues {
    name: String,
    kind: &'static str,
    host: String,
    port: i64,
    security: &'static str,
    username: String,
    password_enc: Vec<u8>,
    ca_file: Option<String>,
    smtp_host: Option<String>,
    smtp_port: Option<i64>,
    smtp_security: Option<&'static str>,
    smtp_username: Option<String>,
    smtp_password_enc: Option<Vec<u8>>,
    pop3_delete_after_days: Option<i64>,
    auth: &'static str,
    oauth_provider: String,
}

impl AccountValues {
    fn of(a: &NewAccount) -> AccountValues {
        AccountValues {
            name: a.name.clone(),
            kind: a.kind.as_str(),
            host: a.server.host.clone(),
            port: i64::from(a.server.port),
            security: a.server.security.as_str(),
            username: a.server.username.clone(),
            password_enc: a.server.password_enc.clone(),
            ca_file: a.server.ca_file.clone(),
            smtp_host: a.smtp.as_ref().map(|s| s.host.clone()),
            smtp_port: a.smtp.as_ref().map(|s| i64::from(s.port)),
            smtp_security: a.smtp.as_ref().map(|s| s.security.as_str()),
            smtp_username: a.smtp.as_ref().map(|s| s.username.clone()),
            smtp_password_enc: a.smtp.as_ref().map(|s| s.password_enc.clone()),
            pop3_delete_after_days: a.pop3_delete_after_days.map(i64::from),
            auth: a.auth.as_str(),
            oauth_provider: a.auth.provider().to_string(),
        }
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 16] {
        [
            &self.name,
            &self.kind,
            &self.host,
            &self.port,
            &self.security,
            &self.username,
            &self.password_enc,
            &self.ca_file,
            &self.smtp_host,
            &self.smtp_port,
            &self.smtp_security,
            &self.smtp_username,
            &self.smtp_password_enc,
            &self.pop3_delete_after_days,
            &self.auth,
            &self.oauth_provider,
        ]
    }
}

impl PgStore {
    /// One user found by `condition` on `from` (which names the user `u`).
    async fn user_where(
        &self,
        from: &str,
        condition: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<UserRecord>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM {from} WHERE {condition}"
            ))
            .await?;
        Ok(c.query_opt(&st, params).await?.as_ref().map(user_from_row))
    }

    /// The accounts found by `condition` (`a` the account, `u` its user), in `order`.
    async fn accounts_where(
        &self,
        condition: &str,
        order: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<AccountRecord>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM account a JOIN app_user u ON u.id = a.user_id \
                 WHERE {condition} ORDER BY {order}"
            ))
            .await?;
        c.query(&st, params)
            .await?
            .iter()
            .map(account_from_row)
            .collect()
    }

    /// Runs one statement; how many rows it touched.
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await?;
        Ok(c.execute(&st, params).await?)
    }
}

#[async_trait]
impl Directory for PgStore {
    async fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId> {
        let c = self.client().await?;
        // One statement: two nodes creating the same user cannot both pass a check.
        let st = c
            .prepare_cached(
                "INSERT INTO app_user (name, password_hash, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .await?;
        match c.query_opt(&st, &[&name, &password_hash, &now()]).await? {
            Some(r) => Ok(UserId(r.get(0))),
            None => Err(Error::Exists(format!("user {name}"))),
        }
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM app_user u ORDER BY u.name"
            ))
            .await?;
        Ok(c.query(&st, &[]).await?.iter().map(user_from_row).collect())
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        self.user_where("app_user u", "u.name = $1", &[&name]).await
    }

    async fn set_user_password(&self, name: &str, password_hash: &str) -> Result<()> {
        let n = self
            .execute(
                "UPDATE app_user SET password_hash = $2 WHERE name = $1",
                &[&name, &password_hash],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(format!("user {name}")));
        }
        Ok(())
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        Ok(self
            .execute("DELETE FROM app_user WHERE name = $1", &[&name])
            .await?
            > 0)
    }

    async fn create_token(&self, user: UserId, name: &str, hash: &str) -> Result<()> {
        self.execute(
            "INSERT INTO api_token (user_id, name, hash, created_at) VALUES ($1, $2, $3, $4)",
            &[&user.0, &name, &hash, &now()],
        )
        .await?;
        Ok(())
    }

    async fn user_by_token_hash(&self, hash: &str) -> Result<Option<UserRecord>> {
        self.user_where(
            "api_token t JOIN app_user u ON u.id = t.user_id",
            "t.hash = $1",
            &[&hash],
        )
        .await
    }

    async fn create_account(&self, account: &NewAccount) -> Result<AccountId> {
        let v = AccountValues::of(account);
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "INSERT INTO account (user_id, {ACCOUNT_SETTINGS}) VALUES ($1, $2, $3, $4, $5, \
                 $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                 ON CONFLICT (user_id, name) DO NOTHING RETURNING id"
            ))
            .await?;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&account.user.0];
        params.extend(v.params());
        match c.query_opt(&st, &params).await? {
            Some(r) => Ok(AccountId(r.get(0))),
            None => Err(Error::Exists(format!("account {}", account.name))),
        }
    }

    async fn update_account(&self, id: AccountId, account: &NewAccount) -> Result<()> {
        let v = AccountValues::of(account);
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "UPDATE account SET ({ACCOUNT_SETTINGS}) = ($2, $3, $4, $5, $6, $7, $8, $9, \
                 $10, $11, $12, $13, $14, $15, $16, $17) WHERE id = $1"
            ))
            .await?;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id.0];
        params.extend(v.params());
        c.execute(&st, &params).await?;
        Ok(())
    }

    async fn list_accounts(&self) -> Result<Vec<AccountRecord>> {
        self.accounts_where("true", "u.name, a.name", &[]).await
    }

    async fn set_account_secret(&self, id: AccountId, secret_enc: &[u8]) -> Result<()> {
        let n = self
            .execute(
                "UPDATE account SET password_enc = $2 WHERE id = $1",
                &[&id.0, &secret_enc],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(format!("account {id}")));
        }
        Ok(())
    }

    async fn user_accounts(&self, user: UserId) -> Result<Vec<AccountRecord>> {
        self.accounts_where("a.user_id = $1", "a.name", &[&user.0])
            .await
    }

    async fn delete_account(&self, id: AccountId) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Its change log, uploads and policy go with it (foreign keys); the blobs only
        // its uploads held go in the same transaction.
        let mut held: Vec<String> = tx
            .query(
                "SELECT DISTINCT blob_id FROM upload WHERE account_id = $1",
                &[&id.0],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        held.sort();
        let n = tx
            .execute("DELETE FROM account WHERE id = $1", &[&id.0])
            .await?;
        super::uploads::forget_unreferenced(&tx, &held).await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn set_sync_status(&self, id: AccountId, status: &SyncStatus) -> Result<()> {
        self.execute(
            "UPDATE account SET sync_status = $2, sync_error = $3, status_at = $4 WHERE id = $1",
            &[&id.0, &status.name(), &status.error(), &now()],
        )
        .await?;
        Ok(())
    }

    async fn create_web_session(&self, user: UserId, hash: &str, expires_at: i64) -> Result<()> {
        let t = now();
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let sweep = tx
            .prepare_cached("DELETE FROM web_session WHERE expires_at <= $1")
            .await?;
        tx.execute(&sweep, &[&t]).await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO web_session (hash, user_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .await?;
        tx.execute(&insert, &[&hash, &user.0, &t, &expires_at])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_by_web_session(&self, hash: &str) -> Result<Option<UserRecord>> {
        self.user_where(
            "web_session s JOIN app_user u ON u.id = s.user_id",
            "s.hash = $1 AND s.expires_at > $2",
            &[&hash, &now()],
        )
        .await
    }

    async fn delete_web_session(&self, hash: &str) -> Result<bool> {
        Ok(self
            .execute("DELETE FROM web_session WHERE hash = $1", &[&hash])
            .await?
            > 0)
    }

    async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>> {
        Ok(self
            .accounts_where("a.id = $1", "a.id", &[&id.0])
            .await?
            .into_iter()
            .next())
    }

    async fn set_account_provider(&self, account: AccountId, provider: &str) -> Result<()> {
        self.execute(
            "UPDATE account SET provider = $2 WHERE id = $1",
            &[&account.0, &provider],
        )
        .await?;
        Ok(())
    }
}
