//! The quota table: what the sync learnt is stored exactly, each change bumps the state
//! once and is logged as type Quota (so Quota/changes and push see it), nothing changed
//! is no new state, and a quota that went away keeps its id for good. On both backends.

mod common;

use mail_types::{AccountId, State};
use store::prelude::*;
use store::{ChangePosition, ObjectType, PgStore, QuotaResource, QuotaValue, SqliteStore};

/// What the check reads of the change log: the account's state and the Quota changes
/// since a state (created, updated, destroyed). SQLite answers through `Reading`;
/// PostgreSQL has no `Reading` yet, so there the check reads the two tables itself, on a
/// connection of its own, with the rule of `*/changes` (RFC 8620 5.2: an object created
/// and destroyed since is not reported).
trait ChangeView {
    async fn state(&self, a: AccountId) -> State;
    async fn quota_changes(&self, a: AccountId, since: State) -> [Vec<i64>; 3];
}

impl ChangeView for SqliteStore {
    async fn state(&self, a: AccountId) -> State {
        self.account_state(a).await.expect("state")
    }

    async fn quota_changes(&self, a: AccountId, since: State) -> [Vec<i64>; 3] {
        let page = self
            .changes_page(a, ObjectType::Quota, ChangePosition::whole(since), 100)
            .await
            .expect("page")
            .expect("known state");
        [page.created, page.updated, page.destroyed]
    }
}

/// A `PgStore` and a plain client on the same database.
struct Pg(PgStore, tokio_postgres::Client);

impl ChangeView for Pg {
    async fn state(&self, a: AccountId) -> State {
        let r = self
            .1
            .query_one("SELECT state FROM account WHERE id = $1", &[&a.0])
            .await
            .expect("state");
        State(r.get(0))
    }

    async fn quota_changes(&self, a: AccountId, since: State) -> [Vec<i64>; 3] {
        let rows = self
            .1
            .query(
                "SELECT object_id, op FROM change WHERE account_id = $1 AND type = 'Quota' \
                 AND state > $2 ORDER BY state, seq",
                &[&a.0, &since.0],
            )
            .await
            .expect("changes");
        // object -> (first op, last op), in order of first appearance.
        let mut objects: Vec<(i64, i16, i16)> = Vec::new();
        for r in rows {
            let (id, op): (i64, i16) = (r.get(0), r.get(1));
            match objects.iter_mut().find(|o| o.0 == id) {
                Some(o) => o.2 = op,
                None => objects.push((id, op, op)),
            }
        }
        let mut out: [Vec<i64>; 3] = Default::default();
        for (id, first, last) in objects {
            match (first, last) {
                (0, 2) => {}
                (0, _) => out[0].push(id),
                (_, 2) => out[2].push(id),
                _ => out[1].push(id),
            }
        }
        out
    }
}

#[tokio::test]
async fn sqlite_quotas_are_logged_like_every_type() {
    let s = common::sqlite();
    quotas_are_logged_like_every_type(&s, &s).await;
}

#[tokio::test]
async fn postgres_quotas_are_logged_like_every_type() {
    let url = testkit::Postgres::shared()
        .expect("private PostgreSQL")
        .fresh_database()
        .expect("database");
    let store = PgStore::connect(&url).await.expect("connect");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("client");
    tokio::spawn(connection);
    let pg = Pg(store, client);
    quotas_are_logged_like_every_type(&pg.0, &pg).await;
}

fn value(root: &str, resource: QuotaResource, used: u64) -> QuotaValue {
    QuotaValue {
        root: root.into(),
        resource,
        used,
        hard_limit: 1000,
    }
}

async fn quotas_are_logged_like_every_type<S: Directory + Quotas>(s: &S, log: &impl ChangeView) {
    let a = common::account(s).await;
    let start = log.state(a).await;
    assert!(!s.apply_quotas(a, &[]).await.expect("none"));
    assert_eq!(log.state(a).await, start);

    let both = [
        value("User quota", QuotaResource::Octets, 10),
        value("User quota", QuotaResource::Count, 1),
    ];
    assert!(s.apply_quotas(a, &both).await.expect("apply"));
    let stored = s.quotas(a).await.expect("quotas");
    assert_eq!(
        stored.iter().map(|q| q.value.clone()).collect::<Vec<_>>(),
        both
    );
    let created = log.state(a).await;
    assert_eq!(created.0, start.0 + 1, "one state for the whole batch");

    // The same figures again: no change, no state.
    assert!(!s.apply_quotas(a, &both).await.expect("again"));
    assert_eq!(log.state(a).await, created);

    // Usage moves: updated. The count quota goes away: destroyed, its id never reused.
    let moved = [value("User quota", QuotaResource::Octets, 99)];
    assert!(s.apply_quotas(a, &moved).await.expect("moved"));
    let [page_created, page_updated, page_destroyed] = log.quota_changes(a, created).await;
    assert_eq!(page_updated, vec![stored[0].id]);
    assert_eq!(page_destroyed, vec![stored[1].id]);
    assert!(page_created.is_empty());
    let back = [
        value("User quota", QuotaResource::Octets, 99),
        value("User quota", QuotaResource::Count, 1),
    ];
    assert!(s.apply_quotas(a, &back).await.expect("back"));
    let again = s.quotas(a).await.expect("quotas");
    let count = again
        .iter()
        .find(|q| q.value.resource == QuotaResource::Count)
        .expect("count");
    assert!(count.id > stored[1].id, "a new quota, a new id");
}
