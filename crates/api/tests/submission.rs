#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! Sending through JMAP against real servers: a private Dovecot, the testkit's Postfix
//! (AUTH through Dovecot, LMTP into it), the engine (sync and submission worker) and the
//! API router. The message to send is a draft seeded into Drafts on the server and
//! synced, as a real client's draft would be.

mod common;

use api::auth::hash_password;
use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, header};
use base64::Engine as _;
use engine::{Engine, PasswordSource, SubmitOptions};
use http_body_util::BodyExt;
use mail_types::{AccountId, AccountKind, Role, Security};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{NewAccount, ServerSettings, SqliteStore, Store};
use testkit::imap_client::ImapClient;
use testkit::smtp::{DEFERRED_DOMAIN, REFUSED_DOMAIN};
use testkit::{Dovecot, DovecotOptions, SeedMessage, Smtp};
use tower::ServiceExt;

const USER: &str = "alice@example.org";
const PASS: &str = "imap-pw";
/// Generous: 13 tests run in parallel, each with its own Dovecot and Postfix, and on a
/// loaded 2-core machine a retried send or a write-back round took longer than 30 s.
const DEADLINE: Duration = Duration::from_secs(90);

fn plain_passwords() -> PasswordSource {
    Arc::new(|a: &store::AccountRecord| Ok(String::from_utf8(a.server.password_enc.clone())?))
}

fn fast() -> SubmitOptions {
    SubmitOptions {
        poll: Duration::from_millis(100),
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(2),
        max_attempts: 30,
        ..SubmitOptions::default()
    }
}

struct World {
    dovecot: Dovecot,
    smtp: Smtp,
    store: Arc<dyn Store>,
    app: axum::Router,
    account: AccountId,
    /// Between the account and Postfix when the world was made with one.
    proxy: Option<Proxy>,
    _dir: tempfile::TempDir,
}

/// A TCP relay to Postfix that counts connections and cuts any connection once the
/// client has sent more than `cut_after` bytes on it (a link that dies in the middle of
/// a message). TLS passes through untouched.
struct Proxy {
    port: u16,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

async fn start_proxy(target: u16, cut_after: usize) -> Proxy {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        // Bounded: a test opens a handful.
        for _ in 0..100 {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut sent = 0usize;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        sent += n;
                        if sent > cut_after || sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let down = tokio::io::copy(&mut sr, &mut cw);
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
                // Both sockets close here.
            });
        }
    });
    Proxy { port, connections }
}

const ORIGINAL: &str = "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: hello\r\nMessage-ID: <orig@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\nHi Alice.\r\n";

fn draft(id: &str, to: &str) -> Vec<u8> {
    format!(
        "From: Alice <{USER}>\r\nTo: {to}\r\nSubject: Re: hello\r\nMessage-ID: <{id}@example.org>\r\nIn-Reply-To: <orig@example.org>\r\nReferences: <orig@example.org>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nHi Bob, {id}.\r\n"
    )
    .into_bytes()
}

async fn world(drafts: &[&str]) -> World {
    world_with(drafts, None).await
}

/// `cut_after`: the account submits through a [`Proxy`] that cuts a connection after
/// that many bytes from the client.
async fn world_with(drafts: &[&str], cut_after: Option<usize>) -> World {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    dovecot.add_user(USER, PASS).unwrap();
    dovecot
        .seed(
            USER,
            "INBOX",
            &[SeedMessage {
                raw: ORIGINAL.as_bytes().to_vec(),
                flags: vec![],
                internal_date: 1_795_000_000,
            }],
        )
        .unwrap();
    let seeded: Vec<SeedMessage> = drafts
        .iter()
        .map(|id| SeedMessage {
            raw: draft(id, USER),
            flags: vec!["\\Draft".into()],
            internal_date: 1_795_100_000,
        })
        .collect();
    dovecot.seed(USER, "Drafts", &seeded).unwrap();
    let smtp = Smtp::start(&dovecot).unwrap();
    let proxy = match cut_after {
        Some(n) => Some(start_proxy(smtp.submission_port(), n).await),
        None => None,
    };
    let smtp_port = proxy.as_ref().map_or(smtp.submission_port(), |p| p.port);
    let dir = tempfile::tempdir().unwrap();
    let store = common::test_store(Some(dir.path())).await;
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
                port: dovecot.imap_port(),
                security: Security::None,
                username: USER.into(),
                password_enc: PASS.as_bytes().to_vec(),
                ca_file: Some(dovecot.ca_file().display().to_string()),
            },
            smtp: Some(ServerSettings {
                host: "127.0.0.1".into(),
                port: smtp_port,
                security: Security::Starttls,
                username: USER.into(),
                password_enc: PASS.as_bytes().to_vec(),
                ca_file: None,
            }),
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await
        .unwrap();
    let mut state = AppState::new(store.clone(), "http://127.0.0.1:8080");
    state.submission_delay = Duration::ZERO;
    let app = router(Arc::new(state));
    World {
        dovecot,
        smtp,
        store,
        app,
        account,
        proxy,
        _dir: dir,
    }
}

async fn jmap(app: &axum::Router, calls: Value) -> Value {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail",
                  "urn:ietf:params:jmap:submission"],
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

/// The first method response's arguments.
async fn call(app: &axum::Router, name: &str, args: Value) -> Value {
    let r = jmap(app, json!([[name, args, "0"]])).await;
    let first = &r["methodResponses"][0];
    assert_eq!(first[0], name, "{r}");
    first[1].clone()
}

/// Waits until the synced store has the Email with this Message-ID and its body;
/// returns (email id, thread id) as JMAP ids.
async fn wait_email(w: &World, role: Role, message_id: &str) -> (String, String) {
    let start = Instant::now();
    loop {
        let boxes = w.store.mailboxes(w.account).await.unwrap();
        if let Some(m) = boxes.iter().find(|m| m.role == Some(role)) {
            let msgs = w.store.mailbox_messages(m.id).await.unwrap();
            if let Some(x) = msgs
                .iter()
                .find(|x| x.message_id.as_deref() == Some(message_id) && x.blob_id.is_some())
            {
                return (format!("e{}", x.email.0), format!("t{}", x.thread.0));
            }
        }
        assert!(start.elapsed() < DEADLINE, "{message_id} never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn identity(w: &World) -> String {
    let r = call(&w.app, "Identity/get", json!({"accountId": "a1"})).await;
    assert_eq!(r["list"][0]["email"], USER, "{r}");
    r["list"][0]["id"].as_str().unwrap().to_owned()
}

async fn submit(w: &World, email: &str, extra: Value) -> String {
    let mut obj = json!({"identityId": identity(w).await, "emailId": email});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            obj[k] = v;
        }
    }
    let r = call(
        &w.app,
        "EmailSubmission/set",
        json!({"accountId": "a1", "create": {"k1": obj}}),
    )
    .await;
    r["created"]["k1"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("not created: {r}"))
        .to_owned()
}

/// Polls the submission until `done` holds for it (at most DEADLINE, failing with `what`);
/// returns the object.
async fn wait_submission(
    w: &World,
    id: &str,
    what: &str,
    every: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let r = call(
            &w.app,
            "EmailSubmission/get",
            json!({"accountId": "a1", "ids": [id]}),
        )
        .await;
        let s = r["list"][0].clone();
        if done(&s) {
            return s;
        }
        assert!(start.elapsed() < DEADLINE, "submission {id}: {what}: {s}");
        tokio::time::sleep(every).await;
    }
}

/// Waits until the submission's undoStatus is final and every recipient has left
/// "queued"; returns the object.
async fn wait_final(w: &World, id: &str) -> Value {
    wait_submission(w, id, "never finished", Duration::from_millis(50), |s| {
        s["undoStatus"] != "pending"
            && s["deliveryStatus"].as_object().is_some_and(|m| {
                m.values().all(|d| {
                    d["delivered"] != "queued"
                        || d["smtpReply"].as_str().is_some_and(|t| t.starts_with('2'))
                })
            })
    })
    .await
}

fn inbox_uids(d: &Dovecot) -> usize {
    uids_in(d, "INBOX")
}

/// Messages in a mailbox on the server, seen by an independent IMAP client.
fn uids_in(d: &Dovecot, mailbox: &str) -> usize {
    let mut c = ImapClient::login(d.imap_port(), USER, PASS).unwrap();
    c.select(mailbox).unwrap();
    c.uids().unwrap().len()
}

/// Waits (bounded) until the server's `mailbox` holds `n` messages, then a little more
/// to let a wrong extra copy show, and returns the count.
async fn settle(d: &Dovecot, mailbox: &str, n: usize) -> usize {
    let start = Instant::now();
    while uids_in(d, mailbox) < n && start.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    uids_in(d, mailbox)
}

async fn wait_inbox(d: &Dovecot, n: usize) {
    let start = Instant::now();
    while inbox_uids(d) < n {
        assert!(start.elapsed() < DEADLINE, "INBOX never reached {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens an EventSource for EmailSubmission and EmailDelivery and collects its state
/// events (bounded) until both types have shown up, EmailSubmission at least twice.
async fn follow_pushes(app: &axum::Router) -> tokio::task::JoinHandle<Vec<Value>> {
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    );
    let req =
        Request::get("/jmap/eventsource/?types=EmailSubmission,EmailDelivery&closeafter=no&ping=0")
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let mut text = String::new();
        let mut events = Vec::new();
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            let subs = events
                .iter()
                .filter(|e: &&Value| e["changed"]["a1"]["EmailSubmission"].is_string())
                .count();
            let delivered = events
                .iter()
                .any(|e: &Value| e["changed"]["a1"]["EmailDelivery"].is_string());
            if subs >= 2 && delivered {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(500), body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        text.push_str(&String::from_utf8_lossy(d));
                    }
                }
                Ok(_) => break,
                Err(_) => continue,
            }
            while let Some(end) = text.find("\n\n") {
                let event: String = text.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
                    && let Ok(v) = serde_json::from_str::<Value>(data)
                {
                    events.push(v);
                }
            }
        }
        events
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_sent_to_oneself_arrives_in_the_same_thread() {
    let w = world(&["reply1"]).await;
    let mut engine = Engine::new(w.store.clone(), plain_passwords()).with_submit_options(fast());
    engine.start_all().await.unwrap();
    let (_, orig_thread) = wait_email(&w, Role::Inbox, "orig@example.org").await;
    let (draft, draft_thread) = wait_email(&w, Role::Drafts, "reply1@example.org").await;
    assert_eq!(
        draft_thread, orig_thread,
        "the draft threads with the original"
    );

    // The sender's client follows pushes (EventSource, RFC 8620 7.3).
    let push = follow_pushes(&w.app).await;

    let id = submit(&w, &draft, json!({})).await;
    let s = wait_final(&w, &id).await;
    assert_eq!(s["undoStatus"], "final");
    assert_eq!(s["envelope"]["mailFrom"]["email"], USER);
    let d = &s["deliveryStatus"][USER];
    assert_eq!(d["delivered"], "queued", "{s}");
    assert!(d["smtpReply"].as_str().unwrap().starts_with("250"), "{s}");

    // Through the real SMTP server into INBOX, seen by an independent IMAP client...
    wait_inbox(&w.dovecot, 2).await;
    // ...and synced back: it is in INBOX now, in the original's thread.
    let (_, inbox_thread) = wait_email(&w, Role::Inbox, "reply1@example.org").await;
    assert_eq!(inbox_thread, orig_thread);
    assert_eq!(w.smtp.accepted_message_ids(), vec!["reply1@example.org"]);
    // The push told the client: the submission changed (queued, sending, sent) and the
    // message was delivered to its INBOX.
    let events = push.await.unwrap();
    let submission_states: std::collections::BTreeSet<String> = events
        .iter()
        .filter_map(|e| {
            e["changed"]["a1"]["EmailSubmission"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(submission_states.len() >= 2, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e["changed"]["a1"]["EmailDelivery"].is_string()),
        "{events:?}"
    );
    // The copy in Sent, exactly once (appended through the write-back outbox).
    assert_eq!(settle(&w.dovecot, "Sent", 1).await, 1);
    let (_, sent_thread) = wait_email(&w, Role::Sent, "reply1@example.org").await;
    assert_eq!(sent_thread, orig_thread);

    // EmailSubmission/changes and /query see it.
    let q = call(
        &w.app,
        "EmailSubmission/query",
        json!({"accountId": "a1", "filter": {"emailIds": [draft]}, "sort": [{"property": "sentAt"}]}),
    )
    .await;
    assert_eq!(q["ids"], json!([id]), "{q}");
    let c = call(
        &w.app,
        "EmailSubmission/changes",
        json!({"accountId": "a1", "sinceState": "0"}),
    )
    .await;
    assert_eq!(c["created"], json!([id]), "{c}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_canceled_and_retried_submissions() {
    let mut w = world(&["d1"]).await;
    let mut engine = Engine::new(w.store.clone(), plain_passwords()).with_submit_options(fast());
    engine.start_all().await.unwrap();
    let (draft, _) = wait_email(&w, Role::Drafts, "d1@example.org").await;

    // Hostile or wrong creates: SetErrors, nothing queued.
    let ident = identity(&w).await;
    let r = call(
        &w.app,
        "EmailSubmission/set",
        json!({"accountId": "a1", "create": {
            "noEmail": {"identityId": ident, "emailId": "e999999"},
            "noIdentity": {"identityId": "i999", "emailId": draft},
            "badRcpt": {"identityId": ident, "emailId": draft, "envelope":
                {"mailFrom": {"email": USER}, "rcptTo": [{"email": "not an address"}]}},
            "otherFrom": {"identityId": ident, "emailId": draft, "envelope":
                {"mailFrom": {"email": "mallory@example.net"}, "rcptTo": [{"email": USER}]}},
            "noRcpt": {"identityId": ident, "emailId": draft, "envelope":
                {"mailFrom": {"email": USER}, "rcptTo": []}},
            "tooLong": {"identityId": ident, "emailId": draft, "envelope":
                {"mailFrom": {"email": USER, "parameters": {"HOLDFOR": "99999999"}},
                 "rcptTo": [{"email": USER}]}},
            "serverSet": {"identityId": ident, "emailId": draft, "undoStatus": "final"}
        }}),
    )
    .await;
    let nc = &r["notCreated"];
    assert_eq!(nc["noEmail"]["type"], "invalidProperties", "{r}");
    assert_eq!(nc["noIdentity"]["type"], "invalidProperties", "{r}");
    assert_eq!(nc["badRcpt"]["type"], "invalidRecipients", "{r}");
    assert_eq!(
        nc["badRcpt"]["invalidRecipients"],
        json!(["not an address"]),
        "{r}"
    );
    assert_eq!(nc["otherFrom"]["type"], "forbiddenMailFrom", "{r}");
    assert_eq!(nc["noRcpt"]["type"], "noRecipients", "{r}");
    assert_eq!(nc["tooLong"]["type"], "invalidProperties", "{r}");
    assert_eq!(nc["serverSet"]["type"], "invalidProperties", "{r}");
    assert!(nothing(&r["created"]), "{r}");
    let r = call(&w.app, "EmailSubmission/get", json!({"accountId": "a1"})).await;
    assert_eq!(r["list"], json!([]), "{r}");

    // 5xx: a final failure, the reply visible per recipient.
    let bad = format!("nobody@{REFUSED_DOMAIN}");
    let id = submit(
        &w,
        &draft,
        json!({"envelope": {"mailFrom": {"email": USER}, "rcptTo": [{"email": bad}]}}),
    )
    .await;
    let s = wait_final(&w, &id).await;
    let d = &s["deliveryStatus"][&bad];
    assert_eq!(d["delivered"], "no", "{s}");
    assert!(d["smtpReply"].as_str().unwrap().starts_with("550"), "{s}");

    // Held (FUTURERELEASE) and canceled in the window: never sent.
    let held = submit(
        &w,
        &draft,
        json!({"envelope": {"mailFrom": {"email": USER, "parameters": {"HOLDFOR": "600"}},
                            "rcptTo": [{"email": USER}]}}),
    )
    .await;
    let r = call(
        &w.app,
        "EmailSubmission/set",
        json!({"accountId": "a1", "update": {&held: {"undoStatus": "canceled"}}}),
    )
    .await;
    assert!(r["updated"].get(&held).is_some(), "{r}");
    let r = call(
        &w.app,
        "EmailSubmission/get",
        json!({"accountId": "a1", "ids": [&held]}),
    )
    .await;
    assert_eq!(r["list"][0]["undoStatus"], "canceled", "{r}");
    // A second cancel of something already final: cannotUnsend.
    let r = call(
        &w.app,
        "EmailSubmission/set",
        json!({"accountId": "a1", "update": {&id: {"undoStatus": "canceled"}}}),
    )
    .await;
    assert_eq!(r["notUpdated"][&id]["type"], "cannotUnsend", "{r}");

    // SMTP down: the submission waits and retries; SMTP up: it goes out exactly once.
    w.smtp.stop();
    let retried = submit(&w, &draft, json!({})).await;
    // The first attempt failed to connect and is queued again.
    wait_submission(
        &w,
        &retried,
        "no failed attempt seen",
        Duration::from_millis(50),
        |s| {
            let d = &s["deliveryStatus"][USER];
            d["delivered"] == "queued" && d["smtpReply"] != ""
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    w.smtp.restart().unwrap();
    let s = wait_final(&w, &retried).await;
    assert!(
        s["deliveryStatus"][USER]["smtpReply"]
            .as_str()
            .unwrap()
            .starts_with("250"),
        "{s}"
    );
    wait_inbox(&w.dovecot, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(w.smtp.accepted_message_ids(), vec!["d1@example.org"]);
    assert_eq!(inbox_uids(&w.dovecot), 2);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_data_never_sends_twice() {
    let w = world(&["c1"]).await;
    let mut engine = Engine::new(w.store.clone(), plain_passwords()).with_submit_options(fast());
    // Only the sync: the submission is created while no worker runs.
    for a in w.store.list_accounts().await.unwrap() {
        engine.start(a);
    }
    let (draft, _) = wait_email(&w, Role::Drafts, "c1@example.org").await;
    let id = submit(&w, &draft, json!({})).await;
    let row: i64 = id[1..].parse().unwrap();
    // What the worker does up to the crash: the durable "sending" mark, then the whole
    // SMTP transaction, accepted by the server; the process dies before the commit.
    let raw = w.store.begin_submission(row).await.unwrap().unwrap();
    let server = submit::Server {
        host: "127.0.0.1".into(),
        port: w.smtp.submission_port(),
        security: Security::Starttls,
        username: USER.into(),
        password: PASS.into(),
        oauth2: false,
        ca_file: Some(w.dovecot.ca_file().to_path_buf()),
        hello_name: "localhost".into(),
    };
    let env = submit::Envelope {
        mail_from: USER.into(),
        rcpt_to: vec![USER.into()],
    };
    let out = submit::send(&server, &env, &raw).await;
    assert!(matches!(out, submit::Outcome::Accepted { .. }), "{out:?}");
    // Restart: the worker starts and finds the interrupted submission.
    engine.start_submissions();
    let s = wait_final(&w, &id).await;
    let d = &s["deliveryStatus"][USER];
    assert_eq!(d["delivered"], "unknown", "{s}");
    assert_eq!(s["undoStatus"], "final");
    // Give a (wrong) resend every chance to happen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.smtp.accepted_message_ids(), vec!["c1@example.org"]);
    wait_inbox(&w.dovecot, 2).await;
    assert_eq!(inbox_uids(&w.dovecot), 2);
    // The user probably did send it: the Sent copy is made, once (docs/design/sending.md, "The
    // Sent copy").
    assert_eq!(settle(&w.dovecot, "Sent", 1).await, 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn identities_are_stored_and_set() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let user = store
        .create_user("alice", &hash_password("pw").unwrap())
        .await
        .unwrap();
    let server = ServerSettings {
        host: "h".into(),
        port: 1,
        security: Security::None,
        username: USER.into(),
        password_enc: vec![],
        ca_file: None,
    };
    store
        .create_account(&NewAccount {
            user,
            name: "mail".into(),
            kind: AccountKind::Imap,
            server,
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await
        .unwrap();
    let app = router(Arc::new(AppState::new(store.clone(), "http://x")));
    let r = call(&app, "Identity/get", json!({"accountId": "a1"})).await;
    let first = r["list"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(r["list"][0]["mayDelete"], false, "{r}");
    let r = call(
        &app,
        "Identity/set",
        json!({"accountId": "a1", "create": {
            "n": {"name": "Alice Work", "email": "alice.work@example.org",
                  "replyTo": [{"name": null, "email": "desk@example.org"}],
                  "textSignature": "-- \nAlice"},
            "far": {"email": "alice@elsewhere.net"},
            "bad": {"email": "not an address"}
        }, "update": {&first: {"name": "Alice"}}, "destroy": [&first]}),
    )
    .await;
    let new = r["created"]["n"]["id"].as_str().unwrap().to_owned();
    assert_eq!(r["notCreated"]["far"]["type"], "forbiddenFrom", "{r}");
    assert_eq!(r["notCreated"]["bad"]["type"], "invalidProperties", "{r}");
    assert!(r["updated"].get(&first).is_some(), "{r}");
    assert_eq!(r["notDestroyed"][&first]["type"], "forbidden", "{r}");
    let r = call(&app, "Identity/get", json!({"accountId": "a1"})).await;
    assert_eq!(r["list"][0]["name"], "Alice");
    assert_eq!(r["list"][1]["replyTo"][0]["email"], "desk@example.org");
    assert_eq!(r["list"][1]["textSignature"], "-- \nAlice");
    let r = call(
        &app,
        "Identity/set",
        json!({"accountId": "a1", "update": {&new: {"email": "other@example.org"}}, "destroy": [&new]}),
    )
    .await;
    assert_eq!(r["notUpdated"][&new]["type"], "invalidProperties", "{r}");
    assert_eq!(r["destroyed"], json!([new]), "{r}");
    let c = call(
        &app,
        "Identity/changes",
        json!({"accountId": "a1", "sinceState": "0"}),
    )
    .await;
    assert_eq!(c["created"], json!([first]), "{c}");
    // Without the submission capability the methods are unknown.
    let body = json!({"using": ["urn:ietf:params:jmap:core"],
        "methodCalls": [["EmailSubmission/get", {"accountId": "a1"}, "0"]]});
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
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["methodResponses"][0][1]["type"], "unknownMethod", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_made_by_email_set_is_sent_and_moved_to_sent_once() {
    let w = world(&[]).await;
    let mut engine = Engine::new(w.store.clone(), plain_passwords()).with_submit_options(fast());
    engine.start_all().await.unwrap();
    let (_, orig_thread) = wait_email(&w, Role::Inbox, "orig@example.org").await;
    let boxes = call(&w.app, "Mailbox/get", json!({"accountId": "a1"})).await;
    let role = |r: &str| {
        boxes["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == r)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (drafts, sent) = (role("drafts"), role("sent"));
    let identity = identity(&w).await;
    // One request, as a client sends it: the draft, its submission by creation id, and
    // on success the draft moved from Drafts to Sent and no longer a draft.
    let r = jmap(
        &w.app,
        json!([
            ["Email/set", {"accountId": "a1", "create": {"draft": {
                "mailboxIds": {&drafts: true},
                "keywords": {"$draft": true, "$seen": true},
                "from": [{"name": "Alice", "email": USER}],
                "to": [{"name": "Bob", "email": USER}],
                "subject": "Re: hello",
                "messageId": ["viaset@example.org"],
                "inReplyTo": ["orig@example.org"],
                "references": ["orig@example.org"],
                "bodyValues": {"b": {"value": "Replying through JMAP."}},
                "textBody": [{"partId": "b", "type": "text/plain"}]
            }}}, "0"],
            ["EmailSubmission/set", {"accountId": "a1",
                "create": {"send": {"identityId": identity, "emailId": "#draft"}},
                "onSuccessUpdateEmail": {"#send": {
                    format!("mailboxIds/{drafts}"): null,
                    format!("mailboxIds/{sent}"): true,
                    "keywords/$draft": null
                }}}, "1"]
        ]),
    )
    .await;
    let responses = r["methodResponses"].as_array().unwrap();
    assert_eq!(responses.len(), 3, "{r}");
    assert_eq!(responses[1][0], "EmailSubmission/set", "{r}");
    assert_eq!(responses[2][0], "Email/set", "{r}");
    assert_eq!(
        responses[2][2], "1",
        "the implicit Email/set has the call's id: {r}"
    );
    let id = responses[1][1]["created"]["send"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    assert_eq!(
        responses[2][1]["updated"].as_object().map(|m| m.len()),
        Some(1),
        "{r}"
    );
    let s = wait_final(&w, &id).await;
    assert!(
        s["deliveryStatus"][USER]["smtpReply"]
            .as_str()
            .unwrap()
            .starts_with("250"),
        "{s}"
    );
    // Delivered through Postfix, in the original's thread once synced back.
    wait_inbox(&w.dovecot, 2).await;
    let (_, thread) = wait_email(&w, Role::Inbox, "viaset@example.org").await;
    assert_eq!(thread, orig_thread);
    // The draft moved to Sent on the server (the outbox's MOVE); no second copy appended.
    assert_eq!(settle(&w.dovecot, "Sent", 1).await, 1);
    assert_eq!(uids_in(&w.dovecot, "Drafts"), 0);
    assert_eq!(w.smtp.accepted_message_ids(), vec!["viaset@example.org"]);
    engine.shutdown().await;
}

/// A seeded draft from Alice to `to`, with `lines` lines of body.
fn seeded(id: &str, to: &str, lines: usize) -> SeedMessage {
    let mut raw = String::from_utf8(draft(id, to)).unwrap();
    for i in 0..lines {
        raw.push_str(&format!(
            "line {i:06} of a long message, long enough to need many TCP segments\r\n"
        ));
    }
    SeedMessage {
        raw: raw.into_bytes(),
        flags: vec!["\\Draft".into()],
        internal_date: 1_795_100_000,
    }
}

/// Submits each Email in one EmailSubmission/set (creation ids k00, k01... in order);
/// returns the submission ids in the same order.
async fn submit_all(w: &World, emails: &[String]) -> Vec<String> {
    let ident = identity(w).await;
    let create: serde_json::Map<String, Value> = emails
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                format!("k{i:02}"),
                json!({"identityId": ident, "emailId": e}),
            )
        })
        .collect();
    let r = call(
        &w.app,
        "EmailSubmission/set",
        json!({"accountId": "a1", "create": create}),
    )
    .await;
    (0..emails.len())
        .map(|i| {
            r["created"][format!("k{i:02}")]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("not created: {r}"))
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_submissions_shares_one_smtp_connection() {
    let ids: Vec<String> = (0..10).map(|i| format!("burst{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let w = world(&refs).await;
    let mut engine = Engine::new(w.store.clone(), plain_passwords()).with_submit_options(fast());
    engine.start_all().await.unwrap();
    let mut emails = Vec::new();
    for id in &ids {
        emails.push(
            wait_email(&w, Role::Drafts, &format!("{id}@example.org"))
                .await
                .0,
        );
    }
    let before = w.smtp.connections();
    let subs = submit_all(&w, &emails).await;
    for s in &subs {
        let s = wait_final(&w, s).await;
        let reply = s["deliveryStatus"][USER]["smtpReply"].as_str().unwrap();
        assert!(reply.starts_with("250"), "{s}");
    }
    // Ten messages, one TLS handshake and AUTH: the worker kept the connection.
    assert_eq!(w.smtp.connections() - before, 1, "connections per burst");
    let mut accepted = w.smtp.accepted_message_ids();
    accepted.sort();
    let mut want: Vec<String> = ids.iter().map(|i| format!("{i}@example.org")).collect();
    want.sort();
    assert_eq!(accepted, want, "each message submitted exactly once");
    wait_inbox(&w.dovecot, 11).await;
    assert_eq!(settle(&w.dovecot, "Sent", 10).await, 10);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_message_is_unknown_for_that_message_only() {
    // The relay cuts a connection after 100 kB from the client: in the middle of the
    // second (300 kB) message, on the connection kept from the first.
    let w = world_with(&[], Some(100_000)).await;
    w.dovecot
        .seed(
            USER,
            "Drafts",
            &[
                seeded("small1", USER, 10),
                seeded("big", USER, 4000),
                seeded("small2", USER, 10),
            ],
        )
        .unwrap();
    let mut engine = Engine::new(w.store.clone(), plain_passwords()).with_submit_options(fast());
    engine.start_all().await.unwrap();
    let mut emails = Vec::new();
    for id in ["small1", "big", "small2"] {
        emails.push(
            wait_email(&w, Role::Drafts, &format!("{id}@example.org"))
                .await
                .0,
        );
    }
    let subs = submit_all(&w, &emails).await;
    let first = wait_final(&w, &subs[0]).await;
    let big = wait_final(&w, &subs[1]).await;
    let last = wait_final(&w, &subs[2]).await;
    for s in [&first, &last] {
        let d = &s["deliveryStatus"][USER];
        assert_eq!(d["delivered"], "queued", "{s}");
        assert!(d["smtpReply"].as_str().unwrap().starts_with("250"), "{s}");
    }
    // The cut message alone is unknown, and never sent again.
    assert_eq!(big["deliveryStatus"][USER]["delivered"], "unknown", "{big}");
    // Postfix's cleanup logged each message once as it began to receive it (the big one
    // too, before the cut); the big one was never received whole, so never delivered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        w.smtp.accepted_message_ids(),
        vec![
            "small1@example.org",
            "big@example.org",
            "small2@example.org"
        ]
    );
    wait_inbox(&w.dovecot, 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        inbox_uids(&w.dovecot),
        3,
        "the original and the two small ones"
    );
    // The first two shared a connection; the third needed a new one.
    let proxy = w.proxy.as_ref().unwrap();
    assert_eq!(
        proxy.connections.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    // Every message the user sent has its Sent copy, the unknown one too, once each.
    assert_eq!(settle(&w.dovecot, "Sent", 3).await, 3);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_recipient_is_retried_alone() {
    let mut w = world(&[]).await;
    let bob = format!("bob@{DEFERRED_DOMAIN}");
    let carol = format!("carol@{REFUSED_DOMAIN}");
    w.dovecot.add_user(&bob, "bob-pw").unwrap();
    w.dovecot
        .seed(
            USER,
            "Drafts",
            &[seeded("mixed", &format!("{USER}, {bob}, {carol}"), 3)],
        )
        .unwrap();
    let mut engine = Engine::new(w.store.clone(), plain_passwords()).with_submit_options(fast());
    engine.start_all().await.unwrap();
    let (email, _) = wait_email(&w, Role::Drafts, "mixed@example.org").await;
    let id = submit(&w, &email, json!({})).await;
    // First attempt: Alice accepted, Carol refused for good, Bob deferred (451) and
    // queued for a retry of his own.
    let s = wait_submission(
        &w,
        &id,
        "no deferral seen",
        Duration::from_millis(50),
        |s| {
            s["deliveryStatus"][&bob]["smtpReply"]
                .as_str()
                .is_some_and(|t| t.starts_with("451"))
        },
    )
    .await;
    let status = &s["deliveryStatus"];
    assert_eq!(status[&bob]["delivered"], "queued", "{s}");
    assert_eq!(status[USER]["delivered"], "queued", "{s}");
    assert!(
        status[USER]["smtpReply"]
            .as_str()
            .unwrap()
            .starts_with("250"),
        "{s}"
    );
    assert_eq!(status[&carol]["delivered"], "no", "{s}");
    assert!(
        status[&carol]["smtpReply"]
            .as_str()
            .unwrap()
            .starts_with("550"),
        "{s}"
    );
    assert_eq!(s["undoStatus"], "final");
    // Alice has it; the Sent copy is made without waiting for Bob.
    wait_inbox(&w.dovecot, 2).await;
    assert_eq!(settle(&w.dovecot, "Sent", 1).await, 1);
    // Retries (to Bob alone) stay deferred meanwhile and submit nothing.
    assert_eq!(w.smtp.accepted_message_ids(), vec!["mixed@example.org"]);

    // The server stops deferring (a restart: the kept connection dies with it).
    w.smtp.accept_deferred().unwrap();
    let s = wait_submission(
        &w,
        &id,
        "Bob never got it",
        Duration::from_millis(100),
        |s| {
            s["deliveryStatus"][&bob]["smtpReply"]
                .as_str()
                .is_some_and(|t| t.starts_with("250"))
        },
    )
    .await;
    assert_eq!(s["deliveryStatus"][&bob]["delivered"], "queued", "{s}");
    assert_eq!(s["deliveryStatus"][&carol]["delivered"], "no", "{s}");
    // Submitted twice: once to Alice (and Carol), once to Bob alone.
    assert_eq!(
        w.smtp.accepted_message_ids(),
        vec!["mixed@example.org", "mixed@example.org"]
    );
    let start = Instant::now();
    loop {
        let mut c = ImapClient::login(w.dovecot.imap_port(), &bob, "bob-pw").unwrap();
        c.select("INBOX").unwrap();
        if c.uids().unwrap().len() == 1 {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "not in Bob's INBOX");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Alice did not get it a second time, and Sent still holds one copy.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(inbox_uids(&w.dovecot), 2);
    assert_eq!(uids_in(&w.dovecot, "Sent"), 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_report_marks_the_recipient_not_delivered() {
    let w = world(&[]).await;
    // Postfix accepts the address at RCPT; Dovecot's LMTP then refuses it (no such user),
    // and Postfix sends Alice a delivery-status report, as the DSN request asked.
    let nobody = "nobody@example.org";
    w.dovecot
        .seed(
            USER,
            "Drafts",
            &[seeded("bounce1", &format!("{USER}, {nobody}"), 3)],
        )
        .unwrap();
    let mut engine = Engine::new(w.store.clone(), plain_passwords()).with_submit_options(fast());
    engine.start_all().await.unwrap();
    let (email, _) = wait_email(&w, Role::Drafts, "bounce1@example.org").await;
    let id = submit(&w, &email, json!({})).await;
    let s = wait_final(&w, &id).await;
    for r in [USER, nobody] {
        assert_eq!(s["deliveryStatus"][r]["delivered"], "queued", "{s}");
    }
    let s = wait_submission(
        &w,
        &id,
        "no bounce applied",
        Duration::from_millis(100),
        |s| s["deliveryStatus"][nobody]["delivered"] == "no",
    )
    .await;
    let reply = s["deliveryStatus"][nobody]["smtpReply"].as_str().unwrap();
    assert!(reply.contains("5.1.1"), "the reason from the report: {s}");
    assert_eq!(s["deliveryStatus"][USER]["delivered"], "queued", "{s}");
    // dsnBlobIds names the report, which downloads as the bounce Alice got.
    let blobs = s["dsnBlobIds"].as_array().unwrap();
    assert_eq!(blobs.len(), 1, "{s}");
    let blob = blobs[0].as_str().unwrap();
    let raw = w.store.blob(&blob[1..]).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&raw).contains("delivery-status"),
        "not a report"
    );
    engine.shutdown().await;
}

/// The account's Drafts and Sent mailbox ids (JMAP), once the sync has them.
async fn drafts_and_sent(w: &World) -> (String, String) {
    let start = Instant::now();
    loop {
        let boxes = w.store.mailboxes(w.account).await.unwrap();
        let id = |role| {
            boxes
                .iter()
                .find(|m| m.role == Some(role))
                .map(|m| format!("m{}", m.id.0))
        };
        if let (Some(d), Some(s)) = (id(Role::Drafts), id(Role::Sent)) {
            return (d, s);
        }
        assert!(start.elapsed() < DEADLINE, "no Drafts and Sent mailboxes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a draft to `to` and submits it in one request, as the web client does;
/// `on_success` are the EmailSubmission/set arguments (onSuccess*) with "#sub" the
/// submission. Returns the whole response.
async fn send_draft(w: &World, message_id: &str, to: &str, on_success: Value) -> Value {
    let (drafts, _) = drafts_and_sent(w).await;
    let mut set = json!({"accountId": "a1",
        "create": {"sub": {"identityId": identity(w).await, "emailId": "#draft"}}});
    if let Value::Object(m) = on_success {
        for (k, v) in m {
            set[k] = v;
        }
    }
    jmap(
        &w.app,
        json!([
            ["Email/set", {"accountId": "a1", "create": {"draft": {
                "mailboxIds": {drafts: true},
                "keywords": {"$draft": true, "$seen": true},
                "from": [{"email": USER}],
                "to": [{"email": to}],
                "subject": format!("draft {message_id}"),
                "messageId": [message_id],
                "bodyValues": {"b": {"value": "Words that must not be lost."}},
                "textBody": [{"partId": "b", "type": "text/plain"}]
            }}}, "e"],
            ["EmailSubmission/set", set, "s"]
        ]),
    )
    .await
}

/// The Email's mailboxIds and keywords, or None when it does not exist.
async fn email_state(w: &World, id: &str) -> Option<(Value, Value)> {
    let r = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [id], "properties": ["mailboxIds", "keywords"]}),
    )
    .await;
    let e = r["list"].get(0)?;
    Some((e["mailboxIds"].clone(), e["keywords"].clone()))
}

/// Waits (bounded) until the Email is in Drafts with `$draft` and in no Sent mailbox.
async fn wait_in_drafts(w: &World, id: &str, what: &str) {
    let (drafts, sent) = drafts_and_sent(w).await;
    let start = Instant::now();
    loop {
        let state = email_state(w, id).await;
        if let Some((boxes, keywords)) = &state
            && boxes[&drafts] == true
            && boxes.get(&sent).is_none()
            && keywords["$draft"] == true
        {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: Email {id} not back in Drafts: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo's case: an account without SMTP settings. The send is refused at once
/// (forbiddenToSend, RFC 8621 7.5), before onSuccessDestroyEmail could destroy anything:
/// the draft stays, locally and on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_from_an_account_without_smtp_is_refused_and_the_draft_stays() {
    let w = world(&[]).await;
    let record = w.store.account(w.account).await.unwrap().unwrap();
    w.store
        .update_account(
            w.account,
            &NewAccount {
                user: record.user,
                name: record.name.clone(),
                kind: record.kind,
                server: record.server.clone(),
                smtp: None,
                pop3_delete_after_days: None,
                auth: Default::default(),
            },
        )
        .await
        .unwrap();
    let mut engine = Engine::new(w.store.clone(), plain_passwords()).with_submit_options(fast());
    engine.start_all().await.unwrap();
    let r = send_draft(
        &w,
        "nosmtp@example.org",
        USER,
        json!({"onSuccessDestroyEmail": ["#sub"]}),
    )
    .await;
    let responses = r["methodResponses"].as_array().unwrap();
    assert_eq!(responses.len(), 2, "no implicit Email/set: {r}");
    let draft = responses[0][1]["created"]["draft"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let refused = &responses[1][1]["notCreated"]["sub"];
    assert_eq!(refused["type"], "forbiddenToSend", "{r}");
    assert!(
        refused["description"].as_str().unwrap().contains("SMTP"),
        "{r}"
    );
    assert!(nothing(&responses[1][1]["created"]), "{r}");
    let r = call(&w.app, "EmailSubmission/get", json!({"accountId": "a1"})).await;
    assert_eq!(r["list"], json!([]), "nothing queued: {r}");
    wait_in_drafts(&w, &draft, "refused send").await;
    // And on the server (the draft's APPEND had its blob).
    assert_eq!(settle(&w.dovecot, "Drafts", 1).await, 1);
    assert_eq!(w.smtp.accepted_message_ids(), Vec::<String>::new());
    engine.shutdown().await;
}

/// A send that fails after it was accepted (a 5xx from the SMTP server) or is canceled
/// in its undo window leaves the message in Drafts, with the reply in deliveryStatus:
/// onSuccessDestroyEmail waits for the send, and a draft moved to Sent by
/// onSuccessUpdateEmail comes back. A send that succeeds destroys the draft only once
/// its Sent copy is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsent_message_stays_in_drafts_and_a_sent_one_leaves() {
    let w = world(&[]).await;
    let mut engine = Engine::new(w.store.clone(), plain_passwords()).with_submit_options(fast());
    engine.start_all().await.unwrap();
    let (drafts, sent) = drafts_and_sent(&w).await;
    let bad = format!("nobody@{REFUSED_DOMAIN}");

    // Refused for good, with onSuccessDestroyEmail.
    let r = send_draft(
        &w,
        "refused1@example.org",
        &bad,
        json!({"onSuccessDestroyEmail": ["#sub"]}),
    )
    .await;
    let responses = r["methodResponses"].as_array().unwrap();
    assert_eq!(responses.len(), 2, "the destroy waits for the send: {r}");
    let first = responses[0][1]["created"]["draft"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let sub = responses[1][1]["created"]["sub"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let s = wait_final(&w, &sub).await;
    assert_eq!(s["deliveryStatus"][&bad]["delivered"], "no", "{s}");
    assert!(
        s["deliveryStatus"][&bad]["smtpReply"]
            .as_str()
            .unwrap()
            .starts_with("550"),
        "{s}"
    );
    wait_in_drafts(&w, &first, "refused, onSuccessDestroyEmail").await;

    // Refused for good, with onSuccessUpdateEmail moving it to Sent as if sent.
    let r = send_draft(
        &w,
        "refused2@example.org",
        &bad,
        json!({"onSuccessUpdateEmail": {"#sub": {
            format!("mailboxIds/{drafts}"): null,
            format!("mailboxIds/{sent}"): true,
            "keywords/$draft": null
        }}}),
    )
    .await;
    let responses = r["methodResponses"].as_array().unwrap();
    assert_eq!(responses.len(), 3, "the update is applied at once: {r}");
    let second = responses[0][1]["created"]["draft"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let sub = responses[1][1]["created"]["sub"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    wait_final(&w, &sub).await;
    wait_in_drafts(&w, &second, "refused, onSuccessUpdateEmail").await;

    // Held, then canceled (Undo): the message never left Drafts and stays there.
    let r = call(
        &w.app,
        "Email/set",
        json!({"accountId": "a1", "create": {"d": {
            "mailboxIds": {&drafts: true},
            "keywords": {"$draft": true},
            "from": [{"email": USER}],
            "to": [{"email": USER}],
            "subject": "held",
            "messageId": ["held@example.org"],
            "bodyValues": {"b": {"value": "Not yet."}},
            "textBody": [{"partId": "b", "type": "text/plain"}]
        }}}),
    )
    .await;
    let held_draft = r["created"]["d"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let r = call(
        &w.app,
        "EmailSubmission/set",
        json!({"accountId": "a1",
            "create": {"h": {"identityId": identity(&w).await, "emailId": &held_draft,
                "envelope": {"mailFrom": {"email": USER, "parameters": {"HOLDFOR": "600"}},
                    "rcptTo": [{"email": USER}]}}},
            "onSuccessDestroyEmail": ["#h"]}),
    )
    .await;
    let held = r["created"]["h"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    wait_in_drafts(&w, &held_draft, "held").await;
    let r = call(
        &w.app,
        "EmailSubmission/set",
        json!({"accountId": "a1", "update": {&held: {"undoStatus": "canceled"}}}),
    )
    .await;
    assert!(r["updated"].get(&held).is_some(), "{r}");
    // Past the worker's look at it (its poll is 100 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_in_drafts(&w, &held_draft, "canceled").await;

    // Sent: the draft goes, once the Sent copy is there; nothing else is lost.
    let r = send_draft(
        &w,
        "sent@example.org",
        USER,
        json!({"onSuccessDestroyEmail": ["#sub"]}),
    )
    .await;
    let sent_draft = r["methodResponses"][0][1]["created"]["draft"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let sub = r["methodResponses"][1][1]["created"]["sub"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    wait_final(&w, &sub).await;
    let start = Instant::now();
    while email_state(&w, &sent_draft).await.is_some() {
        assert!(
            start.elapsed() < DEADLINE,
            "the sent draft was never destroyed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_email(&w, Role::Sent, "sent@example.org").await;
    assert_eq!(settle(&w.dovecot, "Sent", 1).await, 1, "one Sent copy");
    // In Drafts on the server: the two refused ones and the canceled one.
    assert_eq!(settle(&w.dovecot, "Drafts", 3).await, 3);
    engine.shutdown().await;
}

/// The client destroys the draft right after submitting it (as clients that do not use
/// onSuccessDestroyEmail do); the send then fails for good. The submission held the
/// message's blob, so the message is remade in Drafts from the exact bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_destroyed_before_a_failed_send_comes_back_from_its_bytes() {
    let w = world(&[]).await;
    let mut engine = Engine::new(w.store.clone(), plain_passwords()).with_submit_options(fast());
    engine.start_all().await.unwrap();
    let (drafts, _) = drafts_and_sent(&w).await;
    let bad = format!("nobody@{REFUSED_DOMAIN}");
    let r = call(
        &w.app,
        "Email/set",
        json!({"accountId": "a1", "create": {"d": {
            "mailboxIds": {&drafts: true},
            "keywords": {"$draft": true},
            "from": [{"email": USER}],
            "to": [{"email": &bad}],
            "subject": "gone too soon",
            "messageId": ["gone@example.org"],
            "bodyValues": {"b": {"value": "Only copy."}},
            "textBody": [{"partId": "b", "type": "text/plain"}]
        }}}),
    )
    .await;
    let email = r["created"]["d"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    // Its APPEND is done (nothing queued holds the blob any more)...
    let start = Instant::now();
    while uids_in(&w.dovecot, "Drafts") < 1 {
        assert!(
            start.elapsed() < DEADLINE,
            "the draft never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and the submission is held for 2 s, so that the destroy comes before the attempt.
    let sub = submit(
        &w,
        &email,
        json!({"envelope": {"mailFrom": {"email": USER, "parameters": {"HOLDFOR": "2"}},
            "rcptTo": [{"email": &bad}]}}),
    )
    .await;
    let r = call(
        &w.app,
        "Email/set",
        json!({"accountId": "a1", "destroy": [&email]}),
    )
    .await;
    assert_eq!(r["destroyed"], json!([&email]), "{r}");
    let s = wait_final(&w, &sub).await;
    assert_eq!(s["deliveryStatus"][&bad]["delivered"], "no", "{s}");
    // Back in Drafts (a new Email: the old one was destroyed), with the same bytes.
    let (again, _) = wait_email(&w, Role::Drafts, "gone@example.org").await;
    assert_ne!(again, email);
    wait_in_drafts(&w, &again, "remade").await;
    let r = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [&again], "properties": ["subject", "bodyValues"],
            "fetchAllBodyValues": true}),
    )
    .await;
    assert_eq!(r["list"][0]["subject"], "gone too soon", "{r}");
    assert!(r.to_string().contains("Only copy."), "{r}");
    assert_eq!(settle(&w.dovecot, "Drafts", 1).await, 1);
    engine.shutdown().await;
}

/// An OAuth2 account sends too: the engine logs in to IMAP with OAUTHBEARER and to SMTP
/// with XOAUTH2, both with access tokens of the account's refresh token, from a real
/// authorization server that Dovecot (and through it Postfix) checks every token with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth2_account_sends_with_xoauth2() {
    use testkit::oidc::{AuthServer, AuthServerOptions, CLIENT_ID, CLIENT_SECRET};
    let auth = AuthServer::start(AuthServerOptions::default()).unwrap();
    let dovecot = Dovecot::start(DovecotOptions {
        oauth2: Some(testkit::DovecotOAuth2::new(auth.introspection_url())),
        ..DovecotOptions::default()
    })
    .unwrap();
    // The password is for the test's independent IMAP client only.
    dovecot.add_user(USER, PASS).unwrap();
    dovecot
        .seed(
            USER,
            "Drafts",
            &[SeedMessage {
                raw: draft("oauth1", USER),
                flags: vec!["\\Draft".into()],
                internal_date: 1_795_100_000,
            }],
        )
        .unwrap();
    let smtp = Smtp::start(&dovecot).unwrap();
    let rt = auth.mint_refresh_token(USER, CLIENT_ID).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite")).unwrap());
    let user = store
        .create_user("alice", &hash_password("pw").unwrap())
        .await
        .unwrap();
    let settings = |port| ServerSettings {
        host: "127.0.0.1".into(),
        port,
        security: Security::Starttls,
        username: USER.into(),
        password_enc: rt.as_bytes().to_vec(),
        ca_file: Some(dovecot.ca_file().display().to_string()),
    };
    let account = store
        .create_account(&NewAccount {
            user,
            name: "mail".into(),
            kind: AccountKind::Imap,
            server: settings(dovecot.imap_port()),
            smtp: Some(settings(smtp.submission_port())),
            pop3_delete_after_days: None,
            auth: mail_types::AccountAuth::OAuth2 {
                provider: "test".into(),
            },
        })
        .await
        .unwrap();
    let mut state = AppState::new(store.clone(), "http://127.0.0.1:8080");
    state.submission_delay = Duration::ZERO;
    let w = World {
        dovecot,
        smtp,
        store,
        app: router(Arc::new(state)),
        account,
        proxy: None,
        _dir: dir,
    };
    let oauth = Arc::new(engine::OAuth::new(
        vec![engine::OAuthProvider {
            name: "test".into(),
            issuer: None,
            auth_url: None,
            // Explicit endpoint, no discovery.
            token_url: Some(auth.token_url()),
            device_url: None,
            client_id: CLIENT_ID.into(),
            client_secret: Some(CLIENT_SECRET.into()),
            scopes: Vec::new(),
        }],
        None,
    ));
    let mut engine = Engine::new(w.store.clone(), plain_passwords())
        .with_submit_options(fast())
        .with_oauth(oauth);
    engine.start_all().await.unwrap();
    let (draft, _) = wait_email(&w, Role::Drafts, "oauth1@example.org").await;
    let id = submit(&w, &draft, json!({})).await;
    let s = wait_final(&w, &id).await;
    let d = &s["deliveryStatus"][USER];
    assert!(d["smtpReply"].as_str().unwrap().starts_with("250"), "{s}");
    assert_eq!(w.smtp.accepted_message_ids(), vec!["oauth1@example.org"]);
    let log = std::fs::read_to_string(w.smtp.log_path()).unwrap();
    assert!(log.contains("sasl_method=XOAUTH2"), "Postfix saw XOAUTH2");
    engine.shutdown().await;
}

/// An empty `/set` map: `{}` (as Tidings sends it) or null (RFC 8620 5.3 allows both).
fn nothing(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(|m| m.is_empty())
}
