//! A server that logs in and then answers nothing usable is retried with a growing delay:
//! a pass that ends without a usable answer counts as a failure, not as a success.

use anyhow::Result;
use engine::{Engine, PasswordSource};
use mail_types::{AccountKind, Security};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use store::{NewAccount, ServerSettings, SqliteStore, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the lying server says to one command: logins work, the mailbox list is empty (so
/// the first pass has nothing to do and succeeds), and EXAMINE/SELECT of INBOX (which the
/// IDLE watcher opens) succeed without the UIDVALIDITY every client needs (RFC 3501 6.3.1).
fn answer(tag: &str, cmd: &str) -> String {
    let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
    match verb.as_str() {
        "CAPABILITY" => format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n"),
        "EXAMINE" | "SELECT" => format!("* 3 EXISTS\r\n{tag} OK [READ-ONLY] done\r\n"),
        "LOGOUT" => format!("* BYE bye\r\n{tag} OK done\r\n"),
        _ => format!("{tag} OK done\r\n"),
    }
}

/// Accepts connections for as long as the test runs and counts the LOGINs.
async fn lying_server(logins: Arc<AtomicUsize>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        for _ in 0..10_000 {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let logins = logins.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                if w.write_all(b"* OK [CAPABILITY IMAP4rev1] liar\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut line = String::new();
                for _ in 0..1_000 {
                    line.clear();
                    match r.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let (tag, cmd) = line.trim_end().split_once(' ').unwrap_or(("*", ""));
                    if cmd.to_ascii_uppercase().starts_with("LOGIN") {
                        logins.fetch_add(1, Ordering::SeqCst);
                    }
                    if w.write_all(answer(tag, cmd).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_usable_answers_is_retried_with_a_growing_delay() -> Result<()> {
    let logins = Arc::new(AtomicUsize::new(0));
    let port = lying_server(logins.clone()).await?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let user = store.create_user("alice", "x").await?;
    store
        .create_account(&NewAccount {
            user,
            name: "liar".into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port,
                security: Security::None,
                username: "u".into(),
                password_enc: b"p".to_vec(),
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await?;
    let passwords: PasswordSource =
        Arc::new(|a: &store::AccountRecord| Ok(String::from_utf8(a.server.password_enc.clone())?));
    let mut engine = Engine::new(store.clone(), passwords);
    engine.start_all().await?;
    // Backoff from 1 s doubling (each delay at least half its ceiling): the rounds start at
    // 0, >= 0.5, >= 1.5, >= 3.5 and >= 7.5 s, so 12 s hold at most 5 rounds. Each round
    // logs in at most twice (the worker and a watcher connection). Retried as if every
    // round had succeeded, it is a round every 0.5-1 s: 12 or more.
    tokio::time::sleep(Duration::from_secs(12)).await;
    engine.shutdown().await;
    let n = logins.load(Ordering::SeqCst);
    assert!(n >= 1, "the engine never logged in");
    assert!(
        n <= 10,
        "{n} logins in 12 s: a server that answers nothing usable is hammered"
    );
    Ok(())
}
