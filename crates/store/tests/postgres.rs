//! The PostgreSQL backend's own concerns: migrations that run exactly once when several
//! nodes start on a new database at the same moment, and a database of a newer build
//! refused.

use store::prelude::*;
use store::{Error, PgStore};
use testkit::Postgres;

/// The versions recorded in `schema_version`, in order, as psql prints them.
fn versions(pg: &Postgres, url: &str) -> String {
    let db = url.rsplit('/').next().expect("database name");
    pg.psql(
        db,
        "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version",
    )
    .expect("versions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connects_migrate_once() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    for round in 0..3 {
        let url = pg.fresh_database().expect("database");
        let nodes: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PgStore::connect(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for n in nodes {
            let r = n.await.expect("task");
            assert!(r.is_ok(), "round {round}: {:?}", r.err());
            stores.extend(r.ok());
        }
        // Every version once, none twice, none missing.
        let listed = versions(pg, &url);
        let expected: Vec<String> = (1..=listed.split(',').count())
            .map(|v| v.to_string())
            .collect();
        assert_eq!(listed, expected.join(","), "round {round}");
        // The schema they made works for all of them.
        for (i, s) in stores.iter().enumerate() {
            s.create_user(&format!("user{i}"), "h").await.expect("user");
        }
        assert_eq!(stores[0].list_users().await.expect("users").len(), 4);
        // A later start finds nothing to do.
        PgStore::connect(&url).await.expect("reconnect");
        assert_eq!(versions(pg, &url), listed);
    }
}

#[tokio::test]
async fn a_database_of_a_newer_build_is_refused() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let url = pg.fresh_database().expect("database");
    PgStore::connect(&url).await.expect("first start");
    let db = url.rsplit('/').next().expect("database name");
    pg.psql(db, "INSERT INTO schema_version (version) VALUES (100000)")
        .expect("a future version");
    let err = PgStore::connect(&url).await.expect_err("refused");
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
}

/// Two nodes writing to one account at once: every write gets a state of its own, in
/// order (the account's row lock), and none works from a stale read of the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_on_two_nodes_take_one_state_each() {
    use store::{QuotaResource, QuotaValue};
    let pg = Postgres::shared().expect("private PostgreSQL");
    let url = pg.fresh_database().expect("database");
    let nodes = [
        PgStore::connect(&url).await.expect("node a"),
        PgStore::connect(&url).await.expect("node b"),
    ];
    let user = nodes[0].create_user("u", "h").await.expect("user");
    let new = store::NewAccount {
        user,
        name: "a".into(),
        kind: mail_types::AccountKind::Imap,
        server: store::ServerSettings {
            host: "h".into(),
            port: 1,
            security: mail_types::Security::None,
            username: "u".into(),
            password_enc: vec![],
            ca_file: None,
        },
        smtp: None,
        pop3_delete_after_days: None,
        auth: Default::default(),
    };
    let account = nodes[0].create_account(&new).await.expect("account");
    const WRITES: u64 = 40;
    let writes: Vec<_> = (0..WRITES)
        .map(|i| {
            let node = nodes[(i % 2) as usize].clone();
            tokio::spawn(async move {
                // Every write reports other figures: each one changes the quota.
                let v = QuotaValue {
                    root: "User quota".into(),
                    resource: QuotaResource::Octets,
                    used: 1000 + i,
                    hard_limit: 10_000,
                };
                node.apply_quotas(account, &[v]).await
            })
        })
        .collect();
    for (i, w) in writes.into_iter().enumerate() {
        let changed = w.await.expect("task");
        assert!(matches!(changed, Ok(true)), "write {i}: {changed:?}");
    }
    let db = url.rsplit('/').next().expect("database name");
    // One quota (created once, then updated), one state per write, one change row each.
    assert_eq!(
        pg.psql(db, "SELECT count(*) FROM quota").expect("quotas"),
        "1"
    );
    assert_eq!(
        pg.psql(
            db,
            "SELECT a.state || ' ' || count(DISTINCT c.state) || ' ' || count(c.*) \
             FROM account a JOIN change c ON c.account_id = a.id GROUP BY a.state"
        )
        .expect("states"),
        format!("{WRITES} {WRITES} {WRITES}")
    );
}
