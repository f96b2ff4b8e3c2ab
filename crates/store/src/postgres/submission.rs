//! [`Submissions`] for PostgreSQL, with the SQLite backend's meaning (sqlite/submission.rs):
//! identities and the submission queue, every change logged in the same transaction.
//!
//! Sending exactly once with several nodes:
//! - `begin_submission` is a compare-and-set (`UPDATE ... WHERE phase = 'queued'`,
//!   committed before any byte goes to the SMTP server): two nodes, or one node again
//!   after a crash, cannot both begin an attempt; the loser's UPDATE waits for the
//!   winner's row lock, finds the row no longer queued and begins nothing.
//! - The engine's writes (begin, finish, recover, Sent copy and draft follow-ups, DSNs)
//!   are checked against the handle's lease (`PgStore::fenced`): through the change log
//!   opened with `ChangeLog::of`, or, for the two that log nothing, by the same check made
//!   directly. A node that lost the account's lease writes nothing.
//! - The attempt records the lease it was begun under. `recover_submissions` makes final
//!   (delivered 'unknown', never sent again) only attempts whose lease is no longer live:
//!   a node starting up leaves alone an attempt another node is making.

use super::changelog::ChangeLog;
use super::*;
use crate::model::{ChangeOp, ObjectType};
use crate::submission::*;
use crate::wake::Queue;
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};
use mail_types::{AccountId, EmailId, MailboxId, ThreadId};
use tokio_postgres::types::ToSql;

/// The columns of a [`SubmissionRecord`] (on `submission s`), then its blob's id.
const COLUMNS: &str = "s.id, s.account_id, s.identity_id, s.email_id, s.thread_id, s.envelope, \
    s.mail_from, s.rcpt_to, s.message_id, s.send_at, s.created_at, s.undo_status, s.phase, \
    s.attempts, s.next_attempt, s.delivery::text, s.last_error, s.sent_copy, s.dsn_blobs, \
    s.draft, s.blob_id";

/// A submission's bytes (on `submission s`): kept in the row, or the blob it names.
const BYTES: &str = "CASE WHEN s.blob_id IS NOT NULL AND length(s.raw) = 0 \
    THEN (SELECT data FROM blob WHERE blob.id = s.blob_id) ELSE s.raw END";

/// Which rows' bytes a query reads (none are sent for the others).
#[derive(Clone, Copy, PartialEq)]
enum WithBytes {
    No,
    Yes,
    /// Only for a draft to put back (`draft_followups`).
    ForRestore,
}

/// The submissions `where_` selects (on `submission s`), with their bytes as asked.
async fn query(
    c: &impl GenericClient,
    where_: &str,
    params: &[&(dyn ToSql + Sync)],
    bytes: WithBytes,
) -> Result<Vec<(SubmissionRecord, Option<Vec<u8>>)>> {
    let bytes_column = match bytes {
        WithBytes::No => "NULL::bytea".to_owned(),
        WithBytes::Yes => BYTES.to_owned(),
        WithBytes::ForRestore => format!("CASE WHEN s.draft = 'restore' THEN {BYTES} END"),
    };
    let st = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, {bytes_column} FROM submission s WHERE {where_}"
        ))
        .await?;
    c.query(&st, params)
        .await?
        .iter()
        .map(|r| {
            let s = record(r)?;
            let wanted = match bytes {
                WithBytes::No => false,
                WithBytes::Yes => true,
                WithBytes::ForRestore => s.draft == DraftFate::Restore,
            };
            let raw = if wanted {
                Some(r.get::<_, Option<Vec<u8>>>(21).ok_or_else(|| {
                    let blob: Option<String> = r.get(20);
                    Error::Corrupt(format!("submission {}: its blob {blob:?} is missing", s.id))
                })?)
            } else {
                None
            };
            Ok((s, raw))
        })
        .collect()
}

fn record(r: &tokio_postgres::Row) -> Result<SubmissionRecord> {
    let id: i64 = r.get(0);
    let corrupt = |what: &str| Error::Corrupt(format!("submission {id}: {what}"));
    let rcpt: String = r.get(7);
    let undo: String = r.get(11);
    let phase: String = r.get(12);
    let delivery: String = r.get(15);
    let sent: String = r.get(17);
    let dsn: String = r.get(18);
    let draft: String = r.get(19);
    Ok(SubmissionRecord {
        id,
        account: AccountId(r.get(1)),
        identity: r.get(2),
        email: EmailId(r.get(3)),
        thread: ThreadId(r.get(4)),
        envelope_json: r.get(5),
        mail_from: r.get(6),
        rcpt_to: serde_json::from_str(&rcpt).map_err(|_| corrupt("rcpt_to"))?,
        message_id: r.get(8),
        send_at: r.get(9),
        created_at: r.get(10),
        undo_status: UndoStatus::from_name(&undo).ok_or_else(|| corrupt("undo_status"))?,
        phase: SubmissionPhase::from_name(&phase).ok_or_else(|| corrupt("phase"))?,
        attempts: u32::try_from(r.get::<_, i64>(13)).unwrap_or(0),
        next_attempt: r.get(14),
        delivery: serde_json::from_str(&delivery).map_err(|_| corrupt("delivery"))?,
        last_error: r.get(16),
        sent_copy: SentCopy::from_name(&sent).ok_or_else(|| corrupt("sent_copy"))?,
        dsn_blob_ids: serde_json::from_str(&dsn).map_err(|_| corrupt("dsn_blobs"))?,
        draft: DraftFate::from_name(&draft).ok_or_else(|| corrupt("draft"))?,
    })
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt(format!("serializing: {e}")))
}

/// Account ids as a parameter of `= ANY($n)`.
fn ids(accounts: &[AccountId]) -> Vec<i64> {
    accounts.iter().map(|a| a.0).collect()
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The parameters of an identity's INSERT and UPDATE: its account, its mutable
/// properties, then `last` (the email for an INSERT, the id for an UPDATE).
fn identity_params<'a>(
    i: &'a IdentityRecord,
    last: &'a (dyn ToSql + Sync),
) -> [&'a (dyn ToSql + Sync); 7] {
    [
        &i.account.0,
        &i.name,
        &i.reply_to,
        &i.bcc,
        &i.text_signature,
        &i.html_signature,
        last,
    ]
}

/// SQL condition on `submission s`: the lease its attempt was begun under is still live
/// (the attempt may be under way right now, on its node).
const ATTEMPT_LIVE: &str = "EXISTS (SELECT 1 FROM account_lease l \
     WHERE l.account_id = s.account_id AND l.node = s.attempt_node \
     AND l.epoch = s.attempt_epoch AND l.expires_at > now())";

/// Drops the bytes of submissions `ids` (and their blob references) once nothing needs
/// them: done, no Sent copy to make, no draft to put back; then the blobs nobody else
/// references.
async fn release(tx: &Transaction<'_>, ids: &[i64]) -> Result<()> {
    let st = tx
        .prepare_cached(
            "WITH old AS (SELECT id, blob_id FROM submission WHERE id = ANY($1) FOR UPDATE) \
             UPDATE submission s SET raw = '', blob_id = NULL FROM old \
             WHERE s.id = old.id AND s.phase = 'done' AND s.sent_copy <> 'due' \
                AND s.draft NOT IN ('restore', 'destroy_when_sent') \
                AND (s.blob_id IS NOT NULL OR length(s.raw) > 0) \
             RETURNING old.blob_id",
        )
        .await?;
    let blobs: Vec<String> = tx
        .query(&st, &[&ids])
        .await?
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .collect();
    super::uploads::forget_unreferenced(tx, &blobs).await?;
    Ok(())
}

/// Each recipient's entry of `delivery` (JSONB) with `patch` merged in, in order.
fn patched_delivery(patch: &str, only_unsettled: bool) -> String {
    let entry = if only_unsettled {
        format!("CASE WHEN (e->>'settled')::boolean IS TRUE THEN e ELSE e || '{patch}' END")
    } else {
        format!("e || '{patch}'")
    };
    format!(
        "(SELECT coalesce(jsonb_agg({entry} ORDER BY n), '[]'::jsonb) \
         FROM jsonb_array_elements(s.delivery) WITH ORDINALITY AS t(e, n))"
    )
}

impl PgStore {
    /// Logs the change of one object of `account` and commits `tx`.
    async fn log_one(
        &self,
        tx: Transaction<'_>,
        account: AccountId,
        object: ObjectType,
        id: i64,
        op: ChangeOp,
    ) -> Result<()> {
        let mut log = ChangeLog::of(self, account);
        log.record(&tx, object, id, op).await?;
        log.commit(tx).await?;
        Ok(())
    }

    /// [`PgStore::log_one`] of a submission whose commit gives the submission worker work:
    /// the worker of every node is woken.
    async fn log_queued(
        &self,
        tx: Transaction<'_>,
        account: AccountId,
        id: i64,
        op: ChangeOp,
    ) -> Result<()> {
        let mut log = ChangeLog::of(self, account);
        log.record(&tx, ObjectType::EmailSubmission, id, op).await?;
        log.queued(Queue::Submissions);
        log.commit(tx).await?;
        Ok(())
    }

    /// The lease check of a write that logs no change (the change log makes it for the
    /// others): refused once this handle's lease is lost.
    async fn fence_write(&self, tx: &Transaction<'_>, account: AccountId) -> Result<()> {
        match &self.fence {
            Some(f) => f.check(tx, account).await,
            None => Ok(()),
        }
    }

    /// Takes the row lock of submission `id`'s account first, as every writer of an
    /// account does (`mailsync::lock_account`): taken later, after a blob or submission
    /// row, it deadlocks with a user's write that holds the account and waits for that
    /// row. False when there is no such submission.
    async fn lock_account_of(&self, tx: &Transaction<'_>, id: i64) -> Result<bool> {
        let st = tx
            .prepare_cached("SELECT account_id FROM submission WHERE id = $1")
            .await?;
        let Some(row) = tx.query_opt(&st, &[&id]).await? else {
            return Ok(false);
        };
        super::mailsync::lock_account(tx, AccountId(row.get(0))).await?;
        Ok(true)
    }

    /// A follow-up of a sent or failed submission is done (`update`, on row `$1`, returns
    /// its account when it changed it): its bytes go if nothing else needs them. Not a
    /// JMAP property, so no change to log; the lease still decides.
    async fn followed_up(&self, id: i64, update: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if !self.lock_account_of(&tx, id).await? {
            return Ok(());
        }
        let st = tx.prepare_cached(update).await?;
        let Some(row) = tx.query_opt(&st, &[&id]).await? else {
            return Ok(());
        };
        self.fence_write(&tx, AccountId(row.get(0))).await?;
        release(&tx, &[id]).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The account's row lock, taken first (see `PgStore::lock_account_of`); an account that
/// does not exist has no row to lock, and the write then finds nothing of it.
async fn lock_account(tx: &Transaction<'_>, account: AccountId) -> Result<()> {
    match super::mailsync::lock_account(tx, account).await {
        Err(Error::NotFound(_)) => Ok(()),
        r => r,
    }
}

#[async_trait]
impl Submissions for PgStore {
    async fn identities(&self, account: AccountId) -> Result<Vec<IdentityRecord>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT id, account_id, name, email, reply_to, bcc, text_signature, \
                 html_signature, may_delete FROM identity WHERE account_id = $1 ORDER BY id",
            )
            .await?;
        Ok(c.query(&st, &[&account.0])
            .await?
            .iter()
            .map(|r| IdentityRecord {
                id: r.get(0),
                account: AccountId(r.get(1)),
                name: r.get(2),
                email: r.get(3),
                reply_to: r.get(4),
                bcc: r.get(5),
                text_signature: r.get(6),
                html_signature: r.get(7),
                may_delete: r.get(8),
            })
            .collect())
    }

    /// One `INSERT ... ON CONFLICT`: the first identity is unique by index, so two nodes
    /// giving the account its first identity at once make one.
    async fn ensure_identity(&self, account: AccountId, email: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let st = tx
            .prepare_cached(
                "INSERT INTO identity (account_id, email, may_delete) \
                 SELECT $1, $2, false \
                 WHERE NOT EXISTS (SELECT 1 FROM identity WHERE account_id = $1) \
                 ON CONFLICT (account_id) WHERE NOT may_delete DO NOTHING RETURNING id",
            )
            .await?;
        let mut log = ChangeLog::of(self, account);
        if let Some(r) = tx.query_opt(&st, &[&account.0, &email]).await? {
            log.record(&tx, ObjectType::Identity, r.get(0), ChangeOp::Created)
                .await?;
        }
        log.commit(tx).await?;
        Ok(())
    }

    async fn create_identity(&self, i: &IdentityRecord) -> Result<i64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let st = tx
            .prepare_cached(
                "INSERT INTO identity (account_id, name, reply_to, bcc, text_signature, \
                 html_signature, email, may_delete) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, true) RETURNING id",
            )
            .await?;
        let id: i64 = tx
            .query_one(&st, &identity_params(i, &i.email))
            .await?
            .get(0);
        self.log_one(tx, i.account, ObjectType::Identity, id, ChangeOp::Created)
            .await?;
        Ok(id)
    }

    /// The mutable properties (RFC 8621 6: `email` is immutable).
    async fn update_identity(&self, i: &IdentityRecord) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let st = tx
            .prepare_cached(
                "UPDATE identity SET name = $2, reply_to = $3, bcc = $4, text_signature = $5, \
                 html_signature = $6 WHERE account_id = $1 AND id = $7",
            )
            .await?;
        let n = tx.execute(&st, &identity_params(i, &i.id)).await?;
        if n == 0 {
            return Ok(false);
        }
        self.log_one(tx, i.account, ObjectType::Identity, i.id, ChangeOp::Updated)
            .await?;
        Ok(true)
    }

    async fn destroy_identity(&self, account: AccountId, id: i64) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let st = tx
            .prepare_cached("DELETE FROM identity WHERE id = $1 AND account_id = $2 AND may_delete")
            .await?;
        if tx.execute(&st, &[&id, &account.0]).await? == 0 {
            return Ok(false);
        }
        self.log_one(tx, account, ObjectType::Identity, id, ChangeOp::Destroyed)
            .await?;
        Ok(true)
    }

    /// Queues it and wakes the submission worker of every node (the change log's
    /// notification names the queue). With a blob, the row names it instead of holding a
    /// second copy of the bytes: the blob row is share-locked first, so a blob collection
    /// running now either removed it before (the bytes are then kept in the row) or finds
    /// it referenced.
    async fn create_submission(&self, s: &NewSubmission) -> Result<i64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        lock_account(&tx, s.account).await?;
        let blob = match &s.blob_id {
            Some(b) => {
                let st = tx
                    .prepare_cached("SELECT 1 FROM blob WHERE id = $1 FOR KEY SHARE")
                    .await?;
                tx.query_opt(&st, &[b]).await?.map(|_| b.as_str())
            }
            None => None,
        };
        let raw: &[u8] = if blob.is_some() { &[] } else { &s.raw };
        let st = tx
            .prepare_cached(
                "INSERT INTO submission (account_id, identity_id, email_id, thread_id, envelope, \
                 mail_from, rcpt_to, raw, message_id, send_at, created_at, next_attempt, \
                 sent_copy, delivery, blob_id, draft) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $10, $12, \
                    $13::text::jsonb, $14, $15) RETURNING id",
            )
            .await?;
        let id: i64 = tx
            .query_one(
                &st,
                &[
                    &s.account.0,
                    &s.identity,
                    &s.email.0,
                    &s.thread.0,
                    &s.envelope_json,
                    &s.mail_from,
                    &json(&s.rcpt_to)?,
                    &raw,
                    &s.message_id,
                    &s.send_at,
                    &now(),
                    &s.sent_copy.as_str(),
                    &json(&s.queued_delivery())?,
                    &blob,
                    &s.draft.as_str(),
                ],
            )
            .await?
            .get(0);
        self.log_queued(tx, s.account, id, ChangeOp::Created)
            .await?;
        Ok(id)
    }

    async fn submissions(&self, account: AccountId) -> Result<Vec<SubmissionRecord>> {
        let c = self.client().await?;
        let list = query(
            &c,
            "s.account_id = $1 ORDER BY s.id",
            &[&account.0],
            WithBytes::No,
        )
        .await?;
        Ok(list.into_iter().map(|(s, _)| s).collect())
    }

    /// Only while it waits (queued, pending): one compare-and-set UPDATE, so an attempt
    /// that began first wins. The worker is woken for the new time.
    async fn reschedule_submission(
        &self,
        account: AccountId,
        id: i64,
        send_at: i64,
    ) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        lock_account(&tx, account).await?;
        let st = tx
            .prepare_cached(
                "UPDATE submission SET send_at = $3, next_attempt = $3 \
                 WHERE id = $1 AND account_id = $2 AND phase = 'queued' \
                    AND undo_status = 'pending'",
            )
            .await?;
        if tx.execute(&st, &[&id, &account.0, &send_at]).await? == 0 {
            return Ok(false);
        }
        self.log_queued(tx, account, id, ChangeOp::Updated).await?;
        Ok(true)
    }

    /// Pending -> canceled in one compare-and-set UPDATE (so an attempt that began first
    /// wins: `TooLate`); its message goes back to Drafts, the worker's work.
    async fn cancel_submission(&self, account: AccountId, id: i64) -> Result<CancelOutcome> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        lock_account(&tx, account).await?;
        let st = tx
            .prepare_cached(&format!(
                "UPDATE submission s SET undo_status = 'canceled', phase = 'done', \
                 draft = CASE WHEN draft = 'done' THEN 'done' ELSE 'restore' END, \
                 delivery = {} \
                 WHERE s.id = $1 AND s.account_id = $2 AND s.phase = 'queued' \
                    AND s.undo_status = 'pending'",
                patched_delivery(r#"{"delivered": "no", "smtpReply": "canceled"}"#, false)
            ))
            .await?;
        if tx.execute(&st, &[&id, &account.0]).await? == 0 {
            let st = tx
                .prepare_cached("SELECT 1 FROM submission WHERE id = $1 AND account_id = $2")
                .await?;
            let exists = tx.query_opt(&st, &[&id, &account.0]).await?.is_some();
            return Ok(if exists {
                CancelOutcome::TooLate
            } else {
                CancelOutcome::NotFound
            });
        }
        release(&tx, &[id]).await?;
        self.log_queued(tx, account, id, ChangeOp::Updated).await?;
        Ok(CancelOutcome::Canceled)
    }

    /// RFC 8621 7.5: the record goes, unless an attempt is under way (the worker must find
    /// it to record the reply).
    async fn destroy_submission(&self, account: AccountId, id: i64) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        lock_account(&tx, account).await?;
        let st = tx
            .prepare_cached(
                "DELETE FROM submission WHERE id = $1 AND account_id = $2 \
                 AND phase <> 'sending' RETURNING blob_id",
            )
            .await?;
        let Some(row) = tx.query_opt(&st, &[&id, &account.0]).await? else {
            return Ok(false);
        };
        if let Some(b) = row.get::<_, Option<String>>(0) {
            super::uploads::forget_unreferenced(&tx, &[b]).await?;
        }
        self.log_one(
            tx,
            account,
            ObjectType::EmailSubmission,
            id,
            ChangeOp::Destroyed,
        )
        .await?;
        Ok(true)
    }

    async fn due_submissions(
        &self,
        now: i64,
        n: usize,
        accounts: &[AccountId],
    ) -> Result<Vec<SubmissionRecord>> {
        let c = self.client().await?;
        let list = query(
            &c,
            "s.phase = 'queued' AND s.next_attempt <= $1 AND s.account_id = ANY($3) \
             ORDER BY s.next_attempt, s.id LIMIT $2",
            &[&now, &limit(n), &ids(accounts)],
            WithBytes::No,
        )
        .await?;
        Ok(list.into_iter().map(|(s, _)| s).collect())
    }

    async fn next_submission_at(&self, accounts: &[AccountId]) -> Result<Option<i64>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT min(next_attempt) FROM submission \
                 WHERE phase = 'queued' AND account_id = ANY($1)",
            )
            .await?;
        Ok(c.query_one(&st, &[&ids(accounts)]).await?.get(0))
    }

    fn submission_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.work.submissions()
    }

    /// queued -> sending, committed durably before any byte goes to the SMTP server: a row
    /// in 'sending' is then the proof that an attempt may have reached it. The UPDATE is
    /// the compare-and-set: whoever comes second finds the row no longer queued. It names
    /// the lease it runs under, so that recovery leaves a live attempt alone.
    async fn begin_submission(&self, id: i64) -> Result<Option<Vec<u8>>> {
        let (node, epoch) = match &self.fence {
            Some(f) => (Some(f.node.as_str()), Some(f.lease.epoch)),
            None => (None, None),
        };
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if !self.lock_account_of(&tx, id).await? {
            return Ok(None);
        }
        // SQLite's `synchronous = FULL` for this commit: a server configured with
        // `synchronous_commit = off` could otherwise lose the mark after a crash while the
        // message went out, and send it again.
        tx.batch_execute("SET LOCAL synchronous_commit = on")
            .await?;
        let st = tx
            .prepare_cached(&format!(
                "UPDATE submission s SET phase = 'sending', undo_status = 'final', \
                 attempts = attempts + 1, attempt_node = $2, attempt_epoch = $3 \
                 WHERE s.id = $1 AND s.phase = 'queued' \
                 RETURNING s.account_id, s.blob_id, {BYTES}"
            ))
            .await?;
        let Some(row) = tx.query_opt(&st, &[&id, &node, &epoch]).await? else {
            return Ok(None);
        };
        let account = AccountId(row.get(0));
        let raw: Vec<u8> = row.get::<_, Option<Vec<u8>>>(2).ok_or_else(|| {
            let blob: Option<String> = row.get(1);
            Error::Corrupt(format!("submission {id}: its blob {blob:?} is missing"))
        })?;
        self.log_one(
            tx,
            account,
            ObjectType::EmailSubmission,
            id,
            ChangeOp::Updated,
        )
        .await?;
        Ok(Some(raw))
    }

    async fn finish_submission(&self, id: i64, result: &AttemptResult) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if !self.lock_account_of(&tx, id).await? {
            return Ok(());
        }
        let st = tx
            .prepare_cached("SELECT account_id FROM submission WHERE id = $1")
            .await?;
        let Some(row) = tx.query_opt(&st, &[&id]).await? else {
            return Ok(());
        };
        let account = AccountId(row.get(0));
        let (delivery, error) = result.outcome();
        let (reached, delivery) = (result.reached_server(), json(&delivery)?);
        match result {
            AttemptResult::Final { .. } => {
                // Sent (to someone): the draft is destroyed once the Sent copy is made. Not
                // sent to anyone: the message goes back to Drafts, whoever moved it away.
                let st = tx
                    .prepare_cached(
                        "UPDATE submission SET phase = 'done', delivery = $2::text::jsonb, \
                         last_error = $3, \
                         sent_copy = CASE WHEN sent_copy = 'append' AND $4 THEN 'due' \
                            WHEN sent_copy = 'append' THEN 'none' ELSE sent_copy END, \
                         draft = CASE WHEN draft = 'done' THEN 'done' \
                            WHEN $4 AND draft = 'destroy_when_sent' THEN 'destroy' \
                            WHEN $4 THEN draft ELSE 'restore' END \
                         WHERE id = $1 AND phase = 'sending'",
                    )
                    .await?;
                tx.execute(&st, &[&id, &delivery, &error, &reached]).await?;
            }
            AttemptResult::Retry { next_attempt, .. } => {
                // Back in the queue; undoStatus stays final (RFC 8621 7: once sending has
                // started, it cannot be undone).
                let st = tx
                    .prepare_cached(
                        "UPDATE submission SET phase = 'queued', next_attempt = $2, \
                         delivery = $3::text::jsonb, last_error = $4, \
                         sent_copy = CASE WHEN sent_copy = 'append' AND $5 THEN 'due' \
                            ELSE sent_copy END, \
                         draft = CASE WHEN $5 AND draft = 'destroy_when_sent' THEN 'destroy' \
                            ELSE draft END \
                         WHERE id = $1 AND phase = 'sending'",
                    )
                    .await?;
                tx.execute(&st, &[&id, next_attempt, &delivery, &error, &reached])
                    .await?;
            }
        }
        release(&tx, &[id]).await?;
        // Logged (and so checked against the lease) even when the row was no longer in
        // 'sending', as SQLite does: a node that lost the lease learns it here.
        self.log_one(
            tx,
            account,
            ObjectType::EmailSubmission,
            id,
            ChangeOp::Updated,
        )
        .await?;
        Ok(())
    }

    /// The account's attempts whose lease is no longer live were cut between "may have
    /// reached the server" and "reply committed": never sent again, the recipients of that
    /// attempt delivered 'unknown' (those settled earlier keep their status), the Sent
    /// copy due (docs/design/sending.md, "The Sent copy"). An attempt begun without a lease
    /// is recovered at once (one node: this is its startup); one under a lease still live
    /// is left alone (its node may be sending it right now). One transaction.
    async fn recover_submissions(&self, account: AccountId) -> Result<Vec<i64>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        lock_account(&tx, account).await?;
        let st = tx
            .prepare_cached(&format!(
                "UPDATE submission s SET phase = 'done', delivery = {}, \
                 sent_copy = CASE WHEN sent_copy = 'append' THEN 'due' ELSE sent_copy END, \
                 draft = CASE WHEN draft = 'destroy_when_sent' THEN 'destroy' ELSE draft END, \
                 last_error = 'interrupted after the message may have reached the server; \
                    not sent again' \
                 WHERE s.account_id = $1 AND s.phase = 'sending' AND NOT {ATTEMPT_LIVE} \
                 RETURNING s.id",
                patched_delivery(
                    r#"{"delivered": "unknown", "smtpReply": "no reply recorded (interrupted)", "settled": true}"#,
                    true
                )
            ))
            .await?;
        let mut done: Vec<i64> = tx
            .query(&st, &[&account.0])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if done.is_empty() {
            return Ok(done);
        }
        done.sort_unstable();
        release(&tx, &done).await?;
        let mut log = ChangeLog::of(self, account);
        log.record_many(&tx, ObjectType::EmailSubmission, &done, ChangeOp::Updated)
            .await?;
        log.commit(tx).await?;
        tracing::warn!(account = %account, submissions = ?done,
            "submissions cut during an attempt: delivery unknown, not sent again");
        Ok(done)
    }

    async fn pending_sent_copies(
        &self,
        account: AccountId,
    ) -> Result<Vec<(SubmissionRecord, Vec<u8>)>> {
        let c = self.client().await?;
        let list = query(
            &c,
            "s.account_id = $1 AND s.phase <> 'sending' AND s.sent_copy = 'due' ORDER BY s.id",
            &[&account.0],
            WithBytes::Yes,
        )
        .await?;
        // `query` read every row's bytes (or failed).
        Ok(list
            .into_iter()
            .map(|(s, raw)| (s, raw.unwrap_or_default()))
            .collect())
    }

    async fn set_sent_copy_done(&self, id: i64) -> Result<()> {
        self.followed_up(
            id,
            "UPDATE submission SET sent_copy = 'done' WHERE id = $1 AND sent_copy = 'due' \
             RETURNING account_id",
        )
        .await
    }

    async fn draft_followups(
        &self,
        n: usize,
        accounts: &[AccountId],
    ) -> Result<Vec<(SubmissionRecord, Option<Vec<u8>>)>> {
        let c = self.client().await?;
        query(
            &c,
            "s.draft IN ('destroy', 'restore') AND s.phase <> 'sending' \
             AND (s.draft = 'restore' OR s.sent_copy IN ('none', 'done')) \
             AND s.account_id = ANY($2) ORDER BY s.id LIMIT $1",
            &[&limit(n), &ids(accounts)],
            WithBytes::ForRestore,
        )
        .await
    }

    async fn set_draft_done(&self, id: i64) -> Result<()> {
        self.followed_up(
            id,
            "UPDATE submission SET draft = 'done' \
             WHERE id = $1 AND draft IN ('destroy', 'restore') RETURNING account_id",
        )
        .await
    }

    async fn set_server_files_sent(&self, account: AccountId, server_files: bool) -> Result<()> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO sent_copy_policy (account_id, policy) VALUES ($1, $2) \
                 ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy",
            )
            .await?;
        let policy = if server_files { "server" } else { "append" };
        c.execute(&st, &[&account.0, &policy]).await?;
        Ok(())
    }

    async fn server_files_sent(&self, account: AccountId) -> Result<bool> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT policy FROM sent_copy_policy WHERE account_id = $1")
            .await?;
        let policy: Option<String> = c.query_opt(&st, &[&account.0]).await?.map(|r| r.get(0));
        Ok(policy.as_deref() == Some("server"))
    }

    async fn mailbox_has_message_id(&self, mailbox: MailboxId, message_id: &str) -> Result<bool> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM copy c JOIN email e ON e.id = c.email_id \
                 WHERE c.mailbox_id = $1 AND e.message_id = $2)",
            )
            .await?;
        Ok(c.query_one(&st, &[&mailbox.0, &message_id]).await?.get(0))
    }

    /// Once per report blob: the row is locked while the report is merged in, so two
    /// nodes applying reports to one submission apply both, each once.
    async fn apply_dsn(
        &self,
        account: AccountId,
        id: i64,
        blob_id: &str,
        updates: &[DeliveryEntry],
    ) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        lock_account(&tx, account).await?;
        let st = tx
            .prepare_cached(
                "SELECT delivery::text, dsn_blobs FROM submission \
                 WHERE id = $1 AND account_id = $2 FOR UPDATE",
            )
            .await?;
        let Some(row) = tx.query_opt(&st, &[&id, &account.0]).await? else {
            return Ok(false);
        };
        let corrupt = |what: &str| Error::Corrupt(format!("submission {id}: {what}"));
        let mut entries: Vec<DeliveryEntry> =
            serde_json::from_str(row.get(0)).map_err(|_| corrupt("delivery"))?;
        let mut blobs: Vec<String> =
            serde_json::from_str(row.get(1)).map_err(|_| corrupt("dsn_blobs"))?;
        if !apply_report(&mut entries, &mut blobs, blob_id, updates) {
            return Ok(false);
        }
        let st = tx
            .prepare_cached(
                "UPDATE submission SET delivery = $2::text::jsonb, dsn_blobs = $3 WHERE id = $1",
            )
            .await?;
        tx.execute(&st, &[&id, &json(&entries)?, &json(&blobs)?])
            .await?;
        self.log_one(
            tx,
            account,
            ObjectType::EmailSubmission,
            id,
            ChangeOp::Updated,
        )
        .await?;
        Ok(true)
    }
}
