//! `tidings user ...` and `tidings account ...`: manage a data dir without editing TOML.
//! Safe beside a running server (SQLite WAL); the server picks up account changes itself.

use crate::Location;
use crate::config::{AccountConfig, Config};
use crate::serve::{new_account, open};
use anyhow::{Context, Result, bail};
use api::auth::{hash_password, new_token};
use clap::Subcommand;
use mail_types::{AccountKind, Security};
use std::io::BufRead;
use std::path::PathBuf;
use store::Store;

#[derive(Subcommand)]
pub enum UserAction {
    /// Add a user; the password is read from stdin (one line).
    Add { name: String },
    /// List users.
    List,
    /// Remove a user and all their accounts.
    Remove { name: String },
}

#[derive(Subcommand)]
pub enum TokenAction {
    /// Create an API token for Bearer authentication; it is printed once, stored hashed.
    Create {
        #[arg(long)]
        user: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "")]
        name: String,
    },
}

pub async fn token(action: TokenAction, at: &Location) -> Result<()> {
    let (data_dir, key_file) = resolve(at)?;
    let (store, _) = open(&data_dir, key_file.as_deref())?;
    match action {
        TokenAction::Create { user, name } => {
            let owner = store
                .user_by_name(&user)
                .await?
                .with_context(|| format!("no user {user}"))?;
            let (token, hash) = new_token();
            store.create_token(owner.id, &name, &hash).await?;
            println!("{token}");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum AccountAction {
    /// Add a mail account; the password is read from stdin (one line).
    Add {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "imap")]
        kind: String,
        #[arg(long)]
        host: String,
        #[arg(long)]
        port: u16,
        /// tls | starttls | none
        #[arg(long, default_value = "tls")]
        security: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// List accounts with their sync status and progress.
    List,
    /// Run one sync pass of every account (or one) now, print what it did, and exit.
    Sync {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove an account and everything synced from it.
    Remove {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
    },
}

fn resolve(at: &Location) -> Result<(PathBuf, Option<PathBuf>)> {
    if let Some(c) = &at.config {
        let config = Config::load(c)?;
        return Ok((config.data_dir, at.key_file.clone().or(config.key_file)));
    }
    match &at.data_dir {
        Some(d) => Ok((d.clone(), at.key_file.clone())),
        None => bail!("give --config FILE or --data-dir DIR"),
    }
}

fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if p.is_empty() {
        bail!("empty password on stdin");
    }
    Ok(p)
}

pub async fn user(action: UserAction, at: &Location) -> Result<()> {
    let (data_dir, key_file) = resolve(at)?;
    let (store, _) = open(&data_dir, key_file.as_deref())?;
    match action {
        UserAction::Add { name } => {
            let hash = hash_password(&read_password()?)?;
            store.create_user(&name, &hash).await?;
            println!("user {name} added");
        }
        UserAction::List => {
            for u in store.list_users().await? {
                println!("{}", u.name);
            }
        }
        UserAction::Remove { name } => {
            if !store.delete_user(&name).await? {
                bail!("no user {name}");
            }
            println!("user {name} removed");
        }
    }
    Ok(())
}

pub async fn account(action: AccountAction, at: &Location) -> Result<()> {
    let (data_dir, key_file) = resolve(at)?;
    let (store, key) = open(&data_dir, key_file.as_deref())?;
    match action {
        AccountAction::Add {
            user,
            name,
            kind,
            host,
            port,
            security,
            username,
            ca_file,
        } => {
            let kind = AccountKind::from_name(&kind).context("--kind is imap or pop3")?;
            let security =
                Security::from_name(&security).context("--security is tls, starttls or none")?;
            let owner = store
                .user_by_name(&user)
                .await?
                .with_context(|| format!("no user {user}"))?;
            let cfg = AccountConfig {
                user,
                name: name.clone(),
                kind,
                host,
                port,
                security,
                username,
                password: read_password()?,
                ca_file,
                smtp: None,
                delete_after_days: None,
            };
            store
                .create_account(&new_account(&key, owner.id, &cfg)?)
                .await?;
            println!("account {name} added");
        }
        AccountAction::List => {
            for a in store.list_accounts().await? {
                let mailboxes = store.mailboxes(a.id).await?;
                let (total, headers, bodies) = mailboxes.iter().fold((0, 0, 0), |acc, m| {
                    (
                        acc.0 + m.progress.total,
                        acc.1 + m.progress.headers,
                        acc.2 + m.progress.bodies,
                    )
                });
                let err = a.status.error();
                println!(
                    "{}/{}\t{} {}:{}\t{}{}\t{} mailboxes, {headers}/{total} messages, {bodies} bodies",
                    a.user_name,
                    a.name,
                    a.kind.as_str(),
                    a.server.host,
                    a.server.port,
                    a.status.name(),
                    if err.is_empty() {
                        String::new()
                    } else {
                        format!(" ({err})")
                    },
                    mailboxes.len(),
                );
            }
        }
        AccountAction::Sync { user, name } => {
            for a in store.list_accounts().await? {
                if user.as_ref().is_some_and(|u| *u != a.user_name)
                    || name.as_ref().is_some_and(|n| *n != a.name)
                {
                    continue;
                }
                let started = std::time::Instant::now();
                let report = sync_once(store.clone(), &key, &a).await?;
                println!(
                    "{}/{}	{:.3} s	{} mailboxes ({} unchanged), {} new, {} bodies, {} flag changes, {} expunged, {} resets",
                    a.user_name,
                    a.name,
                    started.elapsed().as_secs_f64(),
                    report.mailboxes,
                    report.skipped_unchanged,
                    report.new_headers,
                    report.bodies,
                    report.flag_updates,
                    report.expunged,
                    report.resets,
                );
            }
            if let Some(kb) = peak_rss_kb() {
                println!("peak RSS {kb} KB");
            }
        }
        AccountAction::Remove { user, name } => {
            let accounts = store.list_accounts().await?;
            let a = accounts
                .iter()
                .find(|a| a.user_name == user && a.name == name)
                .with_context(|| format!("no account {name} of user {user}"))?;
            store.delete_account(a.id).await?;
            println!("account {name} removed");
        }
    }
    Ok(())
}

async fn sync_once(
    store: std::sync::Arc<store::SqliteStore>,
    key: &crate::secrets::SecretKey,
    a: &store::AccountRecord,
) -> Result<imap_sync::sync::SyncReport> {
    if a.kind != AccountKind::Imap {
        bail!(
            "account {} is not IMAP; one-shot sync covers IMAP accounts",
            a.name
        );
    }
    let ep = imap_sync::Endpoint {
        host: a.server.host.clone(),
        port: a.server.port,
        security: a.server.security,
        ca_file: a.server.ca_file.as_ref().map(PathBuf::from),
    };
    let creds = imap_sync::Credentials {
        username: a.server.username.clone(),
        password: key.decrypt(&a.server.password_enc)?,
    };
    let mut session = imap_sync::Session::connect(&ep, &creds)
        .await
        .with_context(|| format!("connecting account {}", a.name))?;
    let sync = imap_sync::sync::AccountSync::new(store, a.id);
    let report = sync
        .sync_all(&mut session)
        .await
        .with_context(|| format!("syncing account {}", a.name))?;
    session.logout().await;
    Ok(report)
}

/// Peak resident set size of this process (Linux), for benchmarks.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
