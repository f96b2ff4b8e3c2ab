//! "Sign in with …": an OAuth2 account added through the browser with the authorization
//! code flow and PKCE (RFC 6749 4.1, RFC 7636 with S256).
//!
//! - `GET /web/oauth/start?provider=NAME&login_hint=EMAIL` (signed in): a fresh `state`
//!   and PKCE verifier are kept here for ten minutes, bound to this browser by a
//!   `SameSite=Lax` cookie, and the browser is sent to the provider.
//! - `GET /web/oauth/callback?code&state` (the provider sends the browser back; the
//!   session cookie is `SameSite=Strict` and does not come with it, so the `state` names
//!   the user): the state is checked and spent, the code traded for tokens, the address
//!   read from the ID token (or userinfo, or the login hint), IMAP tried with the access
//!   token, and the account stored with its refresh token encrypted like a password.
//!   The browser is then sent back into the app (`/#/accounts?added=…` or `?error=…`).
//!
//! Any failure (the provider's `error=access_denied`, a state that is unknown, spent,
//! expired or started in another browser, a token endpoint that is down, a refused
//! login) stores nothing and touches no other account.

use super::{Server, Settings, Setup, discover, probe, providers};
use crate::auth::Principal;
use crate::caller::{authenticate, client_ip};
use crate::state::AppState;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mail_types::{AccountAuth, AccountKind, UserId};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a started sign-in may take.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(600);
/// Sign-ins in flight, all users together; the oldest goes when more start.
const MAX_PENDING: usize = 1024;
/// The cookie binding a sign-in to the browser that started it (RFC 6749 10.12).
const BINDING_COOKIE: &str = "tidings_oauth";

/// Where an OAuth2 provider's accounts connect, when the config says.
#[derive(Debug, Clone)]
pub struct OAuthServers {
    pub incoming: Server,
    pub kind: AccountKind,
    pub smtp: Option<Server>,
}

/// Sign-ins started and not yet back.
#[derive(Default)]
pub struct Pending(Mutex<HashMap<String, Started>>);

struct Started {
    user: UserId,
    user_name: String,
    provider: String,
    verifier: String,
    login_hint: Option<String>,
    binding: String,
    at: Instant,
}

impl Pending {
    fn insert(&self, state: String, s: Started) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, v| v.at.elapsed() < SIGN_IN_TTL);
        if map.len() >= MAX_PENDING
            && let Some(oldest) = map.iter().min_by_key(|(_, v)| v.at).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(state, s);
    }

    /// The sign-in of `state`, spent: a state works once.
    fn take(&self, state: &str) -> Option<Started> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(state).filter(|s| s.at.elapsed() < SIGN_IN_TTL)
    }
}

fn random_token() -> String {
    use base64::Engine;
    let mut raw = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// RFC 7636 4.2: `BASE64URL(SHA256(verifier))`.
pub fn s256(verifier: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 3986 unreserved characters stay, everything else is percent-encoded.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The redirect URI this server registers with providers.
pub fn redirect_uri(state: &AppState) -> String {
    format!("{}/web/oauth/callback", state.base_url)
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut r = (status, text.to_string()).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn binding_cookie(state: &AppState, value: &str, max_age: u64) -> Option<HeaderValue> {
    let secure = if state.base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    // Lax, not Strict: it must come back with the provider's top-level redirect.
    HeaderValue::from_str(&format!(
        "{BINDING_COOKIE}={value}; Path=/web/oauth; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

fn binding_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == BINDING_COOKIE)
        .map(|(_, v)| v.to_string())
}

#[derive(Deserialize)]
pub(crate) struct StartQuery {
    provider: String,
    #[serde(default)]
    login_hint: Option<String>,
}

/// `GET /web/oauth/start`.
pub(crate) async fn start_route(
    State(state): State<Arc<AppState>>,
    Query(q): Query<StartQuery>,
    req: Request,
) -> Response {
    let Some(setup) = state.setup.clone() else {
        return plain(StatusCode::NOT_FOUND, "not enabled");
    };
    let principal = match authenticate(&state, req.headers(), client_ip(req.extensions())).await {
        Ok(p) => p,
        Err(_) => return see_other("/"),
    };
    let Some(oauth) = setup.oauth.as_ref() else {
        return back_with_error("No OAuth2 provider is configured on this server.");
    };
    let Some(p) = oauth.provider(&q.provider) else {
        return back_with_error(&format!(
            "No provider named {:?} is configured.",
            q.provider
        ));
    };
    let endpoints = match oauth.endpoints(&q.provider).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(user = %principal.name, provider = %q.provider, error = %e,
                "OAuth2 sign-in cannot start");
            return back_with_error(&format!(
                "The sign-in with {} cannot start: {e}",
                q.provider
            ));
        }
    };
    let login_hint = q.login_hint.filter(|h| super::email_domain(h).is_some());
    let st = random_token();
    let verifier = random_token();
    let binding = random_token();
    let mut url = endpoints.authorization.clone();
    url.push(if url.contains('?') { '&' } else { '?' });
    let mut params = vec![
        ("response_type", "code".to_string()),
        ("client_id", p.client_id.clone()),
        ("redirect_uri", redirect_uri(&state)),
        ("scope", p.scopes.join(" ")),
        ("state", st.clone()),
        ("code_challenge", s256(&verifier)),
        ("code_challenge_method", "S256".to_string()),
        // OpenID Connect Core 3.1.2.1: `consent` makes the provider issue a refresh
        // token again when the user signs in a second time.
        ("prompt", "consent".to_string()),
    ];
    if p.issuer
        .as_deref()
        .is_some_and(|i| i.contains("accounts.google.com"))
    {
        // Google issues a refresh token only to `access_type=offline`.
        params.push(("access_type", "offline".to_string()));
    }
    if let Some(h) = &login_hint {
        params.push(("login_hint", h.clone()));
    }
    url.push_str(
        &params
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect::<Vec<_>>()
            .join("&"),
    );
    setup.pending.insert(
        st,
        Started {
            user: principal.user,
            user_name: principal.name.clone(),
            provider: q.provider.clone(),
            verifier,
            login_hint,
            binding: binding.clone(),
            at: Instant::now(),
        },
    );
    tracing::info!(user = %principal.name, provider = %q.provider, "OAuth2 sign-in started");
    let mut r = StatusCode::FOUND.into_response();
    match HeaderValue::from_str(&url) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => return back_with_error("The provider's authorization URL is not valid."),
    }
    if let Some(c) = binding_cookie(&state, &binding, SIGN_IN_TTL.as_secs()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Back into the app's accounts screen with a message.
fn back_with_error(message: &str) -> Response {
    see_other(&format!("/#/accounts?error={}", url_encode(message)))
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// What of a provider's words may be shown.
fn printable(s: &str) -> String {
    s.chars().take(200).filter(|c| !c.is_control()).collect()
}

/// `GET /web/oauth/callback`.
pub(crate) async fn callback_route(
    State(state): State<Arc<AppState>>,
    Query(q): Query<CallbackQuery>,
    req: Request,
) -> Response {
    let Some(setup) = state.setup.clone() else {
        return plain(StatusCode::NOT_FOUND, "not enabled");
    };
    let mut r = callback(&state, &setup, q, binding_of(req.headers())).await;
    // The binding is spent either way.
    if let Some(c) = binding_cookie(&state, "", 0) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

async fn callback(
    state: &AppState,
    setup: &Setup,
    q: CallbackQuery,
    binding: Option<String>,
) -> Response {
    let Some(st) = q.state.as_deref() else {
        return back_with_error("The sign-in came back without its state: start it again.");
    };
    let Some(started) = setup.pending.take(st) else {
        tracing::warn!("OAuth2 callback with an unknown, spent or expired state");
        return back_with_error(
            "This sign-in is unknown, expired or already used (or the state does not match): \
             nothing was added. Start the sign-in again.",
        );
    };
    if binding.as_deref() != Some(started.binding.as_str()) {
        tracing::warn!(user = %started.user_name, provider = %started.provider,
            "OAuth2 callback from another browser than the one that started it");
        return back_with_error(
            "This sign-in was started in another browser (the state does not match this \
             one): nothing was added. Start the sign-in again here.",
        );
    }
    let provider = started.provider.clone();
    // RFC 6749 4.1.2.1: the provider's refusal.
    if let Some(err) = q.error.as_deref() {
        tracing::info!(user = %started.user_name, provider = %provider, error = %printable(err),
            "OAuth2 sign-in refused by the provider");
        let why = match err {
            "access_denied" => "the sign-in was cancelled or access was denied".to_string(),
            other => match q.error_description.as_deref() {
                Some(d) => format!("{} ({})", printable(other), printable(d)),
                None => printable(other),
            },
        };
        return back_with_error(&format!(
            "{provider} did not sign you in: {why}. Nothing was added."
        ));
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return back_with_error("The provider sent no code: nothing was added.");
    };
    let Some(oauth) = setup.oauth.as_ref() else {
        return back_with_error("No OAuth2 provider is configured on this server.");
    };
    let grant = match oauth
        .exchange_code(&provider, code, &started.verifier, &redirect_uri(state))
        .await
    {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(user = %started.user_name, provider = %provider, error = %e,
                "OAuth2 code exchange failed");
            let msg = match e {
                engine::oauth::TokenError::Unavailable(why) => format!(
                    "{provider}'s token endpoint cannot be reached ({why}): nothing was added. \
                     Try again later."
                ),
                other => format!("{provider} refused the sign-in: {other}. Nothing was added."),
            };
            return back_with_error(&msg);
        }
    };
    let Some(refresh_token) = grant.refresh_token.clone() else {
        return back_with_error(&format!(
            "{provider} gave no refresh token (offline access was not granted), so the \
             account could not stay signed in: nothing was added."
        ));
    };
    let Some(email) = grant
        .email
        .clone()
        .or(started.login_hint.clone())
        .filter(|e| super::email_domain(e).is_some())
    else {
        return back_with_error(&format!(
            "{provider} did not say which address signed in: enter it and sign in again."
        ));
    };
    let settings = match servers_for(setup, &provider, &email).await {
        Some(s) => s,
        None => return back_with_error("No mail servers are known for this provider."),
    };
    // Only the incoming server is tried: what the account syncs with. Sending uses the
    // same token, checked when a message goes out.
    let incoming_only = Settings {
        smtp: None,
        ..settings.clone()
    };
    if let Err(f) = setup
        .try_settings(
            &incoming_only,
            &probe::Secret::AccessToken(grant.access_token.clone()),
        )
        .await
    {
        tracing::info!(user = %started.user_name, provider = %provider, kind = ?f.kind,
            "OAuth2 account refused by its mail server");
        return back_with_error(&f.message);
    }
    let principal = Principal {
        user: started.user,
        name: started.user_name.clone(),
    };
    // Signing in again: the same account gets the new refresh token.
    let existing = match state.store.user_accounts(principal.user).await {
        Ok(list) => list.into_iter().find(|a| a.name == email),
        Err(_) => return back_with_error("The store is unavailable: nothing was added."),
    };
    if let Some(a) = existing {
        if a.auth
            != (AccountAuth::OAuth2 {
                provider: provider.clone(),
            })
        {
            return back_with_error(&format!(
                "You already have an account named {email}: remove it first."
            ));
        }
        let sealed = match setup.secrets.seal(&refresh_token) {
            Ok(s) => s,
            Err(_) => return back_with_error("The refresh token could not be encrypted."),
        };
        if state.store.set_account_secret(a.id, &sealed).await.is_err() {
            return back_with_error("The store is unavailable: nothing was changed.");
        }
        tracing::info!(user = %principal.name, account = %a.id, provider = %provider,
            "OAuth2 account signed in again");
        return see_other(&format!("/#/accounts?added={}", url_encode(&email)));
    }
    match super::store_account(
        state,
        setup,
        &principal,
        &email,
        &settings,
        &refresh_token,
        AccountAuth::OAuth2 {
            provider: provider.clone(),
        },
    )
    .await
    {
        Ok(_) => see_other(&format!("/#/accounts?added={}", url_encode(&email))),
        Err(_) => back_with_error("The account could not be stored: nothing was added."),
    }
}

/// The mail servers of an OAuth2 account: the provider's configured ones, else the
/// table's entry for that provider name (`google`, `microsoft`), else discovery on the
/// address's domain.
async fn servers_for(setup: &Setup, provider: &str, email: &str) -> Option<Settings> {
    if let Some(s) = setup.oauth_servers.get(provider) {
        return Some(Settings {
            kind: s.kind,
            incoming: s.incoming.clone(),
            smtp: s.smtp.clone(),
            username: email.to_string(),
        });
    }
    if let Some(p) = providers::PROVIDERS
        .iter()
        .find(|p| p.oauth == Some(provider))
    {
        return Some(providers::found(p, email).settings);
    }
    discover::discover(&setup.discovery, email)
        .await
        .map(|f| f.settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_state_works_once_and_not_after_it_expires() {
        let p = Pending::default();
        let started = |at| Started {
            user: UserId(1),
            user_name: "a".into(),
            provider: "p".into(),
            verifier: "v".into(),
            login_hint: None,
            binding: "b".into(),
            at,
        };
        p.insert("s1".into(), started(Instant::now()));
        assert!(p.take("s1").is_some());
        assert!(p.take("s1").is_none());
        if let Some(old) = Instant::now().checked_sub(SIGN_IN_TTL + Duration::from_secs(1)) {
            p.insert("s2".into(), started(old));
            assert!(p.take("s2").is_none());
        }
    }
}
