//! Servers that bend the standard, scripted where no real server shows the behaviour:
//! expunges that come untagged with another command, and the provider quirks.

use anyhow::{Context, Result};
use imap_sync::sync::AccountSync;
use imap_sync::{Credentials, Endpoint, Login, Provider, ProviderChoice, Session};
use mail_types::{AccountId, AccountKind, Security};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{NewAccount, ServerSettings, SqliteStore, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One scripted mailbox (INBOX) and what the server does with the next commands.
struct Mailbox {
    caps: &'static str,
    uidvalidity: u32,
    /// (uid, modseq) in UID order.
    messages: Vec<(u32, u64)>,
    highestmodseq: u64,
    /// Before answering the first command starting with `.0`, the server expunges UID `.1`
    /// (another client did it) and reports it untagged with that command's answer.
    expunge_during: Option<(&'static str, u32)>,
    /// Every command line the client sent.
    log: Vec<String>,
    /// Whether ENABLE QRESYNC is answered with the untagged ENABLED (RFC 5161 3.2); iCloud
    /// answers OK alone.
    answers_enabled: bool,
    /// UIDs carrying \Flagged.
    flagged: Vec<u32>,
    /// This many EXAMINEs are answered `NO [UNAVAILABLE]` (Yahoo under load).
    unavailable_examines: u32,
    /// A SEARCH answers at most this many UIDs, the rest cut silently (Yahoo).
    search_cap: Option<usize>,
    /// The greeting's text.
    greeting: &'static str,
    /// This many UID SEARCHes are answered `NO [UNAVAILABLE]`.
    unavailable_searches: u32,
    /// LIST leaves INBOX out (a stale mailbox list, as Dovecot 2.3's list index can be).
    list_omits_inbox: bool,
    /// STATUS INBOX is refused as nonexistent (the mailbox is really gone).
    status_refused: bool,
}

impl Default for Mailbox {
    fn default() -> Self {
        Mailbox {
            caps: "IMAP4rev1",
            uidvalidity: 7,
            messages: vec![(1, 3), (2, 5), (3, 10)],
            highestmodseq: 10,
            expunge_during: None,
            log: Vec::new(),
            answers_enabled: true,
            flagged: Vec::new(),
            unavailable_examines: 0,
            search_cap: None,
            greeting: "scripted",
            unavailable_searches: 0,
            list_omits_inbox: false,
            status_refused: false,
        }
    }
}

impl Mailbox {
    fn uidnext(&self) -> u32 {
        self.messages.last().map_or(1, |m| m.0 + 1)
    }

    fn qresync(&self) -> bool {
        self.caps.contains("QRESYNC")
    }

    fn header(uid: u32) -> String {
        format!("Subject: message {uid}\r\nMessage-ID: <{uid}@example.org>\r\n\r\n")
    }

    fn in_set(set: &str, uid: u32, max: u32) -> bool {
        set.split(',').any(|part| match part.split_once(':') {
            Some((a, b)) => {
                let a = if a == "*" {
                    max
                } else {
                    a.parse().unwrap_or(0)
                };
                let b = if b == "*" {
                    max
                } else {
                    b.parse().unwrap_or(0)
                };
                (a.min(b)..=a.max(b)).contains(&uid)
            }
            None => part.parse::<u32>().ok() == Some(uid),
        })
    }

    /// The answer to one command line.
    fn answer(&mut self, tag: &str, cmd: &str) -> Option<String> {
        self.log.push(cmd.to_string());
        let upper = cmd.to_ascii_uppercase();
        let mut out = String::new();
        if let Some((prefix, uid)) = self.expunge_during
            && upper.starts_with(prefix)
        {
            self.expunge_during = None;
            if let Some(pos) = self.messages.iter().position(|m| m.0 == uid) {
                self.messages.remove(pos);
                self.highestmodseq += 1;
                if self.qresync() {
                    out.push_str(&format!("* VANISHED {uid}\r\n"));
                } else {
                    out.push_str(&format!("* {} EXPUNGE\r\n", pos + 1));
                }
                // The new HIGHESTMODSEQ comes with it (RFC 7162 3.1.2.1 allows it in an
                // untagged OK at any time).
                out.push_str(&format!(
                    "* OK [HIGHESTMODSEQ {}] moved\r\n",
                    self.highestmodseq
                ));
            }
        }
        let max = self.messages.last().map_or(0, |m| m.0);
        if upper.starts_with("LOGIN") {
            out.push_str(&format!("{tag} OK [CAPABILITY {}] in\r\n", self.caps));
        } else if upper == "CAPABILITY" {
            out.push_str(&format!("* CAPABILITY {}\r\n{tag} OK caps\r\n", self.caps));
        } else if upper.starts_with("ENABLE") {
            if upper.contains("QRESYNC") && self.qresync() && self.answers_enabled {
                out.push_str("* ENABLED QRESYNC\r\n");
            }
            out.push_str(&format!("{tag} OK enabled\r\n"));
        } else if upper.starts_with("LIST") && self.list_omits_inbox {
            out.push_str(&format!("{tag} OK list\r\n"));
        } else if upper.starts_with("LIST") {
            out.push_str(&format!(
                "* LIST (\\Subscribed) \"/\" INBOX\r\n{tag} OK list\r\n"
            ));
        } else if upper.starts_with("STATUS") && self.status_refused {
            out.push_str(&format!("{tag} NO [NONEXISTENT] no such mailbox\r\n"));
        } else if upper.starts_with("STATUS") {
            out.push_str(&format!(
                "* STATUS INBOX (UIDVALIDITY {})\r\n{tag} OK status\r\n",
                self.uidvalidity
            ));
        } else if upper.starts_with("LSUB") {
            out.push_str(&format!("* LSUB () \"/\" INBOX\r\n{tag} OK lsub\r\n"));
        } else if (upper.starts_with("EXAMINE") || upper.starts_with("SELECT"))
            && self.unavailable_examines > 0
        {
            self.unavailable_examines -= 1;
            out.push_str(&format!("{tag} NO [UNAVAILABLE] try again later\r\n"));
        } else if upper.starts_with("EXAMINE") || upper.starts_with("SELECT") {
            out.push_str(&format!(
                "* {} EXISTS\r\n* OK [UIDVALIDITY {}] v\r\n* OK [UIDNEXT {}] n\r\n\
                 * OK [HIGHESTMODSEQ {}] m\r\n{tag} OK [READ-ONLY] done\r\n",
                self.messages.len(),
                self.uidvalidity,
                self.uidnext(),
                self.highestmodseq,
            ));
        } else if upper.starts_with("UID SEARCH") && self.unavailable_searches > 0 {
            self.unavailable_searches -= 1;
            out.push_str(&format!("{tag} NO [UNAVAILABLE] busy\r\n"));
        } else if let Some(rest) = upper.strip_prefix("UID SEARCH ") {
            let found: Vec<String> = match rest.strip_prefix("UID ") {
                Some(set) => self
                    .messages
                    .iter()
                    .filter(|m| Self::in_set(set, m.0, max))
                    .map(|m| m.0.to_string())
                    .collect(),
                None => self.messages.iter().map(|m| m.0.to_string()).collect(),
            };
            let found = &found[..found.len().min(self.search_cap.unwrap_or(usize::MAX))];
            out.push_str(&format!(
                "* SEARCH {}\r\n{tag} OK search\r\n",
                found.join(" ")
            ));
        } else if let Some(rest) = upper.strip_prefix("UID FETCH ") {
            let set = rest.split(' ').next().unwrap_or("");
            let since = rest
                .split("CHANGEDSINCE ")
                .nth(1)
                .and_then(|s| s.trim_end_matches(')').parse::<u64>().ok());
            for (i, &(uid, modseq)) in self.messages.iter().enumerate() {
                if !Self::in_set(set, uid, max) || since.is_some_and(|s| modseq <= s) {
                    continue;
                }
                let flags = if self.flagged.contains(&uid) {
                    "\\Flagged"
                } else {
                    ""
                };
                if rest.contains("BODY.PEEK[HEADER]") {
                    let h = Self::header(uid);
                    out.push_str(&format!(
                        "* {} FETCH (UID {uid} FLAGS ({flags}) MODSEQ ({modseq}) RFC822.SIZE {} \
                         INTERNALDATE \"01-Dec-2026 10:00:00 +0000\" BODY[HEADER] {{{}}}\r\n{h})\r\n",
                        i + 1,
                        h.len(),
                        h.len()
                    ));
                } else {
                    out.push_str(&format!(
                        "* {} FETCH (UID {uid} FLAGS ({flags}) MODSEQ ({modseq}))\r\n",
                        i + 1
                    ));
                }
            }
            out.push_str(&format!("{tag} OK fetch\r\n"));
        } else if upper.starts_with("LOGOUT") {
            out.push_str(&format!("* BYE bye\r\n{tag} OK out\r\n"));
        } else {
            out.push_str(&format!("{tag} OK done\r\n"));
        }
        Some(out)
    }
}

/// Serves `mailbox` to any number of connections, one command line at a time (bounded).
async fn serve(mailbox: Arc<Mutex<Mailbox>>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        for _ in 0..20 {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let mailbox = mailbox.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let (caps, text) = mailbox
                    .lock()
                    .map(|m| (m.caps, m.greeting))
                    .unwrap_or(("IMAP4rev1", "scripted"));
                let greeting = format!("* OK [CAPABILITY {caps}] {text}\r\n");
                if w.write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                let mut line = String::new();
                for _ in 0..200 {
                    line.clear();
                    match r.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let (tag, cmd) = line.trim_end().split_once(' ').unwrap_or(("?", ""));
                    let answer = match mailbox.lock() {
                        Ok(mut m) => m.answer(tag, cmd),
                        Err(_) => None,
                    };
                    match answer {
                        Some(a) if w.write_all(a.as_bytes()).await.is_ok() => {}
                        _ => return,
                    }
                }
            });
        }
    });
    Ok(port)
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        ca_file: None,
    }
}

async fn store() -> Result<(Arc<dyn Store>, AccountId, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let user = store.create_user("alice", "x").await?;
    let account = store
        .create_account(&NewAccount {
            user,
            name: "scripted".into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "127.0.0.1".into(),
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
        .await?;
    Ok((store, account, dir))
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the scripted server must not hang the client")
}

/// One pass of the sync (headers only) on a fresh connection.
async fn pass(sync: &AccountSync, port: u16) -> Result<()> {
    pass_as(sync, port, ProviderChoice::Auto).await
}

/// One pass with the provider profile an account's configuration would name.
async fn pass_as(sync: &AccountSync, port: u16, choice: ProviderChoice) -> Result<()> {
    let login = Login::Password(Credentials {
        username: "u".into(),
        password: "p".into(),
    });
    let mut s = within(Session::connect_profile(&endpoint(port), &login, choice)).await?;
    within(sync.sync_all(&mut s)).await?;
    s.logout().await;
    Ok(())
}

/// The UIDs and HIGHESTMODSEQ the store holds for INBOX.
async fn stored(sync: &AccountSync) -> Result<(Vec<u32>, u64)> {
    let mb = sync
        .mailbox_by_raw_name("INBOX")
        .await?
        .context("INBOX not stored")?;
    let mut uids: Vec<u32> = sync
        .store
        .mailbox_copies(mb.id)
        .await?
        .iter()
        .map(|c| c.uid.0)
        .collect();
    uids.sort_unstable();
    Ok((uids, mb.highestmodseq.0))
}

/// An expunge reported untagged with a command of the pass (not with the EXAMINE) is in
/// the store when the pass ends, and the stored HIGHESTMODSEQ is one from which a QRESYNC
/// would report it again had it been missed.
async fn expunge_during_a_pass(caps: &'static str, during: &'static str) -> Result<()> {
    let mailbox = Arc::new(Mutex::new(Mailbox {
        caps,
        ..Mailbox::default()
    }));
    let port = serve(mailbox.clone()).await?;
    let (store, account, _dir) = store().await?;
    let mut sync = AccountSync::new(store, account);
    sync.options.bodies = false;
    pass(&sync, port).await?;
    assert_eq!(stored(&sync).await?, (vec![1, 2, 3], 10));

    if let Ok(mut m) = mailbox.lock() {
        m.expunge_during = Some((during, 2));
    }
    pass(&sync, port).await?;
    let (uids, modseq) = stored(&sync).await?;
    let (server_uids, server_modseq, injected) = match mailbox.lock() {
        Ok(m) => (
            m.messages.iter().map(|m| m.0).collect::<Vec<_>>(),
            m.highestmodseq,
            m.expunge_during.is_none(),
        ),
        Err(_) => anyhow::bail!("server state poisoned"),
    };
    assert!(injected, "the scripted expunge never happened");
    assert_eq!(server_uids, vec![1, 3]);
    assert_eq!(
        uids, server_uids,
        "the expunge reported during the pass is not in the store"
    );
    assert!(
        modseq <= server_modseq,
        "stored HIGHESTMODSEQ {modseq} is past the server's {server_modseq}"
    );
    // The next pass resumes from what was stored, and the message stays gone.
    pass(&sync, port).await?;
    assert_eq!(stored(&sync).await?.0, vec![1, 3]);
    if caps.contains("QRESYNC") {
        let log = log_of(&mailbox);
        let last = log.iter().rfind(|c| c.starts_with("EXAMINE"));
        assert!(
            last.is_some_and(|c| c.contains(&format!("(QRESYNC (7 {modseq}))"))),
            "{log:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn vanished_during_a_uid_search_is_stored_before_the_modseq_moves() -> Result<()> {
    expunge_during_a_pass(
        "IMAP4rev1 ENABLE CONDSTORE QRESYNC LIST-EXTENDED",
        "UID SEARCH",
    )
    .await
}

#[tokio::test]
async fn expunge_during_a_changedsince_fetch_is_stored_in_the_same_pass() -> Result<()> {
    expunge_during_a_pass("IMAP4rev1 ENABLE CONDSTORE LIST-EXTENDED", "UID FETCH").await
}

/// A fresh store and a sync of it, headers only.
async fn fresh_sync() -> Result<(AccountSync, tempfile::TempDir)> {
    let (store, account, dir) = store().await?;
    let mut sync = AccountSync::new(store, account);
    sync.options.bodies = false;
    Ok((sync, dir))
}

fn log_of(mailbox: &Arc<Mutex<Mailbox>>) -> Vec<String> {
    mailbox.lock().map(|m| m.log.clone()).unwrap_or_default()
}

/// The stored flags of one UID of INBOX.
async fn flags_of(sync: &AccountSync, uid: u32) -> Result<Vec<String>> {
    let mb = sync
        .mailbox_by_raw_name("INBOX")
        .await?
        .context("INBOX not stored")?;
    Ok(sync
        .store
        .mailbox_copies(mb.id)
        .await?
        .into_iter()
        .find(|c| c.uid.0 == uid)
        .map(|c| c.flags)
        .unwrap_or_default())
}

/// iCloud: QRESYNC advertised (CONDSTORE only implied), ENABLE QRESYNC answered without
/// ENABLED. The session must not count on QRESYNC, and must still resync by CONDSTORE
/// (RFC 7162 3.2.3: a QRESYNC server implements CONDSTORE).
#[tokio::test]
async fn qresync_without_enabled_resyncs_by_condstore() -> Result<()> {
    let mailbox = Arc::new(Mutex::new(Mailbox {
        caps: "IMAP4rev1 ENABLE QRESYNC LIST-EXTENDED",
        answers_enabled: false,
        ..Mailbox::default()
    }));
    let port = serve(mailbox.clone()).await?;
    let (sync, _dir) = fresh_sync().await?;
    pass(&sync, port).await?;
    assert_eq!(stored(&sync).await?, (vec![1, 2, 3], 10));
    if let Ok(mut m) = mailbox.lock() {
        m.flagged.push(1);
        m.messages[0].1 = 11;
        m.highestmodseq = 11;
    }
    pass(&sync, port).await?;
    assert_eq!(flags_of(&sync, 1).await?, vec!["\\Flagged".to_string()]);
    assert_eq!(stored(&sync).await?, (vec![1, 2, 3], 11));
    let log = log_of(&mailbox);
    assert!(
        log.iter().any(|c| c.contains("(CHANGEDSINCE 10)")),
        "flags not resynced by CONDSTORE: {log:?}"
    );
    assert!(
        !log.iter().any(|c| c.contains("QRESYNC (")),
        "QRESYNC used without ENABLED: {log:?}"
    );
    Ok(())
}

/// iCloud's profile, named in the configuration: QRESYNC is not even enabled where the
/// server would answer ENABLED, and the capabilities are read again after login.
#[tokio::test]
async fn icloud_profile_uses_condstore_only() -> Result<()> {
    let mailbox = Arc::new(Mutex::new(Mailbox {
        caps: "IMAP4rev1 ENABLE CONDSTORE QRESYNC LIST-EXTENDED",
        ..Mailbox::default()
    }));
    let port = serve(mailbox.clone()).await?;
    let (sync, _dir) = fresh_sync().await?;
    pass_as(&sync, port, ProviderChoice::Fixed(Provider::Icloud)).await?;
    assert_eq!(stored(&sync).await?, (vec![1, 2, 3], 10));
    let log = log_of(&mailbox);
    let login = log.iter().position(|c| c.starts_with("LOGIN"));
    let recheck = log.iter().rposition(|c| c == "CAPABILITY");
    assert!(
        matches!((login, recheck), (Some(l), Some(c)) if c > l),
        "capabilities not read again after login: {log:?}"
    );
    assert!(
        !log.iter().any(|c| c.contains("ENABLE QRESYNC")),
        "QRESYNC enabled for iCloud: {log:?}"
    );
    assert!(log.iter().any(|c| c == "ENABLE CONDSTORE"), "{log:?}");
    Ok(())
}

/// Yahoo: `NO [UNAVAILABLE]` to EXAMINE (and to UID SEARCH) is retried after a short
/// wait, and the pass stores the mailbox instead of skipping it.
#[tokio::test]
async fn unavailable_examine_is_retried() -> Result<()> {
    let mailbox = Arc::new(Mutex::new(Mailbox {
        caps: "IMAP4rev1 ENABLE CONDSTORE LIST-EXTENDED",
        unavailable_examines: 2,
        unavailable_searches: 1,
        ..Mailbox::default()
    }));
    let port = serve(mailbox.clone()).await?;
    let (sync, _dir) = fresh_sync().await?;
    pass_as(&sync, port, ProviderChoice::Fixed(Provider::Yahoo)).await?;
    let (uids, _) = stored(&sync).await?;
    assert_eq!(uids, vec![1, 2, 3], "the refused mailbox was not synced");
    let log = log_of(&mailbox);
    assert_eq!(
        log.iter().filter(|c| c.starts_with("EXAMINE")).count(),
        3,
        "{log:?}"
    );
    // Searched in UID ranges (Yahoo's cap), the refused window once more.
    assert_eq!(
        log.iter().filter(|c| *c == "UID SEARCH UID 1:3").count(),
        2,
        "{log:?}"
    );
    // Yahoo's CONDSTORE is not trusted.
    assert!(!log.iter().any(|c| c.contains("CONDSTORE")), "{log:?}");
    Ok(())
}

/// Yahoo cuts SEARCH answers at 1,000 UIDs: every message is still synced, by searching
/// UID ranges no larger than the cap. The generic profile, searching ALL, misses some:
/// the scripted cap is real.
#[tokio::test]
async fn capped_search_still_finds_every_message() -> Result<()> {
    let many = || Mailbox {
        caps: "IMAP4rev1 LIST-EXTENDED",
        // Sparse UIDs, as after years of deletions.
        messages: (0..1005u32).map(|i| (3 * i + 2, 1)).collect(),
        search_cap: Some(1000),
        ..Mailbox::default()
    };
    let mailbox = Arc::new(Mutex::new(many()));
    let port = serve(mailbox.clone()).await?;
    let (sync, _dir) = fresh_sync().await?;
    pass_as(&sync, port, ProviderChoice::Fixed(Provider::Yahoo)).await?;
    let (uids, _) = stored(&sync).await?;
    assert_eq!(uids.len(), 1005);

    let generic = Arc::new(Mutex::new(many()));
    let port = serve(generic).await?;
    let (sync, _dir2) = fresh_sync().await?;
    pass(&sync, port).await?;
    let (uids, _) = stored(&sync).await?;
    assert!(uids.len() < 1005, "the scripted cap did not bite");
    Ok(())
}

/// Detection without a known host name: Exchange's greeting makes the session Outlook's,
/// which does not use the CONDSTORE it advertises; Gmail's X-GM-EXT-1 makes it Gmail's.
#[tokio::test]
async fn provider_detected_from_greeting_and_capabilities() -> Result<()> {
    let login = Login::Password(Credentials {
        username: "u".into(),
        password: "p".into(),
    });
    let exchange = Arc::new(Mutex::new(Mailbox {
        caps: "IMAP4rev1 ENABLE CONDSTORE",
        greeting: "The Microsoft Exchange IMAP4 service is ready.",
        ..Mailbox::default()
    }));
    let port = serve(exchange).await?;
    let s = within(Session::connect_login(&endpoint(port), &login)).await?;
    assert_eq!(s.profile().provider, Provider::Outlook);
    assert!(!s.condstore());
    s.logout().await;

    let gmail = Arc::new(Mutex::new(Mailbox {
        caps: "IMAP4rev1 ENABLE CONDSTORE QRESYNC X-GM-EXT-1",
        greeting: "ready",
        ..Mailbox::default()
    }));
    let port = serve(gmail.clone()).await?;
    let s = within(Session::connect_login(&endpoint(port), &login)).await?;
    assert_eq!(s.profile().provider, Provider::Gmail);
    assert!(s.condstore() && !s.qresync());
    s.logout().await;
    assert!(!log_of(&gmail).iter().any(|c| c.contains("QRESYNC")));

    // Anything else is generic and trusted as far as it proves itself.
    let plain = Arc::new(Mutex::new(Mailbox {
        caps: "IMAP4rev1 ENABLE CONDSTORE QRESYNC",
        ..Mailbox::default()
    }));
    let port = serve(plain).await?;
    let s = within(Session::connect_login(&endpoint(port), &login)).await?;
    assert_eq!(s.profile().provider, Provider::Generic);
    assert!(s.qresync());
    s.logout().await;
    Ok(())
}

/// A mailbox a LIST leaves out is kept, with its id and its mail, while the server still
/// opens it when asked by name; it goes once the server says it is gone.
#[tokio::test]
async fn a_mailbox_a_stale_list_leaves_out_is_kept_while_the_server_opens_it() -> Result<()> {
    let mailbox = Arc::new(Mutex::new(Mailbox::default()));
    let port = serve(mailbox.clone()).await?;
    let (sync, _dir) = fresh_sync().await?;
    pass(&sync, port).await?;
    let before = sync
        .mailbox_by_raw_name("INBOX")
        .await?
        .context("INBOX stored")?;
    mailbox
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .list_omits_inbox = true;
    pass(&sync, port).await?;
    let after = sync
        .mailbox_by_raw_name("INBOX")
        .await?
        .context("INBOX dropped on a LIST that left it out")?;
    assert_eq!(after.id, before.id, "the mailbox keeps its id");
    assert_eq!(stored(&sync).await?.0, vec![1, 2, 3], "and its mail");
    mailbox
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .status_refused = true;
    pass(&sync, port).await?;
    assert!(
        sync.mailbox_by_raw_name("INBOX").await?.is_none(),
        "a mailbox the server no longer opens is gone"
    );
    Ok(())
}
