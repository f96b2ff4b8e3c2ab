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

/// An account's change log and write-back queue go with it (a trigger on `account`: the
/// rows keep no foreign key, whose check per row cost the writes that add 1,000 of them).
#[tokio::test]
async fn an_accounts_change_log_and_queue_go_with_it() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let url = pg.fresh_database().expect("database");
    PgStore::connect(&url).await.expect("migrate");
    let db = url.rsplit('/').next().expect("database name");
    let count = "SELECT (SELECT count(*) FROM change) || ' ' || (SELECT count(*) FROM outbox)";
    pg.psql(
        db,
        "INSERT INTO app_user (name, password_hash) VALUES ('u', 'x');
         INSERT INTO account (user_id, name, kind, host, port, security, username, password_enc)
             SELECT id, n, 'imap', 'h', 1, 'none', 'u', '\\x00' FROM app_user, (VALUES ('a'), ('b')) v(n);
         INSERT INTO change (account_id, state, type, object_id, op)
             SELECT id, 1, 'Email', 1, 0 FROM account;
         INSERT INTO outbox (account_id, kind, payload, created_at)
             SELECT id, 'flags', '{}', 0 FROM account;",
    )
    .expect("fixture");
    assert_eq!(pg.psql(db, count).expect("count"), "2 2");
    pg.psql(db, "DELETE FROM account WHERE name = 'a'")
        .expect("delete");
    assert_eq!(pg.psql(db, count).expect("count"), "1 1");
    assert_eq!(
        pg.psql(
            db,
            "SELECT count(*) FROM change c JOIN account a ON a.id = c.account_id WHERE a.name = 'b'"
        )
        .expect("kept"),
        "1"
    );
}

/// The counts the triggers keep (postgres/mail.sql, mailbox_thread) equal a full recount
/// after every kind of write the store makes, as SQLite's `mailbox_counts_match_a_recount`
/// checks for its triggers (same pseudo-random sequence of writes), plus what only the
/// statement-level triggers of PostgreSQL have to get right: several copies, of one Email
/// in one mailbox too, inserted or removed by one statement.
#[tokio::test]
async fn mailbox_counts_match_a_recount() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let url = pg.fresh_database().expect("database");
    PgStore::connect(&url).await.expect("migrate");
    let (c, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("client");
    tokio::spawn(connection);
    c.batch_execute(
        "INSERT INTO app_user (name, password_hash) VALUES ('u', 'x');
         INSERT INTO account (user_id, name, kind, host, port, security, username, password_enc)
             SELECT id, 'a', 'imap', 'h', 1, 'none', 'u', '\\x00' FROM app_user;
         INSERT INTO mailbox (id, account_id, raw_name, name) OVERRIDING SYSTEM VALUE
             SELECT m, a.id, n, n FROM account a,
             (VALUES (1, 'INBOX'), (2, 'Archive'), (3, 'Trash')) AS v(m, n);",
    )
    .await
    .expect("fixture");
    type Counts = Vec<(i64, i64, i64, i64, i64)>;
    async fn rows(c: &tokio_postgres::Client, sql: &str) -> Counts {
        c.query(sql, &[])
            .await
            .expect("counts")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    }
    const RECOUNT: &str = "SELECT m.id, \
         (SELECT count(DISTINCT e.id) FROM copy c JOIN email e ON e.id = c.email_id WHERE c.mailbox_id = m.id), \
         (SELECT count(DISTINCT e.id) FROM copy c JOIN email e ON e.id = c.email_id WHERE c.mailbox_id = m.id AND NOT e.keywords ? '$seen'), \
         (SELECT count(DISTINCT e.thread_id) FROM copy c JOIN email e ON e.id = c.email_id WHERE c.mailbox_id = m.id), \
         (SELECT count(DISTINCT e.thread_id) FROM copy c JOIN email e ON e.id = c.email_id WHERE c.mailbox_id = m.id AND NOT e.keywords ? '$seen') \
         FROM mailbox m ORDER BY m.id";
    const KEPT: &str = "SELECT id, total_emails, unread_emails, total_threads, unread_threads \
         FROM mailbox ORDER BY id";
    // The copy counters too: copies and bodies per mailbox.
    const COPIES: &str = "SELECT m.id, m.copies, m.bodies, \
         (SELECT count(*) FROM copy c WHERE c.mailbox_id = m.id), \
         (SELECT count(*) FROM copy c JOIN email e ON e.id = c.email_id \
          WHERE c.mailbox_id = m.id AND e.blob_id IS NOT NULL) FROM mailbox m ORDER BY m.id";
    // A fixed pseudo-random sequence (an LCG), so a failure replays.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut uid = 1i64;
    for step in 0..1500 {
        let email = 1 + next(60) as i64;
        let mailbox = 1 + next(3) as i64;
        let sql: String = match next(11) {
            0 | 1 => format!(
                "INSERT INTO email (id, account_id, identity, thread_id, keywords) \
                 OVERRIDING SYSTEM VALUE SELECT {email}, id, 'i{email}', {}, '[]' FROM account \
                 ON CONFLICT DO NOTHING",
                1 + next(20)
            ),
            2 | 3 => {
                uid += 1;
                format!(
                    "INSERT INTO copy (mailbox_id, uid, email_id) \
                     SELECT {mailbox}, {uid}, id FROM email WHERE id = {email}"
                )
            }
            4 => format!(
                "DELETE FROM copy WHERE (mailbox_id, uid) IN \
                 (SELECT mailbox_id, uid FROM copy WHERE email_id = {email} LIMIT 1)"
            ),
            5 if next(3) == 0 => {
                // One statement, $seen toggled on several Emails (threads and mailboxes
                // shared among them), as an Email/set of many keywords writes it.
                // Keywords are written through set_keywords, which keeps the counts.
                let ids = format!("FROM email WHERE id % 5 = {} ORDER BY id", next(5));
                format!(
                    "SELECT set_keywords(ARRAY(SELECT id {ids}), ARRAY(SELECT CASE \
                     WHEN keywords ? '$seen' THEN '[\"$flagged\"]' ELSE '[\"$seen\"]' END {ids}))"
                )
            }
            5 => format!(
                "SELECT set_keywords(ARRAY[{email}]::bigint[], ARRAY['{}'])",
                if next(2) == 0 {
                    r#"["$seen","$flagged"]"#
                } else {
                    r#"["$flagged"]"#
                }
            ),
            6 => format!(
                "UPDATE email SET thread_id = {} WHERE thread_id = {}",
                1 + next(20),
                1 + next(20)
            ),
            7 => format!(
                "UPDATE copy SET email_id = {email} WHERE uid = \
                 (SELECT min(uid) FROM copy WHERE mailbox_id = {mailbox}) \
                 AND mailbox_id = {mailbox} AND EXISTS (SELECT 1 FROM email WHERE id = {email})"
            ),
            8 => {
                // One statement, several copies: two of one Email in one mailbox among them.
                let other = 1 + next(60) as i64;
                uid += 3;
                format!(
                    "INSERT INTO copy (mailbox_id, uid, email_id) \
                     SELECT {mailbox}, u, e FROM (VALUES ({}, {email}), ({}, {email}), ({uid}, {other})) \
                     AS v(u, e) WHERE EXISTS (SELECT 1 FROM email WHERE id = e)",
                    uid - 2,
                    uid - 1
                )
            }
            9 => format!(
                "UPDATE email SET blob_id = 'b{email}' WHERE id = {email} AND blob_id IS NULL"
            ),
            _ => {
                if next(10) == 0 {
                    format!("DELETE FROM email WHERE id = {email}")
                } else if next(3) == 0 {
                    // Every copy of a mailbox at once (a reset).
                    format!("DELETE FROM copy WHERE mailbox_id = {mailbox} AND uid % 2 = 0")
                } else {
                    uid += 1;
                    format!(
                        "UPDATE copy SET mailbox_id = {mailbox}, uid = {uid} WHERE (mailbox_id, uid) = \
                         (SELECT mailbox_id, uid FROM copy WHERE email_id = {email} ORDER BY uid DESC LIMIT 1)"
                    )
                }
            }
        };
        c.batch_execute(&sql).await.expect("step");
        assert_eq!(
            rows(&c, KEPT).await,
            rows(&c, RECOUNT).await,
            "after step {step}: {sql}"
        );
        let copies = rows(&c, COPIES).await;
        assert!(
            copies.iter().all(|m| m.1 == m.3 && m.2 == m.4),
            "copy counters after step {step}: {sql}: {copies:?}"
        );
    }
    // Keywords written any other way would leave the counts behind: refused.
    let refused = c
        .batch_execute("UPDATE email SET keywords = '[]' WHERE id = 1")
        .await
        .expect_err("a write of keywords outside set_keywords");
    assert!(
        format!("{refused:?}").contains("set_keywords"),
        "{refused:?}"
    );
    assert_eq!(rows(&c, KEPT).await, rows(&c, RECOUNT).await);
    c.batch_execute("DELETE FROM mailbox WHERE id = 2")
        .await
        .expect("delete a mailbox");
    assert_eq!(rows(&c, KEPT).await, rows(&c, RECOUNT).await);
    assert!(
        rows(&c, KEPT).await.iter().any(|k| k.1 > 0),
        "the sequence left mail to count"
    );
}

/// Every role is there: the PostgreSQL store is a whole `Store`, as the server holds it.
#[tokio::test]
async fn the_postgres_store_is_a_whole_store() {
    let pg = Postgres::shared().expect("private PostgreSQL");
    let url = pg.fresh_database().expect("database");
    let store: std::sync::Arc<dyn store::Store> =
        std::sync::Arc::new(PgStore::connect(&url).await.expect("connect"));
    assert!(store.shared(), "several nodes may share it");
    assert!(store.list_accounts().await.expect("accounts").is_empty());
}
