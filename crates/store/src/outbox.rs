//! Write-back records: the user's changes as the store takes them, and the outbox entries
//! the engine replays to the server (docs/design/writeback.md).

use crate::Result;
use async_trait::async_trait;
use mail_types::{AccountId, EmailId, MailboxId};
use serde::{Deserialize, Serialize};

/// UIDs at or above this are placeholders: the local copy of a message moved, copied or
/// appended whose real UID the server has not told us yet. IMAP UIDs are 32-bit, so a
/// placeholder can never be taken for a server UID; readers that hand UIDs to the sync
/// skip them.
pub const PLACEHOLDER_UID_BASE: i64 = 1 << 32;

/// One Email's change by the user (JMAP Email/set update).
#[derive(Debug, Clone)]
pub struct EmailPatch {
    pub email: EmailId,
    /// JMAP keywords to set and to clear.
    pub keywords_add: Vec<String>,
    pub keywords_remove: Vec<String>,
    /// Mailboxes the Email is to be added to and removed from.
    pub mailboxes_add: Vec<MailboxId>,
    pub mailboxes_remove: Vec<MailboxId>,
}

/// A message to put into a mailbox (draft, import, the Sent copy of a submission).
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub mailbox: MailboxId,
    /// The RFC 5322 message.
    pub raw: Vec<u8>,
    /// JMAP keywords (`$seen`, `$draft`...).
    pub keywords: Vec<String>,
    /// Unix seconds (the IMAP internal date).
    pub received_at: i64,
}

/// Changes to a mailbox (JMAP Mailbox/set update); `None` leaves a property alone.
#[derive(Debug, Clone, Default)]
pub struct MailboxPatch {
    /// New leaf name.
    pub name: Option<String>,
    /// New parent (`Some(None)`: top level).
    pub parent: Option<Option<MailboxId>>,
    pub subscribed: Option<bool>,
    /// JMAP sortOrder: kept in the store only (IMAP has no order of mailboxes).
    pub sort_order: Option<u32>,
}

/// Why the store refused a user's change; the API maps these to RFC 8620/8621 SetErrors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteRefusal {
    #[error("not found")]
    NotFound,
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("the mailbox has child mailboxes")]
    MailboxHasChild,
    #[error("the mailbox has emails")]
    MailboxHasEmail,
    #[error("a mailbox with this name exists")]
    AlreadyExists,
    #[error("forbidden: {0}")]
    Forbidden(String),
}

/// What an outbox entry asks of the server. Mailboxes are named by store id and resolved
/// to their current wire names when the entry is replayed (an earlier entry may have
/// created or renamed them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OutboxOp {
    /// Set and clear IMAP flags on every copy of an Email that has a server UID.
    Flags {
        add: Vec<String>,
        remove: Vec<String>,
    },
    /// Move one copy; `placeholder` is the UID of the local destination copy.
    Move {
        from: MailboxId,
        uid: i64,
        to: MailboxId,
        placeholder: i64,
        /// The removed source copy, to put back if the server refuses.
        flags: String,
        modseq: i64,
    },
    /// Copy one copy (the source stays).
    Copy {
        from: MailboxId,
        uid: i64,
        to: MailboxId,
        placeholder: i64,
    },
    /// Remove one copy (STORE \Deleted + UID EXPUNGE).
    Expunge {
        mailbox: MailboxId,
        uid: i64,
        flags: String,
        modseq: i64,
    },
    /// APPEND the Email's blob to a mailbox. `uidnext_before` is recorded before the first
    /// attempt, so a replay after a crash can look for the message instead of appending it
    /// twice.
    Append {
        mailbox: MailboxId,
        placeholder: i64,
        blob_id: String,
        flags: Vec<String>,
        received_at: i64,
        header_hash: String,
        size: i64,
        #[serde(default)]
        uidnext_before: Option<u32>,
    },
    CreateMailbox {
        mailbox: MailboxId,
        parent: Option<MailboxId>,
        leaf: String,
    },
    RenameMailbox {
        mailbox: MailboxId,
        old_raw: String,
        old_name: String,
        old_parent: Option<MailboxId>,
        parent: Option<MailboxId>,
        leaf: String,
    },
    DeleteMailbox {
        raw_name: String,
    },
    Subscribe {
        mailbox: MailboxId,
        subscribed: bool,
    },
    /// Gmail: labels added to and removed from a message, as `UID STORE ±X-GM-LABELS` on
    /// its All Mail copy (`mailbox`, `uid`); Gmail then puts it into the label folders
    /// and takes it out of the others. `placeholders` are the label mailboxes given a local
    /// copy (UID `placeholder`) until the sync brings the server's; `removed` the label
    /// copies taken away locally, put back if the server refuses.
    Labels {
        mailbox: MailboxId,
        uid: i64,
        add: Vec<String>,
        remove: Vec<String>,
        placeholders: Vec<MailboxId>,
        placeholder: i64,
        removed: Vec<RemovedCopy>,
    },
}

/// A copy the user's change removed locally, as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedCopy {
    pub mailbox: MailboxId,
    pub uid: i64,
    pub flags: String,
    pub modseq: i64,
}

impl OutboxOp {
    pub fn kind(&self) -> &'static str {
        match self {
            OutboxOp::Flags { .. } => "flags",
            OutboxOp::Move { .. } => "move",
            OutboxOp::Copy { .. } => "copy",
            OutboxOp::Expunge { .. } => "expunge",
            OutboxOp::Append { .. } => "append",
            OutboxOp::CreateMailbox { .. } => "create_mailbox",
            OutboxOp::RenameMailbox { .. } => "rename_mailbox",
            OutboxOp::DeleteMailbox { .. } => "delete_mailbox",
            OutboxOp::Subscribe { .. } => "subscribe",
            OutboxOp::Labels { .. } => "labels",
        }
    }

    pub fn is_mailbox_op(&self) -> bool {
        matches!(
            self,
            OutboxOp::CreateMailbox { .. }
                | OutboxOp::RenameMailbox { .. }
                | OutboxOp::DeleteMailbox { .. }
                | OutboxOp::Subscribe { .. }
        )
    }
}

/// One pending entry, as the worker sees it.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    pub rev: i64,
    /// The Email an Email op is about.
    pub email: Option<EmailId>,
    pub op: OutboxOp,
    pub attempts: i64,
    /// For Flags entries: the copies to STORE on, as (mailbox, uid) with server UIDs, and
    /// the mailbox's stored HIGHESTMODSEQ (for UNCHANGEDSINCE; 0 without CONDSTORE).
    pub targets: Vec<(MailboxId, u32, u64)>,
}

/// How the server answered an entry that succeeded.
#[derive(Debug, Clone)]
pub struct OutboxDone {
    pub id: i64,
    pub rev: i64,
    /// The server UID of the new copy (MOVE/COPY with COPYUID, APPEND with APPENDUID);
    /// `None` when the server did not say (the placeholder is dropped and the sync brings
    /// the real copy).
    pub new_uid: Option<(u32, u32)>,
    /// The wire name a created or renamed mailbox has on the server.
    pub raw_name: Option<String>,
    /// The wire name a renamed mailbox had before.
    pub old_raw_name: Option<String>,
}

/// A change the server refused for good, kept for the user to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxFailure {
    pub id: i64,
    pub kind: String,
    /// The Email or Mailbox row id.
    pub object: Option<i64>,
    pub reason: String,
    pub at: i64,
}

/// Where an account's write-back stands (JMAP `Outbox/get`).
#[derive(Debug, Clone, Default)]
pub struct OutboxStatus {
    pub pending: u64,
    /// The oldest pending entry's last error (a transient one: it is being retried).
    pub last_error: Option<String>,
    pub failures: Vec<OutboxFailure>,
    /// POP3: changes are kept locally and never reach the server.
    pub local_only: bool,
}

/// Write-back: each user change is applied to the store (optimistically, with its
/// change-log rows) and queued in the outbox in ONE transaction; the engine's outbox
/// worker replays the queue to the server. POP3 accounts keep their changes local.
/// See docs/design/writeback.md.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
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

    /// `account`'s "work queued" signal: bumped after each commit that queued something
    /// in its outbox, and only then (see [`crate::wake`]). Its outbox worker waits on it.
    fn outbox_signal(&self, account: AccountId) -> tokio::sync::watch::Receiver<u64>;
}
