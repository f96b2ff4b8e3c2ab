//! The engine against a real Dovecot: live watching (NOTIFY, or IDLE without it), a
//! wrong password that does not stop the other accounts, and the outbox workers woken for
//! their own account's work.

use anyhow::{Context, Result, bail};
use engine::{Engine, EngineOptions, PasswordSource};
use mail_types::{AccountId, AccountKind, Security, SyncStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::events::{AccountChange, PushType};
use store::{NewAccount, ServerSettings, SqliteStore, Store};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, corpus};
use tokio::sync::broadcast;

const DEADLINE: Duration = Duration::from_secs(20);

async fn add_account(
    store: &dyn Store,
    dovecot: &Dovecot,
    user: mail_types::UserId,
    name: &str,
    login: &str,
    password: &str,
) -> Result<AccountId> {
    Ok(store
        .create_account(&NewAccount {
            user,
            name: name.into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: dovecot.imap_port(),
                security: Security::Starttls,
                username: login.into(),
                // The test's password source reads it back as is.
                password_enc: password.as_bytes().to_vec(),
                ca_file: Some(dovecot.ca_file().display().to_string()),
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await?)
}

/// A Dovecot with alice, and a store with her account "a" on it.
async fn alice() -> Result<(Dovecot, tempfile::TempDir, Arc<dyn Store>, AccountId)> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user("alice@example.org", "right")?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let user = store.create_user("alice", "x").await?;
    let id = add_account(
        store.as_ref(),
        &dovecot,
        user,
        "a",
        "alice@example.org",
        "right",
    )
    .await?;
    Ok((dovecot, dir, store, id))
}

fn plain_passwords() -> PasswordSource {
    Arc::new(|a: &store::AccountRecord| Ok(String::from_utf8(a.server.password_enc.clone())?))
}

async fn wait_status(store: &dyn Store, id: AccountId, want: &str) -> Result<SyncStatus> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        let a = store
            .list_accounts()
            .await?
            .into_iter()
            .find(|a| a.id == id)
            .context("account")?;
        if a.status.name() == want {
            return Ok(a.status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("account {id} never reached status {want}")
}

/// Waits for the store's announcement (what the push hub hears) of a commit of `account`
/// past state `after` that changed `kind`.
async fn wait_event(
    rx: &mut broadcast::Receiver<AccountChange>,
    account: AccountId,
    after: mail_types::State,
    kind: PushType,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let left = DEADLINE
            .checked_sub(start.elapsed())
            .context("no event in time")?;
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) if ev.account == account && ev.state > after && ev.types.contains(kind) => {
                return Ok(start.elapsed());
            }
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => bail!("event channel: {e}"),
            Err(_) => bail!("no event for account {account} in {DEADLINE:?}"),
        }
    }
}

async fn inbox_subjects(store: &dyn Store, account: AccountId) -> Result<Vec<String>> {
    let inbox = store
        .mailboxes(account)
        .await?
        .into_iter()
        .find(|m| m.name == "INBOX")
        .context("inbox")?;
    Ok(store
        .mailbox_messages(inbox.id)
        .await?
        .into_iter()
        .filter_map(|m| m.subject)
        .collect())
}

async fn live_changes_arrive(notify: bool) -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions {
        notify,
        ..DovecotOptions::default()
    })?;
    dovecot.add_user("alice@example.org", "right")?;
    dovecot.add_user("bob@example.org", "bobs")?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let user = store.create_user("alice", "x").await?;
    let good = add_account(
        store.as_ref(),
        &dovecot,
        user,
        "good",
        "alice@example.org",
        "right",
    )
    .await?;
    let bad = add_account(
        store.as_ref(),
        &dovecot,
        user,
        "bad",
        "bob@example.org",
        "wrong",
    )
    .await?;

    // A short full-pass interval: Dovecot does not notify renames by other clients.
    let mut engine = Engine::new(store.clone(), plain_passwords()).with_options(EngineOptions {
        notify_full_pass: Duration::from_secs(2),
        ..EngineOptions::default()
    });
    let mut rx = store.events().subscribe();
    engine.start_all().await?;
    wait_status(store.as_ref(), good, "ok").await?;
    let status = wait_status(store.as_ref(), bad, "auth_failed").await?;
    assert!(!status.error().is_empty());

    // A delivery shows up without any resync being asked for.
    // Give the watcher a moment to have NOTIFY/IDLE in place after the first sync.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = store.account_state(good).await?;
    dovecot.deliver(
        "alice@example.org",
        &corpus::message(
            "carol@example.org",
            "alice@example.org",
            "Live one",
            "arrives by itself",
        ),
    )?;
    let took = wait_event(&mut rx, good, before, PushType::EmailDelivery).await?;
    eprintln!(
        "delivery to event ({}): {took:?}",
        if notify { "NOTIFY" } else { "IDLE" }
    );
    let start = Instant::now();
    while !inbox_subjects(store.as_ref(), good)
        .await?
        .iter()
        .any(|s| s == "Live one")
    {
        if start.elapsed() > DEADLINE {
            bail!("delivered message never reached the store");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A flag change by a second client, likewise.
    let mut c = ImapClient::login(dovecot.imap_port(), "alice@example.org", "right")?;
    c.select("INBOX")?;
    let uid = *c.uids()?.first().context("a message")?;
    let before = store.account_state(good).await?;
    c.store_flags(&uid.to_string(), "+FLAGS", &["\\Flagged"])?;
    wait_event(&mut rx, good, before, PushType::Email).await?;
    let start = Instant::now();
    loop {
        let inbox = store
            .mailboxes(good)
            .await?
            .into_iter()
            .find(|m| m.name == "INBOX")
            .context("inbox")?;
        let copies = store.mailbox_copies(inbox.id).await?;
        if copies
            .iter()
            .any(|c| c.uid.0 == uid && c.flags.iter().any(|f| f == "\\Flagged"))
        {
            break;
        }
        if start.elapsed() > DEADLINE {
            bail!("flag change never reached the store");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.logout()?;

    // With NOTIFY, a mailbox that is not INBOX is watched live too.
    if notify {
        let mut c = ImapClient::login(dovecot.imap_port(), "alice@example.org", "right")?;
        let before = store.account_state(good).await?;
        c.append(
            "Archive",
            &["\\Seen"],
            &corpus::message("d@example.org", "alice@example.org", "Archived", "x"),
        )?;
        c.logout()?;
        let took = wait_event(&mut rx, good, before, PushType::Email).await?;
        eprintln!("append to Archive to event (NOTIFY): {took:?}");
        let archive = store
            .mailboxes(good)
            .await?
            .into_iter()
            .find(|m| m.name == "Archive")
            .context("archive")?;
        let msgs = store.mailbox_messages(archive.id).await?;
        assert!(
            msgs.iter()
                .any(|m| m.subject.as_deref() == Some("Archived"))
        );

        // Mailboxes created and renamed on the server appear without a restart.
        let mut c = ImapClient::login(dovecot.imap_port(), "alice@example.org", "right")?;
        c.create("Projects")?;
        c.logout()?;
        let start = Instant::now();
        while !store
            .mailboxes(good)
            .await?
            .iter()
            .any(|m| m.name == "Projects")
        {
            if start.elapsed() > DEADLINE {
                bail!("a mailbox created on the server never showed up");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let id = store
            .mailboxes(good)
            .await?
            .into_iter()
            .find(|m| m.name == "Projects")
            .context("p")?
            .id;
        let mut c = ImapClient::login(dovecot.imap_port(), "alice@example.org", "right")?;
        c.rename("Projects", "Clients")?;
        c.logout()?;
        let start = Instant::now();
        while !store
            .mailboxes(good)
            .await?
            .iter()
            .any(|m| m.name == "Clients" && m.id == id)
        {
            if start.elapsed() > DEADLINE {
                let now: Vec<_> = store
                    .mailboxes(good)
                    .await?
                    .into_iter()
                    .map(|m| (m.id, m.name, m.uidvalidity))
                    .collect();
                bail!("a rename on the server never showed up as the same mailbox {id:?}: {now:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    engine.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_arrive_with_notify() -> Result<()> {
    live_changes_arrive(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_arrive_with_idle() -> Result<()> {
    live_changes_arrive(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_accounts_retrieve_into_inbox() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user("pop@example.org", "pw")?;
    for i in 0..3 {
        dovecot.deliver(
            "pop@example.org",
            &corpus::message(
                "x@example.org",
                "pop@example.org",
                &format!("pop {i}"),
                "body",
            ),
        )?;
    }
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let user = store.create_user("alice", "x").await?;
    let id = store
        .create_account(&NewAccount {
            user,
            name: "pop".into(),
            kind: AccountKind::Pop3,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: dovecot.pop3s_port(),
                security: Security::Tls,
                username: "pop@example.org".into(),
                password_enc: b"pw".to_vec(),
                ca_file: Some(dovecot.ca_file().display().to_string()),
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await?;
    let mut engine = Engine::new(store.clone(), plain_passwords());
    engine.start_all().await?;
    wait_status(store.as_ref(), id, "ok").await?;
    let mut subjects = inbox_subjects(store.as_ref(), id).await?;
    subjects.sort();
    assert_eq!(subjects, vec!["pop 0", "pop 1", "pop 2"]);
    engine.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_comes_back() -> Result<()> {
    let (mut dovecot, _dir, store, id) = alice().await?;
    let mut engine = Engine::new(store.clone(), plain_passwords());
    engine.start_all().await?;
    wait_status(store.as_ref(), id, "ok").await?;

    dovecot.stop();
    let status = wait_status(store.as_ref(), id, "retrying").await?;
    assert!(!status.error().is_empty(), "the reason is kept");
    dovecot.restart()?;
    wait_status(store.as_ref(), id, "ok").await?;

    // And it is watching again: a delivery arrives by itself.
    tokio::time::sleep(Duration::from_millis(300)).await;
    dovecot.deliver(
        "alice@example.org",
        &corpus::message(
            "b@example.org",
            "alice@example.org",
            "After the outage",
            "x",
        ),
    )?;
    let start = Instant::now();
    while !inbox_subjects(store.as_ref(), id)
        .await?
        .iter()
        .any(|s| s == "After the outage")
    {
        if start.elapsed() > DEADLINE {
            bail!("no delivery after reconnecting");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.shutdown().await;
    Ok(())
}

/// A `Presence` the test switches.
struct Looking(std::sync::atomic::AtomicBool);

impl engine::Presence for Looking {
    fn is_present(&self, _user: mail_types::UserId) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Delivers `n` messages, each after a pause that lets Dovecot's 500 ms notification timer
/// of the previous one run out, and returns the delivery-to-committed-event times sorted.
async fn delivery_times(
    dovecot: &Dovecot,
    store: &dyn Store,
    rx: &mut broadcast::Receiver<AccountChange>,
    account: AccountId,
    n: usize,
    tag: &str,
) -> Result<Vec<Duration>> {
    let mut times = Vec::new();
    for i in 0..n {
        // The previous message's body fetch writes Dovecot's index too: wait that out.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        while rx.try_recv().is_ok() {}
        let before = store.account_state(account).await?;
        dovecot.deliver(
            "alice@example.org",
            &corpus::message(
                "c@example.org",
                "alice@example.org",
                &format!("{tag} {i}"),
                "x",
            ),
        )?;
        times.push(wait_event(rx, account, before, PushType::EmailDelivery).await?);
    }
    times.sort();
    Ok(times)
}

/// While the account's user is looking (a push client connected), the NOTIFY watcher sends
/// a NOOP every `notify_flush`, and Dovecot hands over what it holds back for 500 ms
/// (`NOTIFY_DELAY_MSECS`) at once: the delivery is committed well before 500 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_present_users_account_is_told_before_dovecots_delay() -> Result<()> {
    let (dovecot, _dir, store, id) = alice().await?;
    let looking = Arc::new(Looking(std::sync::atomic::AtomicBool::new(false)));
    let mut engine = Engine::new(store.clone(), plain_passwords())
        .with_options(EngineOptions {
            notify_flush: Some(Duration::from_millis(100)),
            ..EngineOptions::default()
        })
        .with_presence(looking.clone());
    let mut rx = store.events().subscribe();
    engine.start_all().await?;
    wait_status(store.as_ref(), id, "ok").await?;

    let away = delivery_times(&dovecot, store.as_ref(), &mut rx, id, 3, "away").await?;
    looking.0.store(true, std::sync::atomic::Ordering::Relaxed);
    // The watcher asks again within a second whether someone is looking.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let present = delivery_times(&dovecot, store.as_ref(), &mut rx, id, 5, "present").await?;
    eprintln!("delivery to event, nobody looking: {away:?}; user present: {present:?}");
    let median = present[present.len() / 2];
    assert!(
        median < Duration::from_millis(400),
        "with the user present, the median delivery took {median:?} (Dovecot alone: ~500 ms)"
    );
    engine.shutdown().await;
    Ok(())
}

/// IMAP connections the server holds for `user` now (`doveadm who -1`: one line each).
fn imap_connections(dovecot: &Dovecot, user: &str) -> Result<(usize, String)> {
    let who = dovecot.doveadm(&["who", "-1"])?;
    let n = who
        .lines()
        .filter(|l| l.contains(user) && l.contains("imap"))
        .count();
    Ok((n, who))
}

/// A provider profile that allows fewer connections than the engine's four (iCloud's, named
/// in the account's configuration) is honoured: no watcher connection beside the worker
/// (even where the server has NOTIFY), and deliveries still arrive live by IDLE on the
/// worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn few_connections_profile_watches_on_the_worker() -> Result<()> {
    let (dovecot, _dir, store, id) = alice().await?;
    store.set_account_provider(id, "icloud").await?;
    let mut engine = Engine::new(store.clone(), plain_passwords());
    let mut rx = store.events().subscribe();
    engine.start_all().await?;
    wait_status(store.as_ref(), id, "ok").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (n, who) = imap_connections(&dovecot, "alice@example.org")?;
    assert_eq!(n, 1, "one connection for a 3-connection profile: {who}");

    let before = store.account_state(id).await?;
    dovecot.deliver(
        "alice@example.org",
        &corpus::message("c@example.org", "alice@example.org", "Few conns", "x"),
    )?;
    wait_event(&mut rx, id, before, PushType::EmailDelivery).await?;
    let start = Instant::now();
    while !inbox_subjects(store.as_ref(), id)
        .await?
        .iter()
        .any(|s| s == "Few conns")
    {
        if start.elapsed() > DEADLINE {
            bail!("delivered message never reached the store");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.shutdown().await;
    Ok(())
}

/// Waits until the server shows `flag` on every message of `user`'s INBOX.
async fn wait_server_flag(
    dovecot: &Dovecot,
    user: &str,
    password: &str,
    flag: &str,
) -> Result<Duration> {
    let start = Instant::now();
    let mut c = ImapClient::login(dovecot.imap_port(), user, password)?;
    loop {
        c.select("INBOX")?;
        let flags = c.fetch_flags()?;
        if !flags.is_empty() && flags.iter().all(|(_, f)| f.iter().any(|x| x == flag)) {
            c.logout()?;
            return Ok(start.elapsed());
        }
        if start.elapsed() > DEADLINE {
            bail!("{flag} never reached {user}'s server: {flags:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The one message in `account`'s INBOX, once the sync has it.
async fn wait_inbox_email(store: &dyn Store, account: AccountId) -> Result<mail_types::EmailId> {
    let start = Instant::now();
    loop {
        if let Some(inbox) = store
            .mailboxes(account)
            .await?
            .into_iter()
            .find(|m| m.name == "INBOX")
            && let Some(m) = store.mailbox_messages(inbox.id).await?.first()
        {
            return Ok(m.email);
        }
        if start.elapsed() > DEADLINE {
            bail!("account {account} never synced its message");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn flag(email: mail_types::EmailId) -> store::EmailPatch {
    store::EmailPatch {
        email,
        keywords_add: vec!["$flagged".into()],
        keywords_remove: Vec::new(),
        mailboxes_add: Vec::new(),
        mailboxes_remove: Vec::new(),
    }
}

/// A change queued while no engine runs (a restart) is replayed when its outbox worker
/// starts; a change queued while it runs wakes its own account's worker, well before the
/// workers' 30 s poll (the deadline is 20 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_changes_reach_their_accounts_server() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let user = store.create_user("alice", "x").await?;
    let mut accounts = Vec::new();
    for (name, login) in [("a", "alice@example.org"), ("b", "bob@example.org")] {
        dovecot.add_user(login, "right")?;
        dovecot.deliver(
            login,
            &corpus::message("c@example.org", login, "To flag", "x"),
        )?;
        accounts.push(add_account(store.as_ref(), &dovecot, user, name, login, "right").await?);
    }
    let (a, b) = (accounts[0], accounts[1]);

    let mut engine = Engine::new(store.clone(), plain_passwords());
    engine.start_all().await?;
    let a_email = wait_inbox_email(store.as_ref(), a).await?;
    let b_email = wait_inbox_email(store.as_ref(), b).await?;
    engine.shutdown().await;

    // Queued with no worker running: the next start replays it.
    let refused = store.update_emails(a, vec![flag(a_email)]).await?;
    assert!(refused.iter().all(|r| r.is_ok()), "{refused:?}");
    let mut engine = Engine::new(store.clone(), plain_passwords());
    engine.start_all().await?;
    let took = wait_server_flag(&dovecot, "alice@example.org", "right", "\\Flagged").await?;
    eprintln!("queued before the start, on the server after {took:?}");

    // Queued while B's worker waits: its signal wakes it.
    wait_status(store.as_ref(), b, "ok").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = store.update_emails(b, vec![flag(b_email)]).await?;
    assert!(refused.iter().all(|r| r.is_ok()), "{refused:?}");
    let took = wait_server_flag(&dovecot, "bob@example.org", "right", "\\Flagged").await?;
    eprintln!("queued while running, on the server after {took:?}");
    engine.shutdown().await;
    Ok(())
}
