//! The TOML configuration of `tidings serve --config FILE`.

use anyhow::{Context, Result, bail};
use mail_types::{AccountKind, Security};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP (JMAP) listener.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The URL clients reach the listener at, when it is not `http://<listen>` (behind a
    /// TLS proxy, say); the JMAP Session's URLs are built from it.
    #[serde(default)]
    pub public_url: Option<String>,
    /// PEM certificate chain and private key: with both, the listener speaks HTTPS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Where the SQLite store lives (and, with a PostgreSQL store, what this node keeps
    /// of its own: nothing of the mail).
    pub data_dir: PathBuf,
    /// The store, when it is not SQLite in `data_dir`: a PostgreSQL URL
    /// (`postgres://user:password@host:port/database`, libpq's form) that any number of
    /// nodes share. Every node needs the same `key_file`. See docs/cluster.md.
    #[serde(default)]
    pub store: Option<StoreUrl>,
    /// This node's name among the nodes sharing a PostgreSQL store: unique among them.
    /// Default: the host name and the listen port.
    #[serde(default)]
    pub node_name: Option<String>,
    /// How long a node's hold on an account lasts without renewal (ms, default 3000): a
    /// node that died has its accounts taken over by the others about this long after.
    #[serde(default)]
    pub lease_ttl_ms: Option<u64>,
    /// The key that encrypts stored mail passwords. Must be outside `data_dir`, so a copy of
    /// the data dir alone does not reveal them. Default: `$XDG_CONFIG_HOME/tidings/secret.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub user: Vec<UserConfig>,
    #[serde(default)]
    pub account: Vec<AccountConfig>,
    /// OAuth 2.0 authorization servers that accounts with `auth = "oauth2"` name.
    #[serde(default)]
    pub oauth_provider: Vec<OAuthProviderConfig>,
    // --- push ---
    /// WebSocket and EventSource connections one user may hold at once (default 100).
    #[serde(default)]
    pub push_connections_per_user: Option<usize>,
    /// Accept `http://` PushSubscription URLs (tests, development only; https otherwise).
    #[serde(default)]
    pub push_subscription_allow_http: bool,
    /// Let PushSubscription URLs reach loopback, private and link-local addresses (tests,
    /// a push service inside one's own network; public addresses only otherwise).
    #[serde(default)]
    pub push_subscription_allow_private: bool,
    /// The VAPID key pair (RFC 8292) that signs Web Push requests, PEM PKCS#8, created on
    /// first start (mode 0600). Default: `vapid.pem` beside `key_file`, outside the data
    /// dir like it. `tidings vapid rotate` replaces it.
    #[serde(default)]
    pub vapid_key_file: Option<PathBuf>,
    /// The contact a push service may reach the operator at (RFC 8292 2.1 `sub`): a
    /// `mailto:` or `https:` URI. Default: the server's public URL.
    #[serde(default)]
    pub push_vapid_subject: Option<String>,
    // --- watching ---
    /// With NOTIFY, a NOOP on the watcher connection this often (milliseconds, default
    /// 100, 0 for never) while the account's user has a push client connected makes
    /// Dovecot send the notifications it holds back for 500 ms. One round trip per
    /// interval per watched account of a present user. See docs/design/watching.md.
    #[serde(default)]
    pub imap_notify_flush_ms: Option<u64>,
    /// Flush every NOTIFY watcher, whether its user is connected or not.
    #[serde(default)]
    pub imap_notify_flush_always: bool,
    // --- HTTP connection limits ---
    /// Reverse proxies (addresses or blocks, `"127.0.0.1/32"`, `"::1"`) whose `Forwarded`
    /// / `X-Forwarded-For` name the client. Default none: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// From a request's first byte until its header is complete (ms, default 30000).
    #[serde(default)]
    pub http_header_read_timeout_ms: Option<u64>,
    /// An idle keep-alive connection is closed after this (ms, default 60000).
    #[serde(default)]
    pub http_idle_timeout_ms: Option<u64>,
    /// The longest pause inside a request body or a response (ms, default 60000).
    #[serde(default)]
    pub http_body_idle_timeout_ms: Option<u64>,
    /// Connections one client address (IPv6: its /64) may hold at once (default 256).
    #[serde(default)]
    pub http_max_connections_per_address: Option<usize>,
    /// Fetch message bodies in the background after their headers (default true). False:
    /// only headers are synced, and a body is fetched when a client asks for it (tests
    /// use it to open messages the background pass has not reached).
    #[serde(default = "default_true")]
    pub imap_background_bodies: bool,
    // --- adding accounts from the browser ---
    /// A CA (PEM) trusted, besides the system's, for accounts added from the web client:
    /// a private mail server with its own CA.
    #[serde(default)]
    pub setup_ca_file: Option<PathBuf>,
    /// The DNS server asked for SRV records (RFC 6186) when discovering an address's
    /// settings (`"127.0.0.1:5353"`); default: the system's resolver.
    #[serde(default)]
    pub setup_dns_server: Option<std::net::SocketAddr>,
    /// Replaces `https://autoconfig.<domain>` and `https://<domain>` when fetching
    /// autoconfig documents. For tests against a loopback server only.
    #[serde(default)]
    pub setup_autoconfig_base: Option<String>,
}

/// A store URL. It may hold a password: `Debug` shows its scheme only.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct StoreUrl(pub String);

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.0.split("://").next().unwrap_or("");
        write!(f, "StoreUrl({scheme}://…)")
    }
}

fn default_true() -> bool {
    true
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub user: String,
    pub name: String,
    pub kind: AccountKind,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    /// Required with `auth = "password"` (the default); unused with OAuth2.
    #[serde(default)]
    pub password: String,
    /// `password` (PLAIN/LOGIN) or `oauth2` (OAUTHBEARER/XOAUTH2 with tokens of
    /// `oauth_provider`).
    #[serde(default)]
    pub auth: AuthKind,
    #[serde(default)]
    pub oauth_provider: Option<String>,
    /// OAuth2: a file holding the account's refresh token. Read when the account is
    /// created, and again at a start after the account failed with "auth failed: sign in
    /// again"; otherwise the stored token (which the provider may have rotated) is kept.
    #[serde(default)]
    pub refresh_token_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// POP3 only: delete retrieved mail on the server after this many days.
    #[serde(default)]
    pub delete_after_days: Option<u32>,
    /// IMAP: whose known quirks to expect (`auto`, the default, detects them from the
    /// host name, greeting and capabilities; `generic`, `icloud`, `outlook`, `yahoo`,
    /// `gmail` name them).
    #[serde(default)]
    pub provider: Option<String>,
    /// IMAP: bodies of messages received in the last N days are fetched in the
    /// background (default: all; 0: none); the others when they are opened.
    #[serde(default)]
    pub bodies_days: Option<u32>,
    /// IMAP: MB a day the account may download (default: the provider's limit, 2,500 for
    /// Gmail, else unlimited; 0: unlimited). The background pass stops at 90% of it.
    #[serde(default)]
    pub daily_download_mb: Option<u64>,
    /// IMAP: ManageSieve (RFC 5804), tried at start and offered as JMAP Sieve and
    /// VacationResponse when it works. `false`: never tried. Default: on.
    #[serde(default)]
    pub sieve: Option<bool>,
    /// Its host (default: the IMAP host).
    #[serde(default)]
    pub sieve_host: Option<String>,
    /// Its port (default: 4190, RFC 5804 1.8).
    #[serde(default)]
    pub sieve_port: Option<u16>,
}

impl AccountConfig {
    /// The account's body policy and download limit, as the store keeps them.
    pub fn policy(&self) -> store::AccountPolicy {
        store::AccountPolicy {
            bodies_days: self.bodies_days,
            daily_download_mb: self.daily_download_mb,
        }
    }

    /// Where the account's ManageSieve server is, as the store keeps it.
    pub fn sieve_settings(&self) -> store::SieveSettings {
        store::SieveSettings {
            enabled: self.sieve.unwrap_or(true),
            host: self.sieve_host.clone(),
            port: self.sieve_port,
            ..store::SieveSettings::default()
        }
    }

    /// The provider profile the account names (after `validate`, always a known one).
    pub fn provider_choice(&self) -> Result<imap_sync::ProviderChoice> {
        match &self.provider {
            None => Ok(imap_sync::ProviderChoice::Auto),
            Some(p) => p
                .parse()
                .map_err(|e: String| anyhow::anyhow!("account {:?}: {e}", self.name)),
        }
    }
}

/// How an account authenticates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    #[default]
    Password,
    #[serde(rename = "oauth2")]
    OAuth2,
}

impl AuthKind {
    pub fn from_name(s: &str) -> Option<AuthKind> {
        match s {
            "password" => Some(AuthKind::Password),
            "oauth2" => Some(AuthKind::OAuth2),
            _ => None,
        }
    }
}

/// An OAuth 2.0 authorization server and Tidings' registration with it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthProviderConfig {
    /// What accounts refer to in `oauth_provider`.
    pub name: String,
    /// OpenID Connect issuer; its discovery document gives the endpoints.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Explicit endpoints, for providers without discovery (or to override it).
    #[serde(default)]
    pub auth_url: Option<String>,
    #[serde(default)]
    pub token_url: Option<String>,
    /// The device authorization endpoint (RFC 8628), for `tidings account add --auth
    /// oauth2` on a terminal when discovery does not name it.
    #[serde(default)]
    pub device_url: Option<String>,
    pub client_id: String,
    /// Absent for a public client.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Default: what the provider's IMAP, POP3 and SMTP need (by issuer).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The mail servers of accounts added with "Sign in with …" in the web client. Not
    /// needed for `google` and `microsoft` (built in); elsewhere, without them, the
    /// address's settings are discovered.
    #[serde(default)]
    pub imap_host: Option<String>,
    #[serde(default)]
    pub imap_port: Option<u16>,
    /// tls (default) | starttls | none
    #[serde(default)]
    pub imap_security: Option<Security>,
    #[serde(default)]
    pub smtp_host: Option<String>,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// tls (default) | starttls | none
    #[serde(default)]
    pub smtp_security: Option<Security>,
}

impl std::fmt::Debug for OAuthProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthProviderConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl OAuthProviderConfig {
    /// Its accounts' mail servers, when `imap_host` is set.
    pub fn servers(&self) -> Option<api::setup::oauth::OAuthServers> {
        let host = self.imap_host.clone()?;
        let security = self.imap_security.unwrap_or(Security::Tls);
        let smtp = self.smtp_host.clone().map(|h| {
            let security = self.smtp_security.unwrap_or(Security::Tls);
            api::setup::Server {
                host: h,
                port: self.smtp_port.unwrap_or(match security {
                    Security::Tls => 465,
                    _ => 587,
                }),
                security,
            }
        });
        Some(api::setup::oauth::OAuthServers {
            incoming: api::setup::Server {
                host,
                port: self.imap_port.unwrap_or(match security {
                    Security::Tls => 993,
                    _ => 143,
                }),
                security,
            },
            kind: AccountKind::Imap,
            smtp,
        })
    }

    pub fn to_provider(&self) -> engine::OAuthProvider {
        engine::OAuthProvider {
            name: self.name.clone(),
            issuer: self.issuer.clone(),
            auth_url: self.auth_url.clone(),
            token_url: self.token_url.clone(),
            device_url: self.device_url.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            scopes: self
                .scopes
                .clone()
                .unwrap_or_else(|| engine::oauth::default_scopes(self.issuer.as_deref())),
        }
    }
}

impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountConfig")
            .field("user", &self.user)
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Defaults to the account's username and password.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The submission server files what it sends in Sent itself (Gmail does): Tidings
    /// then appends no copy. Default false: Tidings appends the copy.
    #[serde(default)]
    pub server_saves_sent: bool,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut c: Config =
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        // Relative paths are relative to the config file, not to wherever we were started.
        let base = path.parent().unwrap_or(Path::new("."));
        if c.data_dir.is_relative() {
            c.data_dir = base.join(&c.data_dir);
        }
        for p in [
            &mut c.key_file,
            &mut c.tls_cert,
            &mut c.tls_key,
            &mut c.vapid_key_file,
        ] {
            if let Some(k) = p.as_ref()
                && k.is_relative()
            {
                *p = Some(base.join(k));
            }
        }
        for a in &mut c.account {
            for p in [&mut a.ca_file, &mut a.refresh_token_file] {
                if let Some(f) = p.as_ref()
                    && f.is_relative()
                {
                    *p = Some(base.join(f));
                }
            }
        }
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("tls_cert and tls_key go together");
        }
        if let Some(url) = &self.store
            && !(url.0.starts_with("postgres://") || url.0.starts_with("postgresql://"))
        {
            bail!(
                "store must be a postgres:// URL (leave it out for SQLite in data_dir), not {url:?}"
            );
        }
        if self.lease_ttl_ms.is_some_and(|ms| ms < 300) {
            bail!("lease_ttl_ms must be at least 300");
        }
        self.http_limits()?;
        for (i, p) in self.oauth_provider.iter().enumerate() {
            if p.issuer.is_none() && p.token_url.is_none() {
                bail!(
                    "oauth_provider {:?} needs an issuer (OpenID discovery) or a token_url",
                    p.name
                );
            }
            if self.oauth_provider[..i].iter().any(|q| q.name == p.name) {
                bail!("oauth_provider {:?} is configured twice", p.name);
            }
        }
        for a in &self.account {
            a.provider_choice()?;
            match a.auth {
                AuthKind::Password if a.password.is_empty() => {
                    bail!("account {:?} has no password", a.name)
                }
                AuthKind::Password => {}
                AuthKind::OAuth2 => {
                    let Some(p) = &a.oauth_provider else {
                        bail!(
                            "account {:?} has auth = \"oauth2\" but no oauth_provider",
                            a.name
                        );
                    };
                    self.provider(p)?;
                    if a.refresh_token_file.is_none() {
                        bail!(
                            "account {:?} has auth = \"oauth2\" but no refresh_token_file \
                             (or add the account with `tidings account add --auth oauth2` \
                             on a terminal, which signs in with the provider's device flow)",
                            a.name
                        );
                    }
                }
            }
            if !self.user.iter().any(|u| u.name == a.user) {
                bail!(
                    "account {:?} names user {:?}, which is not configured",
                    a.name,
                    a.user
                );
            }
        }
        Ok(())
    }
}

impl Config {
    /// The mail servers the `[[oauth_provider]]`s name, by provider.
    pub fn oauth_servers(
        &self,
    ) -> std::collections::HashMap<String, api::setup::oauth::OAuthServers> {
        self.oauth_provider
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.servers()?)))
            .collect()
    }

    /// The HTTP listener's deadlines, caps and trusted proxies.
    pub fn http_limits(&self) -> Result<api::HttpLimits> {
        let d = api::HttpLimits::default();
        let ms = |v: Option<u64>, default: std::time::Duration, name: &str| match v {
            Some(0) => bail!("{name} must be more than 0"),
            Some(ms) => Ok(std::time::Duration::from_millis(ms)),
            None => Ok(default),
        };
        Ok(api::HttpLimits {
            header_read_timeout: ms(
                self.http_header_read_timeout_ms,
                d.header_read_timeout,
                "http_header_read_timeout_ms",
            )?,
            idle_timeout: ms(
                self.http_idle_timeout_ms,
                d.idle_timeout,
                "http_idle_timeout_ms",
            )?,
            body_idle_timeout: ms(
                self.http_body_idle_timeout_ms,
                d.body_idle_timeout,
                "http_body_idle_timeout_ms",
            )?,
            max_connections_per_address: match self.http_max_connections_per_address {
                Some(0) => bail!("http_max_connections_per_address must be more than 0"),
                Some(n) => n,
                None => d.max_connections_per_address,
            },
            trusted_proxies: api::TrustedProxies::parse(&self.trusted_proxies)
                .context("trusted_proxies")?,
        })
    }

    /// The provider called `name`, or an error naming the configured ones.
    pub fn provider(&self, name: &str) -> Result<&OAuthProviderConfig> {
        self.oauth_provider
            .iter()
            .find(|p| p.name == name)
            .with_context(|| {
                format!(
                    "no [[oauth_provider]] named {name:?} (configured: {:?})",
                    self.oauth_provider
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                )
            })
    }
}

/// Where the VAPID key pair lives: as configured, else beside the secret key file.
pub fn vapid_key_file(vapid: Option<&Path>, key_file: Option<&Path>) -> PathBuf {
    if let Some(v) = vapid {
        return v.to_path_buf();
    }
    let key = key_file.map_or_else(default_key_file, Path::to_path_buf);
    key.with_file_name("vapid.pem")
}

/// The default key file location: outside any data dir, in the user's config dir.
pub fn default_key_file() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("tidings/secret.key");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".config/tidings/secret.key");
    }
    PathBuf::from("/etc/tidings/secret.key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            r#"
listen = "127.0.0.1:8080"
data_dir = "data"
[[user]]
name = "alice"
password = "pw"
[[account]]
user = "alice"
name = "work"
kind = "imap"
host = "127.0.0.1"
port = 993
security = "tls"
username = "alice@example.org"
password = "secret"
ca_file = "/path/to/ca.pem"
[account.smtp]
host = "127.0.0.1"
port = 587
security = "starttls"
"#,
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.account[0].security, Security::Tls);
        assert_eq!(c.account[0].smtp.as_ref().unwrap().port, 587);
        assert!(!format!("{:?}", c).contains("secret"));
    }

    #[test]
    fn provider_profile_is_parsed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        let base = "data_dir = \"data\"\n[[user]]\nname = \"alice\"\npassword = \"pw\"\n[[account]]\nuser = \"alice\"\nname = \"mac\"\nkind = \"imap\"\nhost = \"imap.mail.me.com\"\nport = 993\nsecurity = \"tls\"\nusername = \"a\"\npassword = \"p\"\n";
        std::fs::write(&path, base).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c.account[0].provider_choice().unwrap(),
            imap_sync::ProviderChoice::Auto
        );
        std::fs::write(&path, format!("{base}provider = \"yahoo\"\n")).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c.account[0].provider_choice().unwrap(),
            imap_sync::ProviderChoice::Fixed(imap_sync::Provider::Yahoo)
        );
        std::fs::write(&path, format!("{base}provider = \"hotmail\"\n")).unwrap();
        let e = Config::load(&path).unwrap_err();
        assert!(format!("{e:#}").contains("unknown provider"), "{e:#}");
    }

    #[test]
    fn parses_oauth2_accounts_and_providers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        let base = "data_dir = \"data\"\n[[user]]\nname = \"alice\"\npassword = \"pw\"\n";
        let provider = "[[oauth_provider]]\nname = \"google\"\nissuer = \"https://accounts.google.com\"\nclient_id = \"cid\"\nclient_secret = \"csecret\"\n";
        let account = "[[account]]\nuser = \"alice\"\nname = \"gmail\"\nkind = \"imap\"\nhost = \"imap.gmail.com\"\nport = 993\nsecurity = \"tls\"\nusername = \"alice@gmail.com\"\nauth = \"oauth2\"\noauth_provider = \"google\"\n";
        std::fs::write(
            &path,
            format!("{base}{provider}{account}refresh_token_file = \"rt\"\n"),
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.account[0].auth, AuthKind::OAuth2);
        assert_eq!(c.account[0].refresh_token_file, Some(dir.path().join("rt")));
        let p = c.provider("google").unwrap().to_provider();
        assert_eq!(p.scopes, ["https://mail.google.com/"]);
        assert!(!format!("{c:?}").contains("csecret"));
        // No token file, an unknown provider, a provider without endpoints: refused.
        std::fs::write(&path, format!("{base}{provider}{account}")).unwrap();
        assert!(Config::load(&path).is_err());
        std::fs::write(
            &path,
            format!(
                "{base}{provider}{}refresh_token_file = \"rt\"\n",
                account.replace("\"google\"\n", "\"ms\"\n")
            ),
        )
        .unwrap();
        let e = Config::load(&path).unwrap_err();
        assert!(
            format!("{e:#}").contains("no [[oauth_provider]] named \"ms\""),
            "{e:#}"
        );
        std::fs::write(
            &path,
            format!("{base}[[oauth_provider]]\nname = \"x\"\nclient_id = \"c\"\n"),
        )
        .unwrap();
        assert!(Config::load(&path).is_err());
        // A password account without a password is refused too.
        std::fs::write(
            &path,
            format!(
                "{base}{}",
                account.replace("auth = \"oauth2\"\noauth_provider = \"google\"\n", "")
            ),
        )
        .unwrap();
        assert!(Config::load(&path).is_err());
    }

    #[test]
    fn body_policy_and_device_url_are_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "data_dir = \"d\"\n[[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[oauth_provider]]\nname = \"p\"\ntoken_url = \"http://127.0.0.1/t\"\n\
             device_url = \"http://127.0.0.1/d\"\nclient_id = \"c\"\n\
             [[account]]\nuser = \"alice\"\nname = \"g\"\nkind = \"imap\"\nhost = \"h\"\n\
             port = 993\nsecurity = \"tls\"\nusername = \"u\"\npassword = \"p\"\n\
             bodies_days = 30\ndaily_download_mb = 0\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c.account[0].policy(),
            store::AccountPolicy {
                bodies_days: Some(30),
                daily_download_mb: Some(0),
            }
        );
        assert_eq!(
            c.provider("p").unwrap().to_provider().device_url.as_deref(),
            Some("http://127.0.0.1/d")
        );
    }

    #[test]
    fn rejects_unknown_keys_and_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "data_dir = \"d\"\nlisen = \"x\"\n").unwrap();
        assert!(Config::load(&path).is_err());
        std::fs::write(
            &path,
            "data_dir = \"d\"\n[[account]]\nuser = \"bob\"\nname = \"n\"\nkind = \"imap\"\nhost = \"h\"\nport = 1\nsecurity = \"none\"\nusername = \"u\"\npassword = \"p\"\n",
        )
        .unwrap();
        assert!(Config::load(&path).is_err());
    }

    #[test]
    fn http_limits_and_trusted_proxies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "data_dir = \"d\"\ntrusted_proxies = [\"127.0.0.1/32\", \"::1\"]\n\
             http_idle_timeout_ms = 1500\nhttp_max_connections_per_address = 8\n",
        )
        .unwrap();
        let l = Config::load(&path).unwrap().http_limits().unwrap();
        assert_eq!(l.idle_timeout, std::time::Duration::from_millis(1500));
        assert_eq!(l.max_connections_per_address, 8);
        assert_eq!(
            l.header_read_timeout,
            api::HttpLimits::default().header_read_timeout
        );
        for bad in [
            "trusted_proxies = [\"proxy.example\"]",
            "http_idle_timeout_ms = 0",
            "http_max_connections_per_address = 0",
        ] {
            std::fs::write(&path, format!("data_dir = \"d\"\n{bad}\n")).unwrap();
            assert!(Config::load(&path).is_err(), "{bad}");
        }
    }
}
