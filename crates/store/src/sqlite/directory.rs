//! [`Directory`] for SQLite.

use super::*;

#[async_trait]
impl Directory for SqliteStore {
    async fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        self.call(move |c| {
            let exists: Option<i64> = c
                .query_row("SELECT id FROM user WHERE name = ?1", [&name], |r| r.get(0))
                .optional()?;
            if exists.is_some() {
                return Err(Error::Exists(format!("user {name}")));
            }
            c.execute(
                "INSERT INTO user (name, password_hash, created_at) VALUES (?1, ?2, ?3)",
                params![name, hash, now()],
            )?;
            Ok(UserId(c.last_insert_rowid()))
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.call(|c| {
            let mut st = c.prepare("SELECT id, name, password_hash FROM user ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok(UserRecord {
                    id: UserId(r.get(0)?),
                    name: r.get(1)?,
                    password_hash: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        let name = name.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT id, name, password_hash FROM user WHERE name = ?1",
                [&name],
                |r| {
                    Ok(UserRecord {
                        id: UserId(r.get(0)?),
                        name: r.get(1)?,
                        password_hash: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn set_user_password(&self, name: &str, password_hash: &str) -> Result<()> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        self.call(move |c| {
            let n = c.execute(
                "UPDATE user SET password_hash = ?2 WHERE name = ?1",
                params![name, hash],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("user {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.call(move |c| Ok(c.execute("DELETE FROM user WHERE name = ?1", [&name])? > 0))
            .await
    }

    async fn create_token(&self, user: UserId, name: &str, hash: &str) -> Result<()> {
        let (name, hash) = (name.to_string(), hash.to_string());
        self.call(move |c| {
            c.execute(
                "INSERT INTO api_token (user_id, name, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![user.0, name, hash, now()],
            )?;
            Ok(())
        })
        .await
    }

    async fn user_by_token_hash(&self, hash: &str) -> Result<Option<UserRecord>> {
        let hash = hash.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT u.id, u.name, u.password_hash FROM api_token t JOIN user u ON u.id = t.user_id \
                 WHERE t.hash = ?1",
                [&hash],
                |r| {
                    Ok(UserRecord {
                        id: UserId(r.get(0)?),
                        name: r.get(1)?,
                        password_hash: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn create_account(&self, a: &NewAccount) -> Result<AccountId> {
        let a = a.clone();
        self.call(move |c| {
            let exists: Option<i64> = c
                .query_row(
                    "SELECT id FROM account WHERE user_id = ?1 AND name = ?2",
                    params![a.user.0, a.name],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_some() {
                return Err(Error::Exists(format!("account {}", a.name)));
            }
            c.execute(
                "INSERT INTO account (user_id, name, kind, host, port, security, username, \
                 password_enc, ca_file, smtp_host, smtp_port, smtp_security, smtp_username, \
                 smtp_password_enc, pop3_delete_after_days, auth, oauth_provider) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                 ?16, ?17)",
                params![
                    a.user.0,
                    a.name,
                    a.kind.as_str(),
                    a.server.host,
                    a.server.port,
                    a.server.security.as_str(),
                    a.server.username,
                    a.server.password_enc,
                    a.server.ca_file,
                    a.smtp.as_ref().map(|s| s.host.clone()),
                    a.smtp.as_ref().map(|s| s.port),
                    a.smtp.as_ref().map(|s| s.security.as_str()),
                    a.smtp.as_ref().map(|s| s.username.clone()),
                    a.smtp.as_ref().map(|s| s.password_enc.clone()),
                    a.pop3_delete_after_days,
                    a.auth.as_str(),
                    a.auth.provider(),
                ],
            )?;
            Ok(AccountId(c.last_insert_rowid()))
        })
        .await
    }

    async fn set_account_secret(&self, id: AccountId, secret_enc: &[u8]) -> Result<()> {
        let secret = secret_enc.to_vec();
        self.call(move |c| {
            let n = c.execute(
                "UPDATE account SET password_enc = ?2 WHERE id = ?1",
                params![id.0, secret],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("account {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn update_account(&self, id: AccountId, a: &NewAccount) -> Result<()> {
        let a = a.clone();
        self.call(move |c| {
            c.execute(
                "UPDATE account SET kind = ?2, host = ?3, port = ?4, security = ?5, \
                 username = ?6, password_enc = ?7, ca_file = ?8, smtp_host = ?9, \
                 smtp_port = ?10, smtp_security = ?11, smtp_username = ?12, \
                 smtp_password_enc = ?13, pop3_delete_after_days = ?14, auth = ?15, \
                 oauth_provider = ?16, name = ?17 WHERE id = ?1",
                params![
                    id.0,
                    a.kind.as_str(),
                    a.server.host,
                    a.server.port,
                    a.server.security.as_str(),
                    a.server.username,
                    a.server.password_enc,
                    a.server.ca_file,
                    a.smtp.as_ref().map(|s| s.host.clone()),
                    a.smtp.as_ref().map(|s| s.port),
                    a.smtp.as_ref().map(|s| s.security.as_str()),
                    a.smtp.as_ref().map(|s| s.username.clone()),
                    a.smtp.as_ref().map(|s| s.password_enc.clone()),
                    a.pop3_delete_after_days,
                    a.auth.as_str(),
                    a.auth.provider(),
                    a.name,
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<AccountRecord>> {
        self.call(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM account a JOIN user u ON u.id = a.user_id \
                 ORDER BY u.name, a.name"
            ))?;
            let rows = st.query_map([], account_from_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
        .await
    }

    async fn user_accounts(&self, user: UserId) -> Result<Vec<AccountRecord>> {
        self.read_call(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM account a JOIN user u ON u.id = a.user_id \
                 WHERE a.user_id = ?1 ORDER BY a.name"
            ))?;
            let rows = st.query_map([user.0], account_from_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_account(&self, id: AccountId) -> Result<bool> {
        let blobs = self.blobs.clone();
        let removed = self.call(move |c| {
            let tx = c.transaction()?;
            // FTS rows are not covered by foreign keys.
            for fts in ["email_fts_head", "email_fts_body"] {
                tx.execute(
                    &format!(
                        "DELETE FROM {fts} WHERE rowid IN (SELECT id FROM email WHERE account_id = ?1)"
                    ),
                    [id.0],
                )?;
            }
            for table in ["change", "thread_ref", "thread_subject"] {
                tx.execute(&format!("DELETE FROM {table} WHERE account_id = ?1"), [id.0])?;
            }
            let n = tx.execute("DELETE FROM account WHERE id = ?1", [id.0])?;
            let gone: Vec<String> = {
                let mut st =
                    tx.prepare(&format!("DELETE FROM blob WHERE {BLOB_UNREFERENCED} RETURNING id"))?;
                let rows = st.query_map([], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.commit()?;
            for b in gone {
                blobs.remove(&b)?;
            }
            Ok(n > 0)
        })
        .await?;
        self.announce.work.forget(id);
        Ok(removed)
    }

    async fn set_sync_status(&self, id: AccountId, status: &SyncStatus) -> Result<()> {
        let status = status.clone();
        self.call(move |c| {
            c.execute(
                "UPDATE account SET sync_status = ?2, sync_error = ?3, status_at = ?4 WHERE id = ?1",
                params![id.0, status.name(), status.error(), now()],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_web_session(&self, user: UserId, hash: &str, expires_at: i64) -> Result<()> {
        let hash = hash.to_string();
        self.call(move |c| {
            let t = now();
            c.execute("DELETE FROM web_session WHERE expires_at <= ?1", [t])?;
            c.execute(
                "INSERT INTO web_session (hash, user_id, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![hash, user.0, t, expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn user_by_web_session(&self, hash: &str) -> Result<Option<UserRecord>> {
        let hash = hash.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT u.id, u.name, u.password_hash FROM web_session s \
                 JOIN user u ON u.id = s.user_id WHERE s.hash = ?1 AND s.expires_at > ?2",
                params![hash, now()],
                |r| {
                    Ok(UserRecord {
                        id: UserId(r.get(0)?),
                        name: r.get(1)?,
                        password_hash: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn delete_web_session(&self, hash: &str) -> Result<bool> {
        let hash = hash.to_string();
        self.call(move |c| Ok(c.execute("DELETE FROM web_session WHERE hash = ?1", [&hash])? > 0))
            .await
    }

    async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>> {
        self.read_call(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM account a JOIN user u ON u.id = a.user_id \
                 WHERE a.id = ?1"
            ))?;
            let mut rows = st.query_map([id.0], account_from_row)?;
            match rows.next() {
                Some(r) => Ok(Some(r??)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn set_account_provider(&self, account: AccountId, provider: &str) -> Result<()> {
        let provider = provider.to_string();
        self.call(move |c| {
            c.execute(
                "UPDATE account SET provider = ?2 WHERE id = ?1",
                params![account.0, provider],
            )?;
            Ok(())
        })
        .await
    }
}

fn parse_kind(s: &str) -> Result<AccountKind> {
    AccountKind::from_name(s).ok_or_else(|| Error::Corrupt(format!("account kind {s}")))
}
fn parse_security(s: &str) -> Result<Security> {
    Security::from_name(s).ok_or_else(|| Error::Corrupt(format!("security {s}")))
}

const ACCOUNT_COLUMNS: &str = "a.id, a.user_id, u.name, a.name, a.kind, a.host, a.port, \
     a.security, a.username, a.password_enc, a.ca_file, a.smtp_host, a.smtp_port, \
     a.smtp_security, a.smtp_username, a.smtp_password_enc, a.pop3_delete_after_days, \
     a.sync_status, a.sync_error, a.status_at, a.state, a.auth, a.oauth_provider, a.provider";

fn account_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AccountRecord>> {
    let kind: String = r.get(4)?;
    let security: String = r.get(7)?;
    let smtp_host: Option<String> = r.get(11)?;
    let smtp_port: Option<i64> = r.get(12)?;
    let smtp_security: Option<String> = r.get(13)?;
    let smtp_username: Option<String> = r.get(14)?;
    let smtp_password: Option<Vec<u8>> = r.get(15)?;
    let status: String = r.get(17)?;
    let error: String = r.get(18)?;
    let port: i64 = r.get(6)?;
    let auth: String = r.get(21)?;
    let oauth_provider: String = r.get(22)?;
    let provider: String = r.get(23)?;
    let build = || -> Result<AccountRecord> {
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
            id: AccountId(r.get(0)?),
            user: UserId(r.get(1)?),
            user_name: r.get(2)?,
            name: r.get(3)?,
            kind: parse_kind(&kind)?,
            server: ServerSettings {
                host: r.get(5)?,
                port: u16::try_from(port).map_err(|_| Error::Corrupt("port".into()))?,
                security: parse_security(&security)?,
                username: r.get(8)?,
                password_enc: r.get(9)?,
                ca_file: r.get(10)?,
            },
            smtp,
            pop3_delete_after_days: r
                .get::<_, Option<i64>>(16)?
                .and_then(|d| u32::try_from(d).ok()),
            auth: AccountAuth::from_parts(&auth, &oauth_provider)
                .ok_or_else(|| Error::Corrupt(format!("account auth {auth}")))?,
            status: SyncStatus::from_parts(&status, &error),
            status_at: r.get(19)?,
            state: State(r.get(20)?),
            provider,
        })
    };
    Ok(build())
}
