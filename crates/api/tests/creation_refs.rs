#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! `#creationId` in the ids of read methods (RFC 8620 3.3, 5.3): created and read back in
//! one request, as jmaplib's `CreationRef` does.

use api::auth::hash_password;
use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use mail_types::{AccountKind, Security};
use serde_json::{Value, json};
use std::sync::Arc;
use store::{NewAccount, ServerSettings, SqliteStore, Store};
use tower::ServiceExt;

/// alice has accounts a1 and a2, bob has a3 (the Blob/copy test's world).
async fn setup() -> (axum::Router, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let alice = store
        .create_user("alice", &hash_password("pw").unwrap())
        .await
        .unwrap();
    let bob = store
        .create_user("bob", &hash_password("pw").unwrap())
        .await
        .unwrap();
    for (user, name) in [(alice, "work"), (alice, "home"), (bob, "bob")] {
        store
            .create_account(&NewAccount {
                user,
                name: name.into(),
                kind: AccountKind::Imap,
                server: ServerSettings {
                    host: "h".into(),
                    port: 1,
                    security: Security::None,
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
    }
    (
        router(Arc::new(AppState::new(
            store.clone(),
            "http://127.0.0.1:8080",
        ))),
        store,
    )
}

fn basic(user: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"))
    )
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body)
}

async fn api(app: &axum::Router, calls: Value) -> Vec<Value> {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": calls
    });
    let req = Request::post("/jmap/api")
        .header(header::AUTHORIZATION, basic("alice"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, b) = send(app, req).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&b).unwrap();
    v["methodResponses"].as_array().unwrap().clone()
}

#[tokio::test]
async fn created_objects_are_read_back_by_creation_id() {
    let (app, _store) = setup().await;
    let r = api(
        &app,
        json!([
            ["Mailbox/set", {"accountId": "a1", "create": {"box": {"name": "Projects"}}}, "0"],
            ["Mailbox/get", {"accountId": "a1", "ids": ["#box", "#unknown"], "properties": ["name"]}, "1"],
            ["Email/set", {"accountId": "a1", "create": {"draft": {
                "mailboxIds": {"#box": true},
                "subject": "read me back",
                "bodyValues": {"t": {"value": "hello"}},
                "textBody": [{"partId": "t", "type": "text/plain"}]
            }}}, "2"],
            ["Email/get", {"accountId": "a1", "ids": ["#draft"], "properties": ["subject", "mailboxIds"]}, "3"]
        ]),
    )
    .await;
    let mailbox = r[0][1]["created"]["box"]["id"].as_str().unwrap();
    assert_eq!(r[1][0], "Mailbox/get", "{:?}", r[1]);
    assert_eq!(r[1][1]["list"][0]["id"], mailbox, "{:?}", r[1]);
    assert_eq!(r[1][1]["list"][0]["name"], "Projects");
    // An unknown creation id is notFound, like an unknown id.
    assert_eq!(r[1][1]["notFound"], json!(["#unknown"]));
    let email = r[2][1]["created"]["draft"]["id"].as_str().unwrap();
    assert_eq!(r[3][1]["list"][0]["id"], email, "{:?}", r[3]);
    assert_eq!(r[3][1]["list"][0]["subject"], "read me back");
    assert_eq!(r[3][1]["list"][0]["mailboxIds"], json!({mailbox: true}));
}
