//! `kill -9` of `tidings serve` during the initial sync, then restart: the store converges
//! to the server with no duplicate rows.

use anyhow::{Context, Result, bail};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use store::SqliteStore;
use store::prelude::*;
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, SeedMessage, corpus};

const USER: &str = "alice@example.org";
const PASS: &str = "pw";

/// Starts `tidings serve`; its log goes to `serve.log` beside the config, shown on failure.
fn serve(config: &std::path::Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("serve.log"))?;
    Ok(Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()?)
}

fn log_of(config: &std::path::Path) -> String {
    std::fs::read_to_string(config.with_file_name("serve.log")).unwrap_or_default()
}

async fn stored_copies(db: &std::path::Path) -> Result<u32> {
    if !db.exists() {
        return Ok(0);
    }
    let store = SqliteStore::open(db)?;
    let mut n = 0;
    for a in store.list_accounts().await? {
        for m in store.mailboxes(a.id).await? {
            n += m.progress.headers + m.progress.bodies;
        }
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_initial_sync_then_restart_converges() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    let msgs = corpus::generate(99, 1500, &["INBOX", "Archive"]);
    for folder in ["INBOX", "Archive"] {
        let seed: Vec<SeedMessage> = msgs
            .iter()
            .filter(|m| m.folder == folder)
            .map(|m| SeedMessage {
                raw: m.raw.clone(),
                flags: m.flags.clone(),
                internal_date: m.internal_date,
            })
            .collect();
        dovecot.seed(USER, folder, &seed)?;
    }
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = dir.path().join("tidings.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\nkey_file = \"{key}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"x\"\n\
             [[account]]\nuser = \"alice\"\nname = \"work\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {port}\nsecurity = \"tls\"\nusername = \"{USER}\"\npassword = \"{PASS}\"\nca_file = \"{ca}\"\n",
            data = data.display(),
            key = dir.path().join("key/secret.key").display(),
            port = dovecot.imaps_port(),
            ca = dovecot.ca_file().display(),
        ),
    )?;
    let db = data.join("tidings.sqlite");

    // Kill it three times at growing points of the sync.
    let mut last = 0;
    for round in 0..3 {
        let mut child = serve(&config)?;
        let start = Instant::now();
        loop {
            let n = stored_copies(&db).await.unwrap_or(0);
            if n > last + 300 {
                last = n;
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                bail!("round {round}: no progress; log:\n{}", log_of(&config));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill()?; // SIGKILL
        child.wait()?;
    }

    let mut child = serve(&config)?;
    let store = SqliteStore::open(&db)?;
    let start = Instant::now();
    let account = loop {
        let a = store
            .list_accounts()
            .await?
            .into_iter()
            .next()
            .context("account")?;
        let done: u32 = store
            .mailboxes(a.id)
            .await?
            .iter()
            .map(|m| m.progress.bodies)
            .sum();
        if a.status.name() == "ok" && done == 1500 {
            break a;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            bail!(
                "never converged: status {:?}, bodies {done}; log:\n{}",
                a.status,
                log_of(&config)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill()?;
    child.wait()?;

    let mut total = 0;
    for mb in store.mailboxes(account.id).await? {
        if !mb.selectable {
            continue;
        }
        let mut c = ImapClient::login(dovecot.imap_port(), USER, PASS)?;
        c.select(&mb.raw_name)?;
        let mut server: Vec<(u32, Vec<String>)> = c.fetch_flags()?;
        c.logout()?;
        for (_, f) in &mut server {
            f.retain(|x| x != "\\Recent");
            f.sort();
        }
        let local: Vec<(u32, Vec<String>)> = store
            .mailbox_copies(mb.id)
            .await?
            .into_iter()
            .map(|c| (c.uid.0, c.flags))
            .collect();
        assert_eq!(local, server, "mailbox {}", mb.name);
        let msgs = store.mailbox_messages(mb.id).await?;
        let emails: std::collections::HashSet<_> = msgs.iter().map(|m| m.email).collect();
        assert_eq!(
            emails.len(),
            msgs.len(),
            "duplicate Email rows in {}",
            mb.name
        );
        total += msgs.len();
    }
    assert_eq!(total, 1500);
    Ok(())
}
