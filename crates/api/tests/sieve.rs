#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! JMAP Sieve (RFC 9661) against a real Pigeonhole ManageSieve server: scripts created,
//! activated, validated (the server's own words for a broken one), the active one not
//! destroyable; and the Session offers Sieve only where the server really has it.

mod sieve_world;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sieve_world::{USING, call, download, jmap_using, session, upload, world};

const GOOD: &[u8] = b"require [\"fileinto\"];\r\nif header :contains \"subject\" \"offer\" {\r\n  fileinto \"Junk\";\r\n}\r\n";
// A missing semicolon after the command.
const BROKEN: &[u8] = b"require [\"fileinto\"];\r\nfileinto \"Junk\"\r\n";

#[tokio::test]
async fn session_offers_sieve_and_vacation_where_managesieve_is() {
    let w = world(true).await;
    let s = session(&w.app).await;
    let sieve = &s["accounts"]["a1"]["accountCapabilities"]["urn:ietf:params:jmap:sieve"];
    assert!(
        sieve["implementation"]
            .as_str()
            .unwrap()
            .contains("Pigeonhole"),
        "{sieve}"
    );
    let ext: Vec<&str> = sieve["sieveExtensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        ext.contains(&"vacation") && ext.contains(&"fileinto"),
        "{ext:?}"
    );
    assert!(sieve["maxSizeScriptName"].as_u64().unwrap() > 0);
    assert!(sieve.get("maxNumberRedirects").is_some());
    assert!(
        s["accounts"]["a1"]["accountCapabilities"]["urn:ietf:params:jmap:vacationresponse"]
            .is_object()
    );
    assert!(s["capabilities"]["urn:ietf:params:jmap:sieve"].is_object());
    assert!(s["capabilities"]["urn:ietf:params:jmap:vacationresponse"].is_object());
    assert_eq!(s["primaryAccounts"]["urn:ietf:params:jmap:sieve"], "a1");
    assert_eq!(
        s["primaryAccounts"]["urn:ietf:params:jmap:vacationresponse"],
        "a1"
    );
}

#[tokio::test]
async fn no_managesieve_no_capability() {
    let w = world(false).await;
    let s = session(&w.app).await;
    let caps = &s["accounts"]["a1"]["accountCapabilities"];
    assert!(caps.get("urn:ietf:params:jmap:sieve").is_none(), "{caps}");
    assert!(
        caps.get("urn:ietf:params:jmap:vacationresponse").is_none(),
        "{caps}"
    );
    assert!(
        s["capabilities"]
            .get("urn:ietf:params:jmap:sieve")
            .is_none()
    );
    assert!(
        s["capabilities"]
            .get("urn:ietf:params:jmap:vacationresponse")
            .is_none()
    );
    // And the methods say so rather than trying.
    let (name, r) = call(&w.app, "SieveScript/get", json!({"accountId": "a1"})).await;
    assert_eq!(name, "error");
    assert_eq!(r["type"], "accountNotSupportedByMethod");
    let (name, r) = call(&w.app, "VacationResponse/get", json!({"accountId": "a1"})).await;
    assert_eq!(name, "error");
    assert_eq!(r["type"], "accountNotSupportedByMethod");
}

#[tokio::test]
async fn scripts_created_activated_validated_destroyed() {
    let w = world(true).await;
    let app = &w.app;
    // Without the capability in `using` the method is unknown (RFC 8620 3.3).
    let r = jmap_using(
        app,
        &["urn:ietf:params:jmap:core"],
        json!([["SieveScript/get", {"accountId": "a1"}, "0"]]),
    )
    .await;
    assert_eq!(r["methodResponses"][0][1]["type"], "unknownMethod");

    let (_, r) = call(app, "SieveScript/get", json!({"accountId": "a1"})).await;
    assert_eq!(r["list"], json!([]));
    let state0 = r["state"].as_str().unwrap().to_string();

    // Validate: a good script passes, a broken one fails with the server's words.
    let good = upload(app, GOOD).await;
    let broken = upload(app, BROKEN).await;
    let (_, r) = call(
        app,
        "SieveScript/validate",
        json!({"accountId": "a1", "blobId": good}),
    )
    .await;
    assert_eq!(r["error"], Value::Null, "{r}");
    let (_, r) = call(
        app,
        "SieveScript/validate",
        json!({"accountId": "a1", "blobId": broken}),
    )
    .await;
    assert_eq!(r["error"]["type"], "invalidSieve", "{r}");
    let words = r["error"]["description"].as_str().unwrap();
    assert!(
        words.contains("line 3") && words.contains("expected end of command"),
        "{words}"
    );

    // Create and activate in one call.
    let (_, r) = call(
        app,
        "SieveScript/set",
        json!({
            "accountId": "a1",
            "ifInState": state0,
            "create": {"f": {"name": "filters", "blobId": good}, "b": {"name": "bad", "blobId": broken}},
            "onSuccessActivateScript": "#f",
        }),
    )
    .await;
    assert_eq!(r["notCreated"]["b"]["type"], "invalidSieve", "{r}");
    assert!(r["notCreated"]["b"]["description"].as_str().unwrap().len() > 5);
    let id = r["created"]["f"]["id"].as_str().unwrap().to_string();
    assert_eq!(r["created"]["f"]["isActive"], false);
    // A failure in the call: nothing activated.
    assert!(
        r["updated"].is_null() || r["updated"].get(&id).is_none(),
        "{r}"
    );
    assert_ne!(r["newState"], r["oldState"]);

    // An id of no script is ignored (RFC 9661 5.2).
    let (name, r) = call(
        app,
        "SieveScript/set",
        json!({"accountId": "a1", "onSuccessActivateScript": "S999999"}),
    )
    .await;
    assert_eq!(name, "SieveScript/set", "{r}");
    assert!(r["updated"].as_object().is_none_or(|m| m.is_empty()), "{r}");
    let (_, r) = call(
        app,
        "SieveScript/set",
        json!({"accountId": "a1", "onSuccessActivateScript": id}),
    )
    .await;
    assert_eq!(r["updated"][&id]["isActive"], true, "{r}");
    let (_, r) = call(app, "SieveScript/get", json!({"accountId": "a1"})).await;
    assert_eq!(r["list"].as_array().unwrap().len(), 1);
    let s = &r["list"][0];
    assert_eq!(
        (s["id"].as_str().unwrap(), &s["name"], &s["isActive"]),
        (id.as_str(), &json!("filters"), &json!(true))
    );
    // The content is a blob of the account.
    let (status, bytes) = download(app, s["blobId"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, GOOD);

    // The server runs it: Pigeonhole activated it for delivery.
    let active = std::fs::read_link(
        w.dovecot
            .user_home(sieve_world::USER)
            .join(".dovecot.sieve"),
    )
    .unwrap();
    assert!(active.to_string_lossy().contains("filters"), "{active:?}");

    // The active script cannot be destroyed.
    let (_, r) = call(
        app,
        "SieveScript/set",
        json!({"accountId": "a1", "destroy": [id]}),
    )
    .await;
    assert_eq!(r["notDestroyed"][&id]["type"], "sieveIsActive", "{r}");

    // Query by activity.
    let (_, r) = call(
        app,
        "SieveScript/query",
        json!({"accountId": "a1", "filter": {"isActive": true}, "calculateTotal": true}),
    )
    .await;
    assert_eq!(r["ids"], json!([id]), "{r}");
    assert_eq!(r["total"], 1);
    let (_, r) = call(
        app,
        "SieveScript/query",
        json!({"accountId": "a1", "filter": {"name": "nope"}}),
    )
    .await;
    assert_eq!(r["ids"], json!([]));

    // Rename keeps the id, and is an update since the state before it.
    let (_, r) = call(
        app,
        "SieveScript/set",
        json!({"accountId": "a1", "update": {&id: {"name": "renamed"}}}),
    )
    .await;
    assert!(r["updated"].get(&id).is_some(), "{r}");
    let before_rename = r["oldState"].as_str().unwrap().to_string();
    let state = r["newState"].as_str().unwrap().to_string();
    let (_, r) = call(
        app,
        "SieveScript/changes",
        json!({"accountId": "a1", "sinceState": before_rename}),
    )
    .await;
    assert_eq!(r["updated"], json!([id]), "{r}");
    assert_eq!(
        (&r["created"], &r["destroyed"]),
        (&json!([]), &json!([])),
        "{r}"
    );
    assert_eq!(r["newState"], state.as_str());
    let (_, r) = call(
        app,
        "SieveScript/get",
        json!({"accountId": "a1", "ids": [id]}),
    )
    .await;
    assert_eq!(r["list"][0]["name"], "renamed");
    assert_eq!(r["list"][0]["isActive"], true);
    // Since the empty start: one created. Since now: nothing. A state never seen: the
    // client must get the scripts again.
    let (_, r) = call(
        app,
        "SieveScript/changes",
        json!({"accountId": "a1", "sinceState": state0}),
    )
    .await;
    assert_eq!(r["created"], json!([id]), "{r}");
    assert_eq!(r["updated"], json!([]), "{r}");
    let (name, r) = call(
        app,
        "SieveScript/changes",
        json!({"accountId": "a1", "sinceState": state}),
    )
    .await;
    assert_eq!(name, "SieveScript/changes", "{r}");
    assert_eq!(r["hasMoreChanges"], false);
    assert_eq!(r["created"], json!([]), "{r}");
    assert_eq!(r["oldState"], r["newState"]);
    let (name, r) = call(
        app,
        "SieveScript/changes",
        json!({"accountId": "a1", "sinceState": "s0000000000000000"}),
    )
    .await;
    assert_eq!(
        (name.as_str(), &r["type"]),
        ("error", &json!("cannotCalculateChanges"))
    );

    // Deactivate, then destroy works; the id is never handed out again.
    let (_, r) = call(
        app,
        "SieveScript/set",
        json!({"accountId": "a1", "onSuccessDeactivateScript": true}),
    )
    .await;
    assert_eq!(r["updated"][&id]["isActive"], false, "{r}");
    let (_, r) = call(
        app,
        "SieveScript/set",
        json!({"accountId": "a1", "destroy": [id]}),
    )
    .await;
    assert_eq!(r["destroyed"], json!([id]), "{r}");
    let (_, r) = call(
        app,
        "SieveScript/changes",
        json!({"accountId": "a1", "sinceState": state}),
    )
    .await;
    assert_eq!(r["destroyed"], json!([id]), "{r}");
    let (_, r) = call(
        app,
        "SieveScript/set",
        json!({"accountId": "a1", "create": {"again": {"name": "renamed", "blobId": good}}}),
    )
    .await;
    assert_ne!(r["created"]["again"]["id"].as_str().unwrap(), id);

    // Too large for the client's bound, a name taken, a reserved name, no such blob.
    let mut huge = b"# ".to_vec();
    huge.resize(2 * 1024 * 1024, b'x');
    huge.extend(b"\r\nkeep;\r\n");
    let huge = upload(app, &huge).await;
    let (_, r) = call(
        app,
        "SieveScript/set",
        json!({"accountId": "a1", "create": {
            "big": {"name": "big", "blobId": huge},
            "taken": {"name": "renamed", "blobId": good},
            "ours": {"name": "tidings-vacation", "blobId": good},
            "none": {"name": "none", "blobId": "b0000"},
        }}),
    )
    .await;
    assert_eq!(r["notCreated"]["big"]["type"], "tooLarge", "{r}");
    assert_eq!(r["notCreated"]["taken"]["type"], "alreadyExists", "{r}");
    assert_eq!(r["notCreated"]["ours"]["type"], "forbidden", "{r}");
    assert_eq!(r["notCreated"]["none"]["type"], "blobNotFound", "{r}");
    let _ = USING;
}
