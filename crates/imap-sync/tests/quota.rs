//! IMAP QUOTA (RFC 9208) learnt by the sync: against a real Dovecot with the quota plugin
//! (figures in the store, STORAGE in octets), a Dovecot without it (no quota at all), and
//! a lying server (garbage and absurd figures: no panic, nothing believed).

mod common;

use anyhow::Result;
use imap_sync::sync::AccountSync;
use imap_sync::{Credentials, Endpoint, Session};
use mail_types::{AccountId, AccountKind, Security};
use std::sync::Arc;
use std::time::Duration;
use store::{NewAccount, QuotaResource, ServerSettings, SqliteStore, Store};
use testkit::{DovecotOptions, SeedMessage};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("the client must not hang")
}

fn seed(n: usize, size: usize) -> Vec<SeedMessage> {
    (0..n)
        .map(|i| SeedMessage {
            raw: format!(
                "From: a@example.org\r\nTo: b@example.org\r\nSubject: q{i}\r\n\
                 Message-ID: <q{i}@example.org>\r\n\r\n{}\r\n",
                "x".repeat(size)
            )
            .into_bytes(),
            flags: vec![],
            internal_date: 1_795_000_000 + i as i64,
        })
        .collect()
}

#[tokio::test]
async fn dovecot_quota_is_stored_in_octets_and_follows_deliveries() -> Result<()> {
    let env = common::env(DovecotOptions {
        quota_rule: Some("*:storage=10M:messages=1000".into()),
        ..DovecotOptions::default()
    })
    .await?;
    env.dovecot.seed(common::USER, "INBOX", &seed(2, 20_000))?;
    let mut s = within(env.session()).await?;
    let sync = AccountSync::new(env.store.clone(), env.account);
    within(sync.sync_all(&mut s)).await?;
    let q = env.store.quotas(env.account).await?;
    let octets = q
        .iter()
        .find(|q| q.value.resource == QuotaResource::Octets)
        .expect("a storage quota");
    let count = q
        .iter()
        .find(|q| q.value.resource == QuotaResource::Count)
        .expect("a message quota");
    assert_eq!(octets.value.hard_limit, 10 * 1024 * 1024);
    assert_eq!(count.value.hard_limit, 1000);
    assert_eq!(count.value.used, 2);
    assert!(octets.value.used >= 40_000, "{:?}", octets.value);
    let state = env.store.account_state(env.account).await?;

    // Unchanged: no new state.
    within(sync.sync_quota(&mut s)).await?;
    assert_eq!(env.store.account_state(env.account).await?, state);

    // A delivery moves usage; the quota keeps its id.
    env.dovecot.seed(common::USER, "INBOX", &seed(1, 50_000))?;
    within(sync.sync_quota(&mut s)).await?;
    let after = env.store.quotas(env.account).await?;
    let octets2 = after.iter().find(|r| r.id == octets.id).expect("same id");
    assert!(octets2.value.used >= octets.value.used + 50_000);
    assert!(env.store.account_state(env.account).await? > state);
    let changes = env.store.changes_since(env.account, state).await?;
    assert!(
        changes
            .iter()
            .any(|c| c.object == store::ObjectType::Quota && c.id == octets.id),
        "{changes:?}"
    );
    Ok(())
}

#[tokio::test]
async fn dovecot_without_quota_has_none() -> Result<()> {
    let env = common::env(DovecotOptions::default()).await?;
    let mut s = within(env.session()).await?;
    assert!(!s.has("QUOTA"));
    assert_eq!(within(s.quota()).await?, None);
    let sync = AccountSync::new(env.store.clone(), env.account);
    within(sync.sync_all(&mut s)).await?;
    assert!(env.store.quotas(env.account).await?.is_empty());
    Ok(())
}

/// A scripted server advertising QUOTA that answers GETQUOTAROOT with `quota_lines` (a
/// GETQUOTA with `getquota`), one connection.
async fn lying_server(quota_lines: &'static str, getquota: &'static str) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        if w.write_all(b"* OK [CAPABILITY IMAP4rev1 QUOTA] fake\r\n")
            .await
            .is_err()
        {
            return;
        }
        let mut line = String::new();
        for _ in 0..50 {
            line.clear();
            match r.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let (tag, cmd) = line.trim_end().split_once(' ').unwrap_or(("?", ""));
            let answer = if cmd.starts_with("LOGIN") {
                format!("{tag} OK [CAPABILITY IMAP4rev1 QUOTA] in\r\n")
            } else if cmd.starts_with("GETQUOTAROOT") {
                format!("{quota_lines}{tag} OK done\r\n")
            } else if cmd.starts_with("GETQUOTA") {
                format!("{getquota}{tag} OK done\r\n")
            } else {
                format!("{tag} OK\r\n")
            };
            if w.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    Ok(port)
}

async fn store_with_account() -> Result<(Arc<dyn Store>, AccountId)> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory()?);
    let user = store.create_user("alice", "x").await?;
    let account = store
        .create_account(&NewAccount {
            user,
            name: "fake".into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "127.0.0.1".into(),
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
        .await?;
    Ok((store, account))
}

async fn learn(
    quota_lines: &'static str,
    getquota: &'static str,
) -> Result<Vec<store::QuotaRecord>> {
    let port = lying_server(quota_lines, getquota).await?;
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        ca_file: None,
    };
    let creds = Credentials {
        username: "u".into(),
        password: "p".into(),
    };
    let mut s = within(Session::connect(&ep, &creds)).await?;
    let (store, account) = store_with_account().await?;
    let sync = AccountSync::new(store.clone(), account);
    within(sync.sync_quota(&mut s)).await?;
    Ok(store.quotas(account).await?)
}

#[tokio::test]
async fn a_lying_server_is_not_believed() -> Result<()> {
    // Garbage figures, a figure beyond number64, octets beyond what JMAP carries, a cut
    // list: nothing stored, so the account gets no quota capability.
    let garbage = learn(
        "* QUOTAROOT INBOX r\r\n\
         * QUOTA r (STORAGE lots 10)\r\n",
        "",
    )
    .await?;
    assert!(garbage.is_empty(), "{garbage:?}");
    let huge = learn(
        "* QUOTAROOT INBOX r\r\n\
         * QUOTA r (STORAGE 1 99999999999999999999999 MESSAGE 1 9223372036854775807)\r\n",
        "",
    )
    .await?;
    assert!(huge.is_empty(), "{huge:?}");
    let beyond_jmap = learn(
        "* QUOTAROOT INBOX r\r\n\
         * QUOTA r (STORAGE 1 9223372036854775807)\r\n",
        "",
    )
    .await?;
    assert!(beyond_jmap.is_empty(), "{beyond_jmap:?}");
    // A root named without figures is asked with GETQUOTA; there the figures are sane.
    let asked = learn(
        "* QUOTAROOT INBOX \"User quota\"\r\n",
        "* QUOTA \"User quota\" (STORAGE 10 100 MESSAGE 3 50)\r\n",
    )
    .await?;
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(
        (asked[0].value.used, asked[0].value.hard_limit),
        (10 * 1024, 100 * 1024)
    );
    Ok(())
}

/// What the quota refresh adds to a sync pass, beside the floor of any command (a NOOP
/// round trip) on the same connection and a whole pass with nothing changed. By hand:
/// `cargo test --release -p imap-sync --test quota -- --ignored --nocapture quota_refresh_cost`.
#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn quota_refresh_cost() -> Result<()> {
    const ROUNDS: u32 = 300;
    let env = common::env(DovecotOptions {
        quota_rule: Some("*:storage=10M:messages=1000".into()),
        ..DovecotOptions::default()
    })
    .await?;
    env.dovecot.seed(common::USER, "INBOX", &seed(50, 2_000))?;
    let mut s = within(env.session()).await?;
    let sync = AccountSync::new(env.store.clone(), env.account);
    within(sync.sync_all(&mut s)).await?;
    let time = |name: &str, d: Duration| {
        println!(
            "{name}: {:.1} µs per call ({ROUNDS} calls)",
            d.as_secs_f64() * 1e6 / f64::from(ROUNDS)
        )
    };
    let t = std::time::Instant::now();
    for _ in 0..ROUNDS {
        within(s.noop()).await?;
    }
    time("NOOP round trip", t.elapsed());
    let t = std::time::Instant::now();
    for _ in 0..ROUNDS {
        within(s.quota()).await?;
    }
    time("GETQUOTAROOT alone", t.elapsed());
    let t = std::time::Instant::now();
    for _ in 0..ROUNDS {
        within(sync.sync_quota(&mut s)).await?;
    }
    time("quota refresh (GETQUOTAROOT, store compare)", t.elapsed());
    let t = std::time::Instant::now();
    for _ in 0..ROUNDS / 10 {
        within(sync.sync_all(&mut s)).await?;
    }
    println!(
        "sync pass, nothing changed: {:.1} µs per pass ({} passes)",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS / 10),
        ROUNDS / 10
    );
    Ok(())
}
