//! What the api tests against a private Dovecot share: the IMAP user, the password source
//! of a store whose secrets are stored in clear, and the Tidings user "alice" (password
//! "pw") with one IMAP account "mail" on that Dovecot.

#![allow(dead_code)]

use api::auth::hash_password;
use engine::PasswordSource;
use mail_types::{AccountId, AccountKind, Security};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::{NewAccount, ServerSettings, Store};
use testkit::Dovecot;

pub const USER: &str = "alice@example.org";
pub const PASS: &str = "imap-pw";

/// Where a test's store lives: a SQLite file, or, with `TIDINGS_TEST_STORE=postgres`, a
/// new database of the test binary's private PostgreSQL. The test command runs the JMAP
/// tests once on each, so the two backends answer the same.
pub enum StoreAt {
    Sqlite(Option<PathBuf>),
    Postgres(String),
}

impl StoreAt {
    /// A new store in `dir` (SQLite in memory without one).
    pub fn new(dir: Option<&Path>) -> StoreAt {
        if std::env::var("TIDINGS_TEST_STORE").as_deref() == Ok("postgres") {
            let url = testkit::Postgres::shared()
                .expect("private PostgreSQL")
                .fresh_database()
                .expect("a database");
            return StoreAt::Postgres(url);
        }
        StoreAt::Sqlite(dir.map(|d| d.join("t.sqlite")))
    }

    /// Opens it (again, as a restarted server does: an in-memory SQLite store is new).
    pub async fn open(&self) -> Arc<dyn Store> {
        match self {
            StoreAt::Postgres(url) => Arc::new(
                store::PgStore::connect(url)
                    .await
                    .expect("PostgreSQL store"),
            ),
            StoreAt::Sqlite(Some(path)) => Arc::new(store::SqliteStore::open(path).expect("store")),
            StoreAt::Sqlite(None) => Arc::new(store::SqliteStore::open_in_memory().expect("store")),
        }
    }
}

/// A new store for a test (see [`StoreAt`]).
pub async fn test_store(dir: Option<&Path>) -> Arc<dyn Store> {
    StoreAt::new(dir).open().await
}

/// The stored "encrypted" password is the password itself in these tests.
pub fn plain_passwords() -> PasswordSource {
    Arc::new(|a: &store::AccountRecord| Ok(String::from_utf8(a.server.password_enc.clone())?))
}

/// The Tidings user "alice" (password "pw") and her IMAP account "mail" on `dovecot`,
/// logging in as [`USER`]; the account's id.
pub async fn alice_account(store: &Arc<dyn Store>, dovecot: &Dovecot) -> AccountId {
    let user = store
        .create_user("alice", &hash_password("pw").unwrap())
        .await
        .unwrap();
    store
        .create_account(&NewAccount {
            user,
            name: "mail".into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: dovecot.imap_port(),
                security: Security::None,
                username: USER.into(),
                password_enc: PASS.as_bytes().to_vec(),
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await
        .unwrap()
}
