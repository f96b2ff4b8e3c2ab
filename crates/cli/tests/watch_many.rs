//! Many watched accounts on one node (the 1,000-account run is
//! `cargo bench -p cli --bench watch_many`): `tidings serve` with 50 IMAP accounts of 50
//! Dovecot users, on a Dovecot configured for many connections, has every account watching
//! (sync status `ok`) within 60 s, without a thread per account, and a delivery to any of
//! them reaches its user's WebSocket client as a StateChange of that account only.

mod push_support;

use anyhow::{Context, Result, bail};
use push_support::*;
use std::path::Path;
use std::time::{Duration, Instant};
use store::SqliteStore;
use store::prelude::*;
use testkit::{Dovecot, DovecotOptions, corpus};

const ACCOUNTS: usize = 50;

fn threads(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .context("Threads in /proc/PID/status")
}

#[tokio::test]
async fn fifty_accounts_all_watch_and_push_without_a_thread_each() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions {
        max_connections: Some(3 * ACCOUNTS as u32 + 50),
        state_dir: std::env::var_os("TIDINGS_TEST_DOVECOT_DIR").map(Into::into),
        ..DovecotOptions::default()
    })?;
    let users: Vec<(String, String)> = (0..ACCOUNTS)
        .map(|i| (format!("m{i}@example.org"), format!("pw{i}")))
        .collect();
    dovecot.add_users(&users)?;
    // Two Tidings users holding 25 accounts each.
    let tu = [("one", "pw-one"), ("two", "pw-two")];
    let accounts: Vec<(&str, &str, &str)> = users
        .iter()
        .enumerate()
        .map(|(i, (l, p))| (tu[i % 2].0, l.as_str(), p.as_str()))
        .collect();
    let started = Instant::now();
    let serve = serve_accounts(
        Path::new(env!("CARGO_BIN_EXE_tidings")),
        &dovecot,
        &tu,
        &accounts,
        "",
    )?;
    let mut peak = 0;
    let ids = loop {
        peak = peak.max(threads(serve.pid())?);
        if serve.store_path().exists() {
            let store = SqliteStore::open(&serve.store_path())?;
            let all = store.list_accounts().await?;
            if all.len() == ACCOUNTS && all.iter().all(|a| a.status.name() == "ok") {
                break all;
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("not all {ACCOUNTS} accounts watching within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Tokio's workers plus a bounded blocking pool: far below one thread per account.
    assert!(peak < 45, "{peak} threads for {ACCOUNTS} accounts");

    let mut ws = [
        ws_connect_when_up(serve.port, &basic("one", "pw-one")).await?,
        ws_connect_when_up(serve.port, &basic("two", "pw-two")).await?,
    ];
    for w in &mut ws {
        w.enable(Some(&["Email"]), None).await?;
        w.settle(Duration::from_millis(300)).await?;
        w.pushes.clear();
    }
    for i in [7, 30, 49] {
        let (login, _) = &users[i];
        let account = ids
            .iter()
            .find(|a| &a.server.username == login)
            .map(|a| format!("a{}", a.id.0))
            .context("account")?;
        dovecot.deliver(login, &corpus::message("x@example.org", login, "hi", "x"))?;
        let own = &mut ws[i % 2];
        let p = own
            .push(Duration::from_secs(10))
            .await?
            .context("no StateChange")?;
        let changed = p["changed"].as_object().context("changed")?;
        assert!(
            changed.keys().all(|k| *k == account),
            "{p} names another account than {account}"
        );
        assert!(changed[&account].get("Email").is_some(), "{p}");
        own.settle(Duration::from_millis(300)).await?;
        own.pushes.clear();
        // The other user heard nothing of it.
        assert!(
            ws[1 - i % 2]
                .push(Duration::from_millis(50))
                .await?
                .is_none()
        );
    }
    Ok(())
}
