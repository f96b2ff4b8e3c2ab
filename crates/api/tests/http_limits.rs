#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! The HTTP listener against hostile clients, on a real socket: a trickled header, an idle
//! keep-alive connection and a stalled upload are cut after their deadlines while other
//! clients are served; one address cannot hold more than its share of connections; a
//! WebSocket is not cut by the HTTP deadlines; forwarding headers count only from a trusted
//! proxy.

mod common;

use api::{AppState, HttpLimits, TrustedProxies};
use argon2::password_hash::{PasswordHasher, SaltString};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Short deadlines, so the tests take seconds.
fn limits() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_millis(600),
        body_idle_timeout: Duration::from_millis(600),
        max_connections_per_address: 4,
        trusted_proxies: TrustedProxies::default(),
    }
}

/// Argon2 with tiny parameters: the server reads them from the hash, and a debug build
/// checks it in microseconds.
fn cheap_hash(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

async fn start(limits: HttpLimits) -> (u16, Arc<dyn Store>) {
    let store: Arc<dyn Store> = common::test_store(None).await;
    store.create_user("alice", &cheap_hash("pw")).await.unwrap();
    let state = AppState::new(store.clone(), "http://127.0.0.1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(api::serve_with(
        listener,
        Arc::new(state),
        limits,
        std::future::pending(),
    ));
    (port, store)
}

/// A connection from the loopback address `127.0.0.<n>`.
async fn connect_from(n: u8, port: u16) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)), 0))
        .unwrap();
    s.connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// Reads one response (header and a Content-Length body) off a keep-alive connection and
/// returns its status; `None` when the server closed the connection instead.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return head.split(' ').nth(1).and_then(|c| c.parse().ok());
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no response within 5 s"),
        }
    }
}

/// Waits (at most 5 s) until the server closes `s`; returns how long that took.
async fn closed_after<S: AsyncRead + Unpin>(s: &mut S) -> Duration {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server never closed the connection"),
        }
    }
}

async fn get<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, path: &str, extra: &str) -> Option<u16> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes())
        .await
        .ok()?;
    read_response(s).await
}

#[tokio::test]
async fn a_trickled_header_is_cut_while_other_clients_are_served() {
    let (port, _) = start(limits()).await;
    let mut slow = connect_from(1, port).await;
    slow.write_all(b"GET /.well-known/jmap HTTP/1.1\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let trickle = tokio::spawn(async move {
        // One header line every 200 ms, for at most 5 s, until the server hangs up.
        for i in 0..25 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow
                .write_all(format!("X-Slow-{i}: x\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            let mut b = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), slow.read(&mut b)).await
            {
                return;
            }
        }
        panic!("the trickling client was never cut");
    });
    // Meanwhile another client is served at once.
    let mut other = connect_from(2, port).await;
    assert_eq!(get(&mut other, "/.well-known/jmap", "").await, Some(401));
    trickle.await.unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "cut after {took:?}");
    assert!(
        took >= Duration::from_millis(500),
        "cut early, after {took:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not() {
    let (port, _) = start(limits()).await;
    let mut busy = connect_from(1, port).await;
    let start = Instant::now();
    // Five requests 300 ms apart: longer than the idle timeout in total, shorter each.
    for _ in 0..5 {
        assert_eq!(get(&mut busy, "/.well-known/jmap", "").await, Some(401));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(start.elapsed() > Duration::from_millis(1200));
    // Now it stays idle, and the server closes it after about the idle timeout.
    let took = closed_after(&mut busy).await;
    assert!(
        took < Duration::from_millis(1500),
        "closed after {took:?} idle"
    );
    // A connection that never sends a byte is closed too.
    let mut silent = connect_from(1, port).await;
    let took = closed_after(&mut silent).await;
    assert!(took >= Duration::from_millis(500) && took < Duration::from_millis(1500));
}

#[tokio::test]
async fn the_next_request_on_a_kept_alive_connection_has_the_header_deadline() {
    let (port, _) = start(HttpLimits {
        idle_timeout: Duration::from_secs(10),
        ..limits()
    })
    .await;
    let mut s = connect_from(1, port).await;
    assert_eq!(get(&mut s, "/.well-known/jmap", "").await, Some(401));
    // Half of the next request, then nothing: the header deadline (600 ms), not the idle
    // one (10 s), applies.
    s.write_all(b"GET /.well-known/jmap HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let took = closed_after(&mut s).await;
    assert!(took < Duration::from_millis(1500), "closed after {took:?}");
}

#[tokio::test]
async fn an_upgrade_header_alone_does_not_escape_the_idle_timeout() {
    let (port, _) = start(limits()).await;
    let mut s = connect_from(1, port).await;
    // Not a WebSocket handshake that succeeded: the answer is 401, not 101.
    let status = get(
        &mut s,
        "/jmap/ws",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: jmap\r\n",
    )
    .await;
    assert_ne!(status, Some(101));
    let took = closed_after(&mut s).await;
    assert!(took < Duration::from_millis(1500), "closed after {took:?}");
}

#[tokio::test]
async fn a_stalled_upload_is_cut_and_a_slow_one_is_not() {
    let (port, _) = start(limits()).await;
    let auth = basic("alice", "pw");
    let body = br#"{"using":["urn:ietf:params:jmap:core"],"methodCalls":[]}"#;
    // Slow but moving: one byte every 100 ms, far longer in total than the body timeout.
    let mut slow = connect_from(1, port).await;
    slow.write_all(
        format!(
            "POST /jmap/api HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let start = Instant::now();
    for b in body {
        tokio::time::sleep(Duration::from_millis(100)).await;
        slow.write_all(&[*b]).await.unwrap();
    }
    assert!(start.elapsed() > Duration::from_secs(2));
    assert_eq!(read_response(&mut slow).await, Some(200));

    // Stalled: half the body, then nothing.
    let mut stalled = connect_from(1, port).await;
    stalled
        .write_all(
            format!(
                "POST /jmap/api HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stalled.write_all(&body[..10]).await.unwrap();
    let start = Instant::now();
    // The request fails (an error answer or a closed connection) after the body timeout,
    // and the connection does not stay open.
    let _ = read_response(&mut stalled).await;
    closed_after(&mut stalled).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn one_address_cannot_take_more_than_its_share_of_connections() {
    let (port, _) = start(HttpLimits {
        idle_timeout: Duration::from_secs(30),
        header_read_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from(1, port).await;
        assert_eq!(get(&mut s, "/.well-known/jmap", "").await, Some(401));
        held.push(s);
    }
    // The fifth from the same address is closed without an answer...
    let mut fifth = connect_from(1, port).await;
    assert_eq!(get(&mut fifth, "/.well-known/jmap", "").await, None);
    // ...while another address is served.
    let mut other = connect_from(2, port).await;
    assert_eq!(get(&mut other, "/.well-known/jmap", "").await, Some(401));
    // A closed connection frees its place.
    held.pop();
    let start = Instant::now();
    loop {
        let mut s = connect_from(1, port).await;
        if get(&mut s, "/.well-known/jmap", "").await == Some(401) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "place never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_websocket_is_not_cut_by_the_http_deadlines() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (port, _) = start(limits()).await;
    let mut req = format!("ws://127.0.0.1:{port}/jmap/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", basic("alice", "pw").parse().unwrap());
    req.headers_mut()
        .insert("sec-websocket-protocol", "jmap".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    // Silent for three idle timeouts (the push pings are every few minutes by default).
    tokio::time::sleep(Duration::from_millis(1800)).await;
    ws.send(Message::Text(
        r#"{"@type":"Request","using":["urn:ietf:params:jmap:core"],"methodCalls":[]}"#.into(),
    ))
    .await
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(_)) => {}
                other => panic!("the WebSocket ended: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert!(answer.contains("\"Response\""), "{answer}");
}

/// Eleven wrong passwords through a trusted proxy for one client: that client waits, the
/// same user through the same proxy from another client does not.
#[tokio::test]
async fn the_client_behind_a_trusted_proxy_is_limited_not_the_proxy() {
    let (port, _) = start(HttpLimits {
        trusted_proxies: TrustedProxies::parse(&["127.0.0.1/32"]).unwrap(),
        ..limits()
    })
    .await;
    let via = |client: &str, pw: &str| {
        format!(
            "Authorization: {}\r\nX-Forwarded-For: 198.51.100.1, {client}\r\n",
            basic("alice", pw)
        )
    };
    let mut s = connect_from(1, port).await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(get(&mut s, "/jmap/session", &via("203.0.113.5", "wrong")).await);
    }
    assert!(statuses.iter().all(|s| *s == Some(401)), "{statuses:?}");
    assert_eq!(
        get(&mut s, "/jmap/session", &via("203.0.113.5", "pw")).await,
        Some(429)
    );
    assert_eq!(
        get(&mut s, "/jmap/session", &via("203.0.113.6", "pw")).await,
        Some(200)
    );

    // Without a trusted proxy the header is the client's own words: the TCP peer counts.
    let (port, _) = start(limits()).await;
    let mut s = connect_from(3, port).await;
    for i in 0..11 {
        let forged = format!("203.0.113.{i}");
        assert_eq!(
            get(&mut s, "/jmap/session", &via(&forged, "wrong")).await,
            Some(401)
        );
    }
    assert_eq!(
        get(&mut s, "/jmap/session", &via("203.0.113.99", "pw")).await,
        Some(429)
    );
}

/// The HTTPS listener has the same deadlines: an idle connection and a stalled header are
/// cut there too (the certificate is the testkit Dovecot's, for 127.0.0.1).
#[tokio::test]
async fn over_tls_an_idle_connection_and_a_stalled_header_are_cut_too() {
    let dovecot = testkit::Dovecot::start(testkit::DovecotOptions::default()).unwrap();
    let (cert, key) = dovecot.tls_cert_and_key();
    let acceptor = api::tls::acceptor(&cert, &key).unwrap();
    let store: Arc<dyn Store> = common::test_store(None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(api::serve_tls_with(
        listener,
        acceptor,
        Arc::new(AppState::new(store, "https://127.0.0.1")),
        limits(),
        std::future::pending(),
    ));
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(dovecot.ca_file()).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = || async {
        let tcp = connect_from(1, port).await;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, tcp).await.unwrap()
    };
    let mut idle = tls().await;
    assert_eq!(get(&mut idle, "/.well-known/jmap", "").await, Some(401));
    let took = closed_after(&mut idle).await;
    assert!(
        took < Duration::from_millis(1500),
        "idle closed after {took:?}"
    );

    let mut stalled = tls().await;
    stalled
        .write_all(b"GET /.well-known/jmap HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let took = closed_after(&mut stalled).await;
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "stalled header closed after {took:?}"
    );
}
