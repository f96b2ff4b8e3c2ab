//! JMAP ids are permanent (RFC 8620 1.2, DESIGN.md invariant 8): an id that named an
//! object never names another, after a destroy of the newest object, after a reopen, and
//! in a store made by schema version 1 and migrated.

use mail_types::{AccountId, AccountKind, EmailId, MailboxId, Role, Security, ThreadId, UserId};
use std::path::{Path, PathBuf};
use store::prelude::*;
use store::subscriptions::NewPushSubscription;
use store::*;

/// Where a store lives, so that it can be opened again as after a restart, and the reads
/// the checks make beyond the roles they write through (`Reading` on SQLite; PostgreSQL
/// has no `Reading` yet, so there the tables are read on a connection of its own).
trait Backend {
    type S: Directory + MailSync + Outbox;
    async fn open(&self) -> Self::S;
    /// Whether Email `id` exists for JMAP.
    async fn email_exists(&self, s: &Self::S, a: AccountId, id: EmailId) -> bool;
    async fn thread_of(&self, s: &Self::S, a: AccountId, id: EmailId) -> ThreadId;
    /// The Emails of `thread`.
    async fn thread_emails(&self, s: &Self::S, a: AccountId, thread: i64) -> Vec<i64>;
}

/// A SQLite store in a file of its own.
struct Lite {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Backend for Lite {
    type S = SqliteStore;
    async fn open(&self) -> SqliteStore {
        open(&self.path)
    }
    async fn email_exists(&self, s: &SqliteStore, a: AccountId, id: EmailId) -> bool {
        !s.emails(a, &[id]).await.expect("emails").is_empty()
    }
    async fn thread_of(&self, s: &SqliteStore, a: AccountId, id: EmailId) -> ThreadId {
        s.emails(a, &[id])
            .await
            .expect("emails")
            .first()
            .expect("email")
            .thread
    }
    async fn thread_emails(&self, s: &SqliteStore, a: AccountId, thread: i64) -> Vec<i64> {
        let ids = s
            .query_emails(a, &EmailQuery::default())
            .await
            .expect("query")
            .ids;
        let views = s.emails(a, &ids).await.expect("emails");
        views
            .iter()
            .filter(|v| v.thread.0 == thread)
            .map(|v| v.id.0)
            .collect()
    }
}

/// A database of the private PostgreSQL.
struct Pg {
    url: String,
}

impl Pg {
    async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("client");
        tokio::spawn(connection);
        client
    }

    async fn one_column(&self, sql: &str, a: AccountId, id: i64) -> Vec<i64> {
        let rows = self
            .client()
            .await
            .query(sql, &[&a.0, &id])
            .await
            .expect("query");
        rows.iter().map(|r| r.get(0)).collect()
    }
}

impl Backend for Pg {
    type S = PgStore;
    async fn open(&self) -> PgStore {
        PgStore::connect(&self.url).await.expect("connect")
    }
    async fn email_exists(&self, _: &PgStore, a: AccountId, id: EmailId) -> bool {
        let sql = "SELECT id FROM email WHERE account_id = $1 AND id = $2 AND NOT orphaned";
        !self.one_column(sql, a, id.0).await.is_empty()
    }
    async fn thread_of(&self, _: &PgStore, a: AccountId, id: EmailId) -> ThreadId {
        let sql = "SELECT thread_id FROM email WHERE account_id = $1 AND id = $2";
        ThreadId(*self.one_column(sql, a, id.0).await.first().expect("email"))
    }
    async fn thread_emails(&self, _: &PgStore, a: AccountId, thread: i64) -> Vec<i64> {
        let sql = "SELECT id FROM email WHERE account_id = $1 AND thread_id = $2 AND NOT orphaned";
        self.one_column(sql, a, thread).await
    }
}

struct Env<B: Backend = Lite> {
    backend: B,
    store: B::S,
    user: UserId,
    account: AccountId,
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).expect("open store")
}

/// A SQLite store on disk with an account (INBOX, Drafts).
async fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tidings.db");
    env_on(Lite { _dir: dir, path }).await
}

/// A new PostgreSQL database with an account (INBOX, Drafts).
async fn pg_env() -> Env<Pg> {
    let url = testkit::Postgres::shared()
        .expect("private PostgreSQL")
        .fresh_database()
        .expect("database");
    env_on(Pg { url }).await
}

async fn env_on<B: Backend>(backend: B) -> Env<B> {
    let store = backend.open().await;
    let user = store.create_user("u", "h").await.expect("user");
    let account = store
        .create_account(&NewAccount {
            user,
            name: "a".into(),
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
        .expect("account");
    let remote = |name: &str, role| RemoteMailbox {
        raw_name: name.into(),
        name: name.into(),
        delimiter: Some("/".into()),
        role,
        subscribed: true,
        selectable: true,
        uidvalidity: Some(7),
    };
    store
        .apply_mailbox_list(
            account,
            &[
                remote("INBOX", Some(Role::Inbox)),
                remote("Drafts", Some(Role::Drafts)),
            ],
        )
        .await
        .expect("mailbox list");
    Env {
        backend,
        store,
        user,
        account,
    }
}

impl<B: Backend> Env<B> {
    /// Closes the store and opens it again, as a restart does.
    async fn reopen(&mut self) {
        self.store = self.backend.open().await;
    }

    async fn inbox(&self) -> MailboxId {
        self.store
            .mailboxes(self.account)
            .await
            .expect("mailboxes")
            .into_iter()
            .find(|m| m.role == Some(Role::Inbox))
            .expect("INBOX")
            .id
    }
}

fn message(n: u32) -> Vec<u8> {
    // Each in a thread of its own (no references, distinct subjects).
    format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: message {n}\r\n\
         Message-ID: <m{n}@example.org>\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

/// Create, destroy the newest, create, destroy that one, reopen, create: each new id is
/// above every id handed out before. `create` and `destroy` run against the current store.
async fn never_reused<B, C, D>(e: &mut Env<B>, what: &str, mut create: C, mut destroy: D)
where
    B: Backend,
    C: AsyncFnMut(&Env<B>, u32) -> i64,
    D: AsyncFnMut(&Env<B>, i64),
{
    let first = create(e, 1).await;
    let newest = create(e, 2).await;
    assert!(newest > first, "{what}: {newest} after {first}");
    destroy(e, newest).await;
    let next = create(e, 3).await;
    assert!(
        next > newest,
        "{what}: id {next} after the newest ({newest}) was destroyed"
    );
    destroy(e, next).await;
    e.reopen().await;
    let after_restart = create(e, 4).await;
    assert!(
        after_restart > next,
        "{what}: id {after_restart} after a restart; {next} was destroyed before it"
    );
}

async fn append<B: Backend>(e: &Env<B>, n: u32) -> EmailId {
    let inbox = e.inbox().await;
    e.store
        .append_email(
            e.account,
            AppendRequest {
                mailbox: inbox,
                raw: message(n),
                keywords: vec![],
                received_at: 1_700_000_000 + i64::from(n),
            },
        )
        .await
        .expect("append")
        .expect("appended")
}

async fn thread_of<B: Backend>(e: &Env<B>, id: EmailId) -> ThreadId {
    e.backend.thread_of(&e.store, e.account, id).await
}

async fn destroy_email<B: Backend>(e: &Env<B>, id: i64) {
    let r = e
        .store
        .destroy_emails(e.account, vec![EmailId(id)])
        .await
        .expect("destroy");
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    assert!(
        !e.backend
            .email_exists(&e.store, e.account, EmailId(id))
            .await,
        "Email {id} is gone"
    );
}

/// One test per backend for each check of a mail id (`async fn NAME<B>(e: &mut Env<B>)`).
mod sqlite {
    #[tokio::test]
    async fn email_ids_are_never_reused() {
        super::email_ids_are_never_reused(&mut super::env().await).await
    }
    #[tokio::test]
    async fn thread_ids_are_never_reused() {
        super::thread_ids_are_never_reused(&mut super::env().await).await
    }
    #[tokio::test]
    async fn mailbox_ids_are_never_reused() {
        super::mailbox_ids_are_never_reused(&mut super::env().await).await
    }
}

mod postgres {
    #[tokio::test]
    async fn email_ids_are_never_reused() {
        super::email_ids_are_never_reused(&mut super::pg_env().await).await
    }
    #[tokio::test]
    async fn thread_ids_are_never_reused() {
        super::thread_ids_are_never_reused(&mut super::pg_env().await).await
    }
    #[tokio::test]
    async fn mailbox_ids_are_never_reused() {
        super::mailbox_ids_are_never_reused(&mut super::pg_env().await).await
    }
}

async fn email_ids_are_never_reused<B: Backend>(e: &mut Env<B>) {
    never_reused(e, "Email", async |e, n| append(e, n).await.0, destroy_email).await;
}

async fn thread_ids_are_never_reused<B: Backend>(e: &mut Env<B>) {
    // A thread goes with its only Email.
    never_reused(
        e,
        "Thread",
        async |e, n| {
            let email = append(e, n).await;
            thread_of(e, email).await.0
        },
        async |e, thread| {
            let of_thread = e.backend.thread_emails(&e.store, e.account, thread).await;
            assert_eq!(of_thread.len(), 1, "one Email in thread {thread}");
            destroy_email(e, of_thread[0]).await;
        },
    )
    .await;
}

async fn mailbox_ids_are_never_reused<B: Backend>(e: &mut Env<B>) {
    never_reused(
        e,
        "Mailbox",
        async |e, n| {
            e.store
                .create_mailbox(e.account, &format!("Folder {n}"), None, true)
                .await
                .expect("create")
                .expect("created")
                .0
        },
        async |e, id| {
            e.store
                .destroy_mailbox(e.account, MailboxId(id), true)
                .await
                .expect("destroy")
                .expect("destroyed");
            assert!(
                !e.store
                    .mailboxes(e.account)
                    .await
                    .expect("mailboxes")
                    .iter()
                    .any(|m| m.id.0 == id),
                "Mailbox {id} is gone"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn identity_ids_are_never_reused() {
    let mut e = env().await;
    never_reused(
        &mut e,
        "Identity",
        async |e, n| {
            e.store
                .create_identity(&IdentityRecord {
                    id: 0,
                    account: e.account,
                    name: format!("Me {n}"),
                    email: format!("me{n}@example.org"),
                    reply_to: "null".into(),
                    bcc: "null".into(),
                    text_signature: String::new(),
                    html_signature: String::new(),
                    may_delete: true,
                })
                .await
                .expect("create identity")
        },
        async |e, id| {
            assert!(
                e.store
                    .destroy_identity(e.account, id)
                    .await
                    .expect("destroy")
            );
        },
    )
    .await;
}

#[tokio::test]
async fn submission_ids_are_never_reused() {
    let mut e = env().await;
    never_reused(
        &mut e,
        "EmailSubmission",
        async |e, n| {
            let email = append(e, n).await;
            e.store
                .create_submission(&NewSubmission {
                    account: e.account,
                    identity: 1,
                    email,
                    thread: thread_of(e, email).await,
                    envelope_json: "{}".into(),
                    mail_from: "a@example.org".into(),
                    rcpt_to: vec!["b@example.org".into()],
                    raw: message(n),
                    blob_id: None,
                    draft: DraftFate::Keep,
                    message_id: Some(format!("m{n}@example.org")),
                    // Far ahead: nothing sends it.
                    send_at: i64::MAX / 2,
                    sent_copy: SentCopy::None,
                })
                .await
                .expect("create submission")
        },
        async |e, id| {
            assert!(
                e.store
                    .destroy_submission(e.account, id)
                    .await
                    .expect("destroy")
            );
        },
    )
    .await;
}

#[tokio::test]
async fn push_subscription_ids_are_never_reused() {
    let mut e = env().await;
    never_reused(
        &mut e,
        "PushSubscription",
        async |e, n| {
            e.store
                .create_push_subscription(&NewPushSubscription {
                    user: e.user,
                    device_client_id: format!("device {n}"),
                    url: format!("https://127.0.0.1/push/{n}"),
                    keys: None,
                    verification_code: format!("code {n}"),
                    expires: None,
                    types: None,
                })
                .await
                .expect("create subscription")
        },
        async |e, id| {
            assert!(
                e.store
                    .delete_push_subscription(id, Some(e.user))
                    .await
                    .expect("delete")
            );
        },
    )
    .await;
}

/// A store written by schema version 1 (today's schema file, as a v1 build left it, with
/// the newest Email, thread and mailbox destroyed before the upgrade): after the
/// migration every object keeps its id, counts, triggers and full-text index still work,
/// and no id at or below an old one (destroyed ones included) is handed out.
#[tokio::test]
async fn a_version_1_store_keeps_its_ids_and_reuses_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tidings.db");
    {
        let c = rusqlite::Connection::open(&path).expect("sqlite");
        c.execute_batch(include_str!("../src/sqlite/schema.sql"))
            .expect("v1 schema");
        c.execute_batch(
            "PRAGMA foreign_keys = ON;
             INSERT INTO user (id, name, password_hash) VALUES (1, 'u', 'h');
             INSERT INTO account (id, user_id, name, kind, host, port, security, username,
                 password_enc) VALUES (1, 1, 'a', 'imap', 'h', 1, 'none', 'u', x'00');
             INSERT INTO mailbox (id, account_id, raw_name, name, role, uidvalidity)
                 VALUES (1, 1, 'INBOX', 'INBOX', 'inbox', 7), (2, 1, 'Drafts', 'Drafts',
                 'drafts', 7), (3, 1, 'Sub', 'Sub', NULL, 7);
             UPDATE mailbox SET parent_id = 1 WHERE id = 3;
             INSERT INTO thread (id, account_id) VALUES (1, 1), (2, 1), (3, 1);
             INSERT INTO email (id, account_id, identity, thread_id, subject, keywords,
                 received_at) VALUES
                 (1, 1, 'h:1', 1, 'first kept', '[]', 1),
                 (2, 1, 'h:2', 2, 'second kept', '[\"$seen\"]', 2),
                 (3, 1, 'h:3', 3, 'destroyed', '[]', 3);
             INSERT INTO copy (mailbox_id, uid, email_id, flags, received_at) VALUES
                 (1, 1, 1, '', 1), (1, 2, 2, '\\Seen', 2), (3, 1, 3, '', 3);
             INSERT INTO email_fts_head (rowid, subject, addresses)
                 VALUES (1, 'first kept', ''), (2, 'second kept', '');
             INSERT INTO identity (id, account_id, email) VALUES (1, 1, 'a@example.org'),
                 (2, 1, 'b@example.org');
             INSERT INTO submission (id, account_id, identity_id, email_id, thread_id,
                 envelope, mail_from, raw, send_at, created_at, phase)
                 VALUES (1, 1, 1, 1, 1, '{}', 'a@example.org', x'', 0, 0, 'done'),
                        (2, 1, 1, 2, 2, '{}', 'a@example.org', x'', 0, 0, 'done');
             INSERT INTO push_subscription (id, user_id, device_client_id, url,
                 verification_code) VALUES (1, 1, 'd', 'https://127.0.0.1/p', 'c'),
                 (2, 1, 'd2', 'https://127.0.0.1/p2', 'c2');
             -- The newest of each destroyed by v1, as its change log remembers.
             DELETE FROM email WHERE id = 3;
             DELETE FROM thread WHERE id = 3;
             DELETE FROM mailbox WHERE id = 3;
             DELETE FROM identity WHERE id = 2;
             DELETE FROM submission WHERE id = 2;
             DELETE FROM push_subscription WHERE id = 2;
             INSERT INTO change (account_id, state, type, object_id, op) VALUES
                 (1, 1, 'Email', 3, 0), (1, 2, 'Email', 3, 2),
                 (1, 1, 'Thread', 3, 0), (1, 2, 'Thread', 3, 2),
                 (1, 1, 'Mailbox', 3, 0), (1, 2, 'Mailbox', 3, 2),
                 (1, 1, 'Identity', 2, 0), (1, 2, 'Identity', 2, 2),
                 (1, 1, 'EmailSubmission', 2, 0), (1, 2, 'EmailSubmission', 2, 2);
             UPDATE account SET state = 2 WHERE id = 1;
             PRAGMA user_version = 1;",
        )
        .expect("v1 data");
    }
    let s = open(&path);
    let a = AccountId(1);
    // Everything kept its id, and the trigger-kept counts are those of before.
    let boxes = s.mailboxes(a).await.expect("mailboxes");
    let mut ids: Vec<i64> = boxes.iter().map(|m| m.id.0).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    let views = s.mailbox_views(a).await.expect("views");
    let inbox = views.iter().find(|v| v.id == MailboxId(1)).expect("INBOX");
    assert_eq!((inbox.total_emails, inbox.unread_emails), (2, 1));
    let emails = s
        .emails(a, &[EmailId(1), EmailId(2), EmailId(3)])
        .await
        .expect("emails");
    let mut got: Vec<(i64, i64)> = emails.iter().map(|e| (e.id.0, e.thread.0)).collect();
    got.sort_unstable();
    assert_eq!(got, vec![(1, 1), (2, 2)]);
    assert!(
        emails.iter().all(|e| e.mailboxes == vec![MailboxId(1)]),
        "the copies are still there: {emails:?}"
    );
    assert_eq!(
        s.search(a, "second").await.expect("search"),
        vec![EmailId(2)]
    );
    // The counting triggers came back with the rebuilt tables: $seen on Email 1 counts.
    let r = s
        .update_emails(
            a,
            vec![EmailPatch {
                email: EmailId(1),
                keywords_add: vec!["$seen".into()],
                keywords_remove: vec![],
                mailboxes_add: vec![],
                mailboxes_remove: vec![],
            }],
        )
        .await
        .expect("update");
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    let views = s.mailbox_views(a).await.expect("views");
    let inbox = views.iter().find(|v| v.id == MailboxId(1)).expect("INBOX");
    assert_eq!(inbox.unread_emails, 0, "the $seen trigger still counts");
    // New objects never take an id that existed, destroyed ones included.
    let email = s
        .append_email(
            a,
            AppendRequest {
                mailbox: MailboxId(1),
                raw: message(9),
                keywords: vec![],
                received_at: 9,
            },
        )
        .await
        .expect("append")
        .expect("appended");
    assert!(email.0 > 3, "new Email {email:?}");
    let thread = s
        .emails(a, &[email])
        .await
        .expect("emails")
        .first()
        .expect("email")
        .thread;
    assert!(thread.0 > 3, "new Thread {thread:?}");
    let mb = s
        .create_mailbox(a, "New", None, true)
        .await
        .expect("create")
        .expect("created");
    assert!(mb.0 > 3, "new Mailbox {mb:?}");
    let identity = s
        .create_identity(&IdentityRecord {
            id: 0,
            account: a,
            name: String::new(),
            email: "c@example.org".into(),
            reply_to: "null".into(),
            bcc: "null".into(),
            text_signature: String::new(),
            html_signature: String::new(),
            may_delete: true,
        })
        .await
        .expect("identity");
    assert!(identity > 2, "new Identity {identity}");
    let sub = s
        .create_submission(&NewSubmission {
            account: a,
            identity: 1,
            email,
            thread,
            envelope_json: "{}".into(),
            mail_from: "a@example.org".into(),
            rcpt_to: vec!["b@example.org".into()],
            raw: message(9),
            blob_id: None,
            draft: DraftFate::Keep,
            message_id: None,
            send_at: i64::MAX / 2,
            sent_copy: SentCopy::None,
        })
        .await
        .expect("submission");
    assert!(sub > 2, "new EmailSubmission {sub}");
    // Push subscriptions have no change log: ids above the largest left.
    let push = s
        .create_push_subscription(&NewPushSubscription {
            user: UserId(1),
            device_client_id: "d3".into(),
            url: "https://127.0.0.1/p3".into(),
            keys: None,
            verification_code: "c3".into(),
            expires: None,
            types: None,
        })
        .await
        .expect("push");
    assert!(push > 1, "new PushSubscription {push}");
    // And opening again changes nothing (the migration ran once).
    drop(s);
    let s = open(&path);
    assert_eq!(
        s.emails(a, &[email]).await.expect("emails").len(),
        1,
        "the new Email is still there"
    );
}
