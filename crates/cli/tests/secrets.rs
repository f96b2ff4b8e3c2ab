//! Credentials: encrypted at rest, never in a log, and a wrong password marks only its own
//! account `auth_failed`.

use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use store::SqliteStore;
use store::prelude::*;
use testkit::{Dovecot, DovecotOptions};

const RIGHT: &str = "C0rrect-H0rse-Battery";
const WRONG: &str = "Sup3r-S3cret-Wr0ng";
const TIDINGS_PW: &str = "T1dings-Login-Pw";

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_encrypted_and_never_logged() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user("good@example.org", RIGHT)?;
    dovecot.add_user("bad@example.org", "something-else")?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let key = dir.path().join("conf/secret.key");
    let config = dir.path().join("t.toml");
    let account = |name: &str, user: &str, pw: &str| {
        format!(
            "[[account]]\nuser = \"alice\"\nname = \"{name}\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"starttls\"\nusername = \"{user}\"\npassword = \"{pw}\"\nca_file = \"{}\"\n",
            dovecot.imap_port(),
            dovecot.ca_file().display()
        )
    };
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n[[user]]\nname = \"alice\"\npassword = \"{TIDINGS_PW}\"\n{}{}",
            data.display(),
            key.display(),
            account("good", "good@example.org", RIGHT),
            account("bad", "bad@example.org", WRONG),
        ),
    )?;
    let log_path = dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log_path)?))
        .spawn()?;
    let db = data.join("tidings.sqlite");
    let start = Instant::now();
    let statuses = loop {
        if db.exists() {
            let store = SqliteStore::open(&db)?;
            let s: Vec<(String, String)> = store
                .list_accounts()
                .await?
                .into_iter()
                .map(|a| (a.name, a.status.name().to_string()))
                .collect();
            if s.iter().any(|(n, st)| n == "good" && st == "ok")
                && s.iter().any(|(n, st)| n == "bad" && st == "auth_failed")
            {
                break s;
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("accounts never reached ok / auth_failed");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill()?;
    child.wait()?;
    assert_eq!(statuses.len(), 2);

    let log = std::fs::read(&log_path)?;
    assert!(!log.is_empty(), "trace logging produced nothing");
    // The failure is in the log, with the account's login name, so the log is the real one.
    assert!(contains(&log, "bad@example.org"), "auth failure not logged");
    for secret in [RIGHT, WRONG, TIDINGS_PW] {
        assert!(!contains(&log, secret), "a password reached the log");
        for entry in std::fs::read_dir(&data)? {
            let path = entry?.path();
            if path.is_file() {
                let bytes = std::fs::read(&path)?;
                assert!(
                    !contains(&bytes, secret),
                    "{} holds a password in clear",
                    path.display()
                );
            }
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .context("key file")?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key file must be private");
    }
    Ok(())
}
