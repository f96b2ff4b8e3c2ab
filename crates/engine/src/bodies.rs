//! The priority lane: messages fetched now, because someone asked for them, ahead of the
//! background body pass.
//!
//! The sync stores headers first and bodies afterwards, newest first; on a big account the
//! body pass runs for minutes. A request that needs a body not stored yet (the API asks
//! through `jmap_server::BodyFetch`, which the CLI maps onto [`BodyFetcher`]) must not queue
//! behind it, so each account has a lane: a queue of wanted Emails and a worker task with
//! its own IMAP connection (opened on first use, not under the shared connect limit since
//! a person is waiting, logged out after [`IDLE_CLOSE`] without work). The worker takes
//! everything queued at once and fetches it with one EXAMINE and one `UID FETCH` per
//! mailbox, so a list page asking for 50 previews costs one round trip, not 50; an Email
//! already queued or being fetched is not asked twice, its askers share the outcome.
//! Bodies are stored through the normal body path (`MailSync::apply_mailbox_changes`), so
//! the full-text index, the counters and the change log stay right, and the background
//! pass skips them.

use crate::PasswordSource;
use imap_sync::sync::AccountSync;
use imap_sync::{Error, Session};
use mail_types::{AccountId, AccountKind, EmailId, MailboxId, Uid};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{BodySource, Store};
use tokio::sync::{Notify, watch};

/// A lane connection without work this long is logged out and its worker ends.
const IDLE_CLOSE: Duration = Duration::from_secs(120);
/// The longest one batch may take, connecting included (the API waits a little longer, so
/// it hears this answer rather than its own timeout).
const BATCH_DEADLINE: Duration = Duration::from_secs(25);

/// Why a message could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyFetchError {
    /// No copy of it is on the server any more (or the account has no such Email).
    #[error("the message is no longer on its server")]
    Gone,
    /// The server could not be reached, refused us, or did not answer in time.
    #[error("{0}")]
    Unavailable(String),
}

type Outcome = Option<Result<(), BodyFetchError>>;

/// Fetches messages on demand (see the module documentation).
pub struct BodyFetcher {
    store: Arc<dyn Store>,
    passwords: PasswordSource,
    /// OAuth2 accounts log in with an access token from here, like their sync does.
    oauth: Arc<crate::OAuth>,
    lanes: Mutex<HashMap<AccountId, Arc<Lane>>>,
}

/// One account's queue and worker.
struct Lane {
    account: AccountId,
    queue: Mutex<Queue>,
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    /// Asked for, not taken by the worker yet.
    waiting: HashMap<EmailId, watch::Sender<Outcome>>,
    /// In the batch the worker is fetching.
    running: HashMap<EmailId, watch::Receiver<Outcome>>,
    /// Whether a worker task is alive for this lane.
    worker: bool,
}

fn poisoned() -> BodyFetchError {
    BodyFetchError::Unavailable("the fetcher's state is poisoned".into())
}

impl BodyFetcher {
    pub fn new(
        store: Arc<dyn Store>,
        passwords: PasswordSource,
        oauth: Arc<crate::OAuth>,
    ) -> Arc<Self> {
        Arc::new(BodyFetcher {
            store,
            passwords,
            oauth,
            lanes: Mutex::new(HashMap::new()),
        })
    }

    /// Fetches and stores the message of `email` unless it is stored already. The fetch
    /// runs to its end even if the caller stops waiting, so others asking get the result.
    pub async fn fetch(
        self: &Arc<Self>,
        account: AccountId,
        email: EmailId,
    ) -> Result<(), BodyFetchError> {
        let lane = {
            let mut lanes = self.lanes.lock().map_err(|_| poisoned())?;
            lanes
                .entry(account)
                .or_insert_with(|| {
                    Arc::new(Lane {
                        account,
                        queue: Mutex::new(Queue::default()),
                        wake: Notify::new(),
                    })
                })
                .clone()
        };
        let mut rx = {
            let mut q = lane.queue.lock().map_err(|_| poisoned())?;
            let rx = if let Some(tx) = q.waiting.get(&email) {
                tx.subscribe()
            } else if let Some(rx) = q.running.get(&email) {
                rx.clone()
            } else {
                let (tx, rx) = watch::channel(None);
                q.waiting.insert(email, tx);
                rx
            };
            if !q.worker {
                q.worker = true;
                tokio::spawn(self.clone().work(lane.clone()));
            }
            rx
        };
        lane.wake.notify_one();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Ok(())),
            Err(_) => Err(BodyFetchError::Unavailable(
                "the fetch was abandoned".into(),
            )),
        }
    }

    /// The lane's worker: takes what is queued, fetches it, answers; ends after
    /// `IDLE_CLOSE` without work (each round waits at most that long).
    async fn work(self: Arc<Self>, lane: Arc<Lane>) {
        let account = lane.account;
        let mut session: Option<Session> = None;
        loop {
            let batch: Vec<(EmailId, watch::Sender<Outcome>)> = {
                let Ok(mut q) = lane.queue.lock() else {
                    return;
                };
                let batch: Vec<_> = q.waiting.drain().collect();
                for (id, tx) in &batch {
                    q.running.insert(*id, tx.subscribe());
                }
                batch
            };
            if batch.is_empty() {
                let woken = tokio::time::timeout(IDLE_CLOSE, lane.wake.notified())
                    .await
                    .is_ok();
                if woken {
                    continue;
                }
                // Idle: end, unless something was queued meanwhile (then the next round
                // takes it; `fetch` starts no second worker while this flag is set).
                let idle = match lane.queue.lock() {
                    Ok(mut q) => {
                        let idle = q.waiting.is_empty();
                        if idle {
                            q.worker = false;
                        }
                        idle
                    }
                    Err(_) => true,
                };
                if idle {
                    if let Some(s) = session.take() {
                        s.logout().await;
                    }
                    return;
                }
                continue;
            }
            let ids: Vec<EmailId> = batch.iter().map(|(id, _)| *id).collect();
            let started = std::time::Instant::now();
            let outcomes = match tokio::time::timeout(
                BATCH_DEADLINE,
                self.fetch_batch(&mut session, account, &ids),
            )
            .await
            {
                Ok(o) => o,
                Err(_) => {
                    // The connection is in an unknown state.
                    session = None;
                    HashMap::new()
                }
            };
            tracing::debug!(account = %account, emails = ids.len(),
                took_ms = started.elapsed().as_millis() as u64, "fetched on demand");
            let Ok(mut q) = lane.queue.lock() else {
                return;
            };
            for (id, tx) in batch {
                let r = outcomes.get(&id).cloned().unwrap_or_else(|| {
                    Err(BodyFetchError::Unavailable(
                        "the server did not answer in time".into(),
                    ))
                });
                if let Err(e) = &r {
                    tracing::warn!(account = %account, email = id.0, error = %e,
                        "fetching a message on demand failed");
                }
                q.running.remove(&id);
                let _ = tx.send(Some(r));
            }
        }
    }

    /// Fetches what `ids` lack; one outcome per id.
    async fn fetch_batch(
        &self,
        session: &mut Option<Session>,
        account: AccountId,
        ids: &[EmailId],
    ) -> HashMap<EmailId, Result<(), BodyFetchError>> {
        let mut out = HashMap::new();
        let unavailable = |e: &dyn std::fmt::Display| BodyFetchError::Unavailable(e.to_string());
        let fail_all = |out: &mut HashMap<_, _>, e: BodyFetchError| {
            for id in ids {
                out.entry(*id).or_insert_with(|| Err(e.clone()));
            }
        };
        let record = match self.store.account(account).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                fail_all(&mut out, BodyFetchError::Gone);
                return out;
            }
            Err(e) => {
                fail_all(&mut out, unavailable(&e));
                return out;
            }
        };
        let views = match self.store.emails(account, ids).await {
            Ok(v) => v,
            Err(e) => {
                fail_all(&mut out, unavailable(&e));
                return out;
            }
        };
        let mut todo: Vec<(EmailId, Vec<BodySource>)> = Vec::new();
        let sizes: HashMap<EmailId, u64> =
            views.iter().map(|v| (v.id, u64::from(v.size))).collect();
        for v in views {
            if v.blob_id.is_some() {
                out.insert(v.id, Ok(()));
                continue;
            }
            if record.kind == AccountKind::Pop3 {
                // POP3 retrieves whole messages: one without a body cannot be asked for
                // again (RFC 1939 names messages by number only within a session).
                out.insert(v.id, Err(BodyFetchError::Gone));
                continue;
            }
            match self.store.body_sources(account, v.id).await {
                Ok(s) if s.is_empty() => {
                    out.insert(v.id, Err(BodyFetchError::Gone));
                }
                Ok(s) => todo.push((v.id, s)),
                Err(e) => {
                    out.insert(v.id, Err(unavailable(&e)));
                }
            }
        }
        // Not in the account (any more).
        fail_all(&mut out, BodyFetchError::Gone);
        if todo.is_empty() {
            return out;
        }
        // A person asking may use the whole daily budget (the background pass stops at
        // its share), but not more: past it the provider would lock the account. Sizes
        // (RFC822.SIZE) decide before the FETCH, so a batch cannot overshoot it.
        let day = mail_types::budget::utc_day(unix_now());
        let budget = match self.store.download_budget(account, day).await {
            Ok(b) => b,
            Err(e) => {
                for (id, _) in &todo {
                    out.insert(*id, Err(unavailable(&e)));
                }
                return out;
            }
        };
        if let Some(limit) = budget.limit() {
            let mut left = limit.saturating_sub(budget.used);
            todo.retain(|(id, _)| {
                let size = sizes.get(id).copied().unwrap_or(0);
                if size <= left {
                    left -= size;
                    return true;
                }
                out.insert(
                    *id,
                    Err(BodyFetchError::Unavailable(format!(
                        "the account's daily download budget is used up ({} of {} MB \
                         today); messages not stored yet can be opened again after 00:00 UTC",
                        budget.used / 1_000_000,
                        budget.limit_mb.unwrap_or(0)
                    ))),
                );
                false
            });
            if todo.is_empty() {
                return out;
            }
        }
        // A kept connection may have been dropped by the server meanwhile: a failure on
        // it is retried once on a new one.
        let mut retry = session.is_some();
        loop {
            let s = match session {
                Some(s) => s,
                None => match self.connect(&record).await {
                    Ok(s) => session.insert(s),
                    Err(e) => {
                        for (id, _) in &todo {
                            out.insert(*id, Err(e.clone()));
                        }
                        return out;
                    }
                },
            };
            let fetched = self.fetch_sources(s, account, &mut todo, &mut out).await;
            // Counted whatever the outcome: the bytes came all the same.
            if let Err(e) = AccountSync::new(self.store.clone(), account)
                .record_download(s)
                .await
            {
                tracing::warn!(account = %account, error = %e, "cannot count downloaded bytes");
            }
            match fetched {
                Ok(()) => break,
                Err(Error::Store(e)) => {
                    for (id, _) in &todo {
                        out.insert(*id, Err(unavailable(&e)));
                    }
                    break;
                }
                Err(e) => {
                    *session = None;
                    if !retry {
                        for (id, _) in &todo {
                            out.insert(*id, Err(unavailable(&e)));
                        }
                        break;
                    }
                    retry = false;
                }
            }
        }
        out
    }

    /// Tries each Email's copies in turn (the first copy of every Email, grouped by
    /// mailbox, then the second of those not found...); `todo` keeps what is unsettled.
    async fn fetch_sources(
        &self,
        s: &mut Session,
        account: AccountId,
        todo: &mut Vec<(EmailId, Vec<BodySource>)>,
        out: &mut HashMap<EmailId, Result<(), BodyFetchError>>,
    ) -> Result<(), Error> {
        let sync = AccountSync::new(self.store.clone(), account);
        // Bounded by the most copies one Email has.
        let rounds = todo.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
        for round in 0..rounds {
            let mut by_mailbox: BTreeMap<MailboxId, (BodySource, Vec<(Uid, EmailId)>)> =
                BTreeMap::new();
            for (id, sources) in todo.iter() {
                if let Some(src) = sources.get(round) {
                    by_mailbox
                        .entry(src.mailbox)
                        .or_insert_with(|| (src.clone(), Vec::new()))
                        .1
                        .push((src.uid, *id));
                }
            }
            for (src, wanted) in by_mailbox.values() {
                let uids: Vec<Uid> = wanted.iter().map(|(u, _)| *u).collect();
                let Some(stored) = sync.fetch_bodies_now(s, src, &uids).await? else {
                    continue;
                };
                for (uid, id) in wanted {
                    if stored.contains(uid) {
                        out.insert(*id, Ok(()));
                    }
                }
            }
            todo.retain(|(id, _)| !out.contains_key(id));
        }
        for (id, _) in todo.drain(..) {
            out.insert(id, Err(BodyFetchError::Gone));
        }
        Ok(())
    }

    async fn connect(&self, record: &store::AccountRecord) -> Result<Session, BodyFetchError> {
        let auth = crate::account::Auth {
            store: self.store.as_ref(),
            passwords: &self.passwords,
            oauth: &self.oauth,
        };
        auth.connect(record, &crate::account::endpoint(record))
            .await
            .map(|(session, _renew)| session)
            .map_err(|e| BodyFetchError::Unavailable(e.to_string()))
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
