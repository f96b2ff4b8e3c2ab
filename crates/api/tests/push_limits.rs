#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! Push connection limits on a real socket: connections per user, and a client that stops
//! answering pings is closed and frees its place.

mod common;

use api::AppState;
use api::auth::hash_password;
use futures::StreamExt;
use jmap_server::{PushHub, PushLimits};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn connect(
    port: u16,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let mut req = format!("ws://127.0.0.1:{port}/jmap/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", "Basic YWxpY2U6cHc=".parse().unwrap()); // alice:pw
    req.headers_mut()
        .insert("sec-websocket-protocol", "jmap".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((s, _)) => Ok(s),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn connections_per_user_are_limited_and_silent_ones_are_closed() {
    let store: Arc<dyn Store> = common::test_store(None).await;
    store
        .create_user("alice", &hash_password("pw").unwrap())
        .await
        .unwrap();
    let mut state = AppState::new(store.clone(), "http://127.0.0.1");
    state.push = PushHub::new(
        store.as_ref(),
        PushLimits {
            connections_per_user: 2,
            ws_ping: Duration::from_millis(200),
            write_timeout: Duration::from_secs(1),
            ..PushLimits::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(api::serve(
        listener,
        Arc::new(state),
        std::future::pending(),
    ));

    // Two are allowed, the third is refused.
    let mut live = connect(port).await.unwrap();
    let silent = connect(port).await.unwrap();
    assert_eq!(connect(port).await.err(), Some(429));

    // `live` reads (so the library answers pings); `silent` never does. After three ping
    // intervals without a word the server closes `silent`, and its place is free again.
    let reader = tokio::spawn(async move {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            match tokio::time::timeout(Duration::from_millis(100), live.next()).await {
                Ok(Some(Ok(_))) | Err(_) => {}
                Ok(other) => panic!("live connection ended: {other:?}"),
            }
        }
        live
    });
    let start = Instant::now();
    let third = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(s) = connect(port).await {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the silent connection was never closed"
        );
    };
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "closed too early"
    );
    // The reading connection survived the pings.
    let _live = reader.await.unwrap();
    drop((silent, third));
}
