//! Body policy and the download budget.

use crate::Result;
use crate::model::*;
use async_trait::async_trait;
use mail_types::AccountId;

/// Which bodies the sync downloads (the account's body policy) and the daily
/// download budget it counts against.
#[async_trait]
pub trait BodyPolicy: Send + Sync + 'static {
    /// The account's body policy and configured download limit (defaults when never set).
    async fn account_policy(&self, account: AccountId) -> Result<AccountPolicy>;

    async fn set_account_policy(&self, account: AccountId, policy: &AccountPolicy) -> Result<()>;

    /// The daily download limit in force (the configured one, or the provider profile's),
    /// recorded by the engine so that everyone reading the budget sees the same.
    async fn set_download_limit(&self, account: AccountId, limit_mb: Option<u64>) -> Result<()>;

    /// The background body pass stopped at the budget on UTC day `day`.
    async fn set_background_stopped(&self, account: AccountId, day: i64) -> Result<()>;

    /// Adds bytes downloaded from the account's servers on UTC day `day`.
    async fn add_downloaded(&self, account: AccountId, day: i64, bytes: u64) -> Result<()>;

    /// Bytes downloaded on UTC day `day` and the limit in force.
    async fn download_budget(
        &self,
        account: AccountId,
        day: i64,
    ) -> Result<mail_types::DownloadBudget>;
}
