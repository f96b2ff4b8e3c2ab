//! The storage layer: the `Store` trait the engine (and later the JMAP server) talks to, and
//! its SQLite backend. This is the only crate that speaks SQL.
//!
//! # Layout
//! - `model`: the records going in and out (accounts, mailboxes, messages, changes).
//! - `sqlite`: the embedded default backend (`SqliteStore`), schema in `sqlite/schema.sql`.
//! - `blobs`: raw messages as content-addressed files.
//! - `events`: the event bus push listens to; the write path publishes after commit.
//!
//! Every method that changes an account's data bumps that account's `State` once, and
//! records each changed object in the change log, in the same transaction as the data.

mod blobs;
pub mod events;
pub mod model;
// --- write-back (outbox) ---
pub mod outbox;
// JMAP Quota (RFC 9425) from IMAP QUOTA.
pub mod quota;
pub use quota::{QuotaRecord, QuotaResource, QuotaValue};
mod sqlite;
pub mod subscriptions;
// Sending: identities and the submission queue.
pub mod submission;
pub use submission::*;

pub use model::*;
pub use outbox::*;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use mail_types::{
    AccountId, EmailId, MailboxId, State, SyncStatus, ThreadId, Uid, UidValidity, UserId,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the engine needs from storage. A PostgreSQL backend implements the same trait.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- users and accounts -------------------------------------------------------------
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
    async fn account_state(&self, id: AccountId) -> Result<State>;

    // --- mailboxes ------------------------------------------------------------------------
    async fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxRecord>>;
    /// One mailbox by its wire name; cheap (the watcher calls it per event).
    async fn mailbox_by_raw_name(
        &self,
        account: AccountId,
        raw_name: &str,
    ) -> Result<Option<MailboxRecord>>;
    /// Which of `uids` have a stored copy in the mailbox (work proportional to `uids`).
    async fn stored_uids(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Uid>>;
    /// Gmail: which of these X-GM-MSGIDs have an Email in the account (a label folder's
    /// copy of one is linked, not fetched).
    async fn gmail_known(&self, account: AccountId, msgids: &[u64]) -> Result<Vec<u64>>;
    /// Brings the stored mailbox list in line with the server's complete list: creates,
    /// updates attributes, follows renames (same UIDVALIDITY under a new name), deletes.
    async fn apply_mailbox_list(
        &self,
        account: AccountId,
        remote: &[RemoteMailbox],
    ) -> Result<MailboxListOutcome>;
    /// Forgets every message copy of a mailbox whose UIDVALIDITY changed (RFC 3501 2.3.1.1).
    async fn reset_mailbox(&self, mailbox: MailboxId, uidvalidity: UidValidity) -> Result<()>;
    /// UIDs and flags of the stored copies of a mailbox (for the no-CONDSTORE diff).
    async fn mailbox_copies(&self, mailbox: MailboxId) -> Result<Vec<StoredCopy>>;
    /// Applies one batch of server changes to a mailbox in one transaction.
    async fn apply_mailbox_changes(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        changes: MailboxChanges,
    ) -> Result<State>;
    /// The IMAP copies of an Email of the account (server UIDs only, not copies still
    /// waiting for their APPEND), where its message can be fetched from; empty when the
    /// account has no such Email or no copy of it is on the server.
    async fn body_sources(&self, account: AccountId, email: EmailId) -> Result<Vec<BodySource>>;
    /// [`Store::apply_mailbox_changes`] for bodies a person is waiting for (the engine's
    /// priority lane): it waits for the transaction running now, not for the background
    /// batches queued behind it.
    async fn apply_urgent_changes(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        changes: MailboxChanges,
    ) -> Result<State> {
        self.apply_mailbox_changes(account, mailbox, changes).await
    }
    /// UIDs of copies whose message body is not stored yet, newest first.
    async fn uids_missing_body(&self, mailbox: MailboxId, limit: usize) -> Result<Vec<Uid>>;
    /// Like `uids_missing_body`, only messages received (INTERNALDATE) at or after
    /// `received_since` (Unix seconds; `None`: all), each with its size (RFC822.SIZE).
    async fn missing_bodies_since(
        &self,
        mailbox: MailboxId,
        received_since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(Uid, u64)>>;
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
    /// What [`Store::put_sieve_snapshot`] recorded for `state`, if it is still kept.
    async fn sieve_snapshot(&self, account: AccountId, state: &str) -> Result<Option<String>>;
    /// The script `id` is now called `name`.
    async fn rename_sieve_script(&self, account: AccountId, id: i64, name: &str) -> Result<()>;
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
    /// Destroys Emails that no mailbox holds any more (after moves have had a chance to
    /// re-link them). Returns how many were destroyed.
    async fn collect_orphans(&self, account: AccountId) -> Result<usize>;

    // --- POP3 -----------------------------------------------------------------------------
    /// Every UIDL this POP3 account has retrieved.
    async fn pop3_entries(&self, account: AccountId) -> Result<Vec<Pop3Entry>>;
    /// Records that these messages were deleted on the server (delete-after-N-days).
    async fn pop3_mark_deleted(&self, account: AccountId, uidls: &[String]) -> Result<()>;

    // --- reading --------------------------------------------------------------------------
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

    // --- push -----------------------------------------------------------------------------
    /// The bus on which every committed change is announced (see [`events`]).
    fn events(&self) -> std::sync::Arc<dyn events::EventBus>;
    /// The types changed after `since` (a reconnecting push client's last state), from the
    /// change log: EmailDelivery when an Email was created.
    async fn changed_types_since(
        &self,
        account: AccountId,
        since: State,
    ) -> Result<events::TypeSet>;
    /// Push subscriptions of one user, or of everyone (`None`, at server start).
    async fn push_subscriptions(
        &self,
        user: Option<UserId>,
    ) -> Result<Vec<subscriptions::PushSubscriptionRecord>>;
    async fn create_push_subscription(&self, s: &subscriptions::NewPushSubscription)
    -> Result<i64>;
    /// Updates a subscription of `user`; false if there is none with that id.
    async fn update_push_subscription(
        &self,
        id: i64,
        user: UserId,
        u: &subscriptions::PushSubscriptionUpdate,
    ) -> Result<bool>;
    /// Deletes a subscription (of `user`, when given); false if there was none.
    async fn delete_push_subscription(&self, id: i64, user: Option<UserId>) -> Result<bool>;
    // --- uploads (JMAP blob upload, RFC 8620 6.1) -----------------------------------------
    /// Stores uploaded bytes for an account: content-addressed like every blob (the same
    /// bytes uploaded twice are one file), owned by `account`, with the client's media
    /// type. Uploading again refreshes its time.
    async fn put_upload(
        &self,
        account: AccountId,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<UploadRecord>;
    /// The upload `blob_id` (hex sha256) of `account`, if it has one (not another
    /// account's).
    async fn upload(&self, account: AccountId, blob_id: &str) -> Result<Option<UploadRecord>>;
    /// The bytes of the upload `blob_id` of `account` (None if the account has no such
    /// upload). What Email/import and Email/parse read.
    async fn upload_bytes(&self, account: AccountId, blob_id: &str) -> Result<Option<Vec<u8>>>;
    /// Forgets uploads made before `before` (unix seconds); a blob no Email and no other
    /// upload references is deleted with its file. Returns how many uploads were forgotten.
    async fn expire_uploads(&self, before: i64) -> Result<usize>;

    // --- write-back (outbox) ----------------------------------------------------------------
    // Each user change is applied to the store (optimistically, with its change-log rows)
    // and queued in the outbox in ONE transaction; POP3 accounts keep their changes local.
    // See ARCHITECTURE.md, "Write-back".

    /// Keyword and mailbox changes of Emails (JMAP Email/set update), one result per patch.
    async fn update_emails(
        &self,
        account: AccountId,
        patches: Vec<EmailPatch>,
    ) -> Result<Vec<std::result::Result<(), WriteRefusal>>>;
    /// Removes Emails from every mailbox (JMAP Email/set destroy).
    async fn destroy_emails(
        &self,
        account: AccountId,
        ids: Vec<EmailId>,
    ) -> Result<Vec<std::result::Result<(), WriteRefusal>>>;
    /// Stores a message as a new Email in `req.mailbox` with `req.keywords` and queues its
    /// APPEND: one call for a draft, an import, or the Sent copy of a submission. The APPEND
    /// is replayed exactly once, even through crashes.
    async fn append_email(
        &self,
        account: AccountId,
        req: AppendRequest,
    ) -> Result<std::result::Result<EmailId, WriteRefusal>>;
    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        parent: Option<MailboxId>,
        subscribed: bool,
    ) -> Result<std::result::Result<MailboxId, WriteRefusal>>;
    async fn update_mailbox(
        &self,
        account: AccountId,
        id: MailboxId,
        patch: MailboxPatch,
    ) -> Result<std::result::Result<(), WriteRefusal>>;
    async fn destroy_mailbox(
        &self,
        account: AccountId,
        id: MailboxId,
        remove_emails: bool,
    ) -> Result<std::result::Result<(), WriteRefusal>>;
    /// Pending entries of an account, oldest first.
    async fn outbox_next(&self, account: AccountId, limit: usize) -> Result<Vec<OutboxEntry>>;
    /// Counts an attempt before its command is sent (`uidnext`: an APPEND's starting point).
    /// `false`: the entry is no longer queued (taken back by the user), send nothing.
    async fn outbox_begin(&self, id: i64, uidnext: Option<u32>) -> Result<bool>;
    /// Whether an entry of `kind` (`OutboxOp::kind`) about the Email or Mailbox row
    /// `object` is still queued: the API waits on it for the server's answer.
    async fn outbox_has(&self, account: AccountId, object: i64, kind: &'static str)
    -> Result<bool>;
    /// Entries the server confirmed: dropped, placeholders given their server UIDs.
    async fn outbox_complete(&self, account: AccountId, done: Vec<OutboxDone>) -> Result<()>;
    /// A transient failure: the entry stays, its error is visible in the status.
    async fn outbox_defer(&self, id: i64, error: &str) -> Result<()>;
    /// A permanent refusal: the local change is reverted and the reason kept.
    async fn outbox_refuse(&self, account: AccountId, id: i64, reason: &str) -> Result<()>;
    async fn outbox_status(&self, account: AccountId) -> Result<OutboxStatus>;
    async fn outbox_dismiss(&self, account: AccountId, failures: Vec<i64>) -> Result<()>;
    /// Bumped after every commit that queued something: the engine's workers wait on it.
    fn outbox_signal(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Moves whenever a mailbox change of the user (create, rename, delete, subscribe) is
    /// queued or confirmed by the server. The sync reads it before its LIST and hands it to
    /// [`Store::apply_mailbox_list_at`], so a list taken across such a change (which may
    /// show the server before the change) is not applied over it.
    fn mailbox_epoch(&self, _account: AccountId) -> u64 {
        0
    }
    /// [`Store::apply_mailbox_list`], unless the mailbox epoch moved away from `epoch` since
    /// the list was taken: then nothing is applied (the next pass brings the list in line).
    async fn apply_mailbox_list_at(
        &self,
        account: AccountId,
        remote: &[RemoteMailbox],
        _epoch: u64,
    ) -> Result<MailboxListOutcome> {
        self.apply_mailbox_list(account, remote).await
    }

    // --- web client sessions -------------------------------------------------------------
    /// Stores a sign-in session (the hash of its cookie token) valid until `expires_at`
    /// (unix seconds); expired sessions of every user are removed on the way.
    async fn create_web_session(&self, user: UserId, hash: &str, expires_at: i64) -> Result<()>;
    /// The user of an unexpired session.
    async fn user_by_web_session(&self, hash: &str) -> Result<Option<UserRecord>>;
    /// Ends a session; whether it existed.
    async fn delete_web_session(&self, hash: &str) -> Result<bool>;
    // --- sending: identities and the submission queue ------------------------------------
    /// One account by id (the submission worker and Identity/get read just that one).
    async fn account(&self, id: AccountId) -> Result<Option<AccountRecord>>;
    /// The account's identities, oldest first.
    async fn identities(&self, account: AccountId) -> Result<Vec<IdentityRecord>>;
    /// Gives an account without identities its first one (`email`, not deletable).
    async fn ensure_identity(&self, account: AccountId, email: &str) -> Result<()>;
    /// Creates an identity (its `id` is ignored) and returns the new id.
    async fn create_identity(&self, identity: &IdentityRecord) -> Result<i64>;
    /// Updates the mutable properties; false when there is no such identity.
    async fn update_identity(&self, identity: &IdentityRecord) -> Result<bool>;
    /// False when there is none, or it may not be deleted.
    async fn destroy_identity(&self, account: AccountId, id: i64) -> Result<bool>;
    /// Queues a submission, in one transaction with its change-log row.
    async fn create_submission(&self, submission: &NewSubmission) -> Result<i64>;
    /// Every submission of the account, oldest first (without the bytes).
    async fn submissions(&self, account: AccountId) -> Result<Vec<SubmissionRecord>>;
    /// undoStatus pending -> canceled, only while nothing has been sent.
    async fn cancel_submission(&self, account: AccountId, id: i64) -> Result<CancelOutcome>;
    /// Forgets a submission that is not being sent right now.
    async fn destroy_submission(&self, account: AccountId, id: i64) -> Result<bool>;
    /// Queued submissions due at `now` (unix seconds), earliest first.
    async fn due_submissions(&self, now: i64, limit: usize) -> Result<Vec<SubmissionRecord>>;
    /// When the next queued submission is due.
    async fn next_submission_at(&self) -> Result<Option<i64>>;
    /// queued -> sending (durably committed) and the bytes to send; `None` when it is no
    /// longer queued (canceled, destroyed).
    async fn begin_submission(&self, id: i64) -> Result<Option<Vec<u8>>>;
    /// Records the outcome of the attempt begun with `begin_submission`.
    async fn finish_submission(&self, id: i64, result: &AttemptResult) -> Result<()>;
    /// At startup: submissions cut during an attempt become final with delivered
    /// `unknown` and are never sent again. Returns their ids.
    async fn recover_submissions(&self) -> Result<Vec<i64>>;
    /// Sent submissions of the account whose Sent copy is still to be made, with bytes.
    async fn pending_sent_copies(
        &self,
        account: AccountId,
    ) -> Result<Vec<(SubmissionRecord, Vec<u8>)>>;
    async fn set_sent_copy_done(&self, id: i64) -> Result<()>;
    /// Submissions whose Email is to be destroyed now (sent, its Sent copy made: the
    /// deferred onSuccessDestroyEmail) or put back into Drafts (failed for good, or
    /// canceled), oldest first; a restore comes with the message's bytes.
    async fn draft_followups(
        &self,
        limit: usize,
    ) -> Result<Vec<(SubmissionRecord, Option<Vec<u8>>)>>;
    /// The follow-up of `draft_followups` is done (the bytes may then go).
    async fn set_draft_done(&self, id: i64) -> Result<()>;
    /// Whether the account's submission server files sent mail in Sent itself (then
    /// Tidings appends no copy).
    async fn set_server_files_sent(&self, account: AccountId, server_files: bool) -> Result<()>;
    async fn server_files_sent(&self, account: AccountId) -> Result<bool>;
    /// The provider profile the account's configuration names (`auto` to detect it); the
    /// store keeps the name, the IMAP layer knows what it means.
    async fn set_account_provider(&self, account: AccountId, provider: &str) -> Result<()>;
    /// Whether the mailbox holds a message with this Message-ID (without `<>`).
    async fn mailbox_has_message_id(&self, mailbox: MailboxId, message_id: &str) -> Result<bool>;
    /// Applies a delivery-status report to a submission (the named recipients' status,
    /// the report's blob in `dsnBlobIds`), once per report blob; false when applied before.
    async fn apply_dsn(
        &self,
        account: AccountId,
        id: i64,
        blob_id: &str,
        updates: &[DeliveryEntry],
    ) -> Result<bool>;
    /// The account's Emails with this Message-ID (without `<>`), oldest first: what an
    /// MDN's Original-Message-ID names (RFC 9007 2.2).
    async fn emails_by_message_id(
        &self,
        account: AccountId,
        message_id: &str,
    ) -> Result<Vec<EmailId>>;

    // --- quota (RFC 9425, from IMAP QUOTA) ------------------------------------------------
    /// The account's quotas as last learnt from its server; none when it has no QUOTA.
    async fn quotas(&self, account: AccountId) -> Result<Vec<QuotaRecord>>;
    /// Makes the account's quotas exactly `values` (bumping the state and logging each
    /// change as type Quota); true when anything changed.
    async fn apply_quotas(&self, account: AccountId, values: &[QuotaValue]) -> Result<bool>;

    // --- blobs (RFC 9404 Blob/get, Blob/lookup) ------------------------------------------
    /// The size of a stored blob (hex sha256), without reading it.
    async fn blob_size(&self, blob_id: &str) -> Result<Option<u64>>;
    /// The Emails of the account whose message is the blob `blob_id` (hex sha256).
    async fn emails_with_blob(&self, account: AccountId, blob_id: &str) -> Result<Vec<EmailId>>;
}
