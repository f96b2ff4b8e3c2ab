//! `tidings vapid`: the key is made once and shown the same at every call; `rotate`
//! replaces it and destroys the push subscriptions made with the old one (RFC 9749).

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;
use store::SqliteStore;
use store::prelude::*;
use store::subscriptions::NewPushSubscription;

fn tidings(args: &[&str], data: &Path, key: &Path) -> Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--key-file")
        .arg(key)
        .output()?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[tokio::test]
async fn rotation_makes_a_new_key_and_drops_old_subscriptions() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let key = dir.path().join("conf/secret.key");
    let first = tidings(&["vapid", "show"], &data, &key)?;
    assert_eq!(first.len(), 87, "base64url of a 65-octet point: {first}");
    assert_eq!(tidings(&["vapid", "show"], &data, &key)?, first);
    let pem = std::fs::read_to_string(dir.path().join("conf/vapid.pem"))?;
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));

    // A subscription made while the old key was in use.
    tidings(&["user", "list"], &data, &key)?;
    {
        let store = SqliteStore::open(&data.join("tidings.sqlite"))?;
        let user = store.create_user("alice", "x").await?;
        store
            .create_push_subscription(&NewPushSubscription {
                user,
                device_client_id: "browser".into(),
                url: "https://push.example.org/x".into(),
                keys: None,
                verification_code: "c".into(),
                expires: None,
                types: None,
            })
            .await?;
    }
    let said = tidings(&["vapid", "rotate"], &data, &key)?;
    assert!(said.contains("1 push subscription(s) destroyed"), "{said}");
    let second = tidings(&["vapid", "show"], &data, &key)?;
    assert_ne!(second, first);
    assert!(said.contains(&second), "{said}");
    let store = SqliteStore::open(&data.join("tidings.sqlite"))?;
    let left = store.push_subscriptions(None).await?;
    assert!(left.is_empty(), "{left:?}");
    let _ = store.user_by_name("alice").await?.context("user kept")?;
    Ok(())
}
