//! What the Sieve and VacationResponse tests share: a private Dovecot (with or without
//! Pigeonhole), one account on it, the engine (which tries ManageSieve at account start)
//! and the API wired as `tidings serve` wires it.

#![allow(dead_code)]

use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use engine::Engine;
use http_body_util::BodyExt;
use mail_types::AccountId;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{SieveSettings, Store};
use testkit::{Dovecot, DovecotOptions};
use tower::ServiceExt;

#[path = "../common/mod.rs"]
mod common;
pub use common::USER;
use common::{PASS, alice_account, plain_passwords};
pub const DEADLINE: Duration = Duration::from_secs(30);

pub const USING: [&str; 4] = [
    "urn:ietf:params:jmap:core",
    "urn:ietf:params:jmap:mail",
    "urn:ietf:params:jmap:sieve",
    "urn:ietf:params:jmap:vacationresponse",
];

pub struct World {
    pub dovecot: Dovecot,
    pub store: Arc<dyn Store>,
    pub app: axum::Router,
    pub account: AccountId,
    pub engine: Option<Engine>,
    _dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            // The account tasks end with the runtime; nothing to wait for here.
            drop(e);
        }
    }
}

/// `sieve`: Dovecot with Pigeonhole, the account pointed at its ManageSieve port. Without,
/// the account is pointed at the IMAP port: a server answers there, but not ManageSieve.
pub async fn world(sieve: bool) -> World {
    let dovecot = Dovecot::start(DovecotOptions {
        sieve,
        ..DovecotOptions::default()
    })
    .unwrap();
    dovecot.add_user(USER, PASS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = common::test_store(Some(dir.path())).await;
    let account = alice_account(&store, &dovecot).await;
    let port = dovecot.managesieve_port().unwrap_or(dovecot.imap_port());
    store
        .set_sieve_settings(
            account,
            &SieveSettings {
                port: Some(port),
                ..SieveSettings::default()
            },
        )
        .await
        .unwrap();
    let mut engine = Engine::new(store.clone(), plain_passwords());
    let mut state = AppState::new(store.clone(), "http://127.0.0.1:8080");
    state.sieve = Some(engine.sieve());
    let app = router(Arc::new(state));
    engine.start_all().await.unwrap();
    // The engine tries ManageSieve at account start; wait for its finding.
    let start = Instant::now();
    while store.sieve_settings(account).await.unwrap().checked_at == 0 {
        assert!(start.elapsed() < DEADLINE, "ManageSieve was never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    World {
        dovecot,
        store,
        app,
        account,
        engine: Some(engine),
        _dir: dir,
    }
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    )
}

pub async fn session(app: &axum::Router) -> Value {
    let req = Request::get("/jmap/session")
        .header(header::AUTHORIZATION, basic())
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

pub async fn jmap_using(app: &axum::Router, using: &[&str], calls: Value) -> Value {
    let body = json!({ "using": using, "methodCalls": calls });
    let req = Request::post("/jmap/api")
        .header(header::AUTHORIZATION, basic())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// The first method response (name and arguments).
pub async fn call(app: &axum::Router, name: &str, args: Value) -> (String, Value) {
    let r = jmap_using(app, &USING, json!([[name, args, "0"]])).await;
    let first = &r["methodResponses"][0];
    (first[0].as_str().unwrap().to_string(), first[1].clone())
}

/// Uploads `bytes` to account a1; returns the blobId.
pub async fn upload(app: &axum::Router, bytes: &[u8]) -> String {
    let req = Request::post("/jmap/upload/a1/")
        .header(header::AUTHORIZATION, basic())
        .header(header::CONTENT_TYPE, "application/sieve")
        .body(Body::from(bytes.to_vec()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["blobId"].as_str().unwrap().to_string()
}

pub async fn download(app: &axum::Router, blob: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::get(format!(
        "/jmap/download/a1/{blob}/s.sieve?type=application/sieve"
    ))
    .header(header::AUTHORIZATION, basic())
    .body(Body::empty())
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}
