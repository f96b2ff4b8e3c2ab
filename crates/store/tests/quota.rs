//! The quota table: what the sync learnt is stored exactly, each change bumps the state
//! once and is logged as type Quota (so Quota/changes and push see it), nothing changed
//! is no new state, and a quota that went away keeps its id for good.

use mail_types::{AccountId, AccountKind, Security};
use store::prelude::*;
use store::{
    ChangePosition, NewAccount, ObjectType, QuotaResource, QuotaValue, ServerSettings, SqliteStore,
};

async fn account(s: &SqliteStore) -> AccountId {
    let user = s.create_user("alice", "x").await.expect("user");
    s.create_account(&NewAccount {
        user,
        name: "work".into(),
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
    .expect("account")
}

fn value(root: &str, resource: QuotaResource, used: u64) -> QuotaValue {
    QuotaValue {
        root: root.into(),
        resource,
        used,
        hard_limit: 1000,
    }
}

#[tokio::test]
async fn quotas_are_logged_like_every_type() {
    let s = SqliteStore::open_in_memory().expect("store");
    let a = account(&s).await;
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
    let page = s
        .changes_page(a, ObjectType::Quota, ChangePosition::whole(created), 100)
        .await
        .expect("page")
        .expect("known state");
    assert_eq!(page.updated, vec![stored[0].id]);
    assert_eq!(page.destroyed, vec![stored[1].id]);
    assert!(page.created.is_empty());
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
