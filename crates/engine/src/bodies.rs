//! The priority lane: one message fetched now, because someone asked for it, ahead of the
//! background body pass.
//!
//! The sync stores headers first and bodies afterwards, newest first; on a big account the
//! body pass runs for minutes. A request that needs a body not stored yet (the API asks
//! through `api::BodyFetch`, which the CLI maps onto [`BodyFetcher`]) must not queue
//! behind it, so the lane has its own IMAP connection per account (opened on first use,
//! not under the shared connect limit since a person is waiting, closed after
//! [`IDLE_CLOSE`]). Requests of one account take turns on it; concurrent requests for the
//! same Email share one fetch. What is fetched is stored through the normal body path
//! (`Store::apply_mailbox_changes` with the body), so the full-text index, the counters
//! and the change log stay right, and the background pass skips it.

use crate::PasswordSource;
use imap_sync::sync::AccountSync;
use imap_sync::{Credentials, Error, Session};
use mail_types::{AccountId, AccountKind, EmailId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use tokio::sync::watch;

/// A lane connection unused this long is logged out.
const IDLE_CLOSE: Duration = Duration::from_secs(120);
/// The longest one fetch may take, connecting included (the API waits a little longer, so
/// it hears this answer rather than its own timeout).
const FETCH_DEADLINE: Duration = Duration::from_secs(25);

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

/// Fetches single messages on demand (see the module documentation).
pub struct BodyFetcher {
    store: Arc<dyn Store>,
    passwords: PasswordSource,
    lanes: Mutex<HashMap<AccountId, Arc<Lane>>>,
    /// The fetch under way per Email: later askers wait for its outcome.
    inflight: Arc<Mutex<HashMap<(AccountId, EmailId), watch::Receiver<Outcome>>>>,
}

/// One account's connection.
struct Lane {
    session: tokio::sync::Mutex<Option<Session>>,
    last_used: Mutex<tokio::time::Instant>,
    reaper: Mutex<bool>,
}

impl BodyFetcher {
    pub fn new(store: Arc<dyn Store>, passwords: PasswordSource) -> Arc<Self> {
        Arc::new(BodyFetcher {
            store,
            passwords,
            lanes: Mutex::new(HashMap::new()),
            inflight: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Fetches and stores the message of `email` unless it is stored already. Runs to its
    /// end even if the caller stops waiting, so others asking for it get the result.
    pub async fn fetch(
        self: &Arc<Self>,
        account: AccountId,
        email: EmailId,
    ) -> Result<(), BodyFetchError> {
        let mut rx = {
            let mut inflight = self
                .inflight
                .lock()
                .map_err(|_| BodyFetchError::Unavailable("fetcher poisoned".into()))?;
            match inflight.get(&(account, email)) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert((account, email), rx.clone());
                    let (me, inflight) = (self.clone(), self.inflight.clone());
                    tokio::spawn(async move {
                        let r = match tokio::time::timeout(
                            FETCH_DEADLINE,
                            me.fetch_now(account, email),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => Err(BodyFetchError::Unavailable(
                                "the server did not answer in time".into(),
                            )),
                        };
                        if let Err(e) = &r {
                            tracing::warn!(account = %account, email = email.0, error = %e,
                                "fetching a message on demand failed");
                        }
                        if let Ok(mut m) = inflight.lock() {
                            m.remove(&(account, email));
                        }
                        let _ = tx.send(Some(r));
                    });
                    rx
                }
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Ok(())),
            Err(_) => Err(BodyFetchError::Unavailable(
                "the fetch was abandoned".into(),
            )),
        }
    }

    fn lane(&self, account: AccountId) -> Result<Arc<Lane>, BodyFetchError> {
        let mut lanes = self
            .lanes
            .lock()
            .map_err(|_| BodyFetchError::Unavailable("fetcher poisoned".into()))?;
        Ok(lanes
            .entry(account)
            .or_insert_with(|| {
                Arc::new(Lane {
                    session: tokio::sync::Mutex::new(None),
                    last_used: Mutex::new(tokio::time::Instant::now()),
                    reaper: Mutex::new(false),
                })
            })
            .clone())
    }

    async fn fetch_now(&self, account: AccountId, email: EmailId) -> Result<(), BodyFetchError> {
        let unavailable = |e: store::Error| BodyFetchError::Unavailable(format!("store: {e}"));
        let Some(view) = self
            .store
            .emails(account, &[email])
            .await
            .map_err(unavailable)?
            .into_iter()
            .next()
        else {
            return Err(BodyFetchError::Gone);
        };
        if view.blob_id.is_some() {
            return Ok(());
        }
        let record = self
            .store
            .account(account)
            .await
            .map_err(unavailable)?
            .ok_or(BodyFetchError::Gone)?;
        if record.kind == AccountKind::Pop3 {
            // POP3 retrieves whole messages; one without a body cannot be asked for again
            // (RFC 1939 has no per-message fetch we could trust after a deletion).
            return Err(BodyFetchError::Gone);
        }
        let sources = self
            .store
            .body_sources(account, email)
            .await
            .map_err(unavailable)?;
        if sources.is_empty() {
            return Err(BodyFetchError::Gone);
        }
        let lane = self.lane(account)?;
        let mut slot = lane.session.lock().await;
        // A kept connection may have been dropped by the server meanwhile: one failure on
        // it is retried once on a new one.
        let mut attempts = if slot.is_some() { 2 } else { 1 };
        let result = loop {
            attempts -= 1;
            let session = match slot.as_mut() {
                Some(s) => s,
                None => {
                    let password = (self.passwords)(&record).map_err(|e| {
                        BodyFetchError::Unavailable(format!("stored password unusable: {e}"))
                    })?;
                    let creds = Credentials {
                        username: record.server.username.clone(),
                        password,
                    };
                    let s = Session::connect(&crate::account::endpoint(&record), &creds)
                        .await
                        .map_err(|e| BodyFetchError::Unavailable(e.to_string()))?;
                    slot.insert(s)
                }
            };
            let sync = AccountSync::new(self.store.clone(), account);
            match sync.fetch_body(session, &sources).await {
                Ok(true) => break Ok(()),
                Ok(false) => break Err(BodyFetchError::Gone),
                Err(Error::Store(e)) => break Err(unavailable(e)),
                Err(e) => {
                    *slot = None;
                    if attempts == 0 {
                        break Err(BodyFetchError::Unavailable(e.to_string()));
                    }
                }
            }
        };
        drop(slot);
        self.touch(&lane);
        result
    }

    /// Marks the lane used, and makes sure something closes it once idle.
    fn touch(&self, lane: &Arc<Lane>) {
        if let Ok(mut t) = lane.last_used.lock() {
            *t = tokio::time::Instant::now();
        }
        let Ok(mut armed) = lane.reaper.lock() else {
            return;
        };
        if *armed {
            return;
        }
        *armed = true;
        let lane = lane.clone();
        tokio::spawn(async move {
            // Bounded: each round either closes the lane or waits for its next idle end.
            loop {
                let since = lane
                    .last_used
                    .lock()
                    .map(|t| t.elapsed())
                    .unwrap_or(IDLE_CLOSE);
                if since < IDLE_CLOSE {
                    tokio::time::sleep(IDLE_CLOSE - since).await;
                    continue;
                }
                let mut slot = lane.session.lock().await;
                let idle = lane
                    .last_used
                    .lock()
                    .map(|t| t.elapsed() >= IDLE_CLOSE)
                    .unwrap_or(true);
                if !idle {
                    continue;
                }
                if let Some(s) = slot.take() {
                    s.logout().await;
                }
                if let Ok(mut armed) = lane.reaper.lock() {
                    *armed = false;
                }
                break;
            }
        });
    }
}
