//! `tidings vapid ...`: the server's VAPID key pair (RFC 8292), which signs Web Push.

use crate::Location;
use crate::config::{Config, vapid_key_file};
use crate::serve::open;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::path::PathBuf;
use store::prelude::*;

#[derive(Subcommand)]
pub enum VapidAction {
    /// Print the public key, as the Session's applicationServerKey (RFC 9749).
    Show,
    /// Replace the key pair and destroy every push subscription. Stop the server first,
    /// and start it again afterwards.
    Rotate,
}

/// The data dir, the key file, and where the VAPID key lives, from `--config` or the
/// flags.
fn paths(at: &Location) -> Result<(PathBuf, Option<PathBuf>, PathBuf)> {
    if let Some(c) = &at.config {
        let config = Config::load(c)?;
        let key_file = at.key_file.clone().or(config.key_file);
        let vapid = vapid_key_file(config.vapid_key_file.as_deref(), key_file.as_deref());
        return Ok((config.data_dir, key_file, vapid));
    }
    match &at.data_dir {
        Some(d) => Ok((
            d.clone(),
            at.key_file.clone(),
            vapid_key_file(None, at.key_file.as_deref()),
        )),
        None => bail!("give --config FILE or --data-dir DIR"),
    }
}

pub async fn vapid(action: VapidAction, at: &Location) -> Result<()> {
    let (data_dir, key_file, path) = paths(at)?;
    match action {
        VapidAction::Show => {
            // The contact is not needed to read the public key.
            let v = jmap_server::Vapid::load_or_create(&path, "")
                .with_context(|| format!("VAPID key {}", path.display()))?;
            println!("{}", v.application_server_key());
        }
        VapidAction::Rotate => {
            let (store, _) = open(&data_dir, key_file.as_deref())?;
            jmap_server::Vapid::rotate(&path)
                .with_context(|| format!("VAPID key {}", path.display()))?;
            // A browser's push subscription is bound to the key it was made with (RFC 8292
            // 4): the push service refuses pushes signed with another, so every existing
            // subscription is dead now. They are destroyed; clients see the Session state
            // change, fetch the new applicationServerKey and subscribe again (RFC 9749).
            let subs = store.push_subscriptions(None).await?;
            let mut destroyed = 0usize;
            for s in subs {
                if store.delete_push_subscription(s.id, None).await? {
                    destroyed += 1;
                }
            }
            let v = jmap_server::Vapid::load_or_create(&path, "")?;
            println!(
                "new VAPID public key {}; {destroyed} push subscription(s) destroyed",
                v.application_server_key()
            );
        }
    }
    Ok(())
}
