//! Gmail write-back the Gmail way: mailboxIds changes of a Gmail message become label
//! changes on its All Mail copy, archive removes `\Inbox`, delete moves it to Trash;
//! against a Gmail-shaped server (`testkit::gmail`) on loopback, through the real engine
//! and its outbox.

use anyhow::{Context, Result, bail};
use engine::{Engine, PasswordSource};
use imap_sync::sync::AccountSync;
use imap_sync::{Credentials, Endpoint, Login, ProviderChoice, Session};
use mail_types::{AccountId, AccountKind, EmailId, MailboxId, Security};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{AppendRequest, EmailPatch, NewAccount, ServerSettings, SqliteStore, Store};
use testkit::gmail::{self, ServerMessage, ServerOptions};

const DEADLINE: Duration = Duration::from_secs(20);

fn plain_passwords() -> PasswordSource {
    Arc::new(|a: &store::AccountRecord| Ok(String::from_utf8(a.server.password_enc.clone())?))
}

async fn wait_status(store: &dyn Store, id: AccountId, want: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        let a = store.account(id).await?.context("account")?;
        if a.status.name() == want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("account {id} never reached status {want}")
}

/// Waits until the server's view of a message satisfies `ok`.
async fn wait_server(
    server: &gmail::Server,
    msgid: &str,
    what: &str,
    ok: impl Fn(&ServerMessage) -> bool,
) -> Result<ServerMessage> {
    let start = Instant::now();
    loop {
        let m = server.message(msgid)?;
        if ok(&m) {
            return Ok(m);
        }
        if start.elapsed() > DEADLINE {
            bail!("the server never showed {what}: {m:?}");
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn mailbox_ids(store: &dyn Store, account: AccountId) -> Result<BTreeMap<String, MailboxId>> {
    Ok(store
        .mailboxes(account)
        .await?
        .into_iter()
        .map(|m| (m.name, m.id))
        .collect())
}

/// The Email with this subject, and the names of its mailboxes.
async fn email(
    store: &dyn Store,
    account: AccountId,
    subject: &str,
) -> Result<Option<(EmailId, BTreeSet<String>)>> {
    let names: BTreeMap<MailboxId, String> = mailbox_ids(store, account)
        .await?
        .into_iter()
        .map(|(n, id)| (id, n))
        .collect();
    let mut ids = BTreeSet::new();
    for m in names.keys() {
        for s in store.mailbox_messages(*m).await? {
            if s.subject.as_deref() == Some(subject) {
                ids.insert(s.email);
            }
        }
    }
    let ids: Vec<EmailId> = ids.into_iter().collect();
    if ids.len() > 1 {
        bail!("{subject:?} is {} Emails", ids.len());
    }
    let Some(view) = store.emails(account, &ids).await?.into_iter().next() else {
        return Ok(None);
    };
    let boxes = view
        .mailboxes
        .iter()
        .filter_map(|m| names.get(m).cloned())
        .collect();
    Ok(Some((view.id, boxes)))
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn message(subject: &str) -> String {
    format!(
        "From: Bob <bob@example.com>\r\nTo: alice@gmail.test\r\nSubject: {subject}\r\n\
         Message-ID: <{}@example.com>\r\nDate: Mon, 7 Dec 2026 06:00:00 +0000\r\n\r\nHello.\r\n",
        subject.replace(' ', ".")
    )
}

async fn sync_now(
    server: &gmail::Server,
    store: &Arc<dyn Store>,
    account: AccountId,
) -> Result<()> {
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port: server.port(),
        security: Security::None,
        ca_file: None,
    };
    let login = Login::Password(Credentials {
        username: gmail::USER.into(),
        password: gmail::PASSWORD.into(),
    });
    let mut s = Session::connect_profile(&ep, &login, ProviderChoice::Auto).await?;
    AccountSync::new(store.clone(), account)
        .sync_all(&mut s)
        .await?;
    s.logout().await;
    Ok(())
}

struct Env {
    server: gmail::Server,
    store: Arc<dyn Store>,
    account: AccountId,
    engine: Engine,
    _dir: tempfile::TempDir,
}

/// A Gmail-shaped server with these messages (subject, labels), and the engine syncing it.
async fn start(messages: &[(&str, &[&str])]) -> Result<(Env, Vec<String>)> {
    let server = gmail::Server::start(ServerOptions::default())?;
    let mut ids = Vec::new();
    for (subject, labels) in messages {
        ids.push(server.add_message(&message(subject), labels, &[], None)?);
    }
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
                password_enc: gmail::PASSWORD.as_bytes().to_vec(),
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await?;
    let mut engine = Engine::new(store.clone(), plain_passwords());
    engine.start_all().await?;
    wait_status(store.as_ref(), account, "ok").await?;
    Ok((
        Env {
            server,
            store,
            account,
            engine,
            _dir: dir,
        },
        ids,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_changes_are_label_changes_archive_and_trash() -> Result<()> {
    let (env, ids) = start(&[("Labelled", &["\\Inbox", "Work"])]).await?;
    let Env {
        server,
        store,
        account,
        engine,
        ..
    } = env;
    let msgid = ids[0].clone();

    let boxes = mailbox_ids(store.as_ref(), account).await?;
    let (id, held) = email(store.as_ref(), account, "Labelled")
        .await?
        .context("the Email")?;
    assert_eq!(held, set(&["INBOX", "Work", "[Gmail]/All Mail"]));
    let mb = |n: &str| boxes.get(n).copied().context(n.to_string());
    let patch = |add: Vec<MailboxId>, remove: Vec<MailboxId>| EmailPatch {
        email: id,
        keywords_add: vec![],
        keywords_remove: vec![],
        mailboxes_add: add,
        mailboxes_remove: remove,
    };

    // A label added in JMAP is an X-GM-LABELS change on the server, and its folder follows.
    let r = store
        .update_emails(account, vec![patch(vec![mb("Travel")?], vec![])])
        .await?;
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    let seen = wait_server(&server, &msgid, "the Travel label", |m| {
        m.labels.iter().any(|l| l == "Travel")
    })
    .await?;
    assert!(seen.folders.contains(&"Travel".to_string()), "{seen:?}");
    assert_eq!(seen.header_fetches, 1, "nothing fetched again: {seen:?}");

    // Archive: Inbox removed, the message stays in All Mail and its other labels.
    store
        .update_emails(account, vec![patch(vec![], vec![mb("INBOX")?])])
        .await?;
    let seen = wait_server(&server, &msgid, "no \\Inbox", |m| {
        !m.labels.iter().any(|l| l == "\\Inbox")
    })
    .await?;
    assert_eq!(
        seen.folders,
        vec!["Travel", "Work", "[Gmail]/All Mail"],
        "{seen:?}"
    );
    sync_now(&server, &store, account).await?;
    let (same, held) = email(store.as_ref(), account, "Labelled")
        .await?
        .context("the Email after archiving")?;
    assert_eq!(same, id, "the Email keeps its id");
    assert_eq!(held, set(&["Travel", "Work", "[Gmail]/All Mail"]));

    // Delete, as Gmail's web client does it: into Trash, out of All Mail and every label.
    store
        .update_emails(
            account,
            vec![patch(
                vec![mb("[Gmail]/Trash")?],
                vec![mb("Travel")?, mb("Work")?, mb("[Gmail]/All Mail")?],
            )],
        )
        .await?;
    let seen = wait_server(&server, &msgid, "the message in Trash", |m| {
        m.folders == vec!["[Gmail]/Trash".to_string()]
    })
    .await?;
    assert_eq!(seen.header_fetches, 1, "{seen:?}");
    sync_now(&server, &store, account).await?;
    let (same, held) = email(store.as_ref(), account, "Labelled")
        .await?
        .context("the Email after deleting")?;
    assert_eq!(same, id, "the Email keeps its id in Trash (X-GM-MSGID)");
    assert_eq!(held, set(&["[Gmail]/Trash"]));
    engine.shutdown().await;
    Ok(())
}

/// A draft Tidings APPENDs to Gmail's Drafts shows up in All Mail too (Gmail files it
/// there under a new X-GM-MSGID): it stays one Email, in both mailboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appended_draft_stays_one_email() -> Result<()> {
    let (env, _) = start(&[]).await?;
    let boxes = mailbox_ids(env.store.as_ref(), env.account).await?;
    let drafts = boxes.get("[Gmail]/Drafts").copied().context("Drafts")?;
    let raw = message("My draft");
    let id = env
        .store
        .append_email(
            env.account,
            AppendRequest {
                mailbox: drafts,
                raw: raw.into_bytes(),
                keywords: vec!["$draft".into(), "$seen".into()],
                received_at: 1_796_000_000,
            },
        )
        .await?
        .map_err(|e| anyhow::anyhow!("refused: {e}"))?;
    // The outbox APPENDs it; Gmail puts a copy into All Mail.
    let start = Instant::now();
    loop {
        sync_now(&env.server, &env.store, env.account).await?;
        let got = email(env.store.as_ref(), env.account, "My draft").await?;
        if let Some((same, held)) = &got
            && held.contains("[Gmail]/All Mail")
        {
            assert_eq!(*same, id, "the draft keeps its Email id");
            assert_eq!(*held, set(&["[Gmail]/Drafts", "[Gmail]/All Mail"]));
            break;
        }
        if start.elapsed() > DEADLINE {
            bail!("the draft never showed in All Mail as one Email: {got:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let engine = env.engine;
    engine.shutdown().await;
    Ok(())
}
