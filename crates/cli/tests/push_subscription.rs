#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! PushSubscription (RFC 8620 7.2) through `tidings serve` against Dovecot, delivering to a
//! loopback HTTP receiver: the PushVerification, nothing before the code is sent back,
//! StateChange after a delivery encrypted per RFC 8291 (decrypted here with Mozilla's
//! `ece`), retries after a 503, `/get` without url and keys, and nothing after destroy.

mod push_support;

use anyhow::{Context, Result, bail};
use base64::Engine;
use push_support::*;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{Dovecot, DovecotOptions, corpus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const ALICE: &str = "alice@example.org";

#[derive(Debug)]
struct Post {
    head: String,
    body: Vec<u8>,
}

/// A loopback HTTP/1.1 receiver: records every POST and answers with the next status of
/// `statuses` (201 when empty).
async fn receiver(
    statuses: Arc<Mutex<VecDeque<u16>>>,
) -> Result<(u16, mpsc::UnboundedReceiver<Post>)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (tx, statuses) = (tx.clone(), statuses.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: head, then Content-Length bytes.
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p;
                        }
                        let mut b = [0u8; 4096];
                        match tokio::time::timeout(Duration::from_secs(60), s.read(&mut b)).await {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&b[..n]),
                            _ => return,
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + 4 + len {
                        let mut b = [0u8; 4096];
                        match s.read(&mut b).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&b[..n]),
                            _ => return,
                        }
                    }
                    let body = buf[head_end + 4..head_end + 4 + len].to_vec();
                    buf.drain(..head_end + 4 + len);
                    let status = statuses.lock().unwrap().pop_front().unwrap_or(201);
                    let _ = tx.send(Post { head, body });
                    let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((port, rx))
}

fn header<'a>(p: &'a Post, name: &str) -> Option<&'a str> {
    p.head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn decrypt(p: &Post, keys: &ece::EcKeyComponents, auth: &[u8]) -> Result<Value> {
    assert_eq!(
        header(p, "content-encoding"),
        Some("aes128gcm"),
        "{}",
        p.head
    );
    assert!(
        header(p, "ttl").is_some(),
        "RFC 8030 TTL header: {}",
        p.head
    );
    let clear = ece::decrypt(keys, auth, &p.body).map_err(|e| anyhow::anyhow!("decrypt: {e}"))?;
    Ok(serde_json::from_slice(&clear)?)
}

async fn next_post(rx: &mut mpsc::UnboundedReceiver<Post>, within: Duration) -> Option<Post> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_subscriptions_verify_deliver_encrypted_retry_and_destroy() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(ALICE, "imap-a")?;
    dovecot.deliver(
        ALICE,
        &corpus::message("x@example.org", ALICE, "first", "x"),
    )?;
    let serve = serve_with(
        Path::new(env!("CARGO_BIN_EXE_tidings")),
        &dovecot,
        &[("alice", "pw", ALICE, "imap-a")],
        "push_subscription_allow_http = true\npush_subscription_allow_private = true",
    )?;
    let statuses = Arc::new(Mutex::new(VecDeque::new()));
    let (rport, mut posts) = receiver(statuses.clone()).await?;
    let mut ws = ws_connect_when_up(serve.port, &basic("alice", "pw")).await?;
    ws.wait_emails("a1", 1).await?;
    ws.enable(None, None).await?;
    ws.settle(Duration::from_millis(700)).await?;

    let (keypair, auth) =
        ece::generate_keypair_and_auth_secret().map_err(|e| anyhow::anyhow!("{e}"))?;
    let components = keypair
        .raw_components()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let url = format!("http://127.0.0.1:{rport}/push/alice");
    let r = ws
        .call(json!([["PushSubscription/set", {"create": {
            "k1": {"deviceClientId": "phone", "url": url, "types": ["Email"],
                   "keys": {"p256dh": b64(components.public_key()), "auth": b64(&auth)}},
            "bad1": {"deviceClientId": "x", "url": "ftp://example.org/"},
            "bad2": {"deviceClientId": "x", "url": url, "verificationCode": "mine"},
            "bad3": {"deviceClientId": "x", "url": url, "expires": "2001-01-01T00:00:00Z"},
            "bad4": {"deviceClientId": "x", "url": url, "keys": {"p256dh": "AAAA", "auth": "AAAA"}}
        }}, "s"]]))
        .await?;
    let a = &r["methodResponses"][0][1];
    let id = a["created"]["k1"]["id"]
        .as_str()
        .context("created")?
        .to_string();
    assert!(
        a["created"]["k1"]["expires"].is_string(),
        "expires granted: {a}"
    );
    for (k, prop) in [
        ("bad1", "url"),
        ("bad2", "verificationCode"),
        ("bad3", "expires"),
        ("bad4", "keys"),
    ] {
        assert_eq!(a["notCreated"][k]["type"], "invalidProperties", "{k}: {a}");
        assert_eq!(a["notCreated"][k]["properties"][0], prop, "{k}: {a}");
    }

    // The verification comes, encrypted.
    let p = next_post(&mut posts, WAIT)
        .await
        .context("no PushVerification")?;
    assert!(p.head.starts_with("POST /push/alice "), "{}", p.head);
    let v = decrypt(&p, &components, &auth)?;
    assert_eq!(v["@type"], "PushVerification");
    // Signed with the server's VAPID key (RFC 8292; checked in api/tests/vapid.rs).
    assert!(
        header(&p, "authorization").is_some_and(|a| a.starts_with("vapid t=")),
        "{}",
        p.head
    );
    assert_eq!(v["pushSubscriptionId"], id.as_str());
    let code = v["verificationCode"].as_str().context("code")?.to_string();

    // Not verified yet: a delivery is not pushed to it.
    dovecot.deliver(
        ALICE,
        &corpus::message("x@example.org", ALICE, "second", "y"),
    )?;
    ws.push(WAIT)
        .await?
        .context("the socket saw the delivery")?;
    ws.settle(Duration::from_millis(500)).await?;
    assert!(
        next_post(&mut posts, Duration::from_millis(300))
            .await
            .is_none()
    );

    // A wrong code is refused; the right one verifies.
    let r = ws
        .call(json!([["PushSubscription/set", {"update": {id.clone(): {"verificationCode": "nope"}}}, "u"]]))
        .await?;
    assert_eq!(
        r["methodResponses"][0][1]["notUpdated"][&id]["type"],
        "invalidProperties"
    );
    let r = ws
        .call(json!([["PushSubscription/set", {"update": {id.clone(): {"verificationCode": code}}}, "u"],
                     ["PushSubscription/get", {"ids": null}, "g"]]))
        .await?;
    assert!(
        r["methodResponses"][0][1]["updated"].get(&id).is_some(),
        "{r}"
    );
    let got = &r["methodResponses"][1][1]["list"][0];
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["deviceClientId"], "phone");
    assert_eq!(got["verificationCode"], code.as_str());
    assert_eq!(got["types"], json!(["Email"]));
    assert!(
        got.get("url").is_none() && got.get("keys").is_none(),
        "{got}"
    );
    let (_, before) = ws.email_ids("a1").await?;

    // Verified: a delivery is POSTed, encrypted, with the Email state.
    dovecot.deliver(
        ALICE,
        &corpus::message("x@example.org", ALICE, "third", "z"),
    )?;
    let p = next_post(&mut posts, WAIT)
        .await
        .context("no StateChange POST")?;
    let v = decrypt(&p, &components, &auth)?;
    assert_eq!(v["@type"], "StateChange");
    let c = v["changed"]["a1"].as_object().context("a1")?;
    assert_eq!(
        c.keys().collect::<Vec<_>>(),
        vec!["Email"],
        "types filter: {v}"
    );
    let (created, _, _, _) = ws.email_changes("a1", &before).await?;
    assert_eq!(created.len(), 1);
    // The body's transaction follows: let it pass.
    while next_post(&mut posts, Duration::from_millis(700))
        .await
        .is_some()
    {}

    // The receiver fails once with 503: the same change comes again (after ~1 s).
    statuses.lock().unwrap().push_back(503);
    let other = testkit::imap_client::ImapClient::login(dovecot.imap_port(), ALICE, "imap-a");
    let mut other = other?;
    other.select("INBOX")?;
    let uids = other.uids()?;
    other.store_flags(&uids[0].to_string(), "+FLAGS", &["\\Seen"])?;
    let first = next_post(&mut posts, WAIT)
        .await
        .context("no POST for the flag change")?;
    let retried = next_post(&mut posts, WAIT)
        .await
        .context("no retry after 503")?;
    let (v1, v2) = (
        decrypt(&first, &components, &auth)?,
        decrypt(&retried, &components, &auth)?,
    );
    assert_eq!(v1["changed"], v2["changed"], "the retry carries the change");

    // Destroyed: nothing more.
    let r = ws
        .call(
            json!([["PushSubscription/set", {"destroy": [id.clone(), "p999"]}, "d"],
                     ["PushSubscription/get", {}, "g"]]),
        )
        .await?;
    assert_eq!(r["methodResponses"][0][1]["destroyed"], json!([id]));
    assert_eq!(
        r["methodResponses"][0][1]["notDestroyed"]["p999"]["type"],
        "notFound"
    );
    assert_eq!(r["methodResponses"][1][1]["list"], json!([]));
    dovecot.deliver(
        ALICE,
        &corpus::message("x@example.org", ALICE, "fourth", "z"),
    )?;
    ws.push(WAIT)
        .await?
        .context("the socket saw the delivery")?;
    if let Some(p) = next_post(&mut posts, Duration::from_millis(800)).await {
        bail!("a destroyed subscription got {}", p.head);
    }
    Ok(())
}
