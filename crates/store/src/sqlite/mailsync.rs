//! [`MailSync`] for SQLite.

use super::*;
use crate::outbox::PLACEHOLDER_UID_BASE;

#[async_trait]
impl MailSync for SqliteStore {
    async fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxRecord>> {
        self.call(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailbox m WHERE m.account_id = ?1 ORDER BY m.name"
            ))?;
            let rows = st.query_map([account.0], mailbox_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn mailbox_by_raw_name(
        &self,
        account: AccountId,
        raw_name: &str,
    ) -> Result<Option<MailboxRecord>> {
        let raw = raw_name.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {MAILBOX_COLUMNS} FROM mailbox m WHERE m.account_id = ?1 AND m.raw_name = ?2"
                ),
                params![account.0, raw],
                mailbox_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn stored_uids(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Uid>> {
        let uids = uids.to_vec();
        self.call(move |c| {
            let mut st =
                c.prepare_cached("SELECT 1 FROM copy WHERE mailbox_id = ?1 AND uid = ?2")?;
            let mut out = Vec::new();
            for u in uids {
                if st.exists(params![mailbox.0, u.0])? {
                    out.push(u);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn gmail_known(&self, account: AccountId, msgids: &[u64]) -> Result<Vec<u64>> {
        let msgids = msgids.to_vec();
        self.call(move |c| {
            let mut st =
                c.prepare_cached("SELECT 1 FROM email WHERE account_id = ?1 AND identity = ?2")?;
            let mut out = Vec::new();
            for m in msgids {
                if st.exists(params![account.0, write::gmail_identity(m)])? {
                    out.push(m);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn apply_mailbox_list(
        &self,
        account: AccountId,
        remote: &[RemoteMailbox],
    ) -> Result<MailboxListOutcome> {
        let remote = remote.to_vec();
        self.write(move |c, committed| write::apply_mailbox_list(c, committed, account, &remote))
            .await
    }

    fn mailbox_epoch(&self, account: AccountId) -> u64 {
        epoch_of(&self.mailbox_epochs, account)
    }

    async fn apply_mailbox_list_at(
        &self,
        account: AccountId,
        remote: &[RemoteMailbox],
        epoch: u64,
    ) -> Result<MailboxListOutcome> {
        let remote = remote.to_vec();
        let epochs = self.mailbox_epochs.clone();
        self.write(move |c, committed| {
            if epoch_of(&epochs, account) != epoch {
                // The list was taken across a mailbox change of the user: it may show the
                // server before that change. The next pass brings the list in line.
                return Ok(MailboxListOutcome::default());
            }
            write::apply_mailbox_list(c, committed, account, &remote)
        })
        .await
    }

    async fn reset_mailbox(&self, mailbox: MailboxId, uidvalidity: UidValidity) -> Result<()> {
        self.write(move |c, committed| write::reset_mailbox(c, committed, mailbox, uidvalidity))
            .await
    }

    async fn mailbox_copies(&self, mailbox: MailboxId) -> Result<Vec<StoredCopy>> {
        self.call(move |c| {
            let mut st =
                c.prepare_cached("SELECT uid, flags FROM copy WHERE mailbox_id = ?1 AND uid < 4294967296 ORDER BY uid")?;
            let rows = st.query_map([mailbox.0], |r| {
                let flags: String = r.get(1)?;
                Ok(StoredCopy {
                    uid: Uid(r.get(0)?),
                    flags: write::split_flags(&flags),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn apply_mailbox_changes(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        changes: MailboxChanges,
    ) -> Result<State> {
        self.apply_changes(account, mailbox, changes, false).await
    }

    async fn apply_urgent_changes(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        changes: MailboxChanges,
    ) -> Result<State> {
        self.apply_changes(account, mailbox, changes, true).await
    }

    async fn body_sources(&self, account: AccountId, email: EmailId) -> Result<Vec<BodySource>> {
        self.read_call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT m.id, m.raw_name, m.uidvalidity, c.uid FROM copy c \
                 JOIN mailbox m ON m.id = c.mailbox_id JOIN email e ON e.id = c.email_id \
                 WHERE c.email_id = ?1 AND e.account_id = ?2 AND c.uid < ?3 \
                 AND m.uidvalidity != 0 ORDER BY c.uid DESC",
            )?;
            let rows = st.query_map(params![email.0, account.0, PLACEHOLDER_UID_BASE], |r| {
                Ok(BodySource {
                    mailbox: MailboxId(r.get(0)?),
                    raw_name: r.get(1)?,
                    uidvalidity: UidValidity(r.get(2)?),
                    uid: Uid(r.get(3)?),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn uids_missing_body(&self, mailbox: MailboxId, limit: usize) -> Result<Vec<Uid>> {
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT c.uid FROM email e CROSS JOIN copy c ON c.email_id = e.id \
                 WHERE e.account_id = (SELECT account_id FROM mailbox WHERE id = ?1) \
                 AND e.blob_id IS NULL AND c.mailbox_id = ?1 AND c.uid < 4294967296 \
                 ORDER BY c.uid DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![mailbox.0, limit as i64], |r| Ok(Uid(r.get(0)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn missing_bodies_since(
        &self,
        mailbox: MailboxId,
        received_since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(Uid, u64)>> {
        self.call(move |c| policy::missing_bodies(c, mailbox, received_since, limit))
            .await
    }

    async fn collect_orphans(&self, account: AccountId) -> Result<usize> {
        let blobs = self.blobs.clone();
        self.write(move |c, committed| {
            let (n, gone) = write::collect_orphans(c, committed, account)?;
            for b in gone {
                blobs.remove(&b)?;
            }
            Ok(n)
        })
        .await
    }

    async fn pop3_entries(&self, account: AccountId) -> Result<Vec<Pop3Entry>> {
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT uidl, uid, retrieved_at, deleted_on_server FROM pop3_message \
                 WHERE account_id = ?1 ORDER BY uid",
            )?;
            let rows = st.query_map([account.0], |r| {
                Ok(Pop3Entry {
                    uidl: r.get(0)?,
                    uid: Uid(r.get(1)?),
                    retrieved_at: r.get(2)?,
                    deleted_on_server: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn pop3_mark_deleted(&self, account: AccountId, uidls: &[String]) -> Result<()> {
        let uidls = uidls.to_vec();
        self.call(move |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "UPDATE pop3_message SET deleted_on_server = 1 WHERE account_id = ?1 AND uidl = ?2",
                )?;
                for u in &uidls {
                    st.execute(params![account.0, u])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

fn epoch_of(epochs: &Mutex<std::collections::HashMap<i64, u64>>, account: AccountId) -> u64 {
    epochs
        .lock()
        .map(|m| m.get(&account.0).copied().unwrap_or(0))
        .unwrap_or(0)
}

fn mailbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MailboxRecord> {
    let role: Option<String> = r.get(6)?;
    Ok(MailboxRecord {
        id: MailboxId(r.get(0)?),
        account: AccountId(r.get(1)?),
        raw_name: r.get(2)?,
        name: r.get(3)?,
        parent: r.get::<_, Option<i64>>(4)?.map(MailboxId),
        delimiter: r.get(5)?,
        role: role.as_deref().and_then(Role::from_name),
        subscribed: r.get(7)?,
        selectable: r.get(8)?,
        uidvalidity: UidValidity(r.get(9)?),
        uidnext: Uid(r.get(10)?),
        highestmodseq: ModSeq(r.get::<_, i64>(11)? as u64),
        progress: Progress {
            total: r.get(12)?,
            headers: r.get(13)?,
            bodies: r.get(14)?,
        },
    })
}

const MAILBOX_COLUMNS: &str = "m.id, m.account_id, m.raw_name, m.name, m.parent_id, \
    m.delimiter, m.role, m.subscribed, m.selectable, m.uidvalidity, m.uidnext, \
    m.highestmodseq, m.server_total, m.copies, m.bodies";
