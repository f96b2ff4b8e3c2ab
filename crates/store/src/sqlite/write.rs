//! The write paths of the SQLite store: every function runs one transaction and records
//! each changed object in the change log under one new account state.

use crate::events::{AccountChange, PushType, TypeSet};
use crate::model::*;
use crate::wake::Queue;
use crate::{Error, Result};
use mail_types::{AccountId, MailboxId, State, UidValidity};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::{BTreeSet, HashMap, HashSet};

pub(crate) use crate::mailrows::{
    address_text, addresses_json, attachments_json, gmail_identity, join_flags, split_flags,
};

/// write-back: row ids as a JSON array, for `json_each(?)` in set-based statements.
pub(crate) fn id_list(ids: &[i64]) -> String {
    let mut s = String::with_capacity(ids.len() * 8 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s.push(']');
    s
}

/// What the transactions of one store call committed: the account changes to announce on
/// the event bus and the queues that received work. A write function pushes into it only
/// after its commit returned ([`ChangeLog::commit`]), so a rolled back transaction is never
/// announced; the call helper publishes it once the call is over (`Announce::publish`).
#[derive(Debug, Default)]
pub(crate) struct Committed {
    pub(crate) changes: Vec<AccountChange>,
    pub(crate) queued: Vec<(AccountId, Queue)>,
}

/// Collects the changes of one transaction and bumps the account state lazily, on the first
/// recorded change: a batch that changes nothing JMAP can see does not move the state.
pub(crate) struct ChangeLog {
    account: AccountId,
    state: Option<i64>,
    seen: HashSet<(ObjectType, i64)>,
    /// push: the types changed, announced after the commit.
    types: TypeSet,
    /// The queue this transaction gives work to, woken after the commit.
    queued: Option<Queue>,
}

impl ChangeLog {
    pub(crate) fn new(account: AccountId) -> Self {
        ChangeLog {
            account,
            state: None,
            seen: HashSet::new(),
            types: TypeSet::EMPTY,
            queued: None,
        }
    }

    /// This transaction queues work in the account's `queue`: its worker is woken once it
    /// commits.
    pub(crate) fn queued(&mut self, queue: Queue) {
        self.queued = Some(queue);
    }

    /// Commits `tx` and hands what it changed to `out`.
    pub(crate) fn commit(self, tx: Transaction<'_>, out: &mut Committed) -> Result<()> {
        Self::commit_all(tx, [self], out)
    }

    /// Commits `tx`, in which several accounts changed, each through its own log.
    pub(crate) fn commit_all(
        tx: Transaction<'_>,
        logs: impl IntoIterator<Item = ChangeLog>,
        out: &mut Committed,
    ) -> Result<()> {
        tx.commit()?;
        for log in logs {
            if let Some(s) = log.state {
                out.changes.push(AccountChange {
                    account: log.account,
                    state: State(s),
                    types: log.types,
                });
            }
            if let Some(q) = log.queued {
                out.queued.push((log.account, q));
            }
        }
        Ok(())
    }

    pub(crate) fn record(
        &mut self,
        tx: &Transaction<'_>,
        object: ObjectType,
        id: i64,
        op: ChangeOp,
    ) -> Result<()> {
        let state = self.bump(tx)?;
        // push: the type is announced once this transaction commits.
        self.types.insert(object.into());
        // One row per object per transaction; a later "destroyed" still wins because it is
        // written as its own row after the earlier one.
        if op != ChangeOp::Destroyed && !self.seen.insert((object, id)) {
            return Ok(());
        }
        let op = match op {
            ChangeOp::Created => 0,
            ChangeOp::Updated => 1,
            ChangeOp::Destroyed => 2,
        };
        tx.prepare_cached(
            "INSERT INTO change (account_id, state, type, object_id, op) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![self.account.0, state, object.as_str(), id, op])?;
        Ok(())
    }

    /// The transaction's new state, bumped on the first change.
    fn bump(&mut self, tx: &Transaction<'_>) -> Result<i64> {
        Ok(match self.state {
            Some(s) => s,
            None => {
                let s: i64 = tx.query_row(
                    "UPDATE account SET state = state + 1 WHERE id = ?1 RETURNING state",
                    [self.account.0],
                    |r| r.get(0),
                )?;
                self.state = Some(s);
                s
            }
        })
    }

    // --- write-back (outbox): one statement for the rows of a batch ---
    /// [`ChangeLog::record`] of many objects of one type (`op` other than destroyed), with
    /// one INSERT for all their rows.
    pub(crate) fn record_many(
        &mut self,
        tx: &Transaction<'_>,
        object: ObjectType,
        ids: &[i64],
        op: ChangeOp,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        if op == ChangeOp::Destroyed {
            for id in ids {
                self.record(tx, object, *id, op)?;
            }
            return Ok(());
        }
        let state = self.bump(tx)?;
        self.types.insert(object.into());
        let fresh: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| self.seen.insert((object, *id)))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let op = if op == ChangeOp::Created { 0 } else { 1 };
        tx.prepare_cached(
            "INSERT INTO change (account_id, state, type, object_id, op) \
             SELECT ?1, ?2, ?3, value, ?4 FROM json_each(?5)",
        )?
        .execute(params![
            self.account.0,
            state,
            object.as_str(),
            op,
            id_list(&fresh)
        ])?;
        Ok(())
    }

    /// push: a new message arrived from the server in this transaction (EmailDelivery),
    /// announced at commit and kept as the account's `delivery_state` for clients that
    /// come back later. Call after recording its Email (the state is bumped by then).
    fn delivered(&mut self, tx: &Transaction<'_>) -> Result<()> {
        if let Some(s) = self.state {
            self.types.insert(PushType::EmailDelivery);
            tx.prepare_cached("UPDATE account SET delivery_state = ?2 WHERE id = ?1")?
                .execute(params![self.account.0, s])?;
        }
        Ok(())
    }

    pub(crate) fn state(&self, tx: &Transaction<'_>) -> Result<State> {
        match self.state {
            Some(s) => Ok(State(s)),
            None => Ok(State(tx.query_row(
                "SELECT state FROM account WHERE id = ?1",
                [self.account.0],
                |r| r.get(0),
            )?)),
        }
    }
}

pub(crate) fn apply_mailbox_list(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    remote: &[RemoteMailbox],
) -> Result<MailboxListOutcome> {
    let tx = c.transaction()?;
    let mut log = ChangeLog::new(account);
    let mut out = MailboxListOutcome::default();
    // --- write-back: while a mailbox change of the user is pending, the local list is the
    // user's intent and is not brought in line (the pass after the drain does it).
    if super::outbox::mailbox_ops_pending(&tx, account)? {
        return Ok(out);
    }

    struct Stored {
        id: i64,
        name: String,
        delimiter: Option<String>,
        role: Option<String>,
        subscribed: bool,
        selectable: bool,
        uidvalidity: u32,
    }
    let mut stored: HashMap<String, Stored> = HashMap::new();
    {
        let mut st = tx.prepare(
            "SELECT id, raw_name, name, delimiter, role, subscribed, selectable, uidvalidity \
             FROM mailbox WHERE account_id = ?1",
        )?;
        let rows = st.query_map([account.0], |r| {
            Ok((
                r.get::<_, String>(1)?,
                Stored {
                    id: r.get(0)?,
                    name: r.get(2)?,
                    delimiter: r.get(3)?,
                    role: r.get(4)?,
                    subscribed: r.get(5)?,
                    selectable: r.get(6)?,
                    uidvalidity: r.get(7)?,
                },
            ))
        })?;
        for row in rows {
            let (raw, s) = row?;
            stored.insert(raw, s);
        }
    }

    let remote_names: HashSet<&str> = remote.iter().map(|m| m.raw_name.as_str()).collect();
    // Stored mailboxes gone from the server, by UIDVALIDITY: a rename keeps it (RFC 3501
    // 6.3.5 lets the server keep UIDs across RENAME, and Dovecot and Cyrus do).
    let mut gone_by_validity: HashMap<u32, String> = stored
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
                    "UPDATE mailbox SET name = ?2, delimiter = ?3, role = ?4, subscribed = ?5, \
                     selectable = ?6 WHERE id = ?1",
                    params![s.id, m.name, m.delimiter, role, m.subscribed, m.selectable],
                )?;
                log.record(&tx, ObjectType::Mailbox, s.id, ChangeOp::Updated)?;
            }
            continue;
        }
        let renamed_from = m.uidvalidity.and_then(|v| gone_by_validity.remove(&v));
        if let Some(old_raw) = renamed_from
            && let Some(s) = stored.remove(&old_raw)
        {
            tx.execute(
                "UPDATE mailbox SET raw_name = ?2, name = ?3, delimiter = ?4, role = ?5, \
                     subscribed = ?6, selectable = ?7 WHERE id = ?1",
                params![
                    s.id,
                    m.raw_name,
                    m.name,
                    m.delimiter,
                    role,
                    m.subscribed,
                    m.selectable
                ],
            )?;
            log.record(&tx, ObjectType::Mailbox, s.id, ChangeOp::Updated)?;
            out.renamed.push(MailboxId(s.id));
            continue;
        }
        tx.execute(
            // The UIDVALIDITY from LIST-STATUS is safe to keep before any message is stored
            // (uidnext stays 1), and lets a rename before the first sync be followed.
            "INSERT INTO mailbox (account_id, raw_name, name, delimiter, role, subscribed, selectable, \
             uidvalidity) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![account.0, m.raw_name, m.name, m.delimiter, role, m.subscribed, m.selectable, m.uidvalidity.unwrap_or(0)],
        )?;
        let id = tx.last_insert_rowid();
        log.record(&tx, ObjectType::Mailbox, id, ChangeOp::Created)?;
        out.created.push(MailboxId(id));
    }

    for (raw, s) in &stored {
        if remote_names.contains(raw.as_str()) {
            continue;
        }
        detach_copies(&tx, &mut log, s.id, None)?;
        tx.execute("DELETE FROM mailbox WHERE id = ?1", [s.id])?;
        log.record(&tx, ObjectType::Mailbox, s.id, ChangeOp::Destroyed)?;
        out.destroyed.push(MailboxId(s.id));
    }

    // Parents follow from names: the parent of "a/b/c" is "a/b" when that mailbox exists.
    let all: Vec<(i64, String, Option<String>, Option<i64>)> = {
        let mut st = tx.prepare(
            "SELECT id, raw_name, delimiter, parent_id FROM mailbox WHERE account_id = ?1",
        )?;
        let rows = st.query_map([account.0], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let by_name: HashMap<&str, i64> = all.iter().map(|(id, n, _, _)| (n.as_str(), *id)).collect();
    for (id, raw, delim, parent) in &all {
        let want = delim
            .as_deref()
            .filter(|d| !d.is_empty())
            .and_then(|d| raw.rsplit_once(d))
            .and_then(|(p, _)| by_name.get(p).copied());
        if want != *parent {
            tx.execute(
                "UPDATE mailbox SET parent_id = ?2 WHERE id = ?1",
                params![id, want],
            )?;
            log.record(&tx, ObjectType::Mailbox, *id, ChangeOp::Updated)?;
        }
    }
    log.commit(tx, committed)?;
    Ok(out)
}

/// Removes copies (all of a mailbox, or the given UIDs) and updates their Emails: keywords
/// recomputed, and an Email left with no copy is marked orphaned (destroyed later by
/// `collect_orphans` unless a move re-links it).
fn detach_copies(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    mailbox: i64,
    uids: Option<&[mail_types::Uid]>,
) -> Result<usize> {
    let mut emails: BTreeSet<i64> = BTreeSet::new();
    match uids {
        None => {
            let mut st = tx.prepare("DELETE FROM copy WHERE mailbox_id = ?1 RETURNING email_id")?;
            let rows = st.query_map([mailbox], |r| r.get::<_, i64>(0))?;
            for r in rows {
                emails.insert(r?);
            }
        }
        Some(uids) => {
            let mut st = tx.prepare_cached(
                "DELETE FROM copy WHERE mailbox_id = ?1 AND uid = ?2 RETURNING email_id",
            )?;
            for uid in uids {
                let e: Option<i64> = st
                    .query_row(params![mailbox, uid.0], |r| r.get(0))
                    .optional()?;
                if let Some(e) = e {
                    emails.insert(e);
                }
            }
        }
    }
    let n = emails.len();
    for e in emails {
        refresh_keywords(tx, e)?;
        tx.prepare_cached(
            "UPDATE email SET orphaned = NOT EXISTS (SELECT 1 FROM copy WHERE email_id = ?1) WHERE id = ?1",
        )?
        .execute([e])?;
        log.record(tx, ObjectType::Email, e, ChangeOp::Updated)?;
    }
    if n > 0 {
        log.record(tx, ObjectType::Mailbox, mailbox, ChangeOp::Updated)?;
    }
    Ok(n)
}

/// An Email's keywords are the union of its copies' flags (RFC 8621 leaves per-mailbox
/// flags to the server; the union means a message read anywhere shows as read).
pub(crate) fn refresh_keywords(tx: &Transaction<'_>, email: i64) -> Result<bool> {
    let flags: Vec<String> = {
        let mut st = tx.prepare_cached("SELECT flags FROM copy WHERE email_id = ?1")?;
        let rows = st.query_map([email], |r| r.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let json = crate::mailrows::keywords_json(flags.iter().map(String::as_str));
    let n = tx
        .prepare_cached("UPDATE email SET keywords = ?2 WHERE id = ?1 AND keywords != ?2")?
        .execute(params![email, json])?;
    Ok(n > 0)
}

pub(crate) fn reset_mailbox(
    c: &mut Connection,
    committed: &mut Committed,
    mailbox: MailboxId,
    v: UidValidity,
) -> Result<()> {
    let tx = c.transaction()?;
    let account: i64 = tx.query_row(
        "SELECT account_id FROM mailbox WHERE id = ?1",
        [mailbox.0],
        |r| r.get(0),
    )?;
    let mut log = ChangeLog::new(AccountId(account));
    detach_copies(&tx, &mut log, mailbox.0, None)?;
    tx.execute(
        "UPDATE mailbox SET uidvalidity = ?2, uidnext = 1, highestmodseq = 0 WHERE id = ?1",
        params![mailbox.0, v.0],
    )?;
    log.commit(tx, committed)?;
    Ok(())
}

pub(crate) fn record_blob(tx: &Transaction<'_>, id: &str, size: usize) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO blob (id, size) VALUES (?1, ?2)")?
        .execute(params![id, size as i64])?;
    Ok(())
}

pub(crate) fn write_metadata(tx: &Transaction<'_>, email: i64, p: &ParsedMessage) -> Result<()> {
    let j = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    tx.prepare_cached(
        "UPDATE email SET sent_at = ?2, message_id = ?3, in_reply_to = ?4, refs = ?5, subject = ?6, \
         addr_from = ?7, addr_sender = ?8, addr_reply_to = ?9, addr_to = ?10, addr_cc = ?11, \
         addr_bcc = ?12, preview = ?13, has_attachment = ?14, attachments = ?15, problems = ?16, \
         sent_offset = ?17 WHERE id = ?1",
    )?
    .execute(params![
        email,
        p.sent_at,
        p.message_id,
        j(&p.in_reply_to),
        j(&p.references),
        p.subject,
        addresses_json(&p.from),
        addresses_json(&p.sender),
        addresses_json(&p.reply_to),
        addresses_json(&p.to),
        addresses_json(&p.cc),
        addresses_json(&p.bcc),
        p.preview,
        p.has_attachment,
        attachments_json(&p.attachments),
        j(&p.problems),
        p.sent_offset,
    ])?;
    Ok(())
}

/// Indexes subject and addresses; done once, when the Email is created.
pub(crate) fn index_head(tx: &Transaction<'_>, email: i64, p: &ParsedMessage) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO email_fts_head (rowid, subject, addresses) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        email,
        crate::fulltext::index_text(p.subject.as_deref().unwrap_or("")),
        crate::fulltext::index_text(&address_text(p))
    ])?;
    Ok(())
}

/// Indexes the body text; done once, when the body is first stored.
pub(crate) fn index_body(tx: &Transaction<'_>, email: i64, p: &ParsedMessage) -> Result<()> {
    tx.prepare_cached("INSERT INTO email_fts_body (rowid, body) VALUES (?1, ?2)")?
        .execute(params![email, crate::fulltext::index_text(&p.body_text)])?;
    Ok(())
}

/// JWZ-style: a message joins the thread of any Message-ID it shares (its own, its
/// References, its In-Reply-To); threads it bridges are merged into the oldest. Replies
/// without any reference fall back to the base subject.
pub(crate) fn assign_thread(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    account: AccountId,
    p: &ParsedMessage,
) -> Result<i64> {
    let keys = mime::thread_keys(p);
    let mut found: BTreeSet<i64> = BTreeSet::new();
    {
        let mut st = tx.prepare_cached(
            "SELECT thread_id FROM thread_ref WHERE account_id = ?1 AND msgid = ?2",
        )?;
        for k in &keys {
            if let Some(t) = st
                .query_row(params![account.0, k], |r| r.get::<_, i64>(0))
                .optional()?
            {
                found.insert(t);
            }
        }
    }
    let base = p
        .subject
        .as_deref()
        .map(mime::base_subject)
        .unwrap_or_default();
    let is_reply = p
        .subject
        .as_deref()
        .map(|s| {
            let plain: String = s
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            !base.is_empty() && plain != base
        })
        .unwrap_or(false);
    if found.is_empty() && is_reply && p.in_reply_to.is_empty() && p.references.is_empty() {
        let t: Option<i64> = tx
            .prepare_cached(
                "SELECT thread_id FROM thread_subject WHERE account_id = ?1 AND subject = ?2",
            )?
            .query_row(params![account.0, base], |r| r.get(0))
            .optional()?;
        found.extend(t);
    }
    let thread = match found.first().copied() {
        Some(t) => {
            for other in found.iter().skip(1) {
                merge_thread(tx, log, *other, t)?;
            }
            log.record(tx, ObjectType::Thread, t, ChangeOp::Updated)?;
            t
        }
        None => {
            tx.prepare_cached("INSERT INTO thread (account_id) VALUES (?1)")?
                .execute([account.0])?;
            let t = tx.last_insert_rowid();
            log.record(tx, ObjectType::Thread, t, ChangeOp::Created)?;
            t
        }
    };
    let mut ins = tx.prepare_cached(
        "INSERT INTO thread_ref (account_id, msgid, thread_id) VALUES (?1, ?2, ?3) \
         ON CONFLICT (account_id, msgid) DO UPDATE SET thread_id = excluded.thread_id",
    )?;
    for k in &keys {
        ins.execute(params![account.0, k, thread])?;
    }
    if !base.is_empty() {
        tx.prepare_cached(
            "INSERT INTO thread_subject (account_id, subject, thread_id) VALUES (?1, ?2, ?3) \
             ON CONFLICT (account_id, subject) DO UPDATE SET thread_id = excluded.thread_id",
        )?
        .execute(params![account.0, base, thread])?;
    }
    Ok(thread)
}

/// Gmail: an Email Tidings stored before the server named it (a draft, an import or a
/// Sent copy APPENDed by the outbox: its identity is its header hash) becomes the Email of
/// this X-GM-MSGID when Gmail shows the same header under it, instead of a second Email.
fn adopt_for_gmail(
    tx: &Transaction<'_>,
    account: AccountId,
    header_hash: &str,
    g: GmailIds,
) -> Result<Option<i64>> {
    let found: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM email WHERE account_id = ?1 AND identity = ?2 \
             AND gm_msgid IS NULL ORDER BY orphaned DESC, id LIMIT 1",
        )?
        .query_row(params![account.0, format!("h:{header_hash}")], |r| r.get(0))
        .optional()?;
    if let Some(e) = found {
        tx.prepare_cached(
            "UPDATE email SET identity = ?2, gm_msgid = ?3, gm_thrid = ?4 WHERE id = ?1",
        )?
        .execute(params![
            e,
            gmail_identity(g.msgid),
            g.msgid as i64,
            g.thrid.map(|t| t as i64)
        ])?;
    }
    Ok(found)
}

/// The thread of Gmail's conversation `thrid`: the one its other Emails are in, else new.
fn gmail_thread(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    account: AccountId,
    thrid: u64,
) -> Result<i64> {
    let found: Option<i64> = tx
        .prepare_cached(
            "SELECT thread_id FROM email WHERE account_id = ?1 AND gm_thrid = ?2 LIMIT 1",
        )?
        .query_row(params![account.0, thrid as i64], |r| r.get(0))
        .optional()?;
    Ok(match found {
        Some(t) => {
            log.record(tx, ObjectType::Thread, t, ChangeOp::Updated)?;
            t
        }
        None => {
            tx.prepare_cached("INSERT INTO thread (account_id) VALUES (?1)")?
                .execute([account.0])?;
            let t = tx.last_insert_rowid();
            log.record(tx, ObjectType::Thread, t, ChangeOp::Created)?;
            t
        }
    })
}

fn merge_thread(tx: &Transaction<'_>, log: &mut ChangeLog, from: i64, into: i64) -> Result<()> {
    let moved: Vec<i64> = {
        let mut st =
            tx.prepare_cached("UPDATE email SET thread_id = ?2 WHERE thread_id = ?1 RETURNING id")?;
        let rows = st.query_map(params![from, into], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    for e in moved {
        log.record(tx, ObjectType::Email, e, ChangeOp::Updated)?;
    }
    tx.prepare_cached("UPDATE thread_ref SET thread_id = ?2 WHERE thread_id = ?1")?
        .execute(params![from, into])?;
    tx.prepare_cached("UPDATE thread_subject SET thread_id = ?2 WHERE thread_id = ?1")?
        .execute(params![from, into])?;
    tx.prepare_cached("DELETE FROM thread WHERE id = ?1")?
        .execute([from])?;
    log.record(tx, ObjectType::Thread, from, ChangeOp::Destroyed)?;
    Ok(())
}

/// `new_blobs[i]` / `body_blobs[i]` are the ids of the raw messages of `ch.new[i]` /
/// `ch.bodies[i]`, already written to the blob store by the caller (outside the lock).
pub(crate) fn apply_mailbox_changes(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    mailbox: MailboxId,
    ch: MailboxChanges,
    new_blobs: &[Option<String>],
    body_blobs: &[String],
) -> Result<State> {
    let tx = c.transaction()?;
    let mut log = ChangeLog::new(account);
    let (stored_validity, owner): (u32, i64) = tx
        .query_row(
            "SELECT uidvalidity, account_id FROM mailbox WHERE id = ?1",
            [mailbox.0],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("mailbox {mailbox}")))?;
    if owner != account.0 {
        return Err(Error::Corrupt(format!(
            "mailbox {mailbox} is not in account {account}"
        )));
    }
    let v = ch.uidvalidity;
    if stored_validity != 0 && stored_validity != v.0 {
        // The sync resets first; applying UIDs of another epoch would corrupt.
        return Err(Error::UidValidityChanged {
            mailbox,
            stored: UidValidity(stored_validity),
            given: v,
        });
    }
    if stored_validity == 0 {
        tx.execute(
            "UPDATE mailbox SET uidvalidity = ?2 WHERE id = ?1",
            params![mailbox.0, v.0],
        )?;
    }

    if !ch.expunged.is_empty() {
        detach_copies(&tx, &mut log, mailbox.0, Some(&ch.expunged))?;
    }
    // --- write-back: pending local changes stay on top of what the server reports.
    let pending = super::outbox::has_pending(&tx, account)?;
    // push: new mail in Sent or Drafts is not a delivery.
    let delivery_box = !ch.new.is_empty() && {
        let role: Option<String> = tx
            .prepare_cached("SELECT role FROM mailbox WHERE id = ?1")?
            .query_row([mailbox.0], |r| r.get(0))?;
        !matches!(role.as_deref(), Some("sent" | "drafts"))
    };

    let gmail: HashMap<u32, GmailIds> = ch.gmail.iter().map(|(u, g)| (u.0, *g)).collect();
    let mut max_uid = 0u32;
    for (i, n) in ch.new.iter().enumerate() {
        max_uid = max_uid.max(n.uid.0);
        let exists: Option<i64> = tx
            .prepare_cached("SELECT email_id FROM copy WHERE mailbox_id = ?1 AND uid = ?2")?
            .query_row(params![mailbox.0, n.uid.0], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            // Fetched again after a cut or crash: the stored copy stands.
            continue;
        }
        // --- write-back: a copy the user removed (pending on the server) stays removed.
        if pending && super::outbox::tombstoned(&tx, mailbox.0, n.uid.0)? {
            continue;
        }
        let gm = gmail.get(&n.uid.0).copied();
        let identity = match (&gm, &n.server_email_id) {
            (Some(g), _) => gmail_identity(g.msgid),
            (None, Some(e)) => format!("e:{e}"),
            (None, None) => format!("h:{}", n.header_hash),
        };
        let existing: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM email WHERE account_id = ?1 AND identity = ?2 \
                 ORDER BY orphaned DESC, id LIMIT 1",
            )?
            .query_row(params![account.0, identity], |r| r.get(0))
            .optional()?;
        let existing = match (existing, gm) {
            (None, Some(g)) => adopt_for_gmail(&tx, account, &n.header_hash, g)?,
            (e, _) => e,
        };
        let email = match existing {
            Some(e) => {
                tx.prepare_cached("UPDATE email SET orphaned = 0 WHERE id = ?1")?
                    .execute([e])?;
                log.record(&tx, ObjectType::Email, e, ChangeOp::Updated)?;
                e
            }
            None => {
                // Gmail decides its conversations (X-GM-THRID): they are taken as they are,
                // not rebuilt from headers.
                let thread = match gm.and_then(|g| g.thrid) {
                    Some(t) => gmail_thread(&tx, &mut log, account, t)?,
                    None => assign_thread(&tx, &mut log, account, &n.parsed)?,
                };
                tx.prepare_cached(
                    "INSERT INTO email (account_id, identity, thread_id, size, received_at, \
                     blob_by_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    account.0,
                    identity,
                    thread,
                    n.size,
                    n.internal_date,
                    // Created from its header alone: its blobId cannot be the content
                    // address (see migration v3 in migrate.rs).
                    n.raw.is_none()
                ])?;
                let e = tx.last_insert_rowid();
                if let Some(g) = gm {
                    tx.prepare_cached(
                        "UPDATE email SET gm_msgid = ?2, gm_thrid = ?3 WHERE id = ?1",
                    )?
                    .execute(params![
                        e,
                        g.msgid as i64,
                        g.thrid.map(|t| t as i64)
                    ])?;
                }
                write_metadata(&tx, e, &n.parsed)?;
                index_head(&tx, e, &n.parsed)?;
                if n.raw.is_some() {
                    index_body(&tx, e, &n.parsed)?;
                }
                log.record(&tx, ObjectType::Email, e, ChangeOp::Created)?;
                // RFC 8621 1.5: a delivery is new mail, not a draft or a sent copy.
                if delivery_box && !n.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Draft")) {
                    log.delivered(&tx)?;
                }
                e
            }
        };
        if let (Some(raw), Some(Some(blob))) = (&n.raw, new_blobs.get(i)) {
            record_blob(&tx, blob, raw.len())?;
            tx.prepare_cached("UPDATE email SET blob_id = ?2 WHERE id = ?1 AND blob_id IS NULL")?
                .execute(params![email, blob])?;
        }
        tx.prepare_cached(
            "INSERT INTO copy (mailbox_id, uid, email_id, flags, modseq, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, (SELECT received_at FROM email WHERE id = ?3))",
        )?
        .execute(params![
            mailbox.0,
            n.uid.0,
            email,
            if pending {
                super::outbox::overlay_flags(&tx, email, join_flags(&n.flags))?
            } else {
                join_flags(&n.flags)
            },
            n.modseq.0 as i64
        ])?;
        refresh_keywords(&tx, email)?;
        log.record(&tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Updated)?;
    }

    for l in &ch.links {
        max_uid = max_uid.max(l.uid.0);
        let exists = tx
            .prepare_cached("SELECT 1 FROM copy WHERE mailbox_id = ?1 AND uid = ?2")?
            .exists(params![mailbox.0, l.uid.0])?;
        if exists || (pending && super::outbox::tombstoned(&tx, mailbox.0, l.uid.0)?) {
            continue;
        }
        let email: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM email WHERE account_id = ?1 AND identity = ?2 \
                 ORDER BY orphaned DESC, id LIMIT 1",
            )?
            .query_row(params![account.0, gmail_identity(l.msgid)], |r| r.get(0))
            .optional()?;
        let Some(email) = email else {
            continue;
        };
        tx.prepare_cached("UPDATE email SET orphaned = 0 WHERE id = ?1")?
            .execute([email])?;
        tx.prepare_cached(
            "INSERT INTO copy (mailbox_id, uid, email_id, flags, modseq, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, (SELECT received_at FROM email WHERE id = ?3))",
        )?
        .execute(params![
            mailbox.0,
            l.uid.0,
            email,
            if pending {
                super::outbox::overlay_flags(&tx, email, join_flags(&l.flags))?
            } else {
                join_flags(&l.flags)
            },
            l.modseq.0 as i64
        ])?;
        refresh_keywords(&tx, email)?;
        log.record(&tx, ObjectType::Email, email, ChangeOp::Updated)?;
        log.record(&tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Updated)?;
    }

    for (b, blob) in ch.bodies.iter().zip(body_blobs) {
        let row: Option<(i64, Option<String>)> = tx
            .prepare_cached(
                "SELECT e.id, e.blob_id FROM copy c JOIN email e ON e.id = c.email_id \
                 WHERE c.mailbox_id = ?1 AND c.uid = ?2",
            )?
            .query_row(params![mailbox.0, b.uid.0], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((email, None)) = row else {
            // Expunged meanwhile, or the body is already stored through another copy.
            continue;
        };
        record_blob(&tx, blob, b.raw.len())?;
        tx.prepare_cached("UPDATE email SET blob_id = ?2, size = ?3 WHERE id = ?1")?
            .execute(params![email, blob, b.raw.len() as i64])?;
        write_metadata(&tx, email, &b.parsed)?;
        index_body(&tx, email, &b.parsed)?;
        log.record(&tx, ObjectType::Email, email, ChangeOp::Updated)?;
    }

    for f in &ch.flags {
        let mut flags = join_flags(&f.flags);
        if pending {
            flags = super::outbox::overlay_copy_flags(&tx, mailbox.0, f.uid.0, flags)?;
        }
        let row: Option<i64> = tx
            .prepare_cached(
                "UPDATE copy SET flags = ?3, modseq = ?4 WHERE mailbox_id = ?1 AND uid = ?2 \
                 AND flags != ?3 RETURNING email_id",
            )?
            .query_row(params![mailbox.0, f.uid.0, flags, f.modseq.0 as i64], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(email) = row
            && refresh_keywords(&tx, email)?
        {
            log.record(&tx, ObjectType::Email, email, ChangeOp::Updated)?;
            log.record(&tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Updated)?;
        }
    }

    if !ch.pop3_uidls.is_empty() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut st = tx.prepare_cached(
            "INSERT OR IGNORE INTO pop3_message (account_id, uidl, uid, retrieved_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (uid, uidl) in &ch.pop3_uidls {
            st.execute(params![account.0, uidl, uid.0, now])?;
        }
    }

    let seen_next = if max_uid > 0 {
        max_uid.saturating_add(1)
    } else {
        0
    };
    let uidnext = ch.uidnext.map(|u| u.0).unwrap_or(0).max(seen_next);
    if uidnext > 0 {
        tx.prepare_cached("UPDATE mailbox SET uidnext = max(uidnext, ?2) WHERE id = ?1")?
            .execute(params![mailbox.0, uidnext])?;
    }
    if let Some(m) = ch.highestmodseq {
        tx.prepare_cached("UPDATE mailbox SET highestmodseq = ?2 WHERE id = ?1")?
            .execute(params![mailbox.0, m.0 as i64])?;
    }
    if let Some(t) = ch.server_total {
        tx.prepare_cached("UPDATE mailbox SET server_total = ?2 WHERE id = ?1")?
            .execute(params![mailbox.0, t])?;
    }
    let state = log.state(&tx)?;
    log.commit(tx, committed)?;
    Ok(state)
}

/// Returns how many Emails were destroyed and the blobs no Email references any more (for
/// the caller to remove once this has committed).
pub(crate) fn collect_orphans(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
) -> Result<(usize, Vec<String>)> {
    let tx = c.transaction()?;
    let mut log = ChangeLog::new(account);
    let orphans: Vec<(i64, i64, Option<String>)> = {
        let mut st = tx.prepare(
            "SELECT id, thread_id, blob_id FROM email WHERE account_id = ?1 AND orphaned = 1 \
             AND NOT EXISTS (SELECT 1 FROM copy WHERE email_id = email.id)",
        )?;
        let rows = st.query_map([account.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut gone_blobs = Vec::new();
    for (email, thread, blob) in &orphans {
        tx.prepare_cached("DELETE FROM email_fts_head WHERE rowid = ?1")?
            .execute([email])?;
        tx.prepare_cached("DELETE FROM email_fts_body WHERE rowid = ?1")?
            .execute([email])?;
        tx.prepare_cached("DELETE FROM email WHERE id = ?1")?
            .execute([email])?;
        log.record(&tx, ObjectType::Email, *email, ChangeOp::Destroyed)?;
        if let Some(b) = blob {
            let n = tx
                .prepare_cached(&format!(
                    "DELETE FROM blob WHERE id = ?1 AND {}",
                    super::BLOB_UNREFERENCED
                ))?
                .execute([b])?;
            if n > 0 {
                gone_blobs.push(b.clone());
            }
        }
        let left: i64 = tx
            .prepare_cached("SELECT count(*) FROM email WHERE thread_id = ?1")?
            .query_row([thread], |r| r.get(0))?;
        if left == 0 {
            tx.prepare_cached("DELETE FROM thread WHERE id = ?1")?
                .execute([thread])?;
            tx.prepare_cached("DELETE FROM thread_ref WHERE thread_id = ?1")?
                .execute([thread])?;
            tx.prepare_cached("DELETE FROM thread_subject WHERE thread_id = ?1")?
                .execute([thread])?;
            log.record(&tx, ObjectType::Thread, *thread, ChangeOp::Destroyed)?;
        } else {
            log.record(&tx, ObjectType::Thread, *thread, ChangeOp::Updated)?;
        }
    }
    log.commit(tx, committed)?;
    Ok((orphans.len(), gone_blobs))
}
