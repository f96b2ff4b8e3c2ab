//! [`Outbox`] for PostgreSQL: sqlite/outbox.rs's meaning (docs/design/writeback.md). A
//! user's change is applied optimistically in the same transaction as its outbox entry,
//! on any node and unfenced; the engine's replay (attempts, completions, refusals) goes
//! through the change log opened with `ChangeLog::of`, so a handle fenced with a lease it
//! lost writes nothing (`Error::Fenced`).
//!
//! Every write takes the account's row lock first (mailsync.rs's `lock_account`), so a
//! user's change and a sync batch of the account, on whichever nodes, run one after the
//! other: the batch sees the pending entry it must keep on top, or the change sees the
//! copies the batch wrote.
//!
//! Keyword changes of many Emails (marking 1,000 read) are a fixed number of statements:
//! the Emails and their copies read with `= ANY`, the new flags computed in memory, the
//! copies, keywords, change rows, coalesced entries and new entries each written with one
//! statement over `unnest`ed arrays.

use super::changelog::ChangeLog;
use super::mailsync::{
    PendingEmail, Target, insert_emails, lock_account, put_blobs, refresh_keywords, u32_of,
};
use super::*;
use crate::mailrows::{
    apply_flag_ops, check_leaf, header_block, join_flags, keywords_json, mailbox_move,
    merge_flag_ops,
};
use crate::model::*;
use crate::outbox::*;
use crate::wake::Queue;
use crate::{ChangeOp, ObjectType};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use mail_types::{AccountId, EmailId, MailboxId, Uid, UidValidity, keyword_to_imap_flag};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Confirmed removals are remembered this long, for a sync pass that listed the UID just
/// before the server expunged it.
const TOMBSTONE_KEEP_SECS: i64 = 600;

/// The kinds of the entries that change mailboxes (the sync leaves the list alone while
/// one is pending).
const MAILBOX_KINDS: &str = "('create_mailbox', 'rename_mailbox', 'delete_mailbox', 'subscribe')";

type Refusable<T> = std::result::Result<T, WriteRefusal>;

fn to_json(op: &OutboxOp) -> Result<String> {
    serde_json::to_string(op).map_err(|e| Error::Corrupt(format!("outbox payload: {e}")))
}

fn from_json(s: &str) -> Result<OutboxOp> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt(format!("outbox payload: {e}")))
}

fn imap_flags(keywords: &[String]) -> Vec<String> {
    keywords.iter().map(|k| keyword_to_imap_flag(k)).collect()
}

// --- hooks for the sync's writes (mailsync.rs) --------------------------------------------

/// Whether anything of `account` is pending (entries, or tombstones of removed copies):
/// the sync's batch keeps it on top only then.
pub(super) async fn has_pending(tx: &Transaction<'_>, account: AccountId) -> Result<bool> {
    let st = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE account_id = $1) \
             OR EXISTS (SELECT 1 FROM outbox_tombstone t JOIN mailbox m ON m.id = t.mailbox_id \
             WHERE m.account_id = $1)",
        )
        .await?;
    Ok(tx.query_one(&st, &[&account.0]).await?.get(0))
}

/// Whether a mailbox change of the user is pending: the local list is then the user's
/// intent and the sync does not bring it in line.
pub(super) async fn mailbox_ops_pending(tx: &Transaction<'_>, account: AccountId) -> Result<bool> {
    let st = tx
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE account_id = $1 AND kind IN {MAILBOX_KINDS})"
        ))
        .await?;
    Ok(tx.query_one(&st, &[&account.0]).await?.get(0))
}

/// Which of `uids` of `mailbox` the user removed (a copy the sync must not bring back).
pub(super) async fn tombstoned(
    tx: &Transaction<'_>,
    mailbox: i64,
    uids: &[i64],
) -> Result<HashSet<i64>> {
    let st = tx
        .prepare_cached("SELECT uid FROM outbox_tombstone WHERE mailbox_id = $1 AND uid = ANY($2)")
        .await?;
    Ok(tx
        .query(&st, &[&mailbox, &uids])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// A queued flag change: the flags it sets and those it clears.
pub(super) type FlagOps = (Vec<String>, Vec<String>);

/// The pending flag changes of `emails`, oldest first per Email: what the sync's flags of
/// their copies get on top ([`overlay`]).
pub(super) async fn pending_flags(
    tx: &Transaction<'_>,
    emails: &[i64],
) -> Result<HashMap<i64, Vec<FlagOps>>> {
    let mut out: HashMap<i64, Vec<FlagOps>> = HashMap::new();
    if emails.is_empty() {
        return Ok(out);
    }
    let st = tx
        .prepare_cached(
            "SELECT email_id, payload FROM outbox WHERE email_id = ANY($1) AND kind = 'flags' \
             ORDER BY id",
        )
        .await?;
    for r in tx.query(&st, &[&emails]).await? {
        if let OutboxOp::Flags { add, remove } = from_json(r.get(1))? {
            out.entry(r.get(0)).or_default().push((add, remove));
        }
    }
    Ok(out)
}

/// The server's `flags` of a copy of an Email with its pending changes (`pending`) on top.
pub(super) fn overlay(flags: String, pending: Option<&Vec<FlagOps>>) -> String {
    pending
        .into_iter()
        .flatten()
        .fold(flags, |f, (add, remove)| apply_flag_ops(&f, add, remove))
}

// --- the user's changes -------------------------------------------------------------------

/// Opens a user's write: the account locked, whether it keeps its changes local (POP3),
/// and its change log (filling the outbox unless local).
async fn begin_user(
    store: &PgStore,
    tx: &Transaction<'_>,
    account: AccountId,
) -> Result<(bool, ChangeLog)> {
    // The account's row lock (as `lock_account` takes it) and its kind in one round trip.
    let st = tx
        .prepare_cached("SELECT kind FROM account WHERE id = $1 FOR UPDATE")
        .await?;
    let kind: String = tx
        .query_opt(&st, &[&account.0])
        .await?
        .ok_or_else(|| Error::NotFound(format!("account {account}")))?
        .get(0);
    let local_only = kind == "pop3";
    let mut log = ChangeLog::user(store, account);
    if !local_only {
        log.queued(Queue::Outbox);
    }
    Ok((local_only, log))
}

/// Queues an entry unless the account is POP3 (its changes stay local).
async fn enqueue(
    tx: &Transaction<'_>,
    local_only: bool,
    account: AccountId,
    object: Option<i64>,
    op: &OutboxOp,
) -> Result<Option<i64>> {
    if local_only {
        return Ok(None);
    }
    let blob = match op {
        OutboxOp::Append { blob_id, .. } => Some(blob_id.as_str()),
        _ => None,
    };
    let st = tx
        .prepare_cached(
            "INSERT INTO outbox (account_id, kind, email_id, payload, created_at, blob_id) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .await?;
    let row = tx
        .query_one(
            &st,
            &[
                &account.0,
                &op.kind(),
                &object,
                &to_json(op)?,
                &now(),
                &blob,
            ],
        )
        .await?;
    Ok(Some(row.get(0)))
}

/// Stores the final payload of a just-queued entry (its placeholder UID derives from its id).
async fn rewrite(tx: &Transaction<'_>, entry: Option<i64>, op: &OutboxOp) -> Result<()> {
    if let Some(id) = entry {
        set_payload(tx, id, op, false).await?;
    }
    Ok(())
}

/// A new payload for entry `id`; `coalesced`: a later change merged into it (its `rev` grows).
async fn set_payload(tx: &Transaction<'_>, id: i64, op: &OutboxOp, coalesced: bool) -> Result<()> {
    let st = tx
        .prepare_cached("UPDATE outbox SET payload = $2, rev = rev + $3::bigint WHERE id = $1")
        .await?;
    tx.execute(&st, &[&id, &to_json(op)?, &i64::from(coalesced)])
        .await?;
    Ok(())
}

/// Flag changes of Emails, each coalesced into its Email's newest entry when that is a
/// flag change too, else queued as a new entry: three statements for any number.
async fn enqueue_flags(
    tx: &Transaction<'_>,
    account: AccountId,
    changes: Vec<(i64, Vec<String>, Vec<String>)>,
) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let emails: Vec<i64> = changes.iter().map(|c| c.0).collect();
    let st = tx
        .prepare_cached(
            "SELECT DISTINCT ON (email_id) email_id, id, kind, payload FROM outbox \
             WHERE email_id = ANY($1) AND account_id = $2 ORDER BY email_id, id DESC",
        )
        .await?;
    let mut newest: HashMap<i64, (i64, OutboxOp)> = HashMap::new();
    for r in tx.query(&st, &[&emails, &account.0]).await? {
        let kind: &str = r.get(2);
        if kind == "flags" {
            newest.insert(r.get(0), (r.get(1), from_json(r.get(3))?));
        }
    }
    let (mut merged_ids, mut merged) = (Vec::new(), Vec::new());
    let (mut fresh_emails, mut fresh) = (Vec::new(), Vec::new());
    for (email, add, remove) in changes {
        match newest.remove(&email) {
            Some((
                id,
                OutboxOp::Flags {
                    add: old_add,
                    remove: old_remove,
                },
            )) => {
                let (add, remove) = merge_flag_ops(old_add, old_remove, add, remove);
                merged_ids.push(id);
                merged.push(to_json(&OutboxOp::Flags { add, remove })?);
            }
            _ => {
                fresh_emails.push(email);
                fresh.push(to_json(&OutboxOp::Flags { add, remove })?);
            }
        }
    }
    if !merged_ids.is_empty() {
        let st = tx
            .prepare_cached(
                "UPDATE outbox o SET payload = u.payload, rev = o.rev + 1 \
                 FROM unnest($1::bigint[], $2::text[]) AS u(id, payload) WHERE o.id = u.id",
            )
            .await?;
        tx.execute(&st, &[&merged_ids, &merged]).await?;
    }
    if !fresh_emails.is_empty() {
        let st = tx
            .prepare_cached(
                "INSERT INTO outbox (account_id, kind, email_id, payload, created_at) \
                 SELECT $1, 'flags', u.email, u.payload, $2 \
                 FROM unnest($3::bigint[], $4::text[]) WITH ORDINALITY AS u(email, payload, n) \
                 ORDER BY u.n",
            )
            .await?;
        tx.execute(&st, &[&account.0, &now(), &fresh_emails, &fresh])
            .await?;
    }
    Ok(())
}

#[derive(Clone)]
struct CopyRow {
    mailbox: i64,
    uid: i64,
    flags: String,
    modseq: i64,
}

async fn copies_of(tx: &Transaction<'_>, email: i64) -> Result<Vec<CopyRow>> {
    let st = tx
        .prepare_cached(
            "SELECT mailbox_id, uid, flags, modseq FROM copy WHERE email_id = $1 \
             ORDER BY mailbox_id, uid",
        )
        .await?;
    Ok(tx
        .query(&st, &[&email])
        .await?
        .iter()
        .map(|r| CopyRow {
            mailbox: r.get(0),
            uid: r.get(1),
            flags: r.get(2),
            modseq: r.get(3),
        })
        .collect())
}

async fn email_exists(tx: &Transaction<'_>, account: AccountId, email: i64) -> Result<bool> {
    let st = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM email WHERE id = $1 AND account_id = $2 AND NOT orphaned)",
        )
        .await?;
    Ok(tx.query_one(&st, &[&email, &account.0]).await?.get(0))
}

async fn email_row_exists(tx: &Transaction<'_>, email: i64) -> Result<bool> {
    let st = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM email WHERE id = $1)")
        .await?;
    Ok(tx.query_one(&st, &[&email]).await?.get(0))
}

async fn mailbox_in_account(
    tx: &Transaction<'_>,
    account: AccountId,
    mailbox: i64,
) -> Result<bool> {
    let st = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM mailbox WHERE id = $1 AND account_id = $2)")
        .await?;
    Ok(tx.query_one(&st, &[&mailbox, &account.0]).await?.get(0))
}

async fn tombstone(tx: &Transaction<'_>, mailbox: i64, uid: i64, entry: Option<i64>) -> Result<()> {
    if uid >= PLACEHOLDER_UID_BASE {
        return Ok(());
    }
    let Some(entry) = entry else {
        return Ok(());
    };
    let st = tx
        .prepare_cached(
            "INSERT INTO outbox_tombstone (mailbox_id, uid, outbox_id) VALUES ($1, $2, $3) \
             ON CONFLICT (mailbox_id, uid) DO UPDATE SET outbox_id = excluded.outbox_id, \
             done_at = NULL",
        )
        .await?;
    tx.execute(&st, &[&mailbox, &uid, &entry]).await?;
    Ok(())
}

async fn insert_copy(
    tx: &Transaction<'_>,
    mailbox: i64,
    uid: i64,
    email: i64,
    flags: &str,
    modseq: i64,
) -> Result<()> {
    let st = tx
        .prepare_cached(
            "INSERT INTO copy (mailbox_id, uid, email_id, flags, modseq, received_at) \
             SELECT $1, $2, $3, $4, $5, received_at FROM email WHERE id = $3 \
             ON CONFLICT (mailbox_id, uid) DO NOTHING",
        )
        .await?;
    tx.execute(&st, &[&mailbox, &uid, &email, &flags, &modseq])
        .await?;
    Ok(())
}

async fn delete_copy(tx: &Transaction<'_>, mailbox: i64, uid: i64) -> Result<bool> {
    let st = tx
        .prepare_cached("DELETE FROM copy WHERE mailbox_id = $1 AND uid = $2")
        .await?;
    Ok(tx.execute(&st, &[&mailbox, &uid]).await? > 0)
}

/// The UID of a copy that is to exist on the server once the entry is replayed: derived
/// from the entry id (unique, and never a server UID).
async fn placeholder_for(entry: Option<i64>, tx: &Transaction<'_>) -> Result<i64> {
    match entry {
        Some(id) => Ok(PLACEHOLDER_UID_BASE + id),
        // POP3 (local only): a synthetic UID above every stored one, below the placeholders.
        None => {
            let st = tx
                .prepare_cached("SELECT coalesce(max(uid), 0) + 1 FROM copy WHERE uid < $1")
                .await?;
            Ok(tx.query_one(&st, &[&PLACEHOLDER_UID_BASE]).await?.get(0))
        }
    }
}

async fn mark_orphan_if_empty(tx: &Transaction<'_>, email: i64) -> Result<()> {
    let st = tx
        .prepare_cached(
            "UPDATE email SET orphaned = NOT EXISTS (SELECT 1 FROM copy WHERE email_id = $1) \
             WHERE id = $1",
        )
        .await?;
    tx.execute(&st, &[&email]).await?;
    Ok(())
}

/// The Email's keywords recomputed and its orphan mark set, recorded as updated.
async fn settle_email(tx: &Transaction<'_>, log: &mut ChangeLog, email: i64) -> Result<()> {
    refresh_keywords(tx, &[email]).await?;
    mark_orphan_if_empty(tx, email).await?;
    log.record(tx, ObjectType::Email, email, ChangeOp::Updated)
        .await
}

/// Queues `op` (whose placeholder is set from the entry id by `set`) and returns the
/// placeholder UID.
async fn enqueue_placed(
    tx: &Transaction<'_>,
    local_only: bool,
    account: AccountId,
    email: i64,
    mut op: OutboxOp,
) -> Result<(Option<i64>, i64)> {
    let entry = enqueue(tx, local_only, account, Some(email), &op).await?;
    let ph = placeholder_for(entry, tx).await?;
    match &mut op {
        OutboxOp::Move { placeholder, .. }
        | OutboxOp::Copy { placeholder, .. }
        | OutboxOp::Append { placeholder, .. }
        | OutboxOp::Labels { placeholder, .. } => *placeholder = ph,
        _ => {}
    }
    rewrite(tx, entry, &op).await?;
    Ok((entry, ph))
}

async fn expunge_copy(
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
    let entry = enqueue(tx, local_only, account, Some(email), &op).await?;
    delete_copy(tx, c.mailbox, c.uid).await?;
    tombstone(tx, c.mailbox, c.uid, entry).await
}

/// One patch that changes mailboxes (or a second patch of an Email in one request), as
/// sqlite/outbox.rs's `patch_one`.
async fn patch_one(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    local_only: bool,
    account: AccountId,
    p: &EmailPatch,
) -> Result<Refusable<()>> {
    let email = p.email.0;
    if !email_exists(tx, account, email).await? {
        return Ok(Err(WriteRefusal::NotFound));
    }
    for m in p.mailboxes_add.iter().chain(&p.mailboxes_remove) {
        if !mailbox_in_account(tx, account, m.0).await? {
            return Ok(Err(WriteRefusal::Invalid(format!(
                "mailboxIds: no mailbox {}",
                m.0
            ))));
        }
    }
    let add = imap_flags(&p.keywords_add);
    let remove = imap_flags(&p.keywords_remove);

    // 1. Keywords: every copy, then one flag entry (coalesced).
    if !add.is_empty() || !remove.is_empty() {
        let mut changed = false;
        for c in copies_of(tx, email).await? {
            let new = apply_flag_ops(&c.flags, &add, &remove);
            if new != c.flags {
                let st = tx
                    .prepare_cached("UPDATE copy SET flags = $3 WHERE mailbox_id = $1 AND uid = $2")
                    .await?;
                tx.execute(&st, &[&c.mailbox, &c.uid, &new]).await?;
                log.record(tx, ObjectType::Mailbox, c.mailbox, ChangeOp::Updated)
                    .await?;
                changed = true;
            }
        }
        if changed {
            refresh_keywords(tx, &[email]).await?;
            log.record(tx, ObjectType::Email, email, ChangeOp::Updated)
                .await?;
            if !local_only {
                enqueue_flags(tx, account, vec![(email, add, remove)]).await?;
            }
        }
    }

    // 2. Mailboxes: removes paired with adds become moves, the rest copies or expunges.
    if p.mailboxes_add.is_empty() && p.mailboxes_remove.is_empty() {
        return Ok(Ok(()));
    }
    let copies = copies_of(tx, email).await?;
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
    if held.len() + adds.len() - removes.len() == 0 {
        return Ok(Err(WriteRefusal::Invalid(
            "mailboxIds: an Email must be in at least one mailbox".into(),
        )));
    }
    if let Some(all) = gmail_all_copy(tx, email, &copies).await? {
        patch_gmail(
            tx, log, local_only, account, email, &copies, &all, &adds, &removes,
        )
        .await?;
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
                    let op = OutboxOp::Move {
                        from: MailboxId(*from),
                        uid: c.uid,
                        to: MailboxId(*to),
                        placeholder: 0,
                        flags: c.flags.clone(),
                        modseq: c.modseq,
                    };
                    let (entry, ph) = enqueue_placed(tx, local_only, account, email, op).await?;
                    delete_copy(tx, c.mailbox, c.uid).await?;
                    tombstone(tx, c.mailbox, c.uid, entry).await?;
                    insert_copy(tx, *to, ph, email, &c.flags, 0).await?;
                } else {
                    expunge_copy(tx, local_only, account, email, c).await?;
                }
            }
            log.record(tx, ObjectType::Mailbox, *from, ChangeOp::Updated)
                .await?;
        } else {
            // A copy from a copy that stays.
            let Some(src) = copies_left.first() else {
                return Ok(Err(WriteRefusal::Invalid(
                    "mailboxIds: no source copy".into(),
                )));
            };
            let op = OutboxOp::Copy {
                from: MailboxId(src.mailbox),
                uid: src.uid,
                to: MailboxId(*to),
                placeholder: 0,
            };
            let (_, ph) = enqueue_placed(tx, local_only, account, email, op).await?;
            insert_copy(tx, *to, ph, email, &src.flags, 0).await?;
        }
        log.record(tx, ObjectType::Mailbox, *to, ChangeOp::Updated)
            .await?;
    }
    for from in removes_iter {
        for c in copies.iter().filter(|c| c.mailbox == *from) {
            expunge_copy(tx, local_only, account, email, c).await?;
        }
        log.record(tx, ObjectType::Mailbox, *from, ChangeOp::Updated)
            .await?;
    }
    settle_email(tx, log, email).await?;
    Ok(Ok(()))
}

async fn mailbox_role(tx: &Transaction<'_>, mailbox: i64) -> Result<Option<String>> {
    let st = tx
        .prepare_cached("SELECT role FROM mailbox WHERE id = $1")
        .await?;
    Ok(tx
        .query_opt(&st, &[&mailbox])
        .await?
        .and_then(|r| r.get::<_, Option<String>>(0)))
}

/// Gmail: the All Mail copy (with a server UID) of an Email synced the Gmail way, whose
/// mailboxes are then labels.
async fn gmail_all_copy(
    tx: &Transaction<'_>,
    email: i64,
    copies: &[CopyRow],
) -> Result<Option<CopyRow>> {
    let st = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM email WHERE id = $1 AND gm_msgid IS NOT NULL)",
        )
        .await?;
    let gmail: bool = tx.query_one(&st, &[&email]).await?.get(0);
    if !gmail {
        return Ok(None);
    }
    for c in copies {
        if c.uid > 0
            && c.uid < PLACEHOLDER_UID_BASE
            && mailbox_role(tx, c.mailbox).await?.as_deref() == Some("all")
        {
            return Ok(Some(c.clone()));
        }
    }
    Ok(None)
}

/// The label a Gmail folder stands for, as X-GM-LABELS names it: the system labels by
/// their role, a user label by its folder's wire name.
async fn gmail_label(tx: &Transaction<'_>, mailbox: i64) -> Result<String> {
    let st = tx
        .prepare_cached("SELECT raw_name, role FROM mailbox WHERE id = $1")
        .await?;
    let row = tx
        .query_opt(&st, &[&mailbox])
        .await?
        .ok_or_else(|| Error::NotFound(format!("mailbox {mailbox}")))?;
    let (raw, role): (String, Option<String>) = (row.get(0), row.get(1));
    Ok(match role.as_deref() {
        Some("inbox") => "\\Inbox".into(),
        Some("sent") => "\\Sent".into(),
        Some("drafts") => "\\Draft".into(),
        Some("important") => "\\Important".into(),
        _ => raw,
    })
}

/// A mailboxIds change of a Gmail message, done as Gmail's web client does it
/// (sqlite/outbox.rs's `patch_gmail`, docs/design/gmail.md): labels added or removed on the
/// All Mail copy; Trash or Spam added is a MOVE of the All Mail copy there.
#[allow(clippy::too_many_arguments)]
async fn patch_gmail(
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
        if !matches!(
            mailbox_role(tx, *to).await?.as_deref(),
            Some("trash" | "junk")
        ) {
            continue;
        }
        let op = OutboxOp::Move {
            from: MailboxId(all.mailbox),
            uid: all.uid,
            to: MailboxId(*to),
            placeholder: 0,
            flags: all.flags.clone(),
            modseq: all.modseq,
        };
        let (entry, ph) = enqueue_placed(tx, local_only, account, email, op).await?;
        for c in copies.iter().filter(|c| c.mailbox != *to) {
            delete_copy(tx, c.mailbox, c.uid).await?;
            tombstone(tx, c.mailbox, c.uid, entry).await?;
            log.record(tx, ObjectType::Mailbox, c.mailbox, ChangeOp::Updated)
                .await?;
        }
        insert_copy(tx, *to, ph, email, &all.flags, 0).await?;
        log.record(tx, ObjectType::Mailbox, *to, ChangeOp::Updated)
            .await?;
        return settle_email(tx, log, email).await;
    }
    let mut add = Vec::new();
    let mut placeholders = Vec::new();
    for to in adds {
        if mailbox_role(tx, *to).await?.as_deref() == Some("all") {
            continue;
        }
        add.push(gmail_label(tx, *to).await?);
        placeholders.push(MailboxId(*to));
    }
    let mut remove = Vec::new();
    let mut removed = Vec::new();
    for from in removes {
        if matches!(
            mailbox_role(tx, *from).await?.as_deref(),
            Some("all" | "trash" | "junk")
        ) {
            continue;
        }
        remove.push(gmail_label(tx, *from).await?);
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
    let op = OutboxOp::Labels {
        mailbox: MailboxId(all.mailbox),
        uid: all.uid,
        add,
        remove,
        placeholders: placeholders.clone(),
        placeholder: 0,
        removed: removed.clone(),
    };
    let (entry, ph) = enqueue_placed(tx, local_only, account, email, op).await?;
    for m in &placeholders {
        insert_copy(tx, m.0, ph, email, &all.flags, 0).await?;
        log.record(tx, ObjectType::Mailbox, m.0, ChangeOp::Updated)
            .await?;
    }
    for r in &removed {
        delete_copy(tx, r.mailbox.0, r.uid).await?;
        tombstone(tx, r.mailbox.0, r.uid, entry).await?;
        log.record(tx, ObjectType::Mailbox, r.mailbox.0, ChangeOp::Updated)
            .await?;
    }
    settle_email(tx, log, email).await
}

/// Keyword changes of distinct Emails, the same result as [`patch_one`] for each, in a
/// fixed number of statements whatever their number.
async fn patch_flags_batch(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    local_only: bool,
    account: AccountId,
    run: &[&EmailPatch],
) -> Result<Vec<Refusable<()>>> {
    if run.is_empty() {
        return Ok(Vec::new());
    }
    use tokio_postgres::types::ToSql;
    let ids: Vec<i64> = run.iter().map(|p| p.email.0).collect();
    let st = tx
        .prepare_cached(
            "SELECT id FROM email WHERE id = ANY($1) AND account_id = $2 AND NOT orphaned",
        )
        .await?;
    let copies_st = tx
        .prepare_cached(
            "SELECT email_id, mailbox_id, uid, flags FROM copy WHERE email_id = ANY($1) \
             ORDER BY email_id, mailbox_id, uid",
        )
        .await?;
    // Both reads in one round trip (pipelined; see below).
    let email_params: [&(dyn ToSql + Sync); 2] = [&ids, &account.0];
    let copy_params: [&(dyn ToSql + Sync); 1] = [&ids];
    let (existing, copy_rows) = tokio::try_join!(
        tx.query(&st, &email_params),
        tx.query(&copies_st, &copy_params)
    )?;
    let existing: HashSet<i64> = existing.iter().map(|r| r.get(0)).collect();
    let mut copies: HashMap<i64, Vec<(i64, i64, String)>> = HashMap::new();
    for r in copy_rows {
        copies
            .entry(r.get(0))
            .or_default()
            .push((r.get(1), r.get(2), r.get(3)));
    }
    let mut out = Vec::with_capacity(run.len());
    let mut changed: Vec<(i64, Vec<String>, Vec<String>)> = Vec::new();
    let mut mailboxes: BTreeSet<i64> = BTreeSet::new();
    let (mut set_mailbox, mut set_uid, mut set_flags) = (Vec::new(), Vec::new(), Vec::new());
    let (mut kw_emails, mut kw) = (Vec::new(), Vec::new());
    for p in run {
        let email = p.email.0;
        if !existing.contains(&email) {
            out.push(Err(WriteRefusal::NotFound));
            continue;
        }
        out.push(Ok(()));
        let add = imap_flags(&p.keywords_add);
        let remove = imap_flags(&p.keywords_remove);
        if add.is_empty() && remove.is_empty() {
            continue;
        }
        let mut any = false;
        let mut all_flags: Vec<String> = Vec::new();
        for (mailbox, uid, flags) in copies.get(&email).map(Vec::as_slice).unwrap_or(&[]) {
            let new = apply_flag_ops(flags, &add, &remove);
            if new != *flags {
                set_mailbox.push(*mailbox);
                set_uid.push(*uid);
                set_flags.push(new.clone());
                mailboxes.insert(*mailbox);
                any = true;
            }
            all_flags.push(new);
        }
        if any {
            kw_emails.push(email);
            kw.push(keywords_json(all_flags.iter().map(String::as_str)));
            changed.push((email, add, remove));
        }
    }
    // The statements below are sent together where nothing of one feeds the next: the
    // connection pipelines them, so each group costs one round trip (on a loaded machine
    // every round trip waits for the server's process to be scheduled).
    if !set_uid.is_empty() {
        let copies = tx
            .prepare_cached(
                "UPDATE copy c SET flags = u.flags \
                 FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u(mailbox, uid, flags) \
                 WHERE c.mailbox_id = u.mailbox AND c.uid = u.uid",
            )
            .await?;
        let keywords = tx
            .prepare_cached("SELECT set_keywords($1::bigint[], $2::text[])")
            .await?;
        let copy_params: [&(dyn ToSql + Sync); 3] = [&set_mailbox, &set_uid, &set_flags];
        let keyword_params: [&(dyn ToSql + Sync); 2] = [&kw_emails, &kw];
        tokio::try_join!(
            tx.execute(&copies, &copy_params),
            tx.execute(&keywords, &keyword_params),
        )?;
    }
    let mailboxes: Vec<i64> = mailboxes.into_iter().collect();
    let sets: [(ObjectType, &[i64]); 2] = [
        (ObjectType::Mailbox, &mailboxes),
        (ObjectType::Email, &kw_emails),
    ];
    let logged = log.record_sets(tx, &sets, ChangeOp::Updated);
    let queued = async {
        if local_only {
            return Ok(());
        }
        enqueue_flags(tx, account, changed).await
    };
    tokio::try_join!(logged, queued)?;
    Ok(out)
}

impl PgStore {
    async fn update_emails_tx(
        &self,
        account: AccountId,
        patches: &[EmailPatch],
    ) -> Result<Vec<Refusable<()>>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let (local_only, mut log) = begin_user(self, &tx, account).await?;
        let mut out = Vec::with_capacity(patches.len());
        // Keyword-only patches of distinct Emails go through set-based statements a run at
        // a time; anything else one patch at a time, in order.
        let mut run: Vec<&EmailPatch> = Vec::new();
        let mut in_run: HashSet<i64> = HashSet::new();
        for p in patches {
            let flags_only = p.mailboxes_add.is_empty() && p.mailboxes_remove.is_empty();
            if flags_only && in_run.insert(p.email.0) {
                run.push(p);
                continue;
            }
            out.extend(patch_flags_batch(&tx, &mut log, local_only, account, &run).await?);
            run.clear();
            in_run.clear();
            if flags_only {
                in_run.insert(p.email.0);
                run.push(p);
            } else {
                out.push(patch_one(&tx, &mut log, local_only, account, p).await?);
            }
        }
        out.extend(patch_flags_batch(&tx, &mut log, local_only, account, &run).await?);
        log.commit(tx).await?;
        Ok(out)
    }

    /// Every copy of each Email removed and its expunge queued, in a fixed number of
    /// statements whatever their number (emptying a Trash of 1,000).
    async fn destroy_emails_tx(
        &self,
        account: AccountId,
        ids: &[EmailId],
    ) -> Result<Vec<Refusable<()>>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let (local_only, mut log) = begin_user(self, &tx, account).await?;
        let wanted: Vec<i64> = ids.iter().map(|e| e.0).collect();
        let st = tx
            .prepare_cached(
                "SELECT id FROM email WHERE id = ANY($1) AND account_id = $2 AND NOT orphaned",
            )
            .await?;
        let existing: HashSet<i64> = tx
            .query(&st, &[&wanted, &account.0])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // In request order; an Email named twice is gone by its second mention.
        let mut done: HashSet<i64> = HashSet::new();
        let out: Vec<Refusable<()>> = wanted
            .iter()
            .map(|e| {
                if existing.contains(e) && done.insert(*e) {
                    Ok(())
                } else {
                    Err(WriteRefusal::NotFound)
                }
            })
            .collect();
        let emails: Vec<i64> = wanted
            .into_iter()
            .filter(|e| existing.contains(e))
            .collect();
        let emails: Vec<i64> = {
            let mut seen = HashSet::new();
            emails.into_iter().filter(|e| seen.insert(*e)).collect()
        };
        if emails.is_empty() {
            log.commit(tx).await?;
            return Ok(out);
        }
        let st = tx
            .prepare_cached(
                "SELECT email_id, mailbox_id, uid, flags, modseq FROM copy WHERE email_id = ANY($1)",
            )
            .await?;
        let mut copies: HashMap<i64, Vec<CopyRow>> = HashMap::new();
        for r in tx.query(&st, &[&emails]).await? {
            copies.entry(r.get(0)).or_default().push(CopyRow {
                mailbox: r.get(1),
                uid: r.get(2),
                flags: r.get(3),
                modseq: r.get(4),
            });
        }
        // The copies in the order the per-Email path removes them: by Email as requested,
        // then by mailbox and UID.
        let mut removed: Vec<(i64, CopyRow)> = Vec::new();
        for e in &emails {
            let mut of = copies.remove(e).unwrap_or_default();
            of.sort_by_key(|c| (c.mailbox, c.uid));
            removed.extend(of.into_iter().map(|c| (*e, c)));
        }
        let mailboxes: Vec<i64> = removed
            .iter()
            .map(|(_, c)| c.mailbox)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (rm_mailbox, rm_uid): (Vec<i64>, Vec<i64>) =
            removed.iter().map(|(_, c)| (c.mailbox, c.uid)).unzip();
        let st = tx
            .prepare_cached(
                "DELETE FROM copy c USING unnest($1::bigint[], $2::bigint[]) AS u(mailbox, uid) \
                 WHERE c.mailbox_id = u.mailbox AND c.uid = u.uid",
            )
            .await?;
        tx.execute(&st, &[&rm_mailbox, &rm_uid]).await?;
        if !local_only && !removed.is_empty() {
            // The entries' ids drawn first, in order, so each tombstone names its entry.
            let st = tx
                .prepare_cached(
                    "SELECT nextval(pg_get_serial_sequence('outbox', 'id')) \
                     FROM generate_series(1, $1::bigint)",
                )
                .await?;
            let count = i64::try_from(removed.len()).unwrap_or(i64::MAX);
            let mut entries: Vec<i64> = tx
                .query(&st, &[&count])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            entries.sort_unstable();
            let mut payloads = Vec::with_capacity(removed.len());
            let mut objects = Vec::with_capacity(removed.len());
            for (e, c) in &removed {
                objects.push(*e);
                payloads.push(to_json(&OutboxOp::Expunge {
                    mailbox: MailboxId(c.mailbox),
                    uid: c.uid,
                    flags: c.flags.clone(),
                    modseq: c.modseq,
                })?);
            }
            let st = tx
                .prepare_cached(
                    "INSERT INTO outbox (id, account_id, kind, email_id, payload, created_at) \
                     OVERRIDING SYSTEM VALUE \
                     SELECT u.id, $1, 'expunge', u.email, u.payload, $2 \
                     FROM unnest($3::bigint[], $4::bigint[], $5::text[]) AS u(id, email, payload)",
                )
                .await?;
            tx.execute(&st, &[&account.0, &now(), &entries, &objects, &payloads])
                .await?;
            // A placeholder copy (not on the server yet) leaves no tombstone.
            let st = tx
                .prepare_cached(
                    "INSERT INTO outbox_tombstone (mailbox_id, uid, outbox_id) \
                     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) \
                     AS u(mailbox, uid, entry) WHERE u.uid < $4 \
                     ON CONFLICT (mailbox_id, uid) DO UPDATE SET outbox_id = excluded.outbox_id, \
                     done_at = NULL",
                )
                .await?;
            tx.execute(
                &st,
                &[&rm_mailbox, &rm_uid, &entries, &PLACEHOLDER_UID_BASE],
            )
            .await?;
        }
        log.record_many(&tx, ObjectType::Mailbox, &mailboxes, ChangeOp::Updated)
            .await?;
        // Destroyed for JMAP at once: collect_orphans (run right after this commits)
        // removes the rows; the copies' expunges are in the outbox.
        let st = tx
            .prepare_cached("UPDATE email SET orphaned = true WHERE id = ANY($1)")
            .await?;
        tx.execute(&st, &[&emails]).await?;
        log.record_many(&tx, ObjectType::Email, &emails, ChangeOp::Updated)
            .await?;
        log.commit(tx).await?;
        Ok(out)
    }

    async fn append_email_tx(
        &self,
        account: AccountId,
        req: &AppendRequest,
    ) -> Result<Refusable<EmailId>> {
        // Parsed before the transaction, like the sync's messages.
        let parsed = mime::parse(&req.raw);
        let blob_id = mime::blob_id(&req.raw);
        let header_hash = mime::blob_id(header_block(&req.raw));
        let size = u32::try_from(req.raw.len()).unwrap_or(u32::MAX);
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let (local_only, mut log) = begin_user(self, &tx, account).await?;
        if !mailbox_in_account(&tx, account, req.mailbox.0).await? {
            return Ok(Err(WriteRefusal::Invalid(
                "mailboxIds: no such mailbox".into(),
            )));
        }
        let flags = imap_flags(&req.keywords);
        let joined = join_flags(&flags);
        // The sync's own path for a new Email (threading, metadata, full text), fed one
        // message that has no server UID yet.
        let mut ch = MailboxChanges::new(UidValidity(0));
        ch.new.push(NewCopy {
            uid: Uid(0),
            flags: flags.clone(),
            modseq: mail_types::ModSeq(0),
            internal_date: req.received_at,
            size,
            server_email_id: None,
            header_hash: header_hash.clone(),
            parsed,
            raw: Some(bytes::Bytes::copy_from_slice(&req.raw)),
        });
        let mut pending = vec![PendingEmail {
            item: 0,
            identity: format!("h:{header_hash}"),
            thread: 0,
            gmail: None,
            blob: Some(blob_id.clone()),
        }];
        self.place_in_threads(&tx, &mut log, account, &ch, &mut pending)
            .await?;
        let st = tx
            .prepare_cached("SELECT nextval(pg_get_serial_sequence('email', 'id'))")
            .await?;
        let email: i64 = tx.query_one(&st, &[]).await?.get(0);
        put_blobs(&tx, &[(blob_id.clone(), &req.raw[..])]).await?;
        let copies = [(0, Target::New(0), joined.clone(), 0)];
        insert_emails(&tx, account, &ch, &pending, &[email], &copies).await?;
        log.record(&tx, ObjectType::Email, email, ChangeOp::Created)
            .await?;
        let op = OutboxOp::Append {
            mailbox: req.mailbox,
            placeholder: 0,
            blob_id,
            flags,
            received_at: req.received_at,
            header_hash,
            size: i64::from(size),
            uidnext_before: None,
        };
        let (_, ph) = enqueue_placed(&tx, local_only, account, email, op).await?;
        insert_copy(&tx, req.mailbox.0, ph, email, &joined, 0).await?;
        refresh_keywords(&tx, &[email]).await?;
        log.record(&tx, ObjectType::Mailbox, req.mailbox.0, ChangeOp::Updated)
            .await?;
        log.commit(tx).await?;
        Ok(Ok(EmailId(email)))
    }
}

struct MailboxRow {
    raw_name: String,
    name: String,
    delimiter: Option<String>,
    parent: Option<i64>,
}

async fn mailbox_row(
    tx: &Transaction<'_>,
    account: AccountId,
    id: i64,
) -> Result<Option<MailboxRow>> {
    let st = tx
        .prepare_cached(
            "SELECT raw_name, name, delimiter, parent_id FROM mailbox \
             WHERE id = $1 AND account_id = $2",
        )
        .await?;
    Ok(tx
        .query_opt(&st, &[&id, &account.0])
        .await?
        .map(|r| MailboxRow {
            raw_name: r.get(0),
            name: r.get(1),
            delimiter: r.get(2),
            parent: r.get(3),
        }))
}

/// The account's hierarchy delimiter (from its stored mailboxes; "/" when none says).
async fn delimiter(tx: &Transaction<'_>, account: AccountId) -> Result<String> {
    let st = tx
        .prepare_cached(
            "SELECT delimiter FROM mailbox WHERE account_id = $1 AND delimiter IS NOT NULL \
             AND delimiter <> '' ORDER BY raw_name = 'INBOX' DESC LIMIT 1",
        )
        .await?;
    Ok(tx
        .query_opt(&st, &[&account.0])
        .await?
        .map(|r| r.get(0))
        .unwrap_or_else(|| "/".into()))
}

/// The full (decoded) name of a child `leaf` of `parent`.
async fn full_name(
    tx: &Transaction<'_>,
    account: AccountId,
    parent: Option<i64>,
    leaf: &str,
    delim: &str,
) -> Result<Refusable<String>> {
    Ok(match parent {
        None => Ok(leaf.to_string()),
        Some(p) => match mailbox_row(tx, account, p).await? {
            None => Err(WriteRefusal::Invalid("parentId: no such mailbox".into())),
            Some(row) => Ok(format!("{}{delim}{leaf}", row.name)),
        },
    })
}

async fn name_taken(tx: &Transaction<'_>, account: AccountId, name: &str) -> Result<bool> {
    let st = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM mailbox WHERE account_id = $1 AND name = $2)")
        .await?;
    Ok(tx.query_one(&st, &[&account.0, &name]).await?.get(0))
}

impl PgStore {
    async fn create_mailbox_tx(
        &self,
        account: AccountId,
        leaf: &str,
        parent: Option<MailboxId>,
        subscribed: bool,
    ) -> Result<Refusable<MailboxId>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let (local_only, mut log) = begin_user(self, &tx, account).await?;
        self.bump_mailbox_epoch(account);
        if local_only {
            return Ok(Err(WriteRefusal::Forbidden(
                "a POP3 account has only its INBOX".into(),
            )));
        }
        let delim = delimiter(&tx, account).await?;
        if let Err(e) = check_leaf(leaf, &delim) {
            return Ok(Err(e));
        }
        let name = match full_name(&tx, account, parent.map(|p| p.0), leaf, &delim).await? {
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        if name_taken(&tx, account, &name).await? || name.eq_ignore_ascii_case("INBOX") {
            return Ok(Err(WriteRefusal::AlreadyExists));
        }
        // The wire name is set when the server confirmed the CREATE; until then a local one
        // that no server name can equal. PostgreSQL's TEXT holds no NUL byte (SQLite's
        // marker), so the marker is a C0 control character IMAP names never hold either.
        let pending_raw = format!("{PENDING_RAW}{name}");
        let st = tx
            .prepare_cached(
                "INSERT INTO mailbox (account_id, raw_name, name, parent_id, delimiter, subscribed) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .await?;
        let id: i64 = tx
            .query_one(
                &st,
                &[
                    &account.0,
                    &pending_raw,
                    &name,
                    &parent.map(|p| p.0),
                    &delim,
                    &subscribed,
                ],
            )
            .await?
            .get(0);
        log.record(&tx, ObjectType::Mailbox, id, ChangeOp::Created)
            .await?;
        let create = OutboxOp::CreateMailbox {
            mailbox: MailboxId(id),
            parent,
            leaf: leaf.to_string(),
        };
        enqueue(&tx, false, account, Some(id), &create).await?;
        if subscribed {
            let op = OutboxOp::Subscribe {
                mailbox: MailboxId(id),
                subscribed: true,
            };
            enqueue(&tx, false, account, Some(id), &op).await?;
        }
        log.commit(tx).await?;
        Ok(Ok(MailboxId(id)))
    }

    async fn update_mailbox_tx(
        &self,
        account: AccountId,
        id: MailboxId,
        patch: &MailboxPatch,
    ) -> Result<Refusable<()>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let (local_only, mut log) = begin_user(self, &tx, account).await?;
        self.bump_mailbox_epoch(account);
        let Some(row) = mailbox_row(&tx, account, id.0).await? else {
            return Ok(Err(WriteRefusal::NotFound));
        };
        let delim = match row.delimiter.clone().filter(|d| !d.is_empty()) {
            Some(d) => d,
            None => delimiter(&tx, account).await?,
        };
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
                up = mailbox_row(&tx, account, p).await?.and_then(|r| r.parent);
                steps += 1;
            }
            let name = match full_name(&tx, account, parent, &leaf, &delim).await? {
                Ok(n) => n,
                Err(e) => return Ok(Err(e)),
            };
            if name_taken(&tx, account, &name).await? {
                return Ok(Err(WriteRefusal::AlreadyExists));
            }
            let st = tx
                .prepare_cached("UPDATE mailbox SET name = $2, parent_id = $3 WHERE id = $1")
                .await?;
            tx.execute(&st, &[&id.0, &name, &parent]).await?;
            log.record(&tx, ObjectType::Mailbox, id.0, ChangeOp::Updated)
                .await?;
            let st = tx
                .prepare_cached(
                    "UPDATE mailbox SET name = $3 || substr(name, length($2) + 1) \
                     WHERE account_id = $1 AND starts_with(name, $2) RETURNING id",
                )
                .await?;
            let moved: Vec<i64> = tx
                .query(
                    &st,
                    &[
                        &account.0,
                        &format!("{}{delim}", row.name),
                        &format!("{name}{delim}"),
                    ],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            log.record_many(&tx, ObjectType::Mailbox, &moved, ChangeOp::Updated)
                .await?;
            let op = OutboxOp::RenameMailbox {
                mailbox: id,
                old_raw: row.raw_name.clone(),
                old_name: row.name.clone(),
                old_parent: row.parent.map(MailboxId),
                parent: parent.map(MailboxId),
                leaf,
            };
            enqueue(&tx, false, account, Some(id.0), &op).await?;
        }
        if let Some(s) = patch.subscribed {
            let st = tx
                .prepare_cached(
                    "UPDATE mailbox SET subscribed = $2 WHERE id = $1 AND subscribed <> $2",
                )
                .await?;
            if tx.execute(&st, &[&id.0, &s]).await? > 0 {
                log.record(&tx, ObjectType::Mailbox, id.0, ChangeOp::Updated)
                    .await?;
                let op = OutboxOp::Subscribe {
                    mailbox: id,
                    subscribed: s,
                };
                enqueue(&tx, local_only, account, Some(id.0), &op).await?;
            }
        }
        if let Some(o) = patch.sort_order {
            let st = tx
                .prepare_cached(
                    "INSERT INTO mailbox_sort (mailbox_id, sort_order) VALUES ($1, $2) \
                     ON CONFLICT (mailbox_id) DO UPDATE SET sort_order = excluded.sort_order \
                     WHERE mailbox_sort.sort_order <> excluded.sort_order",
                )
                .await?;
            if tx.execute(&st, &[&id.0, &i64::from(o)]).await? > 0 {
                log.record(&tx, ObjectType::Mailbox, id.0, ChangeOp::Updated)
                    .await?;
            }
        }
        log.commit(tx).await?;
        Ok(Ok(()))
    }

    async fn destroy_mailbox_tx(
        &self,
        account: AccountId,
        id: MailboxId,
        remove_emails: bool,
    ) -> Result<Refusable<()>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let (local_only, mut log) = begin_user(self, &tx, account).await?;
        self.bump_mailbox_epoch(account);
        let Some(row) = mailbox_row(&tx, account, id.0).await? else {
            return Ok(Err(WriteRefusal::NotFound));
        };
        if local_only || row.raw_name.eq_ignore_ascii_case("INBOX") {
            return Ok(Err(WriteRefusal::Forbidden(
                "INBOX cannot be destroyed".into(),
            )));
        }
        let st = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM mailbox WHERE parent_id = $1)")
            .await?;
        if tx.query_one(&st, &[&id.0]).await?.get::<_, bool>(0) {
            return Ok(Err(WriteRefusal::MailboxHasChild));
        }
        let st = tx
            .prepare_cached("SELECT DISTINCT email_id FROM copy WHERE mailbox_id = $1")
            .await?;
        let emails: Vec<i64> = tx
            .query(&st, &[&id.0])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !emails.is_empty() && !remove_emails {
            return Ok(Err(WriteRefusal::MailboxHasEmail));
        }
        let st = tx
            .prepare_cached("DELETE FROM copy WHERE mailbox_id = $1")
            .await?;
        tx.execute(&st, &[&id.0]).await?;
        refresh_keywords(&tx, &emails).await?;
        let st = tx
            .prepare_cached(
                "UPDATE email SET orphaned = NOT EXISTS (SELECT 1 FROM copy WHERE email_id = email.id) \
                 WHERE id = ANY($1)",
            )
            .await?;
        tx.execute(&st, &[&emails]).await?;
        log.record_many(&tx, ObjectType::Email, &emails, ChangeOp::Updated)
            .await?;
        let st = tx
            .prepare_cached("DELETE FROM mailbox WHERE id = $1")
            .await?;
        tx.execute(&st, &[&id.0]).await?;
        log.record(&tx, ObjectType::Mailbox, id.0, ChangeOp::Destroyed)
            .await?;
        // A mailbox never created on the server needs nothing there: its pending entries
        // go. A CREATE the worker has begun (attempts > 0) may be on the server already:
        // that entry stays, and its completion queues the DELETE of the name it created.
        let st = tx
            .prepare_cached(
                "SELECT attempts FROM outbox WHERE account_id = $1 AND email_id = $2 \
                 AND kind = 'create_mailbox'",
            )
            .await?;
        let create_begun: Option<i64> = tx
            .query_opt(&st, &[&account.0, &id.0])
            .await?
            .map(|r| r.get(0));
        if create_begun == Some(0) {
            let st = tx
                .prepare_cached(
                    "DELETE FROM outbox WHERE account_id = $1 AND email_id = $2 \
                     AND kind = 'create_mailbox'",
                )
                .await?;
            tx.execute(&st, &[&account.0, &id.0]).await?;
        }
        if create_begun.is_some() {
            let st = tx
                .prepare_cached(
                    "DELETE FROM outbox WHERE account_id = $1 AND email_id = $2 \
                     AND kind IN ('subscribe', 'rename_mailbox')",
                )
                .await?;
            tx.execute(&st, &[&account.0, &id.0]).await?;
        } else {
            let op = OutboxOp::DeleteMailbox {
                raw_name: row.raw_name,
            };
            enqueue(&tx, false, account, Some(id.0), &op).await?;
        }
        log.commit(tx).await?;
        Ok(Ok(()))
    }
}

impl PgStore {
    /// Moves `account`'s mailbox epoch (`MailSync::mailbox_epoch`): called while the
    /// account's lock is held, so a list applied after this commit sees the move.
    fn bump_mailbox_epoch(&self, account: AccountId) {
        if let Ok(mut m) = self.mailbox_epochs.lock() {
            let e = m.entry(account.0).or_insert(0);
            *e = e.wrapping_add(1);
        }
    }
}

/// The raw name a created mailbox has until the server confirmed it (see `create_mailbox_tx`).
const PENDING_RAW: &str = "\u{1}pending:";

/// A stored raw name as the roles hand it out: a mailbox not created on the server yet
/// starts with a NUL byte on both backends (what the engine's worker looks for), though
/// PostgreSQL stores another marker.
pub(super) fn api_raw_name(stored: String) -> String {
    match stored.strip_prefix(PENDING_RAW) {
        Some(name) => format!("\u{0}pending:{name}"),
        None => stored,
    }
}

// --- the worker's side --------------------------------------------------------------------

/// The account of entry `id`, if it is still queued.
async fn entry_account(tx: &Transaction<'_>, id: i64) -> Result<Option<AccountId>> {
    let st = tx
        .prepare_cached("SELECT account_id FROM outbox WHERE id = $1")
        .await?;
    Ok(tx
        .query_opt(&st, &[&id])
        .await?
        .map(|r| AccountId(r.get(0))))
}

impl PgStore {
    async fn next_tx(&self, account: AccountId, limit: usize) -> Result<Vec<OutboxEntry>> {
        let mut c = self.client().await?;
        // One snapshot for the entries and their targets.
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let st = tx
            .prepare_cached(
                "SELECT id, rev, kind, email_id, payload, attempts FROM outbox \
                 WHERE account_id = $1 ORDER BY id LIMIT $2",
            )
            .await?;
        let rows = tx
            .query(
                &st,
                &[&account.0, &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?;
        // The targets of every flag entry at once: their Emails' copies with server UIDs.
        let flag_emails: Vec<i64> = rows
            .iter()
            .filter(|r| r.get::<_, &str>(2) == "flags")
            .filter_map(|r| r.get::<_, Option<i64>>(3))
            .collect();
        let mut copies: HashMap<i64, Vec<(MailboxId, u32, u64)>> = HashMap::new();
        let mut later: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
        if !flag_emails.is_empty() {
            let st = tx
                .prepare_cached(
                    "SELECT c.email_id, c.mailbox_id, c.uid, m.highestmodseq FROM copy c \
                     JOIN mailbox m ON m.id = c.mailbox_id \
                     WHERE c.email_id = ANY($1) AND c.uid < $2 ORDER BY c.mailbox_id, c.uid",
                )
                .await?;
            for r in tx
                .query(&st, &[&flag_emails, &PLACEHOLDER_UID_BASE])
                .await?
            {
                copies.entry(r.get(0)).or_default().push((
                    MailboxId(r.get(1)),
                    u32_of(r.get(2), "UID")?,
                    u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
                ));
            }
            let st = tx
                .prepare_cached(
                    "SELECT email_id, id, payload FROM outbox WHERE email_id = ANY($1) \
                     AND kind IN ('move', 'expunge') ORDER BY id",
                )
                .await?;
            for r in tx.query(&st, &[&flag_emails]).await? {
                later
                    .entry(r.get(0))
                    .or_default()
                    .push((r.get(1), r.get(2)));
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (id, rev, kind, object, payload, attempts): (
                i64,
                i64,
                &str,
                Option<i64>,
                &str,
                i64,
            ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
            let op = from_json(payload)?;
            let email = (!op.is_mailbox_op())
                .then_some(object)
                .flatten()
                .map(EmailId);
            let mut targets = Vec::new();
            if kind == "flags"
                && let Some(e) = object
            {
                targets = copies.get(&e).cloned().unwrap_or_default();
                // A copy a later entry moves or removes is gone locally but still on the
                // server, where this change must reach it first (the MOVE then carries the
                // flags along).
                for (_, p) in later.get(&e).into_iter().flatten().filter(|(l, _)| *l > id) {
                    let (m, uid) = match from_json(p)? {
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
                    let st = tx
                        .prepare_cached("SELECT highestmodseq FROM mailbox WHERE id = $1")
                        .await?;
                    if let Some(h) = tx.query_opt(&st, &[&m.0]).await? {
                        targets.push((m, uid, u64::try_from(h.get::<_, i64>(0)).unwrap_or(0)));
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
        tx.commit().await?;
        Ok(out)
    }

    async fn begin_tx(&self, id: i64, uidnext: Option<u32>) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let Some(account) = entry_account(&tx, id).await? else {
            return Ok(false);
        };
        ChangeLog::of(self, account).check_fence(&tx).await?;
        let st = tx
            .prepare_cached("SELECT payload FROM outbox WHERE id = $1 FOR UPDATE")
            .await?;
        let Some(row) = tx.query_opt(&st, &[&id]).await? else {
            return Ok(false);
        };
        let mut op = from_json(row.get(0))?;
        if let OutboxOp::Append { uidnext_before, .. } = &mut op
            && uidnext_before.is_none()
        {
            *uidnext_before = uidnext;
        }
        let st = tx
            .prepare_cached("UPDATE outbox SET attempts = attempts + 1, payload = $2 WHERE id = $1")
            .await?;
        tx.execute(&st, &[&id, &to_json(&op)?]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn defer_tx(&self, id: i64, error: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let Some(account) = entry_account(&tx, id).await? else {
            return Ok(());
        };
        ChangeLog::of(self, account).check_fence(&tx).await?;
        let st = tx
            .prepare_cached("UPDATE outbox SET last_error = $2 WHERE id = $1")
            .await?;
        tx.execute(&st, &[&id, &error]).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Gives a placeholder copy its server UID (or drops it when the server did not say, or
/// when the sync already stored the real copy), and points later entries at the real UID.
#[allow(clippy::too_many_arguments)]
async fn resolve_placeholder(
    tx: &Transaction<'_>,
    log: &mut ChangeLog,
    account: AccountId,
    entry: i64,
    email: Option<i64>,
    mailbox: i64,
    placeholder: i64,
    real: Option<u32>,
) -> Result<()> {
    let exists_real: Option<i64> = match real {
        Some(u) => {
            let st = tx
                .prepare_cached("SELECT email_id FROM copy WHERE mailbox_id = $1 AND uid = $2")
                .await?;
            tx.query_opt(&st, &[&mailbox, &i64::from(u)])
                .await?
                .map(|r| r.get(0))
        }
        None => None,
    };
    match (real, exists_real) {
        (Some(u), None) => {
            let st = tx
                .prepare_cached("UPDATE copy SET uid = $3 WHERE mailbox_id = $1 AND uid = $2")
                .await?;
            tx.execute(&st, &[&mailbox, &placeholder, &i64::from(u)])
                .await?;
        }
        // The sync stored the server's copy first, under another Email (its identity did
        // not match): it is this Email's copy, so it is linked back and the Email keeps its
        // id.
        (Some(u), Some(other)) if email.is_some_and(|e| e != other) => {
            let e = email.unwrap_or(other);
            delete_copy(tx, mailbox, placeholder).await?;
            let st = tx
                .prepare_cached("UPDATE copy SET email_id = $3 WHERE mailbox_id = $1 AND uid = $2")
                .await?;
            tx.execute(&st, &[&mailbox, &i64::from(u), &e]).await?;
            for id in [e, other] {
                settle_email(tx, log, id).await?;
            }
            log.record(tx, ObjectType::Mailbox, mailbox, ChangeOp::Updated)
                .await?;
        }
        _ => {
            if delete_copy(tx, mailbox, placeholder).await? {
                log.record(tx, ObjectType::Mailbox, mailbox, ChangeOp::Updated)
                    .await?;
                if let Some(e) = email {
                    settle_email(tx, log, e).await?;
                }
            }
        }
    }
    // Later entries naming the placeholder now name the server UID (or cannot be replayed).
    let Some(e) = email else { return Ok(()) };
    let st = tx
        .prepare_cached(
            "SELECT id, payload FROM outbox WHERE account_id = $1 AND email_id = $2 AND id > $3",
        )
        .await?;
    let later = tx.query(&st, &[&account.0, &e, &entry]).await?;
    let new_uid = real.map(i64::from).unwrap_or(-1);
    for r in later {
        let mut op = from_json(r.get(1))?;
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
            set_payload(tx, r.get(0), &op, false).await?;
        }
    }
    Ok(())
}

/// Pending DELETEs of `old` or a mailbox below it now name it under `new`.
async fn rename_pending_deletes(
    tx: &Transaction<'_>,
    account: AccountId,
    old: &str,
    new: &str,
    delim: &str,
) -> Result<()> {
    let st = tx
        .prepare_cached(
            "SELECT id, payload FROM outbox WHERE account_id = $1 AND kind = 'delete_mailbox'",
        )
        .await?;
    let below = format!("{old}{delim}");
    for r in tx.query(&st, &[&account.0]).await? {
        if let OutboxOp::DeleteMailbox { raw_name } = from_json(r.get(1))? {
            let renamed = if raw_name == old {
                Some(new.to_string())
            } else {
                raw_name
                    .strip_prefix(&below)
                    .map(|rest| format!("{new}{delim}{rest}"))
            };
            if let Some(raw_name) = renamed {
                set_payload(tx, r.get(0), &OutboxOp::DeleteMailbox { raw_name }, false).await?;
            }
        }
    }
    Ok(())
}

/// The blobs of these entries' APPENDs, for their rows to go once nothing else needs them.
async fn append_blobs(tx: &Transaction<'_>, ids: &[i64]) -> Result<Vec<String>> {
    let st = tx
        .prepare_cached(
            "SELECT DISTINCT blob_id FROM outbox WHERE id = ANY($1) AND blob_id IS NOT NULL",
        )
        .await?;
    Ok(tx
        .query(&st, &[&ids])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

impl PgStore {
    async fn complete_tx(&self, account: AccountId, done: &[OutboxDone]) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let mut log = ChangeLog::of(self, account);
        // The account's lock before the lease's, in the order every write takes them.
        lock_account(&tx, account).await?;
        log.check_fence(&tx).await?;
        let ids: Vec<i64> = done.iter().map(|d| d.id).collect();
        let blobs = append_blobs(&tx, &ids).await?;
        let st = tx
            .prepare_cached(
                "SELECT id, rev, email_id, kind, payload FROM outbox \
                 WHERE id = ANY($1) AND account_id = $2",
            )
            .await?;
        let rows: HashMap<i64, (i64, Option<i64>, String, String)> = tx
            .query(&st, &[&ids, &account.0])
            .await?
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
            .collect();
        // A confirmed mailbox change moves the epoch before the account's lock is let go.
        if rows
            .values()
            .any(|r| r.2.as_str() != "flags" && from_json(&r.3).is_ok_and(|op| op.is_mailbox_op()))
        {
            self.bump_mailbox_epoch(account);
        }
        // Confirmed flag entries: nothing to record locally (the change was applied
        // when it was queued), so they go with one statement.
        let mut flags_done = Vec::new();
        for d in done {
            let Some((rev, object, kind, payload)) = rows.get(&d.id) else {
                continue;
            };
            if *rev != d.rev {
                // A later change was coalesced into it after it was read: replay it again
                // (flag changes are idempotent).
                continue;
            }
            if kind == "flags" {
                flags_done.push(d.id);
                continue;
            }
            self.complete_one(&tx, &mut log, account, d, *object, from_json(payload)?)
                .await?;
        }
        if !flags_done.is_empty() {
            let st = tx
                .prepare_cached("DELETE FROM outbox WHERE id = ANY($1)")
                .await?;
            tx.execute(&st, &[&flags_done]).await?;
        }
        let st = tx
            .prepare_cached(
                "DELETE FROM outbox_tombstone WHERE done_at IS NOT NULL AND done_at < $1 \
                 AND mailbox_id IN (SELECT id FROM mailbox WHERE account_id = $2)",
            )
            .await?;
        tx.execute(&st, &[&(now() - TOMBSTONE_KEEP_SECS), &account.0])
            .await?;
        super::uploads::forget_unreferenced(&tx, &blobs).await?;
        log.commit(tx).await?;
        Ok(())
    }

    /// One confirmed entry other than a flag change.
    async fn complete_one(
        &self,
        tx: &Transaction<'_>,
        log: &mut ChangeLog,
        account: AccountId,
        d: &OutboxDone,
        object: Option<i64>,
        op: OutboxOp,
    ) -> Result<()> {
        let real = d.new_uid.map(|(_, dst)| dst);
        // The removed copy is gone on the server now (its tombstone may have been taken over
        // by a later entry about the same copy).
        let removed = match &op {
            OutboxOp::Move { from, uid, .. } => Some((from.0, *uid)),
            OutboxOp::Expunge { mailbox, uid, .. } => Some((mailbox.0, *uid)),
            _ => None,
        };
        if let Some((mailbox, uid)) = removed {
            let st = tx
                .prepare_cached(
                    "UPDATE outbox_tombstone SET done_at = $3 WHERE mailbox_id = $1 AND uid = $2",
                )
                .await?;
            tx.execute(&st, &[&mailbox, &uid, &now()]).await?;
        }
        match &op {
            OutboxOp::Flags { .. }
            | OutboxOp::Subscribe { .. }
            | OutboxOp::DeleteMailbox { .. } => {}
            OutboxOp::Move {
                to, placeholder, ..
            }
            | OutboxOp::Copy {
                to, placeholder, ..
            }
            | OutboxOp::Append {
                mailbox: to,
                placeholder,
                ..
            } => {
                resolve_placeholder(tx, log, account, d.id, object, to.0, *placeholder, real)
                    .await?;
            }
            OutboxOp::Expunge { .. } => {}
            OutboxOp::Labels {
                placeholders,
                placeholder,
                ..
            } => {
                // Gmail answers a label change with no UID in the label folder: the sync
                // brings the real copy, linked by X-GM-MSGID.
                for m in placeholders {
                    resolve_placeholder(tx, log, account, d.id, object, m.0, *placeholder, None)
                        .await?;
                }
            }
            OutboxOp::CreateMailbox { mailbox, .. } | OutboxOp::RenameMailbox { mailbox, .. } => {
                self.complete_mailbox(tx, account, d, *mailbox, &op).await?;
            }
        }
        // Every copy the entry removed locally is gone on the server now (a move's source,
        // an expunge, a Gmail move to Trash or a label change).
        let st = tx
            .prepare_cached(
                "UPDATE outbox_tombstone SET done_at = $2 WHERE outbox_id = $1 AND done_at IS NULL",
            )
            .await?;
        tx.execute(&st, &[&d.id, &now()]).await?;
        let st = tx
            .prepare_cached("DELETE FROM outbox WHERE id = $1")
            .await?;
        tx.execute(&st, &[&d.id]).await?;
        Ok(())
    }

    /// A confirmed CREATE or RENAME: the mailbox takes its wire name (and its children
    /// theirs), or, destroyed while its CREATE was on the way, is deleted on the server too.
    async fn complete_mailbox(
        &self,
        tx: &Transaction<'_>,
        account: AccountId,
        d: &OutboxDone,
        mailbox: MailboxId,
        op: &OutboxOp,
    ) -> Result<()> {
        let Some(raw) = &d.raw_name else {
            return Ok(());
        };
        let st = tx
            .prepare_cached("SELECT raw_name, delimiter FROM mailbox WHERE id = $1")
            .await?;
        let current = tx.query_opt(&st, &[&mailbox.0]).await?;
        if matches!(op, OutboxOp::CreateMailbox { .. }) && current.is_none() {
            // Destroyed meanwhile (`destroy_mailbox`): the user's last word is that it
            // should not exist.
            let op = OutboxOp::DeleteMailbox {
                raw_name: raw.clone(),
            };
            enqueue(tx, false, account, Some(mailbox.0), &op).await?;
            return Ok(());
        }
        let old: Option<(String, Option<String>)> = match &d.old_raw_name {
            Some(o) => Some((o.clone(), Some(delimiter(tx, account).await?))),
            None => current.map(|r| (r.get(0), r.get(1))),
        };
        let st = tx
            .prepare_cached("UPDATE mailbox SET raw_name = $2 WHERE id = $1")
            .await?;
        tx.execute(&st, &[&mailbox.0, raw]).await?;
        // The server renamed the children with it (RFC 3501 6.3.5).
        if let Some((old, Some(delim))) = old
            && !delim.is_empty()
            && !old.starts_with(PENDING_RAW)
        {
            let st = tx
                .prepare_cached(
                    "UPDATE mailbox SET raw_name = $3 || substr(raw_name, length($2) + 1) \
                     WHERE account_id = $1 AND starts_with(raw_name, $2)",
                )
                .await?;
            tx.execute(
                &st,
                &[
                    &account.0,
                    &format!("{old}{delim}"),
                    &format!("{raw}{delim}"),
                ],
            )
            .await?;
            // A DELETE queued meanwhile names the mailbox by its old wire name.
            rename_pending_deletes(tx, account, &old, raw, &delim).await?;
        }
        Ok(())
    }

    async fn refuse_tx(&self, account: AccountId, id: i64, reason: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let mut log = ChangeLog::of(self, account);
        // The account's lock before the lease's, in the order every write takes them.
        lock_account(&tx, account).await?;
        log.check_fence(&tx).await?;
        let blobs = append_blobs(&tx, &[id]).await?;
        let st = tx
            .prepare_cached(
                "DELETE FROM outbox WHERE id = $1 AND account_id = $2 RETURNING email_id, payload",
            )
            .await?;
        let Some(row) = tx.query_opt(&st, &[&id, &account.0]).await? else {
            return Ok(());
        };
        let object: Option<i64> = row.get(0);
        let op = from_json(row.get(1))?;
        self.revert(&tx, &mut log, account, object, &op).await?;
        // The copies the entry removed locally come back with the next pass (a Gmail move
        // to Trash also removed the label copies; they are still on the server).
        let st = tx
            .prepare_cached("DELETE FROM outbox_tombstone WHERE outbox_id = $1")
            .await?;
        tx.execute(&st, &[&id]).await?;
        if let Some(e) = object
            && !op.is_mailbox_op()
        {
            mark_orphan_if_empty(&tx, e).await?;
        }
        let st = tx
            .prepare_cached(
                "INSERT INTO outbox_failure (account_id, kind, object_id, reason, at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await?;
        tx.execute(&st, &[&account.0, &op.kind(), &object, &reason, &now()])
            .await?;
        // The failure itself is news for the client even when nothing else changed.
        if let Some(e) = object {
            let (t, exists) = if op.is_mailbox_op() {
                (
                    ObjectType::Mailbox,
                    mailbox_in_account(&tx, account, e).await?,
                )
            } else {
                (ObjectType::Email, email_row_exists(&tx, e).await?)
            };
            if exists {
                log.record(&tx, t, e, ChangeOp::Updated).await?;
            }
        }
        super::uploads::forget_unreferenced(&tx, &blobs).await?;
        log.commit(tx).await?;
        Ok(())
    }

    /// Puts back what a refused entry changed locally (sqlite/outbox.rs's `refuse`).
    async fn revert(
        &self,
        tx: &Transaction<'_>,
        log: &mut ChangeLog,
        account: AccountId,
        object: Option<i64>,
        op: &OutboxOp,
    ) -> Result<()> {
        let unstone = async |mailbox: i64, uid: i64| -> Result<()> {
            let st = tx
                .prepare_cached("DELETE FROM outbox_tombstone WHERE mailbox_id = $1 AND uid = $2")
                .await?;
            tx.execute(&st, &[&mailbox, &uid]).await?;
            Ok(())
        };
        // A removed copy back as it was, its Email no longer an orphan.
        let put_back =
            async |mailbox: i64, uid: i64, e: i64, flags: &str, modseq: i64| -> Result<()> {
                insert_copy(tx, mailbox, uid, e, flags, modseq).await?;
                let st = tx
                    .prepare_cached("UPDATE email SET orphaned = false WHERE id = $1")
                    .await?;
                tx.execute(&st, &[&e]).await?;
                Ok(())
            };
        match op {
            OutboxOp::Flags { add, remove } => {
                if let Some(e) = object {
                    let pending = pending_flags(tx, &[e]).await?;
                    for c in copies_of(tx, e).await? {
                        // The inverse, then whatever else is still pending on top.
                        let base = apply_flag_ops(&c.flags, remove, add);
                        let new = overlay(base, pending.get(&e));
                        let st = tx
                            .prepare_cached(
                                "UPDATE copy SET flags = $3 WHERE mailbox_id = $1 AND uid = $2",
                            )
                            .await?;
                        tx.execute(&st, &[&c.mailbox, &c.uid, &new]).await?;
                        log.record(tx, ObjectType::Mailbox, c.mailbox, ChangeOp::Updated)
                            .await?;
                    }
                    refresh_keywords(tx, &[e]).await?;
                    log.record(tx, ObjectType::Email, e, ChangeOp::Updated)
                        .await?;
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
                delete_copy(tx, to.0, *placeholder).await?;
                log.record(tx, ObjectType::Mailbox, to.0, ChangeOp::Updated)
                    .await?;
                unstone(from.0, *uid).await?;
                if let Some(e) = object
                    && *uid < PLACEHOLDER_UID_BASE
                    && *uid > 0
                    && mailbox_in_account(tx, account, from.0).await?
                {
                    put_back(from.0, *uid, e, flags, *modseq).await?;
                    log.record(tx, ObjectType::Mailbox, from.0, ChangeOp::Updated)
                        .await?;
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
                delete_copy(tx, to.0, *placeholder).await?;
                log.record(tx, ObjectType::Mailbox, to.0, ChangeOp::Updated)
                    .await?;
            }
            OutboxOp::Expunge {
                mailbox,
                uid,
                flags,
                modseq,
            } => {
                unstone(mailbox.0, *uid).await?;
                // An Email already destroyed comes back with the next sync pass: its copy
                // is still on the server and no longer tombstoned.
                if let Some(e) = object
                    && *uid < PLACEHOLDER_UID_BASE
                    && *uid > 0
                    && email_row_exists(tx, e).await?
                {
                    put_back(mailbox.0, *uid, e, flags, *modseq).await?;
                    log.record(tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Updated)
                        .await?;
                }
            }
            OutboxOp::CreateMailbox { mailbox, .. } => {
                let st = tx
                    .prepare_cached("DELETE FROM copy WHERE mailbox_id = $1")
                    .await?;
                tx.execute(&st, &[&mailbox.0]).await?;
                let st = tx
                    .prepare_cached("DELETE FROM mailbox WHERE id = $1")
                    .await?;
                if tx.execute(&st, &[&mailbox.0]).await? > 0 {
                    log.record(tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Destroyed)
                        .await?;
                }
            }
            OutboxOp::RenameMailbox {
                mailbox,
                old_raw,
                old_name,
                old_parent,
                ..
            } => {
                let st = tx
                    .prepare_cached(
                        "UPDATE mailbox SET raw_name = $2, name = $3, parent_id = $4 WHERE id = $1",
                    )
                    .await?;
                tx.execute(
                    &st,
                    &[&mailbox.0, old_raw, old_name, &old_parent.map(|p| p.0)],
                )
                .await?;
                log.record(tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Updated)
                    .await?;
            }
            OutboxOp::Subscribe {
                mailbox,
                subscribed,
            } => {
                let st = tx
                    .prepare_cached("UPDATE mailbox SET subscribed = $2 WHERE id = $1")
                    .await?;
                tx.execute(&st, &[&mailbox.0, &!subscribed]).await?;
                log.record(tx, ObjectType::Mailbox, mailbox.0, ChangeOp::Updated)
                    .await?;
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
                    delete_copy(tx, m.0, *placeholder).await?;
                    log.record(tx, ObjectType::Mailbox, m.0, ChangeOp::Updated)
                        .await?;
                }
                if let Some(e) = object
                    && email_row_exists(tx, e).await?
                {
                    for r in removed {
                        if !mailbox_in_account(tx, account, r.mailbox.0).await? {
                            continue;
                        }
                        put_back(r.mailbox.0, r.uid, e, &r.flags, r.modseq).await?;
                        log.record(tx, ObjectType::Mailbox, r.mailbox.0, ChangeOp::Updated)
                            .await?;
                    }
                    let st = tx
                        .prepare_cached("UPDATE email SET orphaned = false WHERE id = $1")
                        .await?;
                    tx.execute(&st, &[&e]).await?;
                    refresh_keywords(tx, &[e]).await?;
                }
            }
        }
        Ok(())
    }

    async fn status_of(&self, account: AccountId) -> Result<OutboxStatus> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT (SELECT kind FROM account WHERE id = $1), \
                 (SELECT count(*) FROM outbox WHERE account_id = $1), \
                 (SELECT last_error FROM outbox WHERE account_id = $1 AND last_error <> '' \
                  ORDER BY id LIMIT 1)",
            )
            .await?;
        let row = c.query_one(&st, &[&account.0]).await?;
        let (kind, pending, last_error): (Option<String>, i64, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        let st = c
            .prepare_cached(
                "SELECT id, kind, object_id, reason, at FROM outbox_failure WHERE account_id = $1 \
                 ORDER BY id DESC LIMIT 100",
            )
            .await?;
        let failures = c
            .query(&st, &[&account.0])
            .await?
            .iter()
            .map(|r| OutboxFailure {
                id: r.get(0),
                kind: r.get(1),
                object: r.get(2),
                reason: r.get(3),
                at: r.get(4),
            })
            .collect();
        Ok(OutboxStatus {
            pending: u64::try_from(pending).unwrap_or(0),
            last_error,
            failures,
            local_only: kind.as_deref() == Some("pop3"),
        })
    }
}

#[async_trait]
impl Outbox for PgStore {
    async fn update_emails(
        &self,
        account: AccountId,
        patches: Vec<EmailPatch>,
    ) -> Result<Vec<Refusable<()>>> {
        self.update_emails_tx(account, &patches).await
    }

    async fn destroy_emails(
        &self,
        account: AccountId,
        ids: Vec<EmailId>,
    ) -> Result<Vec<Refusable<()>>> {
        let out = self.destroy_emails_tx(account, &ids).await?;
        self.collect_orphans(account).await?;
        Ok(out)
    }

    async fn append_email(
        &self,
        account: AccountId,
        req: AppendRequest,
    ) -> Result<Refusable<EmailId>> {
        self.append_email_tx(account, &req).await
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        parent: Option<MailboxId>,
        subscribed: bool,
    ) -> Result<Refusable<MailboxId>> {
        self.create_mailbox_tx(account, name, parent, subscribed)
            .await
    }

    async fn update_mailbox(
        &self,
        account: AccountId,
        id: MailboxId,
        patch: MailboxPatch,
    ) -> Result<Refusable<()>> {
        self.update_mailbox_tx(account, id, &patch).await
    }

    async fn destroy_mailbox(
        &self,
        account: AccountId,
        id: MailboxId,
        remove_emails: bool,
    ) -> Result<Refusable<()>> {
        let out = self.destroy_mailbox_tx(account, id, remove_emails).await?;
        self.collect_orphans(account).await?;
        Ok(out)
    }

    async fn outbox_next(&self, account: AccountId, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.next_tx(account, limit).await
    }

    async fn outbox_begin(&self, id: i64, uidnext: Option<u32>) -> Result<bool> {
        self.begin_tx(id, uidnext).await
    }

    async fn outbox_has(
        &self,
        account: AccountId,
        object: i64,
        kind: &'static str,
    ) -> Result<bool> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE account_id = $1 AND email_id = $2 \
                 AND kind = $3)",
            )
            .await?;
        Ok(c.query_one(&st, &[&account.0, &object, &kind])
            .await?
            .get(0))
    }

    async fn outbox_complete(&self, account: AccountId, done: Vec<OutboxDone>) -> Result<()> {
        self.complete_tx(account, &done).await?;
        self.collect_orphans(account).await?;
        Ok(())
    }

    async fn outbox_defer(&self, id: i64, error: &str) -> Result<()> {
        self.defer_tx(id, error).await
    }

    async fn outbox_refuse(&self, account: AccountId, id: i64, reason: &str) -> Result<()> {
        self.refuse_tx(account, id, reason).await?;
        self.collect_orphans(account).await?;
        Ok(())
    }

    async fn outbox_status(&self, account: AccountId) -> Result<OutboxStatus> {
        self.status_of(account).await
    }

    async fn outbox_dismiss(&self, account: AccountId, failures: Vec<i64>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        ChangeLog::of(self, account).check_fence(&tx).await?;
        let st = tx
            .prepare_cached("DELETE FROM outbox_failure WHERE id = ANY($1) AND account_id = $2")
            .await?;
        tx.execute(&st, &[&failures, &account.0]).await?;
        tx.commit().await?;
        Ok(())
    }

    fn outbox_signal(&self, account: AccountId) -> tokio::sync::watch::Receiver<u64> {
        self.work.outbox(account)
    }
}
