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
