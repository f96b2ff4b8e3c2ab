//! The submission worker: sends queued EmailSubmissions over SMTP, one engine-wide task.
//!
//! Each due submission is moved to `sending` in a durable commit *before* the connection
//! is opened, then sent, then its outcome is committed. A crash in between leaves it in
//! `sending`; at the next start `recover_submissions` makes it final with delivered
//! `unknown` instead of sending it again (at most once: a duplicate mail to a person
//! cannot be taken back, a visible "unknown" can be checked). Transient refusals and
//! connection failures before the end of DATA are retried with exponential backoff; a
//! 5xx is final.

use crate::{AccountEvent, Backoff, PasswordSource};
use mail_types::{AccountId, Role};
use std::sync::Arc;
use std::time::Duration;
use store::{AppendRequest, AttemptResult, DeliveryEntry, Store, SubmissionRecord};
use submit::{Outcome, RecipientReply};
use tokio::sync::{broadcast, watch};

/// Tunables of the worker.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// How often the queue is looked at when nothing is due sooner (one indexed query).
    pub poll: Duration,
    /// First retry delay after a transient failure; doubles up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Attempts before a transient failure is given up as final.
    pub max_attempts: u32,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        SubmitOptions {
            poll: Duration::from_millis(500),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(30 * 60),
            max_attempts: 12,
        }
    }
}

/// Submissions handled per look at the queue.
const BATCH: usize = 32;

pub(crate) struct Worker {
    pub store: Arc<dyn Store>,
    pub passwords: PasswordSource,
    pub shutdown: watch::Receiver<bool>,
    pub events: broadcast::Sender<AccountEvent>,
    pub options: SubmitOptions,
    /// Rung by the API when it queues a submission that may be due at once.
    pub wake: Arc<tokio::sync::Notify>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Worker {
    async fn publish(&self, account: AccountId) {
        if let Ok(state) = self.store.account_state(account).await {
            let _ = self.events.send(AccountEvent { account, state });
        }
    }

    pub(crate) async fn run(mut self) {
        match self.store.recover_submissions().await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(submissions = ?ids,
                    "submissions interrupted during an attempt: marked unknown, not resent");
                if let Ok(accounts) = self.store.list_accounts().await {
                    for a in accounts {
                        self.publish(a.id).await;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot recover interrupted submissions"),
        }
        // Sent copies cut by a stop or a crash.
        if let Ok(accounts) = self.store.list_accounts().await {
            for a in accounts {
                self.sent_copies(a.id).await;
            }
        }
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let due = match self.store.due_submissions(now(), BATCH).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the submission queue");
                    Vec::new()
                }
            };
            for s in due {
                if *self.shutdown.borrow() {
                    return;
                }
                self.attempt(s).await;
            }
            let wait = match self.store.next_submission_at().await {
                Ok(Some(at)) => {
                    let secs = u64::try_from(at.saturating_sub(now())).unwrap_or(0);
                    Duration::from_secs(secs).min(self.options.poll)
                }
                _ => self.options.poll,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = self.shutdown.changed() => return,
            }
        }
    }

    async fn attempt(&self, s: SubmissionRecord) {
        let account = s.account;
        let record = match self.store.account(account).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(account = %account, error = %e, "cannot read the account");
                return;
            }
        };
        let raw = match self.store.begin_submission(s.id).await {
            Ok(Some(raw)) => raw,
            // Canceled or destroyed meanwhile.
            Ok(None) => return,
            Err(e) => {
                tracing::error!(account = %account, submission = s.id, error = %e,
                    "cannot start a submission");
                return;
            }
        };
        self.publish(account).await;
        let result = match record.as_ref().and_then(|a| a.smtp.clone().map(|m| (a, m))) {
            None => final_for_all(&s, "no", "the account has no SMTP settings"),
            Some((a, smtp)) => {
                // The password source decrypts the record's `server` password; the SMTP
                // password is encrypted with the same key.
                let mut as_smtp = a.clone();
                as_smtp.server = smtp.clone();
                match (self.passwords)(&as_smtp) {
                    Err(e) => {
                        tracing::error!(account = %account, error = %e,
                            "cannot decrypt the SMTP password");
                        final_for_all(&s, "no", "the SMTP password cannot be decrypted")
                    }
                    Ok(password) => {
                        let server = submit::Server {
                            host: smtp.host.clone(),
                            port: smtp.port,
                            security: smtp.security,
                            username: smtp.username.clone(),
                            password,
                            ca_file: a.server.ca_file.clone().map(Into::into),
                            hello_name: "localhost".into(),
                        };
                        let envelope = submit::Envelope {
                            mail_from: s.mail_from.clone(),
                            rcpt_to: s.rcpt_to.clone(),
                        };
                        let bytes = submit::strip_bcc(&raw);
                        let outcome = submit::send(&server, &envelope, &bytes).await;
                        self.classify(&s, outcome)
                    }
                }
            }
        };
        if let Err(e) = self.store.finish_submission(s.id, &result).await {
            // The row stays in `sending`: the next start marks it unknown, never resends.
            tracing::error!(account = %account, submission = s.id, error = %e,
                "cannot record a submission's outcome");
        }
        self.sent_copies(account).await;
        self.publish(account).await;
    }

    /// Puts the copy of each accepted submission into Sent, once: through the write-back
    /// outbox (`append_email`: stored at once, APPENDed exactly once). A Sent mailbox that
    /// already holds the Message-ID (the client moved the draft there, or an earlier
    /// append was cut before it was marked done) gets no second copy.
    async fn sent_copies(&self, account: AccountId) {
        let pending = match self.store.pending_sent_copies(account).await {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(account = %account, error = %e, "cannot read pending Sent copies");
                return;
            }
        };
        let sent = match self.store.mailboxes(account).await {
            Ok(list) => list.into_iter().find(|m| m.role == Some(Role::Sent)),
            Err(e) => {
                tracing::error!(account = %account, error = %e, "cannot read mailboxes");
                return;
            }
        };
        let Some(sent) = sent else {
            tracing::warn!(account = %account, "no Sent mailbox yet; the copies wait");
            return;
        };
        for (rec, raw) in pending {
            let already = match &rec.message_id {
                Some(m) => self
                    .store
                    .mailbox_has_message_id(sent.id, m)
                    .await
                    .unwrap_or(false),
                None => false,
            };
            if !already {
                let req = AppendRequest {
                    mailbox: sent.id,
                    raw,
                    keywords: vec!["$seen".into()],
                    received_at: now(),
                };
                match self.store.append_email(account, req).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(refusal)) => {
                        // A POP3 account, say: nothing to append to; not retried.
                        tracing::warn!(account = %account, submission = rec.id,
                            reason = %refusal, "no Sent copy");
                    }
                    Err(e) => {
                        tracing::error!(account = %account, submission = rec.id, error = %e,
                            "cannot queue the Sent copy; will try again");
                        continue;
                    }
                }
            }
            if let Err(e) = self.store.set_sent_copy_done(rec.id).await {
                tracing::error!(account = %account, submission = rec.id, error = %e,
                    "cannot record the Sent copy");
            }
        }
    }

    fn classify(&self, s: &SubmissionRecord, outcome: Outcome) -> AttemptResult {
        match outcome {
            Outcome::Accepted { reply, recipients } => {
                tracing::info!(account = %s.account, submission = s.id, code = reply.code,
                    "submission accepted");
                AttemptResult::Final {
                    delivery: delivery(s, &recipients, Some(&reply.line()), "queued"),
                    error: String::new(),
                }
            }
            Outcome::Refused {
                reply,
                reason,
                transient,
                recipients,
            } => {
                let line = reply.as_ref().map(|r| r.line());
                let text = line.clone().unwrap_or_else(|| reason.clone());
                if transient && s.attempts + 1 < self.options.max_attempts {
                    let mut backoff = Backoff::new(self.options.retry_base, self.options.retry_max);
                    let mut delay = backoff.next_delay();
                    for _ in 0..s.attempts {
                        delay = backoff.next_delay();
                    }
                    let secs = i64::try_from(delay.as_secs().max(1)).unwrap_or(i64::MAX);
                    tracing::warn!(account = %s.account, submission = s.id, reason = %reason,
                        retry_in = secs, "submission deferred");
                    AttemptResult::Retry {
                        next_attempt: now().saturating_add(secs),
                        delivery: delivery(s, &recipients, Some(&text), "queued"),
                        error: reason,
                    }
                } else {
                    tracing::warn!(account = %s.account, submission = s.id, reason = %reason,
                        "submission failed");
                    AttemptResult::Final {
                        delivery: delivery(s, &recipients, Some(&text), "no"),
                        error: reason,
                    }
                }
            }
            Outcome::Unknown { reason } => {
                tracing::warn!(account = %s.account, submission = s.id, reason = %reason,
                    "submission outcome unknown; not retried");
                AttemptResult::Final {
                    delivery: delivery(s, &[], Some(&reason), "unknown"),
                    error: reason,
                }
            }
        }
    }
}

/// Per recipient: its own RCPT reply when it has one (refused ones are "no"), else the
/// overall reply with `fallback`.
fn delivery(
    s: &SubmissionRecord,
    recipients: &[RecipientReply],
    overall: Option<&str>,
    fallback: &str,
) -> Vec<DeliveryEntry> {
    s.rcpt_to
        .iter()
        .map(|r| {
            match recipients
                .iter()
                .find(|x| x.address.eq_ignore_ascii_case(r))
            {
                Some(x) if !x.accepted() => DeliveryEntry {
                    email: r.clone(),
                    smtp_reply: x.reply.line(),
                    // Refused recipients are not retried alone (the others have it).
                    delivered: "no".into(),
                },
                _ => DeliveryEntry {
                    email: r.clone(),
                    smtp_reply: overall.unwrap_or_default().to_owned(),
                    delivered: fallback.into(),
                },
            }
        })
        .collect()
}

fn final_for_all(s: &SubmissionRecord, delivered: &str, why: &str) -> AttemptResult {
    AttemptResult::Final {
        delivery: s
            .rcpt_to
            .iter()
            .map(|r| DeliveryEntry {
                email: r.clone(),
                smtp_reply: why.to_owned(),
                delivered: delivered.to_owned(),
            })
            .collect(),
        error: why.to_owned(),
    }
}
