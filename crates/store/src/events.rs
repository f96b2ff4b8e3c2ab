//! The event bus: "account X committed; its state is now S and these data types changed".
//!
//! The store's write path publishes one [`AccountChange`] per committed transaction that
//! changed something a client can see (see `sqlite/write.rs`: the `ChangeLog` notes the
//! types and hands them to its call's `Committed` once the transaction committed; the call
//! helper publishes them when the call returns). Writers do nothing for it: the sync engine
//! and JMAP `/set` methods publish because they write through the change log.
//!
//! Type states: every push type's state is the account's `State` counter at the last
//! transaction that changed that type. So the state a push carries for `Email` is exactly
//! the state `Email/get` and `Email/changes` answered right after that commit, and
//! `Email/changes` from any earlier state returns what the push announced.
//!
//! [`LocalBus`] is the in-process implementation on a tokio broadcast channel. A
//! PostgreSQL implementation (`postgres/bus.rs`) serves the same trait across nodes: its
//! change log issues `pg_notify('tidings', '<account>:<state>:<types>')` inside the
//! writing transaction (PostgreSQL delivers it at commit, never for a rollback), and one
//! `LISTEN tidings` connection per node feeds the broadcast that `subscribe` hands out. Consumers are written against the broadcast receiver's
//! semantics: commit order per account, and `Lagged` when a receiver fell behind, after
//! which it must re-read the states it follows from the store.

use mail_types::{AccountId, State};
use tokio::sync::broadcast;

/// The data types a push client follows (RFC 8620 7.1 type names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PushType {
    Email,
    Mailbox,
    Thread,
    /// A new message arrived from the mail server (RFC 8621 1.5); not flag changes, not
    /// drafts saved by the user.
    EmailDelivery,
    EmailSubmission,
    Identity,
    /// RFC 9425 5: Quota changes are pushed like any type.
    Quota,
}

impl PushType {
    pub const ALL: [PushType; 7] = [
        PushType::Email,
        PushType::Mailbox,
        PushType::Thread,
        PushType::EmailDelivery,
        PushType::EmailSubmission,
        PushType::Identity,
        PushType::Quota,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PushType::Email => "Email",
            PushType::Mailbox => "Mailbox",
            PushType::Thread => "Thread",
            PushType::EmailDelivery => "EmailDelivery",
            PushType::EmailSubmission => "EmailSubmission",
            PushType::Identity => "Identity",
            PushType::Quota => "Quota",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        PushType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl From<crate::ObjectType> for PushType {
    fn from(o: crate::ObjectType) -> Self {
        match o {
            crate::ObjectType::Email => PushType::Email,
            crate::ObjectType::Mailbox => PushType::Mailbox,
            crate::ObjectType::Thread => PushType::Thread,
            crate::ObjectType::EmailSubmission => PushType::EmailSubmission,
            crate::ObjectType::Identity => PushType::Identity,
            crate::ObjectType::Quota => PushType::Quota,
        }
    }
}

/// A set of [`PushType`]s (a bit each; room for sixteen types).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TypeSet(u16);

impl TypeSet {
    pub const EMPTY: TypeSet = TypeSet(0);

    pub fn all() -> Self {
        PushType::ALL.into_iter().collect()
    }
    pub fn insert(&mut self, t: PushType) {
        self.0 |= t.bit();
    }
    pub fn contains(self, t: PushType) -> bool {
        self.0 & t.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn union(self, o: TypeSet) -> TypeSet {
        TypeSet(self.0 | o.0)
    }
    pub fn intersect(self, o: TypeSet) -> TypeSet {
        TypeSet(self.0 & o.0)
    }
    pub fn iter(self) -> impl Iterator<Item = PushType> {
        PushType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
    /// The set as a number (a bus payload carries it), and back; unknown bits are dropped.
    pub(crate) fn bits(self) -> u16 {
        self.0
    }
    pub(crate) fn from_bits(bits: u16) -> TypeSet {
        TypeSet(bits & TypeSet::all().0)
    }
}

impl FromIterator<PushType> for TypeSet {
    fn from_iter<I: IntoIterator<Item = PushType>>(it: I) -> Self {
        let mut s = TypeSet::EMPTY;
        for t in it {
            s.insert(t);
        }
        s
    }
}

/// One committed transaction of one account: its new state and the types it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountChange {
    pub account: AccountId,
    pub state: State,
    pub types: TypeSet,
}

/// Where committed changes are announced.
pub trait EventBus: Send + Sync + 'static {
    /// Announces a committed change. Called on the write path right after the commit: it
    /// must not block and must not fail the write (a lost announcement is healed by the
    /// consumers' `Lagged` handling, never by the writer).
    fn publish(&self, change: AccountChange);
    /// Every change published from now on.
    fn subscribe(&self) -> broadcast::Receiver<AccountChange>;
}

/// The in-process bus: a tokio broadcast channel.
pub struct LocalBus {
    tx: broadcast::Sender<AccountChange>,
}

impl LocalBus {
    /// `capacity` changes may be buffered for the slowest receiver before it lags.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        LocalBus { tx }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus::new(4096)
    }
}

impl EventBus for LocalBus {
    fn publish(&self, change: AccountChange) {
        // No receiver is not an error: nobody is connected.
        let _ = self.tx.send(change);
    }
    fn subscribe(&self) -> broadcast::Receiver<AccountChange> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_sets() {
        let mut s = TypeSet::EMPTY;
        assert!(s.is_empty());
        s.insert(PushType::Email);
        s.insert(PushType::EmailDelivery);
        assert!(s.contains(PushType::Email) && !s.contains(PushType::Mailbox));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![PushType::Email, PushType::EmailDelivery]
        );
        assert_eq!(TypeSet::all().iter().count(), PushType::ALL.len());
        for t in PushType::ALL {
            assert_eq!(PushType::from_name(t.as_str()), Some(t));
        }
        assert_eq!(PushType::from_name("Calendar"), None);
    }
}
