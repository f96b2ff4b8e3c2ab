//! OAuth 2.0 access tokens for accounts with `AccountAuth::OAuth2`: the refresh token is
//! the account's stored secret (encrypted like a password); access tokens are obtained
//! from the provider's token endpoint (RFC 6749 6, `grant_type=refresh_token`), kept in
//! memory with their expiry, and renewed before they expire or when a server refuses one.
//!
//! Tokens never reach a log line, an error text or a `Debug` output.
//!
//! A browser sign-in (authorization code with PKCE, RFC 6749 4.1 and RFC 7636) finds the
//! provider's endpoints here ([`OAuth::endpoints`]) and trades the code for the first
//! tokens ([`OAuth::exchange_code`]).
//!
//! Signing in from a terminal (the device authorization grant, RFC 8628) is in `device`.

mod device;
pub use device::{DeviceAuthorization, DeviceCode, DeviceFlowError, RefreshToken};

use crate::PasswordSource;
use mail_types::{AccountAuth, AccountId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{AccountRecord, Directory};
use tokio::time::Instant;

/// What the account's status says when the provider refused the refresh token
/// (`invalid_grant`): only the user can fix it, by signing in again.
pub const SIGN_IN_AGAIN: &str = "auth failed: sign in again";
/// An access token is renewed this long before it expires (or at half its life, when that
/// is shorter), so a connection never authenticates with a token about to lapse.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// When the token endpoint gives no `expires_in` (RFC 6749 5.1 only recommends it), the
/// token is used for this long, or until a server refuses it.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Bound on one request to the provider.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token or discovery answer read; real ones are a few KB.
const MAX_ANSWER: usize = 256 * 1024;

/// Turns a clear-text secret into what the store keeps (the inverse of `PasswordSource`),
/// for refresh tokens the provider rotates.
pub type SecretSeal = Arc<dyn Fn(&str) -> anyhow::Result<Vec<u8>> + Send + Sync>;

/// A configured authorization server and Tidings' client registration with it.
#[derive(Clone)]
pub struct OAuthProvider {
    /// What accounts name in `oauth_provider`.
    pub name: String,
    /// OpenID Connect issuer: the token endpoint is found by discovery
    /// (`{issuer}/.well-known/openid-configuration`) unless `token_url` is given.
    pub issuer: Option<String>,
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
    /// The device authorization endpoint (RFC 8628 3.1), when discovery does not name it.
    pub device_url: Option<String>,
    pub client_id: String,
    /// None for a public client (PKCE only).
    pub client_secret: Option<String>,
    /// Asked for at sign-in.
    pub scopes: Vec<String>,
}

impl fmt::Debug for OAuthProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthProvider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("auth_url", &self.auth_url)
            .field("token_url", &self.token_url)
            .field("device_url", &self.device_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The scopes an account needs for IMAP, POP3 and SMTP at a known provider, by issuer;
/// OpenID's generic ones (with a refresh token) elsewhere.
pub fn default_scopes(issuer: Option<&str>) -> Vec<String> {
    let issuer = issuer.unwrap_or("").trim_end_matches('/');
    let list: &[&str] = if issuer == "https://accounts.google.com" {
        &["https://mail.google.com/"]
    } else if issuer.starts_with("https://login.microsoftonline.com")
        || issuer.starts_with("https://login.live.com")
    {
        &[
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/POP.AccessAsUser.All",
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
        ]
    } else {
        &["openid", "email", "offline_access"]
    };
    list.iter().map(|s| s.to_string()).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The provider refused the refresh token (`invalid_grant`, RFC 6749 5.2): revoked,
    /// expired, or the password changed. Only signing in again helps.
    #[error("{SIGN_IN_AGAIN}")]
    SignInAgain,
    /// Configuration that cannot work: an unknown provider, a client the provider refuses,
    /// a stored secret that cannot be decrypted.
    #[error("OAuth2: {0}")]
    Config(String),
    /// The provider could not be reached or failed (network, 5xx, garbage): try later.
    #[error("OAuth2 token endpoint unavailable: {0}")]
    Unavailable(String),
}

impl TokenError {
    /// Whether retrying later (with backoff) may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, TokenError::Unavailable(_))
    }
}

/// An access token and when to stop using it. `Debug` hides the token.
#[derive(Clone)]
pub struct AccessToken {
    pub value: String,
    /// When it should be renewed: its expiry minus the margin.
    pub renew_at: Instant,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"<redacted>")
            .field("renew_at", &self.renew_at)
            .finish()
    }
}

/// The providers and every OAuth2 account's current access token. One per engine.
pub struct OAuth {
    providers: HashMap<String, OAuthProvider>,
    seal: Option<SecretSeal>,
    /// `Err`: the HTTP client could not be built (no TLS roots, say); said at first use.
    http: Result<reqwest::Client, String>,
    /// Token endpoints found by discovery, by provider name.
    token_urls: Mutex<HashMap<String, String>>,
    /// Authorization and userinfo endpoints found by discovery, by provider name.
    sign_in_urls: Mutex<HashMap<String, Endpoints>>,
    /// Per account: its token, behind an async lock so that the sync, the watcher, the
    /// outbox and the submission worker never refresh at once (a provider that rotates
    /// refresh tokens treats the reuse of a spent one as theft and revokes the grant).
    accounts: Mutex<HashMap<AccountId, Arc<tokio::sync::Mutex<Option<AccessToken>>>>>,
}

impl fmt::Debug for OAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth")
            .field("providers", &self.providers.values().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for OAuth {
    fn default() -> Self {
        OAuth::new(Vec::new(), None)
    }
}

impl OAuth {
    /// `seal` stores a rotated refresh token; without it a rotated token is kept in memory
    /// only (and the account must sign in again after a restart).
    pub fn new(providers: Vec<OAuthProvider>, seal: Option<SecretSeal>) -> OAuth {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            // A token endpoint that redirects is misconfigured; never resend secrets.
            .redirect(reqwest::redirect::Policy::none())
            // One refresh an hour per account: a kept connection saves nothing, and one
            // the server closes as we reuse it fails the refresh ("error sending request").
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("no HTTP client: {e}"));
        OAuth {
            providers: providers.into_iter().map(|p| (p.name.clone(), p)).collect(),
            seal,
            http,
            token_urls: Mutex::new(HashMap::new()),
            sign_in_urls: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
        }
    }

    fn http(&self) -> Result<&reqwest::Client, TokenError> {
        self.http
            .as_ref()
            .map_err(|e| TokenError::Config(e.clone()))
    }

    pub fn provider(&self, name: &str) -> Option<&OAuthProvider> {
        self.providers.get(name)
    }

    /// A usable access token of `account`. `rejected`: a token a server just refused;
    /// unless another task has renewed it meanwhile, a new one is fetched even if the old
    /// one has not expired (RFC 6750 3.1 `invalid_token` covers revoked tokens too).
    pub async fn access_token(
        &self,
        store: &dyn Directory,
        passwords: &PasswordSource,
        account: &AccountRecord,
        rejected: Option<&str>,
    ) -> Result<AccessToken, TokenError> {
        let AccountAuth::OAuth2 { provider } = &account.auth else {
            return Err(TokenError::Config("not an OAuth2 account".into()));
        };
        let provider = self.providers.get(provider).ok_or_else(|| {
            TokenError::Config(format!("no oauth_provider {provider:?} configured"))
        })?;
        let slot = {
            let mut map = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(account.id).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref()
            && t.renew_at > Instant::now()
            && rejected.is_none_or(|r| r != t.value)
        {
            return Ok(t.clone());
        }
        // The stored refresh token may have been rotated since `account` was read.
        let current = store
            .account(account.id)
            .await
            .map_err(|e| TokenError::Unavailable(format!("reading the account: {e}")))?
            .ok_or_else(|| TokenError::Config("the account is gone".into()))?;
        let refresh_token = passwords(&current)
            .map_err(|e| TokenError::Config(format!("stored refresh token unusable: {e}")))?;
        let token_url = self.token_url(provider).await?;
        let answer = self.refresh(provider, &token_url, &refresh_token).await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                *cached = None;
                tracing::warn!(account = %account.id, provider = %provider.name, error = %e,
                    "refreshing the access token failed");
                return Err(e);
            }
        };
        if let Some(new_rt) = answer.refresh_token.as_deref()
            && new_rt != refresh_token
        {
            // RFC 6749 6: a new refresh token replaces the old, which the provider may
            // already have invalidated.
            match &self.seal {
                Some(seal) => {
                    let stored = seal(new_rt).map_err(|e| {
                        TokenError::Config(format!("cannot encrypt the new refresh token: {e}"))
                    })?;
                    store
                        .set_account_secret(account.id, &stored)
                        .await
                        .map_err(|e| {
                            TokenError::Unavailable(format!("storing the new refresh token: {e}"))
                        })?;
                    tracing::info!(account = %account.id, "provider rotated the refresh token; stored");
                }
                None => tracing::warn!(account = %account.id,
                    "provider rotated the refresh token and nothing can store it"),
            }
        }
        let life = answer.expires_in.unwrap_or(DEFAULT_LIFETIME);
        let margin = REFRESH_MARGIN.min(life / 2);
        let token = AccessToken {
            value: answer.access_token,
            renew_at: Instant::now() + life - margin,
        };
        tracing::debug!(account = %account.id, provider = %provider.name,
            lifetime_s = life.as_secs(), "access token refreshed");
        *cached = Some(token.clone());
        Ok(token)
    }

    /// The provider's token endpoint: configured, or by OpenID Connect Discovery 1.0
    /// section 4 (remembered once found).
    async fn token_url(&self, p: &OAuthProvider) -> Result<String, TokenError> {
        if let Some(u) = &p.token_url {
            return Ok(u.clone());
        }
        if let Some(u) = self
            .token_urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p.name)
        {
            return Ok(u.clone());
        }
        let v = self.discovery(p).await?;
        let token_url = v["token_endpoint"]
            .as_str()
            .ok_or_else(|| TokenError::Config("discovery names no token_endpoint".into()))?
            .to_string();
        self.token_urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.name.clone(), token_url.clone());
        Ok(token_url)
    }

    /// The names of the configured providers, sorted.
    pub fn provider_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.providers.keys().cloned().collect();
        v.sort();
        v
    }

    /// The endpoints a browser sign-in uses: configured (`auth_url`, `token_url`), else
    /// from OpenID Connect Discovery 1.0 section 3 (remembered once found).
    pub async fn endpoints(&self, name: &str) -> Result<Endpoints, TokenError> {
        let p = self
            .providers
            .get(name)
            .ok_or_else(|| TokenError::Config(format!("no oauth_provider {name:?} configured")))?;
        if let (Some(a), Some(t)) = (&p.auth_url, &p.token_url) {
            return Ok(Endpoints {
                authorization: a.clone(),
                token: t.clone(),
                userinfo: None,
            });
        }
        if let Some(e) = self
            .sign_in_urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(e.clone());
        }
        let v = self.discovery(p).await?;
        let url = |key: &str| v[key].as_str().map(str::to_string);
        let found = Endpoints {
            authorization: p
                .auth_url
                .clone()
                .or_else(|| url("authorization_endpoint"))
                .ok_or_else(|| {
                    TokenError::Config("discovery names no authorization_endpoint".into())
                })?,
            token: p
                .token_url
                .clone()
                .or_else(|| url("token_endpoint"))
                .ok_or_else(|| TokenError::Config("discovery names no token_endpoint".into()))?,
            userinfo: url("userinfo_endpoint"),
        };
        self.sign_in_urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), found.clone());
        Ok(found)
    }

    /// The discovery document of `p`'s issuer, checked to name that issuer.
    async fn discovery(&self, p: &OAuthProvider) -> Result<serde_json::Value, TokenError> {
        let issuer = p.issuer.as_deref().ok_or_else(|| {
            TokenError::Config(format!(
                "provider {} has neither issuer nor auth_url and token_url",
                p.name
            ))
        })?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let resp = self
            .http()?
            .get(&url)
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(format!("discovery: {}", describe(e))))?;
        let status = resp.status();
        let body = read_limited(resp).await?;
        if !status.is_success() {
            return Err(TokenError::Unavailable(format!("discovery: HTTP {status}")));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| TokenError::Unavailable("discovery: not JSON".into()))?;
        // OpenID Connect Discovery 4.3: the document must name the issuer we asked.
        if v["issuer"].as_str().map(|s| s.trim_end_matches('/'))
            != Some(issuer.trim_end_matches('/'))
        {
            return Err(TokenError::Config(format!(
                "discovery at {issuer} names another issuer"
            )));
        }
        Ok(v)
    }

    /// RFC 6749 4.1.3 with RFC 7636 4.5: trades an authorization code (and the PKCE
    /// verifier) for the first tokens. `redirect_uri` must be the one the authorization
    /// request carried.
    pub async fn exchange_code(
        &self,
        name: &str,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<CodeGrant, TokenError> {
        let p = self
            .providers
            .get(name)
            .ok_or_else(|| TokenError::Config(format!("no oauth_provider {name:?} configured")))?;
        let endpoints = self.endpoints(name).await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
            ("client_id", p.client_id.as_str()),
        ];
        if let Some(secret) = &p.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let v = self
            .token_request(&endpoints.token, &form)
            .await
            .map_err(|e| match e {
                // RFC 6749 5.2: a code refused is spent, expired or not ours: sign in again.
                TokenError::SignInAgain => TokenError::Config(
                    "the provider refused the sign-in code; sign in again".into(),
                ),
                other => other,
            })?;
        let answer = token_answer(&v)?;
        let id_token_email = v["id_token"].as_str().and_then(id_token_email);
        let mut email = id_token_email;
        if email.is_none()
            && let Some(url) = &endpoints.userinfo
        {
            email = self.userinfo_email(url, &answer.access_token).await;
        }
        Ok(CodeGrant {
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
            email,
        })
    }

    /// OpenID Connect Core 5.3: the `email` claim from the userinfo endpoint.
    async fn userinfo_email(&self, url: &str, access_token: &str) -> Option<String> {
        let resp = self
            .http()
            .ok()?
            .get(url)
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = read_limited(resp).await.ok()?;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        v["email"]
            .as_str()
            .filter(|e| plausible_email(e))
            .map(str::to_string)
    }

    /// A POST to the token endpoint; the JSON answer when it is a success (RFC 6749 5.1).
    async fn token_request(
        &self,
        token_url: &str,
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, TokenError> {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let resp = self
            .http()?
            .post(token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(describe(e)))?;
        let status = resp.status();
        let bytes = read_limited(resp).await?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(TokenError::Unavailable(format!("HTTP {status}")));
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
            TokenError::Unavailable(format!("HTTP {status} with an answer that is not JSON"))
        })?;
        if !status.is_success() {
            // RFC 6749 5.2.
            let code = v["error"].as_str().unwrap_or("");
            return Err(match code {
                "invalid_grant" => TokenError::SignInAgain,
                "" => TokenError::Unavailable(format!("HTTP {status}")),
                other => TokenError::Config(format!("the provider refused: {}", printable(other))),
            });
        }
        Ok(v)
    }

    /// RFC 6749 6: the refresh request, client credentials in the body (2.3.1; the form
    /// Google and Microsoft document).
    async fn refresh(
        &self,
        p: &OAuthProvider,
        token_url: &str,
        refresh_token: &str,
    ) -> Result<TokenAnswer, TokenError> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", p.client_id.as_str()),
        ];
        if let Some(secret) = &p.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let v = self
            .token_request(token_url, &form)
            .await
            .map_err(|e| match e {
                TokenError::Config(text) => TokenError::Config(
                    text.replace("the provider refused:", "the provider refused the refresh:"),
                ),
                other => other,
            })?;
        token_answer(&v)
    }
}

struct TokenAnswer {
    access_token: String,
    expires_in: Option<Duration>,
    refresh_token: Option<String>,
}

/// Where a browser sign-in goes.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub userinfo: Option<String>,
}

/// What a sign-in's code was traded for. `Debug` hides the tokens.
pub struct CodeGrant {
    pub access_token: String,
    /// Absent when the provider issued none (no `offline_access` consent): the account
    /// could not be kept signed in.
    pub refresh_token: Option<String>,
    /// The signed-in address, from the ID token or the userinfo endpoint.
    pub email: Option<String>,
}

impl fmt::Debug for CodeGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeGrant")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// The access token, lifetime and refresh token of a token endpoint's success answer.
fn token_answer(v: &serde_json::Value) -> Result<TokenAnswer, TokenError> {
    let access_token = v["access_token"]
        .as_str()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| (0x21..0x7f).contains(&b)))
        .ok_or_else(|| TokenError::Unavailable("answer without a usable access_token".into()))?
        .to_string();
    let expires_in = match &v["expires_in"] {
        serde_json::Value::Number(n) => n.as_u64(),
        // Some providers send it as a string.
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .map(|s| Duration::from_secs(s.clamp(1, 366 * 24 * 3600)));
    let refresh_token = v["refresh_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok(TokenAnswer {
        access_token,
        expires_in,
        refresh_token,
    })
}

fn plausible_email(e: &str) -> bool {
    e.len() <= 320 && e.contains('@') && !e.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The `email` claim of an ID token (a JWS, RFC 7515 7.1 compact form). Its signature is
/// not checked: OpenID Connect Core 3.1.3.7 lets a client that got the token straight
/// from the token endpoint over TLS rely on that instead.
fn id_token_email(jwt: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    if payload.len() > MAX_ANSWER {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    if v["email_verified"] == serde_json::Value::Bool(false) {
        return None;
    }
    v["email"]
        .as_str()
        .filter(|e| plausible_email(e))
        .map(str::to_string)
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, TokenError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| TokenError::Unavailable(describe(e)))?
    {
        if out.len() + chunk.len() > MAX_ANSWER {
            return Err(TokenError::Unavailable("an oversized answer".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A request error with its causes ("error sending request: ... Connection refused"),
/// without the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    for _ in 0..5 {
        let Some(s) = source else { break };
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// An error code from the provider, fit for a status line.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect()
}

/// `application/x-www-form-urlencoded` (the WHATWG URL standard's byte serializer).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"*-._".contains(&b) {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_issuers_get_their_mail_scopes() {
        assert_eq!(
            default_scopes(Some("https://accounts.google.com")),
            ["https://mail.google.com/"]
        );
        let ms = default_scopes(Some("https://login.microsoftonline.com/common/v2.0"));
        assert!(ms.contains(&"https://outlook.office.com/IMAP.AccessAsUser.All".to_string()));
        assert!(ms.contains(&"offline_access".to_string()));
        assert_eq!(
            default_scopes(Some("https://id.example.org")),
            ["openid", "email", "offline_access"]
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let p = OAuthProvider {
            name: "g".into(),
            issuer: None,
            auth_url: None,
            token_url: Some("http://127.0.0.1/token".into()),
            device_url: None,
            client_id: "id".into(),
            client_secret: Some("hunter2".into()),
            scopes: vec![],
        };
        assert!(!format!("{p:?}").contains("hunter2"));
        let t = AccessToken {
            value: "ya29.secret".into(),
            renew_at: Instant::now(),
        };
        assert!(!format!("{t:?}").contains("ya29"));
    }

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a b+c/=&é"), "a+b%2Bc%2F%3D%26%C3%A9");
    }
}
