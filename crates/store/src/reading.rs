//! Mail reading for JMAP (and the engine's lookups of stored mail).

use crate::Result;
use crate::model::*;
use async_trait::async_trait;
use mail_types::{AccountId, EmailId, MailboxId, State, ThreadId};

/// What JMAP reads: mailbox views, Emails, queries, threads, search, the change log
/// and raw messages (blobs).
#[async_trait]
pub trait Reading: Send + Sync + 'static {
    /// The account's current JMAP state (RFC 8620 1.6.1): what every `*/get` reports.
    async fn account_state(&self, id: AccountId) -> Result<State>;

    async fn mailbox_messages(&self, mailbox: MailboxId) -> Result<Vec<MessageSummary>>;

    async fn blob(&self, blob_id: &str) -> Result<Option<Vec<u8>>>;

    /// Whether an Email of the account is this blob (downloads are per account: a blob id
    /// of another account's message must not be readable).
    async fn blob_in_account(&self, account: AccountId, blob_id: &str) -> Result<bool>;

    async fn changes_since(&self, account: AccountId, since: State) -> Result<Vec<Change>>;

    /// The changes of one object type after `since`, at most `max` objects, never splitting
    /// one state (one transaction) across pages.
    async fn changes_page(
        &self,
        account: AccountId,
        object: ObjectType,
        since: ChangePosition,
        max: usize,
    ) -> Result<std::result::Result<ChangesPage, ChangesError>>;

    /// Every mailbox of the account with its JMAP counts.
    async fn mailbox_views(&self, account: AccountId) -> Result<Vec<MailboxView>>;

    /// The Emails of the account among `ids` (others are left out).
    async fn emails(&self, account: AccountId, ids: &[EmailId]) -> Result<Vec<EmailView>>;

    /// Matching Email ids in the query's order: all of them, or the asked window.
    async fn query_emails(&self, account: AccountId, q: &EmailQuery) -> Result<QueryPage>;

    /// The Email ids of each thread of the account among `ids`, oldest first (RFC 8621 3).
    async fn threads(
        &self,
        account: AccountId,
        ids: &[ThreadId],
    ) -> Result<Vec<(ThreadId, Vec<EmailId>)>>;

    async fn search(&self, account: AccountId, query: &str) -> Result<Vec<mail_types::EmailId>>;

    /// The account's Emails with this Message-ID (without `<>`), oldest first: what an
    /// MDN's Original-Message-ID names (RFC 9007 2.2).
    async fn emails_by_message_id(
        &self,
        account: AccountId,
        message_id: &str,
    ) -> Result<Vec<EmailId>>;

    /// The size of a stored blob (hex sha256), without reading it.
    async fn blob_size(&self, blob_id: &str) -> Result<Option<u64>>;

    /// The Emails of the account whose message is the blob `blob_id` (hex sha256).
    async fn emails_with_blob(&self, account: AccountId, blob_id: &str) -> Result<Vec<EmailId>>;
}
