//! The sync's view of the store (IMAP and POP3).

use crate::Result;
use crate::model::*;
use async_trait::async_trait;
use mail_types::{AccountId, EmailId, MailboxId, State, Uid, UidValidity};

/// The sync's view of an account: the mailbox list, the stored UIDs and copies of a
/// mailbox, the batches of server changes, bodies still to fetch, POP3's UIDLs. What
/// `imap-sync` and `pop3-sync` write through, and the engine's body fetches.
#[async_trait]
pub trait MailSync: Send + Sync + 'static {
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

    /// [`MailSync::apply_mailbox_changes`] for bodies a person is waiting for (the engine's
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

    /// Destroys Emails that no mailbox holds any more (after moves have had a chance to
    /// re-link them). Returns how many were destroyed.
    async fn collect_orphans(&self, account: AccountId) -> Result<usize>;

    /// Every UIDL this POP3 account has retrieved.
    async fn pop3_entries(&self, account: AccountId) -> Result<Vec<Pop3Entry>>;

    /// Records that these messages were deleted on the server (delete-after-N-days).
    async fn pop3_mark_deleted(&self, account: AccountId, uidls: &[String]) -> Result<()>;

    /// Moves whenever a mailbox change of the user (create, rename, delete, subscribe) is
    /// queued or confirmed by the server. The sync reads it before its LIST and hands it to
    /// [`MailSync::apply_mailbox_list_at`], so a list taken across such a change (which may
    /// show the server before the change) is not applied over it.
    fn mailbox_epoch(&self, _account: AccountId) -> u64 {
        0
    }

    /// [`MailSync::apply_mailbox_list`], unless the mailbox epoch moved away from `epoch` since
    /// the list was taken: then nothing is applied (the next pass brings the list in line).
    async fn apply_mailbox_list_at(
        &self,
        account: AccountId,
        remote: &[RemoteMailbox],
        _epoch: u64,
    ) -> Result<MailboxListOutcome> {
        self.apply_mailbox_list(account, remote).await
    }
}

/// What `imap-sync` holds: the sync's view of the mail, the download budget its body pass
/// spends, and the quotas it learns from the server (RFC 9208). Comes with those three
/// roles; `Arc<dyn Store>` upcasts to it.
pub trait SyncStore: MailSync + crate::BodyPolicy + crate::Quotas {}

impl<T> SyncStore for T where T: MailSync + crate::BodyPolicy + crate::Quotas {}
