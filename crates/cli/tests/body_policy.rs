//! `tidings account add` and `tidings account edit` keep an account's body policy and
//! daily download limit; `tidings account list` shows the day's downloads against it.

use anyhow::Result;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use store::prelude::*;
use store::{AccountPolicy, SqliteStore};

fn tidings(dir: &Path, args: &[&str], stdin: &str) -> Result<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--key-file")
        .arg(dir.join("key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        writeln!(input, "{stdin}")?;
    }
    Ok(child.wait_with_output()?)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn policy(dir: &Path) -> Result<AccountPolicy> {
    let store = SqliteStore::open(&dir.join("data/tidings.sqlite"))?;
    let a = store.list_accounts().await?;
    Ok(store.account_policy(a[0].id).await?)
}

#[tokio::test]
async fn add_and_edit_keep_the_policy() -> Result<()> {
    let d = tempfile::tempdir()?;
    let dir = d.path();
    ok(&tidings(dir, &["user", "add", "alice"], "pw")?);
    ok(&tidings(
        dir,
        &[
            "account",
            "add",
            "--user",
            "alice",
            "--name",
            "g",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--username",
            "u",
            "--bodies-days",
            "30",
            "--daily-download-mb",
            "2500",
        ],
        "secret",
    )?);
    assert_eq!(
        policy(dir).await?,
        AccountPolicy {
            bodies_days: Some(30),
            daily_download_mb: Some(2500),
        }
    );
    let list = ok(&tidings(dir, &["account", "list"], "")?);
    assert!(list.contains("0 of 2500 MB today"), "{list}");

    // Only what is given changes.
    ok(&tidings(
        dir,
        &[
            "account",
            "edit",
            "--user",
            "alice",
            "--name",
            "g",
            "--bodies-days",
            "all",
        ],
        "",
    )?);
    assert_eq!(
        policy(dir).await?,
        AccountPolicy {
            bodies_days: None,
            daily_download_mb: Some(2500),
        }
    );
    ok(&tidings(
        dir,
        &[
            "account",
            "edit",
            "--user",
            "alice",
            "--name",
            "g",
            "--daily-download-mb",
            "default",
        ],
        "",
    )?);
    assert_eq!(policy(dir).await?, AccountPolicy::default());
    let bad = tidings(
        dir,
        &[
            "account",
            "edit",
            "--user",
            "alice",
            "--name",
            "g",
            "--bodies-days",
            "soon",
        ],
        "",
    )?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bodies-days"));
    Ok(())
}
