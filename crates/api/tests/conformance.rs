#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! JMAP details other clients trip on, each reproduced with one request against a private
//! Dovecot with the engine running: body values with LF line ends (RFC 8621 4.1.4), header
//! text in NFC (4.1.2.2), server-set properties sent unchanged in `*/set` (RFC 8620 5.3),
//! dates before 1970, `subParts` of leaf parts, mailbox create/rename/destroy answered
//! with the server's word, and the leniency Cyrus-tested clients expect.

use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use engine::Engine;
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

/// The seeded message: CRLF line ends (as IMAP has them) and an NFD-ish header.
const SEEDED: &str = "From: =?UTF-8?B?4oSr?= <bob@example.org>\r\nTo: alice@example.org\r\n\
    Subject: =?UTF-8?B?4oSr?=\r\nX-NFC: =?UTF-8?B?4oSr?=\r\nMessage-ID: <seed@example.org>\r\n\
    Date: Mon, 30 Nov 2026 10:00:00 +0530\r\nMIME-Version: 1.0\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\r\nline one\r\nline two\r\n";

struct World {
    dovecot: Dovecot,
    store: Arc<dyn Store>,
    app: axum::Router,
    engine: Option<Engine>,
    account: AccountId,
    /// The seeded message's Email id.
    seeded: String,
    _dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            // Stopped on a runtime of its own: the test's may be gone by now.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Runtime::new() {
                    rt.block_on(e.shutdown());
                }
            })
            .join();
        }
    }
}

async fn world() -> World {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    dovecot.add_user(USER, PASS).unwrap();
    dovecot
        .seed(
            USER,
            "INBOX",
            &[SeedMessage {
                raw: SEEDED.as_bytes().to_vec(),
                flags: vec![],
                internal_date: 1_795_000_000,
            }],
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::test_store(Some(dir.path())).await;
    let account = alice_account(&store, &dovecot).await;
    let mut engine = Engine::new(store.clone(), plain_passwords());
    let app = router(Arc::new(AppState::new(
        store.clone(),
        "http://127.0.0.1:8080",
    )));
    engine.start_all().await.unwrap();
    let start = Instant::now();
    let seeded = loop {
        let boxes = store.mailboxes(account).await.unwrap();
        let synced = store
            .account(account)
            .await
            .unwrap()
            .is_some_and(|a| a.status == mail_types::SyncStatus::Ok);
        if synced && let Some(inbox) = boxes.iter().find(|m| m.role == Some(Role::Inbox)) {
            let msgs = store.mailbox_messages(inbox.id).await.unwrap();
            if let Some(m) = msgs.iter().find(|m| m.blob_id.is_some()) {
                break format!("e{}", m.email.0);
            }
        }
        assert!(start.elapsed() < DEADLINE, "the account never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    World {
        dovecot,
        store,
        app,
        engine: Some(engine),
        account,
        seeded,
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
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail",
                  "urn:ietf:params:jmap:submission"],
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

fn imap(w: &World) -> ImapClient {
    ImapClient::login(w.dovecot.imap_port(), USER, PASS).unwrap()
}

/// The mailbox names the server lists.
fn server_mailboxes(w: &World) -> Vec<String> {
    let mut c = imap(w);
    let out = c.raw_command("LIST \"\" \"*\"").unwrap();
    out.lines()
        .filter(|l| l.starts_with("* LIST"))
        .filter_map(|l| l.rsplit(' ').next())
        .map(|n| n.trim_matches('"').to_string())
        .collect()
}

/// Waits until the account's outbox is empty (every change is on the server).
async fn drained(w: &World) {
    let start = Instant::now();
    loop {
        let st = w.store.outbox_status(w.account).await.unwrap();
        if st.pending == 0 {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "the outbox never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The header fields `fields` (e.g. `DATE SUBJECT`) of every message in a mailbox.
fn server_headers(w: &World, mailbox: &str, fields: &str) -> String {
    let mut c = imap(w);
    c.select(mailbox).unwrap();
    c.raw_command(&format!(
        "UID FETCH 1:* BODY.PEEK[HEADER.FIELDS ({fields})]"
    ))
    .unwrap()
}

async fn inbox(w: &World) -> String {
    let (_, r) = call(
        &w.app,
        "Mailbox/query",
        json!({"accountId": "a1", "filter": {"role": "inbox"}}),
    )
    .await;
    r["ids"][0].as_str().unwrap().to_string()
}

/// Creates an Email in the INBOX from `props` (mailboxIds added); its id.
async fn create_email(w: &World, mut props: Value) -> String {
    props["mailboxIds"] = json!({ inbox(w).await: true });
    let (name, r) = call(
        &w.app,
        "Email/set",
        json!({"accountId": "a1", "create": {"c": props}}),
    )
    .await;
    assert_eq!(name, "Email/set", "{r}");
    r["created"]["c"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("not created: {r}"))
        .to_string()
}

/// RFC 8621 4.1.4: body values have LF line ends, for mail synced from IMAP (CRLF on the
/// wire) and for mail created through JMAP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_values_have_lf_line_ends() {
    let w = world().await;
    let get = |id: &str| {
        json!({"accountId": "a1", "ids": [id], "properties": ["bodyValues", "textBody"],
               "fetchTextBodyValues": true})
    };
    let (_, r) = call(&w.app, "Email/get", get(&w.seeded)).await;
    let v = &r["list"][0]["bodyValues"];
    let part = r["list"][0]["textBody"][0]["partId"].as_str().unwrap();
    assert_eq!(v[part]["value"], "line one\nline two\n", "{r}");
    assert_eq!(v[part]["isTruncated"], false);

    let created = create_email(
        &w,
        json!({"subject": "lf", "textBody": [{"partId": "t", "type": "text/plain"}],
               "bodyValues": {"t": {"value": "first\nsecond\n"}}}),
    )
    .await;
    let (_, r) = call(&w.app, "Email/get", get(&created)).await;
    let part = r["list"][0]["textBody"][0]["partId"].as_str().unwrap();
    assert_eq!(
        r["list"][0]["bodyValues"][part]["value"], "first\nsecond\n",
        "{r}"
    );
    // maxBodyValueBytes counts the value as served (LF).
    let mut limited = get(&w.seeded);
    limited["maxBodyValueBytes"] = json!("line one\nline two\n".len());
    let (_, r) = call(&w.app, "Email/get", limited).await;
    let v = r["list"][0]["bodyValues"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(v["value"], "line one\nline two\n");
    assert_eq!(v["isTruncated"], false, "{r}");
}

/// RFC 8621 4.1.2.2: header text is NFC; `subject` and address names use the same form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_text_and_names_are_nfc() {
    let w = world().await;
    let (_, r) = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [w.seeded],
               "properties": ["subject", "from", "header:X-NFC:asText",
                              "header:From:asAddresses", "header:From:asGroupedAddresses"]}),
    )
    .await;
    let e = &r["list"][0];
    let nfc = "\u{c5}";
    assert_eq!(e["header:X-NFC:asText"], nfc, "{r}");
    assert_eq!(e["subject"], nfc, "{r}");
    assert_eq!(e["from"][0]["name"], nfc, "{r}");
    assert_eq!(e["header:From:asAddresses"][0]["name"], nfc, "{r}");
    assert_eq!(
        e["header:From:asGroupedAddresses"][0]["addresses"][0]["name"], nfc,
        "{r}"
    );
}

/// RFC 8620 5.3: a server-set or immutable property in an update is fine when unchanged
/// (a client sending back the whole object), refused when it differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_set_properties_sent_unchanged_are_accepted() {
    let w = world().await;
    let (_, r) = call(
        &w.app,
        "Mailbox/set",
        json!({"accountId": "a1", "create": {"p": {"name": "Projects"}}}),
    )
    .await;
    let id = r["created"]["p"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    let (_, r) = call(
        &w.app,
        "Mailbox/get",
        json!({"accountId": "a1", "ids": [id]}),
    )
    .await;
    let mut whole = r["list"][0].clone();
    assert_eq!(whole["id"], id.as_str(), "{r}");
    whole["name"] = json!("Renamed");
    let (_, r) = call(
        &w.app,
        "Mailbox/set",
        json!({"accountId": "a1", "update": {&id: whole}}),
    )
    .await;
    assert!(r["updated"].get(&id).is_some(), "{r}");
    assert!(server_mailboxes(&w).contains(&"Renamed".to_string()));
    // A different value of a server-set property is still refused.
    let (_, r) = call(
        &w.app,
        "Mailbox/set",
        json!({"accountId": "a1", "update": {&id: {"id": "m999999", "name": "Other"}}}),
    )
    .await;
    assert_eq!(r["notUpdated"][&id]["type"], "invalidProperties", "{r}");
    assert_eq!(r["notUpdated"][&id]["properties"], json!(["id"]), "{r}");

    // An Email sent back whole with one keyword changed.
    let (_, r) = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [w.seeded],
               "properties": ["id", "threadId", "mailboxIds", "keywords", "size", "receivedAt",
                              "subject", "from", "preview"]}),
    )
    .await;
    let mut email = r["list"][0].clone();
    email["keywords"] = json!({"$seen": true});
    let (_, r) = call(
        &w.app,
        "Email/set",
        json!({"accountId": "a1", "update": {&w.seeded: email}}),
    )
    .await;
    assert!(r["updated"].get(&w.seeded).is_some(), "{r}");
    let (_, r) = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [w.seeded], "properties": ["keywords"]}),
    )
    .await;
    assert_eq!(r["list"][0]["keywords"], json!({"$seen": true}));

    // An Identity sent back whole.
    let (_, r) = call(&w.app, "Identity/get", json!({"accountId": "a1"})).await;
    let mut identity = r["list"][0].clone();
    let iid = identity["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    identity["name"] = json!("Alice A.");
    let (_, r) = call(
        &w.app,
        "Identity/set",
        json!({"accountId": "a1", "update": {&iid: identity}}),
    )
    .await;
    assert!(r["updated"].get(&iid).is_some(), "{r}");
}

/// Dates before 1970 are written right by Email/set create (RFC 5322 3.3), on the server
/// too, and a Date keeps the offset it was given (RFC 8621 4.1.2.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_before_1970_and_offsets_are_kept() {
    let w = world().await;
    let old = create_email(
        &w,
        json!({"subject": "old", "header:Date:asDate": "1969-02-14T12:02:00Z",
               "textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "x"}}}),
    )
    .await;
    let offset = create_email(
        &w,
        json!({"subject": "offset", "sentAt": "1969-07-20T20:17:40-04:00",
               "textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "x"}}}),
    )
    .await;
    let (_, r) = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [old, offset], "properties": ["sentAt", "header:Date:asDate", "header:Date"]}),
    )
    .await;
    let by_id = |id: &str| {
        r["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_id(&old)["header:Date"],
        " Fri, 14 Feb 1969 12:02:00 +0000",
        "{r}"
    );
    assert_eq!(
        by_id(&old)["header:Date:asDate"],
        "1969-02-14T12:02:00Z",
        "{r}"
    );
    assert_eq!(by_id(&old)["sentAt"], "1969-02-14T12:02:00Z", "{r}");
    assert_eq!(
        by_id(&offset)["header:Date"],
        " Sun, 20 Jul 1969 20:17:40 -0400",
        "{r}"
    );
    assert_eq!(
        by_id(&offset)["header:Date:asDate"],
        "1969-07-20T20:17:40-04:00",
        "{r}"
    );
    assert_eq!(by_id(&offset)["sentAt"], "1969-07-20T20:17:40-04:00", "{r}");
    drained(&w).await;
    let on_server = server_headers(&w, "INBOX", "DATE");
    assert!(
        on_server.contains("Date: Fri, 14 Feb 1969 12:02:00 +0000"),
        "{on_server}"
    );
    assert!(
        on_server.contains("Date: Sun, 20 Jul 1969 20:17:40 -0400"),
        "{on_server}"
    );
    // The seeded message's own offset.
    let (_, r) = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [w.seeded], "properties": ["header:Date:asDate", "sentAt"]}),
    )
    .await;
    assert_eq!(
        r["list"][0]["header:Date:asDate"], "2026-11-30T10:00:00+05:30",
        "{r}"
    );
    assert_eq!(r["list"][0]["sentAt"], "2026-11-30T10:00:00+05:30", "{r}");
}

/// `subParts`, one rule (RFC 8621 4.1.4, RFC 8620 5.1): asked for, on every part (null on
/// leaves) in bodyStructure and the lists; not asked for, absent from leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_parts_follow_one_rule() {
    let w = world().await;
    let mixed = create_email(
        &w,
        json!({"subject": "parts", "textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "x"}, "a": {"value": "att"}},
               "attachments": [{"partId": "a", "type": "text/plain", "name": "a.txt"}]}),
    )
    .await;
    let get = |props: Value| {
        json!({"accountId": "a1", "ids": [w.seeded, mixed],
               "properties": ["bodyStructure", "textBody", "attachments"], "bodyProperties": props})
    };
    let (_, r) = call(&w.app, "Email/get", get(json!(["partId", "type"]))).await;
    for e in r["list"].as_array().unwrap() {
        let leaves: Vec<&Value> = std::iter::once(&e["bodyStructure"])
            .chain(
                e["bodyStructure"]["subParts"]
                    .as_array()
                    .into_iter()
                    .flatten(),
            )
            .filter(|p| !p["type"].as_str().unwrap().starts_with("multipart/"))
            .chain(e["textBody"].as_array().unwrap())
            .collect();
        for p in leaves {
            assert!(
                p.get("subParts").is_none(),
                "not asked, absent on a leaf: {r}"
            );
        }
    }
    let by_id = |r: &Value, id: &str| {
        r["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()
            .clone()
    };
    assert!(
        by_id(&r, &mixed)["bodyStructure"]["subParts"].is_array(),
        "{r}"
    );
    let (_, r) = call(
        &w.app,
        "Email/get",
        get(json!(["partId", "type", "subParts"])),
    )
    .await;
    let seeded = by_id(&r, &w.seeded);
    assert_eq!(
        seeded["bodyStructure"].get("subParts"),
        Some(&Value::Null),
        "{r}"
    );
    assert_eq!(
        seeded["textBody"][0].get("subParts"),
        Some(&Value::Null),
        "{r}"
    );
    let m = by_id(&r, &mixed);
    assert_eq!(
        m["attachments"][0].get("subParts"),
        Some(&Value::Null),
        "{r}"
    );
    assert_eq!(
        m["bodyStructure"]["subParts"][0].get("subParts"),
        Some(&Value::Null),
        "{r}"
    );
}

/// Mailbox create, rename and destroy answer with the server's word: a name the server
/// refuses is notCreated / notUpdated with its text, and what was answered done is on the
/// server when the answer comes. Names with dots round-trip (the test Dovecot, like real
/// servers, allows them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_changes_answer_with_the_servers_word() {
    let w = world().await;
    let set = |args: Value| {
        let mut a = args;
        a["accountId"] = json!("a1");
        call(&w.app, "Mailbox/set", a)
    };
    let (_, r) = set(json!({"create": {"d": {"name": "a.b"}, "bad": {"name": "~home"}}})).await;
    let id = r["created"]["d"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    assert!(
        server_mailboxes(&w).contains(&"a.b".to_string()),
        "created means on the server"
    );
    assert_eq!(r["notCreated"]["bad"]["type"], "invalidProperties", "{r}");
    assert!(
        r["notCreated"]["bad"]["description"]
            .as_str()
            .unwrap()
            .contains('~'),
        "{r}"
    );
    let (_, g) = call(
        &w.app,
        "Mailbox/get",
        json!({"accountId": "a1", "properties": ["name"]}),
    )
    .await;
    assert!(
        g["list"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["name"] != "~home"),
        "{g}"
    );
    assert!(
        g["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "a.b"),
        "{g}"
    );

    let (_, r) = set(json!({"update": {&id: {"name": "~x"}}})).await;
    assert_eq!(r["notUpdated"][&id]["type"], "invalidProperties", "{r}");
    assert!(server_mailboxes(&w).contains(&"a.b".to_string()));
    let (_, g) = call(
        &w.app,
        "Mailbox/get",
        json!({"accountId": "a1", "ids": [id], "properties": ["name"]}),
    )
    .await;
    assert_eq!(
        g["list"][0]["name"], "a.b",
        "the refused rename is undone: {g}"
    );

    let (_, r) = set(json!({"update": {&id: {"name": "c.d"}}})).await;
    assert!(r["updated"].get(&id).is_some(), "{r}");
    let names = server_mailboxes(&w);
    assert!(
        names.contains(&"c.d".to_string()) && !names.contains(&"a.b".to_string()),
        "{names:?}"
    );

    let (_, r) = set(json!({"destroy": [id]})).await;
    assert_eq!(r["destroyed"], json!([id]), "{r}");
    assert!(!server_mailboxes(&w).contains(&"c.d".to_string()));

    // Created and destroyed in one breath: nothing is left on the server.
    let (_, r) = set(json!({"create": {"q": {"name": "quick"}}, "destroy": ["#q"]})).await;
    assert!(
        r["destroyed"].as_array().is_some_and(|d| d.len() == 1),
        "{r}"
    );
    drained(&w).await;
    assert!(!server_mailboxes(&w).contains(&"quick".to_string()));
}

/// What Cyrus-tested clients send: no accountId, onDestroyRemoveMessages, myRights on
/// create, isTruncated null and charset utf-8 on bodyValues parts, language tags with case;
/// and a GET of the API URL is a JMAP problem, not an empty 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_where_the_rfc_permits() {
    let w = world().await;
    let (name, r) = call(&w.app, "Mailbox/get", json!({"properties": ["name"]})).await;
    assert_eq!(name, "Mailbox/get", "{r}");
    assert_eq!(r["accountId"], "a1");

    let rights = json!({"mayReadItems": true, "mayAddItems": true, "mayRemoveItems": true,
        "maySetSeen": true, "maySetKeywords": true, "mayCreateChild": true, "mayRename": true,
        "mayDelete": true, "maySubmit": true});
    let (_, r) = call(
        &w.app,
        "Mailbox/set",
        json!({"create": {"t": {"name": "Tmp", "myRights": rights}}}),
    )
    .await;
    let tmp = r["created"]["t"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();

    let (_, r) = call(
        &w.app,
        "Email/set",
        json!({"create": {"c": {"mailboxIds": {&tmp: true}, "subject": "lenient",
            "textBody": [{"partId": "t", "type": "text/plain", "charset": "utf-8", "language": ["en-US"]}],
            "bodyValues": {"t": {"value": "hello\n", "isTruncated": null, "isEncodingProblem": null}}}}}),
    )
    .await;
    let email = r["created"]["c"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    let (_, r) = call(&w.app, "Email/get", json!({"ids": [email], "properties": ["textBody"], "bodyProperties": ["language", "charset"]})).await;
    assert_eq!(
        r["list"][0]["textBody"][0]["language"],
        json!(["en-US"]),
        "{r}"
    );

    let (_, r) = call(
        &w.app,
        "Mailbox/set",
        json!({"destroy": [tmp], "onDestroyRemoveMessages": true}),
    )
    .await;
    assert_eq!(r["destroyed"], json!([tmp]), "{r}");
    // Empty maps are {}, which RFC 8620 5.3 allows as well as null.
    for k in [
        "created",
        "updated",
        "notCreated",
        "notUpdated",
        "notDestroyed",
    ] {
        assert_eq!(r[k], json!({}), "{k}: {r}");
    }

    let req = Request::get("/jmap/api")
        .header(header::AUTHORIZATION, basic())
        .body(Body::empty())
        .unwrap();
    let resp = w.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.headers().get(header::CONTENT_TYPE).unwrap(),
        "application/problem+json"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "urn:ietf:params:jmap:error:notRequest", "{v}");
}

/// Long header fields are folded the RFC 5322 2.2.3 way: a CRLF before white space that
/// is there anyway, lines of at most 78 octets, and the unfolded value is the value given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_headers_fold_at_white_space() {
    let w = world().await;
    let words: Vec<String> = (0..40).map(|i| format!("word{i}")).collect();
    let subject = words.join(" ");
    let raw_value = format!(" {}", words.join(" "));
    let id = create_email(
        &w,
        json!({"subject": subject, "header:X-Long:asRaw": raw_value,
               "textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "x"}}}),
    )
    .await;
    let (_, r) = call(
        &w.app,
        "Email/get",
        json!({"accountId": "a1", "ids": [id],
               "properties": ["subject", "header:X-Long", "header:Subject"]}),
    )
    .await;
    let e = &r["list"][0];
    assert_eq!(e["subject"], subject.as_str(), "{r}");
    assert_eq!(
        e["header:X-Long"].as_str().unwrap().replace("\r\n", ""),
        raw_value,
        "unfolding gives the value back: {r}"
    );
    drained(&w).await;
    let on_server = server_headers(&w, "INBOX", "SUBJECT X-LONG");
    let lines: Vec<&str> = on_server
        .lines()
        .skip_while(|l| !l.contains("word0"))
        .take_while(|l| !l.is_empty() && !l.starts_with(')') && !l.starts_with('*'))
        .collect();
    assert!(lines.len() > 2, "the fields are folded: {on_server}");
    for l in &lines {
        assert!(l.len() <= 78, "line over 78 octets: {l:?}");
        assert!(!l.starts_with('\t'), "folded with a tab: {l:?}");
    }
}

/// While the server is unreachable a mailbox change is answered at once, from the store,
/// and stays queued until the server is back (no wait for an answer that cannot come).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_changes_queue_at_once_while_the_server_is_down() {
    let mut w = world().await;
    w.dovecot.stop();
    let start = Instant::now();
    loop {
        let status = w.store.account(w.account).await.unwrap().unwrap().status;
        if matches!(status, mail_types::SyncStatus::Retrying(_)) {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the engine never saw the server go: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    let (_, r) = call(
        &w.app,
        "Mailbox/set",
        json!({"accountId": "a1", "create": {"o": {"name": "offline"}}}),
    )
    .await;
    assert!(r["created"]["o"]["id"].is_string(), "{r}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "answered without waiting"
    );
    assert!(w.store.outbox_status(w.account).await.unwrap().pending > 0);
    w.dovecot.restart().unwrap();
    drained(&w).await;
    assert!(server_mailboxes(&w).contains(&"offline".to_string()));
}
