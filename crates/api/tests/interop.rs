#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! What a second JMAP client library (jmaplib, tests/jmaplib.rs in the cli crate) found,
//! pinned through the router: Blob/copy (RFC 8620 6.3) between a user's accounts, never
//! from another user's; `#creationId` in the ids of read methods (RFC 8620 3.3, 5.3); a
//! created Mailbox subscribed by default (RFC 8621 2).

mod common;

use api::auth::hash_password;
use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use mail_types::{AccountId, AccountKind, Security};
use serde_json::{Value, json};
use std::sync::Arc;
use store::{NewAccount, ServerSettings, Store};
use tower::ServiceExt;

/// alice has accounts a1 and a2, bob has a3.
async fn setup() -> (axum::Router, Arc<dyn Store>) {
    let store = common::test_store(None).await;
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

async fn blob_copy(app: &axum::Router, args: Value) -> (String, Value) {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core"],
        "methodCalls": [["Blob/copy", args, "c"]]
    });
    let req = Request::post("/jmap/api")
        .header(header::AUTHORIZATION, basic("alice"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, b) = send(app, req).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&b).unwrap();
    let r = &v["methodResponses"][0];
    (r[0].as_str().unwrap().to_string(), r[1].clone())
}

async fn download(app: &axum::Router, account: &str, blob: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::get(format!(
        "/jmap/download/{account}/{blob}/x.bin?type=application/octet-stream"
    ))
    .header(header::AUTHORIZATION, basic("alice"))
    .body(Body::empty())
    .unwrap();
    send(app, req).await
}

#[tokio::test]
async fn blob_copy_between_a_users_accounts() {
    let (app, store) = setup().await;
    let bytes = b"a blob worth copying".to_vec();
    let up = store
        .put_upload(AccountId(1), "text/plain", bytes.clone())
        .await
        .unwrap();
    let blob = format!("b{}", up.blob_id);
    // Not readable from a2 before the copy.
    assert_eq!(download(&app, "a2", &blob).await.0, StatusCode::NOT_FOUND);

    let (name, r) = blob_copy(
        &app,
        json!({"fromAccountId": "a1", "accountId": "a2", "blobIds": [blob, "bnope"]}),
    )
    .await;
    assert_eq!(name, "Blob/copy", "{r}");
    assert_eq!(r["fromAccountId"], "a1");
    assert_eq!(r["accountId"], "a2");
    let copied = r["copied"][&blob].as_str().unwrap().to_string();
    assert_eq!(r["notCopied"]["bnope"]["type"], "notFound", "{r}");
    let (s, got) = download(&app, "a2", &copied).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, bytes);

    // RFC 8620 6.3: another user's account is fromAccountNotFound, and nothing of it is
    // copied; a target account that is not the caller's is accountNotFound.
    let theirs = store
        .put_upload(AccountId(3), "text/plain", b"bob's".to_vec())
        .await
        .unwrap();
    let (name, r) = blob_copy(
        &app,
        json!({"fromAccountId": "a3", "accountId": "a1", "blobIds": [format!("b{}", theirs.blob_id)]}),
    )
    .await;
    assert_eq!(
        (name.as_str(), r["type"].as_str()),
        ("error", Some("fromAccountNotFound"))
    );
    let (name, r) = blob_copy(
        &app,
        json!({"fromAccountId": "a1", "accountId": "a3", "blobIds": [blob]}),
    )
    .await;
    assert_eq!(
        (name.as_str(), r["type"].as_str()),
        ("error", Some("accountNotFound"))
    );
    assert_eq!(
        store.upload_bytes(AccountId(3), &up.blob_id).await.unwrap(),
        None
    );
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

#[tokio::test]
async fn a_created_mailbox_is_subscribed_unless_asked_otherwise() {
    let (app, _store) = setup().await;
    let r = api(
        &app,
        json!([
            ["Mailbox/set", {"accountId": "a1", "create": {
                "plain": {"name": "Plain"},
                "hidden": {"name": "Hidden", "isSubscribed": false}
            }}, "0"],
            ["Mailbox/get", {"accountId": "a1", "ids": ["#plain", "#hidden"], "properties": ["name", "isSubscribed"]}, "1"]
        ]),
    )
    .await;
    assert_eq!(
        r[0][1]["created"]["plain"]["isSubscribed"], true,
        "{:?}",
        r[0]
    );
    assert_eq!(r[0][1]["created"]["hidden"]["isSubscribed"], false);
    let got: Vec<(Value, Value)> = r[1][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].clone(), m["isSubscribed"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!("Plain"), json!(true)),
            (json!("Hidden"), json!(false))
        ]
    );
}
