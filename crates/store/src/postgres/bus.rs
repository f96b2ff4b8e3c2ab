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
//! The payload is small (the account, its new state, the changed types as a number, and,
//! only when the transaction queued work for the engine, the queues as a number): the
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
//!
//! Queued work: an account's outbox and submissions are worked on by the node holding its
//! lease, which need not be the node that queued them. Each notification naming queues
//! rings those of this node's [`WorkSignals`] (its state need not be new: a transaction
//! may queue work and change nothing); after a lost connection every signal is rung once,
//! since work queued meanwhile was not heard, and each worker reads its queue again.

use super::*;
use crate::ObjectType;
use crate::events::{AccountChange, EventBus, PushType, TypeSet};
use crate::wake::{Queue, WorkSignals};
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

/// The queues a transaction gave work to, as a bit set (the payload's fourth field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Queued(u8);

impl Queued {
    pub(super) const NONE: Queued = Queued(0);
    const ALL: [Queue; 2] = [Queue::Outbox, Queue::Submissions];

    fn bit(q: Queue) -> u8 {
        match q {
            Queue::Outbox => 1,
            Queue::Submissions => 2,
        }
    }

    pub(super) fn insert(&mut self, q: Queue) {
        self.0 |= Queued::bit(q);
    }

    pub(super) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(super) fn iter(self) -> impl Iterator<Item = Queue> {
        Queued::ALL
            .into_iter()
            .filter(move |q| self.0 & Queued::bit(*q) != 0)
    }
}

/// Queues the notification of `tx`'s change and queued work, sent when it commits.
pub(super) async fn notify(
    tx: &deadpool_postgres::Transaction<'_>,
    account: AccountId,
    state: i64,
    types: TypeSet,
    queued: Queued,
) -> Result<()> {
    let st = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
    tx.execute(&st, &[&CHANNEL, &payload(account, state, types, queued)])
        .await?;
    Ok(())
}

/// The payload of one committed transaction's notification: `<account>:<state>:<types>`,
/// and `:<queues>` only when it queued work (most commits do not).
fn payload(account: AccountId, state: i64, types: TypeSet, queued: Queued) -> String {
    if queued.is_empty() {
        format!("{}:{state}:{}", account.0, types.bits())
    } else {
        format!("{}:{state}:{}:{}", account.0, types.bits(), queued.0)
    }
}

/// A payload back into a change and its queued work; `None` for anything else.
fn parse(payload: &str) -> Option<(AccountChange, Queued)> {
    let mut parts = payload.split(':');
    let account = parts.next()?.parse().ok()?;
    let state = parts.next()?.parse().ok()?;
    let types = parts.next()?.parse().ok()?;
    let queued = match parts.next() {
        None => Queued::NONE,
        Some(q) => match q.parse::<u8>().ok()? {
            q @ 1..=3 => Queued(q),
            _ => return None,
        },
    };
    if parts.next().is_some() {
        return None;
    }
    let change = AccountChange {
        account: AccountId(account),
        state: State(state),
        types: TypeSet::from_bits(types),
    };
    Some((change, queued))
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
    pub(super) async fn start(
        config: &tokio_postgres::Config,
        pool: Pool,
        work: Arc<WorkSignals>,
    ) -> Result<PgBus> {
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
            work,
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
            let text = payload(change.account, change.state.0, change.types, Queued::NONE);
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
    /// This node's workers, rung for work queued on any node.
    work: Arc<WorkSignals>,
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
        if resync {
            // Work queued while nobody listened was not heard: every worker looks again
            // (after LISTEN, so work queued from now on is heard as well).
            self.work.ring_all();
        }
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
                    wait = (wait * 2).min(MAX_BACKOFF);
                    tracing::warn!(error = %e, retry_in = ?wait, "bus: reconnecting failed");
                }
            }
        }
    }

    fn announce(&mut self, n: &Notification) {
        if n.channel() != CHANNEL {
            return;
        }
        let Some((change, queued)) = parse(n.payload()) else {
            tracing::warn!(payload = n.payload(), "bus: a notification not of ours");
            return;
        };
        // Before the state check: queued work is rung even when the state is not new.
        for q in queued.iter() {
            self.work.queued(change.account, q);
        }
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
        let p = payload(AccountId(7), 42, types, Queued::NONE);
        let change = AccountChange {
            account: AccountId(7),
            state: State(42),
            types,
        };
        assert_eq!(parse(&p), Some((change, Queued::NONE)));
        let mut queued = Queued::NONE;
        queued.insert(Queue::Submissions);
        let p = payload(AccountId(7), 42, types, queued);
        assert_eq!(parse(&p), Some((change, queued)));
        assert_eq!(queued.iter().collect::<Vec<_>>(), [Queue::Submissions]);
        for bad in [
            "",
            "7",
            "7:42",
            "7:42:x",
            "7:42:1:9",
            "a:1:1",
            "7:42:1:0",
            "7:42:1:1:1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}

/// Queued work across nodes, with two stores on one database of the private PostgreSQL.
#[cfg(test)]
mod queued_work {
    use super::super::changelog::ChangeLog;
    use super::*;
    use crate::ChangeOp;
    use tokio::sync::watch;

    /// The longest a notification may take to arrive.
    const WAIT: Duration = Duration::from_secs(30);

    /// A commit through `store`'s change log for `account`: a change when `change`, and
    /// work queued in `queue`.
    async fn commit(store: &PgStore, account: AccountId, change: bool, queue: Option<Queue>) {
        let mut c = store.client().await.expect("connection");
        let tx = c.transaction().await.expect("transaction");
        let mut log = ChangeLog::of(store, account);
        if change {
            log.record(&tx, ObjectType::Mailbox, 1, ChangeOp::Updated)
                .await
                .expect("record");
        }
        if let Some(q) = queue {
            log.queued(q);
        }
        log.commit(tx).await.expect("commit");
    }

    async fn rung(rx: &mut watch::Receiver<u64>, what: &str) {
        tokio::time::timeout(WAIT, rx.changed())
            .await
            .unwrap_or_else(|_| panic!("{what} rung within the wait"))
            .expect("signal open");
    }

    #[tokio::test]
    async fn work_queued_on_one_node_wakes_the_workers_of_another() {
        let pg = testkit::Postgres::shared().expect("private PostgreSQL");
        let url = pg.fresh_database().expect("database");
        let a = PgStore::connect(&url).await.expect("node a");
        let b = PgStore::connect(&url).await.expect("node b");
        // Only the rows the change log needs.
        let row = a
            .client()
            .await
            .expect("connection")
            .query_one(
                "WITH u AS (INSERT INTO app_user (name, password_hash) VALUES ('u', 'h') \
                 RETURNING id) INSERT INTO account (user_id, name, kind, host, port, security, \
                 username, password_enc) SELECT id, 'a', 'imap', 'h', 1, 'none', 'u', '' FROM u \
                 RETURNING id",
                &[],
            )
            .await
            .expect("account");
        let account = AccountId(row.get(0));
        let mut outbox = b.work.outbox(account);
        let mut submissions = b.work.submissions();
        let mut events = b.events().subscribe();

        commit(&a, account, true, Some(Queue::Outbox)).await;
        rung(&mut outbox, "the outbox").await;
        assert_eq!(events.recv().await.expect("change").account, account);
        assert_eq!(submissions.has_changed().ok(), Some(false));

        // Work queued with no change to announce wakes the worker all the same.
        commit(&a, account, false, Some(Queue::Submissions)).await;
        rung(&mut submissions, "the submission queue").await;
        assert_eq!(outbox.has_changed().ok(), Some(false));

        // A commit that queued nothing rings nothing: once node b announced it, neither
        // signal moved.
        commit(&a, account, true, None).await;
        tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("announced within the wait")
            .expect("change");
        assert_eq!(outbox.has_changed().ok(), Some(false));
        assert_eq!(submissions.has_changed().ok(), Some(false));
    }
}
