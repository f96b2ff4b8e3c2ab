#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! Every Email is complete the moment someone asks (DESIGN.md invariant 8): against a
//! private Dovecot, with the engine's background body pass held back (only headers are
//! synced), Email/get, a download and Email/parse fetch the message on the priority lane
//! and answer with its content; a message expunged on the server before its body was
//! fetched is notFound / 404; a stopped server is serverUnavailable / 503.

use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use engine::{BodyFetcher, Engine, EngineOptions};
use http_body_util::BodyExt;
use mail_types::{AccountId, Role};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, SeedMessage};
use tower::ServiceExt;

mod common;
use common::{PASS, USER, alice_account, plain_passwords};
const DEADLINE: Duration = Duration::from_secs(30);
const MESSAGES: usize = 6;

/// Message `i`: a text body with a word found nowhere else, and a small attachment.
fn message(i: usize) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.org>\r\nTo: {USER}\r\nSubject: report {i}\r\n\
         Message-ID: <report-{i}@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:0{i} +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         The figures of quarter {i}: zanzibarword{i}.\r\n\
         --b\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"data{i}.bin\"\r\n\r\nDATA{i}\r\n--b--\r\n"
    )
    .into_bytes()
}

/// The engine's lane as the API's `BodyFetch` (what `tidings serve` wires up).
struct Lane(Arc<BodyFetcher>);

impl jmap_server::BodyFetch for Lane {
    fn fetch_body(
        &self,
        account: AccountId,
        email: mail_types::EmailId,
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
    dovecot: Dovecot,
    store: Arc<dyn Store>,
    app: axum::Router,
    engine: Option<Engine>,
    /// JMAP ids of the seeded messages, in seeding order, and their UIDs.
    emails: Vec<(String, u32)>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    dovecot.add_user(USER, PASS).unwrap();
    let seeded: Vec<SeedMessage> = (0..MESSAGES)
        .map(|i| SeedMessage {
            raw: message(i),
            flags: vec![],
            internal_date: 1_795_000_000 + i as i64,
        })
        .collect();
    dovecot.seed(USER, "INBOX", &seeded).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = common::test_store(Some(dir.path())).await;
    let account = alice_account(&store, &dovecot).await;
    // Headers only: the background pass never stores a body, so every body a request
    // gets was fetched for it.
    let mut engine = Engine::new(store.clone(), plain_passwords()).with_options(EngineOptions {
        background_bodies: false,
        ..EngineOptions::default()
    });
    let mut state = AppState::new(store.clone(), "http://127.0.0.1:8080");
    state.bodies = Some(Arc::new(Lane(engine.body_fetcher())));
    let app = router(Arc::new(state));
    engine.start_all().await.unwrap();

    let start = Instant::now();
    let emails = loop {
        let boxes = store.mailboxes(account).await.unwrap();
        if let Some(inbox) = boxes.iter().find(|m| m.role == Some(Role::Inbox)) {
            let mut msgs = store.mailbox_messages(inbox.id).await.unwrap();
            if msgs.len() == MESSAGES {
                assert!(
                    msgs.iter().all(|m| m.blob_id.is_none()),
                    "the background pass was held back"
                );
                msgs.sort_by_key(|m| m.uid.0);
                break msgs
                    .iter()
                    .map(|m| (format!("e{}", m.email.0), m.uid.0))
                    .collect();
            }
        }
        assert!(start.elapsed() < DEADLINE, "the headers never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    World {
        dovecot,
        store,
        app,
        engine: Some(engine),
        emails,
        _dir: dir,
    }
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    )
}

async fn jmap(app: &axum::Router, calls: Value) -> Value {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": calls,
    });
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
async fn call(app: &axum::Router, name: &str, args: Value) -> (String, Value) {
    let r = jmap(app, json!([[name, args, "0"]])).await;
    let first = &r["methodResponses"][0];
    (first[0].as_str().unwrap().to_string(), first[1].clone())
}

async fn download(app: &axum::Router, blob: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::get(format!(
        "/jmap/download/a1/{blob}/m.eml?type=message/rfc822"
    ))
    .header(header::AUTHORIZATION, basic())
    .body(Body::empty())
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

fn get_with_body(id: &str) -> Value {
    json!({
        "accountId": "a1",
        "ids": [id],
        "properties": ["blobId", "preview", "hasAttachment", "bodyValues", "textBody",
                       "attachments", "header:Subject:asText"],
        "fetchTextBodyValues": true,
    })
}

/// The blobId an Email has before its body is stored (no body property asked).
async fn blob_id(app: &axum::Router, id: &str) -> String {
    let (name, r) = call(
        app,
        "Email/get",
        json!({"accountId": "a1", "ids": [id], "properties": ["blobId", "subject"]}),
    )
    .await;
    assert_eq!(name, "Email/get", "{r}");
    r["list"][0]["blobId"]
        .as_str()
        .unwrap_or_else(|| panic!("no blobId before the body: {r}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_not_stored_yet_are_fetched_when_asked() {
    let w = world().await;
    let (e0, e1, e2) = (&w.emails[0].0, &w.emails[1].0, &w.emails[2].0);

    // RFC 8621 4.1.1: blobId is there from the header on, and never changes.
    let before = blob_id(&w.app, e0).await;
    assert!(before.starts_with("bm"), "{before}");

    // Email/get with bodyValues: fetched now, complete; two requests for the same
    // Email at once share the fetch and both answer.
    let (a, b) = tokio::join!(
        call(&w.app, "Email/get", get_with_body(e0)),
        call(&w.app, "Email/get", get_with_body(e0)),
    );
    for (name, r) in [a, b] {
        assert_eq!(name, "Email/get", "{r}");
        let e = &r["list"][0];
        let part = e["textBody"][0]["partId"].as_str().unwrap();
        let text = e["bodyValues"][part]["value"].as_str().unwrap();
        assert!(text.contains("zanzibarword0"), "{r}");
        assert_eq!(e["blobId"], before, "the blobId stays what it was");
        assert_eq!(e["hasAttachment"], true, "{r}");
        assert!(e["preview"].as_str().unwrap().contains("quarter 0"), "{r}");
        assert_eq!(e["attachments"][0]["name"], "data0.bin", "{r}");
        assert_eq!(e["header:Subject:asText"], "report 0", "{r}");
    }
    // Stored through the normal body path: the full-text index has it.
    let (_, q) = call(
        &w.app,
        "Email/query",
        json!({"accountId": "a1", "filter": {"body": "zanzibarword0"}}),
    )
    .await;
    assert_eq!(q["ids"], json!([e0]), "{q}");
    assert_eq!(blob_id(&w.app, e0).await, before);

    // A download of a message not fetched yet: the exact bytes from the server.
    let blob1 = blob_id(&w.app, e1).await;
    let (status, bytes) = download(&w.app, &blob1).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, message(1));

    // Email/parse of a message blob not fetched yet.
    let blob2 = blob_id(&w.app, e2).await;
    let (name, r) = call(
        &w.app,
        "Email/parse",
        json!({"accountId": "a1", "blobIds": [blob2], "properties": ["subject", "textBody"],
               "fetchTextBodyValues": true}),
    )
    .await;
    assert_eq!(name, "Email/parse", "{r}");
    assert_eq!(r["parsed"][&blob2]["subject"], "report 2", "{r}");

    // A list page: preview and hasAttachment of messages not fetched yet are complete
    // too (fetched together on the lane).
    let (e3, e4) = (&w.emails[3].0, &w.emails[4].0);
    let (name, r) = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [e3, e4],
               "properties": ["subject", "preview", "hasAttachment", "blobId"]}),
    )
    .await;
    assert_eq!(name, "Email/get", "{r}");
    for (i, e) in [3, 4].iter().zip(r["list"].as_array().unwrap()) {
        assert!(
            e["preview"]
                .as_str()
                .unwrap()
                .contains(&format!("quarter {i}")),
            "{r}"
        );
        assert_eq!(e["hasAttachment"], true, "{r}");
        assert!(e["blobId"].as_str().unwrap().starts_with("bm"), "{r}");
    }

    // Email/import of a message blob not fetched yet: the new Email is its exact bytes.
    let blob5 = blob_id(&w.app, &w.emails[5].0).await;
    let (_, boxes) = call(
        &w.app,
        "Mailbox/get",
        json!({"accountId": "a1", "properties": ["role"]}),
    )
    .await;
    let archive_or_inbox = boxes["list"][0]["id"].as_str().unwrap().to_string();
    let (name, r) = call(
        &w.app,
        "Email/import",
        json!({"accountId": "a1", "emails": {"k": {"blobId": blob5,
               "mailboxIds": {archive_or_inbox: true}}}}),
    )
    .await;
    assert_eq!(name, "Email/import", "{r}");
    assert_eq!(r["created"]["k"]["size"], message(5).len(), "{r}");
    assert_eq!(
        r["created"]["k"]["blobId"],
        format!("b{}", mime::blob_id(&message(5))),
        "an Email stored whole is named by its content: {r}"
    );

    // Every body came on demand: the background pass stays held back.
    let views = w
        .store
        .emails(
            AccountId(1),
            &w.emails
                .iter()
                .map(|(id, _)| mail_types::EmailId(id[1..].parse().unwrap()))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert!(views.iter().all(|v| v.blob_id.is_some()));
    w.engine.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_expunged_before_its_body_was_fetched_is_not_found() {
    let mut w = world().await;
    // Stop the sync, so the store keeps the Emails the server no longer has.
    w.engine.take().unwrap().shutdown().await;
    let (e0, uid0) = w.emails[0].clone();
    let (e1, uid1) = w.emails[1].clone();
    let blob1 = blob_id(&w.app, &e1).await;
    let mut other = ImapClient::login(w.dovecot.imap_port(), USER, PASS).unwrap();
    other.select("INBOX").unwrap();
    other.expunge_uids(&format!("{uid0},{uid1}")).unwrap();
    other.logout().unwrap();

    let (name, r) = call(&w.app, "Email/get", get_with_body(&e0)).await;
    assert_eq!(name, "Email/get", "{r}");
    assert_eq!(r["notFound"], json!([e0]), "{r}");
    assert_eq!(r["list"], json!([]), "never a half-made Email: {r}");
    let (status, _) = download(&w.app, &blob1).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The third is still there and still answers.
    let (name, r) = call(&w.app, "Email/get", get_with_body(&w.emails[2].0)).await;
    assert_eq!(name, "Email/get", "{r}");
    assert_eq!(r["list"][0]["hasAttachment"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_gives_server_unavailable() {
    let mut w = world().await;
    w.engine.take().unwrap().shutdown().await;
    let e0 = w.emails[0].0.clone();
    let blob0 = blob_id(&w.app, &e0).await;
    w.dovecot.stop();

    let started = Instant::now();
    let (name, r) = call(&w.app, "Email/get", get_with_body(&e0)).await;
    assert_eq!(name, "error", "{r}");
    assert_eq!(r["type"], "serverUnavailable", "{r}");
    let (status, _) = download(&w.app, &blob0).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < DEADLINE, "the wait is bounded");
    // Properties that need no body still answer.
    assert_eq!(blob_id(&w.app, &e0).await, blob0);
}
