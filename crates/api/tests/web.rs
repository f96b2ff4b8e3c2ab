#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! The web client's server side through the router: sign-in and sign-out with
//! the session cookie, its CSRF checks, and the sync status in the Session.

mod common;

use api::auth::hash_password;
use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use store::{NewAccount, ServerSettings, Store};
use tower::ServiceExt;

const BASE: &str = "http://127.0.0.1:8080";

async fn setup(base: &str) -> axum::Router {
    let store: Arc<dyn Store> = common::test_store(None).await;
    let id = store
        .create_user("alice", &hash_password("pw").unwrap())
        .await
        .unwrap();
    store
        .create_account(&NewAccount {
            user: id,
            name: "work".into(),
            kind: mail_types::AccountKind::Imap,
            server: ServerSettings {
                host: "h".into(),
                port: 1,
                security: mail_types::Security::None,
                username: "u".into(),
                password_enc: vec![],
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await
        .unwrap();
    router(Arc::new(AppState::new(store, base)))
}

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

fn login_req(body: &str, origin: Option<&str>, ctype: &str) -> Request<Body> {
    let mut b = Request::post("/auth/login")
        .header(header::CONTENT_TYPE, ctype)
        .header(header::HOST, "127.0.0.1:8080");
    if let Some(o) = origin {
        b = b.header(header::ORIGIN, o);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// Signs in and returns the `tidings_session=...` pair and the whole Set-Cookie.
async fn sign_in(app: &axum::Router) -> (String, String) {
    let (s, h, _) = send(
        app,
        login_req(
            r#"{"username":"alice","password":"pw"}"#,
            Some(BASE),
            "application/json",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let set = h[header::SET_COOKIE].to_str().unwrap().to_string();
    (set.split(';').next().unwrap().to_string(), set)
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_that_jmap_accepts() {
    let app = setup(BASE).await;
    let (cookie, set) = sign_in(&app).await;
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"));
    assert!(
        !set.contains("Secure"),
        "plain HTTP cannot keep a Secure cookie"
    );
    let token = cookie.strip_prefix("tidings_session=").unwrap();
    assert!(token.len() >= 43, "256 random bits");

    let (s, _, body) = send(
        &app,
        Request::get("/jmap/session")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let session: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(session["username"], "alice");
    // The sync status, as the web client reads it.
    let sync = &session["accounts"]["a1"]["accountCapabilities"]["urn:tidings:params:sync"];
    assert_eq!(sync["status"], "new");
    assert_eq!(sync["progress"]["total"], 0);

    let echo = json!({"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {"x": 1}, "0"]]});
    let (s, _, _) = send(
        &app,
        Request::post("/jmap/api")
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, BASE)
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(echo.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn cookie_is_refused_cross_site() {
    let app = setup(BASE).await;
    let (cookie, _) = sign_in(&app).await;
    let echo =
        json!({"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {}, "0"]]});
    for (origin, site) in [
        (Some("http://evil.example"), None),
        (None, Some("cross-site")),
        (None, Some("same-site")),
        (Some("null"), None),
    ] {
        let mut b = Request::post("/jmap/api")
            .header(header::COOKIE, &cookie)
            .header(header::HOST, "127.0.0.1:8080");
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        if let Some(s) = site {
            b = b.header("sec-fetch-site", s);
        }
        let (s, _, _) = send(&app, b.body(Body::from(echo.to_string())).unwrap()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{origin:?} {site:?}");
    }
    // A forged token is refused, and our client's 401 does not ask for Basic.
    let (s, h, _) = send(
        &app,
        Request::get("/jmap/session")
            .header(header::COOKIE, "tidings_session=forged")
            .header("x-tidings-client", "web")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(!h.contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn login_refuses_forms_foreign_origins_and_wrong_passwords() {
    let app = setup(BASE).await;
    let good = r#"{"username":"alice","password":"pw"}"#;
    let (s, _, _) = send(
        &app,
        login_req(good, Some(BASE), "application/x-www-form-urlencoded"),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a cross-site form could post that"
    );
    let (s, _, _) = send(
        &app,
        login_req(good, Some("http://evil.example"), "application/json"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, h, body) = send(
        &app,
        login_req(
            r#"{"username":"alice","password":"nope"}"#,
            Some(BASE),
            "application/json",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(!h.contains_key(header::SET_COOKIE));
    assert!(String::from_utf8_lossy(&body).contains("wrong user name or password"));
    let (s, _, _) = send(&app, login_req("{not json", Some(BASE), "application/json")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn https_cookies_are_secure() {
    let app = setup("https://mail.example.org").await;
    let (s, h, _) = send(
        &app,
        Request::post("/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ORIGIN, "https://mail.example.org")
            .body(Body::from(r#"{"username":"alice","password":"pw"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(h[header::SET_COOKIE].to_str().unwrap().contains("; Secure"));
}

#[tokio::test]
async fn sign_out_ends_the_session_on_the_server() {
    let app = setup(BASE).await;
    let (cookie, _) = sign_in(&app).await;
    let out = |origin: Option<&str>| {
        let mut b = Request::post("/auth/logout").header(header::COOKIE, &cookie);
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(Body::empty()).unwrap()
    };
    let (s, _, _) = send(&app, out(None)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "sign-out needs our Origin");
    let (s, h, _) = send(&app, out(Some(BASE))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (s, _, _) = send(
        &app,
        Request::get("/jmap/session")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_app_is_served_with_safe_headers() {
    let app = setup(BASE).await;
    let (s, h, _) = send(
        &app,
        Request::get("/")
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let (s, _, _) = send(
        &app,
        Request::get("/assets/nope.js").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The sanitised HTML route is owner-only like downloads.
    let (s, _, _) = send(
        &app,
        Request::get("/web/html/a1/bdeadbeef-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
