//! Records of the sending part: identities and queued submissions.

use crate::Result;
use async_trait::async_trait;
use mail_types::{AccountId, EmailId, MailboxId, ThreadId};
use serde::{Deserialize, Serialize};

/// RFC 8621 7: whether a submission can still be canceled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UndoStatus {
    Pending,
    Final,
    Canceled,
}

impl UndoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UndoStatus::Pending => "pending",
            UndoStatus::Final => "final",
            UndoStatus::Canceled => "canceled",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(UndoStatus::Pending),
            "final" => Some(UndoStatus::Final),
            "canceled" => Some(UndoStatus::Canceled),
            _ => None,
        }
    }
}

/// Where a submission is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmissionPhase {
    /// Waiting for its time (the undo window, or the next retry).
    Queued,
    /// An SMTP attempt may be under way.
    Sending,
    /// Sent, failed for good, canceled, or unknown after a crash.
    Done,
}

impl SubmissionPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionPhase::Queued => "queued",
            SubmissionPhase::Sending => "sending",
            SubmissionPhase::Done => "done",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(SubmissionPhase::Queued),
            "sending" => Some(SubmissionPhase::Sending),
            "done" => Some(SubmissionPhase::Done),
            _ => None,
        }
    }
}

/// RFC 8621 7 `deliveryStatus` of one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryEntry {
    pub email: String,
    /// The SMTP reply for this recipient ("250 2.1.5 Ok"), or a description when there
    /// was none.
    pub smtp_reply: String,
    /// "queued", "yes", "no" or "unknown".
    pub delivered: String,
    /// Nothing more will be sent to this recipient: the server took it (or refused it
    /// for good), or an attempt to it ended unknown. Not settled: the next attempt sends
    /// to it (a recipient deferred with a 4xx while others were accepted is retried
    /// alone). Internal; not a JMAP property.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settled: bool,
}

impl DeliveryEntry {
    /// Whether the message may have reached the submission server for this recipient
    /// (then the user did send it, and a Sent copy is due).
    pub fn reached_server(&self) -> bool {
        self.settled && matches!(self.delivered.as_str(), "queued" | "yes" | "unknown")
    }
}

/// Applies a delivery-status report to a submission's recipients: each entry the report
/// names (addresses compared without case) takes its `delivered` and `smtp_reply`, and the
/// report's blob joins `dsn_blobs`. Once per report: false, and nothing changed, when
/// that blob was applied already.
pub(crate) fn apply_report(
    delivery: &mut [DeliveryEntry],
    dsn_blobs: &mut Vec<String>,
    blob_id: &str,
    updates: &[DeliveryEntry],
) -> bool {
    if dsn_blobs.iter().any(|b| b == blob_id) {
        return false;
    }
    dsn_blobs.push(blob_id.to_owned());
    for u in updates {
        if let Some(e) = delivery
            .iter_mut()
            .find(|e| e.email.eq_ignore_ascii_case(&u.email))
        {
            e.delivered = u.delivered.clone();
            e.smtp_reply = u.smtp_reply.clone();
        }
    }
    true
}

/// What the Sent copy of a message needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentCopy {
    /// Not ours to make (the server files it, or the client moved the draft there).
    None,
    /// To be appended to the Sent mailbox once the message reached the server (accepted
    /// for one recipient at least, or ended unknown).
    Append,
    /// It did: the copy is to be made now (the submission may still be retrying a
    /// deferred recipient).
    Due,
    /// Appended (or handed to the write-back outbox).
    Done,
}

impl SentCopy {
    pub fn as_str(self) -> &'static str {
        match self {
            SentCopy::None => "none",
            SentCopy::Append => "append",
            SentCopy::Due => "due",
            SentCopy::Done => "done",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "none" => Some(SentCopy::None),
            "append" => Some(SentCopy::Append),
            "due" => Some(SentCopy::Due),
            "done" => Some(SentCopy::Done),
            _ => None,
        }
    }
}

/// What becomes of a submission's Email (the draft), so that a message is never lost:
/// it leaves Drafts only once it was sent and its Sent copy made, and comes back there
/// after a failure or a cancel (DESIGN.md invariant 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftFate {
    /// Nothing to do (the client manages the Email).
    Keep,
    /// onSuccessDestroyEmail: destroy the Email once the message reached the server.
    DestroyWhenSent,
    /// It did: destroy it once the Sent copy is made.
    Destroy,
    /// Failed for good, or canceled: put the message back into Drafts.
    Restore,
    /// Destroyed or restored.
    Done,
}

impl DraftFate {
    pub fn as_str(self) -> &'static str {
        match self {
            DraftFate::Keep => "keep",
            DraftFate::DestroyWhenSent => "destroy_when_sent",
            DraftFate::Destroy => "destroy",
            DraftFate::Restore => "restore",
            DraftFate::Done => "done",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "keep" => Some(DraftFate::Keep),
            "destroy_when_sent" => Some(DraftFate::DestroyWhenSent),
            "destroy" => Some(DraftFate::Destroy),
            "restore" => Some(DraftFate::Restore),
            "done" => Some(DraftFate::Done),
            _ => None,
        }
    }
}

/// A submission to queue.
#[derive(Debug, Clone)]
pub struct NewSubmission {
    pub account: AccountId,
    pub identity: i64,
    pub email: EmailId,
    pub thread: ThreadId,
    /// The JMAP envelope as JSON (shown back by EmailSubmission/get).
    pub envelope_json: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The exact message to send.
    pub raw: Vec<u8>,
    /// The stored blob holding exactly `raw` (the Email's): the submission then keeps a
    /// reference to it instead of a second copy of the bytes, and no blob collection
    /// removes it while the submission needs it. `None`: `raw` is kept in the row.
    pub blob_id: Option<String>,
    pub message_id: Option<String>,
    /// Unix seconds; not before (the undo window, or FUTURERELEASE).
    pub send_at: i64,
    pub sent_copy: SentCopy,
    /// `Keep`, or `DestroyWhenSent` for onSuccessDestroyEmail.
    pub draft: DraftFate,
}

impl NewSubmission {
    /// Each recipient's status before any attempt: queued, not settled.
    pub fn queued_delivery(&self) -> Vec<DeliveryEntry> {
        self.rcpt_to
            .iter()
            .map(|r| DeliveryEntry {
                email: r.clone(),
                smtp_reply: String::new(),
                delivered: "queued".into(),
                settled: false,
            })
            .collect()
    }
}

/// A stored submission (without its bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionRecord {
    pub id: i64,
    pub account: AccountId,
    pub identity: i64,
    pub email: EmailId,
    pub thread: ThreadId,
    pub envelope_json: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub message_id: Option<String>,
    pub send_at: i64,
    pub created_at: i64,
    pub undo_status: UndoStatus,
    pub phase: SubmissionPhase,
    pub attempts: u32,
    pub next_attempt: i64,
    pub delivery: Vec<DeliveryEntry>,
    pub last_error: String,
    pub sent_copy: SentCopy,
    /// Blob ids of the delivery-status reports applied (JMAP `dsnBlobIds`).
    pub dsn_blob_ids: Vec<String>,
    pub draft: DraftFate,
}

impl SubmissionRecord {
    /// The ENVID given at MAIL FROM when DSNs are asked for (RFC 3461 4.4: printable
    /// ASCII): unique per row and store, so a report names its submission.
    pub fn envelope_id(&self) -> String {
        format!("tidings-{}-{}", self.id, self.created_at)
    }
}

/// What one attempt came to, for [`Submissions::finish_submission`].
#[derive(Debug, Clone)]
pub enum AttemptResult {
    /// Done: sent (possibly to only some recipients), or failed for good.
    Final {
        delivery: Vec<DeliveryEntry>,
        error: String,
    },
    /// Try again at `next_attempt` (unix seconds).
    Retry {
        next_attempt: i64,
        delivery: Vec<DeliveryEntry>,
        error: String,
    },
}

impl AttemptResult {
    /// Each recipient's status after the attempt, and its error.
    pub fn outcome(&self) -> (&[DeliveryEntry], &str) {
        match self {
            AttemptResult::Final { delivery, error }
            | AttemptResult::Retry {
                delivery, error, ..
            } => (delivery, error),
        }
    }

    /// Whether the message may have reached the server for someone: the Sent copy is then
    /// due (the user did send it), even while a deferred recipient is still being retried.
    pub fn reached_server(&self) -> bool {
        self.outcome().0.iter().any(DeliveryEntry::reached_server)
    }
}

/// Result of a cancel (an update of undoStatus to canceled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Canceled,
    /// Already sending, sent or failed: RFC 8621 7.5 `cannotUnsend`.
    TooLate,
    NotFound,
}

/// A JMAP Identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    pub id: i64,
    pub account: AccountId,
    pub name: String,
    pub email: String,
    /// JSON (array of EmailAddress or null).
    pub reply_to: String,
    pub bcc: String,
    pub text_signature: String,
    pub html_signature: String,
    pub may_delete: bool,
}

/// Sending: identities and the submission queue (JMAP EmailSubmission, RFC 8621 7),
/// what the engine's submission worker sends and files.
#[async_trait]
pub trait Submissions: Send + Sync + 'static {
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

    /// Sets when a submission that is still queued and pending is sent (`send_at`, unix
    /// seconds). The JMAP server creates a submission whose onSuccessUpdateEmail is still
    /// to be applied with a later time, so that no worker sends (and settles) it before
    /// the Email was updated, then brings the time back. False when it is no longer
    /// waiting (canceled, being sent, done) or not the account's.
    async fn reschedule_submission(
        &self,
        account: AccountId,
        id: i64,
        send_at: i64,
    ) -> Result<bool>;

    /// undoStatus pending -> canceled, only while nothing has been sent.
    async fn cancel_submission(&self, account: AccountId, id: i64) -> Result<CancelOutcome>;

    /// Forgets a submission that is not being sent right now.
    async fn destroy_submission(&self, account: AccountId, id: i64) -> Result<bool>;

    /// Queued submissions of `accounts` due at `now` (unix seconds), earliest first. The
    /// accounts are those the asking node holds (with several nodes, each sends only
    /// for the accounts it holds the lease of).
    async fn due_submissions(
        &self,
        now: i64,
        limit: usize,
        accounts: &[AccountId],
    ) -> Result<Vec<SubmissionRecord>>;

    /// When the next queued submission of `accounts` is due.
    async fn next_submission_at(&self, accounts: &[AccountId]) -> Result<Option<i64>>;

    /// The submission queue's "work queued" signal: bumped after each commit that queued a
    /// submission or canceled one (its draft goes back), in any account (see
    /// [`crate::wake`]). The engine's one submission worker waits on it.
    fn submission_signal(&self) -> tokio::sync::watch::Receiver<u64>;

    /// queued -> sending (durably committed) and the bytes to send; `None` when it is no
    /// longer queued (canceled, destroyed).
    async fn begin_submission(&self, id: i64) -> Result<Option<Vec<u8>>>;

    /// Records the outcome of the attempt begun with `begin_submission`.
    async fn finish_submission(&self, id: i64, result: &AttemptResult) -> Result<()>;

    /// When a node starts working on the account (at startup, or taking it over from a
    /// node that died or lost it): its submissions cut during an attempt become final
    /// with delivered `unknown` and are never sent again. Returns their ids.
    async fn recover_submissions(&self, account: AccountId) -> Result<Vec<i64>>;

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
        accounts: &[AccountId],
    ) -> Result<Vec<(SubmissionRecord, Option<Vec<u8>>)>>;

    /// The follow-up of `draft_followups` is done (the bytes may then go).
    async fn set_draft_done(&self, id: i64) -> Result<()>;

    /// Whether the account's submission server files sent mail in Sent itself (then
    /// Tidings appends no copy).
    async fn set_server_files_sent(&self, account: AccountId, server_files: bool) -> Result<()>;

    async fn server_files_sent(&self, account: AccountId) -> Result<bool>;

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
}
