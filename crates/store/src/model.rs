//! Records that go in and out of the store.

use mail_types::{
    AccountAuth, AccountId, AccountKind, EmailId, MailboxId, ModSeq, Role, Security, State,
    SyncStatus, ThreadId, Uid, UidValidity, UserId,
};
pub use mime::ParsedMessage;

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: UserId,
    pub name: String,
    pub password_hash: String,
}

/// Connection settings of one server endpoint (IMAP, POP3 or SMTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    /// Encrypted at rest by the caller (the store never sees the clear text).
    pub password_enc: Vec<u8>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub user: UserId,
    pub name: String,
    pub kind: AccountKind,
    pub server: ServerSettings,
    pub smtp: Option<ServerSettings>,
    /// POP3: delete messages on the server this many days after retrieval (None: never).
    pub pop3_delete_after_days: Option<u32>,
    /// Password or OAuth2 (then `password_enc` holds the encrypted refresh token).
    pub auth: AccountAuth,
}

#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub id: AccountId,
    pub user: UserId,
    pub user_name: String,
    pub name: String,
    pub kind: AccountKind,
    pub server: ServerSettings,
    pub smtp: Option<ServerSettings>,
    pub pop3_delete_after_days: Option<u32>,
    pub auth: AccountAuth,
    pub status: SyncStatus,
    pub status_at: i64,
    pub state: State,
    /// The provider profile named in the configuration (`auto`: detected at connect).
    pub provider: String,
}

/// ManageSieve (RFC 5804) of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SieveSettings {
    /// `false`: never try (the configuration said `sieve = false`).
    pub enabled: bool,
    /// `None`: the IMAP host (RFC 5804 1.8).
    pub host: Option<String>,
    /// `None`: 4190.
    pub port: Option<u16>,
    /// The server's capabilities (JSON) from the last successful try; `None`: not
    /// available (or not tried yet).
    pub capabilities: Option<String>,
    /// When it was last tried (unix seconds; 0: never).
    pub checked_at: i64,
}

impl Default for SieveSettings {
    fn default() -> Self {
        SieveSettings {
            enabled: true,
            host: None,
            port: None,
            capabilities: None,
            checked_at: 0,
        }
    }
}

/// What an account downloads in the background, and how much a day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountPolicy {
    /// Bodies of messages received in the last N days are fetched in the background
    /// (`None`: all; `Some(0)`: none); the others when someone asks for them.
    pub bodies_days: Option<u32>,
    /// Daily download limit in MB (`None`: the provider profile's default; `Some(0)`:
    /// unlimited).
    pub daily_download_mb: Option<u64>,
}

/// A mailbox as the server's LIST (and STATUS) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMailbox {
    /// Name as sent on the wire (modified UTF-7), used in commands.
    pub raw_name: String,
    /// Decoded display name (full path with delimiters).
    pub name: String,
    pub delimiter: Option<String>,
    pub role: Option<Role>,
    pub subscribed: bool,
    pub selectable: bool,
    /// From LIST-STATUS, when the server gave it; used to follow renames.
    pub uidvalidity: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct MailboxListOutcome {
    pub created: Vec<MailboxId>,
    pub renamed: Vec<MailboxId>,
    pub destroyed: Vec<MailboxId>,
}

/// Sync progress of one mailbox, for a progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Messages on the server when the sync counted them.
    pub total: u32,
    /// Copies whose headers and metadata are stored.
    pub headers: u32,
    /// Copies whose full message is stored.
    pub bodies: u32,
}

#[derive(Debug, Clone)]
pub struct MailboxRecord {
    pub id: MailboxId,
    pub account: AccountId,
    pub raw_name: String,
    pub name: String,
    pub parent: Option<MailboxId>,
    pub delimiter: Option<String>,
    pub role: Option<Role>,
    pub subscribed: bool,
    pub selectable: bool,
    /// 0 until the first SELECT.
    pub uidvalidity: UidValidity,
    /// Every UID below this has been seen (stored or known expunged).
    pub uidnext: Uid,
    /// All flag changes up to this mod-sequence are stored (0: no CONDSTORE state).
    pub highestmodseq: ModSeq,
    pub progress: Progress,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    pub uid: Uid,
    /// IMAP flags as the server spelled them, sorted.
    pub flags: Vec<String>,
}

/// One new message copy seen on the server.
#[derive(Debug, Clone)]
pub struct NewCopy {
    pub uid: Uid,
    pub flags: Vec<String>,
    pub modseq: ModSeq,
    pub internal_date: i64,
    pub size: u32,
    /// The server's RFC 8474 EMAILID, when it has OBJECTID.
    pub server_email_id: Option<String>,
    /// Content identity when there is no EMAILID: sha256 of the header block.
    pub header_hash: String,
    /// Parsed header (or whole message when `raw` is given).
    pub parsed: ParsedMessage,
    /// The raw message, when fetched with the header (a zero-copy slice of the response).
    pub raw: Option<bytes::Bytes>,
}

/// A message body fetched after its header.
#[derive(Debug, Clone)]
pub struct NewBody {
    pub uid: Uid,
    pub raw: bytes::Bytes,
    pub parsed: ParsedMessage,
}

/// Gmail's own ids of a message (X-GM-EXT-1): X-GM-MSGID names the message in every
/// folder and for good; X-GM-THRID names Gmail's conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GmailIds {
    pub msgid: u64,
    pub thrid: Option<u64>,
}

/// A copy in a Gmail label folder (INBOX included): nothing of it is fetched but its UID,
/// flags and X-GM-MSGID; it is linked to the Email of that X-GM-MSGID, whose header and
/// body came from All Mail.
#[derive(Debug, Clone)]
pub struct LinkedCopy {
    pub uid: Uid,
    pub flags: Vec<String>,
    pub modseq: ModSeq,
    pub msgid: u64,
}

#[derive(Debug, Clone)]
pub struct FlagUpdate {
    pub uid: Uid,
    pub flags: Vec<String>,
    pub modseq: ModSeq,
}

/// One batch of server changes to one mailbox; applied in one transaction.
///
/// A batch is made for one UIDVALIDITY ([`MailboxChanges::new`]): every UID in it means a
/// message of that epoch of the mailbox (RFC 3501 2.3.1.1), and the store refuses the
/// batch ([`crate::Error::UidValidityChanged`]) when the mailbox it holds is of another.
#[derive(Debug, Clone)]
pub struct MailboxChanges {
    pub new: Vec<NewCopy>,
    pub bodies: Vec<NewBody>,
    pub flags: Vec<FlagUpdate>,
    pub expunged: Vec<Uid>,
    /// Stored only once everything up to it is in this or an earlier batch.
    pub highestmodseq: Option<ModSeq>,
    /// Raise the mailbox's `uidnext` to this (never lowered).
    pub uidnext: Option<Uid>,
    /// The epoch the UIDs of this batch belong to. A mailbox stored without one yet (never
    /// selected) takes it.
    pub uidvalidity: UidValidity,
    /// Messages on the server, for progress.
    pub server_total: Option<u32>,
    /// POP3: the UIDL of each new copy, recorded in the same transaction.
    pub pop3_uidls: Vec<(Uid, String)>,
    /// Gmail: the ids of copies in `new` (by UID); such an Email's identity is its
    /// X-GM-MSGID and its thread its X-GM-THRID.
    pub gmail: Vec<(Uid, GmailIds)>,
    /// Gmail: copies of label folders linked to the Email of their X-GM-MSGID. One whose
    /// Email is not stored is skipped (the sync fetches those whole; the count check
    /// catches a race).
    pub links: Vec<LinkedCopy>,
}

impl MailboxChanges {
    /// An empty batch for UIDs of the epoch `uidvalidity`.
    pub fn new(uidvalidity: UidValidity) -> Self {
        MailboxChanges {
            new: Vec::new(),
            bodies: Vec::new(),
            flags: Vec::new(),
            expunged: Vec::new(),
            highestmodseq: None,
            uidnext: None,
            uidvalidity,
            server_total: None,
            pop3_uidls: Vec::new(),
            gmail: Vec::new(),
            links: Vec::new(),
        }
    }

    /// Nothing to change (the epoch alone is not a change: it only says what the UIDs
    /// mean).
    pub fn is_empty(&self) -> bool {
        self.new.is_empty()
            && self.bodies.is_empty()
            && self.flags.is_empty()
            && self.expunged.is_empty()
            && self.highestmodseq.is_none()
            && self.uidnext.is_none()
            && self.server_total.is_none()
            && self.pop3_uidls.is_empty()
            && self.links.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct MessageSummary {
    pub email: EmailId,
    pub thread: ThreadId,
    pub uid: Uid,
    pub flags: Vec<String>,
    pub size: u32,
    pub internal_date: i64,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub blob_id: Option<String>,
    pub has_attachment: bool,
    pub preview: String,
}

/// The kind of object a change log row is about (JMAP data types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    Email,
    Mailbox,
    Thread,
    EmailSubmission,
    Identity,
    Quota,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Email => "Email",
            ObjectType::Mailbox => "Mailbox",
            ObjectType::Thread => "Thread",
            ObjectType::EmailSubmission => "EmailSubmission",
            ObjectType::Identity => "Identity",
            ObjectType::Quota => "Quota",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "Email" => Some(ObjectType::Email),
            "Mailbox" => Some(ObjectType::Mailbox),
            "Thread" => Some(ObjectType::Thread),
            "EmailSubmission" => Some(ObjectType::EmailSubmission),
            "Identity" => Some(ObjectType::Identity),
            "Quota" => Some(ObjectType::Quota),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Created,
    Updated,
    Destroyed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub state: State,
    pub object: ObjectType,
    pub id: i64,
    pub op: ChangeOp,
}

/// A mailbox as JMAP shows it (RFC 8621 2), with its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxView {
    pub id: MailboxId,
    /// The last segment of the full name (JMAP names are per level).
    pub name: String,
    pub parent: Option<MailboxId>,
    pub role: Option<Role>,
    pub subscribed: bool,
    pub selectable: bool,
    pub total_emails: u32,
    pub unread_emails: u32,
    pub total_threads: u32,
    pub unread_threads: u32,
    /// write-back: the sortOrder the user set (Mailbox/set), if any.
    pub sort_order: Option<u32>,
}

/// A point in an account's change log: everything up to change row `row` of state
/// `state` has been seen. A whole state is `row == i64::MAX`; a page that had to stop in
/// the middle of one transaction's changes (more objects than `maxChanges`) ends at a
/// row inside it, so pages never exceed the limit and never lose a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangePosition {
    pub state: i64,
    pub row: i64,
}

impl ChangePosition {
    pub fn whole(state: State) -> Self {
        ChangePosition {
            state: state.0,
            row: i64::MAX,
        }
    }
}

/// One page of the change log for one object type (RFC 8620 5.2 semantics: an object
/// created and destroyed within the page is left out; created then updated is created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesPage {
    pub created: Vec<i64>,
    pub updated: Vec<i64>,
    pub destroyed: Vec<i64>,
    /// Where the page brings the client.
    pub new_position: ChangePosition,
    pub has_more: bool,
}

/// Builds a [`ChangesPage`] from change-log rows read in log order, the same on both
/// backends: each object's first and last operation decide where it goes, and the page
/// stops before the first row of an object that would exceed `max`.
pub(crate) struct PageFold {
    /// object -> (first op, last op).
    objects: std::collections::HashMap<i64, (i64, i64)>,
    /// The objects in order of first appearance.
    order: Vec<i64>,
    max: usize,
    current: i64,
    last: Option<(i64, i64)>,
    has_more: bool,
}

impl PageFold {
    /// A page of at most `max` objects (at least one) up to the account's state `current`.
    pub(crate) fn new(current: i64, max: usize) -> Self {
        PageFold {
            objects: std::collections::HashMap::new(),
            order: Vec::new(),
            max: max.max(1),
            current,
            last: None,
            has_more: false,
        }
    }

    /// Takes change row `row` of state `state` (`op`: 0 created, 1 updated, 2 destroyed);
    /// false when the page is full and ends before it.
    pub(crate) fn take(&mut self, state: i64, row: i64, id: i64, op: i64) -> bool {
        let full = self.objects.len() >= self.max;
        match self.objects.get_mut(&id) {
            Some(e) => e.1 = op,
            None if full => {
                self.has_more = true;
                return false;
            }
            None => {
                self.objects.insert(id, (op, op));
                self.order.push(id);
            }
        }
        self.last = Some((state, row));
        true
    }

    pub(crate) fn finish(self) -> ChangesPage {
        let new_position = match (self.has_more, self.last) {
            // The page ends at the last row taken.
            (true, Some((state, row))) => ChangePosition { state, row },
            _ => ChangePosition::whole(State(self.current)),
        };
        let mut page = ChangesPage {
            created: Vec::new(),
            updated: Vec::new(),
            destroyed: Vec::new(),
            new_position,
            has_more: self.has_more,
        };
        for id in self.order {
            let Some((first, last)) = self.objects.get(&id).copied() else {
                continue;
            };
            match (first, last) {
                (0, 2) => {}                     // created and destroyed: never seen
                (0, _) => page.created.push(id), // created (then maybe updated)
                (_, 2) => page.destroyed.push(id),
                _ => page.updated.push(id),
            }
        }
        page
    }
}

/// An Email as JMAP shows it (RFC 8621 4.1), the properties kept in the store. Address
/// lists are JSON arrays of `{name, email}`, as JMAP's EmailAddress.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailView {
    pub id: EmailId,
    pub thread: ThreadId,
    pub blob_id: Option<String>,
    pub mailboxes: Vec<MailboxId>,
    pub keywords: Vec<String>,
    pub size: u32,
    pub received_at: i64,
    pub sent_at: Option<i64>,
    /// The Date header's offset from UTC, minutes east (`sentAt` is a JMAP Date).
    pub sent_offset: i16,
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub subject: Option<String>,
    pub from: serde_json::Value,
    pub sender: serde_json::Value,
    pub reply_to: serde_json::Value,
    pub to: serde_json::Value,
    pub cc: serde_json::Value,
    pub bcc: serde_json::Value,
    pub preview: String,
    pub has_attachment: bool,
    /// The Email was created before its message was stored: its JMAP blobId is derived
    /// from its id for its whole life, not from `blob_id` (see [`EmailView::jmap_blob_id`]).
    pub blob_by_id: bool,
}

impl EmailView {
    /// The Email's JMAP blobId (RFC 8621 4.1.1: always there, never changes): `b<sha256>`
    /// when its bytes were stored with it, else `bm<email id>`, which the download and
    /// parse paths resolve to the message (fetching it first when it is not stored yet).
    pub fn jmap_blob_id(&self) -> String {
        match (&self.blob_id, self.blob_by_id) {
            (Some(sha), false) => format!("b{sha}"),
            _ => format!("bm{}", self.id.0),
        }
    }
}

/// Where a message can be fetched from on its server: one IMAP copy of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySource {
    pub mailbox: MailboxId,
    /// The mailbox's name on the wire.
    pub raw_name: String,
    pub uidvalidity: UidValidity,
    pub uid: Uid,
}

/// One condition of an Email query (RFC 8621 4.4.1), in store terms.
#[derive(Debug, Clone, PartialEq)]
pub enum EmailCondition {
    InMailbox(MailboxId),
    /// In at least one mailbox that is not one of these.
    InMailboxOtherThan(Vec<MailboxId>),
    /// receivedAt strictly before / at or after (unix seconds).
    Before(i64),
    After(i64),
    MinSize(u64),
    /// size strictly less than this.
    MaxSize(u64),
    HasKeyword(String),
    NotKeyword(String),
    AllInThreadHaveKeyword(String),
    SomeInThreadHaveKeyword(String),
    NoneInThreadHaveKeyword(String),
    HasAttachment(bool),
    /// Full-text words (every one must match, in a header or the body).
    Text(String),
    /// Words that must be in the subject, or in the body text.
    Subject(String),
    Body(String),
    /// Substrings (case-insensitive) of an address field: name or email.
    From(String),
    To(String),
    Cc(String),
    Bcc(String),
    /// A header field of this name exists (and its value contains the text,
    /// case-insensitively). Read from the stored message: an Email whose body is not
    /// stored yet does not match.
    Header(String, Option<String>),
    /// Matches nothing (e.g. a mailbox id that does not parse).
    Nothing,
}

/// A filter tree: conditions under AND, OR and NOT (NOT: none of its parts holds).
#[derive(Debug, Clone, PartialEq)]
pub enum EmailFilter {
    And(Vec<EmailFilter>),
    Or(Vec<EmailFilter>),
    Not(Vec<EmailFilter>),
    Condition(EmailCondition),
}

/// What an Email query sorts by (RFC 8621 4.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailSortKey {
    ReceivedAt,
    SentAt,
    Size,
    /// The first From address's name, else its email.
    From,
    /// The first To address's name, else its email.
    To,
    /// The base subject (RFC 5256 2.1).
    Subject,
    HasKeyword(String),
    AllInThreadHaveKeyword(String),
    SomeInThreadHaveKeyword(String),
}

/// How strings compare in a sort (RFC 4790 names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Collation {
    /// `i;unicode-casemap` (RFC 5051): Unicode case-insensitive. The default.
    #[default]
    UnicodeCasemap,
    /// `i;ascii-casemap`: ASCII case-insensitive.
    AsciiCasemap,
    /// `i;octet`: byte order.
    Octet,
}

impl Collation {
    /// The RFC 4790 names the store can sort with.
    pub const NAMES: &'static [&'static str] = &["i;unicode-casemap", "i;ascii-casemap", "i;octet"];

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "i;unicode-casemap" => Collation::UnicodeCasemap,
            "i;ascii-casemap" => Collation::AsciiCasemap,
            "i;octet" => Collation::Octet,
            _ => return None,
        })
    }
}

/// One comparator of a sort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSort {
    pub key: EmailSortKey,
    pub ascending: bool,
    pub collation: Collation,
}

/// An Email query: a filter, a sort (receivedAt newest first when empty; ties broken by
/// id), thread collapsing and paging.
#[derive(Debug, Clone, Default)]
pub struct EmailQuery {
    pub filter: Option<EmailFilter>,
    pub sort: Vec<EmailSort>,
    pub collapse_threads: bool,
    /// Only this window (offset, limit) of the result, found by the index rather than by
    /// reading every match; with `collapse_threads`, a window of threads (matches are read
    /// in order only up to its last thread).
    pub window: Option<(usize, usize)>,
    /// Count every match too (JMAP calculateTotal).
    pub count: bool,
    /// Stop reading the results once this id is listed (JMAP queryChanges `upToId`);
    /// without a window only.
    pub stop_after: Option<EmailId>,
}

/// The ids of a query (its window when one was asked), and the total when counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryPage {
    pub ids: Vec<EmailId>,
    /// The thread of each id, in the same order.
    pub threads: Vec<ThreadId>,
    pub total: Option<usize>,
}

/// Why changes cannot be given from a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangesError {
    /// The state is not one this account had (in the future, or from another store).
    UnknownState,
}

/// A message a POP3 account has retrieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Entry {
    pub uidl: String,
    pub uid: Uid,
    pub retrieved_at: i64,
    pub deleted_on_server: bool,
}

/// An uploaded blob (JMAP blob upload, RFC 8620 6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub account: AccountId,
    /// Hex sha256 of the bytes (the JMAP blobId is `b` and this).
    pub blob_id: String,
    /// The media type the client gave.
    pub content_type: String,
    pub size: u64,
    /// When it was uploaded (unix seconds).
    pub created_at: i64,
}
