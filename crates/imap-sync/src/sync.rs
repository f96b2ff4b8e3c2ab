//! Brings one account's store in step with its IMAP server.
//!
//! Order of work, so the account is usable at once: the mailbox list; then for every
//! mailbox (INBOX first) flags, expunges and the headers of new messages, newest first;
//! then the bodies, newest first. Each batch is one store transaction; the mailbox's sync
//! state (`uidnext`, `highestmodseq`) only moves once everything below it is stored, so a
//! cut at any point resumes without refetching what is stored and without skipping.

use crate::error::{Error, Result};
use crate::mutf7;
use crate::response::{Fetch, ListEntry, StatusData};
use crate::session::Session;
use mail_types::{AccountId, ModSeq, Role, Uid, UidValidity};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use store::prelude::*;
use store::{
    FlagUpdate, GmailIds, LinkedCopy, MailboxChanges, MailboxRecord, NewBody, NewCopy,
    RemoteMailbox,
};
use tokio::task::JoinHandle;

/// Tunables of one sync run.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// UIDs per header FETCH command.
    pub header_chunk: usize,
    /// UIDs per body FETCH command.
    pub body_chunk: usize,
    /// FETCH commands kept in flight on the connection.
    pub pipeline_depth: usize,
    /// Messages per store transaction.
    pub batch: usize,
    /// Raw bytes per store transaction (bounds memory with large messages).
    pub batch_bytes: usize,
    /// Messages per store transaction of the body pass. Smaller than `batch`: a body the
    /// priority lane fetched for someone waits for the transaction running when it comes
    /// (`MailSync::apply_urgent_changes`), and a body transaction (index included) is the
    /// longest the writer is held during an initial sync.
    pub body_batch: usize,
    /// Fetch bodies after headers (false: headers only, e.g. for a quick first look).
    pub bodies: bool,
    /// The body pass fetches only messages received (INTERNALDATE) at or after this Unix
    /// time (`None`: all); older ones are fetched when someone asks for them.
    pub bodies_since: Option<i64>,
    /// The body pass stops where it would take the account past the background share of
    /// its daily download budget (`mail_types::budget`).
    pub budget: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            header_chunk: 500,
            body_chunk: 100,
            pipeline_depth: 3,
            batch: 250,
            batch_bytes: 16 * 1024 * 1024,
            body_batch: 50,
            bodies: true,
            bodies_since: None,
            budget: false,
        }
    }
}

/// What one run did, for logs and tests.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub mailboxes: usize,
    pub skipped_unchanged: usize,
    pub new_headers: usize,
    pub bodies: usize,
    pub flag_updates: usize,
    pub expunged: usize,
    pub resets: usize,
    /// The body pass stopped at the daily download budget; bodies are left for later.
    pub budget_reached: bool,
}

/// The account-level sync: holds the store handle and account id. It needs the sync's
/// roles of the store only (an `Arc` of the whole store upcasts to it).
pub struct AccountSync {
    pub store: Arc<dyn SyncStore>,
    pub account: AccountId,
    pub options: SyncOptions,
}

/// Role of a listed mailbox: INBOX by name (RFC 3501 5.1), else RFC 6154 attributes.
fn role_of(entry: &ListEntry) -> Option<Role> {
    if entry.raw_name.eq_ignore_ascii_case("INBOX") {
        return Some(Role::Inbox);
    }
    entry
        .attributes
        .iter()
        .find_map(|a| Role::from_special_use(a))
}

fn order_key(m: &MailboxRecord) -> (u8, String) {
    let rank = match m.role {
        Some(Role::Inbox) => 0,
        Some(Role::Sent) => 2,
        Some(Role::Drafts) => 3,
        Some(Role::Archive) => 4,
        None => 5,
        Some(Role::Trash) | Some(Role::Junk) => 6,
        _ => 7,
    };
    (rank, m.name.clone())
}

/// Compresses sorted UIDs into an IMAP sequence set: `1:5,7,9:12`.
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

impl AccountSync {
    pub fn new(store: Arc<dyn SyncStore>, account: AccountId) -> Self {
        AccountSync {
            store,
            account,
            options: SyncOptions::default(),
        }
    }

    /// One full pass: mailbox list, every mailbox's changes and new headers, then bodies.
    pub async fn sync_all(&self, s: &mut Session) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let statuses = self.sync_mailbox_list(s).await?;
        let mut mailboxes: Vec<MailboxRecord> = self
            .store
            .mailboxes(self.account)
            .await?
            .into_iter()
            .filter(|m| m.selectable)
            .collect();
        mailboxes.sort_by_key(order_key);
        if s.has("X-GM-EXT-1") {
            if self.gmail_mode(s).await? {
                // Gmail: All Mail holds every message but Trash and Spam, so it goes first
                // and the label folders then only link their UIDs to what it brought.
                mailboxes.sort_by_key(|m| m.role != Some(Role::All));
            } else {
                tracing::warn!(account = %self.account,
                    "the server advertises X-GM-EXT-1 but has no \\All mailbox; syncing folder by folder");
            }
        }
        report.mailboxes = mailboxes.len();
        for mb in &mailboxes {
            let status = statuses.get(&mb.raw_name);
            let r = self.sync_mailbox(s, mb, status, &mut report).await;
            skip_refused(self.account, mb, r)?;
        }
        if self.options.bodies {
            for mb in &mailboxes {
                let r = self.fetch_bodies(s, mb, &mut report).await;
                skip_refused(self.account, mb, r)?;
            }
        }
        self.store.collect_orphans(self.account).await?;
        self.sync_quota(s).await?;
        self.record_download(s).await?;
        Ok(report)
    }

    /// Adds what the session read since last asked to the account's bytes of the day.
    pub async fn record_download(&self, s: &mut Session) -> Result<()> {
        let n = s.take_bytes_read();
        if n == 0 {
            return Ok(());
        }
        let day = mail_types::budget::utc_day(unix_now());
        self.store.add_downloaded(self.account, day, n).await?;
        Ok(())
    }

    /// LIST, and the store's mailbox list brought in line. Returns LIST-STATUS data by name.
    pub async fn sync_mailbox_list(&self, s: &mut Session) -> Result<HashMap<String, StatusData>> {
        // Read before the LIST: a mailbox change of the user queued or confirmed while it
        // runs makes the store ignore this list (it may predate the change).
        let epoch = self.store.mailbox_epoch(self.account);
        let (entries, statuses, incomplete) = s.list().await?;
        let statuses: HashMap<String, StatusData> = statuses
            .into_iter()
            .map(|st| (st.raw_name.clone(), st))
            .collect();
        let remote: Vec<RemoteMailbox> = entries
            .iter()
            .map(|e| {
                let has = |a: &str| e.attributes.iter().any(|x| x.eq_ignore_ascii_case(a));
                RemoteMailbox {
                    raw_name: e.raw_name.clone(),
                    name: mutf7::decode(&e.raw_name),
                    delimiter: e.delimiter.clone(),
                    role: role_of(e),
                    subscribed: has("\\Subscribed") || e.raw_name.eq_ignore_ascii_case("INBOX"),
                    selectable: !has("\\Noselect") && !has("\\NonExistent"),
                    uidvalidity: statuses.get(&e.raw_name).and_then(|st| st.uidvalidity),
                }
            })
            .collect();
        let mut remote = remote;
        if s.has("X-GM-EXT-1") && remote.iter().any(|m| m.role == Some(Role::All)) {
            // Gmail's Starred folder is the \Flagged flag shown as a folder (its label
            // \Starred follows \Flagged both ways): as a mailbox it would list every
            // flagged message twice over. The `$flagged` keyword already says it.
            remote.retain(|m| m.role != Some(Role::Flagged));
        }
        let listed: HashSet<String> = remote.iter().map(|m| m.raw_name.clone()).collect();
        let unlisted: Vec<MailboxRecord> = self
            .store
            .mailboxes(self.account)
            .await?
            .into_iter()
            .filter(|m| !listed.contains(&m.raw_name))
            .collect();
        if incomplete {
            // A LIST line we could not read must not make its mailbox (and its mail) vanish
            // from the store: keep every stored mailbox the list did not mention.
            tracing::warn!(account = %self.account, "LIST had unparseable lines; keeping unlisted mailboxes");
            remote.extend(unlisted.into_iter().map(still_there));
        } else {
            // A mailbox the LIST left out is gone only if the server, asked for it by name,
            // says so too. Dovecot 2.3's mailbox list index can go stale in a long-lived
            // session that saw renames ("Corrupted mailbox list index" in its log): its LIST
            // then omits a mailbox created a moment ago, and believing it would destroy the
            // user's new folder here (and give it a new id when it comes back).
            for m in unlisted {
                if m.selectable && s.mailbox_opens(&m.raw_name).await? {
                    tracing::info!(account = %self.account, mailbox = %m.name,
                        "LIST left out a mailbox the server still opens; kept");
                    remote.push(still_there(m));
                }
            }
        }
        self.store
            .apply_mailbox_list_at(self.account, &remote, epoch)
            .await?;
        Ok(statuses)
    }

    /// Finds a mailbox record by wire name (after a list sync).
    pub async fn mailbox_by_raw_name(&self, raw: &str) -> Result<Option<MailboxRecord>> {
        Ok(self.store.mailbox_by_raw_name(self.account, raw).await?)
    }

    /// Flags, expunges and new headers of one mailbox. `status` (from LIST-STATUS or a
    /// NOTIFY event) lets an unchanged mailbox be skipped without selecting it.
    ///
    /// Work is proportional to the change when the server has QRESYNC (VANISHED and the
    /// changed flags come with EXAMINE) or CONDSTORE (CHANGEDSINCE; expunges are seen in
    /// the message count): only UIDs above the stored `uidnext` are searched. Without
    /// CONDSTORE every flag is fetched, which also shows every expunge. Whatever the path,
    /// a stored count that disagrees with the server's at the end triggers a full diff, so
    /// a store that went wrong heals itself.
    pub async fn sync_mailbox(
        &self,
        s: &mut Session,
        mb: &MailboxRecord,
        status: Option<&StatusData>,
        report: &mut SyncReport,
    ) -> Result<()> {
        if let Some(st) = status {
            let unchanged = st.uidvalidity == Some(mb.uidvalidity.0)
                && st.uidnext == Some(mb.uidnext.0)
                && st.messages == Some(mb.progress.headers)
                && mb.highestmodseq.0 != 0
                && st.highestmodseq == Some(mb.highestmodseq.0);
            if unchanged {
                report.skipped_unchanged += 1;
                return Ok(());
            }
        }
        let span = tracing::debug_span!("mailbox", account = %self.account, mailbox = %mb.name);
        let _enter = span.enter();
        let gmail = self.gmail_mode(s).await?;

        s.unsolicited.clear();
        let known = (mb.uidvalidity.0 != 0).then_some((mb.uidvalidity.0, mb.highestmodseq.0));
        let sel = s.examine(&mb.raw_name, known).await?;
        let mut mb = mb.clone();
        if mb.uidvalidity.0 != 0 && sel.uidvalidity != mb.uidvalidity.0 {
            tracing::info!(account = %self.account, mailbox = %mb.name,
                old = mb.uidvalidity.0, new = sel.uidvalidity, "UIDVALIDITY changed; resetting mailbox");
            self.store
                .reset_mailbox(mb.id, UidValidity(sel.uidvalidity))
                .await?;
            report.resets += 1;
            mb.uidvalidity = UidValidity(sel.uidvalidity);
            mb.uidnext = Uid(1);
            mb.highestmodseq = ModSeq(0);
            mb.progress.headers = 0;
        }
        // Every batch of this pass is for the epoch the server just reported (a mailbox
        // never selected before learns it with the first batch).
        mb.uidvalidity = UidValidity(sel.uidvalidity);
        let mut changes = MailboxChanges {
            server_total: Some(sel.exists),
            ..MailboxChanges::new(mb.uidvalidity)
        };
        let last_known = mb.uidnext.0.saturating_sub(1);
        let used_qresync = s.qresync()
            && known.is_some_and(|(v, m)| v == sel.uidvalidity && m != 0)
            && sel.highestmodseq.is_some();
        let used_changedsince = !used_qresync
            && s.condstore()
            && mb.highestmodseq.0 != 0
            && sel.highestmodseq.is_some();

        // 1. Flags and expunges of the messages below uidnext.
        let mut expunges_known = used_qresync;
        if used_qresync {
            // RFC 7162 3.2.5.2: VANISHED (EARLIER) may name UIDs we never had; the store
            // ignores those. The bound keeps a lying server from making us loop forever.
            for range in &sel.vanished {
                changes
                    .expunged
                    .extend(range.clone().take(1_000_000).map(Uid));
            }
            for f in &sel.changed {
                push_flags(&mut changes, f, None);
            }
        } else if used_changedsince && last_known > 0 {
            let cmd = format!(
                "UID FETCH 1:{last_known} (UID FLAGS) (CHANGEDSINCE {})",
                mb.highestmodseq.0
            );
            let mut stream = s.fetch_stream(vec![cmd], 1);
            while let Some(f) = stream.next().await? {
                push_flags(&mut changes, &f, None);
            }
        } else if last_known > 0 {
            // No CONDSTORE: every flag, and whatever is not listed was expunged.
            let stored = self.store.mailbox_copies(mb.id).await?;
            let stored_flags: HashMap<u32, &Vec<String>> =
                stored.iter().map(|c| (c.uid.0, &c.flags)).collect();
            let mut seen: HashSet<u32> = HashSet::with_capacity(stored.len());
            let cmd = format!("UID FETCH 1:{last_known} (UID FLAGS)");
            let mut stream = s.fetch_stream(vec![cmd], 1);
            while let Some(f) = stream.next().await? {
                if let Some(uid) = f.uid {
                    seen.insert(uid);
                }
                push_flags(&mut changes, &f, Some(&stored_flags));
            }
            changes.expunged.extend(
                stored
                    .iter()
                    // Write-back: a copy the outbox stored meanwhile (a MOVE's new UID) is
                    // above what was fetched, not expunged.
                    .filter(|c| !seen.contains(&c.uid.0) && c.uid.0 <= last_known)
                    .map(|c| c.uid),
            );
            expunges_known = true;
        } else {
            expunges_known = true; // nothing stored yet
        }

        // 2. New messages: the UIDs at or above uidnext that are not stored yet.
        let new_uids = if last_known > 0 {
            s.uid_search(&format!("UID {}:*", mb.uidnext.0)).await?
        } else {
            s.uid_search("ALL").await?
        };
        // RFC 3501 6.4.8: "n:*" always includes the highest UID, even below n.
        let new_uids: Vec<u32> = new_uids
            .into_iter()
            .filter(|u| *u >= mb.uidnext.0 || last_known == 0)
            .collect();
        let missing = self.not_stored(&mb, &new_uids).await?;

        // A UID at or above the UIDNEXT of the EXAMINE may have been given after the UID list
        // was taken (write-back stores the UIDs of its MOVEs and APPENDs beside the sync): it
        // is not known to be expunged. A real one is caught by the next pass's count check.
        let listed_below = sel.uidnext.unwrap_or(u32::MAX);
        // 3. CONDSTORE without QRESYNC: an expunge shows as a count that does not add up.
        if !expunges_known {
            let expected = i64::from(mb.progress.headers) + missing.len() as i64;
            if i64::from(sel.exists) != expected {
                let all: HashSet<u32> = s.uid_search("ALL").await?.into_iter().collect();
                let stored = self.store.mailbox_copies(mb.id).await?;
                changes.expunged.extend(
                    stored
                        .iter()
                        .filter(|c| !all.contains(&c.uid.0) && c.uid.0 < listed_below)
                        .map(|c| c.uid),
                );
            }
        }
        report.flag_updates += changes.flags.len();
        report.expunged += changes.expunged.len();

        let final_uidnext = sel
            .uidnext
            .unwrap_or(0)
            .max(new_uids.iter().max().map(|u| u + 1).unwrap_or(1))
            .max(mb.uidnext.0);
        let highestmodseq = sel.highestmodseq.map(ModSeq);
        self.store
            .apply_mailbox_changes(self.account, mb.id, changes)
            .await?;
        report.new_headers += self.fetch_new(s, &mb, &missing, gmail).await?;
        // Expunges the server reported with the commands of this pass (RFC 7162 3.2.10:
        // VANISHED may come with any UID command; RFC 3501 7.4.1: EXPUNGE with any but
        // FETCH, STORE and SEARCH) are stored before the sync state moves: the mod-sequence
        // stored below must never stand for a state that still holds an expunged message.
        let during = PassEvents::of(&s.unsolicited, sel.exists);
        if !during.vanished.is_empty() {
            report.expunged += during.vanished.len();
            self.store
                .apply_mailbox_changes(
                    self.account,
                    mb.id,
                    MailboxChanges {
                        expunged: during.vanished.clone(),
                        ..MailboxChanges::new(mb.uidvalidity)
                    },
                )
                .await?;
        }
        // Everything below uidnext is now stored: the sync state may move.
        self.store
            .apply_mailbox_changes(
                self.account,
                mb.id,
                MailboxChanges {
                    uidnext: Some(Uid(final_uidnext)),
                    highestmodseq,
                    ..MailboxChanges::new(mb.uidvalidity)
                },
            )
            .await?;

        // 4. The check that heals: the stored count must equal the server's.
        let exists_now = during.exists;
        let stored_now = self
            .store
            .mailbox_by_raw_name(self.account, &mb.raw_name)
            .await?
            .map(|m| m.progress.headers)
            .unwrap_or(0);
        if stored_now != exists_now || during.sequence_expunges {
            // A sequence-number EXPUNGE names no UID: only a full diff tells which it was.
            tracing::warn!(account = %self.account, mailbox = %mb.name, stored = stored_now,
                server = exists_now, expunge_seen = during.sequence_expunges,
                "stored state may differ from the server; running a full diff");
            self.full_diff(s, &mb, listed_below, gmail, report).await?;
        }
        s.unsolicited.clear();
        Ok(())
    }

    /// Of `uids`, those without a stored copy.
    async fn not_stored(&self, mb: &MailboxRecord, uids: &[u32]) -> Result<Vec<u32>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let as_uids: Vec<Uid> = uids.iter().copied().map(Uid).collect();
        let stored: HashSet<u32> = self
            .store
            .stored_uids(mb.id, &as_uids)
            .await?
            .into_iter()
            .map(|u| u.0)
            .collect();
        Ok(uids
            .iter()
            .copied()
            .filter(|u| !stored.contains(u))
            .collect())
    }

    /// Every UID on the server against every stored copy: expunge what the server lacks,
    /// fetch what the store lacks. O(mailbox); only run when the counts disagree.
    async fn full_diff(
        &self,
        s: &mut Session,
        mb: &MailboxRecord,
        listed_below: u32,
        gmail: bool,
        report: &mut SyncReport,
    ) -> Result<()> {
        let server: Vec<u32> = s.uid_search("ALL").await?;
        let server_set: HashSet<u32> = server.iter().copied().collect();
        let stored = self.store.mailbox_copies(mb.id).await?;
        let stored_set: HashSet<u32> = stored.iter().map(|c| c.uid.0).collect();
        let expunged: Vec<Uid> = stored
            .iter()
            .filter(|c| !server_set.contains(&c.uid.0) && c.uid.0 < listed_below)
            .map(|c| c.uid)
            .collect();
        report.expunged += expunged.len();
        self.store
            .apply_mailbox_changes(
                self.account,
                mb.id,
                MailboxChanges {
                    expunged,
                    ..MailboxChanges::new(mb.uidvalidity)
                },
            )
            .await?;
        let missing: Vec<u32> = server
            .into_iter()
            .filter(|u| !stored_set.contains(u))
            .collect();
        report.new_headers += self.fetch_new(s, mb, &missing, gmail).await?;
        Ok(())
    }

    /// Whether this account is synced the Gmail way: the server has X-GM-EXT-1 and a
    /// mailbox with SPECIAL-USE `\All` (Gmail names it per locale, so never by name). A
    /// server that advertises the extension without one is synced folder by folder.
    async fn gmail_mode(&self, s: &Session) -> Result<bool> {
        if !s.has("X-GM-EXT-1") {
            return Ok(false);
        }
        Ok(self
            .store
            .mailboxes(self.account)
            .await?
            .iter()
            .any(|m| m.role == Some(Role::All) && m.selectable))
    }

    /// Stores the new messages `missing` of a mailbox. The Gmail way, each UID's
    /// X-GM-MSGID is fetched first (no header, no body) and a message already stored
    /// through another folder is linked, not fetched again: a message with three labels
    /// crosses the wire once, however many folders show it. The rest is fetched whole.
    async fn fetch_new(
        &self,
        s: &mut Session,
        mb: &MailboxRecord,
        missing: &[u32],
        gmail: bool,
    ) -> Result<usize> {
        if missing.is_empty() {
            return Ok(0);
        }
        if !gmail {
            return self.fetch_headers(s, mb, missing, false).await;
        }
        let rest = self.link_known(s, mb, missing).await?;
        let linked = missing.len() - rest.len();
        Ok(linked + self.fetch_headers(s, mb, &rest, true).await?)
    }

    /// Gmail: `UID FETCH (UID FLAGS X-GM-MSGID)` of `missing`, and the copies whose
    /// X-GM-MSGID has a stored Email linked to it. Returns the UIDs not linked: a message
    /// not stored yet, or an answer without a readable X-GM-MSGID (a server that lies
    /// about X-GM-EXT-1 gets its messages fetched the ordinary way).
    async fn link_known(
        &self,
        s: &mut Session,
        mb: &MailboxRecord,
        missing: &[u32],
    ) -> Result<Vec<u32>> {
        let mut items = String::from("UID FLAGS X-GM-MSGID");
        if s.condstore() {
            items.push_str(" MODSEQ");
        }
        let commands: Vec<String> = missing
            .chunks(self.options.header_chunk.max(1))
            .map(|chunk| format!("UID FETCH {} ({items})", uid_set(chunk)))
            .collect();
        let wanted: HashSet<u32> = missing.iter().copied().collect();
        let mut found: HashMap<u32, LinkedCopy> = HashMap::new();
        let mut stream = s.fetch_stream(commands, self.options.pipeline_depth);
        while let Some(f) = stream.next().await? {
            let (Some(uid), Some(msgid)) = (f.uid, f.gm_msgid) else {
                continue;
            };
            if wanted.contains(&uid) {
                found.insert(
                    uid,
                    LinkedCopy {
                        uid: Uid(uid),
                        flags: f.flags.clone().unwrap_or_default(),
                        modseq: ModSeq(f.modseq.unwrap_or(0)),
                        msgid,
                    },
                );
            }
        }
        let msgids: Vec<u64> = found.values().map(|l| l.msgid).collect();
        let known: HashSet<u64> = self
            .store
            .gmail_known(self.account, &msgids)
            .await?
            .into_iter()
            .collect();
        let mut links: Vec<LinkedCopy> = found
            .into_values()
            .filter(|l| known.contains(&l.msgid))
            .collect();
        links.sort_unstable_by_key(|l| std::cmp::Reverse(l.uid.0));
        let linked: HashSet<u32> = links.iter().map(|l| l.uid.0).collect();
        for batch in links.chunks(self.options.batch.max(1)) {
            self.store
                .apply_mailbox_changes(
                    self.account,
                    mb.id,
                    MailboxChanges {
                        links: batch.to_vec(),
                        ..MailboxChanges::new(mb.uidvalidity)
                    },
                )
                .await?;
        }
        Ok(missing
            .iter()
            .copied()
            .filter(|u| !linked.contains(u))
            .collect())
    }

    /// FETCHes the headers of `missing` UIDs, newest first, pipelined; stores in batches
    /// while the next ones stream in. Returns how many were stored. With `gmail`, each
    /// message's X-GM-MSGID and X-GM-THRID come along; the UIDs whose answer could not be
    /// read then (a server lying about X-GM-EXT-1, e.g. a non-numeric X-GM-MSGID) are
    /// fetched once more without them, so no message is lost to a bad Gmail attribute.
    async fn fetch_headers(
        &self,
        s: &mut Session,
        mb: &MailboxRecord,
        missing: &[u32],
        gmail: bool,
    ) -> Result<usize> {
        if missing.is_empty() {
            return Ok(0);
        }
        let (count, unseen) = self.fetch_headers_once(s, mb, missing, gmail).await?;
        if !gmail || unseen.is_empty() {
            return Ok(count);
        }
        tracing::warn!(account = %self.account, mailbox = %mb.name, messages = unseen.len(),
            "answers with Gmail attributes could not be read; fetching these without them");
        let (more, _) = self.fetch_headers_once(s, mb, &unseen, false).await?;
        Ok(count + more)
    }

    /// One round of [`Self::fetch_headers`]: returns how many were stored and the UIDs of
    /// `missing` the server's answers did not name.
    async fn fetch_headers_once(
        &self,
        s: &mut Session,
        mb: &MailboxRecord,
        missing: &[u32],
        gmail: bool,
    ) -> Result<(usize, Vec<u32>)> {
        let mut newest_first = missing.to_vec();
        newest_first.sort_unstable_by(|a, b| b.cmp(a));
        let items = header_items(s, gmail);
        let commands: Vec<String> = newest_first
            .chunks(self.options.header_chunk.max(1))
            .map(|chunk| format!("UID FETCH {} ({items})", uid_set(chunk)))
            .collect();
        let wanted: HashSet<u32> = missing.iter().copied().collect();
        let mut writer = BatchWriter::new(self.store.clone(), self.account, mb.id, mb.uidvalidity);
        let mut count = 0usize;
        let mut seen: HashSet<u32> = HashSet::with_capacity(missing.len());
        let streamed = async {
            let mut batch: Vec<Fetch> = Vec::new();
            let mut bytes = 0usize;
            let mut stream = s.fetch_stream(commands, self.options.pipeline_depth);
            while let Some(f) = stream.next().await? {
                let Some(uid) = f.uid else { continue };
                if !wanted.contains(&uid) {
                    continue;
                }
                seen.insert(uid);
                bytes += f.header.as_ref().map_or(0, |h| h.len());
                batch.push(*f);
                if batch.len() >= self.options.batch || bytes >= self.options.batch_bytes {
                    count += batch.len();
                    writer.submit_headers(std::mem::take(&mut batch)).await?;
                    bytes = 0;
                }
            }
            count += batch.len();
            writer.submit_headers(batch).await
        }
        .await;
        // Whatever happened to the connection, the batch already handed over is committed
        // (or failed) before we return: no write outlives the sync that started it.
        let finished = writer.finish().await;
        streamed?;
        finished?;
        let unseen = missing
            .iter()
            .copied()
            .filter(|u| !seen.contains(u))
            .collect();
        Ok((count, unseen))
    }

    /// FETCHes the bodies still missing in a mailbox, newest first.
    pub async fn fetch_bodies(
        &self,
        s: &mut Session,
        mb: &MailboxRecord,
        report: &mut SyncReport,
    ) -> Result<()> {
        let missing = self
            .store
            .missing_bodies_since(mb.id, self.options.bodies_since, usize::MAX >> 1)
            .await?;
        if missing.is_empty() {
            return Ok(());
        }
        let mut left = None;
        if self.options.budget {
            self.record_download(s).await?;
            let day = mail_types::budget::utc_day(unix_now());
            left = self
                .store
                .download_budget(self.account, day)
                .await?
                .background_left();
        }
        // Newest first, as long as their sizes (RFC822.SIZE) fit in what the budget
        // leaves; sizes decide before the FETCH, so the pass never stops mid-stream.
        let mut uids: Vec<u32> = Vec::with_capacity(missing.len());
        for (uid, size) in &missing {
            if let Some(l) = left.as_mut() {
                if *size > *l {
                    report.budget_reached = true;
                    break;
                }
                *l -= size;
            }
            uids.push(uid.0);
        }
        if report.budget_reached {
            let day = mail_types::budget::utc_day(unix_now());
            self.store.set_background_stopped(self.account, day).await?;
        }
        if uids.is_empty() {
            return Ok(());
        }
        let sel = s.examine(&mb.raw_name, None).await?;
        let commands: Vec<String> = uids
            .chunks(self.options.body_chunk.max(1))
            .map(|chunk| format!("UID FETCH {} (UID BODY.PEEK[])", uid_set(chunk)))
            .collect();
        // The UIDs are the store's, the bodies the server's: the store takes them only if
        // both are of one epoch.
        let mut writer = BatchWriter::new(
            self.store.clone(),
            self.account,
            mb.id,
            UidValidity(sel.uidvalidity),
        );
        let streamed = async {
            let mut batch: Vec<Fetch> = Vec::new();
            let mut bytes = 0usize;
            let mut stream = s.fetch_stream(commands, self.options.pipeline_depth);
            while let Some(f) = stream.next().await? {
                let Some(body) = &f.body else { continue };
                bytes += body.len();
                batch.push(*f);
                if batch.len() >= self.options.body_batch.max(1)
                    || bytes >= self.options.batch_bytes / 4
                {
                    report.bodies += batch.len();
                    writer.submit_bodies(std::mem::take(&mut batch)).await?;
                    bytes = 0;
                }
            }
            report.bodies += batch.len();
            writer.submit_bodies(batch).await
        }
        .await;
        let finished = writer.finish().await;
        streamed?;
        finished?;
        self.record_download(s).await
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl AccountSync {
    /// Fetches and stores these messages of one mailbox now: the priority lane's fetch, on
    /// a connection of its own, stored through the same body path as `fetch_bodies`.
    /// Returns the UIDs stored; a UID missing from it is not on the server any more. `None`
    /// when the mailbox cannot be opened or is not the epoch `uidvalidity` names.
    pub async fn fetch_bodies_now(
        &self,
        s: &mut Session,
        mailbox: &store::BodySource,
        uids: &[Uid],
    ) -> Result<Option<Vec<Uid>>> {
        let sel = match s.examine(&mailbox.raw_name, None).await {
            Ok(sel) => sel,
            Err(Error::Refused { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if sel.uidvalidity != mailbox.uidvalidity.0 {
            // RFC 3501 2.3.1.1: the UIDs we hold name nothing now; the sync resets.
            return Ok(None);
        }
        let wanted: HashSet<u32> = uids.iter().map(|u| u.0).collect();
        let raw: Vec<u32> = wanted.iter().copied().collect();
        let commands: Vec<String> = raw
            .chunks(self.options.body_chunk.max(1))
            .map(|chunk| format!("UID FETCH {} (UID BODY.PEEK[])", uid_set(chunk)))
            .collect();
        let mut stored = Vec::new();
        let mut batch: Vec<(Uid, bytes::Bytes)> = Vec::new();
        let mut bytes = 0usize;
        let mut stream = s.fetch_stream(commands, self.options.pipeline_depth);
        // RFC 3501 6.4.8: a UID FETCH of an expunged UID answers OK and nothing else.
        while let Some(f) = stream.next().await? {
            let (Some(uid), Some(body)) = (f.uid, f.body) else {
                continue;
            };
            if !wanted.contains(&uid) {
                continue;
            }
            bytes += body.len();
            batch.push((Uid(uid), body));
            if bytes >= self.options.batch_bytes {
                stored.extend(self.store_now(mailbox, std::mem::take(&mut batch)).await?);
                bytes = 0;
            }
        }
        stored.extend(self.store_now(mailbox, batch).await?);
        Ok(Some(stored))
    }

    async fn store_now(
        &self,
        mailbox: &store::BodySource,
        batch: Vec<(Uid, bytes::Bytes)>,
    ) -> Result<Vec<Uid>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let uids: Vec<Uid> = batch.iter().map(|(u, _)| *u).collect();
        let bodies = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|(uid, raw)| {
                    let parsed = mime::parse(&raw);
                    NewBody { uid, raw, parsed }
                })
                .collect()
        })
        .await
        .map_err(|e| Error::Protocol(format!("parse task: {e}")))?;
        // The store refuses the bodies if the mailbox was reset to another epoch.
        let changes = MailboxChanges {
            bodies,
            ..MailboxChanges::new(mailbox.uidvalidity)
        };
        log_problems(self.account, mailbox.mailbox, &changes);
        // Someone is waiting: ahead of the background batches queued for the writer.
        self.store
            .apply_urgent_changes(self.account, mailbox.mailbox, changes)
            .await?;
        Ok(uids)
    }
}

/// What the untagged responses that came with a pass's commands say about the selected
/// mailbox: its message count at the end, the UIDs it lost, and whether some were lost by
/// sequence number only.
#[derive(Debug, Default)]
struct PassEvents {
    exists: u32,
    vanished: Vec<Uid>,
    sequence_expunges: bool,
}

impl PassEvents {
    fn of(responses: &[crate::response::Response], exists_at_select: u32) -> PassEvents {
        use crate::response::Response;
        let mut ev = PassEvents {
            exists: exists_at_select,
            ..PassEvents::default()
        };
        for r in responses {
            match r {
                Response::Exists(n) => ev.exists = *n,
                Response::Expunge(_) => {
                    // RFC 3501 7.4.1: each EXPUNGE lowers the count by one.
                    ev.exists = ev.exists.saturating_sub(1);
                    ev.sequence_expunges = true;
                }
                Response::Vanished { earlier, uids } => {
                    // Bounded: a lying server's "1:4294967295" must not exhaust memory.
                    for range in uids {
                        let room = 1_000_000usize.saturating_sub(ev.vanished.len());
                        let before = ev.vanished.len();
                        ev.vanished.extend(range.clone().take(room).map(Uid));
                        // RFC 7162 3.2.10: VANISHED without EARLIER lowers the count like
                        // EXPUNGE does, once per UID.
                        if !earlier {
                            let n = u32::try_from(ev.vanished.len() - before).unwrap_or(u32::MAX);
                            ev.exists = ev.exists.saturating_sub(n);
                        }
                    }
                }
                _ => {}
            }
        }
        ev
    }
}

/// A stored mailbox kept as the server still has it, for a LIST that did not say so.
fn still_there(m: MailboxRecord) -> RemoteMailbox {
    RemoteMailbox {
        raw_name: m.raw_name,
        name: m.name,
        delimiter: m.delimiter,
        role: m.role,
        subscribed: m.subscribed,
        selectable: m.selectable,
        uidvalidity: (m.uidvalidity.0 != 0).then_some(m.uidvalidity.0),
    }
}

/// A mailbox the server refuses to open (deleted a moment ago, or not selectable after
/// all) must not stop the other mailboxes; the next LIST settles what it is.
fn skip_refused(account: AccountId, mb: &MailboxRecord, r: Result<()>) -> Result<()> {
    match r {
        Err(Error::Refused { command, text }) => {
            tracing::warn!(account = %account, mailbox = %mb.name, %command, reason = %crate::response::server_words(&text),
                "the server refused a mailbox; skipping it this pass");
            Ok(())
        }
        other => other,
    }
}

fn header_items(s: &Session, gmail: bool) -> String {
    let mut items = String::from("UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER]");
    if s.condstore() {
        items.push_str(" MODSEQ");
    }
    if s.has("OBJECTID") {
        items.push_str(" EMAILID");
    }
    if gmail {
        items.push_str(" X-GM-MSGID X-GM-THRID");
    }
    items
}

/// Queues the flags of a FETCH as an update. With `stored`, only those that differ (the
/// store skips identical ones anyway; this saves the statements).
fn push_flags(
    changes: &mut MailboxChanges,
    f: &Fetch,
    stored: Option<&HashMap<u32, &Vec<String>>>,
) {
    let (Some(uid), Some(flags)) = (f.uid, f.flags.as_ref()) else {
        return;
    };
    let mut new_sorted: Vec<String> = flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .cloned()
        .collect();
    new_sorted.sort_unstable();
    new_sorted.dedup();
    if let Some(stored) = stored {
        match stored.get(&uid) {
            Some(old) if **old == new_sorted => return,
            None => return, // not stored: it is fetched whole as a new message
            Some(_) => {}
        }
    }
    changes.flags.push(FlagUpdate {
        uid: Uid(uid),
        flags: new_sorted,
        modseq: ModSeq(f.modseq.unwrap_or(0)),
    });
}

/// Malformed messages are stored with what could be parsed; this says so in the log, with
/// the account, mailbox and UID (the problem texts are fixed descriptions, never content).
fn log_problems(account: AccountId, mailbox: mail_types::MailboxId, changes: &MailboxChanges) {
    // Only whole-message parses: a header's problems show again when its body arrives.
    let parsed = changes
        .new
        .iter()
        .filter(|n| n.raw.is_some())
        .map(|n| (n.uid, &n.parsed))
        .chain(changes.bodies.iter().map(|b| (b.uid, &b.parsed)));
    for (uid, p) in parsed {
        if !p.problems.is_empty() {
            tracing::warn!(account = %account, mailbox = %mailbox, uid = uid.0,
                problems = %p.problems.join("; "), "stored a malformed message as far as it parses");
        }
    }
}

/// Parses batches off the I/O task and writes them to the store while the connection keeps
/// streaming. Two batches at most are in flight (one parsing while the other commits):
/// enough to use both halves of the work, and it bounds the memory held.
/// Batches of one phase touch disjoint UIDs, so their commit order does not matter.
struct BatchWriter {
    store: Arc<dyn MailSync>,
    account: AccountId,
    mailbox: mail_types::MailboxId,
    /// The epoch of every UID the writer stores.
    uidvalidity: UidValidity,
    slots: Arc<tokio::sync::Semaphore>,
    tasks: Vec<JoinHandle<Result<()>>>,
}

const BATCHES_IN_FLIGHT: usize = 2;

impl BatchWriter {
    fn new(
        store: Arc<dyn MailSync>,
        account: AccountId,
        mailbox: mail_types::MailboxId,
        uidvalidity: UidValidity,
    ) -> Self {
        BatchWriter {
            store,
            account,
            mailbox,
            uidvalidity,
            slots: Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT)),
            tasks: Vec::new(),
        }
    }

    async fn submit<F>(&mut self, parse: F) -> Result<()>
    where
        F: FnOnce() -> MailboxChanges + Send + 'static,
    {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Protocol(format!("batch slots: {e}")))?;
        // Surface a failed batch early instead of streaming on for nothing.
        let mut i = 0;
        while i < self.tasks.len() {
            if self.tasks[i].is_finished() {
                let t = self.tasks.swap_remove(i);
                t.await
                    .map_err(|e| Error::Protocol(format!("store task: {e}")))??;
            } else {
                i += 1;
            }
        }
        let (store, account, mailbox) = (self.store.clone(), self.account, self.mailbox);
        self.tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let changes = tokio::task::spawn_blocking(parse)
                .await
                .map_err(|e| Error::Protocol(format!("parse task: {e}")))?;
            log_problems(account, mailbox, &changes);
            store
                .apply_mailbox_changes(account, mailbox, changes)
                .await?;
            Ok(())
        }));
        Ok(())
    }

    async fn submit_headers(&mut self, batch: Vec<Fetch>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let uidvalidity = self.uidvalidity;
        self.submit(move || {
            let gmail = batch
                .iter()
                .filter_map(|f| {
                    let ids = GmailIds {
                        msgid: f.gm_msgid?,
                        thrid: f.gm_thrid,
                    };
                    Some((Uid(f.uid?), ids))
                })
                .collect();
            let new = batch
                .into_iter()
                .filter_map(|f| {
                    let uid = f.uid?;
                    let header = f.header.clone().unwrap_or_default();
                    Some(NewCopy {
                        uid: Uid(uid),
                        flags: f.flags.clone().unwrap_or_default(),
                        modseq: ModSeq(f.modseq.unwrap_or(0)),
                        internal_date: f.internal_date.unwrap_or(0),
                        size: f.size.unwrap_or(0),
                        server_email_id: f.email_id.clone(),
                        header_hash: mime::blob_id(&header),
                        parsed: mime::parse_header(&header),
                        raw: None,
                    })
                })
                .collect();
            MailboxChanges {
                new,
                gmail,
                ..MailboxChanges::new(uidvalidity)
            }
        })
        .await
    }

    async fn submit_bodies(&mut self, batch: Vec<Fetch>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let uidvalidity = self.uidvalidity;
        self.submit(move || {
            let bodies = batch
                .into_iter()
                .filter_map(|f| {
                    let uid = f.uid?;
                    let raw = f.body.clone()?;
                    let parsed = mime::parse(&raw);
                    Some(NewBody {
                        uid: Uid(uid),
                        raw,
                        parsed,
                    })
                })
                .collect();
            MailboxChanges {
                bodies,
                ..MailboxChanges::new(uidvalidity)
            }
        })
        .await
    }

    /// Waits for every batch; the first failure is returned.
    async fn finish(&mut self) -> Result<()> {
        let mut first = Ok(());
        for t in self.tasks.drain(..) {
            let r = t
                .await
                .map_err(|e| Error::Protocol(format!("store task: {e}")))
                .and_then(|r| r);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::uid_set;

    #[test]
    fn uid_sets_compress() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 7, 9, 10]), "1:3,5,7,9:10");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[u32::MAX]), "4294967295");
    }
}
