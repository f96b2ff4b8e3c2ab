#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! Gmail through JMAP: labels are mailboxIds both ways, X-GM-THRID is the threadId, and
//! All Mail is a mailbox (role `all`) while Starred is not; against a Gmail-shaped server
//! (`testkit::gmail`) on loopback, with the real engine syncing and writing back.

mod common;

use api::auth::hash_password;
use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, header};
use base64::Engine as _;
use engine::{Engine, PasswordSource};
use http_body_util::BodyExt;
use mail_types::{AccountKind, Security};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{NewAccount, ServerSettings, Store};
use testkit::gmail::{self, ServerOptions};
use tower::ServiceExt;

const DEADLINE: Duration = Duration::from_secs(20);

async fn jmap(app: &axum::Router, calls: Value) -> Value {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": calls,
    });
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    );
    let req = Request::post("/jmap/api")
        .header(header::AUTHORIZATION, auth)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn message(subject: &str) -> String {
    format!(
        "From: Bob <bob@example.com>\r\nTo: alice@gmail.test\r\nSubject: {subject}\r\n\
         Message-ID: <{}@example.com>\r\nDate: Mon, 7 Dec 2026 06:00:00 +0000\r\n\r\nHello.\r\n",
        subject.replace(' ', ".")
    )
}

/// Mailbox name -> JMAP id and role.
async fn mailboxes(app: &axum::Router) -> Vec<(String, String, Value)> {
    let r = jmap(app, json!([["Mailbox/get", {"accountId": "a1"}, "0"]])).await;
    r["methodResponses"][0][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["id"].as_str().unwrap().to_string(),
                m["role"].clone(),
            )
        })
        .collect()
}

/// Every Email: (subject, id, threadId, mailboxIds).
async fn emails(app: &axum::Router) -> Vec<(String, String, String, BTreeSet<String>)> {
    let r = jmap(
        app,
        json!([
            ["Email/query", {"accountId": "a1"}, "q"],
            ["Email/get", {"accountId": "a1",
                "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["subject", "threadId", "mailboxIds"]}, "g"]
        ]),
    )
    .await;
    r["methodResponses"][1][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["subject"].as_str().unwrap_or("").to_string(),
                e["id"].as_str().unwrap().to_string(),
                e["threadId"].as_str().unwrap().to_string(),
                e["mailboxIds"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_mailbox_ids_both_ways() {
    let server = gmail::Server::start(ServerOptions::default()).unwrap();
    let first = server
        .add_message(&message("First"), &["\\Inbox", "Work"], &[], Some("77"))
        .unwrap();
    server
        .add_message(&message("Second"), &["Work"], &[], Some("77"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = common::test_store(Some(dir.path())).await;
    let user = store
        .create_user("alice", &hash_password("pw").unwrap())
        .await
        .unwrap();
    let account = store
        .create_account(&NewAccount {
            user,
            name: "gmail".into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: server.port(),
                security: Security::None,
                username: gmail::USER.into(),
                password_enc: gmail::PASSWORD.as_bytes().to_vec(),
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(account.0, 1);
    let passwords: PasswordSource =
        Arc::new(|a: &store::AccountRecord| Ok(String::from_utf8(a.server.password_enc.clone())?));
    let mut engine = Engine::new(store.clone(), passwords);
    engine.start_all().await.unwrap();
    let app = router(Arc::new(AppState::new(
        store.clone(),
        "http://127.0.0.1:8080",
    )));

    // Synced (the first pass is done once the account is "ok"): one Email per message,
    // its labels as mailboxIds, All Mail among them.
    let start = Instant::now();
    while store.account(account).await.unwrap().unwrap().status.name() != "ok" {
        assert!(start.elapsed() < DEADLINE, "never synced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = emails(&app).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let boxes = mailboxes(&app).await;
    let id_of = |name: &str| {
        boxes
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, id, _)| id.clone())
            .unwrap_or_else(|| panic!("no mailbox {name}: {boxes:?}"))
    };
    let all = boxes
        .iter()
        .find(|(_, _, role)| role == "all")
        .map(|(_, id, _)| id.clone())
        .expect("All Mail has role all");
    assert!(
        !boxes.iter().any(|(_, _, role)| role == "flagged"),
        "Starred is no mailbox: {boxes:?}"
    );
    let by = |s: &str| list.iter().find(|e| e.0 == s).unwrap().clone();
    let (_, email, thread, held) = by("First");
    assert_eq!(
        held,
        [id_of("INBOX"), id_of("Work"), all.clone()]
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    // X-GM-THRID: the same conversation though nothing in the headers links them.
    assert_eq!(thread, by("Second").2);

    // A label added through Email/set is an X-GM-LABELS change on the server.
    let travel = id_of("Travel");
    let mut patch = serde_json::Map::new();
    patch.insert(format!("mailboxIds/{travel}"), json!(true));
    let mut update = serde_json::Map::new();
    update.insert(email.clone(), Value::Object(patch));
    let r = jmap(
        &app,
        json!([["Email/set", {"accountId": "a1", "update": update}, "s"]]),
    )
    .await;
    assert!(
        r["methodResponses"][0][1]["updated"]
            .as_object()
            .is_some_and(|u| u.contains_key(&email)),
        "{r}"
    );
    let start = Instant::now();
    loop {
        let m = server.message(&first).unwrap();
        if m.labels.iter().any(|l| l == "Travel") {
            assert!(m.folders.contains(&"Travel".to_string()), "{m:?}");
            break;
        }
        assert!(start.elapsed() < DEADLINE, "no Travel label: {m:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    engine.shutdown().await;
}
