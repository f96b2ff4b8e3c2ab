#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! An account's body policy and daily download budget, against a private Dovecot:
//! - bodies of messages older than `bodies_days` are not fetched in the background, and
//!   Email/get with bodyValues (or a download) still fetches one on the priority lane;
//! - the background body pass stops at its share of the daily budget and the sync status
//!   (the Session's `urn:tidings:params:sync`) says so; what a person asks for may use
//!   the rest, beyond which it is serverUnavailable / 503 with the reason; the bytes of
//!   the day survive a restart of the engine.

use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use engine::{BodyFetcher, Engine};
use http_body_util::BodyExt;
use mail_types::{AccountId, EmailId, Role};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{AccountPolicy, Store};
use testkit::{Dovecot, DovecotOptions, SeedMessage};
use tower::ServiceExt;

mod common;
use common::{PASS, USER, alice_account, plain_passwords};
const DEADLINE: Duration = Duration::from_secs(30);
const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Message `i`, with a body of `pad` bytes after a word found nowhere else.
fn message(i: usize, pad: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Bob <bob@example.org>\r\nTo: {USER}\r\nSubject: note {i}\r\n\
         Message-ID: <note-{i}@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Word quokkaword{i}.\r\n"
    )
    .into_bytes();
    for _ in 0..pad / 64 {
        m.extend_from_slice(b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do.\r\n");
    }
    m
}

/// The engine's lane as the API's `BodyFetch` (what `tidings serve` wires up).
struct Lane(Arc<BodyFetcher>);

impl jmap_server::BodyFetch for Lane {
    fn fetch_body(
        &self,
        account: AccountId,
        email: EmailId,
    ) -> futures::future::BoxFuture<'_, Result<(), jmap_server::FetchError>> {
        Box::pin(async move {
            self.0.fetch(account, email).await.map_err(|e| match e {
                engine::BodyFetchError::Gone => jmap_server::FetchError::Gone,
                engine::BodyFetchError::Unavailable(why) => {
                    jmap_server::FetchError::Unavailable(why)
                }
            })
        })
    }
}

struct World {
    _dovecot: Dovecot,
    store: Arc<dyn Store>,
    account: AccountId,
    _dir: tempfile::TempDir,
}

/// A Dovecot whose INBOX holds `messages` (raw, INTERNALDATE), and a store with the
/// account and `policy`.
async fn world(messages: Vec<(Vec<u8>, i64)>, policy: AccountPolicy) -> World {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    dovecot.add_user(USER, PASS).unwrap();
    let seeded: Vec<SeedMessage> = messages
        .into_iter()
        .map(|(raw, internal_date)| SeedMessage {
            raw,
            flags: vec![],
            internal_date,
        })
        .collect();
    dovecot.seed(USER, "INBOX", &seeded).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = common::test_store(Some(dir.path())).await;
    let account = alice_account(&store, &dovecot).await;
    store.set_account_policy(account, &policy).await.unwrap();
    World {
        _dovecot: dovecot,
        store,
        account,
        _dir: dir,
    }
}

/// Starts an engine (background bodies on, the default) and the API beside it; waits until
/// the account watches (its first pass, bodies included, is done).
async fn start(w: &World) -> (Engine, axum::Router) {
    let mut engine = Engine::new(w.store.clone(), plain_passwords());
    let mut state = AppState::new(w.store.clone(), "http://127.0.0.1:8080");
    state.bodies = Some(Arc::new(Lane(engine.body_fetcher())));
    let app = router(Arc::new(state));
    // Not "ok" from before: a fresh start says "syncing" first.
    w.store
        .set_sync_status(w.account, &mail_types::SyncStatus::New)
        .await
        .unwrap();
    engine.start_all().await.unwrap();
    let start = Instant::now();
    loop {
        let a = w.store.account(w.account).await.unwrap().unwrap();
        if a.status.name() == "ok" {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the account never got to watching: {:?}",
            a.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (engine, app)
}

/// INBOX's messages by UID: (JMAP id, UID, body stored).
async fn inbox(w: &World) -> Vec<(String, u32, bool)> {
    let boxes = w.store.mailboxes(w.account).await.unwrap();
    let inbox = boxes.iter().find(|m| m.role == Some(Role::Inbox)).unwrap();
    let mut msgs = w.store.mailbox_messages(inbox.id).await.unwrap();
    msgs.sort_by_key(|m| m.uid.0);
    msgs.iter()
        .map(|m| (format!("e{}", m.email.0), m.uid.0, m.blob_id.is_some()))
        .collect()
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    )
}

async fn call(app: &axum::Router, name: &str, args: Value) -> (String, Value) {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [[name, args, "0"]],
    });
    let req = Request::post("/jmap/api")
        .header(header::AUTHORIZATION, basic())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let r: Value = serde_json::from_slice(&bytes).unwrap();
    let first = &r["methodResponses"][0];
    (first[0].as_str().unwrap().to_string(), first[1].clone())
}

async fn get(app: &axum::Router, path: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::get(path)
        .header(header::AUTHORIZATION, basic())
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

/// Bytes the account downloaded today, as the store counts them.
async fn used_today(w: &World) -> u64 {
    let day = mail_types::budget::utc_day(now());
    w.store.download_budget(w.account, day).await.unwrap().used
}

/// The account's sync status as the Session shows it.
async fn sync_status(app: &axum::Router) -> Value {
    let (status, body) = get(app, "/jmap/session").await;
    assert_eq!(status, StatusCode::OK);
    let s: Value = serde_json::from_slice(&body).unwrap();
    s["accounts"]["a1"]["accountCapabilities"]["urn:tidings:params:sync"].clone()
}

fn get_with_body(id: &str) -> Value {
    json!({"accountId": "a1", "ids": [id], "properties": ["bodyValues", "textBody"],
           "fetchTextBodyValues": true})
}

fn text_of(r: &Value) -> String {
    let e = &r["list"][0];
    let part = e["textBody"][0]["partId"].as_str().unwrap_or("");
    e["bodyValues"][part]["value"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_bodies_are_left_for_when_someone_asks() {
    // UIDs 1-3 received 30 days ago, 4-6 an hour ago; bodies of the last 7 days only.
    let t = now();
    let messages = (0..6)
        .map(|i| {
            let date = if i < 3 { t - 30 * DAY } else { t - 3600 };
            (message(i, 0), date + i as i64)
        })
        .collect();
    let w = world(
        messages,
        AccountPolicy {
            bodies_days: Some(7),
            daily_download_mb: None,
        },
    )
    .await;
    let (engine, app) = start(&w).await;
    let msgs = inbox(&w).await;
    assert_eq!(msgs.len(), 6);
    let stored: Vec<bool> = msgs.iter().map(|m| m.2).collect();
    assert_eq!(
        stored,
        [false, false, false, true, true, true],
        "only the last 7 days' bodies in the background"
    );
    // A generic server has no limit: the budget only counts.
    let s = sync_status(&app).await;
    assert_eq!(s["download"]["limitMb"], Value::Null, "{s}");
    assert_eq!(s["download"]["reached"], false, "{s}");
    assert!(used_today(&w).await > 0);

    // On demand: Email/get with bodyValues, and a download.
    let (name, r) = call(&app, "Email/get", get_with_body(&msgs[0].0)).await;
    assert_eq!(name, "Email/get", "{r}");
    assert!(text_of(&r).contains("quokkaword0"), "{r}");
    let (_, r) = call(
        &app,
        "Email/get",
        json!({"accountId": "a1", "ids": [msgs[1].0], "properties": ["blobId"]}),
    )
    .await;
    let blob = r["list"][0]["blobId"].as_str().unwrap().to_string();
    let (status, bytes) = get(
        &app,
        &format!("/jmap/download/a1/{blob}/m.eml?type=message/rfc822"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, message(1, 0));
    let stored: Vec<bool> = inbox(&w).await.iter().map(|m| m.2).collect();
    assert_eq!(stored, [true, true, false, true, true, true]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_stops_the_background_pass_and_survives_a_restart() {
    // Five messages of ~300 KB; a limit of 1 MB a day: the background pass may use 90%
    // (900 KB), so it stores the newest two and stops before the third (with the headers
    // and the protocol it would not fit).
    const PAD: usize = 300_000;
    let t = now();
    let messages = (0..5)
        .map(|i| (message(i, PAD), t - 3600 + i as i64))
        .collect();
    let w = world(
        messages,
        AccountPolicy {
            bodies_days: None,
            daily_download_mb: Some(1),
        },
    )
    .await;
    let (engine, app) = start(&w).await;
    let msgs = inbox(&w).await;
    let stored: Vec<bool> = msgs.iter().map(|m| m.2).collect();
    assert_eq!(
        stored,
        [false, false, false, true, true],
        "newest first, then stop"
    );
    let s = sync_status(&app).await;
    assert_eq!(s["download"]["reached"], true, "{s}");
    assert_eq!(s["download"]["limitMb"], 1, "{s}");
    assert_eq!(s["download"]["usedMb"], 0, "{s}");
    let note = s["download"]["note"].as_str().unwrap();
    assert!(
        note.starts_with("download budget reached: 0 of 1 MB today"),
        "{s}"
    );
    assert!(note.contains("resume at 00:00 UTC"), "{s}");
    let used = used_today(&w).await;
    assert!((600_000..700_000).contains(&used), "{used}");

    // A person asking may use the rest of the day's budget (~300 KB of the ~350 left)...
    let (name, r) = call(&app, "Email/get", get_with_body(&msgs[2].0)).await;
    assert_eq!(name, "Email/get", "{r}");
    assert!(text_of(&r).contains("quokkaword2"), "{r}");
    // ...and not more: the provider would lock the account. Sizes decide before the
    // FETCH, so the next one is refused though the day's total is still under 1 MB.
    let (name, r) = call(&app, "Email/get", get_with_body(&msgs[1].0)).await;
    assert_eq!(name, "error", "{r}");
    assert_eq!(r["type"], "serverUnavailable", "{r}");
    assert!(
        r["description"]
            .as_str()
            .unwrap_or("")
            .contains("daily download budget is used up"),
        "{r}"
    );
    let (_, r) = call(
        &app,
        "Email/get",
        json!({"accountId": "a1", "ids": [msgs[0].0], "properties": ["blobId"]}),
    )
    .await;
    let blob = r["list"][0]["blobId"].as_str().unwrap().to_string();
    let (status, _) = get(
        &app,
        &format!("/jmap/download/a1/{blob}/m.eml?type=message/rfc822"),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let used_before = used_today(&w).await;
    assert!((900_000..1_000_000).contains(&used_before), "{used_before}");
    engine.shutdown().await;

    // A restart does not forget the day's bytes: nothing more in the background, and
    // the status still says why.
    let (engine, app) = start(&w).await;
    let stored: Vec<bool> = inbox(&w).await.iter().map(|m| m.2).collect();
    assert_eq!(stored, [false, false, true, true, true]);
    let s = sync_status(&app).await;
    assert_eq!(s["download"]["reached"], true, "{s}");
    assert!(used_today(&w).await >= used_before);
    engine.shutdown().await;
}
