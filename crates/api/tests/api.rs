#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! The HTTP API through the router (no socket): authentication, the Session resource,
//! request-level and method-level errors.

mod common;

use api::auth::hash_password;
use api::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use mail_types::{AccountKind, Security};
use serde_json::{Value, json};
use std::sync::Arc;
use store::{NewAccount, ServerSettings, Store};
use tower::ServiceExt;

async fn setup() -> axum::Router {
    setup_store().await.0
}

/// The router and the store behind it; alice's account is `a1` with an INBOX and Archive.
async fn setup_store() -> (axum::Router, Arc<dyn Store>) {
    let store = common::test_store(None).await;
    for (user, acc) in [("alice", "work"), ("bob", "home")] {
        let id = store
            .create_user(user, &hash_password("pw").unwrap())
            .await
            .unwrap();
        store
            .create_account(&NewAccount {
                user: id,
                name: acc.into(),
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
    let alice = mail_types::AccountId(1);
    let remote = |name: &str, v: u32| store::RemoteMailbox {
        raw_name: name.into(),
        name: name.into(),
        delimiter: Some("/".into()),
        role: (name == "INBOX").then_some(mail_types::Role::Inbox),
        subscribed: true,
        selectable: true,
        uidvalidity: Some(v),
    };
    store
        .apply_mailbox_list(
            alice,
            &[
                remote("INBOX", 1),
                remote("Archive", 2),
                remote("Archive/2026", 3),
            ],
        )
        .await
        .unwrap();
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

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, ctype, body)
}

async fn post(app: &axum::Router, body: impl Into<Body>) -> (StatusCode, Option<String>, Value) {
    let req = Request::post("/jmap/api")
        .header(header::AUTHORIZATION, basic("alice"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    let (s, c, b) = call(app, req).await;
    (s, c, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

#[tokio::test]
async fn session_needs_auth_and_shows_only_the_users_accounts() {
    let app = setup().await;
    let (s, _, _) = call(
        &app,
        Request::get("/.well-known/jmap")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let req = Request::get("/.well-known/jmap")
        .header(header::AUTHORIZATION, basic("alice"))
        .body(Body::empty())
        .unwrap();
    let (s, ctype, body) = call(&app, req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ctype.as_deref(), Some("application/json"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["username"], "alice");
    assert_eq!(v["apiUrl"], "http://127.0.0.1:8080/jmap/api");
    let accounts = v["accounts"].as_object().unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts.values().next().unwrap()["name"], "work");
    assert!(v["capabilities"]["urn:ietf:params:jmap:core"]["maxCallsInRequest"].is_u64());
}

#[tokio::test]
async fn echo_and_method_errors() {
    let app = setup().await;
    let (s, _, v) = post(
        &app,
        json!({
            "using": ["urn:ietf:params:jmap:core"],
            "methodCalls": [
                ["Core/echo", {"hello": true, "n": [1, 2]}, "c1"],
                ["Mailbox/nothing", {}, "c2"],
                ["Core/echo", {"#ids": {"resultOf": "c9", "name": "Core/echo", "path": "/n"}}, "c3"],
                ["Core/echo", {"#n": {"resultOf": "c1", "name": "Core/echo", "path": "/n"}}, "c4"]
            ]
        })
        .to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let r = v["methodResponses"].as_array().unwrap();
    assert_eq!(
        r[0],
        json!(["Core/echo", {"hello": true, "n": [1, 2]}, "c1"])
    );
    assert_eq!(r[1][0], "error");
    assert_eq!(r[1][1]["type"], "unknownMethod");
    assert_eq!(r[2][1]["type"], "invalidResultReference");
    assert_eq!(r[3], json!(["Core/echo", {"n": [1, 2]}, "c4"]));
    assert!(v["sessionState"].is_string());
}

#[tokio::test]
async fn request_errors_are_problem_json() {
    let app = setup().await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "urn:ietf:params:jmap:error:notJSON"),
        (vec![0xff, 0xfe, 0x00], "urn:ietf:params:jmap:error:notJSON"),
        (br#"{"using": [], "methodCalls": 3}"#.to_vec(), "urn:ietf:params:jmap:error:notRequest"),
        (
            json!({"using": ["urn:example:nope"], "methodCalls": []}).to_string().into_bytes(),
            "urn:ietf:params:jmap:error:unknownCapability",
        ),
        (
            json!({
                "using": ["urn:ietf:params:jmap:core"],
                "methodCalls": (0..10_000).map(|i| json!(["Core/echo", {}, format!("c{i}")])).collect::<Vec<_>>()
            })
            .to_string()
            .into_bytes(),
            "urn:ietf:params:jmap:error:limit",
        ),
        (vec![b' '; 10_000_001], "urn:ietf:params:jmap:error:limit"),
    ];
    for (body, want) in cases {
        let (s, ctype, v) = post(&app, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{want}");
        assert_eq!(ctype.as_deref(), Some("application/problem+json"), "{want}");
        assert_eq!(v["type"], want);
    }
}

#[tokio::test]
async fn wrong_password_is_401_and_then_rate_limited() {
    let app = setup().await;
    let bad = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:nope")
    );
    let mut last = StatusCode::OK;
    for _ in 0..12 {
        let req = Request::get("/jmap/session")
            .header(header::AUTHORIZATION, &bad)
            .body(Body::empty())
            .unwrap();
        last = call(&app, req).await.0;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

fn mail_call(calls: Value) -> String {
    json!({"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"], "methodCalls": calls})
        .to_string()
}

#[tokio::test]
async fn mailbox_get_and_changes() {
    let (app, _store) = setup_store().await;
    let (_, _, v) = post(
        &app,
        mail_call(json!([
            ["Mailbox/get", {"accountId": "a1"}, "g"],
            ["Mailbox/get", {"accountId": "a2"}, "foreign"],
            ["Mailbox/get", {"accountId": "a1", "ids": ["m1", "m999", "e1"], "properties": ["name", "role"]}, "some"],
            ["Mailbox/get", {"accountId": "a1", "properties": ["subject"]}, "badprop"],
            ["Mailbox/changes", {"accountId": "a1", "sinceState": "0"}, "ch"],
            ["Mailbox/changes", {"accountId": "a1", "sinceState": "0", "maxChanges": 1}, "ch1"],
            ["Mailbox/changes", {"accountId": "a1", "sinceState": "nonsense"}, "bad"],
            ["Mailbox/changes", {"accountId": "a1", "sinceState": "999"}, "future"],
            ["Email/changes", {"accountId": "a1", "sinceState": "0"}, "em"]
        ])),
    )
    .await;
    let r = v["methodResponses"].as_array().unwrap();
    let get = &r[0][1];
    let list = get["list"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let inbox = list.iter().find(|m| m["role"] == "inbox").unwrap();
    assert_eq!(inbox["name"], "INBOX");
    assert_eq!(inbox["totalEmails"], 0);
    assert_eq!(inbox["parentId"], Value::Null);
    let child = list.iter().find(|m| m["name"] == "2026").unwrap();
    let parent = list.iter().find(|m| m["name"] == "Archive").unwrap();
    assert_eq!(
        child["parentId"], parent["id"],
        "names are per level, parents by id"
    );
    assert!(get["state"].is_string());
    assert_eq!(r[1][1]["type"], "accountNotFound");
    assert_eq!(r[2][1]["list"].as_array().unwrap().len(), 1);
    assert_eq!(r[2][1]["notFound"], json!(["m999", "e1"]));
    assert_eq!(r[3][1]["type"], "invalidArguments");
    let ch = &r[4][1];
    assert_eq!(ch["created"].as_array().unwrap().len(), 3);
    assert_eq!(ch["hasMoreChanges"], false);
    assert_eq!(ch["newState"], get["state"]);
    assert_eq!(r[5][1]["created"].as_array().unwrap().len(), 1);
    assert_eq!(r[5][1]["hasMoreChanges"], true);
    assert_eq!(r[6][1]["type"], "cannotCalculateChanges");
    assert_eq!(r[7][1]["type"], "cannotCalculateChanges");
    assert_eq!(r[8][1]["created"], json!([]));

    // Following the pages of one change at a time reaches the same state.
    let mut state = json!("0");
    let mut created = Vec::new();
    for _ in 0..10 {
        let (_, _, v) = post(
            &app,
            mail_call(json!([["Mailbox/changes", {"accountId": "a1", "sinceState": state, "maxChanges": 1}, "p"]])),
        )
        .await;
        let page = &v["methodResponses"][0][1];
        created.extend(page["created"].as_array().unwrap().iter().cloned());
        state = page["newState"].clone();
        if page["hasMoreChanges"] == false {
            break;
        }
    }
    assert_eq!(created.len(), 3);
    assert_eq!(state, get["state"]);

    // Mail methods need the mail capability in `using`.
    let (_, _, v) = post(
        &app,
        json!({"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Mailbox/get", {"accountId": "a1"}, "x"]]})
            .to_string(),
    )
    .await;
    assert_eq!(v["methodResponses"][0][1]["type"], "unknownMethod");
}

#[tokio::test]
async fn mailbox_query_filters_and_sorts_as_a_tree() {
    let (app, _store) = setup_store().await;
    let (_, _, v) = post(
        &app,
        mail_call(json!([
            ["Mailbox/query", {"accountId": "a1", "filter": {"role": "inbox"}}, "inbox"],
            ["Mailbox/query", {"accountId": "a1", "filter": {"parentId": null}, "sort": [{"property": "name"}]}, "top"],
            ["Mailbox/query", {"accountId": "a1", "sortAsTree": true, "sort": [{"property": "sortOrder"}, {"property": "name"}], "calculateTotal": true}, "tree"],
            ["Mailbox/query", {"accountId": "a1", "filter": {"operator": "NOT", "conditions": [{"hasAnyRole": true}]}}, "norole"],
            ["Mailbox/query", {"accountId": "a1", "sort": [{"property": "totalEmails"}]}, "badsort"],
            ["Mailbox/queryChanges", {"accountId": "a1", "sinceQueryState": "0", "calculateTotal": true}, "qc"],
            ["Mailbox/get", {"accountId": "a1", "#ids": {"resultOf": "tree", "name": "Mailbox/query", "path": "/ids"}, "properties": ["name"]}, "names"]
        ])),
    )
    .await;
    let r = v["methodResponses"].as_array().unwrap();
    assert_eq!(r[0][1]["ids"].as_array().unwrap().len(), 1);
    assert_eq!(
        r[1][1]["ids"].as_array().unwrap().len(),
        2,
        "INBOX and Archive are top level"
    );
    assert_eq!(r[2][1]["total"], 3);
    let names: Vec<&str> = r[6][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["INBOX", "Archive", "2026"],
        "INBOX first, a child after its parent"
    );
    assert_eq!(r[3][1]["ids"].as_array().unwrap().len(), 2);
    assert_eq!(r[4][1]["type"], "unsupportedSort");
    // From the state before the mailboxes were listed: all three are added, in order.
    assert_eq!(r[5][1]["total"], 3, "{}", r[5]);
    assert_eq!(r[5][1]["added"].as_array().unwrap().len(), 3);
    assert_eq!(r[5][1]["added"][2]["index"], 2);
}

#[tokio::test]
async fn huge_and_deep_requests_get_jmap_errors() {
    let app = setup().await;
    let ids: Vec<String> = (0..10_000).map(|i| format!("e{i}")).collect();
    let (s, _, v) = post(
        &app,
        mail_call(json!([["Email/get", {"accountId": "a1", "ids": ids}, "big"]])),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["methodResponses"][0][1]["type"], "requestTooLarge");

    // A filter nested 40 levels deep is a fine request (ANDs fold into one query).
    let mut f = json!({"text": "x"});
    for _ in 0..40 {
        f = json!({"operator": "AND", "conditions": [f]});
    }
    let (s, _, v) = post(
        &app,
        mail_call(json!([["Email/query", {"accountId": "a1", "filter": f}, "deep"]])),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["methodResponses"][0][0], "Email/query", "{v}");
    assert_eq!(v["methodResponses"][0][1]["ids"], json!([]));
    // Nested past what JSON parsing allows: a request-level error.
    let deep = format!(
        "{{\"using\": [], \"methodCalls\": [[\"Core/echo\", {}{}, \"c\"]]}}",
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    let (s, ctype, _) = post(&app, deep).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(ctype.as_deref(), Some("application/problem+json"));
}

#[tokio::test]
async fn uploads_are_per_account_and_expire() {
    let (_app, store) = setup_store().await;
    let (alice, bob) = (mail_types::AccountId(1), mail_types::AccountId(2));
    let up = store
        .put_upload(alice, "text/plain", b"hello".to_vec())
        .await
        .unwrap();
    assert_eq!(up.size, 5);
    assert_eq!(
        store
            .upload_bytes(alice, &up.blob_id)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(store.upload_bytes(bob, &up.blob_id).await.unwrap(), None);
    assert!(store.blob_in_account(alice, &up.blob_id).await.unwrap());
    assert!(!store.blob_in_account(bob, &up.blob_id).await.unwrap());
    // Not expired yet; then expired, with its bytes.
    assert_eq!(store.expire_uploads(up.created_at - 1).await.unwrap(), 0);
    assert_eq!(store.expire_uploads(up.created_at + 1).await.unwrap(), 1);
    assert_eq!(store.upload(alice, &up.blob_id).await.unwrap(), None);
    assert_eq!(store.blob(&up.blob_id).await.unwrap(), None);
}

/// Every method-level error type of RFC 8620 3.6.2 / 5.x that a read method can give, each
/// as a JMAP error in a 200 response (never a 500).
#[tokio::test]
async fn every_method_error_type() {
    let app = setup().await;
    let ids: Vec<String> = (0..10_000).map(|i| format!("m{i}")).collect();
    let blob_ids: Vec<String> = (0..10_000).map(|i| format!("b{i}")).collect();
    let mut deep_or = json!({"subject": "x"});
    for _ in 0..100 {
        deep_or = json!({"operator": "OR", "conditions": [deep_or, {"from": "y"}]});
    }
    let mut ok_deep = json!({"subject": "x"});
    for _ in 0..25 {
        ok_deep = json!({"operator": "NOT", "conditions": [{"operator": "OR", "conditions": [ok_deep, {"from": "y"}]}]});
    }
    let wide: Vec<Value> = (0..1_500)
        .map(|i| json!({"from": format!("u{i}")}))
        .collect();
    let too_wide: Vec<Value> = (0..5_000)
        .map(|i| json!({"text": format!("w{i}")}))
        .collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!(["Email/query", {"accountId": "a1", "limit": -1}, "c"]),
            "invalidArguments",
        ),
        (
            json!(["Email/query", {"accountId": "a1", "nonsense": 1}, "c"]),
            "invalidArguments",
        ),
        (
            json!(["Mailbox/get", {"accountId": "a1", "ids": "m1"}, "c"]),
            "invalidArguments",
        ),
        (
            json!(["Email/get", {"accountId": "a1", "ids": [], "#ids": {"resultOf": "x", "name": "Email/query", "path": "/ids"}}, "c"]),
            "invalidArguments",
        ),
        (
            json!(["Email/get", {"accountId": "a1", "ids": ["e1"], "properties": ["header:From:asDate"]}, "c"]),
            "invalidArguments",
        ),
        (
            json!(["Email/parse", {"accountId": "a1"}, "c"]),
            "invalidArguments",
        ),
        (
            json!(["Email/queryChanges", {"accountId": "a1", "sinceQueryState": "0", "maxChanges": 0}, "c"]),
            "invalidArguments",
        ),
        (
            json!(["Email/get", {"accountId": "a1", "#ids": {"resultOf": "nowhere", "name": "Email/query", "path": "/ids"}}, "c"]),
            "invalidResultReference",
        ),
        (
            json!(["Email/get", {"accountId": "a1", "#ids": {"resultOf": "first", "name": "Email/query", "path": "/ids"}}, "c"]),
            "invalidResultReference",
        ),
        (
            json!(["Email/get", {"accountId": "a1", "#ids": {"resultOf": "first", "name": "Mailbox/get", "path": "/nope/*/x"}}, "c"]),
            "invalidResultReference",
        ),
        (
            json!(["Mailbox/get", {"accountId": "a2"}, "c"]),
            "accountNotFound",
        ),
        (
            json!(["Email/query", {"accountId": "a99"}, "c"]),
            "accountNotFound",
        ),
        (
            json!(["Email/queryChanges", {"accountId": "a2", "sinceQueryState": "0"}, "c"]),
            "accountNotFound",
        ),
        (
            json!(["Email/changes", {"accountId": "a1", "sinceState": "zzz"}, "c"]),
            "cannotCalculateChanges",
        ),
        (
            json!(["Email/changes", {"accountId": "a1", "sinceState": "99999"}, "c"]),
            "cannotCalculateChanges",
        ),
        (
            json!(["Email/queryChanges", {"accountId": "a1", "sinceQueryState": "1.5"}, "c"]),
            "cannotCalculateChanges",
        ),
        (
            json!(["Mailbox/queryChanges", {"accountId": "a1", "sinceQueryState": "99999"}, "c"]),
            "cannotCalculateChanges",
        ),
        (
            json!(["Email/query", {"accountId": "a1", "anchor": "e999"}, "c"]),
            "anchorNotFound",
        ),
        (
            json!(["Email/query", {"accountId": "a1", "filter": {"operator": "OR", "conditions": too_wide}}, "c"]),
            "unsupportedFilter",
        ),
        (
            json!(["Email/query", {"accountId": "a1", "filter": {"color": "red"}}, "c"]),
            "unsupportedFilter",
        ),
        (
            json!(["Email/query", {"accountId": "a1", "sort": [{"property": "color"}]}, "c"]),
            "unsupportedSort",
        ),
        (
            json!(["Email/query", {"accountId": "a1", "sort": [{"property": "from", "collation": "i;klingon"}]}, "c"]),
            "unsupportedSort",
        ),
        (
            json!(["Mailbox/query", {"accountId": "a1", "sort": [{"property": "totalEmails"}]}, "c"]),
            "unsupportedSort",
        ),
        (
            json!(["Mailbox/queryChanges", {"accountId": "a1", "sinceQueryState": "0", "maxChanges": 1}, "c"]),
            "tooManyChanges",
        ),
        (
            json!(["Mailbox/get", {"accountId": "a1", "ids": ids}, "c"]),
            "requestTooLarge",
        ),
        (
            json!(["Email/parse", {"accountId": "a1", "blobIds": blob_ids}, "c"]),
            "requestTooLarge",
        ),
        (
            json!(["Email/nothing", {"accountId": "a1"}, "c"]),
            "unknownMethod",
        ),
    ];
    let mut calls = vec![json!(["Mailbox/get", {"accountId": "a1"}, "first"])];
    calls.extend(cases.iter().map(|(c, _)| c.clone()));
    // And two that are fine: a filter nested 50 levels, and an OR of 1,500 conditions.
    calls.push(json!(["Email/query", {"accountId": "a1", "filter": ok_deep}, "deep"]));
    calls.push(json!(["Email/query", {"accountId": "a1", "filter": {"operator": "OR", "conditions": wide}}, "wide"]));
    let mut total = 0;
    for chunk in calls.chunks(15) {
        let (s, _, v) = post(&app, mail_call(Value::Array(chunk.to_vec()))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for r in v["methodResponses"].as_array().unwrap() {
            let i = total;
            total += 1;
            if i == 0 {
                continue;
            }
            if let Some((_, want)) = cases.get(i - 1) {
                assert_eq!(r[0], "error", "case {}: {r}", i - 1);
                assert_eq!(r[1]["type"], *want, "case {}: {r}", i - 1);
            } else {
                assert_eq!(r[0], "Email/query", "{r}");
                assert_eq!(r[1]["ids"], json!([]));
            }
        }
    }
    assert_eq!(total, calls.len());
    // A filter nested deeper than JMAP's 64 levels is also deeper than the 128 levels of
    // JSON the request parser accepts: a request-level error, before any method runs.
    let (s, ctype, v) = post(
        &app,
        mail_call(json!([["Email/query", {"accountId": "a1", "filter": deep_or}, "c"]])),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(ctype.as_deref(), Some("application/problem+json"));
    assert_eq!(v["type"], "urn:ietf:params:jmap:error:notJSON", "{v}");
}

/// Every method that names an account refuses another user's, exactly as one that does not
/// exist (RFC 8620 3.6.2), and changes nothing there.
#[tokio::test]
async fn no_method_reaches_another_users_account() {
    let (app, store) = setup_store().await;
    let bob = mail_types::AccountId(2);
    let before = store.account_state(bob).await.unwrap();
    let calls = json!([
        ["Mailbox/get", {"accountId": "a2"}, "1"],
        ["Mailbox/changes", {"accountId": "a2", "sinceState": "0"}, "2"],
        ["Mailbox/query", {"accountId": "a2"}, "3"],
        ["Mailbox/queryChanges", {"accountId": "a2", "sinceQueryState": "0"}, "4"],
        ["Mailbox/set", {"accountId": "a2", "create": {"x": {"name": "Stolen"}}}, "5"],
        ["Email/get", {"accountId": "a2", "ids": ["e1"]}, "6"],
        ["Email/changes", {"accountId": "a2", "sinceState": "0"}, "7"],
        ["Email/query", {"accountId": "a2"}, "8"],
        ["Email/queryChanges", {"accountId": "a2", "sinceQueryState": "0"}, "9"],
        ["Email/set", {"accountId": "a2", "destroy": ["e1"]}, "10"],
        ["Email/import", {"accountId": "a2", "emails": {}}, "11"],
        ["Email/parse", {"accountId": "a2", "blobIds": []}, "12"],
        ["Email/copy", {"accountId": "a1", "fromAccountId": "a2", "create": {}}, "13"],
        ["Email/copy", {"accountId": "a2", "fromAccountId": "a1", "create": {}}, "14"],
        ["Thread/get", {"accountId": "a2", "ids": ["t1"]}, "15"],
        ["Thread/changes", {"accountId": "a2", "sinceState": "0"}, "16"],
        ["SearchSnippet/get", {"accountId": "a2", "emailIds": ["e1"]}, "17"],
        ["Identity/get", {"accountId": "a2"}, "18"],
        ["Identity/changes", {"accountId": "a2", "sinceState": "0"}, "19"],
        ["Identity/set", {"accountId": "a2", "create": {"x": {"email": "u@x"}}}, "20"],
        ["EmailSubmission/get", {"accountId": "a2"}, "21"],
        ["EmailSubmission/changes", {"accountId": "a2", "sinceState": "0"}, "22"],
        ["EmailSubmission/query", {"accountId": "a2"}, "23"],
        ["EmailSubmission/set", {"accountId": "a2", "destroy": ["s1"]}, "24"],
        ["Outbox/get", {"accountId": "a2"}, "25"]
    ]);
    let calls = calls.as_array().unwrap();
    let mut answers = Vec::new();
    // At most maxCallsInRequest (16) per request.
    for chunk in calls.chunks(16) {
        let (s, _, v) = post(
            &app,
            json!({
                "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail",
                          "urn:ietf:params:jmap:submission"],
                "methodCalls": chunk
            })
            .to_string(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        answers.extend(v["methodResponses"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(answers.len(), calls.len());
    for (call, answer) in calls.iter().zip(&answers) {
        let want = if call[1]["fromAccountId"] == "a2" {
            "fromAccountNotFound"
        } else {
            "accountNotFound"
        };
        assert_eq!(answer[0], "error", "{call} answered {answer}");
        assert_eq!(answer[1]["type"], want, "{call} answered {answer}");
    }
    assert_eq!(store.account_state(bob).await.unwrap(), before);
    assert!(
        store.mailboxes(bob).await.unwrap().is_empty(),
        "nothing was created in bob's account"
    );
}
