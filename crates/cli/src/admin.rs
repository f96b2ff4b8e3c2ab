//! `tidings user ...` and `tidings account ...`: manage a data dir without editing TOML.
//! Safe beside a running server (SQLite WAL); the server picks up account changes itself.

use crate::Location;
use crate::config::{AccountConfig, AuthKind, Config};
use crate::secrets::SecretKey;
use crate::serve::{new_account, open};
use anyhow::{Context, Result, bail};
use api::auth::{hash_password, new_token};
use clap::Subcommand;
use mail_types::{AccountAuth, AccountKind, Security};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

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
    let (store, _) = open_at(at).await?;
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
    /// Add a mail account; the password is read from stdin (one line). With `--auth
    /// oauth2`, on a terminal: sign in with the provider's device flow (RFC 8628);
    /// otherwise the refresh token is read from stdin.
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
        /// password | oauth2
        #[arg(long, default_value = "password")]
        auth: String,
        /// With `--auth oauth2`: the `[[oauth_provider]]` (of the server's config) that
        /// issued the refresh token.
        #[arg(long)]
        oauth_provider: Option<String>,
        /// With `--auth oauth2`: sign in with the device-code flow (RFC 8628) even when
        /// stdin is not a terminal (on a terminal it is the default).
        #[arg(long)]
        device_flow: bool,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Change an account's body policy or download budget.
    Edit {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
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

/// What an account downloads in the background, and how much a day.
#[derive(clap::Args, Debug, Default)]
pub struct PolicyArgs {
    /// Fetch bodies of messages received in the last N days in the background (`all`, the
    /// default, or a number; 0: none); the others when they are opened.
    #[arg(long, value_name = "N|all")]
    bodies_days: Option<String>,
    /// MB a day the account may download (`default`: the provider's limit, 2,500 for
    /// Gmail, else unlimited; 0: unlimited). The background pass stops at 90% of it.
    #[arg(long, value_name = "MB|default")]
    daily_download_mb: Option<String>,
}

impl PolicyArgs {
    /// `base` with what was given on the command line changed.
    fn apply(&self, mut base: store::AccountPolicy) -> Result<store::AccountPolicy> {
        if let Some(d) = &self.bodies_days {
            base.bodies_days = match d.as_str() {
                "all" => None,
                n => Some(
                    n.parse()
                        .context("--bodies-days is a number of days or all")?,
                ),
            };
        }
        if let Some(m) = &self.daily_download_mb {
            base.daily_download_mb = match m.as_str() {
                "default" => None,
                n => Some(
                    n.parse()
                        .context("--daily-download-mb is a number of MB or default")?,
                ),
            };
        }
        Ok(base)
    }
}

/// The store and key of `at`: a configuration's (SQLite in its data dir, or its
/// PostgreSQL `store`), or a data dir's.
async fn open_at(at: &Location) -> Result<(std::sync::Arc<dyn store::Store>, SecretKey)> {
    if let Some(c) = &at.config {
        let mut config = Config::load(c)?;
        if at.key_file.is_some() {
            config.key_file = at.key_file.clone();
        }
        return crate::serve::open_configured(&config).await;
    }
    let (data_dir, key_file) = resolve(at)?;
    let (store, key) = open(&data_dir, key_file.as_deref())?;
    Ok((store, key))
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

/// Signs in with the device authorization grant (RFC 8628): prints where to go and the
/// code to enter, waits for the person to finish in a browser, returns the refresh token.
async fn device_sign_in(provider: &crate::config::OAuthProviderConfig) -> Result<String> {
    let oauth = engine::OAuth::new(vec![provider.to_provider()], None);
    let (auth, code) = oauth
        .device_authorize(&provider.name)
        .await
        .with_context(|| format!("starting the sign-in with {}", provider.name))?;
    eprintln!(
        "To sign in, open {} in a browser and enter the code {}",
        auth.verification_uri, auth.user_code
    );
    if let Some(complete) = &auth.verification_uri_complete {
        eprintln!("(or open {complete}, which carries the code)");
    }
    eprintln!(
        "Waiting for the sign-in; the code is valid for {} minutes...",
        auth.expires_in.as_secs().div_ceil(60)
    );
    let token = oauth
        .device_poll(&provider.name, &auth, &code)
        .await
        .with_context(|| format!("signing in with {}", provider.name))?;
    eprintln!("Signed in.");
    Ok(token.0)
}

/// An OAuth2 refresh token from stdin (not a terminal: a terminal signs in instead).
fn read_refresh_token() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the refresh token from stdin")?;
    let t = line.trim();
    if t.is_empty() {
        bail!("empty refresh token on stdin");
    }
    Ok(t.to_string())
}

pub async fn user(action: UserAction, at: &Location) -> Result<()> {
    let (store, _) = open_at(at).await?;
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
    let (store, key) = open_at(at).await?;
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
            auth,
            oauth_provider,
            device_flow,
            policy,
        } => {
            let policy = policy.apply(store::AccountPolicy::default())?;
            let kind = AccountKind::from_name(&kind).context("--kind is imap or pop3")?;
            let auth = AuthKind::from_name(&auth).context("--auth is password or oauth2")?;
            let secret = match auth {
                AuthKind::Password => read_password()?,
                AuthKind::OAuth2 => {
                    let provider = oauth_provider
                        .as_deref()
                        .context("--auth oauth2 needs --oauth-provider NAME")?;
                    let config = at.config.as_deref().map(Config::load).transpose()?;
                    if let Some(c) = &config {
                        c.provider(provider)?;
                    }
                    if device_flow || std::io::stdin().is_terminal() {
                        let c = config.as_ref().context(
                            "signing in needs --config (its [[oauth_provider]] says where); \
                             or pipe a refresh token on stdin",
                        )?;
                        device_sign_in(c.provider(provider)?).await?
                    } else {
                        if config.is_none() {
                            eprintln!(
                                "note: without --config, whether oauth_provider {provider:?} \
                                 is configured is not checked"
                            );
                        }
                        read_refresh_token()?
                    }
                }
            };
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
                password: String::new(),
                auth,
                oauth_provider,
                refresh_token_file: None,
                ca_file,
                smtp: None,
                delete_after_days: None,
                provider: None,
                bodies_days: policy.bodies_days,
                daily_download_mb: policy.daily_download_mb,
                sieve: None,
                sieve_host: None,
                sieve_port: None,
            };
            let id = store
                .create_account(&new_account(&key, owner.id, &cfg, &secret)?)
                .await?;
            store.set_account_policy(id, &cfg.policy()).await?;
            println!("account {name} added");
        }
        AccountAction::Edit { user, name, policy } => {
            let accounts = store.list_accounts().await?;
            let a = accounts
                .iter()
                .find(|a| a.user_name == user && a.name == name)
                .with_context(|| format!("no account {name} of user {user}"))?;
            let p = policy.apply(store.account_policy(a.id).await?)?;
            store.set_account_policy(a.id, &p).await?;
            // A running server reads the policy when the account next connects.
            println!("account {name} changed");
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
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                let budget = store
                    .download_budget(a.id, mail_types::budget::utc_day(now))
                    .await?;
                let download = match budget.limit_mb {
                    _ if budget.background_reached() => format!(", {}", budget.describe()),
                    Some(l) => format!(", {} of {l} MB today", budget.used / 1_000_000),
                    None => format!(", {} MB today", budget.used / 1_000_000),
                };
                println!(
                    "{}/{}\t{} {}:{}\t{}{}\t{} mailboxes, {headers}/{total} messages, {bodies} bodies{download}",
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
            // OAuth2 accounts need their provider, from the config.
            let config = match &at.config {
                Some(c) => Some(Config::load(c)?),
                None => None,
            };
            for a in store.list_accounts().await? {
                if user.as_ref().is_some_and(|u| *u != a.user_name)
                    || name.as_ref().is_some_and(|n| *n != a.name)
                {
                    continue;
                }
                let started = std::time::Instant::now();
                let report = sync_once(store.clone(), &key, &a, config.as_ref()).await?;
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
    store: std::sync::Arc<dyn store::Store>,
    key: &crate::secrets::SecretKey,
    a: &store::AccountRecord,
    config: Option<&Config>,
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
    let login = match &a.auth {
        AccountAuth::Password => imap_sync::Login::Password(imap_sync::Credentials {
            username: a.server.username.clone(),
            password: key.decrypt(&a.server.password_enc)?,
        }),
        AccountAuth::OAuth2 { provider } => {
            let config = config.with_context(|| {
                format!(
                    "account {} uses OAuth2: give --config with its oauth_provider",
                    a.name
                )
            })?;
            let seal: engine::SecretSeal = {
                let key = key.clone();
                std::sync::Arc::new(move |s: &str| key.encrypt(s))
            };
            let passwords: engine::PasswordSource = {
                let key = key.clone();
                std::sync::Arc::new(move |r: &store::AccountRecord| {
                    key.decrypt(&r.server.password_enc)
                })
            };
            let oauth =
                engine::OAuth::new(vec![config.provider(provider)?.to_provider()], Some(seal));
            let token = oauth
                .access_token(store.as_ref(), &passwords, a, None)
                .await
                .with_context(|| format!("access token of account {}", a.name))?;
            imap_sync::Login::OAuth2 {
                username: a.server.username.clone(),
                access_token: token.value,
            }
        }
    };
    // A name this build does not know (a store written by a newer one) detects instead.
    let choice = a.provider.parse().unwrap_or_default();
    let mut session = imap_sync::Session::connect_profile(&ep, &login, choice)
        .await
        .with_context(|| format!("connecting account {}", a.name))?;
    let mut sync = imap_sync::sync::AccountSync::new(store.clone(), a.id);
    engine::apply_body_policy(store.as_ref(), &mut sync, &session).await?;
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
