#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! Read receipts (RFC 9007 MDN/send and MDN/parse) against real servers: a private
//! Dovecot with two users, the testkit's Postfix, the engine (sync, write-back and
//! submission worker) and the API router. Bob asks for a receipt; Alice's MDN/send goes
//! out through her SMTP server and lands in Bob's INBOX, where an independent IMAP client
//! reads it and mail-parser (not Tidings' own reader) checks it as RFC 8098; `$MDNSent` is
//! on Alice's copy on the server; Bob's MDN/parse of the delivered report names his sent
//! message.

mod common;

use api::auth::hash_password;
use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, header};
use base64::Engine as _;
use engine::{Engine, PasswordSource, SubmitOptions};
use http_body_util::BodyExt;
use mail_parser::{MessageParser, MimeHeaders};
use mail_types::{AccountId, AccountKind, Role, Security};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{NewAccount, ServerSettings, Store};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, SeedMessage, Smtp};
use tower::ServiceExt;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const PASS: &str = "imap-pw";
/// Generous: tests run in parallel on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(90);

const ASK: &str = "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: please confirm\r\nMessage-ID: <ask@example.org>\r\nDisposition-Notification-To: Bob <bob@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\nDid you read this?\r\n";
const ASK2: &str = "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: second\r\nMessage-ID: <ask2@example.org>\r\nDisposition-Notification-To: bob@example.org\r\nDate: Mon, 30 Nov 2026 11:00:00 +0000\r\n\r\nAnd this?\r\n";
const PLAIN: &str = "From: Carol <carol@example.org>\r\nTo: alice@example.org\r\nSubject: no receipt\r\nMessage-ID: <plain@example.org>\r\nDate: Mon, 30 Nov 2026 12:00:00 +0000\r\n\r\nNothing asked.\r\n";

fn plain_passwords() -> PasswordSource {
    Arc::new(|a: &store::AccountRecord| Ok(String::from_utf8(a.server.password_enc.clone())?))
}

fn seed(raw: &str, date: i64) -> SeedMessage {
    SeedMessage {
        raw: raw.as_bytes().to_vec(),
        flags: vec![],
        internal_date: date,
    }
}

fn settings(host_port: u16, user: &str, security: Security, ca: Option<String>) -> ServerSettings {
    ServerSettings {
        host: "127.0.0.1".into(),
        port: host_port,
        security,
        username: user.into(),
        password_enc: PASS.as_bytes().to_vec(),
        ca_file: ca,
    }
}

async fn jmap(app: &axum::Router, who: &str, calls: Value) -> Value {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail",
                  "urn:ietf:params:jmap:submission", "urn:ietf:params:jmap:mdn"],
        "methodCalls": calls,
    });
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{who}:pw"))
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

async fn session(app: &axum::Router, who: &str) -> Value {
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{who}:pw"))
    );
    let req = Request::get("/jmap/session")
        .header(header::AUTHORIZATION, auth)
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// Waits until the store has the Email with this Message-ID (and its body) in the
/// mailbox of `role`; returns its JMAP id.
async fn wait_email(store: &Arc<dyn Store>, account: AccountId, role: Role, id: &str) -> String {
    let start = Instant::now();
    loop {
        let boxes = store.mailboxes(account).await.unwrap();
        if let Some(m) = boxes.iter().find(|m| m.role == Some(role)) {
            let msgs = store.mailbox_messages(m.id).await.unwrap();
            if let Some(x) = msgs
                .iter()
                .find(|x| x.message_id.as_deref() == Some(id) && x.blob_id.is_some())
            {
                return format!("e{}", x.email.0);
            }
        }
        assert!(start.elapsed() < DEADLINE, "{id} never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The raw messages of a mailbox on the server, read by an independent IMAP client.
fn server_messages(d: &Dovecot, user: &str, mailbox: &str) -> Vec<String> {
    let mut c = ImapClient::login(d.imap_port(), user, PASS).unwrap();
    c.select(mailbox).unwrap();
    let answer = c.raw_command("UID FETCH 1:* (BODY.PEEK[])").unwrap();
    let mut out = Vec::new();
    let mut rest = answer.as_str();
    // Each literal: "BODY[] {n}\r\n" then n octets (7-bit here, so n characters).
    while let Some(open) = rest.find("BODY[] {") {
        let from = open + "BODY[] {".len();
        let Some(close) = rest[from..].find('}').map(|c| from + c) else {
            break;
        };
        let n: usize = rest[from..close].parse().unwrap();
        let start = close + 3;
        out.push(rest[start..start + n].to_owned());
        rest = &rest[start + n..];
    }
    out
}

fn server_flags(d: &Dovecot, user: &str, mailbox: &str) -> Vec<(u32, Vec<String>)> {
    let mut c = ImapClient::login(d.imap_port(), user, PASS).unwrap();
    c.select(mailbox).unwrap();
    c.fetch_flags().unwrap()
}

/// The fields of the message/disposition-notification part, read with mail-parser.
fn notification_fields(raw: &str) -> (mail_parser::Message<'_>, Vec<(String, String)>) {
    let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
    let ct = m.content_type().unwrap();
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(
        ct.attribute("report-type"),
        Some("disposition-notification")
    );
    let part = m
        .parts
        .iter()
        .find(|p| {
            p.content_type().is_some_and(|c| {
                c.ctype() == "message" && c.subtype() == Some("disposition-notification")
            })
        })
        .expect("no message/disposition-notification part");
    let text = String::from_utf8_lossy(part.contents()).into_owned();
    let mut fields = Vec::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let first = m.parts.iter().find(|p| {
        p.content_type()
            .is_some_and(|c| c.ctype() == "text" && c.subtype() == Some("plain"))
    });
    assert!(first.is_some(), "no human-readable part");
    (m, fields)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_is_sent_once_delivered_and_parsed() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    dovecot.add_user(ALICE, PASS).unwrap();
    dovecot.add_user(BOB, PASS).unwrap();
    dovecot
        .seed(
            ALICE,
            "INBOX",
            &[
                seed(ASK, 1_795_000_000),
                seed(ASK2, 1_795_000_100),
                seed(PLAIN, 1_795_000_200),
            ],
        )
        .unwrap();
    dovecot
        .seed(BOB, "Sent", &[seed(ASK, 1_795_000_000)])
        .unwrap();
    let smtp = Smtp::start(&dovecot).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::test_store(Some(dir.path())).await;
    let ca = Some(dovecot.ca_file().display().to_string());
    let mut accounts = Vec::new();
    for (who, address, smtp_settings) in [
        (
            "alice",
            ALICE,
            Some(settings(
                smtp.submission_port(),
                ALICE,
                Security::Starttls,
                None,
            )),
        ),
        // Bob's account has no SMTP server: he cannot send receipts from it.
        ("bob", BOB, None),
    ] {
        let user = store
            .create_user(who, &hash_password("pw").unwrap())
            .await
            .unwrap();
        let account = store
            .create_account(&NewAccount {
                user,
                name: address.into(),
                kind: AccountKind::Imap,
                server: settings(dovecot.imap_port(), address, Security::None, ca.clone()),
                smtp: smtp_settings,
                pop3_delete_after_days: None,
                auth: Default::default(),
            })
            .await
            .unwrap();
        accounts.push(account);
    }
    let (alice, bob) = (accounts[0], accounts[1]);
    let mut state = AppState::new(store.clone(), "http://127.0.0.1:8080");
    state.submission_delay = Duration::ZERO;
    let app = router(Arc::new(state));
    let mut engine =
        Engine::new(store.clone(), plain_passwords()).with_submit_options(SubmitOptions {
            poll: Duration::from_millis(100),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(2),
            max_attempts: 30,
            ..SubmitOptions::default()
        });
    engine.start_all().await.unwrap();
    let ask = wait_email(&store, alice, Role::Inbox, "ask@example.org").await;
    let ask2 = wait_email(&store, alice, Role::Inbox, "ask2@example.org").await;
    let plain = wait_email(&store, alice, Role::Inbox, "plain@example.org").await;
    let bobs_sent = wait_email(&store, bob, Role::Sent, "ask@example.org").await;
    let (a1, a2) = (format!("a{}", alice.0), format!("a{}", bob.0));

    // RFC 9007 2: the capability, for the account that can send only.
    let s = session(&app, "alice").await;
    assert_eq!(
        s["capabilities"]["urn:ietf:params:jmap:mdn"],
        json!({}),
        "{s}"
    );
    assert_eq!(
        s["accounts"][&a1]["accountCapabilities"]["urn:ietf:params:jmap:mdn"],
        json!({})
    );
    let s = session(&app, "bob").await;
    assert!(
        s["accounts"][&a2]["accountCapabilities"]["urn:ietf:params:jmap:mdn"].is_null(),
        "{s}"
    );

    let r = jmap(
        &app,
        "alice",
        json!([["Identity/get", {"accountId": a1}, "0"]]),
    )
    .await;
    let identity = r["methodResponses"][0][1]["list"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let displayed = json!({"actionMode": "manual-action", "sendingMode": "mdn-sent-manually",
                           "type": "displayed"});

    // MDN/send: sent, and the implicit Email/set under the same call id.
    let r = jmap(
        &app,
        "alice",
        json!([["MDN/send", {
            "accountId": a1, "identityId": identity,
            "send": {
                "k1": {"forEmailId": ask, "disposition": displayed,
                       "includeOriginalMessage": true},
                "k2": {"forEmailId": "e999999", "disposition": displayed},
                "k3": {"forEmailId": ask2, "disposition": displayed,
                       "finalRecipient": "rfc822; mallory@example.org"},
                "k4": {"forEmailId": plain, "disposition": displayed},
                "k5": {"forEmailId": ask2, "disposition": {"actionMode": "manual-action",
                       "sendingMode": "mdn-sent-manually", "type": "eaten"}}
            },
            "onSuccessUpdateEmail": {"#k1": {"keywords/$seen": true}}
        }, "c1"]]),
    )
    .await;
    let resp = &r["methodResponses"];
    assert_eq!(resp[0][0], "MDN/send", "{r}");
    let sent = &resp[0][1]["sent"]["k1"];
    assert_eq!(sent["finalRecipient"], format!("rfc822; {ALICE}"), "{r}");
    assert_eq!(sent["originalMessageId"], "<ask@example.org>", "{r}");
    assert_eq!(sent["subject"], "Read: please confirm", "{r}");
    let not_sent = &resp[0][1]["notSent"];
    assert_eq!(not_sent["k2"]["type"], "notFound", "{r}");
    assert_eq!(not_sent["k3"]["type"], "forbiddenFrom", "{r}");
    assert_eq!(not_sent["k4"]["type"], "noRecipients", "{r}");
    assert_eq!(not_sent["k5"]["type"], "invalidProperties", "{r}");
    assert_eq!(not_sent["k5"]["properties"], json!(["disposition"]), "{r}");
    assert_eq!(resp[1][0], "Email/set", "{r}");
    assert_eq!(resp[1][2], "c1", "{r}");
    assert!(
        resp[1][1]["updated"]
            .as_object()
            .is_some_and(|m| m.contains_key(&ask)),
        "{r}"
    );

    // A second receipt for the same message is refused.
    let r = jmap(
        &app,
        "alice",
        json!([["MDN/send", {"accountId": a1, "identityId": identity,
            "send": {"again": {"forEmailId": ask, "disposition": displayed}}}, "c2"]]),
    )
    .await;
    assert_eq!(
        r["methodResponses"][0][1]["notSent"]["again"]["type"], "mdnAlreadySent",
        "{r}"
    );
    // Bob's account has no SMTP server.
    let r = jmap(
        &app,
        "bob",
        json!([["MDN/send", {"accountId": a2, "identityId": "i999",
            "send": {"b": {"forEmailId": bobs_sent, "disposition": displayed}}}, "c3"]]),
    )
    .await;
    assert_eq!(r["methodResponses"][0][0], "error", "unknown identity: {r}");

    // Delivered to Bob through Postfix: read back from Dovecot, checked as RFC 8098.
    let start = Instant::now();
    let report = loop {
        let inbox = server_messages(&dovecot, BOB, "INBOX");
        if let Some(r) = inbox
            .into_iter()
            .find(|m| m.contains("disposition-notification"))
        {
            break r;
        }
        assert!(start.elapsed() < DEADLINE, "the receipt never reached Bob");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (m, fields) = notification_fields(&report);
    assert_eq!(
        m.from().and_then(|a| a.first()).and_then(|a| a.address()),
        Some(ALICE)
    );
    assert_eq!(
        m.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some(BOB)
    );
    assert_eq!(m.subject(), Some("Read: please confirm"));
    assert!(m.message_id().is_some());
    // RFC 8098 2.1: sent with a null reverse path (LMTP writes it as Return-Path).
    assert!(report.starts_with("Return-Path: <>"), "{report}");
    assert!(
        field(&fields, "Reporting-UA").is_some_and(|v| v.contains("Tidings")),
        "{fields:?}"
    );
    assert_eq!(
        field(&fields, "Final-Recipient"),
        Some(format!("rfc822; {ALICE}").as_str())
    );
    assert_eq!(
        field(&fields, "Original-Message-ID"),
        Some("<ask@example.org>")
    );
    assert_eq!(
        field(&fields, "Disposition"),
        Some("manual-action/MDN-sent-manually; displayed")
    );
    // includeOriginalMessage: the original is the report's third part.
    let original = m
        .parts
        .iter()
        .find_map(|p| match &p.body {
            mail_parser::PartType::Message(inner) => Some(inner),
            _ => None,
        })
        .expect("no message/rfc822 part");
    assert_eq!(original.message_id(), Some("ask@example.org"));
    assert_eq!(smtp.accepted_message_ids().len(), 1, "one receipt, once");

    // $MDNSent (and the client's $seen) on Alice's copy on the server (RFC 3503).
    let start = Instant::now();
    loop {
        let flags = server_flags(&dovecot, ALICE, "INBOX");
        let marked: Vec<&Vec<String>> = flags
            .iter()
            .map(|(_, f)| f)
            .filter(|f| f.iter().any(|x| x.eq_ignore_ascii_case("$MDNSent")))
            .collect();
        if marked.len() == 1 {
            assert!(marked[0].iter().any(|f| f == "\\Seen"), "{flags:?}");
            break;
        }
        assert!(marked.len() < 2, "{flags:?}");
        assert!(
            start.elapsed() < DEADLINE,
            "$MDNSent never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Bob's side: the report syncs into his INBOX; MDN/parse names his sent message.
    let report_id = m.message_id().unwrap().to_owned();
    let report_email = wait_email(&store, bob, Role::Inbox, &report_id).await;
    let r = jmap(
        &app,
        "bob",
        json!([["Email/get", {"accountId": a2, "ids": [report_email, bobs_sent],
                              "properties": ["blobId"]}, "g"]]),
    )
    .await;
    let list = &r["methodResponses"][0][1]["list"];
    let report_blob = list[0]["blobId"].as_str().unwrap().to_owned();
    let plain_blob = list[1]["blobId"].as_str().unwrap().to_owned();
    let r = jmap(
        &app,
        "bob",
        json!([["MDN/parse", {"accountId": a2,
                              "blobIds": [report_blob, plain_blob, "bnothing"]}, "p"]]),
    )
    .await;
    let p = &r["methodResponses"][0][1];
    assert_eq!(r["methodResponses"][0][0], "MDN/parse", "{r}");
    let mdn = &p["parsed"][&report_blob];
    assert_eq!(mdn["forEmailId"], bobs_sent.as_str(), "{r}");
    assert_eq!(mdn["disposition"], displayed, "{r}");
    assert_eq!(mdn["finalRecipient"], format!("rfc822; {ALICE}"), "{r}");
    assert_eq!(mdn["originalMessageId"], "<ask@example.org>", "{r}");
    assert_eq!(mdn["subject"], "Read: please confirm", "{r}");
    assert_eq!(mdn["includeOriginalMessage"], true, "{r}");
    assert!(
        mdn["textBody"]
            .as_str()
            .is_some_and(|t| t.contains("please confirm")),
        "{r}"
    );
    assert!(
        mdn["reportingUA"]
            .as_str()
            .is_some_and(|t| t.contains("Tidings")),
        "{r}"
    );
    assert_eq!(p["notParsable"], json!([plain_blob]), "{r}");
    assert_eq!(p["notFound"], json!(["bnothing"]), "{r}");

    // Without the mdn capability in `using`, the methods are unknown.
    let body = json!({"using": ["urn:ietf:params:jmap:core"],
        "methodCalls": [["MDN/parse", {"accountId": a2, "blobIds": []}, "u"]]});
    let req = Request::post("/jmap/api")
        .header(
            header::AUTHORIZATION,
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("bob:pw")
            ),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["methodResponses"][0][1]["type"], "unknownMethod", "{v}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_smtp_cannot_send_receipts() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    dovecot.add_user(BOB, PASS).unwrap();
    dovecot
        .seed(BOB, "INBOX", &[seed(ASK, 1_795_000_000)])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::test_store(Some(dir.path())).await;
    let user = store
        .create_user("bob", &hash_password("pw").unwrap())
        .await
        .unwrap();
    let account = store
        .create_account(&NewAccount {
            user,
            name: BOB.into(),
            kind: AccountKind::Imap,
            server: settings(
                dovecot.imap_port(),
                BOB,
                Security::None,
                Some(dovecot.ca_file().display().to_string()),
            ),
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await
        .unwrap();
    let app = router(Arc::new(AppState::new(
        store.clone(),
        "http://127.0.0.1:8080",
    )));
    let mut engine = Engine::new(store.clone(), plain_passwords());
    engine.start_all().await.unwrap();
    let ask = wait_email(&store, account, Role::Inbox, "ask@example.org").await;
    let a = format!("a{}", account.0);
    let s = session(&app, "bob").await;
    assert!(
        s["capabilities"]["urn:ietf:params:jmap:mdn"].is_null(),
        "no account can send, so no capability: {s}"
    );
    let r = jmap(
        &app,
        "bob",
        json!([["Identity/get", {"accountId": a}, "0"]]),
    )
    .await;
    let identity = r["methodResponses"][0][1]["list"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = jmap(
        &app,
        "bob",
        json!([["MDN/send", {"accountId": a, "identityId": identity,
            "send": {"k": {"forEmailId": ask, "disposition": {"actionMode": "manual-action",
                "sendingMode": "mdn-sent-manually", "type": "displayed"}}}}, "c"],
               // Without identityId (as clients written for Cyrus send it): the default
               // identity, and the same answer.
               ["MDN/send", {"accountId": a,
            "send": {"k": {"forEmailId": ask, "disposition": {"actionMode": "manual-action",
                "sendingMode": "MDN-sent-manually", "type": "displayed"}}}}, "d"]]),
    )
    .await;
    assert_eq!(
        r["methodResponses"][0][1]["notSent"]["k"]["type"], "forbiddenToSend",
        "{r}"
    );
    assert_eq!(
        r["methodResponses"][1][1]["notSent"]["k"]["type"], "forbiddenToSend",
        "{r}"
    );
    assert_eq!(r["methodResponses"].as_array().unwrap().len(), 2, "{r}");
    engine.shutdown().await;
}
