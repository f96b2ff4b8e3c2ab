//! The event bus across nodes on PostgreSQL's LISTEN/NOTIFY (docs/design/postgres.md,
//! "The bus").
//!
//! Sending: the change log's commit issues one `pg_notify('tidings', '<account>:<state>:<types>')`
//! inside the committing transaction, and only when it changed something (see
//! `changelog.rs`). Inside, not after: PostgreSQL queues the notification with the
//! transaction and delivers it at the commit and never for a rollback, so no node can
//! crash between its commit and its announcement. Few: every committing transaction that
//! notified takes one database-wide lock on the notification queue at commit, so those
//! transactions commit one at a time: one NOTIFY per write transaction, none otherwise.
//! The payload is small (the account, its new state, the changed types as a number): the
//! change log stays the truth, a consumer reads from it what changed.
//!
//! Receiving: one dedicated connection per node, outside the pool, runs `LISTEN tidings`
//! and turns each notification, its own node's included, into an [`AccountChange`] on a
//! local broadcast channel. It remembers the last state it announced per account; when
//! the connection is lost (the backend was terminated, the server restarted) it connects
//! again with a backoff capped at [`MAX_BACKOFF`], listens again, reads every account's
//! state and announces, for each account whose state moved meanwhile, one change with the
//! types the change log holds since the state last announced. So a consumer misses
//! nothing; the notifications queued while it read are dropped when their state is not
//! past the one it announced.

use super::*;
use crate::ObjectType;
use crate::events::{AccountChange, EventBus, PushType, TypeSet};
use mail_types::{AccountId, State};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, Notification};

/// The channel every node listens on (NOTIFY is per database: one store, one channel).
const CHANNEL: &str = "tidings";
/// The listening connection's `application_name`, to tell it apart in `pg_stat_activity`.
pub(super) const APPLICATION_NAME: &str = "tidings-bus";
/// The first wait before connecting again, doubled after each failed try.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two tries: a restarted server is heard within this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Changes buffered for the slowest local receiver before it lags.
const CAPACITY: usize = 4096;

/// Queues the notification of `tx`'s change, sent when it commits.
pub(super) async fn notify(
    tx: &deadpool_postgres::Transaction<'_>,
    account: AccountId,
    state: i64,
    types: TypeSet,
) -> Result<()> {
    let st = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
    tx.execute(&st, &[&CHANNEL, &payload(account, state, types)])
        .await?;
    Ok(())
}

/// The payload of one committed transaction's notification.
fn payload(account: AccountId, state: i64, types: TypeSet) -> String {
    format!("{}:{state}:{}", account.0, types.bits())
}

/// `<account>:<state>:<types>` back into a change; `None` for anything else.
fn parse(payload: &str) -> Option<AccountChange> {
    let mut parts = payload.split(':');
    let account = parts.next()?.parse().ok()?;
    let state = parts.next()?.parse().ok()?;
    let types = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(AccountChange {
        account: AccountId(account),
        state: State(state),
        types: TypeSet::from_bits(types),
    })
}

/// The bus of one node on one PostgreSQL database.
pub struct PgBus {
    tx: broadcast::Sender<AccountChange>,
    pool: Pool,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgBus {
    fn drop(&mut self) {
        // The last store handle is gone: nobody can subscribe any more.
        self.listener.abort();
    }
}

impl PgBus {
    /// Opens the listening connection and returns once it listens: a change committed
    /// after this returns is announced.
    pub(super) async fn start(config: &tokio_postgres::Config, pool: Pool) -> Result<PgBus> {
        let mut config = config.clone();
        config
            .application_name(APPLICATION_NAME)
            // A peer that vanished without closing (a cut network) is noticed too.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        let (tx, _) = broadcast::channel(CAPACITY);
        let mut listener = Listener {
            config,
            tx: tx.clone(),
            seen: HashMap::new(),
        };
        let session = listener.open(false).await?;
        let listener = tokio::spawn(listener.run(session));
        Ok(PgBus { tx, pool, listener })
    }
}

impl EventBus for PgBus {
    /// For a writer outside this store's change log (whose commits notify by themselves):
    /// the NOTIFY goes out right after, from a pooled connection, without blocking.
    fn publish(&self, change: AccountChange) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(account = %change.account, "bus: no runtime to publish on");
            return;
        };
        let pool = self.pool.clone();
        runtime.spawn(async move {
            let text = payload(change.account, change.state.0, change.types);
            let sent = async {
                let c = pool.get().await?;
                c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &text])
                    .await?;
                Ok::<_, Error>(())
            };
            if let Err(e) = sent.await {
                // Not the writer's failure: consumers heal a lost announcement by
                // re-reading (EventBus::publish).
                tracing::warn!(account = %change.account, error = %e, "bus: publish failed");
            }
        });
    }

    fn subscribe(&self) -> broadcast::Receiver<AccountChange> {
        self.tx.subscribe()
    }
}

/// An open listening connection: its notifications, and the task driving it.
struct Session {
    // Kept for as long as the session: dropping the client would end the connection.
    _client: tokio_postgres::Client,
    notifications: mpsc::UnboundedReceiver<Notification>,
    driver: tokio::task::JoinHandle<std::result::Result<(), tokio_postgres::Error>>,
}

struct Listener {
    config: tokio_postgres::Config,
    tx: broadcast::Sender<AccountChange>,
    /// The last state announced per account (or found at the start).
    seen: HashMap<i64, i64>,
}

impl Listener {
    /// Connects and listens, then reads every account's state: at the start to know where
    /// each is, after a lost connection to announce what moved meanwhile (`resync`).
    async fn open(&mut self, resync: bool) -> Result<Session> {
        let (client, mut connection) = self.config.connect(tokio_postgres::NoTls).await?;
        let (sender, notifications) = mpsc::unbounded_channel();
        // The connection does its work when polled; polling it through `poll_message`
        // hands out the notifications it reads.
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if sender.send(n).is_err() {
                            return Ok(());
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                }
            }
        });
        // LISTEN before reading the states: a commit after the read is then notified, one
        // before it is in the read.
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        let rows = client
            .query("SELECT id, state, delivery_state FROM account", &[])
            .await?;
        for row in rows {
            let (id, state, delivered): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
            let last = self.seen.get(&id).copied().unwrap_or(0);
            if state <= last {
                continue;
            }
            if resync {
                let mut types = changed_types(&client, id, last).await?;
                if delivered > last {
                    types.insert(PushType::EmailDelivery);
                }
                tracing::info!(
                    account = id,
                    from = last,
                    to = state,
                    "bus: announcing what was missed"
                );
                let _ = self.tx.send(AccountChange {
                    account: AccountId(id),
                    state: State(state),
                    types,
                });
            }
            // Only once announced: a resync that fails part way is made again, and
            // announces the accounts it had not reached.
            self.seen.insert(id, state);
        }
        Ok(Session {
            _client: client,
            notifications,
            driver,
        })
    }

    /// Announces the notifications of `session` until its connection is lost, then opens
    /// another; runs until the bus is dropped (which aborts it).
    async fn run(mut self, first: Session) {
        let mut session = first;
        loop {
            while let Some(n) = session.notifications.recv().await {
                self.announce(&n);
            }
            match session.driver.await {
                Ok(Ok(())) => tracing::warn!("bus: the listening connection closed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "bus: the listening connection failed"),
                Err(e) => tracing::warn!(error = %e, "bus: the listening task failed"),
            }
            session = self.reconnect().await;
        }
    }

    /// Opens a session again, waiting longer after each failure, up to [`MAX_BACKOFF`].
    async fn reconnect(&mut self) -> Session {
        let mut wait = MIN_BACKOFF;
        loop {
            tokio::time::sleep(wait).await;
            match self.open(true).await {
                Ok(s) => {
                    tracing::info!("bus: listening again");
                    return s;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "bus: reconnecting failed");
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn announce(&mut self, n: &Notification) {
        if n.channel() != CHANNEL {
            return;
        }
        let Some(change) = parse(n.payload()) else {
            tracing::warn!(payload = n.payload(), "bus: a notification not of ours");
            return;
        };
        let last = self.seen.entry(change.account.0).or_insert(0);
        // Already announced by a resync that read a later state.
        if change.state.0 <= *last {
            return;
        }
        *last = change.state.0;
        // No receiver is not an error: nobody is connected.
        let _ = self.tx.send(change);
    }
}

/// The types the change log holds for `account` after state `since`.
pub(super) async fn changed_types(
    client: &tokio_postgres::Client,
    account: i64,
    since: i64,
) -> Result<TypeSet> {
    let rows = client
        .query(
            "SELECT DISTINCT type FROM change WHERE account_id = $1 AND state > $2",
            &[&account, &since],
        )
        .await?;
    let mut types = TypeSet::EMPTY;
    for row in rows {
        let t: String = row.get(0);
        let object =
            ObjectType::from_name(&t).ok_or_else(|| Error::Corrupt(format!("change type {t}")))?;
        types.insert(object.into());
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let types: TypeSet = [PushType::Email, PushType::Quota].into_iter().collect();
        let p = payload(AccountId(7), 42, types);
        assert_eq!(
            parse(&p),
            Some(AccountChange {
                account: AccountId(7),
                state: State(42),
                types
            })
        );
        for bad in ["", "7", "7:42", "7:42:x", "7:42:1:9", "a:1:1"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
