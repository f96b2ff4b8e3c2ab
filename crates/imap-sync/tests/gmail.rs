//! Gmail synced the Gmail way (X-GM-EXT-1), against a Gmail-shaped server
//! (`testkit::gmail`: hoodiecrow-imap with Gmail's folder rules) on loopback.

use anyhow::{Context, Result};
use imap_sync::sync::AccountSync;
use imap_sync::{Credentials, Endpoint, Login, ProviderChoice, Session};
use mail_types::{AccountId, AccountKind, EmailId, MailboxId, Role, Security};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use store::{EmailView, MailboxRecord, NewAccount, ServerSettings, SqliteStore, Store};
use testkit::gmail::{self, ServerOptions};

struct Env {
    server: gmail::Server,
    store: Arc<dyn Store>,
    account: AccountId,
    _dir: tempfile::TempDir,
}

async fn env(opts: ServerOptions) -> Result<Env> {
    let server = gmail::Server::start(opts)?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let user = store.create_user("alice", "x").await?;
    let account = store
        .create_account(&NewAccount {
            user,
            name: "gmail".into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: server.port(),
                security: Security::None,
                username: gmail::USER.into(),
                password_enc: vec![],
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await?;
    Ok(Env {
        server,
        store,
        account,
        _dir: dir,
    })
}

impl Env {
    async fn session(&self) -> Result<Session> {
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port: self.server.port(),
            security: Security::None,
            ca_file: None,
        };
        let login = Login::Password(Credentials {
            username: gmail::USER.into(),
            password: gmail::PASSWORD.into(),
        });
        Ok(Session::connect_profile(&ep, &login, ProviderChoice::Auto).await?)
    }

    async fn sync_all(&self) -> Result<imap_sync::sync::SyncReport> {
        let mut s = self.session().await?;
        let r = AccountSync::new(self.store.clone(), self.account)
            .sync_all(&mut s)
            .await?;
        s.logout().await;
        Ok(r)
    }

    async fn mailboxes(&self) -> Result<BTreeMap<String, MailboxRecord>> {
        Ok(self
            .store
            .mailboxes(self.account)
            .await?
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect())
    }

    /// Every Email of the account, by subject.
    async fn emails(&self) -> Result<BTreeMap<String, Vec<EmailView>>> {
        let mut ids: BTreeSet<i64> = BTreeSet::new();
        for m in self.store.mailboxes(self.account).await? {
            for s in self.store.mailbox_messages(m.id).await? {
                ids.insert(s.email.0);
            }
        }
        let ids: Vec<EmailId> = ids.into_iter().map(EmailId).collect();
        let mut out: BTreeMap<String, Vec<EmailView>> = BTreeMap::new();
        for e in self.store.emails(self.account, &ids).await? {
            out.entry(e.subject.clone().unwrap_or_default())
                .or_default()
                .push(e);
        }
        Ok(out)
    }

    async fn names(&self, ids: &[MailboxId]) -> Result<BTreeSet<String>> {
        let by_id: BTreeMap<MailboxId, String> = self
            .mailboxes()
            .await?
            .into_values()
            .map(|m| (m.id, m.name))
            .collect();
        Ok(ids.iter().filter_map(|i| by_id.get(i).cloned()).collect())
    }
}

fn message(subject: &str, id: &str, extra: &str) -> String {
    format!(
        "From: Bob <bob@example.com>\r\nTo: alice@gmail.test\r\nSubject: {subject}\r\n\
         Message-ID: <{id}@example.com>\r\nDate: Mon, 7 Dec 2026 06:00:00 +0000\r\n{extra}\
         Content-Type: text/plain\r\n\r\nThe body of {subject}.\r\n"
    )
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// One message with three labels is one Email in three label mailboxes and All Mail; its
/// header and its body cross the wire once each, however many folders show it.
#[tokio::test]
async fn a_message_with_three_labels_is_one_email_fetched_once() -> Result<()> {
    let env = env(ServerOptions::default()).await?;
    let msgid = env.server.add_message(
        &message("Three labels", "three", ""),
        &["\\Inbox", "Work", "\\Important"],
        // Starred: Gmail also shows it in [Gmail]/Starred.
        &["\\Seen", "\\Flagged"],
        None,
    )?;
    let archived =
        env.server
            .add_message(&message("Archived", "archived", ""), &["Travel"], &[], None)?;
    env.sync_all().await?;

    let boxes = env.mailboxes().await?;
    assert_eq!(
        boxes
            .get("[Gmail]/All Mail")
            .context("All Mail is a mailbox")?
            .role,
        Some(Role::All)
    );
    assert!(
        !boxes.values().any(|m| m.role == Some(Role::Flagged)),
        "Starred is the $flagged keyword, not a mailbox: {:?}",
        boxes.keys().collect::<Vec<_>>()
    );

    let emails = env.emails().await?;
    let three = emails.get("Three labels").context("the Email")?;
    assert_eq!(three.len(), 1, "one Email, not one per folder");
    assert_eq!(
        env.names(&three[0].mailboxes).await?,
        set(&["INBOX", "Work", "[Gmail]/Important", "[Gmail]/All Mail"])
    );
    assert!(three[0].keywords.contains(&"$seen".to_string()));
    assert!(three[0].keywords.contains(&"$flagged".to_string()));
    assert!(three[0].blob_id.is_some(), "the body is stored");
    let arch = emails.get("Archived").context("the archived Email")?;
    assert_eq!(arch.len(), 1);
    assert_eq!(
        env.names(&arch[0].mailboxes).await?,
        set(&["Travel", "[Gmail]/All Mail"])
    );

    for id in [&msgid, &archived] {
        let seen = env.server.message(id)?;
        assert_eq!(seen.header_fetches, 1, "header FETCHes of {id}: {seen:?}");
        assert_eq!(seen.body_fetches, 1, "body FETCHes of {id}: {seen:?}");
    }

    // A second pass fetches nothing again.
    env.sync_all().await?;
    let seen = env.server.message(&msgid)?;
    assert_eq!((seen.header_fetches, seen.body_fetches), (1, 1));
    Ok(())
}

/// A label added and one removed by another client show up as mailboxIds after a sync.
#[tokio::test]
async fn labels_changed_on_the_server_show_up() -> Result<()> {
    let env = env(ServerOptions::default()).await?;
    let msgid = env.server.add_message(
        &message("Relabelled", "relabelled", ""),
        &["\\Inbox", "Work"],
        &[],
        None,
    )?;
    env.sync_all().await?;
    env.server
        .change_labels(&msgid, &["Travel"], &["\\Inbox"])?;
    env.sync_all().await?;
    let emails = env.emails().await?;
    let e = emails.get("Relabelled").context("the Email")?;
    assert_eq!(e.len(), 1);
    assert_eq!(
        env.names(&e[0].mailboxes).await?,
        set(&["Work", "Travel", "[Gmail]/All Mail"])
    );
    let seen = env.server.message(&msgid)?;
    assert_eq!((seen.header_fetches, seen.body_fetches), (1, 1));
    Ok(())
}

/// Emails with the same X-GM-THRID share a thread, and only those: Gmail's conversations
/// are taken as they are, not rebuilt from headers.
#[tokio::test]
async fn x_gm_thrid_makes_the_threads() -> Result<()> {
    let env = env(ServerOptions::default()).await?;
    // Same conversation by Gmail, nothing in the headers links them.
    env.server.add_message(
        &message("Lunch?", "lunch", ""),
        &["\\Inbox"],
        &[],
        Some("9001"),
    )?;
    env.server.add_message(
        &message("Different subject", "other", ""),
        &["\\Inbox"],
        &[],
        Some("9001"),
    )?;
    // A reply by its headers that Gmail keeps in a conversation of its own.
    env.server.add_message(
        &message(
            "Re: Lunch?",
            "reply",
            "In-Reply-To: <lunch@example.com>\r\n",
        ),
        &["\\Inbox"],
        &[],
        Some("9002"),
    )?;
    env.sync_all().await?;
    let emails = env.emails().await?;
    let thread = |s: &str| -> Result<i64> { Ok(emails.get(s).context(s.to_string())?[0].thread.0) };
    assert_eq!(thread("Lunch?")?, thread("Different subject")?);
    assert_ne!(thread("Lunch?")?, thread("Re: Lunch?")?);
    Ok(())
}

/// A server that advertises X-GM-EXT-1 without an `\All` mailbox is synced folder by
/// folder: every message is there, nothing is lost.
#[tokio::test]
async fn x_gm_ext_without_all_mail_falls_back_to_folders() -> Result<()> {
    let env = env(ServerOptions {
        no_all_mail: true,
        ..ServerOptions::default()
    })
    .await?;
    env.server.add_message(
        &message("Hello", "hello", ""),
        &["\\Inbox", "Work"],
        &[],
        None,
    )?;
    env.sync_all().await?;
    let emails = env.emails().await?;
    let e = emails.get("Hello").context("the Email")?;
    let mut names = BTreeSet::new();
    for v in e {
        names.extend(env.names(&v.mailboxes).await?);
    }
    assert!(
        names.contains("INBOX") && names.contains("Work"),
        "{names:?}"
    );
    for v in e {
        assert!(v.blob_id.is_some());
    }
    Ok(())
}

/// A server whose X-GM-MSGID is not a number: the messages are fetched the ordinary way
/// (no panic, nothing lost), and labels naming folders that do not exist change nothing.
#[tokio::test]
async fn a_lying_x_gm_msgid_is_fetched_the_ordinary_way() -> Result<()> {
    let env = env(ServerOptions {
        bad_msgid: true,
        ..ServerOptions::default()
    })
    .await?;
    env.server.add_message(
        &message("Liar", "liar", ""),
        &["\\Inbox", "Work", "NoSuchFolder"],
        &[],
        None,
    )?;
    env.sync_all().await?;
    let emails = env.emails().await?;
    let e = emails.get("Liar").context("the Email")?;
    let mut names = BTreeSet::new();
    for v in e {
        names.extend(env.names(&v.mailboxes).await?);
        assert!(v.blob_id.is_some(), "its body is stored");
    }
    assert_eq!(names, set(&["INBOX", "Work", "[Gmail]/All Mail"]));
    // A second pass neither fails nor duplicates.
    env.sync_all().await?;
    let again = env.emails().await?;
    assert_eq!(
        again.get("Liar").map(Vec::len),
        emails.get("Liar").map(Vec::len)
    );
    Ok(())
}

/// The wire cost of an initial sync of a Gmail account, the Gmail way and as a client that
/// does not know Gmail (the same server with X-GM-EXT-1 not advertised), in one run:
/// `cargo test -p imap-sync --test gmail wire_cost -- --ignored --nocapture`
/// (`GMAIL_BENCH_N` messages, default 300, each in INBOX, Work and Important).
#[tokio::test]
#[ignore = "a measurement, run by hand (see BENCHMARKS.md)"]
async fn wire_cost() -> Result<()> {
    let n: usize = std::env::var("GMAIL_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
        .min(20_000);
    for (what, no_extension) in [
        ("Gmail way (X-GM-EXT-1)", false),
        ("folder by folder", true),
    ] {
        let env = env(ServerOptions {
            no_extension,
            ..ServerOptions::default()
        })
        .await?;
        for i in 0..n {
            env.server.add_message(
                &message(&format!("Message {i}"), &format!("m{i}"), ""),
                &["\\Inbox", "Work", "\\Important"],
                &[],
                None,
            )?;
        }
        let start = std::time::Instant::now();
        env.sync_all().await?;
        let took = start.elapsed();
        let (headers, bodies) = env.server.fetch_counts()?;
        let emails: usize = env.emails().await?.values().map(Vec::len).sum();
        println!(
            "{what}: {n} messages -> {emails} Emails, {headers} header FETCHes, \
             {bodies} body FETCHes, initial sync {took:.2?}"
        );
        assert_eq!(emails, n);
    }
    Ok(())
}
