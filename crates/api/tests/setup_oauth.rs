#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! "Sign in with …" (authorization code + PKCE) against the real authorization server the
//! tests use (oidc-provider, its development login and consent pages driven over HTTP as
//! a browser would) and a Dovecot that checks the tokens by introspection: the whole flow
//! ends with a stored OAuth2 account; a mismatched state, a refusal from the provider and
//! a token endpoint that is down each store nothing.

mod common;

use api::auth::hash_password;
use api::setup::oauth::OAuthServers;
use api::setup::{DiscoveryOptions, SecretBox, Server, Setup};
use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use mail_types::{AccountAuth, AccountKind, Security};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use testkit::oidc::{AuthServer, AuthServerOptions, CLIENT_ID, CLIENT_SECRET};
use testkit::{Dovecot, DovecotOAuth2, DovecotOptions};
use tower::ServiceExt;

const BASE: &str = "http://127.0.0.1:8080";
const MAIL_USER: &str = "alice@example.org";

struct XorBox;

impl SecretBox for XorBox {
    fn seal(&self, secret: &str) -> Result<Vec<u8>, String> {
        let mut v = b"sealed:".to_vec();
        v.extend(secret.bytes().map(|b| b ^ 0x5a));
        Ok(v)
    }
    fn open(&self, sealed: &[u8]) -> Result<String, String> {
        let body = sealed.strip_prefix(b"sealed:").ok_or("not sealed")?;
        String::from_utf8(body.iter().map(|b| b ^ 0x5a).collect()).map_err(|e| e.to_string())
    }
}

struct World {
    app: axum::Router,
    store: Arc<dyn Store>,
    auth: AuthServer,
    _dovecot: Dovecot,
}

fn redirect_uri() -> String {
    format!("{BASE}/web/oauth/callback")
}

/// `token_url`: set to send the code exchange somewhere else (a closed port).
async fn world(token_url: Option<String>) -> World {
    let auth =
        AuthServer::start_for_sign_in(AuthServerOptions::default(), &[redirect_uri()]).unwrap();
    let dovecot = Dovecot::start(DovecotOptions {
        oauth2: Some(DovecotOAuth2::new(auth.introspection_url())),
        ..DovecotOptions::default()
    })
    .unwrap();
    dovecot.add_user(MAIL_USER, "unused").unwrap();
    let store: Arc<dyn Store> = common::test_store(None).await;
    store
        .create_user("alice", &hash_password("pw").unwrap())
        .await
        .unwrap();
    let provider = engine::OAuthProvider {
        name: "test".into(),
        issuer: Some(auth.issuer()),
        auth_url: token_url
            .as_ref()
            .map(|_| format!("{}/auth", auth.issuer())),
        token_url,
        device_url: None,
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        scopes: vec!["openid".into(), "email".into(), "offline_access".into()],
    };
    let oauth = Arc::new(engine::OAuth::new(vec![provider], None));
    let servers = HashMap::from([(
        "test".to_string(),
        OAuthServers {
            incoming: Server {
                host: "127.0.0.1".into(),
                port: dovecot.imap_port(),
                security: Security::None,
            },
            kind: AccountKind::Imap,
            smtp: None,
        },
    )]);
    let mut state = AppState::new(store.clone(), BASE);
    state.setup = Some(Arc::new(
        Setup::new(
            Arc::new(XorBox),
            DiscoveryOptions {
                offline: true,
                ..DiscoveryOptions::default()
            },
            None,
        )
        .with_oauth(oauth, servers),
    ));
    World {
        app: router(Arc::new(state)),
        store,
        auth,
        _dovecot: dovecot,
    }
}

fn basic() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    )
}

/// `GET /web/oauth/start`: the provider URL and the binding cookie (`name=value`).
async fn start(w: &World) -> (String, String) {
    let r = w
        .app
        .clone()
        .oneshot(
            Request::get(format!(
                "/web/oauth/start?provider=test&login_hint={}",
                MAIL_USER.replace('@', "%40")
            ))
            .header(header::AUTHORIZATION, basic())
            .body(Body::empty())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    let cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("SameSite=Lax") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    (location, cookie.split(';').next().unwrap().to_string())
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Plays the browser at the provider: follows its redirects, fills the development login
/// page (the login name becomes the account's address) and confirms consent, until the
/// provider sends the browser to our callback; returns that URL. `deny`: answer the
/// consent page by going back to the callback with `error=access_denied` instead, as a
/// provider does when the user cancels.
async fn sign_in_at_provider(w: &World, mut url: String) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut cookies: HashMap<String, String> = HashMap::new();
    let mut form: Option<Vec<(&str, String)>> = None;
    for _ in 0..12 {
        if url.starts_with(&redirect_uri()) {
            return url;
        }
        let jar = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = match form.take() {
            Some(fields) => client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(
                    fields
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.replace('@', "%40")))
                        .collect::<Vec<_>>()
                        .join("&"),
                ),
            None => client.get(&url),
        };
        let resp = req.header("cookie", jar).send().await.unwrap();
        for c in resp.headers().get_all("set-cookie") {
            if let Some((k, v)) = c
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .split_once('=')
            {
                cookies.insert(k.to_string(), v.to_string());
            }
        }
        if resp.status().is_redirection() {
            let loc = resp.headers()["location"].to_str().unwrap().to_string();
            url = if loc.starts_with("http") {
                loc
            } else {
                format!("{}{loc}", w.auth.issuer())
            };
            continue;
        }
        let html = resp.text().await.unwrap();
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no form on the provider's page: {html}"))
            .to_string();
        url = if action.starts_with("http") {
            action
        } else {
            format!("{}{action}", w.auth.issuer())
        };
        form = Some(if html.contains("value=\"login\"") {
            vec![
                ("prompt", "login".into()),
                ("login", MAIL_USER.into()),
                ("password", "any".into()),
            ]
        } else {
            vec![("prompt", "consent".into())]
        });
    }
    panic!("the provider never sent the browser back");
}

/// Our callback, with the binding cookie; the `Location` it sends the browser to.
async fn callback(w: &World, url: &str, cookie: &str) -> String {
    let path = url.strip_prefix(BASE).unwrap();
    let r = w
        .app
        .clone()
        .oneshot(
            Request::get(path)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    percent_decode(r.headers()[header::LOCATION].to_str().unwrap())
}

async fn accounts(w: &World) -> Vec<store::AccountRecord> {
    let u = w.store.user_by_name("alice").await.unwrap().unwrap();
    w.store.user_accounts(u.id).await.unwrap()
}

#[tokio::test]
async fn sign_in_with_code_and_pkce_adds_an_oauth2_account() {
    let w = world(None).await;
    let (auth_url, cookie) = start(&w).await;
    // RFC 7636 4.3: S256 challenge; RFC 6749 4.1.1: our redirect URI and a state.
    assert_eq!(
        query_param(&auth_url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query_param(&auth_url, "code_challenge").map(|c| c.len()),
        Some(43)
    );
    assert_eq!(query_param(&auth_url, "redirect_uri"), Some(redirect_uri()));
    assert_eq!(
        query_param(&auth_url, "login_hint").as_deref(),
        Some(MAIL_USER)
    );
    let st = query_param(&auth_url, "state").unwrap();
    assert!(st.len() >= 43);

    let back = sign_in_at_provider(&w, auth_url).await;
    assert_eq!(query_param(&back, "state"), Some(st));
    let location = callback(&w, &back, &cookie).await;
    assert_eq!(location, format!("/#/accounts?added={MAIL_USER}"));
    let stored = accounts(&w).await;
    assert_eq!(stored.len(), 1);
    let a = &stored[0];
    assert_eq!(a.name, MAIL_USER);
    assert_eq!(a.server.username, MAIL_USER);
    assert_eq!(
        a.auth,
        AccountAuth::OAuth2 {
            provider: "test".into()
        }
    );
    // The stored secret is the refresh token, encrypted: it works at the token endpoint.
    let refresh_token = XorBox.open(&a.server.password_enc).unwrap();
    assert!(!refresh_token.is_empty());
    let oauth = engine::OAuth::new(
        vec![engine::OAuthProvider {
            name: "test".into(),
            issuer: Some(w.auth.issuer()),
            auth_url: None,
            token_url: None,
            device_url: None,
            client_id: CLIENT_ID.into(),
            client_secret: Some(CLIENT_SECRET.into()),
            scopes: vec![],
        }],
        None,
    );
    let passwords: engine::PasswordSource = Arc::new(|r: &store::AccountRecord| {
        XorBox
            .open(&r.server.password_enc)
            .map_err(anyhow::Error::msg)
    });
    let token = oauth
        .access_token(w.store.as_ref(), &passwords, a, None)
        .await
        .unwrap();
    assert!(!token.value.is_empty());

    // The same callback again: the state is spent.
    let location = callback(&w, &back, &cookie).await;
    assert!(location.contains("error="), "{location}");
    assert_eq!(accounts(&w).await.len(), 1);
}

#[tokio::test]
async fn a_state_that_does_not_match_stores_nothing() {
    let w = world(None).await;
    let (auth_url, cookie) = start(&w).await;
    let back = sign_in_at_provider(&w, auth_url).await;
    // A state we never issued (a forged callback): refused.
    let forged = back.replace("state=", "state=x");
    let location = callback(&w, &forged, &cookie).await;
    assert!(location.contains("state does not match"), "{location}");
    // The right state from another browser (no binding cookie, or another one).
    let location = callback(&w, &back, "tidings_oauth=someone-elses").await;
    assert!(location.contains("another browser"), "{location}");
    assert!(accounts(&w).await.is_empty());
}

#[tokio::test]
async fn the_provider_refusing_stores_nothing() {
    let w = world(None).await;
    let (auth_url, cookie) = start(&w).await;
    let st = query_param(&auth_url, "state").unwrap();
    // RFC 6749 4.1.2.1: what the provider sends when the user cancels.
    let url = format!("{}?error=access_denied&state={st}", redirect_uri());
    let location = callback(&w, &url, &cookie).await;
    assert!(
        location.contains("cancelled or access was denied"),
        "{location}"
    );
    assert!(location.contains("Nothing was added"), "{location}");
    assert!(accounts(&w).await.is_empty());
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_stores_nothing() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let w = world(Some(format!("http://127.0.0.1:{closed}/token"))).await;
    let (auth_url, cookie) = start(&w).await;
    let back = sign_in_at_provider(&w, auth_url).await;
    let location = callback(&w, &back, &cookie).await;
    assert!(
        location.contains("token endpoint cannot be reached"),
        "{location}"
    );
    assert!(accounts(&w).await.is_empty());
}
