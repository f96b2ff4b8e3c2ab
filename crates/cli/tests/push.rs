//! Push against a real Dovecot through `tidings serve`: JMAP over WebSocket (RFC 8887) and
//! EventSource (RFC 8620 7.3). A delivery by LMTP and a flag change by another IMAP client
//! reach a client that enabled push as a StateChange, and `Email/changes` from the state
//! before returns exactly the changed ids (also for a change made through JMAP by another
//! client of the user); a client coming back with its last push state
//! misses nothing; a user never hears of another user's account.

mod push_support;

use anyhow::{Context, Result};
use push_support::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, corpus};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

fn start() -> Result<(Dovecot, Serve)> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(ALICE, "imap-a")?;
    dovecot.add_user(BOB, "imap-b")?;
    dovecot.deliver(
        ALICE,
        &corpus::message("x@example.org", ALICE, "first", "x"),
    )?;
    dovecot.deliver(BOB, &corpus::message("x@example.org", BOB, "first", "x"))?;
    let serve = serve(
        Path::new(env!("CARGO_BIN_EXE_tidings")),
        &dovecot,
        &[
            ("alice", "pw", ALICE, "imap-a"),
            ("bob", "pw", BOB, "imap-b"),
        ],
    )?;
    Ok((dovecot, serve))
}

/// Waits until the socket's pushes are quiet, then returns the last Email state pushed for
/// `account` (the body of a new message lands in a second transaction after its header).
async fn last_email_state(ws: &mut Ws, account: &str, first: &serde_json::Value) -> Result<String> {
    let mut state = changed(first, account)
        .and_then(|c| c.get("Email"))
        .and_then(|s| s.as_str())
        .context("Email in the first push")?
        .to_string();
    for v in ws.settle(Duration::from_millis(700)).await? {
        if let Some(s) = changed(&v, account)
            .and_then(|c| c.get("Email"))
            .and_then(|s| s.as_str())
        {
            state = s.to_string();
        }
    }
    Ok(state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_push_follows_deliveries_flag_changes_and_reconnects() -> Result<()> {
    let (dovecot, serve) = start()?;
    let port = serve.port;
    let alice_auth = basic("alice", "pw");
    let mut alice = ws_connect_when_up(port, &alice_auth).await?;
    let mut bob = ws_connect(port, &basic("bob", "pw"), None).await?;
    let first_alice = alice.wait_emails("a1", 1).await?;
    bob.wait_emails("a2", 1).await?;

    // The upgrade: no subprotocol, a foreign origin, a wrong password are refused; the
    // server's own origin is fine.
    assert_eq!(ws_refused(port, &alice_auth, None, false).await?, 400);
    assert_eq!(
        ws_refused(port, &alice_auth, Some("http://evil.example"), true).await?,
        403
    );
    assert_eq!(
        ws_refused(port, &basic("alice", "no"), None, true).await?,
        401
    );
    let own = format!("http://127.0.0.1:{port}");
    ws_connect(port, &alice_auth, Some(&own)).await?;

    // Requests: the id is echoed; a broken one is a RequestError with the id.
    alice
        .send(&json!({"@type": "Request", "id": "bad", "using": USING}))
        .await?;
    let e = alice.recv(WAIT).await?.context("RequestError")?;
    assert_eq!(e["@type"], "RequestError");
    assert_eq!(e["requestId"], "bad");
    assert_eq!(e["type"], "urn:ietf:params:jmap:error:notRequest");
    alice.send(&json!({"@type": "Nonsense"})).await?;
    assert_eq!(
        alice.recv(WAIT).await?.context("error")?["@type"],
        "RequestError"
    );

    alice.enable(None, None).await?;
    bob.enable(None, None).await?;
    // The bodies of the first sync may still be landing: wait for quiet.
    alice.settle(Duration::from_millis(700)).await?;
    bob.settle(Duration::from_millis(700)).await?;
    let (_, s0) = alice.email_ids("a1").await?;

    // 1. An LMTP delivery.
    dovecot.deliver(
        ALICE,
        &corpus::message("x@example.org", ALICE, "second", "y"),
    )?;
    let p = alice
        .push(WAIT)
        .await?
        .context("no StateChange after a delivery")?;
    let c = changed(&p, "a1").context("a1 in the push")?;
    assert!(
        c.contains_key("Email") && c.contains_key("EmailDelivery"),
        "{p}"
    );
    assert_eq!(p["changed"].as_object().map(|m| m.len()), Some(1), "{p}");
    assert!(p["pushState"].is_string());
    let s1 = last_email_state(&mut alice, "a1", &p).await?;
    let ids = alice.wait_emails("a1", 2).await?;
    let new: Vec<String> = ids
        .iter()
        .filter(|i| !first_alice.contains(i))
        .cloned()
        .collect();
    let (created, updated, destroyed, _) = alice.email_changes("a1", &s0).await?;
    assert_eq!(created, new, "created since {s0}");
    assert!(
        updated.is_empty() && destroyed.is_empty(),
        "{updated:?} {destroyed:?}"
    );
    // Bob heard nothing of it.
    assert!(
        bob.push(Duration::from_millis(300)).await?.is_none(),
        "bob was told of alice's account"
    );

    // 2. A flag change by another IMAP client: Email (and Mailbox), not EmailDelivery.
    let mut other = ImapClient::login(dovecot.imap_port(), ALICE, "imap-a")?;
    other.select("INBOX")?;
    let uids = other.uids()?;
    other.store_flags(&uids[0].to_string(), "+FLAGS", &["\\Seen"])?;
    let p = alice
        .push(WAIT)
        .await?
        .context("no StateChange after a flag change")?;
    let c = changed(&p, "a1").context("a1")?;
    assert!(
        c.contains_key("Email") && !c.contains_key("EmailDelivery"),
        "{p}"
    );
    let s2 = last_email_state(&mut alice, "a1", &p).await?;
    let (created, updated, destroyed, _) = alice.email_changes("a1", &s1).await?;
    assert!(created.is_empty() && destroyed.is_empty());
    assert_eq!(updated, first_alice, "the flagged message, exactly");
    let push_state = p["pushState"].as_str().context("pushState")?.to_string();

    // 3. Gone, then back with the last push state: what happened meanwhile is pushed at
    // once.
    drop(alice);
    dovecot.deliver(
        ALICE,
        &corpus::message("x@example.org", ALICE, "third", "z"),
    )?;
    other.store_flags(&uids[0].to_string(), "-FLAGS", &["\\Seen"])?;
    let mut alice = ws_connect(port, &alice_auth, None).await?;
    let ids = alice.wait_emails("a1", 3).await?;
    // Let the body of the third message land too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    alice
        .enable(Some(&["Email", "Mailbox"]), Some(&push_state))
        .await?;
    let p = alice
        .push(WAIT)
        .await?
        .context("nothing pushed on reconnect")?;
    let c = changed(&p, "a1").context("a1")?;
    assert!(c.contains_key("Email") && c.contains_key("Mailbox"), "{p}");
    assert!(!c.contains_key("EmailDelivery"), "filtered out: {p}");
    let third: Vec<String> = ids
        .iter()
        .filter(|i| !first_alice.contains(i) && !new.contains(i))
        .cloned()
        .collect();
    let (created, updated, _, _) = alice.email_changes("a1", &s2).await?;
    assert_eq!(created, third);
    assert_eq!(updated, first_alice);
    // Back with the newest push state: nothing is pushed.
    let current = p["pushState"].as_str().context("pushState")?.to_string();
    let mut again = ws_connect(port, &alice_auth, None).await?;
    again.enable(None, Some(&current)).await?;
    assert!(again.push(Duration::from_millis(400)).await?.is_none());

    // 4. A change made through JMAP by another client of the same user.
    alice.settle(Duration::from_millis(500)).await?;
    let (_, before) = alice.email_ids("a1").await?;
    let flagged = &first_alice[0];
    let r = again
        .call(json!([["Email/set", {"accountId": "a1",
            "update": {flagged.clone(): {"keywords/$flagged": true}}}, "s"]]))
        .await?;
    assert!(
        r["methodResponses"][0][1]["updated"].get(flagged).is_some(),
        "Email/set: {r}"
    );
    let p = alice
        .push(WAIT)
        .await?
        .context("no StateChange after Email/set")?;
    let c = changed(&p, "a1").context("a1")?;
    assert!(
        c.contains_key("Email") && !c.contains_key("EmailDelivery"),
        "{p}"
    );
    let (created, updated, destroyed, _) = alice.email_changes("a1", &before).await?;
    assert!(created.is_empty() && destroyed.is_empty());
    assert_eq!(&updated, &first_alice, "the flagged message, exactly");
    // The outbox replays it to Dovecot; whatever the sync sees of it changes no other id.
    alice.settle(Duration::from_millis(700)).await?;
    let (_, updated, _, _) = alice.email_changes("a1", &before).await?;
    assert_eq!(&updated, &first_alice);

    // 5. Isolation the other way: bob's delivery reaches bob, not alice.
    dovecot.deliver(BOB, &corpus::message("x@example.org", BOB, "second", "y"))?;
    let p = bob.push(WAIT).await?.context("bob's push")?;
    assert!(
        changed(&p, "a2").is_some() && changed(&p, "a1").is_none(),
        "{p}"
    );
    assert!(
        alice.push(Duration::from_millis(500)).await?.is_none(),
        "alice was told of bob's account"
    );
    // And push disabled: no more StateChanges.
    bob.settle(Duration::from_millis(700)).await?;
    bob.send(&json!({"@type": "WebSocketPushDisable"})).await?;
    bob.call(json!([["Core/echo", {}, "e"]])).await?;
    dovecot.deliver(BOB, &corpus::message("x@example.org", BOB, "third", "y"))?;
    bob.wait_emails("a2", 3).await?;
    assert!(bob.pushes.is_empty() && bob.push(Duration::from_millis(300)).await?.is_none());
    Ok(())
}

/// An account added (`tidings account add`) while a client is connected is followed at
/// once: its first sync is pushed to its owner's socket, and to no other user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_added_while_connected_is_pushed_to_its_owner_only() -> Result<()> {
    const CAROL: &str = "carol@example.org";
    let (dovecot, serve) = start()?;
    dovecot.add_user(CAROL, "imap-c")?;
    dovecot.deliver(
        CAROL,
        &corpus::message("x@example.org", CAROL, "hello", "c"),
    )?;
    let mut alice = ws_connect_when_up(serve.port, &basic("alice", "pw")).await?;
    let mut bob = ws_connect(serve.port, &basic("bob", "pw"), None).await?;
    alice.wait_emails("a1", 1).await?;
    bob.wait_emails("a2", 1).await?;
    alice.enable(None, None).await?;
    bob.enable(None, None).await?;
    alice.settle(Duration::from_millis(700)).await?;
    bob.settle(Duration::from_millis(700)).await?;

    let mut add = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["account", "add", "--user", "alice", "--name", "second"])
        .args(["--host", "127.0.0.1", "--port"])
        .arg(dovecot.imaps_port().to_string())
        .args(["--security", "tls", "--username", CAROL, "--ca-file"])
        .arg(dovecot.ca_file())
        .arg("--config")
        .arg(&serve.config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    {
        use std::io::Write;
        let mut stdin = add.stdin.take().context("stdin")?;
        writeln!(stdin, "imap-c")?;
    }
    assert!(add.wait()?.success(), "tidings account add failed");

    // The server starts the account within its rescan period; its first sync is pushed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    while seen.is_none() && std::time::Instant::now() < deadline {
        if let Some(p) = alice.push(Duration::from_secs(2)).await? {
            seen = changed(&p, "a3").cloned();
        }
    }
    let c = seen.context("no StateChange for the account added while connected")?;
    assert!(
        c.contains_key("Mailbox") || c.contains_key("Email"),
        "{c:?}"
    );
    alice.wait_emails("a3", 1).await?;
    for v in bob.settle(Duration::from_millis(500)).await? {
        assert!(
            changed(&v, "a3").is_none(),
            "bob was told of alice's new account: {v}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventsource_push_with_types_closeafter_ping_and_last_event_id() -> Result<()> {
    let (dovecot, serve) = start()?;
    let port = serve.port;
    let auth = basic("alice", "pw");
    let mut ws = ws_connect_when_up(port, &auth).await?;
    let first = ws.wait_emails("a1", 1).await?;
    // Wait until the first sync is quiet (its bodies land after the headers).
    ws.enable(None, None).await?;
    ws.settle(Duration::from_millis(700)).await?;
    ws.send(&json!({"@type": "WebSocketPushDisable"})).await?;
    let (_, s0) = ws.email_ids("a1").await?;

    let mut es = EventSource::open(port, &auth, "types=Email&closeafter=no&ping=0", None).await?;
    assert_eq!(es.status, 200, "{}", es.head);
    assert!(
        es.head
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream")
    );
    let mut bob_es = EventSource::open(
        port,
        &basic("bob", "pw"),
        "types=*&closeafter=no&ping=0",
        None,
    )
    .await?;

    dovecot.deliver(
        ALICE,
        &corpus::message("x@example.org", ALICE, "second", "y"),
    )?;
    let ev = es
        .next(WAIT)
        .await?
        .context("no state event after a delivery")?;
    assert_eq!(ev.name, "state");
    let v: serde_json::Value = serde_json::from_str(&ev.data)?;
    assert_eq!(v["@type"], "StateChange");
    let c = changed(&v, "a1").context("a1")?;
    assert_eq!(
        c.keys().collect::<Vec<_>>(),
        vec!["Email"],
        "types=Email only: {v}"
    );
    let ids = ws.wait_emails("a1", 2).await?;
    let new: Vec<String> = ids.iter().filter(|i| !first.contains(i)).cloned().collect();
    let (created, _, _, _) = ws.email_changes("a1", &s0).await?;
    assert_eq!(created, new);
    // Let the body's transaction be pushed too; keep the last event id.
    let mut last = ev.id.clone().context("state events carry an id")?;
    while let Some(ev) = es.next(Duration::from_millis(700)).await? {
        last = ev.id.context("id")?;
    }
    assert!(
        bob_es.next(Duration::from_millis(300)).await?.is_none(),
        "bob heard of alice"
    );

    // A flag change by another IMAP client.
    let (_, s1) = ws.email_ids("a1").await?;
    let mut other = ImapClient::login(dovecot.imap_port(), ALICE, "imap-a")?;
    other.select("INBOX")?;
    let uids = other.uids()?;
    other.store_flags(&uids[0].to_string(), "+FLAGS", &["\\Flagged"])?;
    let ev = es
        .next(WAIT)
        .await?
        .context("no state event after a flag change")?;
    let v: serde_json::Value = serde_json::from_str(&ev.data)?;
    assert!(changed(&v, "a1").context("a1")?.contains_key("Email"));
    let (_, updated, _, _) = ws.email_changes("a1", &s1).await?;
    assert_eq!(updated, first);

    // A change through JMAP by another client (Email/set on the socket).
    while es.next(Duration::from_millis(500)).await?.is_some() {}
    let (_, s2) = ws.email_ids("a1").await?;
    let r = ws
        .call(json!([["Email/set", {"accountId": "a1",
            "update": {new[0].clone(): {"keywords/$seen": true}}}, "s"]]))
        .await?;
    assert!(
        r["methodResponses"][0][1]["updated"].get(&new[0]).is_some(),
        "{r}"
    );
    let ev = es
        .next(WAIT)
        .await?
        .context("no state event after Email/set")?;
    let v: serde_json::Value = serde_json::from_str(&ev.data)?;
    assert!(changed(&v, "a1").context("a1")?.contains_key("Email"));
    let (_, updated, _, _) = ws.email_changes("a1", &s2).await?;
    assert_eq!(updated, new);
    drop(es);

    // Reconnecting with Last-Event-ID: the change made meanwhile comes at once.
    other.store_flags(&uids[0].to_string(), "-FLAGS", &["\\Flagged"])?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut es =
        EventSource::open(port, &auth, "types=*&closeafter=state&ping=0", Some(&last)).await?;
    let ev = es.next(WAIT).await?.context("missed change not pushed")?;
    let v: serde_json::Value = serde_json::from_str(&ev.data)?;
    assert!(
        changed(&v, "a1").context("a1")?.contains_key("Email"),
        "{v}"
    );
    // closeafter=state: the response ends after that event.
    assert!(
        es.ended(WAIT).await?,
        "closeafter=state did not end the response"
    );

    // ping: clamped to the minimum, with its interval in the data.
    let mut es = EventSource::open(port, &auth, "types=Email&closeafter=no&ping=1", None).await?;
    let ev = es.next(Duration::from_secs(8)).await?.context("no ping")?;
    assert_eq!(ev.name, "ping");
    let v: serde_json::Value = serde_json::from_str(&ev.data)?;
    assert_eq!(v["interval"], 5);

    // Bad parameters and no credentials are refused.
    let bad = EventSource::open(port, &auth, "types=*&closeafter=never&ping=0", None).await?;
    assert_eq!(bad.status, 400);
    let anon = EventSource::open(port, "Basic eDp5", "types=*", None).await?;
    assert_eq!(anon.status, 401);
    Ok(())
}
