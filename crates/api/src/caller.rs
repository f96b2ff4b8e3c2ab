//! Who is calling: the client's address, authentication of a request (the session
//! cookie of our web client, else Basic or Bearer), the HTTP answers to a failure, and the
//! account a path names. Every handler imports it; it imports no handler and no router.

use crate::auth::{AuthError, Principal, session_cookie};
use crate::state::AppState;
use crate::tls::ClientAddr;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, Ipv4Addr};

/// Header a client of ours sends so that a 401 does not carry `WWW-Authenticate: Basic`
/// (which would make the browser open its own password dialog).
pub(crate) const WEB_CLIENT_HEADER: &str = "x-tidings-client";

pub(crate) fn client_ip(req_ext: &axum::http::Extensions) -> IpAddr {
    req_ext
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// RFC 9110 10.2.3: when to come back, for a 429 (RFC 6585 4) or a 503.
fn retry_after(status: StatusCode, e: &AuthError, secs: u64) -> Response {
    let mut r = (status, e.to_string()).into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn auth_failure(e: AuthError) -> Response {
    match e {
        AuthError::Missing | AuthError::Invalid => {
            let mut r = (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Tidings\", charset=\"UTF-8\""),
            );
            r
        }
        AuthError::RateLimited(secs) => retry_after(StatusCode::TOO_MANY_REQUESTS, &e, secs),
        AuthError::Busy(secs) => retry_after(StatusCode::SERVICE_UNAVAILABLE, &e, secs),
        AuthError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<Principal, Response> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // The session cookie, when there is no Authorization.
    if value.is_none()
        && let Some(r) = cookie_principal(state, headers, ip).await
    {
        return r.map_err(|e| web_failure(e, headers));
    }
    state
        .auth
        .authenticate(value, ip)
        .await
        .map_err(|e| web_failure(e, headers))
}

/// A 401 to our own web client carries no `WWW-Authenticate`, so the
/// browser shows our sign-in page rather than its own password dialog.
fn web_failure(e: AuthError, headers: &HeaderMap) -> Response {
    let mut r = auth_failure(e);
    if headers.contains_key(WEB_CLIENT_HEADER) {
        r.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    r
}

/// Authenticates a request addressed to the account in its path (`accountId` of
/// downloads, uploads, sanitised HTML) and resolves it among the caller's accounts. An
/// account that is not the caller's answers 404 `not_found`, exactly like one that does
/// not exist.
pub(crate) async fn caller_account(
    state: &AppState,
    req: &axum::http::request::Parts,
    account: &str,
    not_found: &'static str,
) -> Result<(Principal, mail_types::AccountId), Response> {
    let principal = authenticate(state, &req.headers, client_ip(&req.extensions)).await?;
    let missing = || (StatusCode::NOT_FOUND, not_found).into_response();
    let account = jmap_server::jmap::ids::parse('a', account)
        .map(mail_types::AccountId)
        .ok_or_else(missing)?;
    match state.store.user_accounts(principal.user).await {
        Ok(list) if list.iter().any(|a| a.id == account) => Ok((principal, account)),
        Ok(_) => Err(missing()),
        Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE.into_response()),
    }
}

/// Whether a browser request comes from our own pages: `Sec-Fetch-Site` (sent by every
/// current browser) is not cross-site, and an `Origin`, when present, is this server's.
/// Cookie-authenticated requests must pass this (CSRF and cross-site WebSocket
/// hijacking), on top of `SameSite=Strict`.
pub(crate) fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if origin.eq_ignore_ascii_case(&state.base_url) {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!(authority, Some(a) if !host.is_empty() && a.eq_ignore_ascii_case(host))
}

/// The principal of a session cookie, when the request carries one; `None` when it does
/// not (so the caller tries the other schemes).
pub(crate) async fn cookie_principal(
    state: &AppState,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
) -> Option<Result<crate::auth::Principal, AuthError>> {
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session_cookie)?;
    if !same_origin(state, headers) {
        tracing::warn!(client = %ip, "session cookie on a cross-site request refused");
        return Some(Err(AuthError::Invalid));
    }
    Some(state.auth.session(token, ip).await)
}
