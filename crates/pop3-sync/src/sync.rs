//! One POP3 account's retrieval into the store.
//!
//! POP3 is one-way: messages are copied from the server's single maildrop into the
//! account's INBOX, identified by their UIDL (RFC 1939 7). Nothing we store is ever
//! removed because the server lost a message, and local changes never go back.

use crate::client::{MAX_MESSAGE, Pop3Client, UidlEntry};
use crate::error::{Error, Result};
use mail_net::{Credentials, Endpoint, Login};
use mail_types::{AccountId, MailboxId, ModSeq, Role, Uid, UidValidity};
use std::collections::{HashMap, HashSet};
use store::{MailSync, MailboxChanges, MailboxRecord, NewCopy, RemoteMailbox};
use tracing::Instrument;

/// Raw bytes per store transaction: bounds memory with large messages.
pub const BATCH_BYTES: usize = 16 * 1024 * 1024;

/// The UIDVALIDITY of a POP3 account's INBOX. Synthetic UIDs never restart, so the epoch
/// never changes.
pub const POP3_UIDVALIDITY: UidValidity = UidValidity(1);

/// Tunables of one POP3 sync run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Options {
    /// Delete messages on the server this many days after we retrieved them (at QUIT).
    /// `None` (the default) leaves mail on the server.
    pub delete_after_days: Option<u32>,
    /// Messages per store transaction (also bounded by [`BATCH_BYTES`]).
    pub batch: usize,
}

impl Default for Pop3Options {
    fn default() -> Self {
        Pop3Options {
            delete_after_days: None,
            batch: 50,
        }
    }
}

/// What one run did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pop3Report {
    /// Messages the server listed (UIDL).
    pub listed: usize,
    /// Messages retrieved and stored in this run.
    pub retrieved: usize,
    /// Messages deleted on the server at QUIT.
    pub deleted: usize,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Creates the account's INBOX if missing and returns its record.
async fn ensure_inbox(store: &dyn MailSync, account: AccountId) -> Result<MailboxRecord> {
    let inbox = RemoteMailbox {
        raw_name: "INBOX".into(),
        name: "INBOX".into(),
        delimiter: None,
        role: Some(Role::Inbox),
        subscribed: true,
        selectable: true,
        uidvalidity: Some(POP3_UIDVALIDITY.0),
    };
    store.apply_mailbox_list(account, &[inbox]).await?;
    store
        .mailboxes(account)
        .await?
        .into_iter()
        .find(|m| m.raw_name == "INBOX")
        .ok_or_else(|| Error::Store(store::Error::NotFound("the POP3 account's INBOX".into())))
}

/// A retrieved message waiting for its batch.
struct Pending {
    uid: Uid,
    uidl: String,
    raw: Vec<u8>,
}

/// Writes batches of retrieved messages, each with its UIDLs in one transaction.
struct Writer<'a> {
    store: &'a dyn MailSync,
    account: AccountId,
    inbox: MailboxId,
    server_total: u32,
    pending: Vec<Pending>,
    bytes: usize,
    stored: usize,
}

impl Writer<'_> {
    async fn flush(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        self.bytes = 0;
        let account = self.account;
        let count = pending.len();
        // Parsing is CPU work on up to BATCH_BYTES; keep it off the I/O threads.
        let (new, pop3_uidls) = tokio::task::spawn_blocking(move || build_copies(account, pending))
            .await
            .map_err(|e| Error::Task(format!("parse task: {e}")))?;
        let changes = MailboxChanges {
            new,
            pop3_uidls,
            server_total: Some(self.server_total),
            // The first batch sets the epoch on a new INBOX; later ones repeat the same value,
            // which the store accepts as a no-op.
            ..MailboxChanges::new(POP3_UIDVALIDITY)
        };
        self.store
            .apply_mailbox_changes(self.account, self.inbox, changes)
            .await?;
        self.stored += count;
        Ok(())
    }
}

/// Parses retrieved messages into new copies plus their UIDL rows.
fn build_copies(account: AccountId, pending: Vec<Pending>) -> (Vec<NewCopy>, Vec<(Uid, String)>) {
    let now = now();
    let mut new = Vec::with_capacity(pending.len());
    let mut uidls = Vec::with_capacity(pending.len());
    for p in pending {
        // mime::parse never fails; problems are listed and the message is stored anyway,
        // because losing mail is worse than showing it badly. Only the count is logged:
        // problem texts may quote message content.
        let parsed = mime::parse(&p.raw);
        if !parsed.problems.is_empty() {
            tracing::warn!(account = %account, uidl = %p.uidl, problems = parsed.problems.len(),
                "POP3 message did not parse cleanly; stored as is");
        }
        new.push(NewCopy {
            uid: p.uid,
            flags: vec![],
            modseq: ModSeq(0),
            internal_date: parsed.sent_at.unwrap_or(now),
            size: u32::try_from(p.raw.len()).unwrap_or(u32::MAX),
            server_email_id: None,
            header_hash: mime::blob_id(&p.raw),
            parsed,
            raw: Some(bytes::Bytes::from(p.raw)),
        });
        uidls.push((p.uid, p.uidl));
    }
    (new, uidls)
}

/// Retrieves every message of a POP3 account not retrieved before into its INBOX, then
/// (with `delete_after_days`) deletes old retrieved ones on the server.
///
/// - Messages are identified by UIDL; a server without UIDL gives
///   [`Error::Unsupported`]`("UIDL")`, since without it every run would duplicate.
/// - Newest (highest message number) first; each batch stores its messages and their
///   UIDLs in one transaction, so a crash never stores a message without its UIDL.
/// - Synthetic UIDs continue from the INBOX's `uidnext`; the newest message of a run gets
///   the highest one.
/// - Messages deleted on the server by someone else stay in the store.
/// - Without QUIT (an error, a cut connection) the server deletes nothing (RFC 1939 6).
pub async fn sync_pop3(
    store: &dyn MailSync,
    account: AccountId,
    ep: &Endpoint,
    creds: &Credentials,
    opts: &Pop3Options,
) -> Result<Pop3Report> {
    sync_pop3_login(store, account, ep, &Login::Password(creds.clone()), opts).await
}

/// [`sync_pop3`] authenticating as `login` says (password or OAuth 2.0 token).
pub async fn sync_pop3_login(
    store: &dyn MailSync,
    account: AccountId,
    ep: &Endpoint,
    login: &Login,
    opts: &Pop3Options,
) -> Result<Pop3Report> {
    let span = tracing::debug_span!("pop3", account = %account);
    sync_inner(store, account, ep, login, opts)
        .instrument(span)
        .await
}

async fn sync_inner(
    store: &dyn MailSync,
    account: AccountId,
    ep: &Endpoint,
    login: &Login,
    opts: &Pop3Options,
) -> Result<Pop3Report> {
    let inbox = ensure_inbox(store, account).await?;
    let mut client = Pop3Client::connect_and_login_with(ep, login).await?;

    // RFC 1939 7: UIDL is optional. CAPA may simply not list it on an RFC 1939-only
    // server, so the command itself decides.
    let listing = match client.uidl().await {
        Ok(l) => l,
        Err(Error::Refused { .. }) => return Err(Error::Unsupported("UIDL")),
        Err(e) => return Err(e),
    };
    let mut report = Pop3Report {
        listed: listing.len(),
        ..Pop3Report::default()
    };
    // Duplicate UIDLs break RFC 1939 7; store the first and never delete any of them.
    let mut uidl_count: HashMap<&str, usize> = HashMap::new();
    for e in &listing {
        *uidl_count.entry(e.uidl.as_str()).or_default() += 1;
    }
    if uidl_count.values().any(|&n| n > 1) {
        tracing::warn!(account = %account, "POP3 server lists duplicate UIDLs");
    }

    let known: HashSet<String> = store
        .pop3_entries(account)
        .await?
        .into_iter()
        .map(|e| e.uidl)
        .collect();
    let mut taken: HashSet<&str> = HashSet::new();
    let mut new: Vec<&UidlEntry> = listing
        .iter()
        .filter(|e| !known.contains(&e.uidl) && taken.insert(e.uidl.as_str()))
        .collect();

    if !new.is_empty() {
        // LIST sizes let us skip a message too big to hold instead of failing every run.
        let sizes: HashMap<u32, u64> = client
            .list()
            .await?
            .into_iter()
            .map(|l| (l.number, l.size))
            .collect();
        // Allocate the whole UID range up front, in message-number order, so the newest
        // message gets the highest UID even though it is retrieved first.
        new.sort_by_key(|e| e.number);
        let base = inbox.uidnext.0.max(1);
        let count = u32::try_from(new.len())
            .map_err(|_| Error::Protocol("too many new messages".into()))?;
        if base.checked_add(count).is_none() {
            return Err(Error::Protocol("synthetic UID space exhausted".into()));
        }
        let mut writer = Writer {
            store,
            account,
            inbox: inbox.id,
            server_total: u32::try_from(listing.len()).unwrap_or(u32::MAX),
            pending: Vec::new(),
            bytes: 0,
            stored: 0,
        };
        let batch = opts.batch.max(1);
        for (rank, e) in new.iter().enumerate().rev() {
            if sizes
                .get(&e.number)
                .is_some_and(|&s| s > MAX_MESSAGE as u64)
            {
                tracing::warn!(account = %account, uidl = %e.uidl,
                    "POP3 message exceeds {MAX_MESSAGE} bytes; not retrieved");
                continue;
            }
            // rank < count, and base + count fits (checked above).
            let uid = Uid(base + rank as u32);
            let raw = match client.retr(e.number).await {
                Ok(raw) => raw,
                // A -ERR to one RETR (the message vanished, or the server cannot read it)
                // leaves the session usable; the others are still worth retrieving, and
                // this one is tried again next run since its UIDL is not recorded.
                Err(Error::Refused { text, .. }) => {
                    tracing::warn!(account = %account, uidl = %e.uidl, reply = %text,
                        "POP3 server refused RETR; skipped");
                    continue;
                }
                Err(err) => return Err(err),
            };
            writer.bytes += raw.len();
            writer.pending.push(Pending {
                uid,
                uidl: e.uidl.clone(),
                raw,
            });
            if writer.pending.len() >= batch || writer.bytes >= BATCH_BYTES {
                writer.flush().await?;
            }
        }
        if !writer.pending.is_empty() {
            writer.flush().await?;
        }
        report.retrieved = writer.stored;
    }
    if report.retrieved == 0 && inbox.uidvalidity.0 == 0 {
        // Nothing new on the first run: still give the INBOX its epoch.
        store
            .apply_mailbox_changes(
                account,
                inbox.id,
                MailboxChanges {
                    server_total: Some(u32::try_from(listing.len()).unwrap_or(u32::MAX)),
                    ..MailboxChanges::new(POP3_UIDVALIDITY)
                },
            )
            .await?;
    }

    let mut deleted_uidls = Vec::new();
    if let Some(days) = opts.delete_after_days {
        let cutoff = now().saturating_sub(i64::from(days) * 86_400);
        let retrieved: HashMap<String, i64> = store
            .pop3_entries(account)
            .await?
            .into_iter()
            .map(|e| (e.uidl, e.retrieved_at))
            .collect();
        for e in &listing {
            let old = retrieved.get(&e.uidl).is_some_and(|&at| at <= cutoff);
            if old && uidl_count.get(e.uidl.as_str()) == Some(&1) {
                client.dele(e.number).await?;
                deleted_uidls.push(e.uidl.clone());
            }
        }
    }
    // RFC 1939 6: marked messages are removed only now, in the UPDATE state.
    client.quit().await?;
    if !deleted_uidls.is_empty() {
        store.pop3_mark_deleted(account, &deleted_uidls).await?;
    }
    report.deleted = deleted_uidls.len();
    tracing::info!(account = %account, listed = report.listed, retrieved = report.retrieved,
        deleted = report.deleted, "POP3 sync done");
    Ok(report)
}
