//! Write-back: the user's changes applied to the store optimistically, each in the same
//! transaction as its outbox entry; the worker's side (next entries, completion, refusal
//! with revert); and the hooks the sync's write paths call so a pass neither undoes nor
//! re-applies a pending change (docs/design/writeback.md).

use super::write::{
    ChangeLog, Committed, assign_thread, id_list, index_body, index_head, join_flags, record_blob,
    refresh_keywords, split_flags, write_metadata,
};
use super::*;
use crate::mailrows::{apply_flag_ops, check_leaf, header_block, mailbox_move, merge_flag_ops};
use crate::model::*;
use crate::outbox::*;
use crate::prelude::*;
use crate::wake::Queue;
use crate::{Error, Result};
use mail_types::{
    AccountId, EmailId, MailboxId, State, imap_flag_to_keyword, keyword_to_imap_flag,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Confirmed removals are remembered this long, for a sync pass that listed the UID just
/// before the server expunged it.
const TOMBSTONE_KEEP_SECS: i64 = 600;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn to_json(op: &OutboxOp) -> Result<String> {
    serde_json::to_string(op).map_err(|e| Error::Corrupt(format!("outbox payload: {e}")))
}

fn from_json(s: &str) -> Result<OutboxOp> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt(format!("outbox payload: {e}")))
}

// --- hooks for the sync's write paths -----------------------------------------------------

pub(crate) fn has_pending(tx: &Transaction<'_>, account: AccountId) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM outbox WHERE account_id = ?1 LIMIT 1")?
        .exists([account.0])?
        || tx
            .prepare_cached(
                "SELECT 1 FROM outbox_tombstone t JOIN mailbox m ON m.id = t.mailbox_id \
                 WHERE m.account_id = ?1 LIMIT 1",
            )?
            .exists([account.0])?)
}

pub(crate) fn mailbox_ops_pending(tx: &Transaction<'_>, account: AccountId) -> Result<bool> {
    Ok(tx
        .prepare_cached(
            "SELECT 1 FROM outbox WHERE account_id = ?1 AND kind IN \
             ('create_mailbox', 'rename_mailbox', 'delete_mailbox', 'subscribe') LIMIT 1",
        )?
        .exists([account.0])?)
}

pub(crate) fn tombstoned(tx: &Transaction<'_>, mailbox: i64, uid: u32) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM outbox_tombstone WHERE mailbox_id = ?1 AND uid = ?2")?
        .exists(params![mailbox, uid])?)
}

/// The server's flags of a copy of `email` with the pending flag changes on top.
pub(crate) fn overlay_flags(tx: &Transaction<'_>, email: i64, flags: String) -> Result<String> {
    let mut st = tx.prepare_cached(
        "SELECT payload FROM outbox WHERE email_id = ?1 AND kind = 'flags' ORDER BY id",
    )?;
    let rows = st.query_map([email], |r| r.get::<_, String>(0))?;
    let mut out = flags;
    for r in rows {
        if let OutboxOp::Flags { add, remove } = from_json(&r?)? {
            out = apply_flag_ops(&out, &add, &remove);
        }
    }
    Ok(out)
}

pub(crate) fn overlay_copy_flags(
    tx: &Transaction<'_>,
    mailbox: i64,
    uid: u32,
    flags: String,
) -> Result<String> {
    let email: Option<i64> = tx
        .prepare_cached("SELECT email_id FROM copy WHERE mailbox_id = ?1 AND uid = ?2")?
        .query_row(params![mailbox, uid], |r| r.get(0))
        .optional()?;
    match email {
        Some(e) => overlay_flags(tx, e, flags),
        None => Ok(flags),
    }
}

// --- the user's changes -------------------------------------------------------------------

fn account_kind(tx: &Transaction<'_>, account: AccountId) -> Result<String> {
    tx.prepare_cached("SELECT kind FROM account WHERE id = ?1")?
        .query_row([account.0], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("account {account}")))
}

/// Queues an entry unless the account is POP3 (its changes stay local).
fn enqueue(
    tx: &Transaction<'_>,
    local_only: bool,
    account: AccountId,
    object: Option<i64>,
    op: &OutboxOp,
) -> Result<Option<i64>> {
    if local_only {
        return Ok(None);
    }
    tx.prepare_cached(
        "INSERT INTO outbox (account_id, kind, email_id, payload, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![account.0, op.kind(), object, to_json(op)?, now()])?;
    Ok(Some(tx.last_insert_rowid()))
}

/// Stores the final payload of a just-queued entry (its placeholder UID derives from its id).
fn rewrite(tx: &Transaction<'_>, entry: Option<i64>, op: &OutboxOp) -> Result<()> {
    if let Some(id) = entry {
        tx.prepare_cached("UPDATE outbox SET payload = ?2 WHERE id = ?1")?
            .execute(params![id, to_json(op)?])?;
    }
    Ok(())
}

fn set_payload(tx: &Transaction<'_>, id: i64, op: &OutboxOp) -> Result<()> {
    tx.prepare_cached("UPDATE outbox SET payload = ?2, rev = rev + 1 WHERE id = ?1")?
        .execute(params![id, to_json(op)?])?;
    Ok(())
}

/// A flag change, coalesced into the Email's newest entry when that is a flag change too.
fn enqueue_flags(
    tx: &Transaction<'_>,
    local_only: bool,
    account: AccountId,
    email: i64,
    add: Vec<String>,
    remove: Vec<String>,
) -> Result<()> {
    if local_only {
        return Ok(());
    }
    let last: Option<(i64, String, String)> = tx
        .prepare_cached(
            "SELECT id, kind, payload FROM outbox WHERE email_id = ?1 AND account_id = ?2 \
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![email, account.0], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    if let Some((id, kind, payload)) = last
        && kind == "flags"
        && let OutboxOp::Flags {
            add: old_add,
            remove: old_remove,
        } = from_json(&payload)?
    {
        let (add, remove) = merge_flag_ops(old_add, old_remove, add, remove);
        return set_payload(tx, id, &OutboxOp::Flags { add, remove });
    }
    enqueue(
        tx,
        false,
        account,
        Some(email),
        &OutboxOp::Flags { add, remove },
    )?;
    Ok(())
}

#[derive(Clone)]
struct CopyRow {
    mailbox: i64,
    uid: i64,
    flags: String,
    modseq: i64,
}

fn copies_of(tx: &Transaction<'_>, email: i64) -> Result<Vec<CopyRow>> {
    let mut st = tx.prepare_cached(
        "SELECT mailbox_id, uid, flags, modseq FROM copy WHERE email_id = ?1 ORDER BY mailbox_id, uid",
    )?;
    let rows = st.query_map([email], |r| {
        Ok(CopyRow {
            mailbox: r.get(0)?,
            uid: r.get(1)?,
            flags: r.get(2)?,
            modseq: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn email_exists(tx: &Transaction<'_>, account: AccountId, email: i64) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM email WHERE id = ?1 AND account_id = ?2 AND orphaned = 0")?
        .exists(params![email, account.0])?)
}

fn mailbox_in_account(tx: &Transaction<'_>, account: AccountId, mailbox: i64) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM mailbox WHERE id = ?1 AND account_id = ?2")?
        .exists(params![mailbox, account.0])?)
}

fn tombstone(tx: &Transaction<'_>, mailbox: i64, uid: i64, entry: Option<i64>) -> Result<()> {
    if uid >= PLACEHOLDER_UID_BASE {
        return Ok(());
    }
    let Some(entry) = entry else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO outbox_tombstone (mailbox_id, uid, outbox_id) VALUES (?1, ?2, ?3) \
         ON CONFLICT (mailbox_id, uid) DO UPDATE SET outbox_id = excluded.outbox_id, done_at = NULL",
    )?
    .execute(params![mailbox, uid, entry])?;
    Ok(())
}

fn insert_copy(
    tx: &Transaction<'_>,
    mailbox: i64,
    uid: i64,
    email: i64,
    flags: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO copy (mailbox_id, uid, email_id, flags, modseq, received_at) \
         VALUES (?1, ?2, ?3, ?4, 0, (SELECT received_at FROM email WHERE id = ?3))",
    )?
    .execute(params![mailbox, uid, email, flags])?;
    Ok(())
}

fn delete_copy(tx: &Transaction<'_>, mailbox: i64, uid: i64) -> Result<bool> {
    Ok(tx
        .prepare_cached("DELETE FROM copy WHERE mailbox_id = ?1 AND uid = ?2")?
        .execute(params![mailbox, uid])?
        > 0)
}

/// Puts a copy that is to exist on the server once the entry is replayed: the placeholder
/// UID is derived from the entry id (unique, and never a server UID).
fn placeholder_for(entry: Option<i64>, tx: &Transaction<'_>) -> Result<i64> {
    match entry {
        Some(id) => Ok(PLACEHOLDER_UID_BASE + id),
        // POP3 (local only): a synthetic UID above every stored one, below the placeholders.
        None => Ok(tx
            .prepare_cached("SELECT coalesce(max(uid), 0) + 1 FROM copy WHERE uid < ?1")?
            .query_row([PLACEHOLDER_UID_BASE], |r| r.get(0))?),
    }
}

fn mark_orphan_if_empty(tx: &Transaction<'_>, email: i64) -> Result<()> {
    tx.prepare_cached(
        "UPDATE email SET orphaned = NOT EXISTS (SELECT 1 FROM copy WHERE email_id = ?1) WHERE id = ?1",
    )?
    .execute([email])?;
    Ok(())
}

fn patch_one(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    local_only: bool,
    account: AccountId,
    p: &EmailPatch,
) -> Result<Result<(), WriteRefusal>> {
    let email = p.email.0;
    if !email_exists(tx, account, email)? {
        return Ok(Err(WriteRefusal::NotFound));
    }
    for m in p.mailboxes_add.iter().chain(&p.mailboxes_remove) {
        if !mailbox_in_account(tx, account, m.0)? {
            return Ok(Err(WriteRefusal::Invalid(format!(
                "mailboxIds: no mailbox {}",
                m.0
            ))));
        }
    }
    let add: Vec<String> = p
        .keywords_add
        .iter()
        .map(|k| keyword_to_imap_flag(k))
        .collect();
    let remove: Vec<String> = p
        .keywords_remove
        .iter()
        .map(|k| keyword_to_imap_flag(k))
        .collect();

    // 1. Keywords: every copy, then one flag entry (coalesced).
    if !add.is_empty() || !remove.is_empty() {
        let mut changed = false;
        for c in copies_of(tx, email)? {
            let new = apply_flag_ops(&c.flags, &add, &remove);
            if new != c.flags {
                tx.prepare_cached("UPDATE copy SET flags = ?3 WHERE mailbox_id = ?1 AND uid = ?2")?
                    .execute(params![c.mailbox, c.uid, new])?;
                log.record(tx, ObjectType::Mailbox, c.mailbox, ChangeOp::Updated)?;
                changed = true;
            }
        }
        if changed {
            refresh_keywords(tx, email)?;
            log.record(tx, ObjectType::Email, email, ChangeOp::Updated)?;
            enqueue_flags(tx, local_only, account, email, add, remove)?;
        }
    }

    // 2. Mailboxes: removes paired with adds become moves, the rest copies or expunges.
    if p.mailboxes_add.is_empty() && p.mailboxes_remove.is_empty() {
        return Ok(Ok(()));
    }
    let copies = copies_of(tx, email)?;
    let held: BTreeSet<i64> = copies.iter().map(|c| c.mailbox).collect();
    let adds: Vec<i64> = p
        .mailboxes_add
        .iter()
        .map(|m| m.0)
        .filter(|m| !held.contains(m))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let removes: Vec<i64> = p
        .mailboxes_remove
        .iter()
        .map(|m| m.0)
        .filter(|m| held.contains(m) && !adds.contains(m))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let remaining = held.len() + adds.len() - removes.len();
    if remaining == 0 {
        return Ok(Err(WriteRefusal::Invalid(
            "mailboxIds: an Email must be in at least one mailbox".into(),
        )));
    }
    if let Some(all) = gmail_all_copy(tx, email, &copies)? {
        patch_gmail(
            tx, log, local_only, account, email, &copies, &all, &adds, &removes,
        )?;
        return Ok(Ok(()));
    }
    let mut removes_iter = removes.iter();
    let copies_left: Vec<&CopyRow> = copies
        .iter()
        .filter(|c| !removes.contains(&c.mailbox))
        .collect();
    for to in &adds {
        if let Some(from) = removes_iter.next() {
            // A move: every copy in `from` (normally one) goes to `to`.
            let in_from: Vec<&CopyRow> = copies.iter().filter(|c| c.mailbox == *from).collect();
            for (i, c) in in_from.iter().enumerate() {
                if i == 0 {
                    let mut op = OutboxOp::Move {
                        from: MailboxId(*from),
                        uid: c.uid,
                        to: MailboxId(*to),
                        placeholder: 0,
                        flags: c.flags.clone(),
                        modseq: c.modseq,
                    };
                    let entry = enqueue(tx, local_only, account, Some(email), &op)?;
                    let ph = placeholder_for(entry, tx)?;
                    if let OutboxOp::Move { placeholder, .. } = &mut op {
                        *placeholder = ph;
                    }
                    rewrite(tx, entry, &op)?;
                    delete_copy(tx, c.mailbox, c.uid)?;
                    tombstone(tx, c.mailbox, c.uid, entry)?;
                    insert_copy(tx, *to, ph, email, &c.flags)?;
                } else {
                    expunge_copy(tx, local_only, account, email, c)?;
                }
            }
            log.record(tx, ObjectType::Mailbox, *from, ChangeOp::Updated)?;
        } else {
            // A copy from a copy that stays.
            let Some(src) = copies_left.first() else {
                return Ok(Err(WriteRefusal::Invalid(
                    "mailboxIds: no source copy".into(),
                )));
            };
            let mut op = OutboxOp::Copy {
                from: MailboxId(src.mailbox),
                uid: src.uid,
                to: MailboxId(*to),
                placeholder: 0,
            };
            let entry = enqueue(tx, local_only, account, Some(email), &op)?;
            let ph = placeholder_for(entry, tx)?;
            if let OutboxOp::Copy { placeholder, .. } = &mut op {
                *placeholder = ph;
            }
            rewrite(tx, entry, &op)?;
            insert_copy(tx, *to, ph, email, &src.flags)?;
        }
        log.record(tx, ObjectType::Mailbox, *to, ChangeOp::Updated)?;
    }
    for from in removes_iter {
        for c in copies.iter().filter(|c| c.mailbox == *from) {
            expunge_copy(tx, local_only, account, email, c)?;
        }
        log.record(tx, ObjectType::Mailbox, *from, ChangeOp::Updated)?;
    }
    refresh_keywords(tx, email)?;
    mark_orphan_if_empty(tx, email)?;
    log.record(tx, ObjectType::Email, email, ChangeOp::Updated)?;
    Ok(Ok(()))
}

/// Gmail: the All Mail copy (with a server UID) of an Email synced the Gmail way, whose
/// mailboxes are then labels.
fn gmail_all_copy(tx: &Transaction<'_>, email: i64, copies: &[CopyRow]) -> Result<Option<CopyRow>> {
    let gmail = tx
        .prepare_cached("SELECT 1 FROM email WHERE id = ?1 AND gm_msgid IS NOT NULL")?
        .exists([email])?;
    if !gmail {
        return Ok(None);
    }
    for c in copies {
        if c.uid > 0
            && c.uid < PLACEHOLDER_UID_BASE
            && mailbox_role(tx, c.mailbox)?.as_deref() == Some("all")
        {
            return Ok(Some(c.clone()));
        }
    }
    Ok(None)
}

fn mailbox_role(tx: &Transaction<'_>, mailbox: i64) -> Result<Option<String>> {
    Ok(tx
        .prepare_cached("SELECT role FROM mailbox WHERE id = ?1")?
        .query_row([mailbox], |r| r.get(0))
        .optional()?
        .flatten())
}

/// The label a Gmail folder stands for, as X-GM-LABELS names it: the system labels by
/// their role (Gmail's `\\Inbox`, `\\Sent`, `\\Draft`, `\\Important`), a user label by its
/// folder's wire name.
fn gmail_label(tx: &Transaction<'_>, mailbox: i64) -> Result<String> {
    let (raw, role): (String, Option<String>) = tx
        .prepare_cached("SELECT raw_name, role FROM mailbox WHERE id = ?1")?
        .query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(match role.as_deref() {
        Some("inbox") => "\\Inbox".into(),
        Some("sent") => "\\Sent".into(),
        Some("drafts") => "\\Draft".into(),
        Some("important") => "\\Important".into(),
        _ => raw,
    })
}

/// A mailboxIds change of a Gmail message, done as Gmail's web client does it: a label
/// mailbox added or removed is a label added or removed on the All Mail copy (archive is
/// removing `\\Inbox`); Trash or Spam added is a MOVE of the All Mail copy there, which
/// takes the message out of every label (Gmail keeps nothing of Trash in All Mail). All
/// Mail itself is where every other message is: adding or removing it alone changes
/// nothing on Gmail, so it is not sent.
#[allow(clippy::too_many_arguments)]
fn patch_gmail(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    local_only: bool,
    account: AccountId,
    email: i64,
    copies: &[CopyRow],
    all: &CopyRow,
    adds: &[i64],
    removes: &[i64],
) -> Result<()> {
    for to in adds {
        if !matches!(mailbox_role(tx, *to)?.as_deref(), Some("trash" | "junk")) {
            continue;
        }
        let mut op = OutboxOp::Move {
            from: MailboxId(all.mailbox),
            uid: all.uid,
            to: MailboxId(*to),
            placeholder: 0,
            flags: all.flags.clone(),
            modseq: all.modseq,
        };
        let entry = enqueue(tx, local_only, account, Some(email), &op)?;
        let ph = placeholder_for(entry, tx)?;
        if let OutboxOp::Move { placeholder, .. } = &mut op {
            *placeholder = ph;
        }
        rewrite(tx, entry, &op)?;
        for c in copies.iter().filter(|c| c.mailbox != *to) {
            delete_copy(tx, c.mailbox, c.uid)?;
            tombstone(tx, c.mailbox, c.uid, entry)?;
            log.record(tx, ObjectType::Mailbox, c.mailbox, ChangeOp::Updated)?;
        }
        insert_copy(tx, *to, ph, email, &all.flags)?;
        log.record(tx, ObjectType::Mailbox, *to, ChangeOp::Updated)?;
        refresh_keywords(tx, email)?;
        mark_orphan_if_empty(tx, email)?;
        log.record(tx, ObjectType::Email, email, ChangeOp::Updated)?;
        return Ok(());
    }
    let mut add = Vec::new();
    let mut placeholders = Vec::new();
    for to in adds {
        if mailbox_role(tx, *to)?.as_deref() == Some("all") {
            continue;
        }
        add.push(gmail_label(tx, *to)?);
        placeholders.push(MailboxId(*to));
    }
    let mut remove = Vec::new();
    let mut removed = Vec::new();
    for from in removes {
        if matches!(
            mailbox_role(tx, *from)?.as_deref(),
            Some("all" | "trash" | "junk")
        ) {
            continue;
        }
        remove.push(gmail_label(tx, *from)?);
        for c in copies.iter().filter(|c| c.mailbox == *from) {
            removed.push(RemovedCopy {
                mailbox: MailboxId(c.mailbox),
                uid: c.uid,
                flags: c.flags.clone(),
                modseq: c.modseq,
            });
        }
    }
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    let mut op = OutboxOp::Labels {
        mailbox: MailboxId(all.mailbox),
        uid: all.uid,
        add,
        remove,
        placeholders: placeholders.clone(),
        placeholder: 0,
        removed: removed.clone(),
    };
    let entry = enqueue(tx, local_only, account, Some(email), &op)?;
    let ph = placeholder_for(entry, tx)?;
    if let OutboxOp::Labels { placeholder, .. } = &mut op {
        *placeholder = ph;
    }
    rewrite(tx, entry, &op)?;
    for m in &placeholders {
        insert_copy(tx, m.0, ph, email, &all.flags)?;
        log.record(tx, ObjectType::Mailbox, m.0, ChangeOp::Updated)?;
    }
    for r in &removed {
        delete_copy(tx, r.mailbox.0, r.uid)?;
        tombstone(tx, r.mailbox.0, r.uid, entry)?;
        log.record(tx, ObjectType::Mailbox, r.mailbox.0, ChangeOp::Updated)?;
    }
    refresh_keywords(tx, email)?;
    mark_orphan_if_empty(tx, email)?;
    log.record(tx, ObjectType::Email, email, ChangeOp::Updated)?;
    Ok(())
}

fn expunge_copy(
    tx: &Transaction<'_>,
    local_only: bool,
    account: AccountId,
    email: i64,
    c: &CopyRow,
) -> Result<()> {
    let op = OutboxOp::Expunge {
        mailbox: MailboxId(c.mailbox),
        uid: c.uid,
        flags: c.flags.clone(),
        modseq: c.modseq,
    };
    let entry = enqueue(tx, local_only, account, Some(email), &op)?;
    delete_copy(tx, c.mailbox, c.uid)?;
    tombstone(tx, c.mailbox, c.uid, entry)?;
    Ok(())
}

pub(crate) fn update_emails(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    patches: &[EmailPatch],
) -> Result<(Vec<Result<(), WriteRefusal>>, State)> {
    let tx = c.transaction()?;
    let local_only = account_kind(&tx, account)? == "pop3";
    let mut log = ChangeLog::new(account);
    if !local_only {
        log.queued(Queue::Outbox);
    }
    let mut out = Vec::with_capacity(patches.len());
    // Keyword-only patches of distinct Emails (marking 1,000 read) go through set-based
    // statements a run at a time; anything else one patch at a time, in order.
    let mut run: Vec<&EmailPatch> = Vec::new();
    let mut in_run: HashSet<i64> = HashSet::new();
    for p in patches {
        let flags_only = p.mailboxes_add.is_empty() && p.mailboxes_remove.is_empty();
        if flags_only && in_run.insert(p.email.0) {
            run.push(p);
            continue;
        }
        out.extend(patch_flags_batch(&tx, &mut log, local_only, account, &run)?);
        run.clear();
        in_run.clear();
        if flags_only {
            in_run.insert(p.email.0);
            run.push(p);
        } else {
            out.push(patch_one(&tx, &mut log, local_only, account, p)?);
        }
    }
    out.extend(patch_flags_batch(&tx, &mut log, local_only, account, &run)?);
    let state = log.state(&tx)?;
    log.commit(tx, committed)?;
    Ok((out, state))
}

/// Keyword changes of distinct Emails, the same result as [`patch_one`] for each: the
/// copies' flags and the Emails' keywords per row (cached statements), the change log and
/// the outbox entries in one statement per kind of row; a flag entry is still coalesced
/// into the Email's newest entry when that is a flag change too.
fn patch_flags_batch(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    local_only: bool,
    account: AccountId,
    run: &[&EmailPatch],
) -> Result<Vec<Result<(), WriteRefusal>>> {
    if run.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = run.iter().map(|p| p.email.0).collect();
    let all = id_list(&ids);
    let existing: HashSet<i64> = {
        let mut st = tx.prepare_cached(
            "SELECT id FROM email WHERE id IN (SELECT value FROM json_each(?1)) \
             AND account_id = ?2 AND orphaned = 0",
        )?;
        let rows = st.query_map(params![all, account.0], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut copies: HashMap<i64, Vec<(i64, i64, String)>> = HashMap::new();
    {
        let mut st = tx.prepare_cached(
            "SELECT email_id, mailbox_id, uid, flags FROM copy \
             WHERE email_id IN (SELECT value FROM json_each(?1)) ORDER BY email_id, mailbox_id, uid",
        )?;
        let mut rows = st.query([all])?;
        while let Some(r) = rows.next()? {
            copies
                .entry(r.get(0)?)
                .or_default()
                .push((r.get(1)?, r.get(2)?, r.get(3)?));
        }
    }
    let mut out = Vec::with_capacity(run.len());
    let mut changed: Vec<(i64, Vec<String>, Vec<String>)> = Vec::new();
    let mut mailboxes: BTreeSet<i64> = BTreeSet::new();
    {
        let mut set_flags =
            tx.prepare_cached("UPDATE copy SET flags = ?3 WHERE mailbox_id = ?1 AND uid = ?2")?;
        let mut set_keywords =
            tx.prepare_cached("UPDATE email SET keywords = ?2 WHERE id = ?1 AND keywords != ?2")?;
        for p in run {
            let email = p.email.0;
            if !existing.contains(&email) {
                out.push(Err(WriteRefusal::NotFound));
                continue;
            }
            out.push(Ok(()));
            let add: Vec<String> = p
                .keywords_add
                .iter()
                .map(|k| keyword_to_imap_flag(k))
                .collect();
            let remove: Vec<String> = p
                .keywords_remove
                .iter()
                .map(|k| keyword_to_imap_flag(k))
                .collect();
            if add.is_empty() && remove.is_empty() {
                continue;
            }
            let mut any = false;
            let mut keywords: BTreeSet<String> = BTreeSet::new();
            for (mailbox, uid, flags) in copies.get(&email).map(Vec::as_slice).unwrap_or(&[]) {
                let new = apply_flag_ops(flags, &add, &remove);
                if new != *flags {
                    set_flags.execute(params![mailbox, uid, new])?;
                    mailboxes.insert(*mailbox);
                    any = true;
                }
                keywords.extend(
                    split_flags(&new)
                        .iter()
                        .filter_map(|f| imap_flag_to_keyword(f)),
                );
            }
            if any {
                // As refresh_keywords: the union of the copies' flags.
                let json =
                    serde_json::to_string(&keywords).map_err(|e| Error::Corrupt(e.to_string()))?;
                set_keywords.execute(params![email, json])?;
                changed.push((email, add, remove));
            }
        }
    }
    let mailboxes: Vec<i64> = mailboxes.into_iter().collect();
    log.record_many(tx, ObjectType::Mailbox, &mailboxes, ChangeOp::Updated)?;
    let emails: Vec<i64> = changed.iter().map(|c| c.0).collect();
    log.record_many(tx, ObjectType::Email, &emails, ChangeOp::Updated)?;
    if local_only || changed.is_empty() {
        return Ok(out);
    }
    // The outbox: Emails whose newest entry is a flag change get it coalesced (as
    // enqueue_flags does); the others one new entry each, one INSERT per flag set.
    let pending: HashSet<i64> = {
        let mut st = tx.prepare_cached(
            "SELECT DISTINCT email_id FROM outbox WHERE email_id IN (SELECT value FROM json_each(?1)) \
             AND account_id = ?2",
        )?;
        let rows = st.query_map(params![id_list(&emails), account.0], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut fresh: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (email, add, remove) in changed {
        if pending.contains(&email) {
            enqueue_flags(tx, false, account, email, add, remove)?;
        } else {
            fresh
                .entry(to_json(&OutboxOp::Flags { add, remove })?)
                .or_default()
                .push(email);
        }
    }
    let mut st = tx.prepare_cached(
        "INSERT INTO outbox (account_id, kind, email_id, payload, created_at) \
         SELECT ?1, 'flags', value, ?2, ?3 FROM json_each(?4) ORDER BY key",
    )?;
    for (payload, emails) in fresh {
        st.execute(params![account.0, payload, now(), id_list(&emails)])?;
    }
    Ok(out)
}

pub(crate) fn destroy_emails(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    ids: &[EmailId],
) -> Result<Vec<Result<(), WriteRefusal>>> {
    let tx = c.transaction()?;
    let local_only = account_kind(&tx, account)? == "pop3";
    let mut log = ChangeLog::new(account);
    if !local_only {
        log.queued(Queue::Outbox);
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if !email_exists(&tx, account, id.0)? {
            out.push(Err(WriteRefusal::NotFound));
            continue;
        }
        for c in copies_of(&tx, id.0)? {
            expunge_copy(&tx, local_only, account, id.0, &c)?;
            log.record(&tx, ObjectType::Mailbox, c.mailbox, ChangeOp::Updated)?;
        }
        // Destroyed for JMAP at once: collect_orphans (run by the caller right after this
        // commits) removes the row; the copies' expunges are in the outbox.
        tx.prepare_cached("UPDATE email SET orphaned = 1 WHERE id = ?1")?
            .execute([id.0])?;
        log.record(&tx, ObjectType::Email, id.0, ChangeOp::Updated)?;
        out.push(Ok(()));
    }
    log.commit(tx, committed)?;
    Ok(out)
}

pub(crate) fn append_email(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    req: &AppendRequest,
    blob_id: &str,
    parsed: &ParsedMessage,
) -> Result<(Result<EmailId, WriteRefusal>, State)> {
    let tx = c.transaction()?;
    if !mailbox_in_account(&tx, account, req.mailbox.0)? {
        return Ok((
            Err(WriteRefusal::Invalid("mailboxIds: no such mailbox".into())),
            State(0),
        ));
    }
    let local_only = account_kind(&tx, account)? == "pop3";
    let mut log = ChangeLog::new(account);
    if !local_only {
        log.queued(Queue::Outbox);
    }
    let header_hash = mime::blob_id(header_block(&req.raw));
    let identity = format!("h:{header_hash}");
    let thread = assign_thread(&tx, &mut log, account, parsed)?;
    tx.prepare_cached(
        "INSERT INTO email (account_id, identity, thread_id, size, received_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        account.0,
        identity,
        thread,
        req.raw.len() as i64,
        req.received_at
    ])?;
    let email = tx.last_insert_rowid();
    write_metadata(&tx, email, parsed)?;
    index_head(&tx, email, parsed)?;
    index_body(&tx, email, parsed)?;
    record_blob(&tx, blob_id, req.raw.len())?;
    tx.prepare_cached("UPDATE email SET blob_id = ?2 WHERE id = ?1")?
        .execute(params![email, blob_id])?;
    log.record(&tx, ObjectType::Email, email, ChangeOp::Created)?;
    let flags: Vec<String> = req
        .keywords
        .iter()
        .map(|k| keyword_to_imap_flag(k))
        .collect();
    let op = OutboxOp::Append {
        mailbox: req.mailbox,
        placeholder: 0,
        blob_id: blob_id.to_string(),
        flags: flags.clone(),
        received_at: req.received_at,
        header_hash,
        size: req.raw.len() as i64,
        uidnext_before: None,
    };
    let entry = enqueue(&tx, local_only, account, Some(email), &op)?;
    let ph = placeholder_for(entry, &tx)?;
    let mut op = op;
    if let OutboxOp::Append { placeholder, .. } = &mut op {
        *placeholder = ph;
    }
    rewrite(&tx, entry, &op)?;
    insert_copy(&tx, req.mailbox.0, ph, email, &join_flags(&flags))?;
    refresh_keywords(&tx, email)?;
    log.record(&tx, ObjectType::Mailbox, req.mailbox.0, ChangeOp::Updated)?;
    let state = log.state(&tx)?;
    log.commit(tx, committed)?;
    Ok((Ok(EmailId(email)), state))
}

struct MailboxRow {
    raw_name: String,
    name: String,
    delimiter: Option<String>,
    parent: Option<i64>,
    role: Option<String>,
}

fn mailbox_row(tx: &Transaction<'_>, account: AccountId, id: i64) -> Result<Option<MailboxRow>> {
    Ok(tx
        .prepare_cached(
            "SELECT raw_name, name, delimiter, parent_id, role FROM mailbox \
             WHERE id = ?1 AND account_id = ?2",
        )?
        .query_row(params![id, account.0], |r| {
            Ok(MailboxRow {
                raw_name: r.get(0)?,
                name: r.get(1)?,
                delimiter: r.get(2)?,
                parent: r.get(3)?,
                role: r.get(4)?,
            })
        })
        .optional()?)
}

/// The account's hierarchy delimiter (from its stored mailboxes; "/" when none says).
fn delimiter(tx: &Transaction<'_>, account: AccountId) -> Result<String> {
    let d: Option<String> = tx
        .prepare_cached(
            "SELECT delimiter FROM mailbox WHERE account_id = ?1 AND delimiter IS NOT NULL \
             AND delimiter != '' ORDER BY raw_name = 'INBOX' DESC LIMIT 1",
        )?
        .query_row([account.0], |r| r.get(0))
        .optional()?;
    Ok(d.unwrap_or_else(|| "/".into()))
}

/// The full (decoded) name of a child `leaf` of `parent`.
fn full_name(
    tx: &Transaction<'_>,
    account: AccountId,
    parent: Option<i64>,
    leaf: &str,
    delim: &str,
) -> Result<Result<String, WriteRefusal>> {
    Ok(match parent {
        None => Ok(leaf.to_string()),
        Some(p) => match mailbox_row(tx, account, p)? {
            None => Err(WriteRefusal::Invalid("parentId: no such mailbox".into())),
            Some(row) => Ok(format!("{}{delim}{leaf}", row.name)),
        },
    })
}

fn name_taken(tx: &Transaction<'_>, account: AccountId, name: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM mailbox WHERE account_id = ?1 AND name = ?2")?
        .exists(params![account.0, name])?)
}

pub(crate) fn create_mailbox(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    leaf: &str,
    parent: Option<MailboxId>,
    subscribed: bool,
) -> Result<Result<MailboxId, WriteRefusal>> {
    let tx = c.transaction()?;
    let local_only = account_kind(&tx, account)? == "pop3";
    if local_only {
        return Ok(Err(WriteRefusal::Forbidden(
            "a POP3 account has only its INBOX".into(),
        )));
    }
    let delim = delimiter(&tx, account)?;
    if let Err(e) = check_leaf(leaf, &delim) {
        return Ok(Err(e));
    }
    let name = match full_name(&tx, account, parent.map(|p| p.0), leaf, &delim)? {
        Ok(n) => n,
        Err(e) => return Ok(Err(e)),
    };
    if name_taken(&tx, account, &name)? || name.eq_ignore_ascii_case("INBOX") {
        return Ok(Err(WriteRefusal::AlreadyExists));
    }
    let mut log = ChangeLog::new(account);
    if !local_only {
        log.queued(Queue::Outbox);
    }
    // The wire name is set when the server confirmed the CREATE; until then a local one
    // that no server name can equal (a NUL byte).
    let pending_raw = format!("\u{0}pending:{name}");
    tx.prepare_cached(
        "INSERT INTO mailbox (account_id, raw_name, name, parent_id, delimiter, subscribed) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        account.0,
        pending_raw,
        name,
        parent.map(|p| p.0),
        delim,
        subscribed
    ])?;
    let id = tx.last_insert_rowid();
    log.record(&tx, ObjectType::Mailbox, id, ChangeOp::Created)?;
    enqueue(
        &tx,
        false,
        account,
        Some(id),
        &OutboxOp::CreateMailbox {
            mailbox: MailboxId(id),
            parent,
            leaf: leaf.to_string(),
        },
    )?;
    if subscribed {
        enqueue(
            &tx,
            false,
            account,
            Some(id),
            &OutboxOp::Subscribe {
                mailbox: MailboxId(id),
                subscribed: true,
            },
        )?;
    }
    log.commit(tx, committed)?;
    Ok(Ok(MailboxId(id)))
}

pub(crate) fn update_mailbox(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    id: MailboxId,
    patch: &MailboxPatch,
) -> Result<Result<(), WriteRefusal>> {
    let tx = c.transaction()?;
    let local_only = account_kind(&tx, account)? == "pop3";
    let Some(row) = mailbox_row(&tx, account, id.0)? else {
        return Ok(Err(WriteRefusal::NotFound));
    };
    let mut log = ChangeLog::new(account);
    if !local_only {
        log.queued(Queue::Outbox);
    }
    let delim = row
        .delimiter
        .clone()
        .filter(|d| !d.is_empty())
        .map(Ok)
        .unwrap_or_else(|| delimiter(&tx, account))?;
    let moved = match mailbox_move(
        &row.name,
        row.parent,
        &row.raw_name,
        &delim,
        local_only,
        patch,
    ) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    if let Some((leaf, parent)) = moved {
        // A mailbox cannot move under itself or one of its descendants.
        let mut up = parent;
        let mut steps = 0;
        while let Some(p) = up {
            if p == id.0 || steps > 1000 {
                return Ok(Err(WriteRefusal::Invalid(
                    "parentId: a mailbox cannot be its own ancestor".into(),
                )));
            }
            up = mailbox_row(&tx, account, p)?.and_then(|r| r.parent);
            steps += 1;
        }
        let name = match full_name(&tx, account, parent, &leaf, &delim)? {
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        if name_taken(&tx, account, &name)? {
            return Ok(Err(WriteRefusal::AlreadyExists));
        }
        tx.prepare_cached("UPDATE mailbox SET name = ?2, parent_id = ?3 WHERE id = ?1")?
            .execute(params![id.0, name, parent])?;
        log.record(&tx, ObjectType::Mailbox, id.0, ChangeOp::Updated)?;
        let moved: Vec<i64> = {
            let mut st = tx.prepare_cached(
                "UPDATE mailbox SET name = ?3 || substr(name, length(?2) + 1) \
                 WHERE account_id = ?1 AND substr(name, 1, length(?2)) = ?2 RETURNING id",
            )?;
            let rows = st.query_map(
                params![
                    account.0,
                    format!("{}{delim}", row.name),
                    format!("{name}{delim}")
                ],
                |r| r.get(0),
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        for m in moved {
            log.record(&tx, ObjectType::Mailbox, m, ChangeOp::Updated)?;
        }
        enqueue(
            &tx,
            false,
            account,
            Some(id.0),
            &OutboxOp::RenameMailbox {
                mailbox: id,
                old_raw: row.raw_name.clone(),
                old_name: row.name.clone(),
                old_parent: row.parent.map(MailboxId),
                parent: parent.map(MailboxId),
                leaf,
            },
        )?;
    }
    if let Some(s) = patch.subscribed {
        let n = tx
            .prepare_cached(
                "UPDATE mailbox SET subscribed = ?2 WHERE id = ?1 AND subscribed != ?2",
            )?
            .execute(params![id.0, s])?;
        if n > 0 {
            log.record(&tx, ObjectType::Mailbox, id.0, ChangeOp::Updated)?;
            enqueue(
                &tx,
                local_only,
                account,
                Some(id.0),
                &OutboxOp::Subscribe {
                    mailbox: id,
                    subscribed: s,
                },
            )?;
        }
    }
    if let Some(o) = patch.sort_order {
        let n = tx
            .prepare_cached(
                "INSERT INTO mailbox_sort (mailbox_id, sort_order) VALUES (?1, ?2) \
                 ON CONFLICT (mailbox_id) DO UPDATE SET sort_order = excluded.sort_order \
                 WHERE sort_order != excluded.sort_order",
            )?
            .execute(params![id.0, o])?;
        if n > 0 {
            log.record(&tx, ObjectType::Mailbox, id.0, ChangeOp::Updated)?;
        }
    }
    log.commit(tx, committed)?;
    Ok(Ok(()))
}

/// Returns whether it was destroyed; Emails left in no mailbox become orphans (the caller
/// collects them).
pub(crate) fn destroy_mailbox(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    id: MailboxId,
    remove_emails: bool,
) -> Result<Result<(), WriteRefusal>> {
    let tx = c.transaction()?;
    let local_only = account_kind(&tx, account)? == "pop3";
    let Some(row) = mailbox_row(&tx, account, id.0)? else {
        return Ok(Err(WriteRefusal::NotFound));
    };
    if local_only || row.raw_name.eq_ignore_ascii_case("INBOX") {
        return Ok(Err(WriteRefusal::Forbidden(
            "INBOX cannot be destroyed".into(),
        )));
    }
    let _ = row.role;
    if tx
        .prepare_cached("SELECT 1 FROM mailbox WHERE parent_id = ?1")?
        .exists([id.0])?
    {
        return Ok(Err(WriteRefusal::MailboxHasChild));
    }
    let emails: Vec<i64> = {
        let mut st =
            tx.prepare_cached("SELECT DISTINCT email_id FROM copy WHERE mailbox_id = ?1")?;
        let rows = st.query_map([id.0], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    if !emails.is_empty() && !remove_emails {
        return Ok(Err(WriteRefusal::MailboxHasEmail));
    }
    let mut log = ChangeLog::new(account);
    if !local_only {
        log.queued(Queue::Outbox);
    }
    tx.prepare_cached("DELETE FROM copy WHERE mailbox_id = ?1")?
        .execute([id.0])?;
    for e in emails {
        refresh_keywords(&tx, e)?;
        mark_orphan_if_empty(&tx, e)?;
        log.record(&tx, ObjectType::Email, e, ChangeOp::Updated)?;
    }
    tx.prepare_cached("DELETE FROM mailbox WHERE id = ?1")?
        .execute([id.0])?;
    log.record(&tx, ObjectType::Mailbox, id.0, ChangeOp::Destroyed)?;
    // A mailbox never created on the server needs nothing there: its pending entries go.
    // But a CREATE the worker has begun (attempts > 0) may be on the server already, or
    // on its way: that entry stays, and its completion, finding the mailbox gone, queues
    // the DELETE of the name it created (`complete`). Only the later entries (subscribe,
    // rename) of a mailbox that is gone are dropped.
    let create_begun: Option<i64> = tx
        .prepare_cached(
            "SELECT attempts FROM outbox WHERE account_id = ?1 AND email_id = ?2 \
             AND kind = 'create_mailbox'",
        )?
        .query_row(params![account.0, id.0], |r| r.get(0))
        .optional()?;
    let pending_create = create_begun.is_some();
    if create_begun == Some(0) {
        tx.prepare_cached(
            "DELETE FROM outbox WHERE account_id = ?1 AND email_id = ?2 AND kind = 'create_mailbox'",
        )?
        .execute(params![account.0, id.0])?;
    }
    if pending_create {
        tx.prepare_cached(
            "DELETE FROM outbox WHERE account_id = ?1 AND email_id = ?2 AND kind IN ('subscribe', 'rename_mailbox')",
        )?
        .execute(params![account.0, id.0])?;
    } else {
        enqueue(
            &tx,
            false,
            account,
            Some(id.0),
            &OutboxOp::DeleteMailbox {
                raw_name: row.raw_name,
            },
        )?;
    }
    log.commit(tx, committed)?;
    Ok(Ok(()))
}

// --- the worker's side --------------------------------------------------------------------

pub(crate) fn next(
    c: &mut Connection,
    account: AccountId,
    limit: usize,
) -> Result<Vec<OutboxEntry>> {
    let tx = c.transaction()?;
    let rows: Vec<(i64, i64, String, Option<i64>, String, i64)> = {
        let mut st = tx.prepare_cached(
            "SELECT id, rev, kind, email_id, payload, attempts FROM outbox \
             WHERE account_id = ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![account.0, limit as i64], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut out = Vec::with_capacity(rows.len());
    for (id, rev, kind, object, payload, attempts) in rows {
        let op = from_json(&payload)?;
        let email = (!op.is_mailbox_op())
            .then_some(object)
            .flatten()
            .map(EmailId);
        let mut targets = Vec::new();
        if kind == "flags"
            && let Some(e) = object
        {
            let mut st = tx.prepare_cached(
                "SELECT c.mailbox_id, c.uid, m.highestmodseq FROM copy c \
                 JOIN mailbox m ON m.id = c.mailbox_id WHERE c.email_id = ?1 AND c.uid < ?2",
            )?;
            let rows = st.query_map(params![e, PLACEHOLDER_UID_BASE], |r| {
                Ok((
                    MailboxId(r.get(0)?),
                    r.get::<_, u32>(1)?,
                    r.get::<_, i64>(2)? as u64,
                ))
            })?;
            targets = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            // A copy a later entry moves or removes is gone locally but still on the server,
            // where this change must reach it first (the MOVE then carries the flags along).
            let later: Vec<String> = {
                let mut st = tx.prepare_cached(
                    "SELECT payload FROM outbox WHERE email_id = ?1 AND id > ?2 \
                     AND kind IN ('move', 'expunge') ORDER BY id",
                )?;
                let rows = st.query_map(params![e, id], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            for p in later {
                let (m, uid) = match from_json(&p)? {
                    OutboxOp::Move { from, uid, .. } => (from, uid),
                    OutboxOp::Expunge { mailbox, uid, .. } => (mailbox, uid),
                    _ => continue,
                };
                let Ok(uid) = u32::try_from(uid) else {
                    continue;
                };
                if uid == 0 || targets.iter().any(|t| t.0 == m && t.1 == uid) {
                    continue;
                }
                let hms: Option<i64> = tx
                    .prepare_cached("SELECT highestmodseq FROM mailbox WHERE id = ?1")?
                    .query_row([m.0], |r| r.get(0))
                    .optional()?;
                if let Some(h) = hms {
                    targets.push((m, uid, h as u64));
                }
            }
        }
        out.push(OutboxEntry {
            id,
            rev,
            email,
            op,
            attempts,
            targets,
        });
    }
    tx.commit()?;
    Ok(out)
}

/// Records an attempt before the command is sent (so a replay after a crash knows the
/// command may have reached the server); an APPEND also records the UIDNEXT it started from.
/// Returns whether the entry is still queued: one the user's change took back meanwhile
/// (a mailbox destroyed before its CREATE went out) must not be sent.
pub(crate) fn begin_attempt(c: &mut Connection, id: i64, uidnext: Option<u32>) -> Result<bool> {
    let tx = c.transaction()?;
    let payload: Option<String> = tx
        .prepare_cached("SELECT payload FROM outbox WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let queued = payload.is_some();
    if let Some(p) = payload {
        let mut op = from_json(&p)?;
        if let OutboxOp::Append { uidnext_before, .. } = &mut op
            && uidnext_before.is_none()
        {
            *uidnext_before = uidnext;
        }
        tx.prepare_cached("UPDATE outbox SET attempts = attempts + 1, payload = ?2 WHERE id = ?1")?
            .execute(params![id, to_json(&op)?])?;
    }
    tx.commit()?;
    Ok(queued)
}

/// Whether an entry of `kind` about `object` (an Email or Mailbox row) is still queued.
pub(crate) fn has_entry(
    c: &mut Connection,
    account: AccountId,
    object: i64,
    kind: &str,
) -> Result<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM outbox WHERE account_id = ?1 AND email_id = ?2 AND kind = ?3",
    )?
    .exists(params![account.0, object, kind])?)
}

pub(crate) fn defer(c: &mut Connection, id: i64, error: &str) -> Result<()> {
    c.prepare_cached("UPDATE outbox SET last_error = ?2 WHERE id = ?1")?
        .execute(params![id, error])?;
    Ok(())
}

/// Gives a placeholder copy its server UID (or drops it when the server did not say, or
/// when the sync already stored the real copy), and points later entries at the real UID.
#[allow(clippy::too_many_arguments)]
fn resolve_placeholder(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    account: AccountId,
    entry: i64,
    email: Option<i64>,
    mailbox: i64,
    placeholder: i64,
    real: Option<u32>,
) -> Result<()> {
    let exists_real = match real {
        Some(u) => tx
            .prepare_cached("SELECT email_id FROM copy WHERE mailbox_id = ?1 AND uid = ?2")?
            .query_row(params![mailbox, u], |r| r.get::<_, i64>(0))
            .optional()?,
        None => None,
    };
    match (real, exists_real) {
        (Some(u), None) => {
            tx.prepare_cached("UPDATE copy SET uid = ?3 WHERE mailbox_id = ?1 AND uid = ?2")?
                .execute(params![mailbox, placeholder, u])?;
        }
        // The sync stored the server's copy first, under another Email (its identity did
        // not match, e.g. a server that gives moved messages a new EMAILID): it is this
        // Email's copy, so it is linked back and the Email keeps its id.
        (Some(u), Some(other)) if email.is_some_and(|e| e != other) => {
            let e = email.unwrap_or(other);
            delete_copy(tx, mailbox, placeholder)?;
            tx.prepare_cached("UPDATE copy SET email_id = ?3 WHERE mailbox_id = ?1 AND uid = ?2")?
                .execute(params![mailbox, u, e])?;
            for id in [e, other] {
                refresh_keywords(tx, id)?;
                mark_orphan_if_empty(tx, id)?;
                log.record(tx, ObjectType::Email, id, ChangeOp::Updated)?;
            }
            log.record(tx, ObjectType::Mailbox, mailbox, ChangeOp::Updated)?;
        }
        _ => {
            if delete_copy(tx, mailbox, placeholder)? {
                log.record(tx, ObjectType::Mailbox, mailbox, ChangeOp::Updated)?;
                if let Some(e) = email {
                    refresh_keywords(tx, e)?;
                    mark_orphan_if_empty(tx, e)?;
                    log.record(tx, ObjectType::Email, e, ChangeOp::Updated)?;
                }
            }
        }
    }
    // Later entries naming the placeholder now name the server UID (or cannot be replayed).
    let Some(e) = email else { return Ok(()) };
    let later: Vec<(i64, String)> = {
        let mut st = tx.prepare_cached(
            "SELECT id, payload FROM outbox WHERE account_id = ?1 AND email_id = ?2 AND id > ?3",
        )?;
        let rows = st.query_map(params![account.0, e, entry], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let new_uid = real.map(i64::from).unwrap_or(-1);
    for (id, payload) in later {
        let mut op = from_json(&payload)?;
        let hit = match &mut op {
            OutboxOp::Move { from, uid, .. } | OutboxOp::Copy { from, uid, .. }
                if from.0 == mailbox && *uid == placeholder =>
            {
                *uid = new_uid;
                true
            }
            OutboxOp::Expunge {
                mailbox: m, uid, ..
            } if m.0 == mailbox && *uid == placeholder => {
                *uid = new_uid;
                true
            }
            _ => false,
        };
        if hit {
            tx.prepare_cached("UPDATE outbox SET payload = ?2 WHERE id = ?1")?
                .execute(params![id, to_json(&op)?])?;
        }
    }
    Ok(())
}

/// Pending DELETEs of `old` or a mailbox below it now name it under `new`.
fn rename_pending_deletes(
    tx: &Transaction<'_>,
    account: AccountId,
    old: &str,
    new: &str,
    delim: &str,
) -> Result<()> {
    let rows: Vec<(i64, String)> = {
        let mut st = tx.prepare_cached(
            "SELECT id, payload FROM outbox WHERE account_id = ?1 AND kind = 'delete_mailbox'",
        )?;
        let rows = st.query_map([account.0], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let below = format!("{old}{delim}");
    for (id, payload) in rows {
        if let OutboxOp::DeleteMailbox { raw_name } = from_json(&payload)? {
            let renamed = if raw_name == old {
                Some(new.to_string())
            } else {
                raw_name
                    .strip_prefix(&below)
                    .map(|rest| format!("{new}{delim}{rest}"))
            };
            if let Some(raw_name) = renamed {
                tx.prepare_cached("UPDATE outbox SET payload = ?2 WHERE id = ?1")?
                    .execute(params![id, to_json(&OutboxOp::DeleteMailbox { raw_name })?])?;
            }
        }
    }
    Ok(())
}

pub(crate) fn complete(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    done: &[OutboxDone],
) -> Result<()> {
    let tx = c.transaction()?;
    let mut log = ChangeLog::new(account);
    for d in done {
        let row: Option<(i64, Option<i64>, String, String)> = tx
            .prepare_cached(
                "SELECT rev, email_id, kind, payload FROM outbox WHERE id = ?1 AND account_id = ?2",
            )?
            .query_row(params![d.id, account.0], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((rev, object, kind, payload)) = row else {
            continue;
        };
        if rev != d.rev {
            // A later change was coalesced into it after it was read: replay it again
            // (flag changes are idempotent).
            continue;
        }
        if kind == "flags" {
            // Nothing to record locally: the change was applied when it was queued.
            tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                .execute([d.id])?;
            continue;
        }
        let op = from_json(&payload)?;
        let mark_done = |tx: &Transaction<'_>, mailbox: i64, uid: i64| -> Result<()> {
            tx.prepare_cached(
                "UPDATE outbox_tombstone SET done_at = ?3 WHERE mailbox_id = ?1 AND uid = ?2",
            )?
            .execute(params![mailbox, uid, now()])?;
            Ok(())
        };
        match &op {
            OutboxOp::Flags { .. }
            | OutboxOp::Subscribe { .. }
            | OutboxOp::DeleteMailbox { .. } => {}
            OutboxOp::Move {
                from,
                uid,
                to,
                placeholder,
                ..
            } => {
                mark_done(&tx, from.0, *uid)?;
                let real = d.new_uid.map(|(_, dst)| dst);
                resolve_placeholder(
                    &tx,
                    &mut log,
                    account,
                    d.id,
                    object,
                    to.0,
                    *placeholder,
                    real,
                )?;
            }
            OutboxOp::Copy {
                to, placeholder, ..
            } => {
                let real = d.new_uid.map(|(_, dst)| dst);
                resolve_placeholder(
                    &tx,
                    &mut log,
                    account,
                    d.id,
                    object,
                    to.0,
                    *placeholder,
                    real,
                )?;
            }
            OutboxOp::Append {
                mailbox,
                placeholder,
                ..
            } => {
                let real = d.new_uid.map(|(_, dst)| dst);
                resolve_placeholder(
                    &tx,
                    &mut log,
                    account,
                    d.id,
                    object,
                    mailbox.0,
                    *placeholder,
                    real,
                )?;
            }
            OutboxOp::Expunge { mailbox, uid, .. } => mark_done(&tx, mailbox.0, *uid)?,
            OutboxOp::Labels {
                placeholders,
                placeholder,
                ..
            } => {
                // Gmail answers a label change with no UID in the label folder: the sync
                // brings the real copy, linked by X-GM-MSGID.
                for m in placeholders {
                    resolve_placeholder(
                        &tx,
                        &mut log,
                        account,
                        d.id,
                        object,
                        m.0,
                        *placeholder,
                        None,
                    )?;
                }
            }
            OutboxOp::CreateMailbox { mailbox, .. }
                if d.raw_name.is_some()
                    && !tx
                        .prepare_cached("SELECT 1 FROM mailbox WHERE id = ?1")?
                        .exists([mailbox.0])? =>
            {
                // Destroyed while its CREATE was on the way (`destroy_mailbox`): the user's
                // last word is that it should not exist, so it is deleted on the server too.
                if let Some(raw) = &d.raw_name {
                    enqueue(
                        &tx,
                        false,
                        account,
                        Some(mailbox.0),
                        &OutboxOp::DeleteMailbox {
                            raw_name: raw.clone(),
                        },
                    )?;
                }
            }
            OutboxOp::CreateMailbox { mailbox, .. } | OutboxOp::RenameMailbox { mailbox, .. } => {
                if let Some(raw) = &d.raw_name {
                    let old: Option<(String, Option<String>)> = match &d.old_raw_name {
                        Some(o) => Some((o.clone(), Some(delimiter(&tx, account)?))),
                        None => tx
                            .prepare_cached(
                                "SELECT raw_name, delimiter FROM mailbox WHERE id = ?1",
                            )?
                            .query_row([mailbox.0], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()?,
                    };
                    tx.prepare_cached("UPDATE mailbox SET raw_name = ?2 WHERE id = ?1")?
                        .execute(params![mailbox.0, raw])?;
                    // The server renamed the children with it (RFC 3501 6.3.5).
                    if let Some((old, Some(delim))) = old
                        && !delim.is_empty()
                        && !old.starts_with('\u{0}')
                    {
                        tx.prepare_cached(
                            "UPDATE mailbox SET raw_name = ?3 || substr(raw_name, length(?2) + 1) \
                             WHERE account_id = ?1 AND substr(raw_name, 1, length(?2)) = ?2",
                        )?
                        .execute(params![
                            account.0,
                            format!("{old}{delim}"),
                            format!("{raw}{delim}")
                        ])?;
                        // A DELETE queued meanwhile names the mailbox by its old wire name.
                        rename_pending_deletes(&tx, account, &old, raw, &delim)?;
                    }
                }
            }
        }
        // Every copy the entry removed locally is gone on the server now (a Gmail move to
        // Trash or a label change removes several).
        tx.prepare_cached(
            "UPDATE outbox_tombstone SET done_at = ?2 WHERE outbox_id = ?1 AND done_at IS NULL",
        )?
        .execute(params![d.id, now()])?;
        tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
            .execute([d.id])?;
    }
    tx.prepare_cached("DELETE FROM outbox_tombstone WHERE done_at IS NOT NULL AND done_at < ?1")?
        .execute([now() - TOMBSTONE_KEEP_SECS])?;
    log.commit(tx, committed)?;
    Ok(())
}

/// The server refused an entry for good: the local change is reverted (a store change, so
/// it is published like any other), the entry dropped and the reason kept for the user.
pub(crate) fn refuse(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    id: i64,
    reason: &str,
) -> Result<()> {
    let tx = c.transaction()?;
    let row: Option<(Option<i64>, String)> = tx
        .prepare_cached("SELECT email_id, payload FROM outbox WHERE id = ?1 AND account_id = ?2")?
        .query_row(params![id, account.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((object, payload)) = row else {
        return Ok(());
    };
    let op = from_json(&payload)?;
    let mut log = ChangeLog::new(account);
    tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
        .execute([id])?;
    let unstone = |tx: &Transaction<'_>, mailbox: i64, uid: i64| -> Result<()> {
        tx.prepare_cached("DELETE FROM outbox_tombstone WHERE mailbox_id = ?1 AND uid = ?2")?
            .execute(params![mailbox, uid])?;
        Ok(())
    };
    match &op {
        OutboxOp::Flags { add, remove } => {
            if let Some(e) = object {
                for c in copies_of(&tx, e)? {
                    // The inverse, then whatever else is still pending on top.
                    let base = apply_flag_ops(&c.flags, remove, add);
                    let new = overlay_flags(&tx, e, base)?;
                    tx.prepare_cached(
                        "UPDATE copy SET flags = ?3 WHERE mailbox_id = ?1 AND uid = ?2",
                    )?
                    .execute(params![c.mailbox, c.uid, new])?;
                    log.record(&tx, ObjectType::Mailbox, c.mailbox, ChangeOp::Updated)?;
                }
                refresh_keywords(&tx, e)?;
                log.record(&tx, ObjectType::Email, e, ChangeOp::Updated)?;
            }
        }
        OutboxOp::Move {
            from,
            uid,
            to,
            placeholder,
            flags,
            modseq,
        } => {
            delete_copy(&tx, to.0, *placeholder)?;
            log.record(&tx, ObjectType::Mailbox, to.0, ChangeOp::Updated)?;
            unstone(&tx, from.0, *uid)?;
            if let Some(e) = object
                && *uid < PLACEHOLDER_UID_BASE
                && *uid > 0
                && mailbox_in_account(&tx, account, from.0)?
            {
                insert_copy(&tx, from.0, *uid, e, flags)?;
                tx.prepare_cached(
                    "UPDATE copy SET modseq = ?3 WHERE mailbox_id = ?1 AND uid = ?2",
                )?
                .execute(params![from.0, uid, modseq])?;
                tx.prepare_cached("UPDATE email SET orphaned = 0 WHERE id = ?1")?
                    .execute([e])?;
                log.record(&tx, ObjectType::Mailbox, from.0, ChangeOp::Updated)?;
            }
        }
        OutboxOp::Copy {
            to, placeholder, ..
        }
        | OutboxOp::Append {
            mailbox: to,
            placeholder,
            ..
        } => {
            delete_copy(&tx, to.0, *placeholder)?;
            log.record(&tx, ObjectType::Mailbox, to.0, ChangeOp::Updated)?;
        }
        OutboxOp::Expunge {
            mailbox,
            uid,
            flags,
            modseq,
        } => {
            unstone(&tx, mailbox.0, *uid)?;
            if let Some(e) = object
                && *uid < PLACEHOLDER_UID_BASE
                && *uid > 0
                && email_row_exists(&tx, e)?
            {
                insert_copy(&tx, mailbox.0, *uid, e, flags)?;
                tx.prepare_cached(
                    "UPDATE copy SET modseq = ?3 WHERE mailbox_id = ?1 AND uid = ?2",
                )?
                .execute(params![mailbox.0, uid, modseq])?;
                tx.prepare_cached("UPDATE email SET orphaned = 0 WHERE id = ?1")?
                    .execute([e])?;
                log.record(&tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Updated)?;
            }
            // An Email already destroyed comes back with the next sync pass: its copy is
            // still on the server and no longer tombstoned.
        }
        OutboxOp::CreateMailbox { mailbox, .. } => {
            tx.prepare_cached("DELETE FROM copy WHERE mailbox_id = ?1")?
                .execute([mailbox.0])?;
            let n = tx
                .prepare_cached("DELETE FROM mailbox WHERE id = ?1")?
                .execute([mailbox.0])?;
            if n > 0 {
                log.record(&tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Destroyed)?;
            }
        }
        OutboxOp::RenameMailbox {
            mailbox,
            old_raw,
            old_name,
            old_parent,
            ..
        } => {
            tx.prepare_cached(
                "UPDATE mailbox SET raw_name = ?2, name = ?3, parent_id = ?4 WHERE id = ?1",
            )?
            .execute(params![
                mailbox.0,
                old_raw,
                old_name,
                old_parent.map(|p| p.0)
            ])?;
            log.record(&tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Updated)?;
        }
        OutboxOp::Subscribe {
            mailbox,
            subscribed,
        } => {
            tx.prepare_cached("UPDATE mailbox SET subscribed = ?2 WHERE id = ?1")?
                .execute(params![mailbox.0, !subscribed])?;
            log.record(&tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Updated)?;
        }
        // The mailbox comes back with the next LIST (nothing is pending any more).
        OutboxOp::DeleteMailbox { .. } => {}
        OutboxOp::Labels {
            placeholders,
            placeholder,
            removed,
            ..
        } => {
            for m in placeholders {
                delete_copy(&tx, m.0, *placeholder)?;
                log.record(&tx, ObjectType::Mailbox, m.0, ChangeOp::Updated)?;
            }
            if let Some(e) = object
                && email_row_exists(&tx, e)?
            {
                for r in removed {
                    if !mailbox_in_account(&tx, account, r.mailbox.0)? {
                        continue;
                    }
                    insert_copy(&tx, r.mailbox.0, r.uid, e, &r.flags)?;
                    tx.prepare_cached(
                        "UPDATE copy SET modseq = ?3 WHERE mailbox_id = ?1 AND uid = ?2",
                    )?
                    .execute(params![r.mailbox.0, r.uid, r.modseq])?;
                    log.record(&tx, ObjectType::Mailbox, r.mailbox.0, ChangeOp::Updated)?;
                }
                tx.prepare_cached("UPDATE email SET orphaned = 0 WHERE id = ?1")?
                    .execute([e])?;
                refresh_keywords(&tx, e)?;
            }
        }
    }
    // The copies the entry removed locally come back with the next pass (a Gmail move to
    // Trash also removed the label copies; they are still on the server).
    tx.prepare_cached("DELETE FROM outbox_tombstone WHERE outbox_id = ?1")?
        .execute([id])?;
    if let Some(e) = object
        && !op.is_mailbox_op()
    {
        mark_orphan_if_empty(&tx, e)?;
    }
    tx.prepare_cached(
        "INSERT INTO outbox_failure (account_id, kind, object_id, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![account.0, op.kind(), object, reason, now()])?;
    // The failure itself is news for the client even when nothing else changed.
    if let Some(e) = object {
        let t = if op.is_mailbox_op() {
            ObjectType::Mailbox
        } else {
            ObjectType::Email
        };
        let exists = match t {
            ObjectType::Email => email_row_exists(&tx, e)?,
            _ => mailbox_in_account(&tx, account, e)?,
        };
        if exists {
            log.record(&tx, t, e, ChangeOp::Updated)?;
        }
    }
    log.commit(tx, committed)?;
    Ok(())
}

fn email_row_exists(tx: &Transaction<'_>, e: i64) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM email WHERE id = ?1")?
        .exists([e])?)
}

pub(crate) fn status(c: &mut Connection, account: AccountId) -> Result<OutboxStatus> {
    let kind: Option<String> = c
        .prepare_cached("SELECT kind FROM account WHERE id = ?1")?
        .query_row([account.0], |r| r.get(0))
        .optional()?;
    let pending: i64 = c
        .prepare_cached("SELECT count(*) FROM outbox WHERE account_id = ?1")?
        .query_row([account.0], |r| r.get(0))?;
    let last_error: Option<String> = c
        .prepare_cached(
            "SELECT last_error FROM outbox WHERE account_id = ?1 AND last_error != '' ORDER BY id LIMIT 1",
        )?
        .query_row([account.0], |r| r.get(0))
        .optional()?;
    let mut st = c.prepare_cached(
        "SELECT id, kind, object_id, reason, at FROM outbox_failure WHERE account_id = ?1 \
         ORDER BY id DESC LIMIT 100",
    )?;
    let rows = st.query_map([account.0], |r| {
        Ok(OutboxFailure {
            id: r.get(0)?,
            kind: r.get(1)?,
            object: r.get(2)?,
            reason: r.get(3)?,
            at: r.get(4)?,
        })
    })?;
    Ok(OutboxStatus {
        pending: pending as u64,
        last_error,
        failures: rows.collect::<rusqlite::Result<Vec<_>>>()?,
        local_only: kind.as_deref() == Some("pop3"),
    })
}

pub(crate) fn dismiss_failures(c: &mut Connection, account: AccountId, ids: &[i64]) -> Result<()> {
    let tx = c.transaction()?;
    for id in ids {
        tx.prepare_cached("DELETE FROM outbox_failure WHERE id = ?1 AND account_id = ?2")?
            .execute(params![id, account.0])?;
    }
    tx.commit()?;
    Ok(())
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn update_emails(
        &self,
        account: AccountId,
        patches: Vec<EmailPatch>,
    ) -> Result<Vec<std::result::Result<(), WriteRefusal>>> {
        let (out, _) = self
            .write(move |c, committed| outbox::update_emails(c, committed, account, &patches))
            .await?;
        Ok(out)
    }

    async fn destroy_emails(
        &self,
        account: AccountId,
        ids: Vec<EmailId>,
    ) -> Result<Vec<std::result::Result<(), WriteRefusal>>> {
        let out = self
            .write(move |c, committed| outbox::destroy_emails(c, committed, account, &ids))
            .await?;
        self.collect_orphans(account).await?;
        Ok(out)
    }

    async fn append_email(
        &self,
        account: AccountId,
        req: AppendRequest,
    ) -> Result<std::result::Result<EmailId, WriteRefusal>> {
        let (conn, blobs, announce) =
            (self.conn.clone(), self.blobs.clone(), self.announce.clone());
        let out = tokio::task::spawn_blocking(move || {
            // Parsed and written before the lock is taken, like the sync's messages.
            let parsed = mime::parse(&req.raw);
            let blob = blobs.put(&req.raw)?;
            let mut guard = conn
                .lock()
                .map_err(|_| Error::Task("store mutex poisoned".into()))?;
            let mut committed = Committed::default();
            let out =
                outbox::append_email(&mut guard, &mut committed, account, &req, &blob, &parsed);
            drop(guard);
            announce.publish(committed);
            out
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        Ok(out.0)
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        parent: Option<MailboxId>,
        subscribed: bool,
    ) -> Result<std::result::Result<MailboxId, WriteRefusal>> {
        let name = name.to_string();
        let out = self
            .mailbox_write(account, move |c, committed| {
                outbox::create_mailbox(c, committed, account, &name, parent, subscribed)
            })
            .await??;
        Ok(out)
    }

    async fn update_mailbox(
        &self,
        account: AccountId,
        id: MailboxId,
        patch: MailboxPatch,
    ) -> Result<std::result::Result<(), WriteRefusal>> {
        let out = self
            .mailbox_write(account, move |c, committed| {
                outbox::update_mailbox(c, committed, account, id, &patch)
            })
            .await??;
        Ok(out)
    }

    async fn destroy_mailbox(
        &self,
        account: AccountId,
        id: MailboxId,
        remove_emails: bool,
    ) -> Result<std::result::Result<(), WriteRefusal>> {
        let out = self
            .mailbox_write(account, move |c, committed| {
                outbox::destroy_mailbox(c, committed, account, id, remove_emails)
            })
            .await??;
        self.collect_orphans(account).await?;
        Ok(out)
    }

    async fn outbox_next(&self, account: AccountId, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.call(move |c| outbox::next(c, account, limit)).await
    }

    async fn outbox_begin(&self, id: i64, uidnext: Option<u32>) -> Result<bool> {
        self.call(move |c| outbox::begin_attempt(c, id, uidnext))
            .await
    }

    async fn outbox_has(
        &self,
        account: AccountId,
        object: i64,
        kind: &'static str,
    ) -> Result<bool> {
        self.call(move |c| outbox::has_entry(c, account, object, kind))
            .await
    }

    async fn outbox_complete(&self, account: AccountId, done: Vec<OutboxDone>) -> Result<()> {
        let epochs = self.mailbox_epochs.clone();
        let gone = self
            .write(move |c, committed| {
                // A confirmed mailbox change moves the epoch before the connection is let go.
                let mut mailbox_op = false;
                {
                    let mut st = c.prepare_cached(
                        "SELECT 1 FROM outbox WHERE id = ?1 AND kind IN \
                     ('create_mailbox', 'rename_mailbox', 'delete_mailbox', 'subscribe')",
                    )?;
                    for d in &done {
                        mailbox_op |= st.exists([d.id])?;
                    }
                }
                let appended = append_blobs(c, done.iter().map(|d| d.id))?;
                let r = outbox::complete(c, committed, account, &done);
                if mailbox_op {
                    bump_epoch(&epochs, account);
                }
                r?;
                forget_unreferenced(c, appended)
            })
            .await?;
        self.forget_blob_files(gone).await?;
        self.collect_orphans(account).await?;
        Ok(())
    }

    async fn outbox_defer(&self, id: i64, error: &str) -> Result<()> {
        let error = error.to_string();
        self.call(move |c| outbox::defer(c, id, &error)).await
    }

    async fn outbox_refuse(&self, account: AccountId, id: i64, reason: &str) -> Result<()> {
        let reason = reason.to_string();
        let gone = self
            .write(move |c, committed| {
                let appended = append_blobs(c, [id])?;
                outbox::refuse(c, committed, account, id, &reason)?;
                forget_unreferenced(c, appended)
            })
            .await?;
        self.forget_blob_files(gone).await?;
        self.collect_orphans(account).await?;
        Ok(())
    }

    async fn outbox_status(&self, account: AccountId) -> Result<OutboxStatus> {
        self.call(move |c| outbox::status(c, account)).await
    }

    async fn outbox_dismiss(&self, account: AccountId, failures: Vec<i64>) -> Result<()> {
        self.call(move |c| outbox::dismiss_failures(c, account, &failures))
            .await
    }

    fn outbox_signal(&self, account: AccountId) -> tokio::sync::watch::Receiver<u64> {
        self.announce.work.outbox(account)
    }
}
