#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! JMAP Quota (RFC 9425) from IMAP QUOTA, end to end: a private Dovecot with the quota
//! plugin, the engine syncing it, the API answering. Quota/get shows the storage used
//! growing after a delivery (in octets; the hard limit 10 MiB), Quota/changes names the
//! quota that moved and a push says Quota changed; an account on a Dovecot without the
//! plugin has no quota capability and its Quota/get is accountNotSupportedByMethod.

use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, header};
use base64::Engine as _;
use engine::{Engine, EngineOptions};
use http_body_util::BodyExt;
use mail_types::AccountId;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;
use testkit::{Dovecot, DovecotOptions, SeedMessage};
use tower::ServiceExt;

mod common;
use common::{PASS, USER, alice_account, plain_passwords};
const DEADLINE: Duration = Duration::from_secs(30);
const QUOTA: &str = "urn:ietf:params:jmap:quota";

fn message(i: usize, body: usize) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.org>\r\nTo: {USER}\r\nSubject: q {i}\r\n\
         Message-ID: <q-{i}@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n{}\r\n",
        "z".repeat(body)
    )
    .into_bytes()
}

struct World {
    dovecot: Dovecot,
    store: Arc<dyn Store>,
    app: axum::Router,
    account: AccountId,
    _engine: Engine,
    _dir: tempfile::TempDir,
}

/// A Dovecot (with `quota_rule` when given), alice's account on it synced once.
async fn world(quota_rule: Option<&str>) -> World {
    let dovecot = Dovecot::start(DovecotOptions {
        quota_rule: quota_rule.map(str::to_string),
        ..DovecotOptions::default()
    })
    .unwrap();
    dovecot.add_user(USER, PASS).unwrap();
    dovecot
        .seed(
            USER,
            "INBOX",
            &[SeedMessage {
                raw: message(0, 10_000),
                flags: vec![],
                internal_date: 1_795_000_000,
            }],
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::test_store(Some(dir.path())).await;
    let account = alice_account(&store, &dovecot).await;
    let mut engine = Engine::new(store.clone(), plain_passwords()).with_options(EngineOptions {
        ..EngineOptions::default()
    });
    let app = router(Arc::new(AppState::new(
        store.clone(),
        "http://127.0.0.1:8080",
    )));
    engine.start_all().await.unwrap();
    // Synced once: the message is there.
    let start = Instant::now();
    loop {
        let r = jmap(
            &app,
            &[],
            json!([["Email/query", {"accountId": "a1"}, "0"]]),
        )
        .await;
        if r["methodResponses"][0][1]["ids"].as_array().map(Vec::len) == Some(1) {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "never synced: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    World {
        dovecot,
        store,
        app,
        account,
        _engine: engine,
        _dir: dir,
    }
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    )
}

/// A request using core, mail and `extra` capabilities.
async fn jmap(app: &axum::Router, extra: &[&str], calls: Value) -> Value {
    let mut using = vec!["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"];
    using.extend_from_slice(extra);
    let body = json!({"using": using, "methodCalls": calls});
    let req = Request::post("/jmap/api")
        .header(header::AUTHORIZATION, basic())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

async fn call(app: &axum::Router, name: &str, args: Value) -> (String, Value) {
    let r = jmap(app, &[QUOTA], json!([[name, args, "0"]])).await;
    let first = &r["methodResponses"][0];
    (first[0].as_str().unwrap().to_string(), first[1].clone())
}

async fn session(app: &axum::Router) -> Value {
    let req = Request::get("/jmap/session")
        .header(header::AUTHORIZATION, basic())
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// The storage quota of Quota/get, waiting (bounded) until `ready` holds for it.
async fn storage_quota(app: &axum::Router, ready: impl Fn(&Value) -> bool) -> (Value, String) {
    let start = Instant::now();
    loop {
        let (name, r) = call(app, "Quota/get", json!({"accountId": "a1"})).await;
        if name == "Quota/get"
            && let Some(q) = r["list"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["resourceType"] == "octets")
            && ready(q)
        {
            return (q.clone(), r["state"].as_str().unwrap().to_string());
        }
        assert!(start.elapsed() < DEADLINE, "no such quota: {name} {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_from_dovecot_grows_with_a_delivery() {
    let w = world(Some("*:storage=10M:messages=1000")).await;
    let (q, state) = storage_quota(&w.app, |_| true).await;
    // RFC 9425 2: IMAP STORAGE is KiB, JMAP octets.
    assert_eq!(q["hardLimit"], 10 * 1024 * 1024, "{q}");
    assert_eq!(q["scope"], "account");
    assert_eq!(q["types"], json!(["Mail"]));
    assert!(
        q.get("warnLimit").is_none() && q.get("softLimit").is_none(),
        "{q}"
    );
    assert!(q["name"].as_str().is_some_and(|n| !n.is_empty()));
    let used = q["used"].as_u64().unwrap();
    assert!(used >= 10_000, "{q}");
    let id = q["id"].as_str().unwrap().to_string();

    // The Session offers the capability for this account, and names it primary.
    let s = session(&w.app).await;
    assert!(
        s["accounts"]["a1"]["accountCapabilities"][QUOTA].is_object(),
        "{s}"
    );
    assert!(s["capabilities"][QUOTA].is_object(), "{s}");
    assert_eq!(s["primaryAccounts"][QUOTA], "a1");

    // The message count quota, found by Quota/query with a filter.
    let (name, r) = call(
        &w.app,
        "Quota/query",
        json!({"accountId": "a1", "filter": {"resourceType": "count"}, "calculateTotal": true}),
    )
    .await;
    assert_eq!(name, "Quota/query", "{r}");
    assert_eq!(r["total"], 1, "{r}");
    let count_id = r["ids"][0].as_str().unwrap().to_string();
    assert_ne!(count_id, id);
    let (_, r) = call(
        &w.app,
        "Quota/get",
        json!({"accountId": "a1", "ids": [count_id, "q999999"], "properties": ["used", "hardLimit"]}),
    )
    .await;
    assert_eq!(r["list"][0]["used"], 1, "{r}");
    assert_eq!(r["list"][0]["hardLimit"], 1000);
    assert!(
        r["list"][0].get("name").is_none(),
        "only what was asked: {r}"
    );
    assert_eq!(r["notFound"], json!(["q999999"]));
    let (name, _) = call(
        &w.app,
        "Quota/queryChanges",
        json!({"accountId": "a1", "sinceQueryState": state}),
    )
    .await;
    assert_eq!(name, "error");

    // A delivery: the engine is told (NOTIFY), syncs INBOX and asks the quota again.
    w.dovecot.deliver(USER, &message(1, 60_000)).unwrap();
    let (q2, _) = storage_quota(&w.app, |q| q["used"].as_u64().unwrap() >= used + 60_000).await;
    assert_eq!(q2["id"], json!(id), "the same quota, updated");
    let (name, r) = call(
        &w.app,
        "Quota/changes",
        json!({"accountId": "a1", "sinceState": state}),
    )
    .await;
    assert_eq!(name, "Quota/changes", "{r}");
    assert!(r["updated"].as_array().unwrap().contains(&json!(id)), "{r}");
    assert!(r["created"].as_array().unwrap().is_empty(), "{r}");
    // Push: the change log says Quota changed since then (what a reconnecting push
    // client is told, and what StateChange carries).
    let since = mail_types::State(state.parse().unwrap());
    let types = w.store.changed_types_since(w.account, since).await.unwrap();
    assert!(types.contains(store::events::PushType::Quota));

    // Without the capability in `using`, the method is unknown (RFC 8620 3.3).
    let r = jmap(
        &w.app,
        &[],
        json!([["Quota/get", {"accountId": "a1"}, "0"]]),
    )
    .await;
    assert_eq!(r["methodResponses"][0][1]["type"], "unknownMethod", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quota_capability_without_the_plugin() {
    let w = world(None).await;
    // Synced (the message is there): still no quota, and no capability.
    assert!(w.store.quotas(w.account).await.unwrap().is_empty());
    let s = session(&w.app).await;
    assert!(
        s["accounts"]["a1"]["accountCapabilities"]
            .get(QUOTA)
            .is_none(),
        "{s}"
    );
    assert!(s["capabilities"].get(QUOTA).is_none(), "{s}");
    let (name, r) = call(&w.app, "Quota/get", json!({"accountId": "a1"})).await;
    assert_eq!(name, "error");
    assert_eq!(r["type"], "accountNotSupportedByMethod", "{r}");
}
