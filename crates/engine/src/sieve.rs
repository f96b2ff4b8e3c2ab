//! ManageSieve (RFC 5804) for the accounts: where each account's server is, whether it
//! is really there (tried at account start, the finding stored for the Session), and a
//! logged-in connection for the JMAP Sieve and VacationResponse methods, with the same
//! credentials (password or OAuth2 access token) as the account's IMAP login.

use crate::PasswordSource;
use crate::account::Auth;
use crate::oauth::OAuth;
use mail_net::Login;
use mail_types::{AccountKind, Security};
use managesieve::{Capabilities, Client};
use std::path::Path;
use std::sync::Arc;
use store::{AccountRecord, Directory, SieveSettings, SieveState};

/// Why there is no ManageSieve connection.
#[derive(Debug, thiserror::Error)]
pub enum SieveError {
    /// The account's configuration says `sieve = false`, or it is a POP3 account.
    #[error("ManageSieve is turned off for this account")]
    Disabled,
    /// The password or token could not be had, or the server refused it.
    #[error("ManageSieve login: {0}")]
    Login(String),
    #[error(transparent)]
    Protocol(#[from] managesieve::Error),
    #[error("store: {0}")]
    Store(#[from] store::Error),
}

/// Connects accounts to their ManageSieve servers (cheap to clone through its `Arc`).
pub struct Sieve {
    store: Arc<dyn SieveState>,
    /// Where the account's OAuth2 tokens are kept (ManageSieve logs in as IMAP does).
    directory: Arc<dyn Directory>,
    passwords: PasswordSource,
    oauth: Arc<OAuth>,
}

impl Sieve {
    pub(crate) fn new(
        store: Arc<dyn SieveState>,
        directory: Arc<dyn Directory>,
        passwords: PasswordSource,
        oauth: Arc<OAuth>,
    ) -> Sieve {
        Sieve {
            store,
            directory,
            passwords,
            oauth,
        }
    }

    /// Connects and logs in. An OAuth2 access token the server refuses is renewed and
    /// tried once more, as for IMAP.
    pub async fn connect(&self, account: &AccountRecord) -> Result<Client, SieveError> {
        let settings = self.store.sieve_settings(account.id).await?;
        let config = config(account, &settings)?;
        let auth = Auth {
            store: self.directory.as_ref(),
            passwords: &self.passwords,
            oauth: &self.oauth,
        };
        let (login, _) = auth
            .login(account, None)
            .await
            .map_err(|e| SieveError::Login(e.to_string()))?;
        let mut client = Client::connect(config.clone()).await?;
        match client.authenticate(&as_auth(&login)).await {
            Ok(()) => Ok(client),
            Err(managesieve::Error::Auth(text)) => {
                let Login::OAuth2 { access_token, .. } = &login else {
                    return Err(SieveError::Login(text));
                };
                tracing::info!(account = %account.id, "ManageSieve refused the access token; renewing it once");
                let (login, _) = auth
                    .login(account, Some(access_token))
                    .await
                    .map_err(|e| SieveError::Login(e.to_string()))?;
                let mut client = Client::connect(config).await?;
                client
                    .authenticate(&as_auth(&login))
                    .await
                    .map_err(|e| SieveError::Login(e.to_string()))?;
                Ok(client)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Tries the account's ManageSieve server (connect, log in, capabilities) and stores
    /// what it found, so the Session offers Sieve and VacationResponse only when it is
    /// really there. Returns the capabilities when it is.
    pub async fn discover(&self, account: &AccountRecord) -> Option<Capabilities> {
        let found = match self.connect(account).await {
            Ok(client) => {
                let caps = client.capabilities().clone();
                client.logout().await;
                tracing::info!(account = %account.id,
                    implementation = caps.implementation.as_deref().unwrap_or(""),
                    "ManageSieve available");
                Some(caps)
            }
            Err(SieveError::Disabled) => None,
            Err(e) => {
                tracing::info!(account = %account.id, error = %e, "ManageSieve not available");
                None
            }
        };
        self.record(account, found.as_ref()).await;
        found
    }

    /// [`Sieve::discover`] at account start, and again every `retry` until found (a
    /// server down at start, or one that gains ManageSieve later), until the engine stops.
    pub(crate) async fn discover_at_start(
        self: Arc<Self>,
        account: AccountRecord,
        retry: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let found = tokio::select! {
                found = self.discover(&account) => found.is_some(),
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let enabled = self
                .store
                .sieve_settings(account.id)
                .await
                .is_ok_and(|s| s.enabled);
            if found || !enabled {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Stores a finding (also after a successful use, so the Session follows a server
    /// that gained ManageSieve since the account started).
    pub async fn record(&self, account: &AccountRecord, caps: Option<&Capabilities>) {
        let json = caps.and_then(|c| serde_json::to_string(c).ok());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if let Err(e) = self
            .store
            .set_sieve_found(account.id, json.as_deref(), now)
            .await
        {
            tracing::error!(account = %account.id, error = %e, "cannot record ManageSieve finding");
        }
    }

    /// The stored finding: the capabilities of the last successful try, if any.
    pub async fn found(&self, account: &AccountRecord) -> Option<Capabilities> {
        let s = self.store.sieve_settings(account.id).await.ok()?;
        if !s.enabled || account.kind != AccountKind::Imap {
            return None;
        }
        serde_json::from_str(s.capabilities.as_deref()?).ok()
    }
}

/// Where the account's ManageSieve server is: the configured host and port, else the
/// IMAP host on port 4190 (RFC 5804 1.8). TLS as for IMAP: a server reached with TLS is
/// asked for STARTTLS (RFC 5804 2.2; ManageSieve has no implicit-TLS port), one reached
/// without (a loopback test server) is used without.
fn config(account: &AccountRecord, s: &SieveSettings) -> Result<managesieve::Config, SieveError> {
    if !s.enabled || account.kind != AccountKind::Imap {
        return Err(SieveError::Disabled);
    }
    let host = s
        .host
        .clone()
        .unwrap_or_else(|| account.server.host.clone());
    let port = s.port.unwrap_or(managesieve::DEFAULT_PORT);
    let security = match account.server.security {
        Security::None => Security::None,
        Security::Tls | Security::Starttls => Security::Starttls,
    };
    let tls = mail_net::tls_config(account.server.ca_file.as_deref().map(Path::new))
        .map_err(|e| SieveError::Protocol(managesieve::Error::Tls(e.to_string())))?;
    Ok(managesieve::Config::new(host, port, security, tls))
}

fn as_auth(login: &Login) -> managesieve::Auth<'_> {
    match login {
        Login::Password(c) => managesieve::Auth::Plain {
            username: &c.username,
            password: &c.password,
        },
        Login::OAuth2 {
            username,
            access_token,
        } => managesieve::Auth::OAuth2 {
            username,
            token: access_token,
        },
    }
}
