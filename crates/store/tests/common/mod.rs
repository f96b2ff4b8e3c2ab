//! The backends the store's role tests run against. A test is an `async fn` generic over
//! the roles it uses; `on_both_backends!` makes one `#[tokio::test]` of it per backend
//! (`sqlite::NAME`, `postgres::NAME`), so the two backends answer the very same checks
//! and cannot drift.

// Each test binary uses the part it needs.
#![allow(dead_code, unused_macros, unused_imports)]

use mail_types::{AccountId, AccountKind, MailboxId, ModSeq, Role, Security, Uid};
use store::prelude::*;
use store::{NewAccount, NewCopy, PgStore, RemoteMailbox, ServerSettings, SqliteStore};

/// A private in-memory SQLite store.
pub fn sqlite() -> SqliteStore {
    SqliteStore::open_in_memory().expect("sqlite store")
}

/// A store on a new database of the test binary's private PostgreSQL (started at the
/// first call, see `testkit::Postgres`).
pub async fn postgres() -> PgStore {
    let url = testkit::Postgres::shared()
        .expect("private PostgreSQL")
        .fresh_database()
        .expect("fresh database");
    PgStore::connect(&url).await.expect("connect")
}

/// Two stores ("nodes") on one new database of `pg`, and its URL.
pub async fn two_nodes(pg: &testkit::Postgres) -> (String, PgStore, PgStore) {
    let url = pg.fresh_database().expect("fresh database");
    let a = PgStore::connect(&url).await.expect("node a");
    let b = PgStore::connect(&url).await.expect("node b");
    (url, a, b)
}

/// A quota as the server reports it, `used` octets of 10,000: a write of another `used`
/// changes it.
pub fn quota(used: u64) -> [store::QuotaValue; 1] {
    [store::QuotaValue {
        root: "User quota".into(),
        resource: store::QuotaResource::Octets,
        used,
        hard_limit: 10_000,
    }]
}

/// IMAP settings of a made-up server (nothing connects to it).
pub fn settings(host: &str) -> ServerSettings {
    ServerSettings {
        host: host.into(),
        port: 1,
        security: Security::None,
        username: "u".into(),
        password_enc: vec![],
        ca_file: None,
    }
}

/// A new password account `name` of `user`.
pub fn new_account(user: mail_types::UserId, name: &str) -> NewAccount {
    NewAccount {
        user,
        name: name.into(),
        kind: AccountKind::Imap,
        server: settings("h"),
        smtp: None,
        pop3_delete_after_days: None,
        auth: Default::default(),
    }
}

/// User `u` with account `a`: what most checks start from.
pub async fn account<S: Directory>(s: &S) -> AccountId {
    let u = s.create_user("u", "h").await.expect("user");
    s.create_account(&new_account(u, "a"))
        .await
        .expect("account")
}

/// One test per backend for each named generic check (`async fn NAME<S>(s: &S)`).
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&crate::common::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&crate::common::postgres().await).await
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// A mailbox as the server lists it (INBOX gets the Inbox role).
pub fn remote(name: &str, validity: u32) -> RemoteMailbox {
    RemoteMailbox {
        raw_name: name.into(),
        name: name.into(),
        delimiter: Some("/".into()),
        role: (name == "INBOX").then_some(Role::Inbox),
        subscribed: true,
        selectable: true,
        uidvalidity: Some(validity),
    }
}

/// The id of `account`'s mailbox `name`.
pub async fn mailbox<S: MailSync>(s: &S, a: AccountId, name: &str) -> MailboxId {
    s.mailboxes(a)
        .await
        .expect("list")
        .into_iter()
        .find(|m| m.name == name)
        .expect(name)
        .id
}

/// A small message with `Message-ID` `id`, replying to the last of `refs`.
pub fn msg(id: &str, refs: &[&str], subject: &str) -> Vec<u8> {
    let mut m = format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n"
    );
    if let Some(last) = refs.last() {
        m.push_str(&format!(
            "In-Reply-To: <{last}>\r\nReferences: {}\r\n",
            refs.iter()
                .map(|r| format!("<{r}>"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    m.push_str("\r\nbody text\r\n");
    m.into_bytes()
}

/// A new copy of `raw` at `uid` with `flags`, as the sync hands it to the store.
pub fn copy(uid: u32, raw: &[u8], flags: &[&str]) -> NewCopy {
    NewCopy {
        uid: Uid(uid),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        modseq: ModSeq(1),
        internal_date: 1_700_000_000 + i64::from(uid),
        size: raw.len() as u32,
        server_email_id: None,
        header_hash: mime::blob_id(raw),
        parsed: mime::parse(raw),
        raw: Some(bytes::Bytes::copy_from_slice(raw)),
    }
}
