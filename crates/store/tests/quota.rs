//! The quota table: what the sync learnt is stored exactly, each change bumps the state
//! once and is logged as type Quota (so Quota/changes and push see it), nothing changed
//! is no new state, and a quota that went away keeps its id for good. On both backends.

mod common;

use mail_types::{AccountId, State};
use store::prelude::*;
use store::{ChangePosition, ObjectType, QuotaResource, QuotaValue};

/// The account's state and the Quota changes since a state (created, updated,
/// destroyed), read through `Reading`.
async fn quota_changes<S: Reading>(s: &S, a: AccountId, since: State) -> [Vec<i64>; 3] {
    let page = s
        .changes_page(a, ObjectType::Quota, ChangePosition::whole(since), 100)
        .await
        .expect("page")
        .expect("known state");
    [page.created, page.updated, page.destroyed]
}

common::on_both_backends!(quotas_are_logged_like_every_type);

fn value(root: &str, resource: QuotaResource, used: u64) -> QuotaValue {
    QuotaValue {
        root: root.into(),
        resource,
        used,
        hard_limit: 1000,
    }
}

async fn quotas_are_logged_like_every_type<S: Directory + Quotas + Reading>(s: &S) {
    let a = common::account(s).await;
    let start = s.account_state(a).await.expect("state");
    assert!(!s.apply_quotas(a, &[]).await.expect("none"));
    assert_eq!(s.account_state(a).await.expect("state"), start);

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
    let created = s.account_state(a).await.expect("state");
    assert_eq!(created.0, start.0 + 1, "one state for the whole batch");

    // The same figures again: no change, no state.
    assert!(!s.apply_quotas(a, &both).await.expect("again"));
    assert_eq!(s.account_state(a).await.expect("state"), created);

    // Usage moves: updated. The count quota goes away: destroyed, its id never reused.
    let moved = [value("User quota", QuotaResource::Octets, 99)];
    assert!(s.apply_quotas(a, &moved).await.expect("moved"));
    let [page_created, page_updated, page_destroyed] = quota_changes(s, a, created).await;
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
