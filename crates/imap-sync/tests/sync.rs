//! The IMAP sync against a real, private Dovecot.

mod common;

use anyhow::Result;
use common::*;
use imap_sync::{Provider, ProviderChoice};
use testkit::DovecotOptions;
use testkit::corpus;

#[tokio::test]
async fn initial_sync_equals_the_server() -> Result<()> {
    let env = env(DovecotOptions::default()).await?;
    let msgs = corpus::generate(7, 240, &["INBOX", "Archive", "Work/Projects"]);
    for folder in ["INBOX", "Archive", "Work/Projects"] {
        let part: Vec<_> = msgs
            .iter()
            .filter(|m| m.folder == folder)
            .cloned()
            .collect();
        env.seed(folder, &part)?;
    }
    let report = env.sync_all().await?;
    assert_eq!(report.new_headers, 240);
    assert_eq!(report.bodies, 240);
    env.assert_in_step().await?;

    // Every body is stored byte for byte: the blob of each copy is the message seeded.
    let inbox = env
        .store
        .mailboxes(env.account)
        .await?
        .into_iter()
        .find(|m| m.name == "INBOX")
        .expect("inbox");
    assert_eq!(inbox.role, Some(mail_types::Role::Inbox));
    let stored = env.store.mailbox_messages(inbox.id).await?;
    let seeded: std::collections::HashSet<String> = msgs
        .iter()
        .filter(|m| m.folder == "INBOX")
        .map(|m| mime::blob_id(&m.raw))
        .collect();
    for s in &stored {
        let blob = s.blob_id.clone().expect("body stored");
        assert!(
            seeded.contains(&blob),
            "blob {blob} is not a seeded message"
        );
        assert_eq!(
            env.store.blob(&blob).await?.map(|b| b.len()),
            Some(s.size as usize)
        );
    }
    // Progress reports a complete mailbox.
    assert_eq!(inbox.progress.headers, inbox.progress.total);
    assert_eq!(inbox.progress.bodies, inbox.progress.total);

    // Special-use roles came through LIST.
    let roles: Vec<_> = env
        .store
        .mailboxes(env.account)
        .await?
        .into_iter()
        .filter_map(|m| m.role.map(|r| (m.name, r)))
        .collect();
    assert!(
        roles
            .iter()
            .any(|(n, r)| n == "Trash" && *r == mail_types::Role::Trash)
    );

    // A second pass with nothing changed selects nothing and changes nothing.
    let state = env.store.account_state(env.account).await?;
    let again = env.sync_all().await?;
    assert_eq!(again.new_headers + again.bodies + again.flag_updates, 0);
    assert_eq!(again.skipped_unchanged, again.mailboxes, "{again:?}");
    assert_eq!(env.store.account_state(env.account).await?, state);
    Ok(())
}

/// Changes made by a second client reach the store, with CONDSTORE/QRESYNC (`fast`) or
/// without (Dovecot told not to advertise them).
async fn server_changes_reach_the_store(condstore: bool) -> Result<()> {
    server_changes_reach_the_store_as(condstore, ProviderChoice::Auto).await
}

/// The same, with the session trusting only what `provider`'s profile allows.
async fn server_changes_reach_the_store_as(
    condstore: bool,
    provider: ProviderChoice,
) -> Result<()> {
    let mut env = env(DovecotOptions {
        condstore,
        ..DovecotOptions::default()
    })
    .await?;
    env.provider = provider;
    let s = env.session().await?;
    let trusted = |cap| condstore && s.profile().trusts(cap);
    assert_eq!(
        s.qresync(),
        trusted("QRESYNC"),
        "QRESYNC enabled iff advertised and trusted"
    );
    assert_eq!(s.condstore(), trusted("CONDSTORE"));
    s.logout().await;
    let msgs = corpus::generate(11, 60, &["INBOX", "Work"]);
    env.seed(
        "INBOX",
        &msgs
            .iter()
            .filter(|m| m.folder == "INBOX")
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    env.seed(
        "Work",
        &msgs
            .iter()
            .filter(|m| m.folder == "Work")
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    env.sync_all().await?;
    env.assert_in_step().await?;
    let before = env.store.account_state(env.account).await?;

    // Remember the Email of the message we will move, to check its id survives.
    let inbox_uids: Vec<u32> = env.server_mailbox("INBOX")?.keys().copied().collect();
    let moved_uid = inbox_uids[3];
    let inbox = env
        .store
        .mailboxes(env.account)
        .await?
        .into_iter()
        .find(|m| m.name == "INBOX")
        .expect("inbox");
    let moved_email = env
        .store
        .mailbox_messages(inbox.id)
        .await?
        .into_iter()
        .find(|m| m.uid.0 == moved_uid)
        .expect("moved message stored")
        .email;

    env.dovecot.deliver(
        USER,
        &corpus::message("bob@example.org", USER, "Fresh news", "hello"),
    )?;
    let mut c = env.client()?;
    c.select("INBOX")?;
    c.store_flags(
        &format!("{},{}", inbox_uids[0], inbox_uids[1]),
        "+FLAGS",
        &["\\Flagged", "$Important"],
    )?;
    c.store_flags(&inbox_uids[2].to_string(), "-FLAGS", &["\\Seen"])?;
    c.store_flags(&inbox_uids[2].to_string(), "+FLAGS", &["\\Answered"])?;
    c.expunge_uids(&format!("{}:{}", inbox_uids[5], inbox_uids[6]))?;
    c.move_uids(&moved_uid.to_string(), "Work")?;
    c.create("Projects")?;
    c.rename("Work", "Clients")?;
    c.create("Scratch")?;
    c.append(
        "Scratch",
        &["\\Seen"],
        &corpus::message("carol@example.org", USER, "in scratch", "x"),
    )?;
    c.logout()?;

    let report = env.sync_all().await?;
    env.assert_in_step().await?;
    assert!(report.expunged >= 3, "{report:?}");
    assert!(env.store.account_state(env.account).await? > before);

    // The moved message is the same Email in its new mailbox (content identity).
    let clients = env
        .store
        .mailboxes(env.account)
        .await?
        .into_iter()
        .find(|m| m.name == "Clients")
        .expect("renamed");
    let in_clients = env.store.mailbox_messages(clients.id).await?;
    assert!(
        in_clients.iter().any(|m| m.email == moved_email),
        "moved message lost its id"
    );

    // Mailbox delete on the server.
    let mut c = env.client()?;
    c.delete("Scratch")?;
    c.logout()?;
    env.sync_all().await?;
    env.assert_in_step().await?;
    Ok(())
}

#[tokio::test]
async fn server_changes_reach_the_store_with_qresync() -> Result<()> {
    server_changes_reach_the_store(true).await
}

#[tokio::test]
async fn server_changes_reach_the_store_without_condstore() -> Result<()> {
    server_changes_reach_the_store(false).await
}

/// Outlook's profile: CONDSTORE advertised but not used; flags are resynced by FETCH.
#[tokio::test]
async fn server_changes_reach_the_store_with_the_outlook_profile() -> Result<()> {
    server_changes_reach_the_store_as(true, ProviderChoice::Fixed(Provider::Outlook)).await
}

/// Gmail's (and iCloud's) profile: CONDSTORE without QRESYNC, even where QRESYNC works.
#[tokio::test]
async fn server_changes_reach_the_store_with_the_gmail_profile() -> Result<()> {
    server_changes_reach_the_store_as(true, ProviderChoice::Fixed(Provider::Gmail)).await
}

#[tokio::test]
async fn uidvalidity_change_resets_only_that_mailbox() -> Result<()> {
    let env = env(DovecotOptions::default()).await?;
    let msgs = corpus::generate(3, 30, &["INBOX", "Old"]);
    env.seed(
        "INBOX",
        &msgs
            .iter()
            .filter(|m| m.folder == "INBOX")
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    env.seed(
        "Old",
        &msgs
            .iter()
            .filter(|m| m.folder == "Old")
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    env.sync_all().await?;
    let old = env
        .store
        .mailboxes(env.account)
        .await?
        .into_iter()
        .find(|m| m.name == "Old")
        .expect("Old");
    let inbox_before = env.local_mailbox("INBOX").await?;

    // Recreate "Old" under the same name: Dovecot gives it a new UIDVALIDITY.
    let mut c = env.client()?;
    c.delete("Old")?;
    c.create("Old")?;
    c.append(
        "Old",
        &[],
        &corpus::message("x@example.org", USER, "new epoch", "y"),
    )?;
    c.logout()?;
    // Remove the rename heuristic's chance: the list sync sees the same name.
    let report = env.sync_all().await?;
    env.assert_in_step().await?;
    let old_after = env
        .store
        .mailboxes(env.account)
        .await?
        .into_iter()
        .find(|m| m.name == "Old")
        .expect("Old");
    assert_ne!(old_after.uidvalidity, old.uidvalidity);
    assert_eq!(env.local_mailbox("Old").await?.len(), 1);
    assert_eq!(env.local_mailbox("INBOX").await?, inbox_before);
    assert_eq!(report.resets, 1, "{report:?}");
    Ok(())
}

#[tokio::test]
async fn malformed_and_large_messages_are_stored() -> Result<()> {
    let env = env(DovecotOptions::default()).await?;
    let mut c = env.client()?;
    let garbage: &[&[u8]] = &[
        b"Subject: =?utf-8?B?broken!!?=\r\nFrom: \xe9t\xe9 <a@b>\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nunterminated part\r\n",
        b"no colon header line\r\n\r\nbody",
        b"From: a@b\r\nContent-Type: multipart/alternative\r\n\r\nno boundary at all\r\n",
        b"\r\n\r\n",
    ];
    for g in garbage {
        c.append("INBOX", &[], g)?;
    }
    // A 50 MB message.
    let mut big =
        b"From: big@example.org\r\nSubject: big one\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    while big.len() < 50 * 1024 * 1024 {
        big.extend_from_slice(line);
    }
    c.append("INBOX", &[], &big)?;
    c.logout()?;
    env.sync_all().await?;
    env.assert_in_step().await?;
    let inbox = env
        .store
        .mailboxes(env.account)
        .await?
        .into_iter()
        .find(|m| m.name == "INBOX")
        .expect("inbox");
    let stored = env.store.mailbox_messages(inbox.id).await?;
    assert_eq!(stored.len(), 5);
    assert!(stored.iter().all(|m| m.blob_id.is_some()));
    assert!(stored.iter().any(|m| m.size as usize == big.len()));
    Ok(())
}

#[tokio::test]
async fn full_text_index_is_filled_during_sync() -> Result<()> {
    let env = env(DovecotOptions::default()).await?;
    env.dovecot.deliver(
        USER,
        &corpus::message(
            "zoe@example.org",
            USER,
            "Quarterly pelican report",
            "The pelicans of Tidings are thriving.",
        ),
    )?;
    env.dovecot.deliver(
        USER,
        &corpus::message("max@example.org", USER, "Lunch", "Sandwiches at noon."),
    )?;
    env.sync_all().await?;
    assert_eq!(env.store.search(env.account, "pelican").await?.len(), 1);
    assert_eq!(env.store.search(env.account, "thriving").await?.len(), 1);
    assert_eq!(
        env.store
            .search(env.account, "zoe@example.org")
            .await?
            .len(),
        1
    );
    assert_eq!(
        env.store.search(env.account, "\"unbalanced").await?.len(),
        0
    );
    Ok(())
}

#[tokio::test]
async fn a_store_that_lost_rows_heals_on_the_next_pass() -> Result<()> {
    let env = env(DovecotOptions::default()).await?;
    let msgs = corpus::generate(5, 20, &["INBOX"]);
    env.seed("INBOX", &msgs)?;
    env.sync_all().await?;
    // Damage the store behind its back: two copies vanish.
    let db = rusqlite::Connection::open(env.dir.path().join("t.sqlite"))?;
    db.execute(
        "DELETE FROM copy WHERE uid IN (3, 7) AND mailbox_id = (SELECT id FROM mailbox WHERE name = 'INBOX')",
        [],
    )?;
    drop(db);
    let report = env.sync_all().await?;
    assert_eq!(report.new_headers, 2, "{report:?}");
    env.assert_in_step().await?;
    Ok(())
}

/// Outlook on port 143 (and Dovecot with its defaults) says LOGINDISABLED until STARTTLS:
/// the session secures the connection first, reads the capabilities again (RFC 3501
/// 6.2.1) and logs in; asked to stay in the clear, it stops with a clear error instead of
/// sending the password.
#[tokio::test]
async fn logindisabled_before_starttls_is_handled() -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let env = env(DovecotOptions {
        cleartext_login: false,
        ..DovecotOptions::default()
    })
    .await?;
    // The server really refuses LOGIN in the clear.
    let sock =
        tokio::net::TcpStream::connect((testkit::OTHER_LOOPBACK, env.dovecot.imap_port())).await?;
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"a CAPABILITY\r\n").await?;
    let mut seen = String::new();
    for _ in 0..10 {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            break;
        }
        seen.push_str(&line);
        if line.starts_with("a ") {
            break;
        }
    }
    assert!(seen.contains("LOGINDISABLED"), "{seen}");

    let login = imap_sync::Login::Password(env.creds());
    let mut ep = env.endpoint();
    ep.host = testkit::OTHER_LOOPBACK.into();
    ep.port = env.dovecot.imap_port();
    ep.security = mail_types::Security::Starttls;
    let mut s =
        imap_sync::Session::connect_profile(&ep, &login, ProviderChoice::Fixed(Provider::Outlook))
            .await?;
    assert!(!s.has("LOGINDISABLED"));
    assert!(!s.condstore(), "Outlook's profile has no CONDSTORE");
    env.sync().sync_all(&mut s).await?;
    s.logout().await;

    ep.security = mail_types::Security::None;
    let err = imap_sync::Session::connect_login(&ep, &login).await.err();
    assert!(
        matches!(err, Some(imap_sync::Error::Unsupported(_))),
        "{err:?}"
    );
    Ok(())
}
