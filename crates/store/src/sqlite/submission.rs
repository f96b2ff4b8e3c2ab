//! Identities and the submission queue. Every change to a submission or an
//! identity is logged like any other object change, in the same transaction.

use super::write::{ChangeLog, Committed};
use super::*;
use crate::model::{ChangeOp, ObjectType};
use crate::submission::*;
use crate::wake::Queue;
use crate::{Error, Result};
use mail_types::{AccountId, EmailId, ThreadId};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

const SUBMISSION_COLUMNS: &str = "id, account_id, identity_id, email_id, thread_id, envelope, \
    mail_from, rcpt_to, message_id, send_at, created_at, undo_status, phase, attempts, \
    next_attempt, delivery, last_error, sent_copy, dsn_blobs, draft";

fn submission_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<SubmissionRecord>> {
    let rcpt: String = r.get(7)?;
    let undo: String = r.get(11)?;
    let phase: String = r.get(12)?;
    let delivery: String = r.get(15)?;
    let sent: String = r.get(17)?;
    let id: i64 = r.get(0)?;
    let account = AccountId(r.get(1)?);
    let identity = r.get(2)?;
    let email = EmailId(r.get(3)?);
    let thread = ThreadId(r.get(4)?);
    let envelope_json = r.get(5)?;
    let mail_from = r.get(6)?;
    let message_id = r.get(8)?;
    let send_at = r.get(9)?;
    let created_at = r.get(10)?;
    let attempts: i64 = r.get(13)?;
    let next_attempt = r.get(14)?;
    let last_error = r.get(16)?;
    let dsn: String = r.get(18)?;
    let draft: String = r.get(19)?;
    Ok((|| {
        let corrupt = |what: &str| Error::Corrupt(format!("submission {id}: {what}"));
        Ok(SubmissionRecord {
            id,
            account,
            identity,
            email,
            thread,
            envelope_json,
            mail_from,
            rcpt_to: serde_json::from_str(&rcpt).map_err(|_| corrupt("rcpt_to"))?,
            message_id,
            send_at,
            created_at,
            undo_status: UndoStatus::from_name(&undo).ok_or_else(|| corrupt("undo_status"))?,
            phase: SubmissionPhase::from_name(&phase).ok_or_else(|| corrupt("phase"))?,
            attempts: u32::try_from(attempts).unwrap_or(0),
            next_attempt,
            delivery: serde_json::from_str(&delivery).map_err(|_| corrupt("delivery"))?,
            last_error,
            sent_copy: SentCopy::from_name(&sent).ok_or_else(|| corrupt("sent_copy"))?,
            dsn_blob_ids: serde_json::from_str(&dsn).map_err(|_| corrupt("dsn_blobs"))?,
            draft: DraftFate::from_name(&draft).ok_or_else(|| corrupt("draft"))?,
        })
    })())
}

fn query_submissions(
    c: &Connection,
    where_: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<SubmissionRecord>> {
    let mut st = c.prepare(&format!(
        "SELECT {SUBMISSION_COLUMNS} FROM submission WHERE {where_}"
    ))?;
    let rows = st.query_map(args, submission_from_row)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt(format!("serializing: {e}")))
}

fn account_of(tx: &Transaction<'_>, id: i64) -> Result<Option<AccountId>> {
    Ok(tx
        .query_row(
            "SELECT account_id FROM submission WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?
        .map(AccountId))
}

/// Where a submission's bytes are: in the row (`raw`, rows queued without a blob), or
/// in the blob store (read by the caller, outside the connection lock).
pub(crate) enum Bytes {
    Inline(Vec<u8>),
    Blob(String),
}

fn bytes_of(c: &Connection, id: i64) -> Result<Bytes> {
    let (raw, blob): (Vec<u8>, Option<String>) = c.query_row(
        "SELECT raw, blob_id FROM submission WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(match blob {
        Some(b) if raw.is_empty() => Bytes::Blob(b),
        _ => Bytes::Inline(raw),
    })
}

/// Drops the submission's bytes (and its blob reference) once nothing needs them: sent
/// or failed for good, no Sent copy to make, no draft to put back. Returns the blob when
/// this removed its last reference (its row is deleted here; the caller removes the file
/// after the commit).
fn release(tx: &Transaction<'_>, id: i64) -> Result<Option<String>> {
    let blob: Option<String> = tx
        .query_row("SELECT blob_id FROM submission WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    let n = tx.execute(
        "UPDATE submission SET raw = x'', blob_id = NULL \
         WHERE id = ?1 AND phase = 'done' AND sent_copy != 'due' \
            AND draft NOT IN ('restore', 'destroy_when_sent') \
            AND (blob_id IS NOT NULL OR length(raw) > 0)",
        [id],
    )?;
    match blob {
        Some(b) if n > 0 => forget_blob(tx, &b),
        _ => Ok(None),
    }
}

/// Deletes blob `b`'s row if nothing references it any more; returns it if so.
fn forget_blob(tx: &Transaction<'_>, b: &str) -> Result<Option<String>> {
    let n = tx.execute(
        &format!(
            "DELETE FROM blob WHERE id = ?1 AND {}",
            super::BLOB_UNREFERENCED
        ),
        [b],
    )?;
    Ok((n > 0).then(|| b.to_owned()))
}

pub(super) fn create_submission(
    c: &mut Connection,
    committed: &mut Committed,
    s: &NewSubmission,
    now: i64,
) -> Result<i64> {
    let tx = c.transaction()?;
    let mut log = ChangeLog::new(s.account);
    tx.execute(
        "INSERT INTO submission (account_id, identity_id, email_id, thread_id, envelope, \
         mail_from, rcpt_to, raw, message_id, send_at, created_at, next_attempt, sent_copy, \
         delivery, blob_id, draft) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?10, ?12, ?13, ?14, ?15)",
        params![
            s.account.0,
            s.identity,
            s.email.0,
            s.thread.0,
            s.envelope_json,
            s.mail_from,
            json(&s.rcpt_to)?,
            // With a blob the bytes are there once, and the row's reference keeps them.
            if s.blob_id.is_some() {
                &[][..]
            } else {
                &s.raw[..]
            },
            s.message_id,
            s.send_at,
            now,
            s.sent_copy.as_str(),
            json(&s.queued_delivery())?,
            s.blob_id,
            s.draft.as_str(),
        ],
    )?;
    let id = tx.last_insert_rowid();
    log.record(&tx, ObjectType::EmailSubmission, id, ChangeOp::Created)?;
    log.queued(Queue::Submissions);
    log.commit(tx, committed)?;
    Ok(id)
}

pub(super) fn submissions(c: &mut Connection, account: AccountId) -> Result<Vec<SubmissionRecord>> {
    query_submissions(c, "account_id = ?1 ORDER BY id", [account.0])
}

/// Moves a queued, pending submission's send time (see `Submissions::reschedule_submission`).
pub(super) fn reschedule_submission(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    id: i64,
    send_at: i64,
) -> Result<bool> {
    let tx = c.transaction()?;
    let n = tx.execute(
        "UPDATE submission SET send_at = ?3, next_attempt = ?3 \
         WHERE id = ?1 AND account_id = ?2 AND phase = 'queued' AND undo_status = 'pending'",
        params![id, account.0, send_at],
    )?;
    if n == 0 {
        return Ok(false);
    }
    let mut log = ChangeLog::new(account);
    log.record(&tx, ObjectType::EmailSubmission, id, ChangeOp::Updated)?;
    log.queued(Queue::Submissions);
    log.commit(tx, committed)?;
    Ok(true)
}

/// Cancels a pending submission; its message goes back to Drafts (draft 'restore').
/// Returns the blob freed, if any.
pub(super) fn cancel_submission(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    id: i64,
) -> Result<(CancelOutcome, Option<String>)> {
    let tx = c.transaction()?;
    if account_of(&tx, id)? != Some(account) {
        return Ok((CancelOutcome::NotFound, None));
    }
    let n = tx.execute(
        "UPDATE submission SET undo_status = 'canceled', phase = 'done', \
         draft = CASE WHEN draft = 'done' THEN 'done' ELSE 'restore' END, \
         delivery = (SELECT json_group_array(json_set(value, '$.delivered', 'no', \
            '$.smtpReply', 'canceled')) FROM json_each(delivery)) \
         WHERE id = ?1 AND phase = 'queued' AND undo_status = 'pending'",
        [id],
    )?;
    if n == 0 {
        return Ok((CancelOutcome::TooLate, None));
    }
    let gone = release(&tx, id)?;
    let mut log = ChangeLog::new(account);
    log.record(&tx, ObjectType::EmailSubmission, id, ChangeOp::Updated)?;
    // Its message goes back to Drafts: the worker's work.
    log.queued(Queue::Submissions);
    log.commit(tx, committed)?;
    Ok((CancelOutcome::Canceled, gone))
}

/// RFC 8621 7.5: destroying a pending submission cancels it first; the record goes away.
/// Returns whether it was destroyed, and the blob freed with it, if any.
pub(super) fn destroy_submission(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    id: i64,
) -> Result<(bool, Option<String>)> {
    let tx = c.transaction()?;
    if account_of(&tx, id)? != Some(account) {
        return Ok((false, None));
    }
    let blob: Option<String> =
        tx.query_row("SELECT blob_id FROM submission WHERE id = ?1", [id], |r| {
            r.get(0)
        })?;
    // One being sent stays until its attempt is over (the worker must find it to record
    // the reply); the caller sees cannotUnsend for that case through cancel first.
    let n = tx.execute(
        "DELETE FROM submission WHERE id = ?1 AND phase != 'sending'",
        [id],
    )?;
    if n == 0 {
        return Ok((false, None));
    }
    let gone = match blob {
        Some(b) => forget_blob(&tx, &b)?,
        None => None,
    };
    let mut log = ChangeLog::new(account);
    log.record(&tx, ObjectType::EmailSubmission, id, ChangeOp::Destroyed)?;
    log.commit(tx, committed)?;
    Ok((true, gone))
}

pub(super) fn due_submissions(
    c: &mut Connection,
    now: i64,
    limit: usize,
    accounts: &[AccountId],
) -> Result<Vec<SubmissionRecord>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    query_submissions(
        c,
        "phase = 'queued' AND next_attempt <= ?1 \
         AND account_id IN (SELECT value FROM json_each(?3)) \
         ORDER BY next_attempt, id LIMIT ?2",
        params![now, limit, account_list(accounts)?],
    )
}

pub(super) fn next_submission_at(
    c: &mut Connection,
    accounts: &[AccountId],
) -> Result<Option<i64>> {
    Ok(c.query_row(
        "SELECT min(next_attempt) FROM submission WHERE phase = 'queued' \
         AND account_id IN (SELECT value FROM json_each(?1))",
        [account_list(accounts)?],
        |r| r.get(0),
    )?)
}

/// Account ids as a JSON array, for `IN (SELECT value FROM json_each(?))`.
fn account_list(accounts: &[AccountId]) -> Result<String> {
    json(&accounts.iter().map(|a| a.0).collect::<Vec<_>>())
}

/// queued → sending, committed with `synchronous = FULL` before any byte goes to the SMTP
/// server: after a crash, a row in `sending` is the proof that an attempt may have
/// reached the server.
pub(super) fn begin_submission(
    c: &mut Connection,
    committed: &mut Committed,
    id: i64,
) -> Result<Option<Bytes>> {
    c.pragma_update(None, "synchronous", "FULL")?;
    let result = (|| {
        let tx = c.transaction()?;
        let Some(account) = account_of(&tx, id)? else {
            return Ok(None);
        };
        let n = tx.execute(
            "UPDATE submission SET phase = 'sending', undo_status = 'final', \
             attempts = attempts + 1 WHERE id = ?1 AND phase = 'queued'",
            [id],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let raw = bytes_of(&tx, id)?;
        let mut log = ChangeLog::new(account);
        log.record(&tx, ObjectType::EmailSubmission, id, ChangeOp::Updated)?;
        log.commit(tx, committed)?;
        Ok(Some(raw))
    })();
    c.pragma_update(None, "synchronous", "NORMAL")?;
    result
}

/// Returns the blob freed, if any.
pub(super) fn finish_submission(
    c: &mut Connection,
    committed: &mut Committed,
    id: i64,
    result: &AttemptResult,
) -> Result<Option<String>> {
    let tx = c.transaction()?;
    let Some(account) = account_of(&tx, id)? else {
        return Ok(None);
    };
    let (delivery, error) = result.outcome();
    let reached = result.reached_server();
    match result {
        AttemptResult::Final { .. } => {
            // Sent (to someone): the draft is destroyed once the Sent copy is made. Not
            // sent to anyone: the message goes back to Drafts, whoever moved it away.
            // The bytes stay while a Sent copy or a restore is still to be made of them.
            tx.execute(
                "UPDATE submission SET phase = 'done', delivery = ?2, last_error = ?3, \
                 sent_copy = CASE WHEN sent_copy = 'append' AND ?4 THEN 'due' \
                    WHEN sent_copy = 'append' THEN 'none' ELSE sent_copy END, \
                 draft = CASE WHEN draft = 'done' THEN 'done' \
                    WHEN ?4 AND draft = 'destroy_when_sent' THEN 'destroy' \
                    WHEN ?4 THEN draft ELSE 'restore' END \
                 WHERE id = ?1 AND phase = 'sending'",
                params![id, json(&delivery)?, error, reached],
            )?;
        }
        AttemptResult::Retry { next_attempt, .. } => {
            // Back in the queue (for every recipient, or only the deferred ones);
            // undoStatus stays final (RFC 8621 7: once sending has started, it cannot be
            // undone).
            tx.execute(
                "UPDATE submission SET phase = 'queued', next_attempt = ?2, delivery = ?3, \
                 last_error = ?4, \
                 sent_copy = CASE WHEN sent_copy = 'append' AND ?5 THEN 'due' \
                    ELSE sent_copy END, \
                 draft = CASE WHEN ?5 AND draft = 'destroy_when_sent' THEN 'destroy' \
                    ELSE draft END \
                 WHERE id = ?1 AND phase = 'sending'",
                params![id, next_attempt, json(&delivery)?, error, reached],
            )?;
        }
    }
    let gone = release(&tx, id)?;
    let mut log = ChangeLog::new(account);
    log.record(&tx, ObjectType::EmailSubmission, id, ChangeOp::Updated)?;
    log.commit(tx, committed)?;
    Ok(gone)
}

/// Startup: a submission still in 'sending' was cut between "may have reached the
/// server" and "reply committed". It is never sent again: the recipients of that attempt
/// show delivered 'unknown' (those settled by an earlier attempt keep their status), and
/// its Sent copy is due, as after any unknown outcome (docs/design/sending.md, "The Sent copy").
/// Returns the submissions recovered and the blobs freed.
pub(super) fn recover_submissions(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
) -> Result<(Vec<i64>, Vec<String>)> {
    let tx = c.transaction()?;
    let rows: Vec<(i64, i64, String)> = {
        let mut st = tx.prepare(
            "SELECT id, account_id, delivery FROM submission \
             WHERE phase = 'sending' AND account_id = ?1",
        )?;
        let rows = st.query_map([account.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut gone = Vec::new();
    let mut logs = Vec::new();
    for (id, account, delivery) in &rows {
        let mut entries: Vec<DeliveryEntry> = serde_json::from_str(delivery)
            .map_err(|_| Error::Corrupt(format!("submission {id}: delivery")))?;
        for d in entries.iter_mut().filter(|d| !d.settled) {
            d.delivered = "unknown".into();
            d.smtp_reply = "no reply recorded (interrupted)".into();
            d.settled = true;
        }
        tx.execute(
            "UPDATE submission SET phase = 'done', delivery = ?2, \
             sent_copy = CASE WHEN sent_copy = 'append' THEN 'due' ELSE sent_copy END, \
             draft = CASE WHEN draft = 'destroy_when_sent' THEN 'destroy' ELSE draft END, \
             last_error = 'interrupted after the message may have reached the server; \
                not sent again' \
             WHERE id = ?1",
            params![id, json(&entries)?],
        )?;
        gone.extend(release(&tx, *id)?);
        let mut log = ChangeLog::new(AccountId(*account));
        log.record(&tx, ObjectType::EmailSubmission, *id, ChangeOp::Updated)?;
        logs.push(log);
    }
    ChangeLog::commit_all(tx, logs, committed)?;
    Ok((rows.into_iter().map(|(id, _, _)| id).collect(), gone))
}

/// Applies what a delivery-status report says: each named recipient's entry takes the
/// report's `delivered` and `smtp_reply`; the report's blob joins `dsn_blobs`. Once per
/// report: false when that blob was applied already (or the row is gone).
pub(super) fn apply_dsn(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    id: i64,
    blob_id: &str,
    updates: &[DeliveryEntry],
) -> Result<bool> {
    let tx = c.transaction()?;
    let row: Option<(String, String)> = tx
        .query_row(
            "SELECT delivery, dsn_blobs FROM submission WHERE id = ?1 AND account_id = ?2",
            params![id, account.0],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((delivery, blobs)) = row else {
        return Ok(false);
    };
    let corrupt = |what: &str| Error::Corrupt(format!("submission {id}: {what}"));
    let mut entries: Vec<DeliveryEntry> =
        serde_json::from_str(&delivery).map_err(|_| corrupt("delivery"))?;
    let mut blobs: Vec<String> = serde_json::from_str(&blobs).map_err(|_| corrupt("dsn_blobs"))?;
    if !apply_report(&mut entries, &mut blobs, blob_id, updates) {
        return Ok(false);
    }
    tx.execute(
        "UPDATE submission SET delivery = ?2, dsn_blobs = ?3 WHERE id = ?1",
        params![id, json(&entries)?, json(&blobs)?],
    )?;
    let mut log = ChangeLog::new(account);
    log.record(&tx, ObjectType::EmailSubmission, id, ChangeOp::Updated)?;
    log.commit(tx, committed)?;
    Ok(true)
}

pub(super) fn pending_sent_copies(
    c: &mut Connection,
    account: AccountId,
) -> Result<Vec<(SubmissionRecord, Bytes)>> {
    let list = query_submissions(
        c,
        "account_id = ?1 AND phase != 'sending' AND sent_copy = 'due' ORDER BY id",
        [account.0],
    )?;
    let mut out = Vec::with_capacity(list.len());
    for s in list {
        let raw = bytes_of(c, s.id)?;
        out.push((s, raw));
    }
    Ok(out)
}

/// Returns the blob freed, if any.
pub(super) fn set_sent_copy_done(c: &mut Connection, id: i64) -> Result<Option<String>> {
    let tx = c.transaction()?;
    tx.execute(
        "UPDATE submission SET sent_copy = 'done' WHERE id = ?1 AND sent_copy = 'due'",
        [id],
    )?;
    let gone = release(&tx, id)?;
    tx.commit()?;
    Ok(gone)
}

/// Submissions whose Email is to be destroyed (sent, Sent copy made) or put back into
/// Drafts (failed for good, or canceled), oldest first; with the bytes for a restore.
pub(super) fn draft_followups(
    c: &mut Connection,
    limit: usize,
    accounts: &[AccountId],
) -> Result<Vec<(SubmissionRecord, Option<Bytes>)>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let list = query_submissions(
        c,
        "draft IN ('destroy', 'restore') AND phase != 'sending' \
         AND (draft = 'restore' OR sent_copy IN ('none', 'done')) \
         AND account_id IN (SELECT value FROM json_each(?2)) ORDER BY id LIMIT ?1",
        params![limit, account_list(accounts)?],
    )?;
    let mut out = Vec::with_capacity(list.len());
    for s in list {
        let raw = match s.draft {
            DraftFate::Restore => Some(bytes_of(c, s.id)?),
            _ => None,
        };
        out.push((s, raw));
    }
    Ok(out)
}

/// The draft was destroyed or restored. Returns the blob freed, if any.
pub(super) fn set_draft_done(c: &mut Connection, id: i64) -> Result<Option<String>> {
    let tx = c.transaction()?;
    // Not a JMAP property: no change to log.
    tx.execute(
        "UPDATE submission SET draft = 'done' WHERE id = ?1 AND draft IN ('destroy', 'restore')",
        [id],
    )?;
    let gone = release(&tx, id)?;
    tx.commit()?;
    Ok(gone)
}

// --- identities ---------------------------------------------------------------------

fn identity_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IdentityRecord> {
    Ok(IdentityRecord {
        id: r.get(0)?,
        account: AccountId(r.get(1)?),
        name: r.get(2)?,
        email: r.get(3)?,
        reply_to: r.get(4)?,
        bcc: r.get(5)?,
        text_signature: r.get(6)?,
        html_signature: r.get(7)?,
        may_delete: r.get(8)?,
    })
}

pub(super) fn identities(c: &mut Connection, account: AccountId) -> Result<Vec<IdentityRecord>> {
    let mut st = c.prepare(
        "SELECT id, account_id, name, email, reply_to, bcc, text_signature, html_signature, \
         may_delete FROM identity WHERE account_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([account.0], identity_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn ensure_identity(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    email: &str,
) -> Result<()> {
    let tx = c.transaction()?;
    let mut log = ChangeLog::new(account);
    let n: i64 = tx.query_row(
        "SELECT count(*) FROM identity WHERE account_id = ?1",
        [account.0],
        |r| r.get(0),
    )?;
    if n == 0 {
        tx.execute(
            "INSERT INTO identity (account_id, email, may_delete) VALUES (?1, ?2, 0)",
            params![account.0, email],
        )?;
        let id = tx.last_insert_rowid();
        log.record(&tx, ObjectType::Identity, id, ChangeOp::Created)?;
    }
    log.commit(tx, committed)?;
    Ok(())
}

pub(super) fn create_identity(
    c: &mut Connection,
    committed: &mut Committed,
    i: &IdentityRecord,
) -> Result<i64> {
    let tx = c.transaction()?;
    tx.execute(
        "INSERT INTO identity (account_id, name, email, reply_to, bcc, text_signature, \
         html_signature, may_delete) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
        params![
            i.account.0,
            i.name,
            i.email,
            i.reply_to,
            i.bcc,
            i.text_signature,
            i.html_signature
        ],
    )?;
    let id = tx.last_insert_rowid();
    let mut log = ChangeLog::new(i.account);
    log.record(&tx, ObjectType::Identity, id, ChangeOp::Created)?;
    log.commit(tx, committed)?;
    Ok(id)
}

/// Updates the mutable properties (RFC 8621 6: `email` is immutable).
pub(super) fn update_identity(
    c: &mut Connection,
    committed: &mut Committed,
    i: &IdentityRecord,
) -> Result<bool> {
    let tx = c.transaction()?;
    let n = tx.execute(
        "UPDATE identity SET name = ?3, reply_to = ?4, bcc = ?5, text_signature = ?6, \
         html_signature = ?7 WHERE id = ?1 AND account_id = ?2",
        params![
            i.id,
            i.account.0,
            i.name,
            i.reply_to,
            i.bcc,
            i.text_signature,
            i.html_signature
        ],
    )?;
    if n == 0 {
        return Ok(false);
    }
    let mut log = ChangeLog::new(i.account);
    log.record(&tx, ObjectType::Identity, i.id, ChangeOp::Updated)?;
    log.commit(tx, committed)?;
    Ok(true)
}

pub(super) fn destroy_identity(
    c: &mut Connection,
    committed: &mut Committed,
    account: AccountId,
    id: i64,
) -> Result<bool> {
    let tx = c.transaction()?;
    let n = tx.execute(
        "DELETE FROM identity WHERE id = ?1 AND account_id = ?2 AND may_delete = 1",
        params![id, account.0],
    )?;
    if n == 0 {
        return Ok(false);
    }
    let mut log = ChangeLog::new(account);
    log.record(&tx, ObjectType::Identity, id, ChangeOp::Destroyed)?;
    log.commit(tx, committed)?;
    Ok(true)
}

// --- Sent copy policy -----------------------------------------------------------------

pub(super) fn set_server_files_sent(
    c: &mut Connection,
    account: AccountId,
    server_files: bool,
) -> Result<()> {
    c.execute(
        "INSERT INTO sent_copy_policy (account_id, policy) VALUES (?1, ?2) \
         ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy",
        params![account.0, if server_files { "server" } else { "append" }],
    )?;
    Ok(())
}

pub(super) fn server_files_sent(c: &mut Connection, account: AccountId) -> Result<bool> {
    let p: Option<String> = c
        .query_row(
            "SELECT policy FROM sent_copy_policy WHERE account_id = ?1",
            [account.0],
            |r| r.get(0),
        )
        .optional()?;
    Ok(p.as_deref() == Some("server"))
}

/// Whether the mailbox holds a message with this Message-ID (the Sent copy check; one
/// pass over the mailbox's copies, in SQL).
pub(super) fn mailbox_has_message_id(
    c: &mut Connection,
    mailbox: mail_types::MailboxId,
    message_id: &str,
) -> Result<bool> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM copy c JOIN email e ON e.id = c.email_id \
         WHERE c.mailbox_id = ?1 AND e.message_id = ?2)",
        params![mailbox.0, message_id],
        |r| r.get(0),
    )?)
}

#[async_trait]
impl Submissions for SqliteStore {
    async fn identities(&self, account: AccountId) -> Result<Vec<crate::IdentityRecord>> {
        self.call(move |c| submission::identities(c, account)).await
    }

    async fn ensure_identity(&self, account: AccountId, email: &str) -> Result<()> {
        let email = email.to_string();
        self.write(move |c, committed| submission::ensure_identity(c, committed, account, &email))
            .await
    }

    async fn create_identity(&self, identity: &crate::IdentityRecord) -> Result<i64> {
        let identity = identity.clone();
        self.write(move |c, committed| submission::create_identity(c, committed, &identity))
            .await
    }

    async fn update_identity(&self, identity: &crate::IdentityRecord) -> Result<bool> {
        let identity = identity.clone();
        self.write(move |c, committed| submission::update_identity(c, committed, &identity))
            .await
    }

    async fn destroy_identity(&self, account: AccountId, id: i64) -> Result<bool> {
        self.write(move |c, committed| submission::destroy_identity(c, committed, account, id))
            .await
    }

    async fn create_submission(&self, s: &crate::NewSubmission) -> Result<i64> {
        let s = s.clone();
        self.write(move |c, committed| submission::create_submission(c, committed, &s, now()))
            .await
    }

    async fn submissions(&self, account: AccountId) -> Result<Vec<crate::SubmissionRecord>> {
        self.call(move |c| submission::submissions(c, account))
            .await
    }

    async fn reschedule_submission(
        &self,
        account: AccountId,
        id: i64,
        send_at: i64,
    ) -> Result<bool> {
        self.write(move |c, committed| {
            submission::reschedule_submission(c, committed, account, id, send_at)
        })
        .await
    }

    async fn cancel_submission(&self, account: AccountId, id: i64) -> Result<crate::CancelOutcome> {
        let (out, gone) = self
            .write(move |c, committed| submission::cancel_submission(c, committed, account, id))
            .await?;
        self.forget_blob_files(gone).await?;
        Ok(out)
    }

    async fn destroy_submission(&self, account: AccountId, id: i64) -> Result<bool> {
        let (out, gone) = self
            .write(move |c, committed| submission::destroy_submission(c, committed, account, id))
            .await?;
        self.forget_blob_files(gone).await?;
        Ok(out)
    }

    async fn due_submissions(
        &self,
        now: i64,
        limit: usize,
        accounts: &[AccountId],
    ) -> Result<Vec<crate::SubmissionRecord>> {
        let accounts = accounts.to_vec();
        self.call(move |c| submission::due_submissions(c, now, limit, &accounts))
            .await
    }

    async fn next_submission_at(&self, accounts: &[AccountId]) -> Result<Option<i64>> {
        let accounts = accounts.to_vec();
        self.call(move |c| submission::next_submission_at(c, &accounts))
            .await
    }

    fn submission_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.announce.work.submissions()
    }

    async fn begin_submission(&self, id: i64) -> Result<Option<Vec<u8>>> {
        match self
            .write(move |c, committed| submission::begin_submission(c, committed, id))
            .await?
        {
            Some(b) => Ok(Some(self.submission_bytes(id, b).await?)),
            None => Ok(None),
        }
    }

    async fn finish_submission(&self, id: i64, result: &crate::AttemptResult) -> Result<()> {
        let result = result.clone();
        let gone = self
            .write(move |c, committed| submission::finish_submission(c, committed, id, &result))
            .await?;
        self.forget_blob_files(gone).await
    }

    async fn recover_submissions(&self, account: AccountId) -> Result<Vec<i64>> {
        let (ids, gone) = self
            .write(move |c, committed| submission::recover_submissions(c, committed, account))
            .await?;
        self.forget_blob_files(gone).await?;
        Ok(ids)
    }

    async fn pending_sent_copies(
        &self,
        account: AccountId,
    ) -> Result<Vec<(crate::SubmissionRecord, Vec<u8>)>> {
        let list = self
            .call(move |c| submission::pending_sent_copies(c, account))
            .await?;
        let mut out = Vec::with_capacity(list.len());
        for (s, b) in list {
            let raw = self.submission_bytes(s.id, b).await?;
            out.push((s, raw));
        }
        Ok(out)
    }

    async fn set_sent_copy_done(&self, id: i64) -> Result<()> {
        let gone = self
            .call(move |c| submission::set_sent_copy_done(c, id))
            .await?;
        self.forget_blob_files(gone).await
    }

    async fn draft_followups(
        &self,
        limit: usize,
        accounts: &[AccountId],
    ) -> Result<Vec<(crate::SubmissionRecord, Option<Vec<u8>>)>> {
        let accounts = accounts.to_vec();
        let list = self
            .call(move |c| submission::draft_followups(c, limit, &accounts))
            .await?;
        let mut out = Vec::with_capacity(list.len());
        for (s, b) in list {
            let raw = match b {
                Some(b) => Some(self.submission_bytes(s.id, b).await?),
                None => None,
            };
            out.push((s, raw));
        }
        Ok(out)
    }

    async fn set_draft_done(&self, id: i64) -> Result<()> {
        let gone = self
            .call(move |c| submission::set_draft_done(c, id))
            .await?;
        self.forget_blob_files(gone).await
    }

    async fn apply_dsn(
        &self,
        account: AccountId,
        id: i64,
        blob_id: &str,
        updates: &[crate::DeliveryEntry],
    ) -> Result<bool> {
        let (blob, updates) = (blob_id.to_owned(), updates.to_vec());
        self.write(move |c, committed| {
            submission::apply_dsn(c, committed, account, id, &blob, &updates)
        })
        .await
    }

    async fn set_server_files_sent(&self, account: AccountId, server_files: bool) -> Result<()> {
        self.call(move |c| submission::set_server_files_sent(c, account, server_files))
            .await
    }

    async fn mailbox_has_message_id(&self, mailbox: MailboxId, message_id: &str) -> Result<bool> {
        let m = message_id.to_string();
        self.call(move |c| submission::mailbox_has_message_id(c, mailbox, &m))
            .await
    }

    async fn server_files_sent(&self, account: AccountId) -> Result<bool> {
        self.call(move |c| submission::server_files_sent(c, account))
            .await
    }
}

impl SqliteStore {
    /// A submission's bytes: kept in its row, or the blob it holds a reference to.
    async fn submission_bytes(&self, id: i64, bytes: submission::Bytes) -> Result<Vec<u8>> {
        match bytes {
            submission::Bytes::Inline(raw) => Ok(raw),
            submission::Bytes::Blob(b) => self
                .blob(&b)
                .await?
                .ok_or_else(|| Error::Corrupt(format!("submission {id}: its blob {b} is missing"))),
        }
    }
}
