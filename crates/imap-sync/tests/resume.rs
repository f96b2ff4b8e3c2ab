//! A connection cut in the middle of a FETCH resumes without refetching what is stored.

mod common;

use anyhow::Result;
use common::*;
use imap_sync::sync::AccountSync;
use imap_sync::{Endpoint, Session};
use mail_types::Security;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use testkit::DovecotOptions;
use testkit::corpus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loopback proxy to `upstream` that closes both sides once `cut_after` bytes went from
/// the server to the client. Returns its port.
async fn cutting_proxy(upstream: u16, cut_after: usize) -> Result<(u16, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let passed = Arc::new(AtomicUsize::new(0));
    let counter = passed.clone();
    tokio::spawn(async move {
        // One connection is all the sync opens.
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
            return;
        };
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let up = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        };
        let down = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let before = counter.fetch_add(n, Ordering::SeqCst);
                let allowed = cut_after.saturating_sub(before).min(n);
                if cw.write_all(&buf[..allowed]).await.is_err() || allowed < n {
                    break;
                }
            }
        };
        tokio::select! { _ = up => {}, _ = down => {} }
    });
    Ok((port, passed))
}

fn small_batches(env: &Env) -> AccountSync {
    let mut sync = env.sync();
    sync.options.header_chunk = 20;
    sync.options.body_chunk = 10;
    sync.options.batch = 10;
    sync
}

async fn cut_then_resume(cut_after: usize) -> Result<()> {
    let env = env(DovecotOptions::default()).await?;
    let msgs = corpus::generate(21, 200, &["INBOX"]);
    env.seed("INBOX", &msgs)?;
    let (port, _) = cutting_proxy(env.dovecot.imap_port(), cut_after).await?;
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        ca_file: None,
    };
    let sync = small_batches(&env);
    let mut s = Session::connect(&ep, &env.creds()).await?;
    let first = sync.sync_all(&mut s).await;
    assert!(first.is_err(), "the cut must surface as an error");

    let inbox = env
        .store
        .mailboxes(env.account)
        .await?
        .into_iter()
        .find(|m| m.name == "INBOX")
        .expect("inbox");
    let headers_before = inbox.progress.headers as usize;
    let bodies_before = inbox.progress.bodies as usize;
    assert!(headers_before > 0, "some batches committed before the cut");

    let mut s = env.session().await?;
    let report = sync.sync_all(&mut s).await?;
    assert_eq!(
        report.new_headers,
        200 - headers_before,
        "stored headers refetched: {report:?}"
    );
    assert_eq!(
        report.bodies,
        200 - bodies_before,
        "stored bodies refetched: {report:?}"
    );
    env.assert_in_step().await?;
    let inbox = env
        .store
        .mailboxes(env.account)
        .await?
        .into_iter()
        .find(|m| m.name == "INBOX")
        .expect("inbox");
    assert_eq!(inbox.progress.headers, 200);
    assert_eq!(inbox.progress.bodies, 200);
    Ok(())
}

#[tokio::test]
async fn cut_during_header_fetch_resumes() -> Result<()> {
    // The greeting, login and LIST are a few KB; headers average about 1 KB each.
    cut_then_resume(60 * 1024).await
}

#[tokio::test]
async fn cut_during_body_fetch_resumes() -> Result<()> {
    // Past all headers (about 200 KB), inside the bodies (several MB).
    cut_then_resume(1024 * 1024).await
}
