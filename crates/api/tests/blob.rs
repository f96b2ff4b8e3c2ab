#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! JMAP Blob (RFC 9404) against a private Dovecot, with the background body pass held
//! back so an Email's blob is fetched on demand: Blob/upload from text, base64 and a range
//! of an Email's message (concatenated), Blob/get with offset/length and digests (checked
//! against sha1/sha2 computed here), Blob/lookup of a message blob and an attachment's
//! blob, and the errors RFC 9404 names.

use api::auth::hash_password;
use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use engine::{BodyFetcher, Engine, EngineOptions};
use http_body_util::BodyExt;
use mail_types::{AccountId, AccountKind, Role, Security};
use serde_json::{Value, json};
use sha2::Digest as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{NewAccount, ServerSettings, SqliteStore, Store};
use testkit::{Dovecot, DovecotOptions, SeedMessage};
use tower::ServiceExt;

mod common;
use common::{PASS, USER, alice_account, plain_passwords};
const DEADLINE: Duration = Duration::from_secs(30);
const BLOB: &str = "urn:ietf:params:jmap:blob";

/// A message with a text body and an attachment.
fn message(i: usize) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.org>\r\nTo: {USER}\r\nSubject: report {i}\r\n\
         Message-ID: <blob-{i}@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:0{i} +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Quarter {i}: zanzibarword{i}.\r\n\
         --b\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"data{i}.bin\"\r\n\r\nDATA{i}\r\n--b--\r\n"
    )
    .into_bytes()
}

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
    _dovecot: Dovecot,
    app: axum::Router,
    /// JMAP ids of the two Emails, in seeding order; the Inbox's id.
    emails: Vec<String>,
    inbox: String,
    _engine: Engine,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    dovecot.add_user(USER, PASS).unwrap();
    let seeded: Vec<SeedMessage> = (0..2)
        .map(|i| SeedMessage {
            raw: message(i),
            flags: vec![],
            internal_date: 1_795_000_000 + i as i64,
        })
        .collect();
    dovecot.seed(USER, "INBOX", &seeded).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::test_store(Some(dir.path())).await;
    let account = alice_account(&store, &dovecot).await;
    // Headers only: an Email's blob is read through the priority lane.
    let mut engine = Engine::new(store.clone(), plain_passwords()).with_options(EngineOptions {
        background_bodies: false,
        ..EngineOptions::default()
    });
    let mut state = AppState::new(store.clone(), "http://127.0.0.1:8080");
    state.bodies = Some(Arc::new(Lane(engine.body_fetcher())));
    let app = router(Arc::new(state));
    engine.start_all().await.unwrap();
    let start = Instant::now();
    let (emails, inbox) = loop {
        let boxes = store.mailboxes(account).await.unwrap();
        if let Some(inbox) = boxes.iter().find(|m| m.role == Some(Role::Inbox)) {
            let mut msgs = store.mailbox_messages(inbox.id).await.unwrap();
            if msgs.len() == 2 {
                msgs.sort_by_key(|m| m.uid.0);
                break (
                    msgs.iter().map(|m| format!("e{}", m.email.0)).collect(),
                    format!("m{}", inbox.id.0),
                );
            }
        }
        assert!(start.elapsed() < DEADLINE, "the headers never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    World {
        _dovecot: dovecot,
        app,
        emails,
        inbox,
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

async fn jmap(app: &axum::Router, using: &[&str], calls: Value) -> Value {
    let mut all = vec!["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"];
    all.extend_from_slice(using);
    let body = json!({"using": all, "methodCalls": calls});
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
    let r = jmap(app, &[BLOB], json!([[name, args, "0"]])).await;
    let first = &r["methodResponses"][0];
    (first[0].as_str().unwrap().to_string(), first[1].clone())
}

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_upload_get_and_lookup() {
    let w = world().await;
    let (e0, e1) = (&w.emails[0], &w.emails[1]);

    // RFC 9404 3.1: the capability and its limits, in the account and the Session.
    let req = Request::get("/jmap/session")
        .header(header::AUTHORIZATION, basic())
        .body(Body::empty())
        .unwrap();
    let resp = w.app.clone().oneshot(req).await.unwrap();
    let s: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let cap = &s["accounts"]["a1"]["accountCapabilities"][BLOB];
    assert!(cap["maxDataSources"].as_u64().unwrap() >= 64, "{s}");
    assert!(cap["maxSizeBlobSet"].as_u64().is_some(), "{s}");
    assert_eq!(
        cap["supportedTypeNames"],
        json!(["Mailbox", "Thread", "Email"])
    );
    assert_eq!(cap["supportedDigestAlgorithms"], json!(["sha", "sha-256"]));
    assert!(s["capabilities"][BLOB].is_object());

    // The Email's blob before its body is stored: `bm<id>`.
    let (_, r) = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [e0], "properties": ["blobId", "threadId"]}),
    )
    .await;
    let email_blob = r["list"][0]["blobId"].as_str().unwrap().to_string();
    let thread = r["list"][0]["threadId"].as_str().unwrap().to_string();
    assert!(email_blob.starts_with("bm"), "{r}");
    let raw = message(0);

    // Blob/upload: text, base64, then a range of the Email's message (fetched on the
    // priority lane now), and in a second creation a reference to the first by `#id`.
    let from = raw.windows(4).position(|w| w == b"Bob ").unwrap();
    let r = jmap(
        &w.app,
        &[BLOB],
        json!([
            ["Blob/upload", {"accountId": "a1", "create": {
                "mix": {"type": "text/plain", "data": [
                    {"data:asText": "Hello "},
                    {"data:asBase64": b64(b"wide ")},
                    {"blobId": email_blob, "offset": from, "length": 3},
                ]},
                "twice": {"data": [{"blobId": "#mix"}, {"blobId": "#mix", "offset": 6}]},
            }}, "0"],
            ["Blob/get", {"accountId": "a1", "ids": ["#mix", "#twice"],
                "properties": ["data:asText", "size", "digest:sha", "digest:sha-256"]}, "1"],
        ]),
    )
    .await;
    let up = &r["methodResponses"][0][1];
    assert_eq!(r["methodResponses"][0][0], "Blob/upload", "{r}");
    let mix = &up["created"]["mix"];
    assert_eq!(mix["size"], 14, "{r}");
    assert_eq!(mix["type"], "text/plain");
    let want = b"Hello wide Bob";
    assert_eq!(
        mix["id"],
        format!("b{}", hex::encode(sha2::Sha256::digest(want))),
        "content addressed like HTTP uploads"
    );
    let got = &r["methodResponses"][1][1]["list"];
    assert_eq!(got[0]["data:asText"], "Hello wide Bob", "{r}");
    assert_eq!(got[0]["digest:sha-256"], b64(&sha2::Sha256::digest(want)));
    assert_eq!(got[0]["digest:sha"], b64(&sha1::Sha1::digest(want)));
    assert_eq!(got[1]["data:asText"], "Hello wide Bobwide Bob");
    let mix_id = mix["id"].as_str().unwrap().to_string();

    // Blob/get with offset/length; digests of the range; a range past the end.
    let (_, r) = call(
        &w.app,
        "Blob/get",
        json!({"accountId": "a1", "ids": [mix_id], "offset": 6, "length": 4,
               "properties": ["data:asBase64", "digest:sha-256", "size"]}),
    )
    .await;
    assert_eq!(r["list"][0]["data:asBase64"], b64(b"wide"), "{r}");
    assert_eq!(
        r["list"][0]["digest:sha-256"],
        b64(&sha2::Sha256::digest(b"wide"))
    );
    assert_eq!(r["list"][0]["size"], 14);
    assert!(r["list"][0].get("isTruncated").is_none());
    let (_, r) = call(
        &w.app,
        "Blob/get",
        json!({"accountId": "a1", "ids": [mix_id], "offset": 11, "length": 100}),
    )
    .await;
    assert_eq!(r["list"][0]["data:asText"], "Bob", "{r}");
    assert_eq!(r["list"][0]["isTruncated"], true);

    // The whole message of the other Email, not stored yet: fetched for Blob/get.
    let (_, r) = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [e1], "properties": ["blobId"]}),
    )
    .await;
    let e1_blob = r["list"][0]["blobId"].as_str().unwrap().to_string();
    let (_, r) = call(
        &w.app,
        "Blob/get",
        json!({"accountId": "a1", "ids": [e1_blob, "bnothere", "bm999999"],
               "properties": ["data", "digest:sha-256", "size"]}),
    )
    .await;
    let raw1 = message(1);
    assert_eq!(
        r["list"][0]["data:asText"],
        String::from_utf8(raw1.clone()).unwrap(),
        "{r}"
    );
    assert_eq!(
        r["list"][0]["digest:sha-256"],
        b64(&sha2::Sha256::digest(&raw1))
    );
    assert_eq!(r["list"][0]["size"], raw1.len());
    assert_eq!(r["notFound"], json!(["bnothere", "bm999999"]));

    // Blob/lookup: the message blob and its attachment's blob belong to Email e0, its
    // thread and the Inbox; the upload to nothing; an unknown blob is notFound.
    let (_, r) = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [e0], "properties": ["attachments"]}),
    )
    .await;
    let attachment = r["list"][0]["attachments"][0]["blobId"]
        .as_str()
        .unwrap()
        .to_string();
    let (name, r) = call(
        &w.app,
        "Blob/lookup",
        json!({"accountId": "a1", "typeNames": ["Email", "Mailbox", "Thread"],
               "ids": [email_blob, attachment, mix_id, "bm424242"]}),
    )
    .await;
    assert_eq!(name, "Blob/lookup", "{r}");
    let expect = json!({"Email": [e0], "Mailbox": [w.inbox], "Thread": [thread]});
    assert_eq!(r["list"][0]["id"], json!(email_blob));
    assert_eq!(r["list"][0]["matchedIds"], expect, "{r}");
    assert_eq!(r["list"][1]["id"], json!(attachment));
    assert_eq!(r["list"][1]["matchedIds"], expect, "{r}");
    assert_eq!(
        r["list"][2]["matchedIds"],
        json!({"Email": [], "Mailbox": [], "Thread": []})
    );
    assert_eq!(r["notFound"], json!(["bm424242"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_errors() {
    let w = world().await;
    // Too many data sources: tooLarge (RFC 9404 4.1); an unknown blob: blobNotFound
    // naming it; a range outside the blob and bad base64: invalidProperties.
    let many: Vec<Value> = (0..65).map(|_| json!({"data:asText": "x"})).collect();
    let (_, r) = call(
        &w.app,
        "Blob/upload",
        json!({"accountId": "a1", "create": {
            "many": {"data": many},
            "missing": {"data": [{"blobId": "bm424242"}]},
            "range": {"data": [{"data:asText": "abc"}]},
            "bad64": {"data": [{"data:asBase64": "!!!"}]},
        }}),
    )
    .await;
    assert_eq!(r["notCreated"]["many"]["type"], "tooLarge", "{r}");
    assert_eq!(r["notCreated"]["missing"]["type"], "blobNotFound", "{r}");
    assert_eq!(r["notCreated"]["missing"]["notFound"], json!(["bm424242"]));
    assert_eq!(r["notCreated"]["bad64"]["type"], "invalidProperties", "{r}");
    let small = r["created"]["range"]["id"].as_str().unwrap().to_string();
    let (_, r) = call(
        &w.app,
        "Blob/upload",
        json!({"accountId": "a1", "create": {
            "past": {"data": [{"blobId": small, "offset": 2, "length": 5}]},
        }}),
    )
    .await;
    assert_eq!(r["notCreated"]["past"]["type"], "invalidProperties", "{r}");

    // Blob/get of an unknown blob is notFound; an unknown type name for Blob/lookup is
    // unknownDataType; without the capability in `using`, unknownMethod.
    let (_, r) = call(
        &w.app,
        "Blob/get",
        json!({"accountId": "a1", "ids": [format!("b{}", "0".repeat(64))]}),
    )
    .await;
    assert_eq!(
        r["notFound"],
        json!([format!("b{}", "0".repeat(64))]),
        "{r}"
    );
    let (name, r) = call(
        &w.app,
        "Blob/lookup",
        json!({"accountId": "a1", "typeNames": ["Calendar"], "ids": [small]}),
    )
    .await;
    assert_eq!(
        (name.as_str(), &r["type"]),
        ("error", &json!("unknownDataType")),
        "{r}"
    );
    let r = jmap(
        &w.app,
        &[],
        json!([["Blob/get", {"accountId": "a1", "ids": [small]}, "0"]]),
    )
    .await;
    assert_eq!(r["methodResponses"][0][1]["type"], "unknownMethod", "{r}");

    // An upload by HTTP is a blob like the others.
    let req = Request::post("/jmap/upload/a1/")
        .header(header::AUTHORIZATION, basic())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(vec![0xffu8, 0x00, 0x41]))
        .unwrap();
    let resp = w.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let up: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let (_, r) = call(
        &w.app,
        "Blob/get",
        json!({"accountId": "a1", "ids": [up["blobId"]]}),
    )
    .await;
    // Not UTF-8: `data` comes as base64, flagged (RFC 9404 4.2).
    assert_eq!(
        r["list"][0]["data:asBase64"],
        b64(&[0xff, 0x00, 0x41]),
        "{r}"
    );
    assert_eq!(r["list"][0]["isEncodingProblem"], true);
    assert_eq!(r["list"][0]["size"], 3);
}

/// RFC 9404 Blob/get of a large blob as base64 takes the server's large-message budget
/// before reading it, like Email/get of a large body: a second such request waits until
/// the first answer has been written out, so two do not hold the blob (and its base64)
/// in memory at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blob_gets_take_turns() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let user = store
        .create_user("alice", &hash_password("pw").unwrap())
        .await
        .unwrap();
    let account = store
        .create_account(&NewAccount {
            user,
            name: "mail".into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: 1,
                security: Security::None,
                username: USER.into(),
                password_enc: vec![],
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await
        .unwrap();
    // Larger than half the budget: one answer at a time.
    let big: Vec<u8> = (0..40u32 << 20).map(|i| (i % 251) as u8).collect();
    let record = store
        .put_upload(account, "application/octet-stream", big)
        .await
        .unwrap();
    let app = router(Arc::new(AppState::new(store, "http://127.0.0.1:8080")));
    let request = || {
        let body = json!({
            "using": ["urn:ietf:params:jmap:core", BLOB],
            "methodCalls": [["Blob/get", {"accountId": "a1",
                "ids": [format!("b{}", record.blob_id)],
                "properties": ["data:asBase64", "size"]}, "0"]],
        });
        Request::post("/jmap/api")
            .header(header::AUTHORIZATION, basic())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    // The first answer is under way but not read yet: it holds the budget.
    let first = app.clone().oneshot(request()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let mut second = tokio::spawn(app.clone().oneshot(request()));
    // Without the budget the second answer is made in a few seconds (debug build); with
    // it, not before the first is read.
    assert!(
        tokio::time::timeout(Duration::from_secs(15), &mut second)
            .await
            .is_err(),
        "a second large answer did not wait its turn"
    );
    // Once the first answer is out, the second is made.
    let body = first.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["methodResponses"][0][1]["list"][0]["size"], 40u64 << 20);
    let second = tokio::time::timeout(DEADLINE, second)
        .await
        .expect("the second answer once the first was written")
        .unwrap()
        .unwrap();
    let body = second.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let data = v["methodResponses"][0][1]["list"][0]["data:asBase64"]
        .as_str()
        .unwrap();
    assert_eq!(data.len(), (40usize << 20).div_ceil(3) * 4);
}
