//! Adding a mail account from the browser: find the server settings of an address
//! (`discover`), try them with the user's credentials before anything is stored (`probe`),
//! then add, edit or remove the signed-in user's accounts.
//!
//! Routes (JSON, the web session cookie or any other authentication the API takes):
//! - `GET /web/accounts`: the caller's accounts and their settings (never a secret).
//! - `POST /web/accounts/discover` `{"email"}`: settings found for the address.
//! - `POST /web/accounts/try` `{"email", "password", "settings"}`: log in, store nothing.
//! - `POST /web/accounts` `{"email", "password", "settings", "name"?}`: try, then store.
//! - `PATCH /web/accounts/{id}` `{"name"?, "password"?, "settings"?}`: try, then save.
//! - `DELETE /web/accounts/{id}`: the account and everything synced from it.
//! - `GET /web/oauth/start`, `GET /web/oauth/callback`: "Sign in with …" (see `oauth`).
//!
//! Every request that changes something must carry the web client's header
//! (`X-Tidings-Client`): a page elsewhere cannot send a custom header without a CORS
//! preflight, which this server never grants. The cookie path also checks the origin
//! (`caller::same_origin`), on top of `SameSite=Strict`.
//!
//! Nothing is stored half: a try that fails stores nothing, and an account is one row
//! written in one statement. The engine starts an added account (and stops a removed one)
//! at its next rescan of the store.

pub mod discover;
pub mod oauth;
pub mod probe;
pub mod providers;

use crate::auth::Principal;
use crate::caller::{authenticate, client_ip};
use crate::state::AppState;
use crate::web::json;
use axum::body::to_bytes;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use mail_types::{AccountAuth, AccountKind, Security};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use store::{NewAccount, ServerSettings};

pub use discover::DiscoveryOptions;
pub use probe::{Failure, FailureKind, Secret};

/// Encrypts and decrypts account secrets with the key the binary holds (the API never
/// sees the key itself).
pub trait SecretBox: Send + Sync {
    fn seal(&self, secret: &str) -> Result<Vec<u8>, String>;
    fn open(&self, sealed: &[u8]) -> Result<String, String>;
}

/// What account setup needs beyond the store: the secret box and where to look.
pub struct Setup {
    pub secrets: Arc<dyn SecretBox>,
    pub discovery: DiscoveryOptions,
    /// A CA trusted for accounts added here, besides the system's: a private mail
    /// server with its own CA. Stored as the account's `ca_file`.
    pub ca_file: Option<PathBuf>,
    /// The configured OAuth2 providers ("Sign in with …"); the engine's own, so that an
    /// account added here refreshes its tokens like any other.
    pub oauth: Option<Arc<engine::OAuth>>,
    /// Mail servers of a provider's accounts, by provider name, when the config says.
    pub oauth_servers: std::collections::HashMap<String, oauth::OAuthServers>,
    pending: oauth::Pending,
    /// Tries running at once, all users together: each holds up to two connections to
    /// some mail server for up to a minute.
    tries: tokio::sync::Semaphore,
}

/// Bound on [`Setup::tries`].
const MAX_TRIES: usize = 8;

impl Setup {
    /// Tries `settings` with `secret`, unless too many tries run already.
    pub(crate) async fn try_settings(
        &self,
        settings: &Settings,
        secret: &Secret,
    ) -> Result<(), Failure> {
        let Ok(_permit) = self.tries.try_acquire() else {
            return Err(Failure {
                server: "imap",
                kind: FailureKind::Refused,
                message: "Too many accounts are being tried right now: try again in a moment."
                    .into(),
            });
        };
        probe::try_settings(settings, secret, self.ca_file.as_ref()).await
    }

    pub fn new(
        secrets: Arc<dyn SecretBox>,
        discovery: DiscoveryOptions,
        ca_file: Option<PathBuf>,
    ) -> Setup {
        Setup {
            secrets,
            discovery,
            ca_file,
            oauth: None,
            oauth_servers: Default::default(),
            pending: Default::default(),
            tries: tokio::sync::Semaphore::new(MAX_TRIES),
        }
    }

    /// With "Sign in with …" for `oauth`'s providers.
    pub fn with_oauth(
        mut self,
        oauth: Arc<engine::OAuth>,
        servers: std::collections::HashMap<String, oauth::OAuthServers>,
    ) -> Setup {
        self.oauth = Some(oauth);
        self.oauth_servers = servers;
        self
    }
}

/// One server of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub host: String,
    pub port: u16,
    #[serde(with = "security_name")]
    pub security: Security,
}

/// What an account connects to and as whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(with = "kind_name")]
    pub kind: AccountKind,
    pub incoming: Server,
    pub smtp: Option<Server>,
    pub username: String,
}

/// Where discovered settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// The built-in table of the big providers.
    Table,
    /// DNS SRV records (RFC 6186).
    Srv,
    /// The provider's autoconfig document (Thunderbird's format).
    Autoconfig,
    /// Usual host names, unverified.
    Guess,
}

/// Discovered settings and what the UI should say about them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Found {
    pub source: Source,
    /// The provider's name when the table knows it.
    pub provider: Option<String>,
    #[serde(flatten)]
    pub settings: Settings,
    /// The `[[oauth_provider]]` whose "Sign in with …" fits this address.
    pub oauth: Option<String>,
    /// The provider refuses the account's own password over IMAP.
    pub app_password: bool,
    /// The settings name servers outside the address's domain (an autoconfig document
    /// can say anything): the user must confirm before they are trusted.
    pub foreign: bool,
}

mod security_name {
    use mail_types::Security;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub fn serialize<S: Serializer>(s: &Security, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Security, D::Error> {
        let s = String::deserialize(d)?;
        Security::from_name(&s).ok_or_else(|| D::Error::custom("security is tls, starttls or none"))
    }
}

mod kind_name {
    use mail_types::AccountKind;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    pub fn serialize<S: Serializer>(k: &AccountKind, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(k.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AccountKind, D::Error> {
        let s = String::deserialize(d)?;
        AccountKind::from_name(&s).ok_or_else(|| D::Error::custom("kind is imap or pop3"))
    }
}

/// Largest request body these routes read.
const MAX_BODY: usize = 16 * 1024;

fn error(status: StatusCode, message: &str) -> Response {
    json(status, serde_json::json!({ "error": message }))
}

fn failed(f: &Failure) -> Response {
    json(
        StatusCode::UNPROCESSABLE_ENTITY,
        serde_json::json!({ "error": f.message, "failure": f }),
    )
}

/// Authenticates, checks the anti-CSRF header on changes, and reads the JSON body.
async fn guard(
    state: &AppState,
    req: Request,
) -> Result<(Principal, Arc<Setup>, bytes_body::Body), Response> {
    let (parts, body) = req.into_parts();
    let Some(setup) = state.setup.clone() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "adding accounts from the browser is not enabled on this server",
        ));
    };
    if parts.method != Method::GET && !parts.headers.contains_key(crate::caller::WEB_CLIENT_HEADER)
    {
        return Err(error(StatusCode::FORBIDDEN, "forbidden"));
    }
    let principal = authenticate(state, &parts.headers, client_ip(&parts.extensions)).await?;
    let bytes = to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| error(StatusCode::PAYLOAD_TOO_LARGE, "request too large"))?;
    if !bytes.is_empty() {
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send JSON (Content-Type: application/json)",
            ));
        }
    }
    Ok((principal, setup, bytes_body::Body(bytes.to_vec())))
}

mod bytes_body {
    pub struct Body(pub Vec<u8>);
    impl Body {
        /// The body as `T`, or why not (for a 400).
        pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
            serde_json::from_slice(&self.0).map_err(|e| format!("bad request: {e}"))
        }
    }
}

/// The domain of an address, lower case; `None` when it is not an address.
pub fn email_domain(email: &str) -> Option<String> {
    let (local, domain) = email.trim().rsplit_once('@')?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let valid = !local.is_empty()
        && !domain.is_empty()
        && domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    valid.then_some(domain)
}

#[derive(Deserialize)]
struct DiscoverRequest {
    email: String,
}

/// `POST /web/accounts/discover`.
pub(crate) async fn discover_route(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (_, setup, body) = match guard(&state, req).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let r: DiscoverRequest = match body.parse() {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    match discover::discover(&setup.discovery, r.email.trim()).await {
        Some(found) => json(StatusCode::OK, serde_json::json!(found)),
        None => error(StatusCode::BAD_REQUEST, "that is not an email address"),
    }
}

#[derive(Deserialize)]
struct TryRequest {
    password: String,
    settings: Settings,
}

/// Why `settings` cannot be tried, for a 400.
fn valid(settings: &Settings) -> Result<(), &'static str> {
    let host_ok = |s: &Server| {
        !s.host.is_empty()
            && s.host.len() <= 253
            && s.host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
            && s.port != 0
    };
    if !host_ok(&settings.incoming) || settings.smtp.as_ref().is_some_and(|s| !host_ok(s)) {
        return Err("a server name or port is not valid");
    }
    if settings.username.trim().is_empty() || settings.username.len() > 320 {
        return Err("the user name is missing");
    }
    Ok(())
}

/// `POST /web/accounts/try`: logs in and stores nothing.
pub(crate) async fn try_route(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (principal, setup, body) = match guard(&state, req).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let r: TryRequest = match body.parse() {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    if let Err(m) = valid(&r.settings) {
        return error(StatusCode::BAD_REQUEST, m);
    }
    let secret = Secret::Password(r.password);
    match setup.try_settings(&r.settings, &secret).await {
        Ok(()) => json(StatusCode::OK, serde_json::json!({ "ok": true })),
        Err(f) => {
            tracing::info!(user = %principal.name, host = %r.settings.incoming.host,
                kind = ?f.kind, "account try failed");
            failed(&f)
        }
    }
}

#[derive(Deserialize)]
struct AddRequest {
    email: String,
    #[serde(default)]
    name: Option<String>,
    password: String,
    settings: Settings,
}

/// The row for an account with a password.
fn new_account(
    setup: &Setup,
    principal: &Principal,
    name: &str,
    settings: &Settings,
    secret_enc: Vec<u8>,
    auth: AccountAuth,
) -> NewAccount {
    let ca_file = setup.ca_file.as_ref().map(|p| p.display().to_string());
    let server = |s: &Server| ServerSettings {
        host: s.host.clone(),
        port: s.port,
        security: s.security,
        username: settings.username.clone(),
        password_enc: secret_enc.clone(),
        ca_file: ca_file.clone(),
    };
    NewAccount {
        user: principal.user,
        name: name.to_string(),
        kind: settings.kind,
        server: server(&settings.incoming),
        smtp: settings.smtp.as_ref().map(server),
        pop3_delete_after_days: None,
        auth,
    }
}

/// Stores a tried account for `principal`; the answer is the JSON the routes send.
pub(crate) async fn store_account(
    state: &AppState,
    setup: &Setup,
    principal: &Principal,
    name: &str,
    settings: &Settings,
    secret: &str,
    auth: AccountAuth,
) -> Result<mail_types::AccountId, Response> {
    let existing = state
        .store
        .user_accounts(principal.user)
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable"))?;
    if existing.iter().any(|a| a.name == name) {
        return Err(error(
            StatusCode::CONFLICT,
            &format!("you already have an account named {name}"),
        ));
    }
    let sealed = setup.secrets.seal(secret).map_err(|e| {
        tracing::error!(user = %principal.name, error = %e, "cannot encrypt an account secret");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encrypt the password",
        )
    })?;
    let new = new_account(setup, principal, name, settings, sealed, auth);
    let id = state.store.create_account(&new).await.map_err(|e| {
        tracing::error!(user = %principal.name, error = %e, "cannot store an account");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the account could not be stored",
        )
    })?;
    tracing::info!(user = %principal.name, account = %id, host = %settings.incoming.host,
        "account added from the web");
    Ok(id)
}

/// `POST /web/accounts`: tries the settings, then stores the account.
pub(crate) async fn add_route(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (principal, setup, body) = match guard(&state, req).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let r: AddRequest = match body.parse() {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    if let Err(m) = valid(&r.settings) {
        return error(StatusCode::BAD_REQUEST, m);
    }
    if email_domain(&r.email).is_none() {
        return error(StatusCode::BAD_REQUEST, "that is not an email address");
    }
    let name = r
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(r.email.trim())
        .to_string();
    if name.chars().count() > 200 {
        return error(StatusCode::BAD_REQUEST, "the name is too long");
    }
    let secret = Secret::Password(r.password.clone());
    if let Err(f) = setup.try_settings(&r.settings, &secret).await {
        tracing::info!(user = %principal.name, host = %r.settings.incoming.host,
            kind = ?f.kind, "account add refused: try failed");
        return failed(&f);
    }
    match store_account(
        &state,
        &setup,
        &principal,
        &name,
        &r.settings,
        &r.password,
        AccountAuth::Password,
    )
    .await
    {
        Ok(id) => json(
            StatusCode::CREATED,
            serde_json::json!({ "id": jmap_server::session::account_id(id).map(|i| i.to_string()), "name": name }),
        ),
        Err(resp) => resp,
    }
}

/// The caller's account named by a JMAP account id in the path.
async fn own_account(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<store::AccountRecord, Response> {
    let missing = || error(StatusCode::NOT_FOUND, "no such account");
    let id = jmap_server::jmap::ids::parse('a', id)
        .map(mail_types::AccountId)
        .ok_or_else(missing)?;
    let list = state
        .store
        .user_accounts(principal.user)
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable"))?;
    list.into_iter().find(|a| a.id == id).ok_or_else(missing)
}

fn settings_of(a: &store::AccountRecord) -> Settings {
    let server = |s: &ServerSettings| Server {
        host: s.host.clone(),
        port: s.port,
        security: s.security,
    };
    Settings {
        kind: a.kind,
        incoming: server(&a.server),
        smtp: a.smtp.as_ref().map(server),
        username: a.server.username.clone(),
    }
}

/// `GET /web/accounts`.
pub(crate) async fn list_route(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (principal, setup, _) = match guard(&state, req).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let Ok(list) = state.store.user_accounts(principal.user).await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable");
    };
    let providers = setup
        .oauth
        .as_ref()
        .map(|o| o.provider_names())
        .unwrap_or_default();
    let accounts: Vec<serde_json::Value> = list
        .iter()
        .filter_map(|a| {
            let id = jmap_server::session::account_id(a.id)?;
            Some(serde_json::json!({
                "id": id.to_string(),
                "name": a.name,
                "auth": a.auth.as_str(),
                "settings": settings_of(a),
                "status": a.status.name(),
                "error": a.status.error(),
            }))
        })
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({ "accounts": accounts, "oauthProviders": providers }),
    )
}

#[derive(Deserialize)]
struct EditRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    settings: Option<Settings>,
}

/// `PATCH /web/accounts/{id}`: a new name alone is saved as is; new servers or a new
/// password are tried first.
pub(crate) async fn edit_route(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (principal, setup, body) = match guard(&state, req).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let r: EditRequest = match body.parse() {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let a = match own_account(&state, &principal, &id).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let settings = r.settings.clone().unwrap_or_else(|| settings_of(&a));
    if let Err(m) = valid(&settings) {
        return error(StatusCode::BAD_REQUEST, m);
    }
    let name = r
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(&a.name)
        .to_string();
    if name != a.name {
        match state.store.user_accounts(principal.user).await {
            Ok(list) if list.iter().any(|o| o.id != a.id && o.name == name) => {
                return error(
                    StatusCode::CONFLICT,
                    &format!("you already have an account named {name}"),
                );
            }
            Ok(_) => {}
            Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable"),
        }
    }
    let changes_login =
        r.password.is_some() || r.settings.as_ref().is_some_and(|s| *s != settings_of(&a));
    if changes_login && a.auth != AccountAuth::Password {
        return error(
            StatusCode::BAD_REQUEST,
            "this account signs in with OAuth2: remove it and sign in again to change it",
        );
    }
    let password = match &r.password {
        Some(p) => p.clone(),
        None => match setup.secrets.open(&a.server.password_enc) {
            Ok(p) => p,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the stored password cannot be read: enter the password again",
                );
            }
        },
    };
    if changes_login
        && let Err(f) = setup
            .try_settings(&settings, &Secret::Password(password.clone()))
            .await
    {
        return failed(&f);
    }
    let sealed = match setup.secrets.seal(&password) {
        Ok(s) => s,
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encrypt the password",
            );
        }
    };
    let mut new = new_account(&setup, &principal, &name, &settings, sealed, a.auth.clone());
    // An edit keeps the CA the account was stored with.
    new.server.ca_file = a.server.ca_file.clone();
    if let Some(s) = new.smtp.as_mut() {
        s.ca_file = a.server.ca_file.clone();
    }
    new.pop3_delete_after_days = a.pop3_delete_after_days;
    if let Err(e) = state.store.update_account(a.id, &new).await {
        tracing::error!(user = %principal.name, account = %a.id, error = %e, "cannot update an account");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the account could not be saved",
        );
    }
    tracing::info!(user = %principal.name, account = %a.id, "account edited from the web");
    json(
        StatusCode::OK,
        serde_json::json!({ "id": id, "name": name }),
    )
}

/// `DELETE /web/accounts/{id}`.
pub(crate) async fn remove_route(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (principal, _, _) = match guard(&state, req).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let a = match own_account(&state, &principal, &id).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    match state.store.delete_account(a.id).await {
        Ok(_) => {
            tracing::info!(user = %principal.name, account = %a.id, "account removed from the web");
            json(StatusCode::OK, serde_json::json!({ "removed": id }))
        }
        Err(e) => {
            tracing::error!(user = %principal.name, account = %a.id, error = %e, "cannot remove an account");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the account could not be removed",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_their_domains() {
        assert_eq!(
            email_domain("Alice@Example.ORG").as_deref(),
            Some("example.org")
        );
        assert_eq!(
            email_domain("a@b@example.org").as_deref(),
            Some("example.org")
        );
        assert_eq!(email_domain("alice"), None);
        assert_eq!(email_domain("alice@localhost"), None);
        assert_eq!(email_domain("alice@exa mple.org"), None);
        assert_eq!(email_domain("@example.org"), None);
    }
}
