//! ManageSieve per account: settings, findings, and Sieve script ids that are never
//! handed to another script (DESIGN.md invariant 8). On both backends.

mod common;

use common::on_both_backends;
use store::prelude::*;
use store::*;

on_both_backends!(
    settings_and_findings,
    script_ids_are_permanent,
    recent_snapshots_are_kept
);

async fn settings_and_findings<S: Directory + SieveState>(s: &S) {
    let a = common::account(s).await;
    assert_eq!(
        s.sieve_settings(a).await.expect("get"),
        SieveSettings::default()
    );
    s.set_sieve_found(a, Some("{\"sieve\":[]}"), 7)
        .await
        .expect("found");
    s.set_sieve_settings(
        a,
        &SieveSettings {
            enabled: false,
            host: Some("sieve.example.org".into()),
            port: Some(2000),
            ..SieveSettings::default()
        },
    )
    .await
    .expect("set");
    let got = s.sieve_settings(a).await.expect("get");
    assert!(!got.enabled);
    assert_eq!(got.host.as_deref(), Some("sieve.example.org"));
    assert_eq!(got.port, Some(2000));
    // Settings leave the finding alone; a failed try clears it.
    assert_eq!(got.capabilities.as_deref(), Some("{\"sieve\":[]}"));
    assert_eq!(got.checked_at, 7);
    s.set_sieve_found(a, None, 8).await.expect("found");
    assert_eq!(s.sieve_settings(a).await.expect("get").capabilities, None);
}

async fn script_ids_are_permanent<S: Directory + SieveState>(s: &S) {
    let a = common::account(s).await;
    let names = |v: &[&str]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let first = s
        .sieve_script_ids(a, &names(&["x", "y"]))
        .await
        .expect("ids");
    assert_ne!(first[0], first[1]);
    // Same names, same ids, in the order asked.
    let again = s
        .sieve_script_ids(a, &names(&["y", "x"]))
        .await
        .expect("ids");
    assert_eq!(again, vec![first[1], first[0]]);
    // A rename keeps the id.
    s.rename_sieve_script(a, first[0], "z")
        .await
        .expect("rename");
    let renamed = s
        .sieve_script_ids(a, &names(&["z", "y"]))
        .await
        .expect("ids");
    assert_eq!(renamed, vec![first[0], first[1]]);
    // Gone from the server, then a new script of the same name: a new id.
    s.sieve_script_ids(a, &names(&["y"])).await.expect("ids");
    let back = s.sieve_script_ids(a, &names(&["z"])).await.expect("ids");
    assert!(back[0] > first[1], "{back:?} after {first:?}");
}

async fn recent_snapshots_are_kept<S: Directory + SieveState>(s: &S) {
    let a = common::account(s).await;
    for i in 0..40 {
        s.put_sieve_snapshot(a, &format!("s{i}"), &format!("[{i}]"), i)
            .await
            .expect("put");
    }
    // The first one is recorded once: seeing a state again changes nothing.
    s.put_sieve_snapshot(a, "s39", "[other]", 99)
        .await
        .expect("put");
    assert_eq!(
        s.sieve_snapshot(a, "s39").await.expect("get").as_deref(),
        Some("[39]")
    );
    assert_eq!(
        s.sieve_snapshot(a, "s8").await.expect("get").as_deref(),
        Some("[8]")
    );
    assert_eq!(
        s.sieve_snapshot(a, "s7").await.expect("get"),
        None,
        "only 32 kept"
    );
    assert_eq!(s.sieve_snapshot(a, "nope").await.expect("get"), None);
}
