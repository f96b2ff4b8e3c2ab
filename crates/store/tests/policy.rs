//! The body policy and the daily download budget as the store keeps them: defaults, the
//! configured limit until the engine records the one in force, bytes per UTC day (a new
//! day starts from zero, the old day's row goes), the background stop marked per day,
//! and everything gone with the account. On both backends.

mod common;

use common::on_both_backends;
use store::prelude::*;
use store::*;

on_both_backends!(policy_and_budget_per_day);

async fn policy_and_budget_per_day<S: Directory + BodyPolicy>(s: &S) {
    let a = common::account(s).await;
    assert_eq!(
        s.account_policy(a).await.expect("policy"),
        AccountPolicy::default()
    );
    let b = s.download_budget(a, 100).await.expect("budget");
    assert_eq!((b.used, b.limit_mb, b.background_stopped), (0, None, false));

    let p = AccountPolicy {
        bodies_days: Some(30),
        daily_download_mb: Some(2),
    };
    s.set_account_policy(a, &p).await.expect("set");
    assert_eq!(s.account_policy(a).await.expect("policy"), p);
    // Before the engine says what is in force, the configured limit.
    assert_eq!(
        s.download_budget(a, 100).await.expect("b").limit_mb,
        Some(2)
    );
    // The engine's word wins, and a policy change keeps it until the next connect.
    s.set_download_limit(a, Some(2500)).await.expect("limit");
    s.set_account_policy(a, &p).await.expect("set");
    assert_eq!(
        s.download_budget(a, 100).await.expect("b").limit_mb,
        Some(2500)
    );

    s.add_downloaded(a, 100, 1_500_000).await.expect("add");
    s.add_downloaded(a, 100, 700_000).await.expect("add");
    s.set_background_stopped(a, 100).await.expect("stop");
    let b = s.download_budget(a, 100).await.expect("b");
    assert_eq!(b.used, 2_200_000);
    assert!(b.background_reached());
    // A new UTC day starts from zero and forgets the stop.
    s.add_downloaded(a, 101, 10).await.expect("add");
    let b = s.download_budget(a, 101).await.expect("b");
    assert_eq!((b.used, b.background_stopped), (10, false));
    assert_eq!(
        s.download_budget(a, 100).await.expect("b").used,
        0,
        "old day dropped"
    );

    s.delete_account(a).await.expect("delete");
    let b = s.download_budget(a, 101).await.expect("b");
    assert_eq!((b.used, b.limit_mb), (0, None));
}
