#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! VacationResponse (RFC 8621 8) as a Sieve script on a real Pigeonhole: set through
//! JMAP, a message delivered by LMTP from an outside sender is answered (the reply is
//! read from what Sieve sent), the user's own filters keep running beside it, a
//! response dated in the future or turned off answers nothing.

mod sieve_world;

use serde_json::json;
use sieve_world::{USER, call, upload, world};

fn message(from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {USER}\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.com>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\nhello\r\n"
    )
    .into_bytes()
}

fn sent(w: &sieve_world::World) -> Vec<String> {
    w.dovecot
        .sent_by_sieve()
        .unwrap()
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect()
}

#[tokio::test]
async fn vacation_reply_is_sent_beside_the_users_filters() {
    let w = world(true).await;
    let app = &w.app;

    // Off by default, with nothing set.
    let (_, r) = call(app, "VacationResponse/get", json!({"accountId": "a1"})).await;
    let v = &r["list"][0];
    assert_eq!(v["id"], "singleton");
    assert_eq!(v["isEnabled"], false);
    assert_eq!(v["subject"], serde_json::Value::Null);

    // The user's own active filter.
    let filter = upload(
        app,
        b"require [\"fileinto\"];\r\nif header :contains \"subject\" \"offer\" {\r\n  fileinto \"Junk\";\r\n}\r\n",
    )
    .await;
    let (_, r) = call(
        app,
        "SieveScript/set",
        json!({"accountId": "a1", "create": {"f": {"name": "filters", "blobId": filter}},
               "onSuccessActivateScript": "#f"}),
    )
    .await;
    let filters = r["created"]["f"]["id"].as_str().unwrap().to_string();

    let (_, r) = call(
        app,
        "VacationResponse/set",
        json!({"accountId": "a1", "update": {"singleton": {
            "isEnabled": true, "subject": "Away until Monday",
            "textBody": "I am away; back on Monday."}}}),
    )
    .await;
    assert!(r["updated"].get("singleton").is_some(), "{r}");
    assert_ne!(r["oldState"], r["newState"]);

    // A message from outside is answered with the subject and text set.
    assert!(sent(&w).is_empty());
    w.dovecot
        .deliver_from(
            "carol@example.com",
            USER,
            &message("carol@example.com", "question"),
        )
        .unwrap();
    let replies = sent(&w);
    assert_eq!(
        replies.len(),
        1,
        "{}",
        std::fs::read_to_string(w.dovecot.log_path()).unwrap()
    );
    assert!(
        replies[0].contains("Subject: Away until Monday"),
        "{}",
        replies[0]
    );
    assert!(
        replies[0].contains("I am away; back on Monday."),
        "{}",
        replies[0]
    );
    assert!(
        replies[0].contains("To: carol@example.com")
            || replies[0].contains("To: <carol@example.com>"),
        "{}",
        replies[0]
    );

    // The user's filter still runs: an offer lands in Junk (and is answered once too).
    w.dovecot
        .deliver_from(
            "dave@example.com",
            USER,
            &message("dave@example.com", "offer"),
        )
        .unwrap();
    let junk = w
        .dovecot
        .doveadm(&["mailbox", "status", "-u", USER, "messages", "Junk"])
        .unwrap();
    assert!(junk.contains("messages=1"), "{junk}");
    assert_eq!(sent(&w).len(), 2);

    // JMAP still shows the user's script as the active one, and the vacation read back.
    let (_, r) = call(app, "SieveScript/get", json!({"accountId": "a1"})).await;
    assert_eq!(r["list"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["list"][0]["id"], filters.as_str());
    assert_eq!(r["list"][0]["isActive"], true);
    let (_, r) = call(
        app,
        "VacationResponse/get",
        json!({"accountId": "a1", "ids": ["singleton", "other"]}),
    )
    .await;
    assert_eq!(r["list"][0]["isEnabled"], true);
    assert_eq!(r["list"][0]["subject"], "Away until Monday");
    assert_eq!(r["notFound"], json!(["other"]));

    // Another script activated while the vacation response is on: the vacation stays on,
    // the new script runs beside it and is the one reported active.
    let other = upload(
        app,
        b"require [\"fileinto\"];\r\nif header :contains \"subject\" \"report\" {\r\n  fileinto \"Archive\";\r\n}\r\n",
    )
    .await;
    let (_, r) = call(
        app,
        "SieveScript/set",
        json!({"accountId": "a1", "create": {"o": {"name": "archive", "blobId": other}},
               "onSuccessActivateScript": "#o"}),
    )
    .await;
    let archive = r["created"]["o"]["id"].as_str().unwrap().to_string();
    // RFC 9661 5.2: created and activated in one call is reported in `created`.
    assert_eq!(r["created"]["o"]["isActive"], true, "{r}");
    assert!(r["updated"].get(&archive).is_none(), "{r}");
    assert_eq!(r["updated"][&filters]["isActive"], false, "{r}");
    w.dovecot
        .deliver_from(
            "gina@example.com",
            USER,
            &message("gina@example.com", "report"),
        )
        .unwrap();
    assert_eq!(sent(&w).len(), 3, "the vacation response stopped");
    let archived = w
        .dovecot
        .doveadm(&["mailbox", "status", "-u", USER, "messages", "Archive"])
        .unwrap();
    assert!(archived.contains("messages=1"), "{archived}");
    let (_, r) = call(
        app,
        "SieveScript/set",
        json!({"accountId": "a1", "onSuccessActivateScript": filters}),
    )
    .await;
    assert_eq!(r["updated"][&filters]["isActive"], true, "{r}");

    // Starting tomorrow: nothing is answered today.
    let tomorrow = jmap_proto::UtcDate::from_timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 86_400,
    )
    .unwrap()
    .to_string();
    let (_, r) = call(
        app,
        "VacationResponse/set",
        json!({"accountId": "a1", "update": {"singleton": {"fromDate": tomorrow}}}),
    )
    .await;
    assert!(r["updated"].get("singleton").is_some(), "{r}");
    w.dovecot
        .deliver_from(
            "erin@example.com",
            USER,
            &message("erin@example.com", "later"),
        )
        .unwrap();
    assert_eq!(sent(&w).len(), 3, "a reply before fromDate");

    // Off: nothing answered, the user's filter is the active script again, the text kept.
    let (_, r) = call(
        app,
        "VacationResponse/set",
        json!({"accountId": "a1", "update": {"singleton": {"isEnabled": false, "fromDate": null}}}),
    )
    .await;
    assert!(r["updated"].get("singleton").is_some(), "{r}");
    w.dovecot
        .deliver_from(
            "frank@example.com",
            USER,
            &message("frank@example.com", "anyone"),
        )
        .unwrap();
    assert_eq!(sent(&w).len(), 3, "a reply while disabled");
    let active = std::fs::read_link(w.dovecot.user_home(USER).join(".dovecot.sieve")).unwrap();
    assert!(active.to_string_lossy().contains("filters"), "{active:?}");
    let (_, r) = call(app, "VacationResponse/get", json!({"accountId": "a1"})).await;
    assert_eq!(r["list"][0]["isEnabled"], false);
    assert_eq!(r["list"][0]["textBody"], "I am away; back on Monday.");

    // The singleton cannot be created or destroyed.
    let (_, r) = call(
        app,
        "VacationResponse/set",
        json!({"accountId": "a1", "create": {"x": {}}, "destroy": ["singleton"]}),
    )
    .await;
    assert_eq!(r["notCreated"]["x"]["type"], "singleton", "{r}");
    assert_eq!(r["notDestroyed"]["singleton"]["type"], "singleton", "{r}");
}

#[tokio::test]
async fn vacation_without_own_script_and_disabled_answers_nothing() {
    let w = world(true).await;
    let app = &w.app;
    // Written disabled: nothing runs.
    let (_, r) = call(
        app,
        "VacationResponse/set",
        json!({"accountId": "a1", "update": {"singleton": {"isEnabled": false, "textBody": "away"}}}),
    )
    .await;
    assert!(r["updated"].get("singleton").is_some(), "{r}");
    w.dovecot
        .deliver_from(
            "carol@example.com",
            USER,
            &message("carol@example.com", "one"),
        )
        .unwrap();
    assert!(sent(&w).is_empty());
    // On, with no script of the user's: answered, and no user script appears.
    let (_, r) = call(
        app,
        "VacationResponse/set",
        json!({"accountId": "a1", "update": {"singleton": {"isEnabled": true}}}),
    )
    .await;
    assert!(r["updated"].get("singleton").is_some(), "{r}");
    w.dovecot
        .deliver_from(
            "dave@example.com",
            USER,
            &message("dave@example.com", "two"),
        )
        .unwrap();
    let replies = sent(&w);
    assert_eq!(replies.len(), 1);
    assert!(replies[0].contains("away"));
    let (_, r) = call(app, "SieveScript/get", json!({"accountId": "a1"})).await;
    assert_eq!(r["list"], json!([]));
    // Bad values are refused, not stored.
    let (_, r) = call(
        app,
        "VacationResponse/set",
        json!({"accountId": "a1", "update": {"singleton": {"fromDate": "tomorrow", "isEnabled": 1}}}),
    )
    .await;
    assert_eq!(
        r["notUpdated"]["singleton"]["type"], "invalidProperties",
        "{r}"
    );
}
