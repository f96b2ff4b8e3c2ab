#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! Adding accounts from the browser, through the router, against the private Dovecot and
//! Postfix: discovery, the try before saving (each failure named), add, edit, remove, and
//! nothing stored after any failure.

mod common;

use api::auth::hash_password;
use api::setup::{DiscoveryOptions, SecretBox, Setup};
use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use store::Store;
use testkit::{Dovecot, DovecotOptions, Smtp};
use tower::ServiceExt;

const USER: &str = "alice@example.org";
const PASS: &str = "imap-pw";

/// Secrets sealed by a fixed XOR with a marker: enough to see that the store never holds
/// the clear text and that the API always goes through the box (the real key is
/// `tidings serve`'s, covered by the browser test).
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
}

async fn world(ca_file: Option<PathBuf>) -> World {
    let store: Arc<dyn Store> = common::test_store(None).await;
    for (name, pw) in [("alice", "pw"), ("bob", "pw2")] {
        store
            .create_user(name, &hash_password(pw).unwrap())
            .await
            .unwrap();
    }
    let mut state = AppState::new(store.clone(), "http://127.0.0.1:8080");
    state.setup = Some(Arc::new(Setup::new(
        Arc::new(XorBox),
        DiscoveryOptions {
            offline: true,
            ..DiscoveryOptions::default()
        },
        ca_file,
    )));
    World {
        app: router(Arc::new(state)),
        store,
    }
}

fn basic(user: &str, pw: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    who: (&str, &str),
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, basic(who.0, who.1))
        .header("x-tidings-client", "web");
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let r = app.clone().oneshot(b.body(body).unwrap()).await.unwrap();
    let status = r.status();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const ALICE: (&str, &str) = ("alice", "pw");
const BOB: (&str, &str) = ("bob", "pw2");

fn settings(imap_port: u16, security: &str, smtp: Option<(u16, &str)>) -> Value {
    json!({
        "kind": "imap",
        "incoming": {"host": "127.0.0.1", "port": imap_port, "security": security},
        "smtp": smtp.map(|(p, s)| json!({"host": "127.0.0.1", "port": p, "security": s})),
        "username": USER,
    })
}

async fn accounts(w: &World, user: &str) -> Vec<store::AccountRecord> {
    let u = w.store.user_by_name(user).await.unwrap().unwrap();
    w.store.user_accounts(u.id).await.unwrap()
}

#[tokio::test]
async fn discovery_from_the_provider_table_and_guesses() {
    let w = world(None).await;
    let (s, v) = call(
        &w.app,
        "POST",
        "/web/accounts/discover",
        ALICE,
        Some(json!({"email": "someone@googlemail.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["source"], "table");
    assert_eq!(v["incoming"]["host"], "imap.gmail.com");
    assert_eq!(v["incoming"]["port"], 993);
    assert_eq!(v["incoming"]["security"], "tls");
    assert_eq!(v["smtp"]["host"], "smtp.gmail.com");
    assert_eq!(v["smtp"]["port"], 465);
    assert_eq!(v["oauth"], "google");
    assert_eq!(v["username"], "someone@googlemail.com");

    let (_, v) = call(
        &w.app,
        "POST",
        "/web/accounts/discover",
        ALICE,
        Some(json!({"email": "x@hotmail.com"})),
    )
    .await;
    assert_eq!(v["incoming"]["host"], "outlook.office365.com");
    assert_eq!(v["smtp"]["port"], 587);
    assert_eq!(v["smtp"]["security"], "starttls");
    assert_eq!(v["oauth"], "microsoft");

    let (_, v) = call(
        &w.app,
        "POST",
        "/web/accounts/discover",
        ALICE,
        Some(json!({"email": "x@icloud.com"})),
    )
    .await;
    assert_eq!(v["incoming"]["host"], "imap.mail.me.com");
    assert_eq!(v["appPassword"], true);

    // RFC 2606: `.invalid` never resolves; the guess is offered, marked as one.
    let (_, v) = call(
        &w.app,
        "POST",
        "/web/accounts/discover",
        ALICE,
        Some(json!({"email": "x@nowhere.invalid"})),
    )
    .await;
    assert_eq!(v["source"], "guess");
    assert_eq!(v["incoming"]["host"], "imap.nowhere.invalid");
    assert_eq!(v["smtp"]["host"], "smtp.nowhere.invalid");

    let (s, _) = call(
        &w.app,
        "POST",
        "/web/accounts/discover",
        ALICE,
        Some(json!({"email": "not an address"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn try_names_each_failure_and_stores_nothing() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    dovecot.add_user(USER, PASS).unwrap();
    let w = world(Some(dovecot.ca_file().to_path_buf())).await;

    // Wrong password (RFC 5530 AUTHENTICATIONFAILED).
    let (s, v) = call(
        &w.app,
        "POST",
        "/web/accounts/try",
        ALICE,
        Some(json!({"password": "wrong", "settings": settings(dovecot.imaps_port(), "tls", None)})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["failure"]["kind"], "wrongPassword", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("Wrong password"),
        "{v}"
    );

    // Nothing listens: unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (s, v) = call(
        &w.app,
        "POST",
        "/web/accounts/try",
        ALICE,
        Some(json!({"password": PASS, "settings": settings(closed, "tls", None)})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["failure"]["kind"], "unreachable", "{v}");

    // An add with the wrong password stores nothing.
    let (s, v) = call(
        &w.app,
        "POST",
        "/web/accounts",
        ALICE,
        Some(json!({"email": USER, "password": "wrong",
            "settings": settings(dovecot.imaps_port(), "tls", None)})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(accounts(&w, "alice").await.is_empty());

    // The right password works, and a try still stores nothing.
    let (s, v) = call(
        &w.app,
        "POST",
        "/web/accounts/try",
        ALICE,
        Some(json!({"password": PASS, "settings": settings(dovecot.imaps_port(), "tls", None)})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(accounts(&w, "alice").await.is_empty());
}

#[tokio::test]
async fn an_untrusted_certificate_is_named_as_such() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    dovecot.add_user(USER, PASS).unwrap();
    // No CA for the private Dovecot: its certificate is self-signed as far as we know.
    let w = world(None).await;
    let (s, v) = call(
        &w.app,
        "POST",
        "/web/accounts",
        ALICE,
        Some(json!({"email": USER, "password": PASS,
            "settings": settings(dovecot.imaps_port(), "tls", None)})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["failure"]["kind"], "tls", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("TLS certificate problem"),
        "{v}"
    );
    assert!(accounts(&w, "alice").await.is_empty());
}

#[tokio::test]
async fn add_edit_and_remove_an_account() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    dovecot.add_user(USER, PASS).unwrap();
    let smtp = Smtp::start(&dovecot).unwrap();
    let w = world(Some(dovecot.ca_file().to_path_buf())).await;
    let good = settings(
        dovecot.imaps_port(),
        "tls",
        Some((smtp.submissions_port(), "tls")),
    );

    // SMTP is tried too: a wrong SMTP port fails the add.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (s, v) = call(
        &w.app,
        "POST",
        "/web/accounts",
        ALICE,
        Some(json!({"email": USER, "password": PASS,
            "settings": settings(dovecot.imaps_port(), "tls", Some((closed, "tls")))})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["failure"]["server"], "smtp", "{v}");
    assert!(accounts(&w, "alice").await.is_empty());

    let (s, v) = call(
        &w.app,
        "POST",
        "/web/accounts",
        ALICE,
        Some(json!({"email": USER, "password": PASS, "name": "Work", "settings": good})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let stored = accounts(&w, "alice").await;
    assert_eq!(stored.len(), 1);
    let a = &stored[0];
    assert_eq!(a.name, "Work");
    assert_eq!(a.server.port, dovecot.imaps_port());
    assert_eq!(a.server.username, USER);
    // Encrypted, never the clear text.
    assert_eq!(XorBox.open(&a.server.password_enc).unwrap(), PASS);
    assert!(
        !a.server
            .password_enc
            .windows(PASS.len())
            .any(|w| w == PASS.as_bytes())
    );
    let smtp_stored = a.smtp.as_ref().unwrap();
    assert_eq!(smtp_stored.port, smtp.submissions_port());
    assert_eq!(
        a.server.ca_file.as_deref(),
        Some(dovecot.ca_file().to_str().unwrap())
    );

    // The same name twice is refused.
    let (s, _) = call(
        &w.app,
        "POST",
        "/web/accounts",
        ALICE,
        Some(json!({"email": USER, "password": PASS, "name": "Work", "settings": good})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    let (s, v) = call(&w.app, "GET", "/web/accounts", ALICE, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["accounts"][0]["id"], id.as_str());
    assert_eq!(
        v["accounts"][0]["settings"]["incoming"]["port"],
        dovecot.imaps_port()
    );
    assert!(
        !v.to_string().contains(PASS),
        "a secret in the listing: {v}"
    );

    // Another user neither sees, edits nor removes it.
    let (_, v) = call(&w.app, "GET", "/web/accounts", BOB, None).await;
    assert_eq!(v["accounts"], json!([]));
    let path = format!("/web/accounts/{id}");
    let (s, _) = call(&w.app, "DELETE", &path, BOB, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&w.app, "PATCH", &path, BOB, Some(json!({"name": "mine"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Edit: a wrong new password is tried and refused, nothing changes.
    let (s, v) = call(
        &w.app,
        "PATCH",
        &path,
        ALICE,
        Some(json!({"password": "wrong"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["failure"]["kind"], "wrongPassword");
    let a = &accounts(&w, "alice").await[0];
    assert_eq!(XorBox.open(&a.server.password_enc).unwrap(), PASS);
    // A rename keeps the password.
    let (s, v) = call(
        &w.app,
        "PATCH",
        &path,
        ALICE,
        Some(json!({"name": "Personal"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let a = &accounts(&w, "alice").await[0];
    assert_eq!(a.name, "Personal");
    assert_eq!(XorBox.open(&a.server.password_enc).unwrap(), PASS);

    // Remove.
    let (s, _) = call(&w.app, "DELETE", &path, ALICE, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(accounts(&w, "alice").await.is_empty());
    let (s, _) = call(&w.app, "DELETE", &path, ALICE, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn changes_need_the_client_header_and_a_same_site_cookie() {
    let w = world(None).await;
    // Without the web client's header (what a form on another site would send).
    let r = w
        .app
        .clone()
        .oneshot(
            Request::post("/web/accounts/discover")
                .header(header::AUTHORIZATION, basic("alice", "pw"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"email":"a@gmail.com"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Unauthenticated.
    let r = w
        .app
        .clone()
        .oneshot(
            Request::get("/web/accounts")
                .header("x-tidings-client", "web")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A form post (not JSON) is refused.
    let r = w
        .app
        .clone()
        .oneshot(
            Request::post("/web/accounts/discover")
                .header(header::AUTHORIZATION, basic("alice", "pw"))
                .header("x-tidings-client", "web")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("email=a@gmail.com"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}
