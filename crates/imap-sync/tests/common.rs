//! Shared setup for the sync tests: a private Dovecot, a store with one account, and
//! comparisons of the store against what an independent client sees on the server.
#![allow(dead_code)]

use anyhow::{Context, Result};
use imap_sync::sync::AccountSync;
use imap_sync::{Credentials, Endpoint, Session};
use mail_types::{AccountId, AccountKind, Security};
use std::collections::BTreeMap;
use std::sync::Arc;
use store::{NewAccount, ServerSettings, SqliteStore, Store};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, SeedMessage};

pub const USER: &str = "alice@example.org";
pub const PASS: &str = "s3cret pass";

pub struct Env {
    pub dovecot: Dovecot,
    pub store: Arc<dyn Store>,
    pub account: AccountId,
    pub dir: tempfile::TempDir,
    /// The provider profile sessions use (as an account's configuration would name it).
    pub provider: imap_sync::ProviderChoice,
}

pub async fn env(opts: DovecotOptions) -> Result<Env> {
    let dovecot = Dovecot::start(opts)?;
    dovecot.add_user(USER, PASS)?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let user = store.create_user("alice", "x").await?;
    let account = store
        .create_account(&NewAccount {
            user,
            name: "work".into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: dovecot.imaps_port(),
                security: Security::Tls,
                username: USER.into(),
                password_enc: vec![],
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
        provider: imap_sync::ProviderChoice::Auto,
    })
}

impl Env {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: self.dovecot.imaps_port(),
            security: Security::Tls,
            ca_file: Some(self.dovecot.ca_file().to_path_buf()),
        }
    }

    pub fn creds(&self) -> Credentials {
        Credentials {
            username: USER.into(),
            password: PASS.into(),
        }
    }

    pub async fn session(&self) -> Result<Session> {
        let login = imap_sync::Login::Password(self.creds());
        Ok(Session::connect_profile(&self.endpoint(), &login, self.provider).await?)
    }

    pub fn sync(&self) -> AccountSync {
        AccountSync::new(self.store.clone(), self.account)
    }

    pub async fn sync_all(&self) -> Result<imap_sync::sync::SyncReport> {
        let mut s = self.session().await?;
        let r = self.sync().sync_all(&mut s).await?;
        s.logout().await;
        Ok(r)
    }

    pub fn client(&self) -> Result<ImapClient> {
        ImapClient::login(self.dovecot.imap_port(), USER, PASS)
    }

    pub fn seed(&self, mailbox: &str, msgs: &[testkit::corpus::CorpusMessage]) -> Result<()> {
        let seed: Vec<SeedMessage> = msgs
            .iter()
            .map(|m| SeedMessage {
                raw: m.raw.clone(),
                flags: m.flags.clone(),
                internal_date: m.internal_date,
            })
            .collect();
        self.dovecot.seed(USER, mailbox, &seed)
    }

    /// Server truth for one mailbox: UID -> sorted flags, as the independent client sees it.
    pub fn server_mailbox(&self, mailbox: &str) -> Result<BTreeMap<u32, Vec<String>>> {
        let mut c = self.client()?;
        c.select(mailbox)?;
        let flags = c.fetch_flags()?;
        c.logout()?;
        Ok(flags
            .into_iter()
            .map(|(uid, f)| (uid, normalize(f)))
            .collect())
    }

    pub async fn local_mailbox(&self, mailbox: &str) -> Result<BTreeMap<u32, Vec<String>>> {
        let mb = self
            .store
            .mailboxes(self.account)
            .await?
            .into_iter()
            .find(|m| m.name == mailbox)
            .with_context(|| format!("mailbox {mailbox} not in store"))?;
        Ok(self
            .store
            .mailbox_copies(mb.id)
            .await?
            .into_iter()
            .map(|c| (c.uid.0, normalize(c.flags)))
            .collect())
    }

    /// Every selectable mailbox on the server equals the store (UIDs and flags), and the
    /// store has no mailbox the server lacks.
    pub async fn assert_in_step(&self) -> Result<()> {
        let mut c = self.client()?;
        let listed = c.raw_command("LIST \"\" \"*\"")?;
        c.logout()?;
        let mut server_names = Vec::new();
        for line in listed.lines().filter(|l| l.starts_with("* LIST")) {
            if line.contains("\\Noselect") || line.contains("\\NonExistent") {
                continue;
            }
            let name = line
                .rsplit_once(" \"/\" ")
                .map(|(_, n)| n.trim().trim_matches('"').to_string())
                .context("LIST line")?;
            server_names.push(name);
        }
        server_names.sort();
        let mut local_names: Vec<String> = self
            .store
            .mailboxes(self.account)
            .await?
            .into_iter()
            .filter(|m| m.selectable)
            .map(|m| m.raw_name)
            .collect();
        local_names.sort();
        assert_eq!(local_names, server_names, "mailbox lists differ");
        for name in &server_names {
            let server = self.server_mailbox(name)?;
            let local = self.local_mailbox(name).await?;
            assert_eq!(local, server, "mailbox {name} differs");
        }
        Ok(())
    }
}

pub fn normalize(mut f: Vec<String>) -> Vec<String> {
    f.retain(|x| !x.eq_ignore_ascii_case("\\Recent"));
    f.sort();
    f.dedup();
    f
}
