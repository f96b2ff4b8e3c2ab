#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! Web Push with VAPID (RFC 8292, RFC 9749) on a real socket: a loopback push service
//! (an axum server in the test) receives the PushVerification and a StateChange, checks
//! each one's `Authorization: vapid` token with openssl (not with the ring that signed
//! it) against the public key the Session offers, decrypts the RFC 8291 body with `ece`,
//! and a restarted server offers the same key.

mod common;

use api::AppState;
use api::auth::hash_password;
use axum::http::HeaderMap;
use base64::Engine as _;
use jmap_server::{PushHub, PushLimits, Vapid};
use mail_types::{AccountKind, Security};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::{NewAccount, ServerSettings, Store};
use tokio::sync::{mpsc, oneshot};

const WAIT: Duration = Duration::from_secs(20);

fn b64url(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap()
}

struct Post {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The push service: records every POST, answers 201.
async fn push_service() -> (u16, mpsc::UnboundedReceiver<Post>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/push/{device}",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Post {
                    headers,
                    body: body.to_vec(),
                });
                axum::http::StatusCode::CREATED
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (port, rx)
}

struct Server {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(store: Arc<dyn Store>, key_file: &Path) -> Server {
    let mut state = AppState::new(store.clone(), "http://127.0.0.1:8080");
    state.push = PushHub::new(
        store.as_ref(),
        PushLimits {
            subscription_allow_http: true,
            subscription_allow_private: true,
            vapid: Some(Arc::new(
                Vapid::load_or_create(key_file, "mailto:ops@example.org").unwrap(),
            )),
            ..PushLimits::default()
        },
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(api::serve(l, Arc::new(state), async move {
        let _ = rx.await;
    }));
    Server {
        port,
        stop: Some(tx),
        task,
    }
}

impl Server {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(WAIT, self.task).await;
    }
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    )
}

async fn session(port: u16) -> Value {
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/jmap/session"))
        .header("authorization", basic())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap()
}

async fn jmap(port: u16, calls: Value) -> Value {
    let body = json!({
        // A client may name every capability the Session offers.
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail",
                  "urn:ietf:params:jmap:webpush-vapid"],
        "methodCalls": calls,
    });
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/jmap/api"))
        .header("authorization", basic())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// RFC 8292 2 and 3: checks the `vapid` Authorization of a push with openssl, against
/// `public` (the Session's applicationServerKey); returns the token's claims.
fn check_vapid(p: &Post, public: &str, origin: &str) -> Value {
    use openssl::bn::{BigNum, BigNumContext};
    use openssl::ec::{EcGroup, EcKey, EcPoint};
    use openssl::ecdsa::EcdsaSig;
    use openssl::nid::Nid;
    let auth = p
        .headers
        .get("authorization")
        .expect("no Authorization header on the push")
        .to_str()
        .unwrap();
    let rest = auth.strip_prefix("vapid ").expect(auth);
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v);
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v);
        }
    }
    let (t, k) = (t.expect(auth), k.expect(auth));
    assert_eq!(k, public, "k= is the key the Session offers");
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS compact serialization: {t}");
    let header: Value = serde_json::from_slice(&b64url(parts[0])).unwrap();
    assert_eq!(header["alg"], "ES256", "{header}");
    let sig = b64url(parts[2]);
    assert_eq!(sig.len(), 64, "ES256 signature is r || s (RFC 7518 3.4)");

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let mut ctx = BigNumContext::new().unwrap();
    let point = EcPoint::from_bytes(&group, &b64url(public), &mut ctx).unwrap();
    let key = EcKey::from_public_key(&group, &point).unwrap();
    let sig = EcdsaSig::from_private_components(
        BigNum::from_slice(&sig[..32]).unwrap(),
        BigNum::from_slice(&sig[32..]).unwrap(),
    )
    .unwrap();
    let digest = openssl::sha::sha256(format!("{}.{}", parts[0], parts[1]).as_bytes());
    assert!(
        sig.verify(&digest, &key).unwrap(),
        "the token's signature does not verify with the Session's key"
    );

    let claims: Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
    assert_eq!(claims["aud"], origin, "aud is the push resource's origin");
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(exp > now(), "expired token: {claims}");
    assert!(exp <= now() + 24 * 3600, "exp beyond 24 hours: {claims}");
    assert_eq!(claims["sub"], "mailto:ops@example.org");
    claims
}

fn decrypt(p: &Post, keys: &ece::EcKeyComponents, auth: &[u8]) -> Value {
    assert_eq!(
        p.headers
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("aes128gcm")
    );
    let clear = ece::decrypt(keys, auth, &p.body).unwrap();
    serde_json::from_slice(&clear).unwrap()
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Post>) -> Post {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no push within the deadline")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_carry_a_vapid_token_signed_with_the_session_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("keys/vapid.pem");
    let store: Arc<dyn Store> = common::test_store(Some(dir.path())).await;
    let user = store
        .create_user("alice", &hash_password("pw").unwrap())
        .await
        .unwrap();
    // No engine runs: the account's changes come from JMAP, its servers are never asked.
    store
        .create_account(&NewAccount {
            user,
            name: "mail".into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: 9,
                security: Security::None,
                username: "alice@example.org".into(),
                password_enc: b"x".to_vec(),
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await
        .unwrap();
    let server = start(store.clone(), &key_file).await;
    let (push_port, mut posts) = push_service().await;
    let origin = format!("http://127.0.0.1:{push_port}");

    // RFC 9749 3: the Session offers the key.
    let s = session(server.port).await;
    let public = s["capabilities"]["urn:ietf:params:jmap:webpush-vapid"]["applicationServerKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no VAPID capability: {s}"))
        .to_owned();
    assert_eq!(b64url(&public).len(), 65);
    assert_eq!(b64url(&public)[0], 4, "uncompressed point");

    let (keypair, auth) = ece::generate_keypair_and_auth_secret().unwrap();
    let components = keypair.raw_components().unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let r = jmap(
        server.port,
        json!([["PushSubscription/set", {"create": {"k1": {
            "deviceClientId": "browser", "url": format!("{origin}/push/browser"),
            "keys": {"p256dh": b64(components.public_key()), "auth": b64(&auth)}}}}, "0"]]),
    )
    .await;
    let id = r["methodResponses"][0][1]["created"]["k1"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();

    // RFC 8620 7.2.2: the PushVerification is signed too.
    let p = next(&mut posts).await;
    check_vapid(&p, &public, &origin);
    let v = decrypt(&p, &components, &auth);
    assert_eq!(v["@type"], "PushVerification");
    let code = v["verificationCode"].as_str().unwrap().to_owned();
    let r = jmap(
        server.port,
        json!([["PushSubscription/set", {"update": {id.clone(): {"verificationCode": code}}}, "0"]]),
    )
    .await;
    assert!(
        r["methodResponses"][0][1]["updated"][&id].is_object()
            || r["methodResponses"][0][1]["updated"]
                .as_object()
                .is_some_and(|m| m.contains_key(&id)),
        "{r}"
    );

    // A change to the account: the StateChange comes signed, and still decrypts.
    let r = jmap(
        server.port,
        json!([["Mailbox/set", {"accountId": "a1", "create": {"m": {"name": "Receipts"}}}, "0"]]),
    )
    .await;
    assert!(
        r["methodResponses"][0][1]["created"]["m"].is_object(),
        "{r}"
    );
    let p = next(&mut posts).await;
    let claims = check_vapid(&p, &public, &origin);
    let change = decrypt(&p, &components, &auth);
    assert_eq!(change["@type"], "StateChange", "{change}");
    assert!(change["changed"]["a1"]["Mailbox"].is_string(), "{change}");
    // The token in use (reused per push service for an hour) has not expired.
    assert!(claims["exp"].as_u64().unwrap() > now() + 3600);

    // A restart reads the same key from its file: browsers subscribed with it go on.
    server.stop().await;
    let again = start(store.clone(), &key_file).await;
    let s = session(again.port).await;
    assert_eq!(
        s["capabilities"]["urn:ietf:params:jmap:webpush-vapid"]["applicationServerKey"],
        public.as_str()
    );
    again.stop().await;
}
