//! The directory: users, API tokens, web client sessions, mail accounts.

use crate::Result;
use crate::model::*;
use async_trait::async_trait;
use mail_types::{AccountId, SyncStatus, UserId};

/// Users, their API tokens and web sessions, and the mail accounts they own: what
/// authentication, the account settings and the engine's scheduler read.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    async fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId>;

    async fn list_users(&self) -> Result<Vec<UserRecord>>;

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>>;

    async fn set_user_password(&self, name: &str, password_hash: &str) -> Result<()>;

    async fn delete_user(&self, name: &str) -> Result<bool>;

    /// Stores an API token's hash for a user.
    async fn create_token(&self, user: UserId, name: &str, hash: &str) -> Result<()>;

    async fn user_by_token_hash(&self, hash: &str) -> Result<Option<UserRecord>>;

    async fn create_account(&self, account: &NewAccount) -> Result<AccountId>;

    /// Updates the name and connection settings of an existing account.
    async fn update_account(&self, id: AccountId, account: &NewAccount) -> Result<()>;

    async fn list_accounts(&self) -> Result<Vec<AccountRecord>>;

    /// Replaces an account's stored secret (encrypted by the caller): an OAuth2 provider
    /// that rotates refresh tokens (RFC 6749 6) hands out a new one at each refresh.
    async fn set_account_secret(&self, id: AccountId, secret_enc: &[u8]) -> Result<()>;

    /// The accounts of one user (each API request asks: it must not read everyone's).
    async fn user_accounts(&self, user: UserId) -> Result<Vec<AccountRecord>>;

    async fn delete_account(&self, id: AccountId) -> Result<bool>;

    async fn set_sync_status(&self, id: AccountId, status: &SyncStatus) -> Result<()>;

    /// Stores a sign-in session (the hash of its cookie token) valid until `expires_at`
    /// (unix seconds); expired sessions of every user are removed on the way.
    async fn create_web_session(&self, user: UserId, hash: &str, expires_at: i64) -> Result<()>;

    /// The user of an unexpired session.
    async fn user_by_web_session(&self, hash: &str) -> Result<Option<UserRecord>>;

    /// Ends a session; whether it existed.
    async fn delete_web_session(&self, hash: &str) -> Result<bool>;

    /// One account by id (the submission worker and Identity/get read just that one).
    async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>>;

    /// The provider profile the account's configuration names (`auto` to detect it); the
    /// store keeps the name, the IMAP layer knows what it means.
    async fn set_account_provider(&self, account: AccountId, provider: &str) -> Result<()>;
}
