//! POP3 retrieval against a real private Dovecot (one fresh instance per test).

use anyhow::{Context, Result, bail};
use mail_types::{AccountId, AccountKind, MailboxId, Security};
use pop3_sync::{Credentials, Endpoint, Error, Pop3Client, Pop3Options, sync_pop3};
use std::path::Path;
use std::sync::Arc;
use store::{MessageSummary, NewAccount, ServerSettings, SqliteStore, Store};
use testkit::{Dovecot, DovecotOptions, SeedMessage};

const USER: &str = "bob@example.org";
const PASS: &str = "p0p pass";

struct Env {
    dovecot: Dovecot,
    store: Arc<dyn Store>,
    account: AccountId,
    dir: tempfile::TempDir,
}

async fn env() -> Result<Env> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db_path(dir.path()))?);
    let user = store.create_user("bob", "x").await?;
    let account = store
        .create_account(&NewAccount {
            user,
            name: "pop".into(),
            kind: AccountKind::Pop3,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: dovecot.pop3_port(),
                security: Security::Starttls,
                username: USER.into(),
                password_enc: b"not used in tests".to_vec(),
                ca_file: Some(dovecot.ca_file().display().to_string()),
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await?;
    Ok(Env {
        dovecot,
        store,
        account,
        dir,
    })
}

fn db_path(dir: &Path) -> std::path::PathBuf {
    dir.join("pop3.sqlite")
}

impl Env {
    fn stls(&self) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: self.dovecot.pop3_port(),
            security: Security::Starttls,
            ca_file: Some(self.dovecot.ca_file().to_path_buf()),
        }
    }

    fn pop3s(&self) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: self.dovecot.pop3s_port(),
            security: Security::Tls,
            ca_file: Some(self.dovecot.ca_file().to_path_buf()),
        }
    }

    fn creds(&self) -> Credentials {
        Credentials {
            username: USER.into(),
            password: PASS.into(),
        }
    }

    fn deliver(&self, subjects: &[String]) -> Result<()> {
        for s in subjects {
            let raw =
                testkit::corpus::message("carol@example.net", USER, s, "Hello over POP3.\r\n");
            self.dovecot.deliver(USER, &raw)?;
        }
        Ok(())
    }

    async fn sync(&self, opts: &Pop3Options) -> pop3_sync::Result<pop3_sync::Pop3Report> {
        sync_pop3(
            &*self.store,
            self.account,
            &self.stls(),
            &self.creds(),
            opts,
        )
        .await
    }

    async fn inbox(&self, store: &Arc<dyn Store>) -> Result<MailboxId> {
        store
            .mailboxes(self.account)
            .await?
            .into_iter()
            .find(|m| m.raw_name == "INBOX")
            .map(|m| m.id)
            .context("no INBOX")
    }

    async fn messages(&self, store: &Arc<dyn Store>) -> Result<Vec<MessageSummary>> {
        let inbox = self.inbox(store).await?;
        Ok(store.mailbox_messages(inbox).await?)
    }
}

fn subjects(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("POP3 message {i}")).collect()
}

fn sorted_subjects(msgs: &[MessageSummary]) -> Vec<String> {
    let mut s: Vec<String> = msgs.iter().filter_map(|m| m.subject.clone()).collect();
    s.sort();
    s
}

#[tokio::test]
async fn stls_retrieval_without_duplicates_across_runs_and_restart() -> Result<()> {
    let env = env().await?;
    env.deliver(&subjects(0..5))?;

    let r = env.sync(&Pop3Options::default()).await?;
    assert_eq!((r.listed, r.retrieved, r.deleted), (5, 5, 0));
    let msgs = env.messages(&env.store).await?;
    assert_eq!(sorted_subjects(&msgs), subjects(0..5));

    // The newest message (highest message number) has the highest synthetic UID.
    let by_uid = |msgs: &[MessageSummary]| {
        let mut v: Vec<(u32, String)> = msgs
            .iter()
            .map(|m| (m.uid.0, m.subject.clone().unwrap_or_default()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect::<Vec<_>>()
    };
    assert_eq!(by_uid(&msgs), subjects(0..5));

    // Stored bytes are exactly what the server serves.
    let mut c = Pop3Client::connect_and_login(&env.stls(), &env.creds()).await?;
    let raw1 = c.retr(1).await?;
    c.quit().await?;
    let first = msgs
        .iter()
        .find(|m| m.subject.as_deref() == Some("POP3 message 0"))
        .context("message 0")?;
    let blob = env
        .store
        .blob(first.blob_id.as_deref().context("no blob")?)
        .await?
        .context("blob missing")?;
    assert_eq!(blob, raw1);

    // A second run fetches nothing.
    let r = env.sync(&Pop3Options::default()).await?;
    assert_eq!((r.listed, r.retrieved), (5, 0));
    assert_eq!(env.messages(&env.store).await?.len(), 5);

    env.deliver(&subjects(5..7))?;
    let r = env.sync(&Pop3Options::default()).await?;
    assert_eq!((r.listed, r.retrieved), (7, 2));
    let msgs = env.messages(&env.store).await?;
    assert_eq!(sorted_subjects(&msgs), subjects(0..7));
    assert_eq!(by_uid(&msgs), subjects(0..7));
    assert_eq!(env.store.pop3_entries(env.account).await?.len(), 7);

    // A restart: a fresh store over the same file remembers every UIDL.
    let reopened: Arc<dyn Store> = Arc::new(SqliteStore::open(&db_path(env.dir.path()))?);
    let r = sync_pop3(
        &*reopened,
        env.account,
        &env.stls(),
        &env.creds(),
        &Pop3Options::default(),
    )
    .await?;
    assert_eq!((r.listed, r.retrieved), (7, 0));
    assert_eq!(env.messages(&reopened).await?.len(), 7);

    // Leave-on-server: everything is still there.
    let mut c = Pop3Client::connect_and_login(&env.stls(), &env.creds()).await?;
    assert_eq!(c.uidl().await?.len(), 7);
    assert_eq!(c.stat().await?.count, 7);
    c.quit().await?;
    Ok(())
}

#[tokio::test]
async fn implicit_tls_retrieval() -> Result<()> {
    let env = env().await?;
    env.deliver(&subjects(0..3))?;
    let r = sync_pop3(
        &*env.store,
        env.account,
        &env.pop3s(),
        &env.creds(),
        &Pop3Options::default(),
    )
    .await?;
    assert_eq!((r.listed, r.retrieved), (3, 3));
    assert_eq!(
        sorted_subjects(&env.messages(&env.store).await?),
        subjects(0..3)
    );
    let inbox = env
        .store
        .mailboxes(env.account)
        .await?
        .into_iter()
        .find(|m| m.raw_name == "INBOX")
        .context("INBOX")?;
    assert_eq!(inbox.uidvalidity.0, 1);
    assert_eq!(inbox.role, Some(mail_types::Role::Inbox));
    Ok(())
}

#[tokio::test]
async fn empty_maildrop_sets_up_inbox() -> Result<()> {
    let env = env().await?;
    let r = env.sync(&Pop3Options::default()).await?;
    assert_eq!((r.listed, r.retrieved, r.deleted), (0, 0, 0));
    let inbox = env
        .store
        .mailboxes(env.account)
        .await?
        .into_iter()
        .find(|m| m.raw_name == "INBOX")
        .context("INBOX")?;
    assert_eq!(inbox.uidvalidity.0, 1);
    Ok(())
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() -> Result<()> {
    let env = env().await?;
    let bad = Credentials {
        username: USER.into(),
        password: "wrong".into(),
    };
    for ep in [env.stls(), env.pop3s()] {
        match sync_pop3(&*env.store, env.account, &ep, &bad, &Pop3Options::default()).await {
            Err(e @ Error::Auth(_)) => assert!(!e.is_transient()),
            other => bail!("expected Error::Auth, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn delete_after_zero_days_empties_server_keeps_local() -> Result<()> {
    let env = env().await?;
    env.deliver(&subjects(0..3))?;
    let opts = Pop3Options {
        delete_after_days: Some(0),
        ..Pop3Options::default()
    };
    let r = env.sync(&opts).await?;
    assert_eq!((r.listed, r.retrieved, r.deleted), (3, 3, 3));

    let mut c = Pop3Client::connect_and_login(&env.stls(), &env.creds()).await?;
    assert!(c.uidl().await?.is_empty());
    c.quit().await?;

    assert_eq!(
        sorted_subjects(&env.messages(&env.store).await?),
        subjects(0..3)
    );
    let entries = env.store.pop3_entries(env.account).await?;
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e.deleted_on_server));

    // New mail after the deletion is retrieved, and old local copies stay.
    env.deliver(&subjects(3..4))?;
    let r = env.sync(&Pop3Options::default()).await?;
    assert_eq!((r.listed, r.retrieved, r.deleted), (1, 1, 0));
    assert_eq!(env.messages(&env.store).await?.len(), 4);
    Ok(())
}

#[tokio::test]
async fn delete_after_many_days_keeps_fresh_mail() -> Result<()> {
    let env = env().await?;
    env.deliver(&subjects(0..2))?;
    let opts = Pop3Options {
        delete_after_days: Some(30),
        ..Pop3Options::default()
    };
    let r = env.sync(&opts).await?;
    assert_eq!((r.retrieved, r.deleted), (2, 0));
    let mut c = Pop3Client::connect_and_login(&env.stls(), &env.creds()).await?;
    assert_eq!(c.uidl().await?.len(), 2);
    c.quit().await?;
    Ok(())
}

#[tokio::test]
async fn malformed_and_dot_stuffed_messages_are_stored() -> Result<()> {
    let env = env().await?;
    let malformed: &[u8] = b"\xff\xfe garbage\r\nno header end";
    // Dovecot's LMTP accepts it but prepends Return-Path, Delivered-To and Received, so
    // it gains a header block; seeding puts the bytes into the Maildir exactly as given.
    env.dovecot.deliver(USER, malformed)?;
    env.dovecot.seed(
        USER,
        "INBOX",
        &[SeedMessage {
            raw: malformed.to_vec(),
            flags: vec![],
            internal_date: 1_700_000_000,
        }],
    )?;
    // Lines starting with a dot are byte-stuffed on the wire (RFC 1939 3).
    let dotted = testkit::corpus::message(
        "carol@example.net",
        USER,
        "dots",
        ".leading dot\r\n..two dots\r\n.\r\nend\r\n",
    );
    env.dovecot.deliver(USER, &dotted)?;

    let r = env.sync(&Pop3Options::default()).await?;
    assert_eq!(r.retrieved, 3);
    let msgs = env.messages(&env.store).await?;
    assert_eq!(msgs.len(), 3);
    let mut blobs = Vec::new();
    for m in &msgs {
        let id = m.blob_id.as_deref().context("no blob id")?;
        blobs.push(env.store.blob(id).await?.context("no blob")?);
    }
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert_eq!(
        blobs
            .iter()
            .filter(|b| contains(b, b"\xff\xfe garbage"))
            .count(),
        2
    );
    // The seeded one is served as stored (POP3 needs a final CRLF before the dot).
    assert!(blobs.iter().any(|b| b.starts_with(malformed)));
    assert!(
        blobs
            .iter()
            .any(|b| contains(b, b"\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"))
    );
    Ok(())
}
