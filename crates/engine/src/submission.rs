//! The submission worker: sends queued EmailSubmissions over SMTP, one engine-wide task.
//!
//! Each due submission is moved to `sending` in a durable commit *before* the connection
//! is opened, then sent, then its outcome is committed. A crash in between leaves it in
//! `sending`; at the next start `recover_submissions` makes it final with delivered
//! `unknown` instead of sending it again (at most once: a duplicate mail to a person
//! cannot be taken back, a visible "unknown" can be checked). Transient refusals and
//! connection failures before the end of DATA are retried with exponential backoff; a
//! 5xx is final. A recipient deferred with a 4xx at RCPT while others were accepted is
//! retried alone: the next attempt's envelope holds only the recipients not yet settled.
//!
//! Connections are kept per account for a short idle time ([`SubmitOptions::idle`]), so
//! a burst pays TCP, TLS and AUTH once: the durable `sending` mark still precedes each
//! message's MAIL FROM, a kept connection is checked with RSET before it carries the
//! next message, and one that fails during a transaction is dropped (that message alone
//! ends `unknown` if the failure came once its bytes were being written).

use crate::{Backoff, PasswordSource};
use mail_types::{AccountId, Role};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::events::PushType;
use store::{
    AppendRequest, AttemptResult, DeliveryEntry, DraftFate, EmailCondition, EmailFilter,
    EmailPatch, EmailQuery, Store, SubmissionRecord,
};
use submit::{Outcome, RecipientReply};
use tokio::sync::watch;

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
    /// How long an SMTP connection is kept open without a message to send.
    pub idle: Duration,
    /// Messages one connection carries before it is closed and a new one opened.
    pub max_per_connection: u32,
    /// Shortest time between two looks for delivery-status reports in one account.
    pub dsn_scan_interval: Duration,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        SubmitOptions {
            poll: Duration::from_millis(500),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(30 * 60),
            max_attempts: 12,
            idle: Duration::from_secs(15),
            max_per_connection: 100,
            dsn_scan_interval: Duration::from_secs(2),
        }
    }
}

/// Submissions handled per look at the queue.
const BATCH: usize = 32;

pub(crate) struct Worker {
    /// For reads; what is written for an account goes through its fenced store in
    /// `holdings`.
    pub store: Arc<dyn Store>,
    /// The accounts this node holds: the worker sends for these only.
    pub holdings: crate::lease::Holdings,
    pub passwords: PasswordSource,
    pub oauth: Arc<crate::OAuth>,
    pub shutdown: watch::Receiver<bool>,
    pub options: SubmitOptions,
}

/// A connection kept open after a message, for the next one of the same account.
struct Kept {
    conn: submit::Connection,
    /// The settings it was opened with; a change (new password, new host) retires it.
    server: ServerKey,
    last_used: Instant,
}

/// Everything that decides which session a connection is.
#[derive(PartialEq, Eq)]
struct ServerKey {
    host: String,
    port: u16,
    security: mail_types::Security,
    username: String,
    password: String,
    ca_file: Option<std::path::PathBuf>,
}

impl ServerKey {
    fn of(s: &submit::Server) -> ServerKey {
        ServerKey {
            host: s.host.clone(),
            port: s.port,
            security: s.security,
            username: s.username.clone(),
            password: s.password.clone(),
            ca_file: s.ca_file.clone(),
        }
    }
}

/// The worker's kept connections, one per account at most.
#[derive(Default)]
struct Pool {
    kept: HashMap<AccountId, Kept>,
}

impl Pool {
    /// A kept connection for `server` that answered RSET, else a new one.
    async fn take(
        &mut self,
        account: AccountId,
        server: &submit::Server,
        max_per_connection: u32,
    ) -> Result<submit::Connection, Outcome> {
        if let Some(mut k) = self.kept.remove(&account) {
            if k.server == ServerKey::of(server)
                && k.conn.messages() < max_per_connection
                && k.conn.reset().await
            {
                return Ok(k.conn);
            }
            k.conn.quit().await;
        }
        submit::Connection::open(server).await
    }

    fn put_back(&mut self, account: AccountId, server: &submit::Server, conn: submit::Connection) {
        if conn.usable() {
            self.kept.insert(
                account,
                Kept {
                    conn,
                    server: ServerKey::of(server),
                    last_used: Instant::now(),
                },
            );
        }
    }

    /// QUITs the connections idle for longer than `idle` (all of them with zero).
    async fn close_idle(&mut self, idle: Duration) {
        let old: Vec<AccountId> = self
            .kept
            .iter()
            .filter(|(_, k)| k.last_used.elapsed() >= idle)
            .map(|(a, _)| *a)
            .collect();
        for a in old {
            if let Some(k) = self.kept.remove(&a) {
                k.conn.quit().await;
            }
        }
    }

    /// When the next kept connection falls idle.
    fn next_idle(&self, idle: Duration) -> Option<Duration> {
        self.kept
            .values()
            .map(|k| idle.saturating_sub(k.last_used.elapsed()))
            .min()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Worker {
    pub(crate) async fn run(mut self) {
        // Before the first look at the queue: a submission queued after that look rings
        // it, one queued before is found by the look (see `store::wake`).
        let mut wake = self.store.submission_signal();
        let mut held_changed = self.holdings.subscribe();
        let mut pool = Pool::default();
        let mut dsn = DsnWatch::default();
        let mut bus = self.store.events().subscribe();
        let mut bus_open = true;
        // Accounts taken since the last look (all of them at the first).
        let mut known: std::collections::HashSet<AccountId> = Default::default();
        loop {
            if *self.shutdown.borrow() {
                pool.close_idle(Duration::ZERO).await;
                return;
            }
            let held = self.holdings.accounts();
            for account in held.iter().copied().filter(|a| !known.contains(a)) {
                self.take_over(account, &mut dsn).await;
            }
            known = held.iter().copied().collect();
            dsn.until.retain(|a, _| known.contains(a));
            dsn.dirty.retain(|a| known.contains(a));
            let due = match self.store.due_submissions(now(), BATCH, &held).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the submission queue");
                    Vec::new()
                }
            };
            for s in due {
                if *self.shutdown.borrow() {
                    pool.close_idle(Duration::ZERO).await;
                    return;
                }
                dsn.watch(s.account, now());
                self.attempt(&mut pool, s).await;
            }
            // Drafts of sent messages to destroy, of failed or canceled ones to restore.
            self.drafts().await;
            pool.close_idle(self.options.idle).await;
            dsn.scan_due(&self, self.options.dsn_scan_interval).await;
            let mut wait = match self.store.next_submission_at(&held).await {
                Ok(Some(at)) => {
                    let secs = u64::try_from(at.saturating_sub(now())).unwrap_or(0);
                    Duration::from_secs(secs).min(self.options.poll)
                }
                _ => self.options.poll,
            };
            if let Some(idle) = pool.next_idle(self.options.idle) {
                wait = wait.min(idle);
            }
            if dsn.has_pending() {
                wait = wait.min(self.options.dsn_scan_interval);
            }
            // Store announcements (for the DSN watch) do not end the wait: a busy sync
            // would otherwise cost two queue queries per commit.
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    r = wake.changed() => {
                        if r.is_err() {
                            // The store is gone: only the timer is left.
                            tokio::time::sleep_until(deadline).await;
                        }
                        break;
                    }
                    // An account taken or given up.
                    r = held_changed.changed() => {
                        if r.is_err() {
                            tokio::time::sleep_until(deadline).await;
                        }
                        break;
                    }
                    ev = bus.recv(), if bus_open => match ev {
                        // New mail, or the body of mail whose header came first.
                        Ok(change)
                            if dsn.watching(change.account)
                                && (change.types.contains(PushType::EmailDelivery)
                                    || change.types.contains(PushType::Email)) =>
                        {
                            dsn.dirty.insert(change.account);
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            // Some announcements were missed: look in every account.
                            if let Ok(accounts) = self.store.list_accounts().await {
                                dsn.dirty.extend(accounts.into_iter().map(|a| a.id));
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            tracing::warn!("the store's event bus closed; DSN reports are not followed");
                            bus_open = false;
                        }
                    },
                    _ = self.shutdown.changed() => {
                        pool.close_idle(Duration::ZERO).await;
                        return;
                    }
                }
            }
        }
    }

    /// An account this node just took (at start, or from a node that died or lost it):
    /// its submissions cut during an attempt become final `unknown` (never sent again),
    /// then the Sent copies and draft follow-ups left behind are done, and its INBOX is
    /// looked at for delivery reports.
    async fn take_over(&self, account: AccountId, dsn: &mut DsnWatch) {
        let Some(h) = self.holdings.get(account) else {
            return;
        };
        match h.store.recover_submissions(account).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(account = %account, submissions = ?ids,
                    "submissions interrupted during an attempt: marked unknown, not resent");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(account = %account, error = %e,
                "cannot recover interrupted submissions"),
        }
        self.sent_copies(account).await;
        if let Ok(list) = self.store.submissions(account).await
            && let Some(last) = list.iter().map(|s| s.created_at).max()
        {
            dsn.watch(account, last);
            dsn.dirty.insert(account);
        }
    }

    async fn attempt(&self, pool: &mut Pool, s: SubmissionRecord) {
        let account = s.account;
        // Sent only by the node holding the account, while it holds it.
        let Some(h) = self.holdings.get(account).filter(|h| h.holding.holds()) else {
            return;
        };
        let record = match self.store.account(account).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(account = %account, error = %e, "cannot read the account");
                return;
            }
        };
        let raw = match h.store.begin_submission(s.id).await {
            Ok(Some(raw)) => raw,
            // Canceled or destroyed meanwhile.
            Ok(None) => return,
            Err(e) => {
                tracing::error!(account = %account, submission = s.id, error = %e,
                    "cannot start a submission");
                return;
            }
        };
        let result = match record.as_ref().and_then(|a| a.smtp.clone().map(|m| (a, m))) {
            None => final_for_all(&s, "no", "the account has no SMTP settings"),
            Some((a, smtp)) => {
                match self.smtp_secret(a, &smtp, None).await {
                    Err(e) => classify(&self.options, &s, &unsettled(&s), token_outcome(e)),
                    Ok((password, oauth2)) => {
                        let mut server = submit::Server {
                            host: smtp.host.clone(),
                            port: smtp.port,
                            security: smtp.security,
                            username: smtp.username.clone(),
                            password,
                            oauth2,
                            ca_file: a.server.ca_file.clone().map(Into::into),
                            hello_name: "localhost".into(),
                        };
                        // Only the recipients still to send to (all of them at first; a
                        // retry after a partial success: the deferred ones).
                        let attempted = unsettled(&s);
                        let envelope = submit::Envelope {
                            mail_from: s.mail_from.clone(),
                            rcpt_to: attempted.clone(),
                        };
                        let bytes = submit::strip_bcc(&raw);
                        let mut opened = pool
                            .take(account, &server, self.options.max_per_connection)
                            .await;
                        if server.oauth2
                            && let Err(submit::Outcome::Refused { reason, .. }) = &opened
                            && reason.starts_with("AUTH")
                        {
                            // The access token may have been revoked or expired early:
                            // renew it once (RFC 6750 3.1 invalid_token) and try again.
                            tracing::info!(account = %account,
                                "SMTP refused the access token; renewing it once");
                            match self.smtp_secret(a, &smtp, Some(&server.password)).await {
                                Ok((password, _)) => {
                                    server.password = password;
                                    opened = pool
                                        .take(account, &server, self.options.max_per_connection)
                                        .await;
                                }
                                Err(e) => opened = Err(token_outcome(e)),
                            }
                        }
                        let outcome = match opened {
                            // Paused past the lease since `begin` (its check is the
                            // store's): the row stays `sending`, and the node that took
                            // the account reports it `unknown` rather than send it again.
                            Ok(_) if !h.holding.holds() => {
                                tracing::warn!(account = %account, submission = s.id,
                                    "account lease lost before sending; not sent");
                                return;
                            }
                            Ok(mut conn) => {
                                let envid = s.envelope_id();
                                let outcome =
                                    conn.send_with_dsn(&envelope, &bytes, Some(&envid)).await;
                                pool.put_back(account, &server, conn);
                                outcome
                            }
                            Err(refused) => refused,
                        };
                        classify(&self.options, &s, &attempted, outcome)
                    }
                }
            }
        };
        if let Err(e) = h.store.finish_submission(s.id, &result).await {
            // The row stays in `sending`: the next start marks it unknown, never resends.
            tracing::error!(account = %account, submission = s.id, error = %e,
                "cannot record a submission's outcome");
        }
        self.sent_copies(account).await;
    }

    /// The SMTP secret of an account: its SMTP password, or (OAuth2 accounts) an access
    /// token of its provider, the same grant as IMAP's (`rejected`: a token the server
    /// refused). The bool says which. `Err`: the attempt's result when there is none.
    async fn smtp_secret(
        &self,
        a: &store::AccountRecord,
        smtp: &store::ServerSettings,
        rejected: Option<&str>,
    ) -> Result<(String, bool), AttemptSecret> {
        if let mail_types::AccountAuth::OAuth2 { .. } = a.auth {
            return match self
                .oauth
                .access_token(self.store.as_ref(), &self.passwords, a, rejected)
                .await
            {
                Ok(t) => Ok((t.value, true)),
                Err(e) => {
                    tracing::warn!(account = %a.id, error = %e, "no access token for SMTP");
                    Err(AttemptSecret(e))
                }
            };
        }
        // The password source decrypts the record's `server` password; the SMTP
        // password is encrypted with the same key.
        let mut as_smtp = a.clone();
        as_smtp.server = smtp.clone();
        match (self.passwords)(&as_smtp) {
            Ok(p) => Ok((p, false)),
            Err(e) => {
                tracing::error!(account = %a.id, error = %e, "cannot decrypt the SMTP password");
                Err(AttemptSecret(crate::oauth::TokenError::Config(
                    "the SMTP password cannot be decrypted".into(),
                )))
            }
        }
    }

    /// What becomes of each finished submission's Email: destroyed once the message was
    /// sent and its Sent copy made (the deferred onSuccessDestroyEmail), or put back into
    /// Drafts with `$draft` when it failed for good or was canceled, whoever had moved
    /// it away; remade from the submission's bytes if the Email is gone. A follow-up that
    /// cannot be done now (no Drafts mailbox yet, a store error) is tried again later.
    async fn drafts(&self) {
        let list = match self
            .store
            .draft_followups(BATCH, &self.holdings.accounts())
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the drafts of finished submissions");
                return;
            }
        };
        for (s, raw) in list {
            let done = match s.draft {
                DraftFate::Destroy => self.destroy_draft(&s).await,
                DraftFate::Restore => self.restore_draft(&s, raw).await,
                _ => true,
            };
            if !done {
                continue;
            }
            let Some(h) = self.holdings.get(s.account) else {
                continue;
            };
            if let Err(e) = h.store.set_draft_done(s.id).await {
                tracing::error!(account = %s.account, submission = s.id, error = %e,
                    "cannot record the draft's follow-up");
            }
        }
    }

    async fn destroy_draft(&self, s: &SubmissionRecord) -> bool {
        let Some(h) = self.holdings.get(s.account) else {
            return false;
        };
        match h.store.destroy_emails(s.account, vec![s.email]).await {
            // A refusal: the Email is gone already (the client destroyed it).
            Ok(_) => true,
            Err(e) => {
                tracing::error!(account = %s.account, submission = s.id, error = %e,
                    "cannot destroy the sent draft; will try again");
                false
            }
        }
    }

    async fn restore_draft(&self, s: &SubmissionRecord, raw: Option<Vec<u8>>) -> bool {
        let account = s.account;
        let Some(h) = self.holdings.get(account) else {
            return false;
        };
        let store = h.store.as_ref();
        let mailboxes = match store.mailboxes(account).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(account = %account, error = %e, "cannot read mailboxes");
                return false;
            }
        };
        let Some(drafts) = mailboxes.iter().find(|m| m.role == Some(Role::Drafts)) else {
            tracing::debug!(account = %account, submission = s.id,
                "no Drafts mailbox yet; the unsent message waits");
            return false;
        };
        let email = match store.emails(account, &[s.email]).await {
            Ok(mut v) => v.pop(),
            Err(e) => {
                tracing::error!(account = %account, error = %e, "cannot read the Email");
                return false;
            }
        };
        let result = match email {
            Some(e) => {
                let in_drafts = e.mailboxes.contains(&drafts.id);
                let is_draft = e.keywords.iter().any(|k| k == "$draft");
                if in_drafts && is_draft {
                    return true;
                }
                // Out of Sent (onSuccessUpdateEmail put it there as if sent), into Drafts.
                let sent: Vec<_> = mailboxes
                    .iter()
                    .filter(|m| m.role == Some(Role::Sent) && e.mailboxes.contains(&m.id))
                    .map(|m| m.id)
                    .collect();
                let patch = EmailPatch {
                    email: e.id,
                    keywords_add: if is_draft {
                        vec![]
                    } else {
                        vec!["$draft".into()]
                    },
                    keywords_remove: vec![],
                    mailboxes_add: if in_drafts { vec![] } else { vec![drafts.id] },
                    mailboxes_remove: sent,
                };
                store
                    .update_emails(account, vec![patch])
                    .await
                    .map(|r| r.into_iter().all(|x| x.is_ok()))
            }
            None => {
                // Destroyed meanwhile: the message is made again from the bytes sent,
                // unless an earlier try got as far as storing it.
                let already = match &s.message_id {
                    Some(m) => self
                        .store
                        .mailbox_has_message_id(drafts.id, m)
                        .await
                        .unwrap_or(false),
                    None => false,
                };
                match raw {
                    _ if already => Ok(true),
                    Some(raw) if !raw.is_empty() => self
                        .store
                        .append_email(
                            account,
                            AppendRequest {
                                mailbox: drafts.id,
                                raw,
                                keywords: vec!["$draft".into(), "$seen".into()],
                                received_at: now(),
                            },
                        )
                        .await
                        .map(|r| r.is_ok()),
                    // Canceled before this version kept the bytes: nothing to restore.
                    _ => Ok(true),
                }
            }
        };
        match result {
            Ok(true) => {
                tracing::info!(account = %account, submission = s.id,
                    "unsent message put back into Drafts");
                true
            }
            Ok(false) => {
                tracing::warn!(account = %account, submission = s.id,
                    "the unsent message could not be put back into Drafts");
                true
            }
            Err(e) => {
                tracing::error!(account = %account, submission = s.id, error = %e,
                    "cannot put the unsent message back into Drafts; will try again");
                false
            }
        }
    }

    /// Puts the copy of each accepted submission into Sent, once: through the write-back
    /// outbox (`append_email`: stored at once, APPENDed exactly once). A Sent mailbox that
    /// already holds the Message-ID (the client moved the draft there, or an earlier
    /// append was cut before it was marked done) gets no second copy.
    async fn sent_copies(&self, account: AccountId) {
        let Some(h) = self.holdings.get(account) else {
            return;
        };
        let store = h.store.as_ref();
        let pending = match store.pending_sent_copies(account).await {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(account = %account, error = %e, "cannot read pending Sent copies");
                return;
            }
        };
        let sent = match store.mailboxes(account).await {
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
                match store.append_email(account, req).await {
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
            if let Err(e) = store.set_sent_copy_done(rec.id).await {
                tracing::error!(account = %account, submission = rec.id, error = %e,
                    "cannot record the Sent copy");
            }
        }
    }
}

/// How long after sending a delivery-status report is still looked for.
const DSN_WINDOW: i64 = 5 * 24 * 3600;
/// A body can be stored some time after its header: a scan looks this far back before
/// the previous one.
const DSN_SLACK: i64 = 600;
/// Reports read per scan.
const DSN_BATCH: usize = 200;

/// Delivery-status reports (RFC 3464) arriving in INBOX, applied to the submissions
/// they name by ENVID. Driven by the store's `EmailDelivery` announcements: an account
/// is looked at (at most every `dsn_scan_interval`) only after new mail arrived, and
/// only the INBOX messages received since the previous look (minus [`DSN_SLACK`]) whose
/// Content-Type says delivery-status are read.
#[derive(Default)]
struct DsnWatch {
    /// Accounts that sent something recently: until when (unix seconds) reports are
    /// looked for.
    until: HashMap<AccountId, i64>,
    dirty: std::collections::HashSet<AccountId>,
    /// Per account: when it was last looked at (instant), and from which receivedAt the
    /// next look starts.
    last: HashMap<AccountId, (Instant, i64)>,
}

impl DsnWatch {
    fn has_pending(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The account sent (or queued) something at `sent`.
    fn watch(&mut self, account: AccountId, sent: i64) {
        let until = sent.saturating_add(DSN_WINDOW);
        let e = self.until.entry(account).or_insert(until);
        *e = (*e).max(until);
    }

    fn watching(&self, account: AccountId) -> bool {
        self.until.get(&account).is_some_and(|u| *u >= now())
    }

    async fn scan_due(&mut self, w: &Worker, interval: Duration) {
        let ready: Vec<AccountId> = self
            .dirty
            .iter()
            .copied()
            .filter(|a| {
                self.last
                    .get(a)
                    .is_none_or(|(at, _)| at.elapsed() >= interval)
            })
            .collect();
        for account in ready {
            self.dirty.remove(&account);
            let from = self.last.get(&account).map(|(_, from)| *from);
            let started = now();
            match scan_account(w, account, from).await {
                Ok(()) => {
                    self.last
                        .insert(account, (Instant::now(), started - DSN_SLACK));
                }
                Err(e) => {
                    tracing::warn!(account = %account, error = %e,
                        "cannot look for delivery-status reports");
                    self.last.insert(
                        account,
                        (Instant::now(), from.unwrap_or(started - DSN_WINDOW)),
                    );
                }
            }
        }
    }
}

/// One look at an account's INBOX for reports about its recent submissions.
async fn scan_account(
    w: &Worker,
    account: AccountId,
    from: Option<i64>,
) -> Result<(), store::Error> {
    let horizon = now() - DSN_WINDOW;
    let watched: Vec<SubmissionRecord> = w
        .store
        .submissions(account)
        .await?
        .into_iter()
        .filter(|s| s.created_at >= horizon && s.delivery.iter().any(|d| d.delivered == "queued"))
        .collect();
    let Some(oldest) = watched.iter().map(|s| s.created_at).min() else {
        return Ok(());
    };
    let Some(inbox) = w
        .store
        .mailboxes(account)
        .await?
        .into_iter()
        .find(|m| m.role == Some(Role::Inbox))
    else {
        return Ok(());
    };
    let since = from.map_or(oldest, |f| f.max(oldest)) - 60;
    let query = EmailQuery {
        filter: Some(EmailFilter::And(vec![
            EmailFilter::Condition(EmailCondition::InMailbox(inbox.id)),
            EmailFilter::Condition(EmailCondition::After(since)),
            EmailFilter::Condition(EmailCondition::Header(
                "Content-Type".into(),
                Some("delivery-status".into()),
            )),
        ])),
        window: Some((0, DSN_BATCH)),
        ..EmailQuery::default()
    };
    let page = w.store.query_emails(account, &query).await?;
    if page.ids.is_empty() {
        return Ok(());
    }
    for email in w.store.emails(account, &page.ids).await? {
        let Some(blob) = email.blob_id.as_deref() else {
            continue;
        };
        if watched
            .iter()
            .any(|s| s.dsn_blob_ids.iter().any(|b| b == blob))
        {
            continue;
        }
        let Some(raw) = w.store.blob(blob).await? else {
            continue;
        };
        let Some(report) = submit::dsn::parse_report(&raw) else {
            continue;
        };
        let Some(s) = report
            .envelope_id
            .as_deref()
            .and_then(|id| watched.iter().find(|s| s.envelope_id() == id))
        else {
            continue;
        };
        let updates: Vec<DeliveryEntry> = report
            .recipients
            .iter()
            .filter(|r| {
                s.rcpt_to
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(&r.recipient))
            })
            .filter_map(|r| {
                let delivered = match r.action.as_str() {
                    "failed" => "no",
                    "delayed" => "queued",
                    "delivered" | "relayed" | "expanded" => "yes",
                    _ => return None,
                };
                Some(DeliveryEntry {
                    email: r.recipient.clone(),
                    smtp_reply: r.smtp_reply(),
                    delivered: delivered.into(),
                    settled: true,
                })
            })
            .collect();
        let Some(h) = w.holdings.get(account) else {
            return Ok(());
        };
        if h.store.apply_dsn(account, s.id, blob, &updates).await? {
            tracing::info!(account = %account, submission = s.id,
                recipients = updates.len(), "delivery-status report applied");
        }
    }
    Ok(())
}

/// The result of an attempt to `attempted` (the recipients not settled before it),
/// per recipient: accepted ones are settled `queued` with the reply to the final dot;
/// a 5xx settles `no`; a transient failure (a 4xx at RCPT, or the whole transaction
/// deferred) leaves the recipient `queued` with that reply, to be retried alone while
/// attempts remain, else `no`; unknown settles `unknown`. A submission with an
/// unsettled recipient goes back to the queue with backoff.
fn classify(
    options: &SubmitOptions,
    s: &SubmissionRecord,
    attempted: &[String],
    outcome: Outcome,
) -> AttemptResult {
    let retry_allowed = s.attempts + 1 < options.max_attempts;
    let mut entries = entries_of(s);
    let find = |recipients: &[RecipientReply], r: &str| -> Option<RecipientReply> {
        recipients
            .iter()
            .find(|x| x.address.eq_ignore_ascii_case(r))
            .cloned()
    };
    let error;
    match &outcome {
        Outcome::Accepted { reply, recipients } => {
            tracing::info!(account = %s.account, submission = s.id, code = reply.code,
                "submission accepted");
            error = String::new();
            for e in entries.iter_mut().filter(|e| is_in(attempted, &e.email)) {
                match find(recipients, &e.email) {
                    Some(x) if !x.accepted() => deferred_or_no(e, &x.reply, retry_allowed),
                    _ => settle(e, "queued", reply.line()),
                }
            }
        }
        Outcome::Refused {
            reply,
            reason,
            transient,
            recipients,
        } => {
            let text = reply
                .as_ref()
                .map(|r| r.line())
                .unwrap_or_else(|| reason.clone());
            error = reason.clone();
            for e in entries.iter_mut().filter(|e| is_in(attempted, &e.email)) {
                match find(recipients, &e.email) {
                    // Its own refusal at RCPT decides for it.
                    Some(x) if !x.accepted() => deferred_or_no(e, &x.reply, retry_allowed),
                    _ if *transient && retry_allowed => {
                        e.delivered = "queued".into();
                        e.smtp_reply = text.clone();
                        e.settled = false;
                    }
                    _ => settle(e, "no", text.clone()),
                }
            }
        }
        Outcome::Unknown { reason } => {
            tracing::warn!(account = %s.account, submission = s.id, reason = %reason,
                "submission outcome unknown; not retried");
            error = reason.clone();
            for e in entries.iter_mut().filter(|e| is_in(attempted, &e.email)) {
                settle(e, "unknown", reason.clone());
            }
        }
    }
    if entries.iter().any(|e| !e.settled) {
        let mut backoff = Backoff::new(options.retry_base, options.retry_max);
        let mut delay = backoff.next_delay();
        for _ in 0..s.attempts.min(64) {
            delay = backoff.next_delay();
        }
        let secs = i64::try_from(delay.as_secs().max(1)).unwrap_or(i64::MAX);
        let waiting = entries.iter().filter(|e| !e.settled).count();
        tracing::warn!(account = %s.account, submission = s.id, reason = %error,
            recipients = waiting, retry_in = secs, "submission deferred");
        AttemptResult::Retry {
            next_attempt: now().saturating_add(secs),
            delivery: entries,
            error,
        }
    } else {
        if entries.iter().any(|e| e.delivered == "no") {
            tracing::warn!(account = %s.account, submission = s.id, reason = %error,
                "submission refused for some or all recipients");
        }
        AttemptResult::Final {
            delivery: entries,
            error,
        }
    }
}

fn is_in(list: &[String], r: &str) -> bool {
    list.iter().any(|x| x.eq_ignore_ascii_case(r))
}

fn settle(e: &mut DeliveryEntry, delivered: &str, reply: String) {
    e.delivered = delivered.into();
    e.smtp_reply = reply;
    e.settled = true;
}

/// A recipient refused at RCPT: a 4xx stays queued for a retry of that recipient alone
/// (while attempts remain); anything else is final.
fn deferred_or_no(e: &mut DeliveryEntry, reply: &submit::Reply, retry_allowed: bool) {
    if (400..500).contains(&reply.code) && retry_allowed {
        e.delivered = "queued".into();
        e.smtp_reply = reply.line();
        e.settled = false;
    } else {
        settle(e, "no", reply.line());
    }
}

/// The stored per-recipient entries, one per envelope recipient (a row written before
/// entries existed for every recipient gets a fresh one).
fn entries_of(s: &SubmissionRecord) -> Vec<DeliveryEntry> {
    s.rcpt_to
        .iter()
        .map(|r| {
            s.delivery
                .iter()
                .find(|d| d.email.eq_ignore_ascii_case(r))
                .cloned()
                .unwrap_or_else(|| DeliveryEntry {
                    email: r.clone(),
                    smtp_reply: String::new(),
                    delivered: "queued".into(),
                    settled: false,
                })
        })
        .collect()
}

/// The recipients the next attempt sends to.
fn unsettled(s: &SubmissionRecord) -> Vec<String> {
    entries_of(s)
        .into_iter()
        .filter(|e| !e.settled)
        .map(|e| e.email)
        .collect()
}

/// Every recipient not settled yet ends `delivered` (those an earlier attempt settled
/// keep their status).
/// Why an account has no SMTP secret now.
pub(crate) struct AttemptSecret(crate::oauth::TokenError);

/// A missing secret as a refused attempt: transient when the token endpoint is only
/// unreachable, final otherwise (the reason says what to do, e.g. sign in again).
fn token_outcome(e: AttemptSecret) -> submit::Outcome {
    submit::Outcome::Refused {
        reply: None,
        reason: e.0.to_string(),
        transient: e.0.is_transient(),
        recipients: Vec::new(),
    }
}

fn final_for_all(s: &SubmissionRecord, delivered: &str, why: &str) -> AttemptResult {
    let mut entries = entries_of(s);
    for e in entries.iter_mut().filter(|e| !e.settled) {
        settle(e, delivered, why.to_owned());
    }
    AttemptResult::Final {
        delivery: entries,
        error: why.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use store::{SentCopy, SubmissionPhase, UndoStatus};
    use submit::Reply;

    fn record(rcpt: &[&str], attempts: u32) -> SubmissionRecord {
        SubmissionRecord {
            id: 1,
            account: AccountId(1),
            identity: 1,
            email: mail_types::EmailId(1),
            thread: mail_types::ThreadId(1),
            envelope_json: "{}".into(),
            mail_from: "a@x.org".into(),
            rcpt_to: rcpt.iter().map(|r| (*r).to_owned()).collect(),
            message_id: None,
            send_at: 0,
            created_at: 0,
            undo_status: UndoStatus::Final,
            phase: SubmissionPhase::Sending,
            attempts,
            next_attempt: 0,
            delivery: vec![],
            last_error: String::new(),
            sent_copy: SentCopy::Append,
            dsn_blob_ids: vec![],
            draft: DraftFate::Keep,
        }
    }

    fn rr(address: &str, code: u16) -> RecipientReply {
        RecipientReply {
            address: address.into(),
            reply: Reply {
                code,
                text: "t".into(),
            },
        }
    }

    fn options() -> SubmitOptions {
        SubmitOptions {
            max_attempts: 3,
            ..SubmitOptions::default()
        }
    }

    fn accepted(recipients: Vec<RecipientReply>) -> Outcome {
        Outcome::Accepted {
            reply: Reply {
                code: 250,
                text: "2.0.0 Ok".into(),
            },
            recipients,
        }
    }

    #[test]
    fn a_deferred_recipient_is_retried_alone_then_given_up() {
        let mut s = record(&["a@y.org", "b@d.test", "c@r.test"], 0);
        let out = accepted(vec![
            rr("a@y.org", 250),
            rr("b@d.test", 451),
            rr("c@r.test", 550),
        ]);
        let AttemptResult::Retry { delivery, .. } = classify(&options(), &s, &unsettled(&s), out)
        else {
            panic!("a deferred recipient must bring a retry");
        };
        assert_eq!(
            delivery
                .iter()
                .map(|d| (d.delivered.as_str(), d.settled, d.smtp_reply.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("queued", true, "250 2.0.0 Ok"),
                ("queued", false, "451 t"),
                ("no", true, "550 t")
            ]
        );
        s.delivery = delivery;
        s.attempts = 1;
        // The retry goes to the deferred recipient only; deferred again, attempts remain.
        assert_eq!(unsettled(&s), vec!["b@d.test".to_owned()]);
        let out = Outcome::Refused {
            reply: Some(Reply {
                code: 451,
                text: "t".into(),
            }),
            reason: "every recipient was refused".into(),
            transient: true,
            recipients: vec![rr("b@d.test", 451)],
        };
        let AttemptResult::Retry { delivery, .. } =
            classify(&options(), &s, &unsettled(&s), out.clone())
        else {
            panic!("still attempts left");
        };
        s.delivery = delivery;
        s.attempts = 2;
        // The last attempt: final, the 451 as its reason; the others unchanged.
        let AttemptResult::Final { delivery, .. } = classify(&options(), &s, &unsettled(&s), out)
        else {
            panic!("attempts are exhausted");
        };
        assert_eq!(delivery[0].smtp_reply, "250 2.0.0 Ok");
        assert_eq!(delivery[0].delivered, "queued");
        assert_eq!(delivery[1].delivered, "no");
        assert_eq!(delivery[1].smtp_reply, "451 t");
        assert!(delivery.iter().all(|d| d.settled));
        assert!(delivery.iter().any(DeliveryEntry::reached_server));
    }

    #[test]
    fn unknown_and_failures_touch_only_the_attempted_recipients() {
        let mut s = record(&["a@y.org", "b@d.test"], 1);
        s.delivery = vec![
            DeliveryEntry {
                email: "a@y.org".into(),
                smtp_reply: "250 ok".into(),
                delivered: "queued".into(),
                settled: true,
            },
            DeliveryEntry {
                email: "b@d.test".into(),
                smtp_reply: "451 t".into(),
                delivered: "queued".into(),
                settled: false,
            },
        ];
        let out = Outcome::Unknown {
            reason: "cut".into(),
        };
        let AttemptResult::Final { delivery, .. } = classify(&options(), &s, &unsettled(&s), out)
        else {
            panic!("unknown is final");
        };
        assert_eq!(delivery[0].smtp_reply, "250 ok");
        assert_eq!(delivery[1].delivered, "unknown");
        // A connection failure before DATA: the whole attempt is retried.
        let s = record(&["a@y.org", "b@y.org"], 0);
        let out = Outcome::Refused {
            reply: None,
            reason: "connect: refused".into(),
            transient: true,
            recipients: vec![],
        };
        let AttemptResult::Retry { delivery, .. } = classify(&options(), &s, &unsettled(&s), out)
        else {
            panic!("transient");
        };
        assert!(
            delivery
                .iter()
                .all(|d| !d.settled && d.delivered == "queued")
        );
        assert!(!delivery.iter().any(DeliveryEntry::reached_server));
        // A 5xx at MAIL FROM: every recipient no.
        let out = Outcome::Refused {
            reply: Some(Reply {
                code: 553,
                text: "no".into(),
            }),
            reason: "MAIL FROM".into(),
            transient: false,
            recipients: vec![],
        };
        let AttemptResult::Final { delivery, .. } = classify(&options(), &s, &unsettled(&s), out)
        else {
            panic!("permanent");
        };
        assert!(
            delivery
                .iter()
                .all(|d| d.delivered == "no" && d.smtp_reply == "553 no")
        );
    }
}
