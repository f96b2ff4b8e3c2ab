//! `tidings serve`: open the store, import the config's users and accounts, run the engine
//! until asked to stop, and pick up accounts added meanwhile through the CLI.

use crate::config::{AccountConfig, AuthKind, Config, default_key_file};
use crate::secrets::SecretKey;
use anyhow::{Context, Result, bail};
use api::auth::{hash_password, verify_password};
use engine::{Engine, PasswordSource};
use mail_types::AccountAuth;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use store::{NewAccount, ServerSettings, SqliteStore, Store};

/// How often a running server looks for accounts added or removed by `tidings account`.
const ACCOUNT_RESCAN: Duration = Duration::from_secs(3);

pub const STORE_FILE: &str = "tidings.sqlite";

pub async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Opens the store and the key of a data dir.
pub fn open(data_dir: &Path, key_file: Option<&Path>) -> Result<(Arc<SqliteStore>, SecretKey)> {
    create_private_dir(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let key_path = key_file
        .map(Path::to_path_buf)
        .unwrap_or_else(default_key_file);
    let key = SecretKey::load_or_create(&key_path, data_dir)?;
    let store = SqliteStore::open(&data_dir.join(STORE_FILE))
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    for path in too_open(data_dir) {
        tracing::warn!(path = %path.display(),
            "readable by other users of this machine: the data dir holds mail and should be \
             private (chmod -R go-rwx on the data dir)");
    }
    Ok((Arc::new(store), key))
}

/// Creates the data dir (and missing parents) readable by the owner only, whatever the umask.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// The data dir, the store's files and the blob folder when group or others may read them:
/// made so by an older version or by hand (new ones are created private).
fn too_open(data_dir: &Path) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let store = data_dir.join(STORE_FILE);
    let mut candidates = vec![data_dir.to_path_buf(), data_dir.join("blobs")];
    for suffix in ["", "-wal", "-shm"] {
        let mut name = store.clone().into_os_string();
        name.push(suffix);
        candidates.push(name.into());
    }
    candidates
        .into_iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o077 != 0))
        .collect()
}

/// The store's account for `a`; `secret` is its password, or its refresh token (OAuth2).
pub fn new_account(
    key: &SecretKey,
    user: mail_types::UserId,
    a: &AccountConfig,
    secret: &str,
) -> Result<NewAccount> {
    let auth = match a.auth {
        AuthKind::Password => AccountAuth::Password,
        AuthKind::OAuth2 => AccountAuth::OAuth2 {
            provider: a
                .oauth_provider
                .clone()
                .with_context(|| format!("account {} has no oauth_provider", a.name))?,
        },
    };
    // OAuth2: SMTP logs in with the same tokens; its stored secret is not used.
    let smtp_secret = |s: &crate::config::SmtpConfig| match a.auth {
        AuthKind::Password => s.password.clone().unwrap_or_else(|| secret.to_string()),
        AuthKind::OAuth2 => String::new(),
    };
    Ok(NewAccount {
        user,
        name: a.name.clone(),
        kind: a.kind,
        server: ServerSettings {
            host: a.host.clone(),
            port: a.port,
            security: a.security,
            username: a.username.clone(),
            password_enc: key.encrypt(secret)?,
            ca_file: a.ca_file.as_ref().map(|p| p.display().to_string()),
        },
        smtp: match &a.smtp {
            Some(s) => Some(ServerSettings {
                host: s.host.clone(),
                port: s.port,
                security: s.security,
                username: s.username.clone().unwrap_or_else(|| a.username.clone()),
                password_enc: key.encrypt(&smtp_secret(s))?,
                ca_file: a.ca_file.as_ref().map(|p| p.display().to_string()),
            }),
            None => None,
        },
        pop3_delete_after_days: a.delete_after_days,
        auth,
    })
}

/// Makes the store hold the config's users and accounts (config wins on conflicts).
async fn import(store: &dyn Store, key: &SecretKey, config: &Config) -> Result<()> {
    for u in &config.user {
        match store.user_by_name(&u.name).await? {
            Some(existing) if verify_password(&u.password, &existing.password_hash) => {}
            Some(_) => {
                store
                    .set_user_password(&u.name, &hash_password(&u.password)?)
                    .await?
            }
            None => match store
                .create_user(&u.name, &hash_password(&u.password)?)
                .await
            {
                // Another node sharing the store made it meanwhile.
                Ok(_) | Err(store::Error::Exists(_)) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    let mut existing = store.list_accounts().await?;
    for a in &config.account {
        let user = store
            .user_by_name(&a.user)
            .await?
            .with_context(|| format!("user {} missing after import", a.user))?;
        let found = existing
            .iter()
            .find(|e| e.user == user.id && e.name == a.name);
        let secret = match a.auth {
            AuthKind::Password => a.password.clone(),
            AuthKind::OAuth2 => oauth_secret(key, a, found)?,
        };
        let new = new_account(key, user.id, a, &secret)?;
        let id = match found {
            Some(e) => {
                let same_password = key
                    .decrypt(&e.server.password_enc)
                    .map(|p| p == secret)
                    .unwrap_or(false)
                    && e.auth == new.auth;
                let mut settings_same = e.server.host == new.server.host
                    && e.server.port == new.server.port
                    && e.server.security == new.server.security
                    && e.server.username == new.server.username
                    && e.server.ca_file == new.server.ca_file;
                settings_same &= e.smtp.as_ref().map(|s| (&s.host, s.port))
                    == new.smtp.as_ref().map(|s| (&s.host, s.port));
                if !(same_password && settings_same) {
                    store.update_account(e.id, &new).await?;
                }
                e.id
            }
            None => match store.create_account(&new).await {
                Ok(id) => id,
                // Another node sharing the store made it meanwhile (the same config). The
                // list read again is kept: it holds what that node made so far, so nodes
                // started together with 1,500 accounts read it a few times, not 1,500.
                Err(store::Error::Exists(_)) => {
                    existing = store.list_accounts().await?;
                    existing
                        .iter()
                        .find(|e| e.user == user.id && e.name == a.name)
                        .map(|e| e.id)
                        .with_context(|| format!("account {} exists and cannot be found", a.name))?
                }
                Err(e) => return Err(e.into()),
            },
        };
        // Sending: whether the SMTP server files its own copy in Sent.
        let server_saves_sent = a.smtp.as_ref().is_some_and(|s| s.server_saves_sent);
        store.set_server_files_sent(id, server_saves_sent).await?;
        store
            .set_account_provider(id, a.provider_choice()?.as_str())
            .await?;
        store.set_account_policy(id, &a.policy()).await?;
        store.set_sieve_settings(id, &a.sieve_settings()).await?;
    }
    Ok(())
}

/// The refresh token an OAuth2 account from the config starts with: the stored one (the
/// provider may have rotated it since it was imported), unless there is none, it cannot
/// be decrypted, or the account failed for want of a new sign-in: then the one in
/// `refresh_token_file`.
fn oauth_secret(
    key: &SecretKey,
    a: &AccountConfig,
    existing: Option<&store::AccountRecord>,
) -> Result<String> {
    if let Some(e) = existing
        && e.auth.as_str() == "oauth2"
        && !matches!(e.status, mail_types::SyncStatus::AuthFailed(_))
        && let Ok(stored) = key.decrypt(&e.server.password_enc)
        && !stored.is_empty()
    {
        return Ok(stored);
    }
    let path = a
        .refresh_token_file
        .as_ref()
        .with_context(|| format!("account {} has no refresh_token_file", a.name))?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the refresh token of account {}", a.name))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(token.to_string())
}

// --- many watched accounts
/// File descriptors one watched IMAP account may hold: the watcher, the worker and the
/// outbox worker's connection.
const FDS_PER_ACCOUNT: u64 = 3;
/// File descriptors kept for everything else (HTTP and push clients, the store, blobs).
const FDS_RESERVED: u64 = 1024;

/// Raises the soft fd limit to the hard limit, as servers do (a shell's default soft limit
/// of 1024 would stop a node near 300 watched accounts), and says so when even the hard
/// limit is short for `accounts`.
fn raise_fd_limit(accounts: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let before = lim.current;
    let below = match (lim.current, lim.maximum) {
        (Some(cur), Some(max)) => cur < max,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if below {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::warn!(error = %e, "cannot raise the fd limit");
            lim.current = before;
        }
    }
    let soft = lim.current.unwrap_or(u64::MAX);
    let wanted = accounts as u64 * FDS_PER_ACCOUNT + FDS_RESERVED;
    if soft < wanted {
        tracing::warn!(
            fd_limit = soft,
            wanted,
            accounts,
            "the fd limit is low for this many accounts; raise the hard limit (ulimit -Hn, LimitNOFILE=)"
        );
    } else {
        tracing::debug!(fd_limit = soft, "fd limit");
    }
}

/// Opens the store the configuration names (SQLite in the data dir, or a PostgreSQL that
/// several nodes share) and the key of the stored secrets.
pub async fn open_configured(config: &Config) -> Result<(Arc<dyn Store>, SecretKey)> {
    let Some(url) = &config.store else {
        let (store, key) = open(&config.data_dir, config.key_file.as_deref())?;
        return Ok((store, key));
    };
    create_private_dir(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let key_path = config.key_file.clone().unwrap_or_else(default_key_file);
    let key = SecretKey::load_or_create(&key_path, &config.data_dir)?;
    // The URL may hold a password: it is not repeated in the error.
    let store = store::PgStore::connect(&url.0)
        .await
        .context("connecting to the PostgreSQL store")?;
    Ok((Arc::new(store), key))
}

/// Runs until `stop` completes.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> Result<()> {
    let (store, key) = open_configured(&config).await?;
    import(store.as_ref(), &key, &config).await?;
    raise_fd_limit(store.list_accounts().await?.len());
    let passwords: PasswordSource = {
        let key = key.clone();
        Arc::new(move |a: &store::AccountRecord| key.decrypt(&a.server.password_enc))
    };
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let local = listener.local_addr()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(
            api::tls::acceptor(cert, key)
                .with_context(|| format!("loading {} and {}", cert.display(), key.display()))?,
        ),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{local}"));
    let oauth = {
        let key = key.clone();
        let seal: engine::SecretSeal = Arc::new(move |secret: &str| key.encrypt(secret));
        let providers = config
            .oauth_provider
            .iter()
            .map(|p| p.to_provider())
            .collect();
        Arc::new(engine::OAuth::new(providers, Some(seal)))
    };
    let node = engine::NodeOptions {
        name: config
            .node_name
            .clone()
            .unwrap_or_else(|| default_node_name(local)),
        lease_ttl: config
            .lease_ttl_ms
            .map(Duration::from_millis)
            .unwrap_or(engine::NodeOptions::default().lease_ttl),
    };
    // With other nodes on the store, the beat renews the leases: every third of their time.
    let beat = if store.shared() {
        node.lease_ttl / 3
    } else {
        ACCOUNT_RESCAN
    };
    let mut engine = Engine::new(store.clone(), passwords)
        .with_oauth(oauth.clone())
        .with_node(node);
    // Watching: 0 turns the NOTIFY flush off.
    engine = engine.with_options(engine::EngineOptions {
        notify_flush: match config.imap_notify_flush_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms.max(10))),
            None => engine::EngineOptions::default().notify_flush,
        },
        notify_flush_always: config.imap_notify_flush_always,
        background_bodies: config.imap_background_bodies,
        ..engine::EngineOptions::default()
    });
    let mut api_state = api::AppState::new(store.clone(), &base_url);
    // A body not stored yet is fetched on the engine's priority lane.
    api_state.bodies = Some(Arc::new(Bodies(engine.body_fetcher())));
    // SieveScript and VacationResponse reach ManageSieve with the accounts' credentials.
    api_state.sieve = Some(engine.sieve());
    // push: limits from the config, the VAPID key, and the stored push subscriptions'
    // delivery tasks.
    {
        let mut limits = jmap_server::PushLimits::default();
        if let Some(n) = config.push_connections_per_user {
            limits.connections_per_user = n;
        }
        limits.subscription_allow_http = config.push_subscription_allow_http;
        limits.subscription_allow_private = config.push_subscription_allow_private;
        let vapid_path = crate::config::vapid_key_file(
            config.vapid_key_file.as_deref(),
            config.key_file.as_deref(),
        );
        let subject = config
            .push_vapid_subject
            .clone()
            .unwrap_or(base_url.clone());
        if !(subject.starts_with("mailto:") || subject.starts_with("https:")) {
            tracing::warn!(
                "push_vapid_subject is not a mailto: or https: contact: Web Push goes \
                 without one, and some push services refuse that (RFC 8292 2.1)"
            );
        }
        limits.vapid = Some(Arc::new(
            jmap_server::Vapid::load_or_create(&vapid_path, &subject)
                .with_context(|| format!("VAPID key {}", vapid_path.display()))?,
        ));
        api_state.push = jmap_server::PushHub::new(store.as_ref(), limits);
    }
    // Accounts added from the browser: secrets sealed with this data dir's key.
    api_state.setup = Some(Arc::new(
        api::setup::Setup::new(
            Arc::new(KeyBox(key.clone())),
            api::setup::DiscoveryOptions {
                dns_server: config.setup_dns_server,
                autoconfig_base: config.setup_autoconfig_base.clone(),
                offline: false,
            },
            config.setup_ca_file.clone(),
        )
        .with_oauth(oauth.clone(), config.oauth_servers()),
    ));
    // The watchers flush while their user has a push client.
    engine = engine.with_presence(Arc::new(Followers(api_state.push.clone())));
    let api_state = Arc::new(api_state);
    if let Err(e) = api_state.jmap.start_push().await {
        tracing::warn!(error = %e, "push subscriptions not started");
    }
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = http_stop_rx.await;
    };
    let limits = config.http_limits()?;
    let http = match tls {
        Some(acceptor) => tokio::spawn(api::serve_tls_with(
            listener, acceptor, api_state, limits, stopped,
        )),
        None => tokio::spawn(api::serve_with(listener, api_state, limits, stopped)),
    };

    engine.start_all().await?;
    tracing::info!(data_dir = %config.data_dir.display(), accounts = engine.running().len(),
        shared_store = store.shared(),
        "tidings is running");
    tracing::info!(url = %format!("{base_url}/.well-known/jmap"), "JMAP session resource");
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(beat) => {
                if let Err(e) = engine.reconcile().await {
                    tracing::warn!(error = %e, "cannot rescan accounts");
                }
            }
        }
    }
    tracing::info!("stopping");
    let _ = http_stop_tx.send(());
    engine.shutdown().await;
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
        Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
    }
    Ok(())
}

/// A node's name when the configuration gives none: the host name and the listen port,
/// unique among nodes on different hosts or ports.
fn default_node_name(local: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}:{}", local.port())
}

/// The push hub, as the engine's `Presence`: a user with a live push connection is looking.
struct Followers(Arc<jmap_server::PushHub>);

impl engine::Presence for Followers {
    fn is_present(&self, user: mail_types::UserId) -> bool {
        self.0.has_followers(user)
    }

    fn present_users(&self) -> Vec<mail_types::UserId> {
        self.0.followed_users()
    }
}

/// The data dir's key, as the API's `SecretBox`.
struct KeyBox(SecretKey);

impl api::setup::SecretBox for KeyBox {
    fn seal(&self, secret: &str) -> Result<Vec<u8>, String> {
        self.0.encrypt(secret).map_err(|e| e.to_string())
    }
    fn open(&self, sealed: &[u8]) -> Result<String, String> {
        self.0.decrypt(sealed).map_err(|e| e.to_string())
    }
}

/// The engine's priority lane, as the API's `BodyFetch`.
struct Bodies(Arc<engine::BodyFetcher>);

impl jmap_server::BodyFetch for Bodies {
    fn fetch_body(
        &self,
        account: mail_types::AccountId,
        email: mail_types::EmailId,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), jmap_server::FetchError>> + Send + '_>>
    {
        Box::pin(async move {
            self.0.fetch(account, email).await.map_err(|e| match e {
                engine::BodyFetchError::Gone => jmap_server::FetchError::Gone,
                engine::BodyFetchError::Unavailable(why) => {
                    jmap_server::FetchError::Unavailable(why)
                }
            })
        })
    }
}
