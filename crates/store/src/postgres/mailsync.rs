//! [`MailSync`] for PostgreSQL: sqlite/mailsync.rs and sqlite/write.rs's meaning, with a
//! batch of server changes written set by set (one statement over `unnest`ed arrays for
//! all its copies, all its Emails, all its change rows) instead of row by row: a round
//! trip to the server costs what a whole SQLite statement does, so an initial sync of
//! 10,000 messages would otherwise spend its time waiting on the network.
//!
//! A batch's lookups are `unnest($n)` with a scalar subquery per element (an index probe
//! each), not `col = ANY($n)`: on tables growing through an initial sync the planner gave
//! the `ANY` form plans that read whole tables, 40 ms of every 250-message batch at
//! 10,000 messages, against 2 ms this way.
//!
//! The write-back overlay (docs/design/writeback.md, "The sync and the outbox"), as
//! sqlite/write.rs keeps it: the pending flag changes of an Email are applied on top of
//! the flags the server reports for its copies, a copy the user removed (tombstoned) is
//! not brought back as new, and the mailbox list is left alone while a mailbox change of
//! the user is queued. Each batch asks once whether the account has anything pending and
//! then reads the pending entries of its own Emails with one statement.

use super::changelog::ChangeLog;
use super::*;
use crate::mailrows::{
    address_text, addresses_json, attachments_json, gmail_identity, join_flags, keywords_json,
    split_flags,
};
use crate::model::*;
use crate::outbox::PLACEHOLDER_UID_BASE;
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use mail_types::{AccountId, EmailId, MailboxId, ModSeq, Role, State, Uid, UidValidity};
use std::collections::{BTreeSet, HashMap, HashSet};

const MAILBOX_COLUMNS: &str = "m.id, m.account_id, m.raw_name, m.name, m.parent_id, \
    m.delimiter, m.role, m.subscribed, m.selectable, m.uidvalidity, m.uidnext, \
    m.highestmodseq, m.server_total, m.copies, m.bodies";

/// A UID, UIDVALIDITY or count stored as BIGINT, back to the 32 bits IMAP gives it.
pub(super) fn u32_of(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Corrupt(format!("{what} {v} out of range")))
}

fn mailbox_from_row(r: &tokio_postgres::Row) -> Result<MailboxRecord> {
    let role: Option<String> = r.get(6);
    Ok(MailboxRecord {
        id: MailboxId(r.get(0)),
        account: AccountId(r.get(1)),
        raw_name: super::outbox::api_raw_name(r.get(2)),
        name: r.get(3),
        parent: r.get::<_, Option<i64>>(4).map(MailboxId),
        delimiter: r.get(5),
        role: role.as_deref().and_then(Role::from_name),
        subscribed: r.get(7),
        selectable: r.get(8),
        uidvalidity: UidValidity(u32_of(r.get(9), "UIDVALIDITY")?),
        uidnext: Uid(u32_of(r.get(10), "UIDNEXT")?),
        highestmodseq: ModSeq(u64::try_from(r.get::<_, i64>(11)).unwrap_or(0)),
        progress: Progress {
            total: u32_of(r.get(12), "server total")?,
            headers: u32_of(r.get(13), "copies")?,
            bodies: u32_of(r.get(14), "bodies")?,
        },
    })
}

/// Takes the account's row lock for the rest of `tx`. Every write of MailSync takes it
/// first, before any mailbox or Email row: the change log's state bump takes it anyway,
/// and taking it in the same place everywhere keeps two nodes' writers of one account
/// (a list on one, a batch on the other) from each holding a row the other waits for.
pub(super) async fn lock_account(tx: &Transaction<'_>, account: AccountId) -> Result<()> {
    let st = tx
        .prepare_cached("SELECT 1 FROM account WHERE id = $1 FOR UPDATE")
        .await?;
    tx.query_opt(&st, &[&account.0])
        .await?
        .ok_or_else(|| Error::NotFound(format!("account {account}")))?;
    Ok(())
}

/// Recomputes the keywords of `emails` from their copies' flags; returns those that
/// changed. Two statements for the whole set.
pub(super) async fn refresh_keywords(tx: &Transaction<'_>, emails: &[i64]) -> Result<Vec<i64>> {
    if emails.is_empty() {
        return Ok(Vec::new());
    }
    let st = tx
        .prepare_cached("SELECT email_id, flags FROM copy WHERE email_id = ANY($1)")
        .await?;
    let mut flags: HashMap<i64, Vec<String>> = HashMap::new();
    for r in tx.query(&st, &[&emails]).await? {
        flags.entry(r.get(0)).or_default().push(r.get(1));
    }
    let kws: Vec<String> = emails
        .iter()
        .map(|e| keywords_json(flags.get(e).into_iter().flatten().map(String::as_str)))
        .collect();
    // set_keywords (keywords.sql) steps the unread counts too.
    let st = tx
        .prepare_cached("SELECT set_keywords($1::bigint[], $2::text[])")
        .await?;
    Ok(tx
        .query(&st, &[&emails, &kws])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Removes copies (all of a mailbox, or the given UIDs) and updates their Emails: keywords
/// recomputed, and an Email left with no copy is marked orphaned (destroyed later by
/// `collect_orphans` unless a move re-links it).
async fn detach_copies(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    mailbox: i64,
    uids: Option<&[i64]>,
) -> Result<usize> {
    let rows = match uids {
        None => {
            let st = tx
                .prepare_cached("DELETE FROM copy WHERE mailbox_id = $1 RETURNING email_id")
                .await?;
            tx.query(&st, &[&mailbox]).await?
        }
        Some(uids) => {
            let st = tx
                .prepare_cached(
                    "DELETE FROM copy WHERE mailbox_id = $1 AND uid = ANY($2) RETURNING email_id",
                )
                .await?;
            tx.query(&st, &[&mailbox, &uids]).await?
        }
    };
    let emails: Vec<i64> = rows
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if emails.is_empty() {
        return Ok(0);
    }
    refresh_keywords(tx, &emails).await?;
    let st = tx
        .prepare_cached(
            "UPDATE email SET orphaned = NOT EXISTS (SELECT 1 FROM copy WHERE email_id = email.id) \
             WHERE id = ANY($1)",
        )
        .await?;
    tx.execute(&st, &[&emails]).await?;
    log.record_many(tx, ObjectType::Email, &emails, ChangeOp::Updated)
        .await?;
    log.record(tx, ObjectType::Mailbox, mailbox, ChangeOp::Updated)
        .await?;
    Ok(emails.len())
}

/// Stores raw messages (hex sha256 → bytes), each once. DO UPDATE, not DO NOTHING: the
/// upsert locks an existing row to the commit, so a blob collection running beside it
/// waits and then sees the Email that references it (`forget_unreferenced`).
pub(super) async fn put_blobs(tx: &Transaction<'_>, blobs: &[(String, &[u8])]) -> Result<()> {
    let mut seen = HashSet::new();
    let (mut ids, mut sizes, mut data) = (Vec::new(), Vec::new(), Vec::new());
    for (id, raw) in blobs {
        if seen.insert(id.as_str()) {
            ids.push(id.as_str());
            sizes.push(i64::try_from(raw.len()).unwrap_or(i64::MAX));
            data.push(*raw);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let st = tx
        .prepare_cached(
            "INSERT INTO blob (id, size, data) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[]) \
             ON CONFLICT (id) DO UPDATE SET size = excluded.size",
        )
        .await?;
    tx.execute(&st, &[&ids, &sizes, &data]).await?;
    Ok(())
}

/// The metadata columns of a set of Emails, one array per column, for one statement.
#[derive(Default)]
struct Metadata {
    sent_at: Vec<Option<i64>>,
    sent_offset: Vec<i64>,
    message_id: Vec<Option<String>>,
    in_reply_to: Vec<String>,
    refs: Vec<String>,
    subject: Vec<Option<String>>,
    from: Vec<String>,
    sender: Vec<String>,
    reply_to: Vec<String>,
    to: Vec<String>,
    cc: Vec<String>,
    bcc: Vec<String>,
    preview: Vec<String>,
    has_attachment: Vec<bool>,
    attachments: Vec<String>,
    problems: Vec<String>,
}

impl Metadata {
    /// The column arrays as statement parameters, in `META_COLUMNS`' order.
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 16] {
        [
            &self.sent_at,
            &self.sent_offset,
            &self.message_id,
            &self.in_reply_to,
            &self.refs,
            &self.subject,
            &self.from,
            &self.sender,
            &self.reply_to,
            &self.to,
            &self.cc,
            &self.bcc,
            &self.preview,
            &self.has_attachment,
            &self.attachments,
            &self.problems,
        ]
    }

    fn push(&mut self, p: &ParsedMessage) {
        let j = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        self.sent_at.push(p.sent_at);
        self.sent_offset.push(i64::from(p.sent_offset));
        self.message_id.push(p.message_id.clone());
        self.in_reply_to.push(j(&p.in_reply_to));
        self.refs.push(j(&p.references));
        self.subject.push(p.subject.clone());
        self.from.push(addresses_json(&p.from));
        self.sender.push(addresses_json(&p.sender));
        self.reply_to.push(addresses_json(&p.reply_to));
        self.to.push(addresses_json(&p.to));
        self.cc.push(addresses_json(&p.cc));
        self.bcc.push(addresses_json(&p.bcc));
        self.preview.push(p.preview.clone());
        self.has_attachment.push(p.has_attachment);
        self.attachments.push(attachments_json(&p.attachments));
        self.problems.push(j(&p.problems));
    }
}

/// Where the metadata arrays go in [`INSERT_EMAILS`] and [`STORE_BODIES`]: parameters
/// `$n..$n+15`, as `unnest` columns named like the table's.
const META_COLUMNS: &str = "sent_at, sent_offset, message_id, in_reply_to, refs, subject, \
    addr_from, addr_sender, addr_reply_to, addr_to, addr_cc, addr_bcc, preview, \
    has_attachment, attachments, problems";
const META_TYPES: [&str; 16] = [
    "bigint", "bigint", "text", "text", "text", "text", "text", "text", "text", "text", "text",
    "text", "text", "boolean", "text", "text",
];

/// `unnest($first::type[], ...)` over the metadata arrays.
fn meta_unnest(first: usize) -> String {
    META_TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A thread while a batch is placed: one stored, or one this batch makes (numbered from
/// [`NEW_THREAD`] in order of creation, so the smallest of a set is still the oldest).
const NEW_THREAD: i64 = 1 << 62;

/// What a batch's threading works on: the stored links of its messages' keys, with
/// what it adds, and the threads it makes.
struct Threading {
    refs: HashMap<String, i64>,
    subjects: HashMap<String, i64>,
    gmail: HashMap<i64, i64>,
    dirty_refs: HashSet<String>,
    dirty_subjects: HashSet<String>,
    made: Vec<i64>,
    updated: BTreeSet<i64>,
}

impl Threading {
    fn new_thread(&mut self) -> i64 {
        let t = NEW_THREAD + self.made.len() as i64;
        self.made.push(t);
        t
    }

    /// Merges thread `from` into `into` (sqlite/write.rs's `merge_thread`): stored rows
    /// by statement, the batch's own in memory.
    async fn merge(
        &mut self,
        tx: &Transaction<'_>,
        log: &mut ChangeLog,
        pending: &mut [PendingEmail],
        from: i64,
        into: i64,
    ) -> Result<()> {
        for t in self
            .refs
            .values_mut()
            .chain(self.subjects.values_mut())
            .chain(self.gmail.values_mut())
        {
            if *t == from {
                *t = into;
            }
        }
        for p in pending.iter_mut().filter(|p| p.thread == from) {
            p.thread = into;
        }
        self.updated.remove(&from);
        if from >= NEW_THREAD {
            // Made by this batch and not written yet: it simply never is.
            self.made.retain(|t| *t != from);
            return Ok(());
        }
        let st = tx
            .prepare_cached("UPDATE email SET thread_id = $2 WHERE thread_id = $1 RETURNING id")
            .await?;
        let moved: Vec<i64> = tx
            .query(&st, &[&from, &into])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        log.record_many(tx, ObjectType::Email, &moved, ChangeOp::Updated)
            .await?;
        for sql in [
            "UPDATE thread_ref SET thread_id = $2 WHERE thread_id = $1",
            "UPDATE thread_subject SET thread_id = $2 WHERE thread_id = $1",
        ] {
            let st = tx.prepare_cached(sql).await?;
            tx.execute(&st, &[&from, &into]).await?;
        }
        let st = tx
            .prepare_cached("DELETE FROM thread WHERE id = $1")
            .await?;
        tx.execute(&st, &[&from]).await?;
        log.record(tx, ObjectType::Thread, from, ChangeOp::Destroyed)
            .await?;
        Ok(())
    }

    /// JWZ-style (sqlite/write.rs's `assign_thread`): a message joins the thread of any
    /// Message-ID it shares; threads it bridges are merged into the oldest; a reply
    /// without references falls back to the base subject.
    async fn assign(
        &mut self,
        tx: &Transaction<'_>,
        log: &mut ChangeLog,
        pending: &mut [PendingEmail],
        p: &ParsedMessage,
    ) -> Result<i64> {
        let keys = mime::thread_keys(p);
        let mut found: BTreeSet<i64> = keys
            .iter()
            .filter_map(|k| self.refs.get(k))
            .copied()
            .collect();
        let base = p
            .subject
            .as_deref()
            .map(mime::base_subject)
            .unwrap_or_default();
        let is_reply = p.subject.as_deref().is_some_and(|s| {
            let plain = s
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            !base.is_empty() && plain != base
        });
        if found.is_empty() && is_reply && p.in_reply_to.is_empty() && p.references.is_empty() {
            found.extend(self.subjects.get(&base).copied());
        }
        let thread = match found.first().copied() {
            Some(t) => {
                for other in found.iter().skip(1) {
                    self.merge(tx, log, pending, *other, t).await?;
                }
                if t < NEW_THREAD {
                    self.updated.insert(t);
                }
                t
            }
            None => self.new_thread(),
        };
        for k in keys {
            self.refs.insert(k.clone(), thread);
            self.dirty_refs.insert(k);
        }
        if !base.is_empty() {
            self.subjects.insert(base.clone(), thread);
            self.dirty_subjects.insert(base);
        }
        Ok(thread)
    }
}

/// An Email a batch creates.
pub(super) struct PendingEmail {
    /// Index into the batch's `new`.
    pub(super) item: usize,
    pub(super) identity: String,
    pub(super) thread: i64,
    pub(super) gmail: Option<GmailIds>,
    pub(super) blob: Option<String>,
}

/// Where a copy of the batch points: an Email stored before, or one the batch creates.
#[derive(Clone, Copy)]
pub(super) enum Target {
    Stored(i64),
    New(usize),
}

impl PgStore {
    async fn apply_changes(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        ch: MailboxChanges,
    ) -> Result<State> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let mut log = ChangeLog::of(self, account);
        // Batches of one account from two nodes (a lease handed over mid-batch) run one
        // after the other, each seeing the other's copies.
        lock_account(&tx, account).await?;
        // Pending local changes stay on top of what the server reports.
        let pending = super::outbox::has_pending(&tx, account).await?;
        let st = tx
            .prepare_cached("SELECT uidvalidity, account_id, role FROM mailbox WHERE id = $1")
            .await?;
        let row = tx
            .query_opt(&st, &[&mailbox.0])
            .await?
            .ok_or_else(|| Error::NotFound(format!("mailbox {mailbox}")))?;
        let (stored_validity, owner, role): (i64, i64, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        if owner != account.0 {
            return Err(Error::Corrupt(format!(
                "mailbox {mailbox} is not in account {account}"
            )));
        }
        let v = ch.uidvalidity;
        if stored_validity != 0 && stored_validity != i64::from(v.0) {
            // RFC 3501 2.3.1.1: the UIDs of this batch name other messages now.
            return Err(Error::UidValidityChanged {
                mailbox,
                stored: UidValidity(u32_of(stored_validity, "UIDVALIDITY")?),
                given: v,
            });
        }
        if stored_validity == 0 {
            let st = tx
                .prepare_cached("UPDATE mailbox SET uidvalidity = $2 WHERE id = $1")
                .await?;
            tx.execute(&st, &[&mailbox.0, &i64::from(v.0)]).await?;
        }
        if !ch.expunged.is_empty() {
            let uids: Vec<i64> = ch.expunged.iter().map(|u| i64::from(u.0)).collect();
            detach_copies(&tx, &mut log, mailbox.0, Some(&uids)).await?;
        }
        // RFC 8621 1.5: new mail in Sent or Drafts is not a delivery.
        let delivery_box = !matches!(role.as_deref(), Some("sent" | "drafts"));
        let max_uid = ch
            .new
            .iter()
            .map(|n| n.uid.0)
            .chain(ch.links.iter().map(|l| l.uid.0))
            .max()
            .unwrap_or(0);
        self.add_copies(&tx, &mut log, account, mailbox, &ch, delivery_box, pending)
            .await?;
        store_bodies(&tx, &mut log, mailbox, &ch.bodies).await?;
        apply_flags(&tx, &mut log, mailbox, &ch.flags, pending).await?;

        if !ch.pop3_uidls.is_empty() {
            let (uidls, uids): (Vec<&str>, Vec<i64>) = ch
                .pop3_uidls
                .iter()
                .map(|(u, l)| (l.as_str(), i64::from(u.0)))
                .unzip();
            let st = tx
                .prepare_cached(
                    "INSERT INTO pop3_message (account_id, uidl, uid, retrieved_at) \
                     SELECT $1, u.uidl, u.uid, $4 FROM unnest($2::text[], $3::bigint[]) AS u(uidl, uid) \
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            tx.execute(&st, &[&account.0, &uidls, &uids, &now()])
                .await?;
        }
        let seen_next = if max_uid > 0 {
            max_uid.saturating_add(1)
        } else {
            0
        };
        let uidnext = ch.uidnext.map(|u| u.0).unwrap_or(0).max(seen_next);
        let highestmodseq = ch.highestmodseq.map(|m| to_i64(m.0));
        let server_total = ch.server_total.map(i64::from);
        if uidnext > 0 || highestmodseq.is_some() || server_total.is_some() {
            let st = tx
                .prepare_cached(
                    "UPDATE mailbox SET uidnext = GREATEST(uidnext, $2), \
                     highestmodseq = coalesce($3, highestmodseq), \
                     server_total = coalesce($4, server_total) WHERE id = $1",
                )
                .await?;
            tx.execute(
                &st,
                &[
                    &mailbox.0,
                    &i64::from(uidnext),
                    &highestmodseq,
                    &server_total,
                ],
            )
            .await?;
        }
        let state = log.state(&tx).await?;
        log.commit(tx).await?;
        Ok(state)
    }

    /// The batch's new copies and Gmail label links: each finds its Email (same identity,
    /// an orphan first: a move seen as expunge + new keeps its Email) or makes one, placed
    /// in a thread. With local changes `pending`, a copy the user removed stays removed and
    /// an Email's pending flag changes go on top of its new copies' flags.
    #[allow(clippy::too_many_arguments)]
    async fn add_copies(
        &self,
        tx: &Transaction<'_>,
        log: &mut ChangeLog,
        account: AccountId,
        mailbox: MailboxId,
        ch: &MailboxChanges,
        delivery_box: bool,
        overlay: bool,
    ) -> Result<()> {
        if ch.new.is_empty() && ch.links.is_empty() {
            return Ok(());
        }
        let all_uids: Vec<i64> = ch
            .new
            .iter()
            .map(|n| i64::from(n.uid.0))
            .chain(ch.links.iter().map(|l| i64::from(l.uid.0)))
            .collect();
        let st = tx
            .prepare_cached(
                "SELECT k FROM unnest($2::bigint[]) AS u(k) \
                 WHERE EXISTS (SELECT 1 FROM copy WHERE mailbox_id = $1 AND uid = k)",
            )
            .await?;
        // Fetched again after a cut or crash: a stored copy stands.
        let mut taken: HashSet<i64> = tx
            .query(&st, &[&mailbox.0, &all_uids])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if overlay {
            // A copy the user removed (pending on the server) stays removed.
            taken.extend(super::outbox::tombstoned(tx, mailbox.0, &all_uids).await?);
        }
        let gmail: HashMap<u32, GmailIds> = ch.gmail.iter().map(|(u, g)| (u.0, *g)).collect();
        let identity_of = |n: &NewCopy| match (gmail.get(&n.uid.0), &n.server_email_id) {
            (Some(g), _) => gmail_identity(g.msgid),
            (None, Some(e)) => format!("e:{e}"),
            (None, None) => format!("h:{}", n.header_hash),
        };
        let new: Vec<usize> = (0..ch.new.len())
            .filter(|i| taken.insert(i64::from(ch.new[*i].uid.0)))
            .collect();
        let links: Vec<&LinkedCopy> = ch
            .links
            .iter()
            .filter(|l| taken.insert(i64::from(l.uid.0)))
            .collect();
        let mut identities: Vec<String> = new.iter().map(|i| identity_of(&ch.new[*i])).collect();
        identities.extend(links.iter().map(|l| gmail_identity(l.msgid)));
        let st = tx
            .prepare_cached(
                "SELECT k, (SELECT id FROM email WHERE account_id = $1 AND identity = k \
                 ORDER BY orphaned DESC, id LIMIT 1) FROM unnest($2::text[]) AS u(k)",
            )
            .await?;
        let mut known: HashMap<String, Target> = tx
            .query(&st, &[&account.0, &identities])
            .await?
            .iter()
            .filter_map(|r| {
                r.get::<_, Option<i64>>(1)
                    .map(|e| (r.get(0), Target::Stored(e)))
            })
            .collect();
        // Gmail: an Email stored before the server named it (its identity is its header
        // hash) becomes the Email of this X-GM-MSGID (sqlite/write.rs, `adopt_for_gmail`).
        let adoptable: Vec<String> = new
            .iter()
            .filter(|i| gmail.contains_key(&ch.new[**i].uid.0))
            .filter(|i| !known.contains_key(&identity_of(&ch.new[**i])))
            .map(|i| format!("h:{}", ch.new[*i].header_hash))
            .collect();
        if !adoptable.is_empty() {
            let st = tx
                .prepare_cached(
                    "SELECT k, (SELECT id FROM email WHERE account_id = $1 AND identity = k \
                     AND gm_msgid IS NULL ORDER BY orphaned DESC, id LIMIT 1) \
                     FROM unnest($2::text[]) AS u(k)",
                )
                .await?;
            let mut by_header: HashMap<String, i64> = tx
                .query(&st, &[&account.0, &adoptable])
                .await?
                .iter()
                .filter_map(|r| r.get::<_, Option<i64>>(1).map(|e| (r.get(0), e)))
                .collect();
            let adopt = tx
                .prepare_cached(
                    "UPDATE email SET identity = $2, gm_msgid = $3, gm_thrid = $4 WHERE id = $1",
                )
                .await?;
            for i in &new {
                let n = &ch.new[*i];
                let Some(g) = gmail.get(&n.uid.0) else {
                    continue;
                };
                let identity = gmail_identity(g.msgid);
                if known.contains_key(&identity) {
                    continue;
                }
                if let Some(e) = by_header.remove(&format!("h:{}", n.header_hash)) {
                    tx.execute(
                        &adopt,
                        &[&e, &identity, &(g.msgid as i64), &g.thrid.map(|t| t as i64)],
                    )
                    .await?;
                    known.insert(identity, Target::Stored(e));
                }
            }
        }

        // Which copies make an Email, in order: a second copy of the same identity in
        // this batch joins the Email the first one made.
        let mut pending: Vec<PendingEmail> = Vec::new();
        let mut copies: Vec<(i64, Target, String, i64)> = Vec::new();
        let mut relinked: BTreeSet<i64> = BTreeSet::new();
        for (k, i) in new.iter().enumerate() {
            let n = &ch.new[*i];
            let target = match known.get(&identities[k]) {
                Some(t) => *t,
                None => {
                    let t = Target::New(pending.len());
                    pending.push(PendingEmail {
                        item: *i,
                        identity: identities[k].clone(),
                        thread: 0,
                        gmail: gmail.get(&n.uid.0).copied(),
                        blob: None,
                    });
                    known.insert(identities[k].clone(), t);
                    t
                }
            };
            if let Target::Stored(e) = target {
                relinked.insert(e);
            }
            copies.push((
                i64::from(n.uid.0),
                target,
                join_flags(&n.flags),
                to_i64(n.modseq.0),
            ));
        }
        for l in &links {
            // One whose Email is not stored is skipped (the sync fetches those whole).
            let Some(target) = known.get(&gmail_identity(l.msgid)).copied() else {
                continue;
            };
            if let Target::Stored(e) = target {
                relinked.insert(e);
            }
            copies.push((
                i64::from(l.uid.0),
                target,
                join_flags(&l.flags),
                to_i64(l.modseq.0),
            ));
        }

        if overlay {
            // An Email stored before may have flag changes of the user pending: they stay
            // on top of the server's flags of its new copies. (An Email made by this batch
            // has none.)
            let stored: Vec<i64> = copies
                .iter()
                .filter_map(|c| match c.1 {
                    Target::Stored(e) => Some(e),
                    Target::New(_) => None,
                })
                .collect();
            let queued = super::outbox::pending_flags(tx, &stored).await?;
            for c in copies.iter_mut() {
                if let Target::Stored(e) = c.1
                    && let Some(q) = queued.get(&e)
                {
                    c.2 = super::outbox::overlay(std::mem::take(&mut c.2), Some(q));
                }
            }
        }

        self.place_in_threads(tx, log, account, ch, &mut pending)
            .await?;

        // Ids for the new Emails, drawn from their sequence in one statement.
        let count = i64::try_from(pending.len()).unwrap_or(i64::MAX);
        let ids: Vec<i64> = if pending.is_empty() {
            Vec::new()
        } else {
            let st = tx
                .prepare_cached(
                    "SELECT nextval(pg_get_serial_sequence('email', 'id')) FROM generate_series(1, $1::bigint)",
                )
                .await?;
            tx.query(&st, &[&count])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect()
        };
        let email_of = |t: Target| match t {
            Target::Stored(e) => e,
            Target::New(p) => ids[p],
        };

        // Raw messages fetched with the header.
        let mut blobs: Vec<(String, &[u8])> = Vec::new();
        let mut stored_blobs: Vec<(i64, String)> = Vec::new();
        for (k, i) in new.iter().enumerate() {
            if let Some(raw) = &ch.new[*i].raw {
                let id = mime::blob_id(raw);
                match known.get(&identities[k]) {
                    Some(Target::New(p)) if pending[*p].item == *i => {
                        pending[*p].blob = Some(id.clone())
                    }
                    Some(t) => stored_blobs.push((email_of(*t), id.clone())),
                    None => {}
                }
                blobs.push((id, raw));
            }
        }
        put_blobs(tx, &blobs).await?;

        if !pending.is_empty() {
            insert_emails(tx, account, ch, &pending, &ids, &copies).await?;
            log.record_many(tx, ObjectType::Email, &ids, ChangeOp::Created)
                .await?;
            let delivered = delivery_box
                && pending.iter().any(|p| {
                    !ch.new[p.item]
                        .flags
                        .iter()
                        .any(|f| f.eq_ignore_ascii_case("\\Draft"))
                });
            if delivered {
                log.delivered(tx).await?;
            }
        }
        if !relinked.is_empty() {
            let relinked: Vec<i64> = relinked.into_iter().collect();
            let st = tx
                .prepare_cached("UPDATE email SET orphaned = false WHERE id = ANY($1)")
                .await?;
            tx.execute(&st, &[&relinked]).await?;
            log.record_many(tx, ObjectType::Email, &relinked, ChangeOp::Updated)
                .await?;
        }
        if !stored_blobs.is_empty() {
            let (emails, ids): (Vec<i64>, Vec<String>) = stored_blobs.into_iter().unzip();
            let st = tx
                .prepare_cached(
                    "UPDATE email e SET blob_id = u.blob FROM unnest($1::bigint[], $2::text[]) \
                     AS u(id, blob) WHERE e.id = u.id AND e.blob_id IS NULL",
                )
                .await?;
            tx.execute(&st, &[&emails, &ids]).await?;
        }
        if copies.is_empty() {
            return Ok(());
        }
        let uids: Vec<i64> = copies.iter().map(|c| c.0).collect();
        let emails: Vec<i64> = copies.iter().map(|c| email_of(c.1)).collect();
        let flags: Vec<&str> = copies.iter().map(|c| c.2.as_str()).collect();
        let modseqs: Vec<i64> = copies.iter().map(|c| c.3).collect();
        let st = tx
            .prepare_cached(
                "INSERT INTO copy (mailbox_id, uid, email_id, flags, modseq, received_at) \
                 SELECT $1, u.uid, u.email, u.flags, u.modseq, e.received_at \
                 FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[]) \
                 AS u(uid, email, flags, modseq) JOIN email e ON e.id = u.email",
            )
            .await?;
        tx.execute(&st, &[&mailbox.0, &uids, &emails, &flags, &modseqs])
            .await?;
        // The Emails stored before get the union of their copies' flags, the new ones
        // were written with theirs.
        let stored: Vec<i64> = copies
            .iter()
            .filter_map(|c| match c.1 {
                Target::Stored(e) => Some(e),
                Target::New(_) => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        refresh_keywords(tx, &stored).await?;
        log.record(tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Updated)
            .await?;
        Ok(())
    }

    /// Places each new Email in a thread: Gmail's conversation as it is (X-GM-THRID),
    /// else by its references. Reads what is stored about the batch's keys in three
    /// statements, threads in memory, and writes the new threads and links at the end.
    pub(super) async fn place_in_threads(
        &self,
        tx: &Transaction<'_>,
        log: &mut ChangeLog,
        account: AccountId,
        ch: &MailboxChanges,
        pending: &mut [PendingEmail],
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<String> = Vec::new();
        let mut subjects: Vec<String> = Vec::new();
        let mut thrids: Vec<i64> = Vec::new();
        for p in pending.iter() {
            let parsed = &ch.new[p.item].parsed;
            match p.gmail.and_then(|g| g.thrid) {
                Some(t) => thrids.push(t as i64),
                None => {
                    keys.extend(mime::thread_keys(parsed));
                    subjects.extend(parsed.subject.as_deref().map(mime::base_subject));
                }
            }
        }
        let pairs = |rows: Vec<tokio_postgres::Row>| -> HashMap<String, i64> {
            rows.iter()
                .filter_map(|r| r.get::<_, Option<i64>>(1).map(|t| (r.get(0), t)))
                .collect()
        };
        let st = tx
            .prepare_cached(
                "SELECT k, (SELECT thread_id FROM thread_ref WHERE account_id = $1 AND msgid = k) \
                 FROM unnest($2::text[]) AS u(k)",
            )
            .await?;
        let refs = pairs(tx.query(&st, &[&account.0, &keys]).await?);
        let st = tx
            .prepare_cached(
                "SELECT k, (SELECT thread_id FROM thread_subject WHERE account_id = $1 AND subject = k) \
                 FROM unnest($2::text[]) AS u(k)",
            )
            .await?;
        let subjects = pairs(tx.query(&st, &[&account.0, &subjects]).await?);
        let gmail: HashMap<i64, i64> = if thrids.is_empty() {
            HashMap::new()
        } else {
            let st = tx
                .prepare_cached(
                    "SELECT DISTINCT ON (gm_thrid) gm_thrid, thread_id FROM email \
                     WHERE account_id = $1 AND gm_thrid = ANY($2)",
                )
                .await?;
            tx.query(&st, &[&account.0, &thrids])
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        };
        let mut t = Threading {
            refs,
            subjects,
            gmail,
            dirty_refs: HashSet::new(),
            dirty_subjects: HashSet::new(),
            made: Vec::new(),
            updated: BTreeSet::new(),
        };
        for i in 0..pending.len() {
            let thread = match pending[i].gmail.and_then(|g| g.thrid) {
                Some(thrid) => match t.gmail.get(&(thrid as i64)).copied() {
                    Some(found) => {
                        if found < NEW_THREAD {
                            t.updated.insert(found);
                        }
                        found
                    }
                    None => {
                        let made = t.new_thread();
                        t.gmail.insert(thrid as i64, made);
                        made
                    }
                },
                None => {
                    let parsed = &ch.new[pending[i].item].parsed;
                    t.assign(tx, log, pending, parsed).await?
                }
            };
            pending[i].thread = thread;
        }
        // Real ids for the threads the batch made, then every placeholder replaced.
        let real: HashMap<i64, i64> = if t.made.is_empty() {
            HashMap::new()
        } else {
            let st = tx
                .prepare_cached(
                    "SELECT nextval(pg_get_serial_sequence('thread', 'id')) FROM generate_series(1, $1::bigint)",
                )
                .await?;
            let count = i64::try_from(t.made.len()).unwrap_or(i64::MAX);
            let ids: Vec<i64> = tx
                .query(&st, &[&count])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            t.made.iter().copied().zip(ids).collect()
        };
        let resolve = |thread: i64| real.get(&thread).copied().unwrap_or(thread);
        for p in pending.iter_mut() {
            p.thread = resolve(p.thread);
        }
        if !real.is_empty() {
            let made: Vec<i64> = t.made.iter().map(|m| resolve(*m)).collect();
            let st = tx
                .prepare_cached(
                    "INSERT INTO thread (id, account_id) OVERRIDING SYSTEM VALUE \
                     SELECT id, $1 FROM unnest($2::bigint[]) AS u(id)",
                )
                .await?;
            tx.execute(&st, &[&account.0, &made]).await?;
            log.record_many(tx, ObjectType::Thread, &made, ChangeOp::Created)
                .await?;
        }
        let updated: Vec<i64> = t.updated.iter().copied().collect();
        log.record_many(tx, ObjectType::Thread, &updated, ChangeOp::Updated)
            .await?;
        for (dirty, map, sql) in [
            (
                &t.dirty_refs,
                &t.refs,
                "INSERT INTO thread_ref (account_id, msgid, thread_id) \
                 SELECT $1, k, t FROM unnest($2::text[], $3::bigint[]) AS u(k, t) \
                 ON CONFLICT (account_id, msgid) DO UPDATE SET thread_id = excluded.thread_id",
            ),
            (
                &t.dirty_subjects,
                &t.subjects,
                "INSERT INTO thread_subject (account_id, subject, thread_id) \
                 SELECT $1, k, t FROM unnest($2::text[], $3::bigint[]) AS u(k, t) \
                 ON CONFLICT (account_id, subject) DO UPDATE SET thread_id = excluded.thread_id",
            ),
        ] {
            if dirty.is_empty() {
                continue;
            }
            let (names, threads): (Vec<&str>, Vec<i64>) = dirty
                .iter()
                .filter_map(|k| map.get(k).map(|t| (k.as_str(), resolve(*t))))
                .unzip();
            let st = tx.prepare_cached(sql).await?;
            tx.execute(&st, &[&account.0, &names, &threads]).await?;
        }
        Ok(())
    }
}

/// The batch's new Emails, in one statement: metadata, keywords (the union of the
/// batch's copies of each), the full text of the header (and of the body when the
/// message came whole).
pub(super) async fn insert_emails(
    tx: &Transaction<'_>,
    account: AccountId,
    ch: &MailboxChanges,
    pending: &[PendingEmail],
    ids: &[i64],
    copies: &[(i64, Target, String, i64)],
) -> Result<()> {
    let mut flags: HashMap<usize, Vec<&str>> = HashMap::new();
    for c in copies {
        if let Target::New(p) = c.1 {
            flags.entry(p).or_default().push(c.2.as_str());
        }
    }
    let mut meta = Metadata::default();
    let (mut identity, mut thread, mut size, mut received) = (vec![], vec![], vec![], vec![]);
    let (mut blob, mut by_id, mut msgid, mut thrid) = (vec![], vec![], vec![], vec![]);
    let (mut keywords, mut head, mut body, mut with_body) = (vec![], vec![], vec![], vec![]);
    for (k, p) in pending.iter().enumerate() {
        let n = &ch.new[p.item];
        identity.push(p.identity.as_str());
        thread.push(p.thread);
        size.push(i64::from(n.size));
        received.push(n.internal_date);
        blob.push(p.blob.as_deref());
        // Created from its header alone: its blobId cannot be the content address.
        by_id.push(n.raw.is_none());
        msgid.push(p.gmail.map(|g| g.msgid as i64));
        thrid.push(p.gmail.and_then(|g| g.thrid).map(|t| t as i64));
        keywords.push(keywords_json(flags.get(&k).into_iter().flatten().copied()));
        head.push(crate::fulltext::head_text(
            n.parsed.subject.as_deref().unwrap_or(""),
            &address_text(&n.parsed),
        ));
        if n.raw.is_some() {
            with_body.push(ids[k]);
            body.push(n.parsed.body_text.as_str());
        }
        meta.push(&n.parsed);
    }
    let sql = format!(
        "INSERT INTO email (id, account_id, identity, thread_id, size, received_at, blob_id, \
         blob_by_id, gm_msgid, gm_thrid, keywords, {META_COLUMNS}) \
         OVERRIDING SYSTEM VALUE \
         SELECT id, $1, identity, thread_id, size, received_at, blob_id, blob_by_id, gm_msgid, \
         gm_thrid, keywords::jsonb, {META_COLUMNS} \
         FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], \
         $7::text[], $8::boolean[], $9::bigint[], $10::bigint[], $11::text[], {}) \
         AS u(id, identity, thread_id, size, received_at, blob_id, blob_by_id, \
         gm_msgid, gm_thrid, keywords, {META_COLUMNS})",
        meta_unnest(12)
    );
    let st = tx.prepare_cached(&sql).await?;
    let own: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
        &account.0, &ids, &identity, &thread, &size, &received, &blob, &by_id, &msgid, &thrid,
        &keywords,
    ];
    tx.execute(&st, &[&own[..], &meta.params()[..]].concat())
        .await?;
    index_text(tx, TextPart::Head, ids, &head).await?;
    index_text(tx, TextPart::Body, &with_body, &body).await
}

/// The two parts of an Email's full text.
enum TextPart {
    /// Subject and addresses, from the header on.
    Head,
    /// The body text, once the body is stored.
    Body,
}

/// Indexes the text of Emails, each part written once.
async fn index_text<T: AsRef<str>>(
    tx: &Transaction<'_>,
    part: TextPart,
    emails: &[i64],
    texts: &[T],
) -> Result<()> {
    if emails.is_empty() {
        return Ok(());
    }
    let sql = match part {
        TextPart::Head => {
            "INSERT INTO email_text_head (email_id, text) \
             SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING"
        }
        TextPart::Body => {
            "INSERT INTO email_text_body (email_id, text) \
             SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING"
        }
    };
    // The head is cut into words by its caller (`fulltext::head_text`), the body here.
    let texts: Vec<String> = match part {
        TextPart::Head => texts.iter().map(|t| t.as_ref().to_string()).collect(),
        TextPart::Body => texts
            .iter()
            .map(|t| crate::fulltext::index_text(t.as_ref()))
            .collect(),
    };
    let st = tx.prepare_cached(sql).await?;
    tx.execute(&st, &[&emails, &texts]).await?;
    // The batch's entries are merged into the index now, in bulk: a search reads the
    // whole pending list on every query (up to `gin_pending_list_limit`, 32 MB: seconds),
    // and without this the tail of a sync stayed there until autovacuum came, which on
    // an insert-only table is after 20 % more rows. Only the index's owner may (as for
    // VACUUM); a node connecting as another role leaves it to autovacuum.
    let st = tx
        .prepare_cached(match part {
            TextPart::Head => {
                "SELECT gin_clean_pending_list(oid) FROM pg_class \
                 WHERE oid = 'email_text_head_words'::regclass AND pg_has_role(relowner, 'USAGE')"
            }
            TextPart::Body => {
                "SELECT gin_clean_pending_list(oid) FROM pg_class \
                 WHERE oid = 'email_text_body_words'::regclass AND pg_has_role(relowner, 'USAGE')"
            }
        })
        .await?;
    tx.execute(&st, &[]).await?;
    Ok(())
}

/// Bodies fetched after their headers: stored once per Email (a second copy's body, or
/// one for a copy expunged meanwhile, is skipped), with the metadata and the body text.
async fn store_bodies(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    mailbox: MailboxId,
    bodies: &[NewBody],
) -> Result<()> {
    if bodies.is_empty() {
        return Ok(());
    }
    let uids: Vec<i64> = bodies.iter().map(|b| i64::from(b.uid.0)).collect();
    let st = tx
        .prepare_cached(
            "SELECT c.uid, e.id FROM copy c JOIN email e ON e.id = c.email_id \
             WHERE c.mailbox_id = $1 AND c.uid = ANY($2) AND e.blob_id IS NULL",
        )
        .await?;
    let wanting: HashMap<i64, i64> = tx
        .query(&st, &[&mailbox.0, &uids])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut done: HashSet<i64> = HashSet::new();
    let mut meta = Metadata::default();
    let (mut emails, mut ids, mut sizes, mut texts) = (vec![], vec![], vec![], vec![]);
    let mut blobs: Vec<(String, &[u8])> = Vec::new();
    for b in bodies {
        let Some(email) = wanting.get(&i64::from(b.uid.0)).copied() else {
            continue;
        };
        if !done.insert(email) {
            continue;
        }
        let id = mime::blob_id(&b.raw);
        emails.push(email);
        ids.push(id.clone());
        sizes.push(i64::try_from(b.raw.len()).unwrap_or(i64::MAX));
        texts.push(b.parsed.body_text.as_str());
        meta.push(&b.parsed);
        blobs.push((id, &b.raw));
    }
    if emails.is_empty() {
        return Ok(());
    }
    put_blobs(tx, &blobs).await?;
    let sets = META_COLUMNS
        .split(", ")
        .map(|c| format!("{c} = u.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE email e SET blob_id = u.blob, size = u.size, {sets} \
         FROM unnest($1::bigint[], $2::text[], $3::bigint[], {}) \
         AS u(id, blob, size, {META_COLUMNS}) WHERE e.id = u.id",
        meta_unnest(4)
    );
    let st = tx.prepare_cached(&sql).await?;
    let own: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&emails, &ids, &sizes];
    tx.execute(&st, &[&own[..], &meta.params()[..]].concat())
        .await?;
    index_text(tx, TextPart::Body, &emails, &texts).await?;
    log.record_many(tx, ObjectType::Email, &emails, ChangeOp::Updated)
        .await?;
    Ok(())
}

/// Flag changes of the server: the copies whose flags differ, then their Emails'
/// keywords; an Email whose keywords changed is an Email and a Mailbox update. With local
/// changes `pending`, an Email's pending flag changes go on top of the server's flags.
async fn apply_flags(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    mailbox: MailboxId,
    updates: &[FlagUpdate],
    pending: bool,
) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    // The last update of a UID wins, as when applied one after the other.
    let mut last: HashMap<i64, (String, i64)> = HashMap::new();
    for f in updates {
        last.insert(
            i64::from(f.uid.0),
            (join_flags(&f.flags), to_i64(f.modseq.0)),
        );
    }
    if pending {
        let uids: Vec<i64> = last.keys().copied().collect();
        let st = tx
            .prepare_cached(
                "SELECT uid, email_id FROM copy WHERE mailbox_id = $1 AND uid = ANY($2)",
            )
            .await?;
        let email_of: HashMap<i64, i64> = tx
            .query(&st, &[&mailbox.0, &uids])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let emails: Vec<i64> = email_of.values().copied().collect();
        let queued = super::outbox::pending_flags(tx, &emails).await?;
        for (u, (f, _)) in last.iter_mut() {
            if let Some(q) = email_of.get(u).and_then(|e| queued.get(e)) {
                *f = super::outbox::overlay(std::mem::take(f), Some(q));
            }
        }
    }
    let mut uids = Vec::new();
    let mut flags = Vec::new();
    let mut modseqs = Vec::new();
    for (u, (f, m)) in &last {
        uids.push(*u);
        flags.push(f.as_str());
        modseqs.push(*m);
    }
    let st = tx
        .prepare_cached(
            "UPDATE copy c SET flags = u.flags, modseq = u.modseq \
             FROM unnest($2::bigint[], $3::text[], $4::bigint[]) AS u(uid, flags, modseq) \
             WHERE c.mailbox_id = $1 AND c.uid = u.uid AND c.flags <> u.flags \
             RETURNING c.email_id",
        )
        .await?;
    let emails: Vec<i64> = tx
        .query(&st, &[&mailbox.0, &uids, &flags, &modseqs])
        .await?
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let changed = refresh_keywords(tx, &emails).await?;
    if !changed.is_empty() {
        log.record_many(tx, ObjectType::Email, &changed, ChangeOp::Updated)
            .await?;
        log.record(tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Updated)
            .await?;
    }
    Ok(())
}

impl PgStore {
    /// `apply_mailbox_list`, or, when `epoch` is given and the account's mailbox epoch
    /// moved away from it, nothing (see `MailSync::apply_mailbox_list_at`). The epoch is
    /// read under the account's lock, which a confirmed mailbox change holds while it moves
    /// the epoch.
    async fn mailbox_list_at(
        &self,
        account: AccountId,
        remote: &[RemoteMailbox],
        epoch: Option<u64>,
    ) -> Result<MailboxListOutcome> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let mut log = ChangeLog::of(self, account);
        let mut out = MailboxListOutcome::default();
        lock_account(&tx, account).await?;
        if epoch.is_some_and(|e| e != self.mailbox_epoch(account)) {
            // The list was taken across a mailbox change of the user: it may show the
            // server before that change. The next pass brings the list in line.
            return Ok(out);
        }
        // While a mailbox change of the user is pending, the local list is the user's
        // intent and is not brought in line (the pass after the drain does it).
        if super::outbox::mailbox_ops_pending(&tx, account).await? {
            return Ok(out);
        }

        struct Stored {
            id: i64,
            name: String,
            delimiter: Option<String>,
            role: Option<String>,
            subscribed: bool,
            selectable: bool,
            uidvalidity: i64,
        }
        let mut stored: HashMap<String, Stored> = tx
            .query(
                "SELECT id, raw_name, name, delimiter, role, subscribed, selectable, uidvalidity \
                 FROM mailbox WHERE account_id = $1",
                &[&account.0],
            )
            .await?
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(1),
                    Stored {
                        id: r.get(0),
                        name: r.get(2),
                        delimiter: r.get(3),
                        role: r.get(4),
                        subscribed: r.get(5),
                        selectable: r.get(6),
                        uidvalidity: r.get(7),
                    },
                )
            })
            .collect();
        let remote_names: HashSet<&str> = remote.iter().map(|m| m.raw_name.as_str()).collect();
        // Stored mailboxes gone from the server, by UIDVALIDITY: a rename keeps it (RFC 3501
        // 6.3.5 lets the server keep UIDs across RENAME, and Dovecot and Cyrus do).
        let mut gone_by_validity: HashMap<i64, String> = stored
            .iter()
            .filter(|(raw, s)| !remote_names.contains(raw.as_str()) && s.uidvalidity != 0)
            .map(|(raw, s)| (s.uidvalidity, raw.clone()))
            .collect();

        for m in remote {
            let role = m.role.map(|r| r.as_str().to_string());
            if let Some(s) = stored.get(&m.raw_name) {
                if s.name != m.name
                    || s.delimiter != m.delimiter
                    || s.role != role
                    || s.subscribed != m.subscribed
                    || s.selectable != m.selectable
                {
                    tx.execute(
                        "UPDATE mailbox SET name = $2, delimiter = $3, role = $4, subscribed = $5, \
                         selectable = $6 WHERE id = $1",
                        &[
                            &s.id,
                            &m.name,
                            &m.delimiter,
                            &role,
                            &m.subscribed,
                            &m.selectable,
                        ],
                    )
                    .await?;
                    log.record(&tx, ObjectType::Mailbox, s.id, ChangeOp::Updated)
                        .await?;
                }
                continue;
            }
            let renamed_from = m
                .uidvalidity
                .and_then(|v| gone_by_validity.remove(&i64::from(v)));
            if let Some(old_raw) = renamed_from
                && let Some(s) = stored.remove(&old_raw)
            {
                tx.execute(
                    "UPDATE mailbox SET raw_name = $2, name = $3, delimiter = $4, role = $5, \
                     subscribed = $6, selectable = $7 WHERE id = $1",
                    &[
                        &s.id,
                        &m.raw_name,
                        &m.name,
                        &m.delimiter,
                        &role,
                        &m.subscribed,
                        &m.selectable,
                    ],
                )
                .await?;
                log.record(&tx, ObjectType::Mailbox, s.id, ChangeOp::Updated)
                    .await?;
                out.renamed.push(MailboxId(s.id));
                continue;
            }
            // The UIDVALIDITY from LIST-STATUS is safe to keep before any message is
            // stored (uidnext stays 1), and lets a rename before the first sync be followed.
            let id: i64 = tx
                .query_one(
                    "INSERT INTO mailbox (account_id, raw_name, name, delimiter, role, subscribed, \
                     selectable, uidvalidity) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    &[
                        &account.0,
                        &m.raw_name,
                        &m.name,
                        &m.delimiter,
                        &role,
                        &m.subscribed,
                        &m.selectable,
                        &i64::from(m.uidvalidity.unwrap_or(0)),
                    ],
                )
                .await?
                .get(0);
            log.record(&tx, ObjectType::Mailbox, id, ChangeOp::Created)
                .await?;
            out.created.push(MailboxId(id));
        }

        for (raw, s) in &stored {
            if remote_names.contains(raw.as_str()) {
                continue;
            }
            detach_copies(&tx, &mut log, s.id, None).await?;
            tx.execute("DELETE FROM mailbox WHERE id = $1", &[&s.id])
                .await?;
            log.record(&tx, ObjectType::Mailbox, s.id, ChangeOp::Destroyed)
                .await?;
            out.destroyed.push(MailboxId(s.id));
        }

        // Parents follow from names: the parent of "a/b/c" is "a/b" when that mailbox exists.
        let all: Vec<(i64, String, Option<String>, Option<i64>)> = tx
            .query(
                "SELECT id, raw_name, delimiter, parent_id FROM mailbox WHERE account_id = $1",
                &[&account.0],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let by_name: HashMap<&str, i64> =
            all.iter().map(|(id, n, _, _)| (n.as_str(), *id)).collect();
        for (id, raw, delim, parent) in &all {
            let want = delim
                .as_deref()
                .filter(|d| !d.is_empty())
                .and_then(|d| raw.rsplit_once(d))
                .and_then(|(p, _)| by_name.get(p).copied());
            if want != *parent {
                tx.execute(
                    "UPDATE mailbox SET parent_id = $2 WHERE id = $1",
                    &[id, &want],
                )
                .await?;
                log.record(&tx, ObjectType::Mailbox, *id, ChangeOp::Updated)
                    .await?;
            }
        }
        log.commit(tx).await?;
        Ok(out)
    }
}

#[async_trait]
impl MailSync for PgStore {
    async fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxRecord>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailbox m WHERE m.account_id = $1 ORDER BY m.name"
            ))
            .await?;
        c.query(&st, &[&account.0])
            .await?
            .iter()
            .map(mailbox_from_row)
            .collect()
    }

    async fn mailbox_by_raw_name(
        &self,
        account: AccountId,
        raw_name: &str,
    ) -> Result<Option<MailboxRecord>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailbox m WHERE m.account_id = $1 AND m.raw_name = $2"
            ))
            .await?;
        c.query_opt(&st, &[&account.0, &raw_name])
            .await?
            .as_ref()
            .map(mailbox_from_row)
            .transpose()
    }

    async fn stored_uids(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Uid>> {
        let asked: Vec<i64> = uids.iter().map(|u| i64::from(u.0)).collect();
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT k FROM unnest($2::bigint[]) AS u(k) \
                 WHERE EXISTS (SELECT 1 FROM copy WHERE mailbox_id = $1 AND uid = k)",
            )
            .await?;
        let stored: HashSet<i64> = c
            .query(&st, &[&mailbox.0, &asked])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // In the order asked, as the SQLite backend answers.
        Ok(uids
            .iter()
            .copied()
            .filter(|u| stored.contains(&i64::from(u.0)))
            .collect())
    }

    async fn gmail_known(&self, account: AccountId, msgids: &[u64]) -> Result<Vec<u64>> {
        let identities: Vec<String> = msgids.iter().map(|m| gmail_identity(*m)).collect();
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT DISTINCT identity FROM email WHERE account_id = $1 AND identity = ANY($2)",
            )
            .await?;
        let known: HashSet<String> = c
            .query(&st, &[&account.0, &identities])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(msgids
            .iter()
            .zip(&identities)
            .filter(|(_, i)| known.contains(*i))
            .map(|(m, _)| *m)
            .collect())
    }

    async fn apply_mailbox_list(
        &self,
        account: AccountId,
        remote: &[RemoteMailbox],
    ) -> Result<MailboxListOutcome> {
        self.mailbox_list_at(account, remote, None).await
    }

    /// A per-process counter, as on SQLite: the sync and the outbox worker of an account
    /// run on the node holding its lease, where the worker's confirmations move it; a
    /// change queued on another node is guarded by `mailbox_ops_pending` meanwhile.
    fn mailbox_epoch(&self, account: AccountId) -> u64 {
        self.mailbox_epochs
            .lock()
            .map(|m| m.get(&account.0).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    async fn apply_mailbox_list_at(
        &self,
        account: AccountId,
        remote: &[RemoteMailbox],
        epoch: u64,
    ) -> Result<MailboxListOutcome> {
        self.mailbox_list_at(account, remote, Some(epoch)).await
    }

    async fn reset_mailbox(&self, mailbox: MailboxId, uidvalidity: UidValidity) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let account = AccountId(
            tx.query_opt(
                "SELECT account_id FROM mailbox WHERE id = $1",
                &[&mailbox.0],
            )
            .await?
            .ok_or_else(|| Error::NotFound(format!("mailbox {mailbox}")))?
            .get(0),
        );
        lock_account(&tx, account).await?;
        let mut log = ChangeLog::of(self, account);
        detach_copies(&tx, &mut log, mailbox.0, None).await?;
        tx.execute(
            "UPDATE mailbox SET uidvalidity = $2, uidnext = 1, highestmodseq = 0 WHERE id = $1",
            &[&mailbox.0, &i64::from(uidvalidity.0)],
        )
        .await?;
        log.commit(tx).await?;
        Ok(())
    }

    async fn mailbox_copies(&self, mailbox: MailboxId) -> Result<Vec<StoredCopy>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT uid, flags FROM copy WHERE mailbox_id = $1 AND uid < $2 ORDER BY uid",
            )
            .await?;
        c.query(&st, &[&mailbox.0, &PLACEHOLDER_UID_BASE])
            .await?
            .iter()
            .map(|r| {
                Ok(StoredCopy {
                    uid: Uid(u32_of(r.get(0), "UID")?),
                    flags: split_flags(r.get(1)),
                })
            })
            .collect()
    }

    async fn apply_mailbox_changes(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        changes: MailboxChanges,
    ) -> Result<State> {
        self.apply_changes(account, mailbox, changes).await
    }

    async fn body_sources(&self, account: AccountId, email: EmailId) -> Result<Vec<BodySource>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT m.id, m.raw_name, m.uidvalidity, c.uid FROM copy c \
                 JOIN mailbox m ON m.id = c.mailbox_id JOIN email e ON e.id = c.email_id \
                 WHERE c.email_id = $1 AND e.account_id = $2 AND c.uid < $3 \
                 AND m.uidvalidity <> 0 ORDER BY c.uid DESC",
            )
            .await?;
        c.query(&st, &[&email.0, &account.0, &PLACEHOLDER_UID_BASE])
            .await?
            .iter()
            .map(|r| {
                Ok(BodySource {
                    mailbox: MailboxId(r.get(0)),
                    raw_name: r.get(1),
                    uidvalidity: UidValidity(u32_of(r.get(2), "UIDVALIDITY")?),
                    uid: Uid(u32_of(r.get(3), "UID")?),
                })
            })
            .collect()
    }

    async fn uids_missing_body(&self, mailbox: MailboxId, limit: usize) -> Result<Vec<Uid>> {
        Ok(self
            .missing_bodies_since(mailbox, None, limit)
            .await?
            .into_iter()
            .map(|(u, _)| u)
            .collect())
    }

    async fn missing_bodies_since(
        &self,
        mailbox: MailboxId,
        received_since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(Uid, u64)>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT c.uid, e.size FROM copy c JOIN email e ON e.id = c.email_id \
                 WHERE c.mailbox_id = $1 AND e.blob_id IS NULL AND c.uid < $2 \
                 AND e.received_at >= $3 ORDER BY c.uid DESC LIMIT $4",
            )
            .await?;
        c.query(
            &st,
            &[
                &mailbox.0,
                &PLACEHOLDER_UID_BASE,
                &received_since.unwrap_or(i64::MIN),
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                Uid(u32_of(r.get(0), "UID")?),
                u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            ))
        })
        .collect()
    }

    async fn collect_orphans(&self, account: AccountId) -> Result<usize> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let mut log = ChangeLog::of(self, account);
        // A batch re-linking one of them on another node runs before this or after it,
        // never beside it: the orphans are read under the account's lock.
        lock_account(&tx, account).await?;
        let rows = tx
            .query(
                "SELECT id, thread_id, blob_id FROM email WHERE account_id = $1 AND orphaned \
                 AND NOT EXISTS (SELECT 1 FROM copy WHERE email_id = email.id)",
                &[&account.0],
            )
            .await?;
        let orphans: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        if orphans.is_empty() {
            return Ok(0);
        }
        let threads: Vec<i64> = rows
            .iter()
            .map(|r| r.get::<_, i64>(1))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut blobs: Vec<String> = rows
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(2))
            .collect();
        blobs.sort();
        blobs.dedup();
        tx.execute("DELETE FROM email WHERE id = ANY($1)", &[&orphans])
            .await?;
        log.record_many(&tx, ObjectType::Email, &orphans, ChangeOp::Destroyed)
            .await?;
        super::uploads::forget_unreferenced(&tx, &blobs).await?;
        let empty: Vec<i64> = tx
            .query(
                "SELECT t FROM unnest($1::bigint[]) AS u(t) \
                 WHERE NOT EXISTS (SELECT 1 FROM email WHERE thread_id = t)",
                &[&threads],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for sql in [
            "DELETE FROM thread WHERE id = ANY($1)",
            "DELETE FROM thread_ref WHERE thread_id = ANY($1)",
            "DELETE FROM thread_subject WHERE thread_id = ANY($1)",
        ] {
            tx.execute(sql, &[&empty]).await?;
        }
        let left: Vec<i64> = threads
            .iter()
            .copied()
            .filter(|t| !empty.contains(t))
            .collect();
        log.record_many(&tx, ObjectType::Thread, &left, ChangeOp::Updated)
            .await?;
        log.record_many(&tx, ObjectType::Thread, &empty, ChangeOp::Destroyed)
            .await?;
        log.commit(tx).await?;
        Ok(orphans.len())
    }

    async fn pop3_entries(&self, account: AccountId) -> Result<Vec<Pop3Entry>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT uidl, uid, retrieved_at, deleted_on_server FROM pop3_message \
                 WHERE account_id = $1 ORDER BY uid",
            )
            .await?;
        c.query(&st, &[&account.0])
            .await?
            .iter()
            .map(|r| {
                Ok(Pop3Entry {
                    uidl: r.get(0),
                    uid: Uid(u32_of(r.get(1), "UID")?),
                    retrieved_at: r.get(2),
                    deleted_on_server: r.get(3),
                })
            })
            .collect()
    }

    async fn pop3_mark_deleted(&self, account: AccountId, uidls: &[String]) -> Result<()> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "UPDATE pop3_message SET deleted_on_server = true \
                 WHERE account_id = $1 AND uidl = ANY($2)",
            )
            .await?;
        c.execute(&st, &[&account.0, &uidls]).await?;
        Ok(())
    }
}
