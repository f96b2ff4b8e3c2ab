//! Push: the hub that turns the store's committed changes into StateChange messages for
//! the connections following them (WebSocket, RFC 8887; EventSource, RFC 8620 7.3).
//!
//! One dispatcher task reads the store's event bus and, for each change, touches only the
//! connections that follow that account: it merges the change into each connection's
//! [`Slot`] (per account, the latest state wins and the types add up) and wakes it. A slot
//! holds at most one entry per account of the user, so a connection that reads slowly
//! costs bounded memory and never holds up the dispatcher, the other connections or the
//! writer; it just gets one coalesced StateChange when it is ready. When the dispatcher
//! itself falls behind the bus (`Lagged`), every slot is marked for a resync: each
//! connection re-reads its accounts' states from the store and the change log tells which
//! types moved, so nothing is lost.
//!
//! A push state (`pushState` on the WebSocket, the event `id` on EventSource) encodes
//! the account states the client has been told, `a1:17,a2:5`. A client that comes back
//! with it gets at once one StateChange for every account that moved since, with the types
//! the change log names.

pub mod subscription;
pub mod vapid;

use crate::Principal;
use jmap_proto::StateChange;
use mail_types::{AccountId, State, UserId};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use store::events::{AccountChange, PushType, TypeSet};
use tokio::sync::{Notify, broadcast};

/// Limits of the push connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// WebSocket and EventSource connections one user may hold at once.
    pub connections_per_user: usize,
    /// A WebSocket ping is sent after this long without any frame from the client; a
    /// connection silent for three of these is closed.
    pub ws_ping: Duration,
    /// A frame that cannot be written within this is a dead (or hopelessly slow)
    /// connection: it is closed.
    pub write_timeout: Duration,
    /// PushSubscription URLs may be `http://` (tests, development); https only otherwise.
    pub subscription_allow_http: bool,
    /// PushSubscription URLs may reach loopback, private and link-local addresses (tests,
    /// an in-house push service); public addresses only otherwise (SSRF guard).
    pub subscription_allow_private: bool,
    /// The server's VAPID key (RFC 8292): every Web Push POST is signed with it, and the
    /// Session offers its public key (RFC 9749). `None`: pushes go unsigned.
    pub vapid: Option<Arc<vapid::Vapid>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_per_user: 100,
            ws_ping: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            subscription_allow_http: false,
            subscription_allow_private: false,
            vapid: None,
        }
    }
}

/// What is waiting for one connection.
#[derive(Default)]
struct Pending {
    changes: HashMap<AccountId, (State, TypeSet)>,
    resync: bool,
}

/// One connection's coalescing mailbox.
pub struct Slot {
    pending: Mutex<Pending>,
    notify: Notify,
}

impl Slot {
    fn merge(&self, c: &AccountChange) {
        if let Ok(mut p) = self.pending.lock() {
            let e = p
                .changes
                .entry(c.account)
                .or_insert((c.state, TypeSet::EMPTY));
            e.0 = State(e.0.0.max(c.state.0));
            e.1 = e.1.union(c.types);
        }
        self.notify.notify_one();
    }

    fn mark_resync(&self) {
        if let Ok(mut p) = self.pending.lock() {
            p.resync = true;
        }
        self.notify.notify_one();
    }

    fn take(&self) -> Pending {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

/// The slots following each user's accounts, with their registration ids.
type Followers = HashMap<UserId, Vec<(u64, Arc<Slot>)>>;

/// The registry of connections, by user. A connection follows every account of its user,
/// including accounts added while it is connected: a change is routed by the account's
/// owner, not by a list of accounts taken when the connection started.
pub struct Hub {
    slots: Mutex<Followers>,
    /// Who owns each account seen so far. An account never changes owner, and account ids
    /// are never reused (`AUTOINCREMENT`), so an entry never goes stale.
    owners: Mutex<HashMap<AccountId, UserId>>,
    users: Mutex<HashMap<UserId, usize>>,
    next: AtomicU64,
    limits: Limits,
    /// The bus receiver until the dispatcher task takes it (it needs a runtime; the
    /// receiver buffers meanwhile).
    bus: Mutex<Option<broadcast::Receiver<AccountChange>>>,
    /// The delivery tasks of push subscriptions.
    pub(crate) subscriptions: subscription::Subscriptions,
}

impl Hub {
    pub fn new(store: &dyn Store, limits: Limits) -> Arc<Self> {
        Arc::new(Hub {
            slots: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            subscriptions: subscription::Subscriptions::new(
                limits.subscription_allow_http,
                limits.subscription_allow_private,
            ),
            limits,
            bus: Mutex::new(Some(store.events().subscribe())),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether `user` has a live push connection (a WebSocket with push enabled, an
    /// EventSource) right now: the engine watches such users' accounts more eagerly.
    pub fn has_followers(&self, user: UserId) -> bool {
        self.slots
            .lock()
            .is_ok_and(|s| s.get(&user).is_some_and(|l| !l.is_empty()))
    }

    /// Every user with a live push connection right now (see [`Hub::has_followers`]).
    pub fn followed_users(&self) -> Vec<UserId> {
        self.slots.lock().map_or_else(
            |_| Vec::new(),
            |s| {
                s.iter()
                    .filter(|(_, l)| !l.is_empty())
                    .map(|(u, _)| *u)
                    .collect()
            },
        )
    }

    /// Starts the dispatcher on the first connection.
    fn ensure_started(self: &Arc<Self>, store: &Arc<dyn Store>) {
        let rx = self.bus.lock().ok().and_then(|mut b| b.take());
        if let Some(rx) = rx {
            let hub = Arc::downgrade(self);
            tokio::spawn(dispatch(hub, rx, store.clone()));
        }
    }

    /// Counts a connection of `user` against the limit; None when the user has too many.
    pub fn connect(self: &Arc<Self>, user: UserId) -> Option<Connection> {
        let mut users = self.users.lock().ok()?;
        let n = users.entry(user).or_insert(0);
        if *n >= self.limits.connections_per_user {
            return None;
        }
        *n += 1;
        Some(Connection {
            hub: self.clone(),
            user,
        })
    }

    fn register(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        user: UserId,
        accounts: &[AccountId],
    ) -> Registration {
        self.ensure_started(store);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            pending: Mutex::new(Pending::default()),
            notify: Notify::new(),
        });
        if let Ok(mut owners) = self.owners.lock() {
            for a in accounts {
                owners.insert(*a, user);
            }
        }
        if let Ok(mut slots) = self.slots.lock() {
            slots.entry(user).or_default().push((id, slot.clone()));
        }
        Registration {
            hub: self.clone(),
            id,
            user,
            slot,
        }
    }

    fn owner(&self, account: AccountId) -> Option<UserId> {
        self.owners.lock().ok()?.get(&account).copied()
    }

    fn deliver(&self, user: UserId, c: &AccountChange) {
        if let Ok(slots) = self.slots.lock()
            && let Some(list) = slots.get(&user)
        {
            for (_, s) in list {
                s.merge(c);
            }
        }
    }

    fn resync_all(&self) {
        if let Ok(slots) = self.slots.lock() {
            for list in slots.values() {
                for (_, s) in list {
                    s.mark_resync();
                }
            }
        }
    }
}

async fn dispatch(
    hub: std::sync::Weak<Hub>,
    mut rx: broadcast::Receiver<AccountChange>,
    store: Arc<dyn Store>,
) {
    loop {
        let msg = rx.recv().await;
        let Some(hub) = hub.upgrade() else { return };
        match msg {
            Ok(c) => {
                let owner = match hub.owner(c.account) {
                    Some(u) => Some(u),
                    // First change of an account no connection has seen (added since, or
                    // of a user with no connection): one lookup, then cached.
                    None => match store.account(c.account).await {
                        Ok(Some(a)) => {
                            if let Ok(mut owners) = hub.owners.lock() {
                                owners.insert(a.id, a.user);
                            }
                            Some(a.user)
                        }
                        Ok(None) => None,
                        Err(e) => {
                            tracing::warn!(account = %c.account, error = %e, "push: account owner unreadable; resyncing clients");
                            hub.resync_all();
                            None
                        }
                    },
                };
                if let Some(user) = owner {
                    hub.deliver(user, &c);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "push dispatcher fell behind; resyncing clients");
                hub.resync_all();
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// One counted connection of a user; dropping it frees its place.
pub struct Connection {
    hub: Arc<Hub>,
    user: UserId,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Ok(mut users) = self.hub.users.lock()
            && let Some(n) = users.get_mut(&self.user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                users.remove(&self.user);
            }
        }
    }
}

/// A slot in the registry; dropping it removes the slot (dead-connection cleanup is the
/// connection task ending).
struct Registration {
    hub: Arc<Hub>,
    id: u64,
    user: UserId,
    slot: Arc<Slot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.hub.slots.lock()
            && let Some(list) = slots.get_mut(&self.user)
        {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                slots.remove(&self.user);
            }
        }
    }
}

/// Why following could not start.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("the store could not be read: {0}")]
    Store(#[from] store::Error),
}

/// One StateChange to send: per account, its state and the types that changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changed(pub BTreeMap<AccountId, (State, TypeSet)>);

/// A connection following the accounts of its user.
pub struct Follower {
    reg: Registration,
    store: Arc<dyn Store>,
    /// The states the client has been told (or found at the start), per account.
    known: BTreeMap<AccountId, State>,
    types: TypeSet,
}

impl Follower {
    /// Starts following every account of `principal`, filtered to `types`. With the push
    /// state of an earlier connection, the first [`Changed`] tells what moved since.
    pub async fn start(
        hub: &Arc<Hub>,
        store: Arc<dyn Store>,
        principal: &Principal,
        types: TypeSet,
        push_state: Option<&str>,
    ) -> Result<(Follower, Changed), FollowError> {
        let accounts: Vec<AccountId> = store
            .user_accounts(principal.user)
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect();
        // Registered before the states are read: a commit in between is both in the
        // states and in the slot, never in neither (the slot's copy is then skipped).
        let reg = hub.register(&store, principal.user, &accounts);
        let previous = push_state.map(parse_push_state);
        let mut known = BTreeMap::new();
        let mut first = Changed::default();
        for a in &accounts {
            let now = store.account_state(*a).await?;
            known.insert(*a, now);
            let Some(previous) = &previous else { continue };
            let moved = match previous.get(a) {
                Some(then) if *then == now => TypeSet::EMPTY,
                // Changes after `then`; a store rebuilt since (state went back) or an
                // account new to the client: everything may have changed.
                Some(then) if then.0 < now.0 => store.changed_types_since(*a, *then).await?,
                _ => TypeSet::all(),
            };
            let moved = moved.intersect(types);
            if !moved.is_empty() {
                first.0.insert(*a, (now, moved));
            }
        }
        Ok((
            Follower {
                reg,
                store,
                known,
                types,
            },
            first,
        ))
    }

    /// Waits until something may be waiting (cancel safe).
    pub async fn wait(&self) {
        self.reg.slot.notify.notified().await
    }

    /// What is waiting, as one StateChange (empty when nothing the client follows moved).
    pub async fn take(&mut self) -> Result<Changed, FollowError> {
        let pending = self.reg.slot.take();
        let mut out = Changed::default();
        if pending.resync {
            for (a, known) in self.known.clone() {
                let now = self.store.account_state(a).await?;
                if now != known {
                    let t = self.store.changed_types_since(a, known).await?;
                    let t = t.intersect(self.types);
                    if !t.is_empty() {
                        out.0.insert(a, (now, t));
                    }
                }
            }
        }
        for (a, (state, types)) in pending.changes {
            let types = types.intersect(self.types);
            let newer = self.known.get(&a).is_none_or(|k| state.0 > k.0);
            if newer && !types.is_empty() {
                let e = out.0.entry(a).or_insert((state, TypeSet::EMPTY));
                e.0 = State(e.0.0.max(state.0));
                e.1 = e.1.union(types);
            }
        }
        Ok(out)
    }

    /// Records that the client has been told `c`.
    pub fn told(&mut self, c: &Changed) {
        for (a, (state, _)) in &c.0 {
            self.known.insert(*a, *state);
        }
    }

    pub fn push_state(&self) -> String {
        format_push_state(&self.known)
    }
}

fn format_push_state(known: &BTreeMap<AccountId, State>) -> String {
    known
        .iter()
        .map(|(a, s)| format!("a{}:{}", a.0, s.0))
        .collect::<Vec<_>>()
        .join(",")
}

/// The account states in a push state; anything unreadable is left out (the client then
/// hears about that account as if new: every type).
fn parse_push_state(s: &str) -> BTreeMap<AccountId, State> {
    let mut out = BTreeMap::new();
    if s.len() > 64 * 1024 {
        return out;
    }
    for part in s.split(',') {
        let Some((a, st)) = part.split_once(':') else {
            continue;
        };
        if let (Some(a), Ok(st)) = (crate::jmap::ids::parse('a', a), st.parse::<i64>()) {
            out.insert(AccountId(a), State(st));
        }
    }
    out
}

/// The type names of RFC 8620 7.1 the client asked for; unknown names are ignored (no
/// change of them will ever be pushed).
pub fn type_filter<'a>(names: impl IntoIterator<Item = &'a str>) -> TypeSet {
    names.into_iter().filter_map(PushType::from_name).collect()
}

/// The StateChange (RFC 8620 7.1) of `c`: every type that changed in an account carries
/// the account's state. `pushState` goes only over the WebSocket (RFC 8887 4.3.5).
pub fn state_change(c: &Changed, push_state: Option<&str>) -> StateChange {
    let mut changed = BTreeMap::new();
    for (a, (state, types)) in &c.0 {
        let Some(id) = crate::session::account_id(*a) else {
            continue;
        };
        let state = jmap_proto::State::from(state.0.to_string());
        let types = types
            .iter()
            .map(|t| (t.as_str().to_string(), state.clone()))
            .collect();
        changed.insert(id, types);
    }
    StateChange {
        changed,
        push_state: push_state.map(str::to_owned),
    }
}

/// A StateChange as JSON. It has only string keys and values, so serializing cannot
/// fail; were it to, the message would be `null` rather than a panic.
pub fn state_change_json(c: &Changed, push_state: Option<&str>) -> Value {
    serde_json::to_value(state_change(c, push_state)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_states_round_trip_and_garbage_is_dropped() {
        let mut k = BTreeMap::new();
        k.insert(AccountId(1), State(17));
        k.insert(AccountId(12), State(0));
        let s = format_push_state(&k);
        assert_eq!(s, "a1:17,a12:0");
        assert_eq!(parse_push_state(&s), k);
        assert!(parse_push_state("x,a:1,a2:-,m3:4,a4").is_empty());
        assert!(parse_push_state(&"a1:1,".repeat(20_000)).is_empty());
    }

    fn store() -> Arc<dyn Store> {
        Arc::new(store::SqliteStore::open_in_memory().unwrap())
    }

    async fn account(store: &Arc<dyn Store>, user: UserId, name: &str) -> AccountId {
        use mail_types::{AccountKind, Security};
        use store::{NewAccount, ServerSettings};
        store
            .create_account(&NewAccount {
                user,
                name: name.into(),
                kind: AccountKind::Imap,
                server: ServerSettings {
                    host: "h".into(),
                    port: 1,
                    security: Security::None,
                    username: "u".into(),
                    password_enc: vec![],
                    ca_file: None,
                },
                smtp: None,
                pop3_delete_after_days: None,
                auth: Default::default(),
            })
            .await
            .unwrap()
    }

    fn change(account: AccountId, state: i64) -> AccountChange {
        AccountChange {
            account,
            state: State(state),
            types: [PushType::Email].into_iter().collect(),
        }
    }

    /// A connection that never reads holds one entry per account however many changes
    /// come, and does not hold up the others: the dispatcher only merges.
    #[tokio::test]
    async fn a_slow_connection_costs_one_entry_and_blocks_nobody() {
        let store = store();
        let hub = Hub::new(store.as_ref(), Limits::default());
        let (u1, u2) = (UserId(1), UserId(2));
        let (a, b, c) = (AccountId(1), AccountId(2), AccountId(3));
        let slow = hub.register(&store, u1, &[a, b]);
        let fast = hub.register(&store, u1, &[a, b]);
        let other = hub.register(&store, u2, &[c]);
        let bus = store.events();
        for i in 1..=10_000 {
            bus.publish(change(if i % 2 == 0 { a } else { b }, i));
            if i % 1000 == 0 {
                tokio::task::yield_now().await;
            }
        }
        // The fast one keeps up: it sees the last state of `a` within a second.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            tokio::time::timeout(Duration::from_secs(5), fast.slot.notify.notified())
                .await
                .unwrap();
            let p = fast.slot.take();
            if p.changes.get(&a).map(|c| c.0) == Some(State(10_000)) || p.resync {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "fast never caught up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let p = slow.slot.take();
        assert_eq!(p.changes.len(), 2, "one entry per account");
        if !p.resync {
            assert_eq!(p.changes[&a].0, State(10_000));
            assert_eq!(p.changes[&b].0, State(9_999));
        }
        assert!(
            other.slot.take().changes.is_empty(),
            "u2 hears nothing of u1"
        );
        // Dropping a registration removes its slot.
        drop(slow);
        drop(fast);
        drop(other);
        assert!(hub.slots.lock().unwrap().is_empty());
    }

    /// An account added while a connection is open is followed by the connections of its
    /// owner (its owner is read from the store at its first change), and by nobody else's.
    #[tokio::test]
    async fn an_account_added_later_is_followed_by_its_owners_connections_only() {
        let store = store();
        let u1 = store.create_user("u1", "x").await.unwrap();
        let u2 = store.create_user("u2", "x").await.unwrap();
        let a1 = account(&store, u1, "first").await;
        let hub = Hub::new(store.as_ref(), Limits::default());
        let mine = hub.register(&store, u1, &[a1]);
        let theirs = hub.register(&store, u2, &[]);
        let a2 = account(&store, u1, "added").await;
        let b1 = account(&store, u2, "theirs").await;
        store.events().publish(change(a2, 5));
        store.events().publish(change(b1, 6));
        tokio::time::timeout(Duration::from_secs(5), mine.slot.notify.notified())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let p = mine.slot.take();
        assert_eq!(p.changes.get(&a2).map(|c| c.0), Some(State(5)));
        assert!(!p.changes.contains_key(&b1), "u2's account reached u1");
        let p = theirs.slot.take();
        assert_eq!(p.changes.get(&b1).map(|c| c.0), Some(State(6)));
        assert!(!p.changes.contains_key(&a2), "u1's account reached u2");
    }

    #[test]
    fn slots_coalesce_latest_state_and_union_of_types() {
        let slot = Slot {
            pending: Mutex::new(Pending::default()),
            notify: Notify::new(),
        };
        let a = AccountId(1);
        for (s, t) in [
            (5, PushType::Mailbox),
            (7, PushType::Email),
            (6, PushType::Thread),
        ] {
            slot.merge(&AccountChange {
                account: a,
                state: State(s),
                types: [t].into_iter().collect(),
            });
        }
        let p = slot.take();
        let (state, types) = p.changes[&a];
        assert_eq!(state, State(7));
        assert_eq!(types.iter().count(), 3);
        assert!(slot.take().changes.is_empty());
    }
}
