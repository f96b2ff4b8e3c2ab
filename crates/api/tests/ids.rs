#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! JMAP ids are never reused (RFC 8620 1.2, DESIGN.md invariant 8), through the JMAP API
//! against a private Dovecot: a draft created, destroyed and created again (the way a
//! client saves and sends drafts) never gets the id of the one before, nor does a
//! Mailbox, an Identity, an EmailSubmission or a Thread, and a restart (the store
//! reopened, a new router and engine) changes nothing.

mod common;

use api::auth::hash_password;
use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, header};
use base64::Engine as _;
use common::StoreAt;
use engine::{Engine, PasswordSource};
use http_body_util::BodyExt;
use mail_types::{AccountKind, Role, Security};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{NewAccount, ServerSettings, Store};
use testkit::{Dovecot, DovecotOptions};
use tower::ServiceExt;

const USER: &str = "alice@example.org";
const PASS: &str = "imap-pw";
const DEADLINE: Duration = Duration::from_secs(30);

fn plain_passwords() -> PasswordSource {
    Arc::new(|a: &store::AccountRecord| Ok(String::from_utf8(a.server.password_enc.clone())?))
}

struct Server {
    store: Arc<dyn Store>,
    app: axum::Router,
    engine: Engine,
}

/// Opens the store at `path` and starts the engine and the API on it, as `serve` does.
async fn start(at: &StoreAt) -> Server {
    let store = at.open().await;
    let mut engine = Engine::new(store.clone(), plain_passwords());
    engine.start_all().await.unwrap();
    let app = router(Arc::new(AppState::new(
        store.clone(),
        "http://127.0.0.1:8080",
    )));
    Server { store, app, engine }
}

async fn call(app: &axum::Router, name: &str, args: Value) -> Value {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail",
                  "urn:ietf:params:jmap:submission"],
        "methodCalls": [[name, args, "0"]],
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
    let r: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(r["methodResponses"][0][0], name, "{r}");
    r["methodResponses"][0][1].clone()
}

fn created(r: &Value, key: &str) -> Value {
    r["created"][key].clone()
}

/// The ids handed out so far, per type: a second one with the same id is a reuse.
#[derive(Default)]
struct Seen(BTreeMap<&'static str, Vec<String>>);

impl Seen {
    fn add(&mut self, kind: &'static str, id: &Value) -> String {
        let id = id
            .as_str()
            .unwrap_or_else(|| panic!("{kind}: no id: {id}"))
            .to_owned();
        let list = self.0.entry(kind).or_default();
        assert!(
            !list.contains(&id),
            "{kind} id {id} named another object before (ids so far: {list:?})"
        );
        list.push(id.clone());
        id
    }
}

async fn drafts(s: &Server) -> String {
    let start = Instant::now();
    loop {
        let account = s.store.list_accounts().await.unwrap()[0].id;
        let boxes = s.store.mailboxes(account).await.unwrap();
        if let Some(m) = boxes.iter().find(|m| m.role == Some(Role::Drafts)) {
            return format!("m{}", m.id.0);
        }
        assert!(start.elapsed() < DEADLINE, "Drafts never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One round of every type: create, destroy the newest, create again (the last of each
/// is left in place); every id is recorded in `seen`.
async fn round(s: &Server, seen: &mut Seen, n: u32) {
    let drafts = drafts(s).await;
    for step in 0..2 {
        let r = call(
            &s.app,
            "Email/set",
            json!({"accountId": "a1", "create": {"d": {
                "mailboxIds": {&drafts: true},
                "keywords": {"$draft": true},
                "from": [{"email": USER}],
                "to": [{"email": USER}],
                "subject": format!("draft {n}.{step}"),
                "bodyValues": {"b": {"value": "text"}},
                "textBody": [{"partId": "b", "type": "text/plain"}]
            }}}),
        )
        .await;
        let d = created(&r, "d");
        let email = seen.add("Email", &d["id"]);
        seen.add("Thread", &d["threadId"]);
        let r = call(
            &s.app,
            "Mailbox/set",
            json!({"accountId": "a1", "create": {"m": {"name": format!("Folder {n}.{step}")}}}),
        )
        .await;
        let mailbox = seen.add("Mailbox", &created(&r, "m")["id"]);
        let r = call(
            &s.app,
            "Identity/set",
            json!({"accountId": "a1", "create": {"i": {"email": USER, "name": format!("Me {n}.{step}")}}}),
        )
        .await;
        let identity = seen.add("Identity", &created(&r, "i")["id"]);
        // Held for ten minutes: queued, never sent here.
        let r = call(
            &s.app,
            "EmailSubmission/set",
            json!({"accountId": "a1", "create": {"s": {"identityId": &identity, "emailId": &email,
                "envelope": {"mailFrom": {"email": USER, "parameters": {"HOLDFOR": "600"}},
                    "rcptTo": [{"email": USER}]}}}}),
        )
        .await;
        let submission = seen.add("EmailSubmission", &created(&r, "s")["id"]);
        if step == 0 {
            // The newest of each goes: the next one must not take its id.
            let r = call(
                &s.app,
                "EmailSubmission/set",
                json!({"accountId": "a1", "destroy": [submission]}),
            )
            .await;
            assert_eq!(r["destroyed"].as_array().map(Vec::len), Some(1), "{r}");
            let r = call(
                &s.app,
                "Email/set",
                json!({"accountId": "a1", "destroy": [email]}),
            )
            .await;
            assert_eq!(r["destroyed"].as_array().map(Vec::len), Some(1), "{r}");
            let r = call(
                &s.app,
                "Mailbox/set",
                json!({"accountId": "a1", "destroy": [mailbox]}),
            )
            .await;
            assert_eq!(r["destroyed"].as_array().map(Vec::len), Some(1), "{r}");
            let r = call(
                &s.app,
                "Identity/set",
                json!({"accountId": "a1", "destroy": [identity]}),
            )
            .await;
            assert_eq!(r["destroyed"].as_array().map(Vec::len), Some(1), "{r}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_ids_are_never_reused_after_a_destroy_or_a_restart() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    dovecot.add_user(USER, PASS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let at = StoreAt::new(Some(dir.path()));
    {
        let store = at.open().await;
        let user = store
            .create_user("alice", &hash_password("pw").unwrap())
            .await
            .unwrap();
        let server = |port| ServerSettings {
            host: "127.0.0.1".into(),
            port,
            security: Security::None,
            username: USER.into(),
            password_enc: PASS.as_bytes().to_vec(),
            ca_file: None,
        };
        store
            .create_account(&NewAccount {
                user,
                name: "mail".into(),
                kind: AccountKind::Imap,
                server: server(dovecot.imap_port()),
                // Nothing is sent (every submission is held), but sending must be possible.
                smtp: Some(server(1)),
                pop3_delete_after_days: None,
                auth: Default::default(),
            })
            .await
            .unwrap();
    }
    let mut seen = Seen::default();
    let s = start(&at).await;
    round(&s, &mut seen, 1).await;
    let Server { store, app, engine } = s;
    engine.shutdown().await;
    drop((app, store));
    // A restart: after it, the newest objects are destroyed again and new ones made.
    let s = start(&at).await;
    let newest = |kind: &str| seen.0[kind].last().cloned().unwrap();
    let r = call(
        &s.app,
        "EmailSubmission/set",
        json!({"accountId": "a1", "destroy": [newest("EmailSubmission")]}),
    )
    .await;
    assert_eq!(r["destroyed"].as_array().map(Vec::len), Some(1), "{r}");
    for (method, kind) in [
        ("Email/set", "Email"),
        ("Mailbox/set", "Mailbox"),
        ("Identity/set", "Identity"),
    ] {
        let r = call(
            &s.app,
            method,
            json!({"accountId": "a1", "destroy": [newest(kind)]}),
        )
        .await;
        assert_eq!(r["destroyed"].as_array().map(Vec::len), Some(1), "{r}");
    }
    round(&s, &mut seen, 2).await;
    s.engine.shutdown().await;
}
