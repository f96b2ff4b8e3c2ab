//! What the store keeps about an account's Sieve scripts.

use crate::Result;
use crate::model::*;
use async_trait::async_trait;
use mail_types::AccountId;

/// ManageSieve (RFC 5804) settings per account, what the last try found, and the
/// permanent JMAP ids and state snapshots of Sieve scripts (RFC 9661).
#[async_trait]
pub trait SieveState: Send + Sync + 'static {
    /// ManageSieve (RFC 5804): where to reach it and what the last try found (defaults
    /// when never set: try the IMAP host on port 4190).
    async fn sieve_settings(&self, account: AccountId) -> Result<SieveSettings>;

    /// Stores `enabled`, `host` and `port` (not what a try found).
    async fn set_sieve_settings(&self, account: AccountId, settings: &SieveSettings) -> Result<()>;

    /// What the last try of ManageSieve found: the server's capabilities (JSON), or `None`
    /// when it could not be reached or logged into; `at` in unix seconds.
    async fn set_sieve_found(
        &self,
        account: AccountId,
        capabilities: Option<&str>,
        at: i64,
    ) -> Result<()>;

    /// Permanent ids for the account's Sieve scripts, one per name in order; names not in
    /// `names` are forgotten.
    async fn sieve_script_ids(&self, account: AccountId, names: &[String]) -> Result<Vec<i64>>;

    /// Records what the scripts were under a SieveScript state (opaque JSON), once per
    /// state; only the most recent states are kept.
    async fn put_sieve_snapshot(
        &self,
        account: AccountId,
        state: &str,
        scripts: &str,
        at: i64,
    ) -> Result<()>;

    /// What [`SieveState::put_sieve_snapshot`] recorded for `state`, if it is still kept.
    async fn sieve_snapshot(&self, account: AccountId, state: &str) -> Result<Option<String>>;

    /// The script `id` is now called `name`.
    async fn rename_sieve_script(&self, account: AccountId, id: i64, name: &str) -> Result<()>;
}
