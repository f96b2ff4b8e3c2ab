//! The outbox worker of one IMAP account: replays the user's queued changes to the server
//! in order, on its own connection, batching flag changes into one UID STORE per mailbox
//! and flag set. Transient failures (connection lost, server down, RFC 5530 UNAVAILABLE)
//! keep the entry and retry with backoff; a refusal (NO/BAD) reverts the local change and
//! records the reason (JMAP `Outbox/get`). An entry is deleted only after the server
//! confirmed it, and every replay is idempotent (flags by nature; an APPEND looks for its
//! message before it is sent again; MOVE of a UID already moved finds nothing to move).

use crate::{Backoff, PasswordSource};
use imap_sync::write::refusal_is_transient;
use imap_sync::{Endpoint, Error, Session};
use mail_types::{AccountId, MailboxId, ModSeq, Uid, UidValidity};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use store::{
    AccountRecord, FlagUpdate, MailboxChanges, MailboxRecord, OutboxDone, OutboxEntry, OutboxOp,
    PLACEHOLDER_UID_BASE, Store,
};
use tokio::sync::watch;

/// Entries read per round; flag changes among them go out in batched commands.
const BATCH: usize = 5000;
/// Even without a signal the outbox is looked at this often (entries queued by another
/// process, e.g. the CLI, or left by a crash).
const POLL: Duration = Duration::from_secs(30);
/// An idle connection is closed after this long.
const IDLE_CLOSE: Duration = Duration::from_secs(120);
/// A transient refusal of one entry is retried this many times before it counts as final.
const MAX_TRANSIENT_REFUSALS: i64 = 8;

pub(crate) struct OutboxCtx {
    /// Fenced with the account's lease: its writes fail once the lease is lost.
    pub store: Arc<dyn Store>,
    /// Whether this node still holds the account: asked before each command that
    /// changes the server (see `crate::lease`).
    pub holding: Arc<crate::lease::Holding>,
    /// The epoch of the lease `holding` is about, for the error once it ran out.
    pub epoch: i64,
    pub passwords: PasswordSource,
    pub oauth: Arc<crate::OAuth>,
    pub shutdown: watch::Receiver<bool>,
    pub endpoint: Endpoint,
}

/// Runs until shutdown.
pub(crate) async fn run(mut ctx: OutboxCtx, account: AccountRecord) {
    let id = account.id;
    // Before the first drain: work queued after its read rings this, work queued before
    // (a restart, another process) is found by it (see `store::wake`).
    let mut signal = ctx.store.outbox_signal(id);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(120));
    let mut session: Option<Session> = None;
    let mut own_modseq: HashMap<MailboxId, u64> = HashMap::new();
    let mut last_used = tokio::time::Instant::now();
    loop {
        if *ctx.shutdown.borrow() {
            break;
        }
        let wait = match drain(&ctx, &account, &mut session, &mut own_modseq).await {
            Ok(did) => {
                backoff.reset();
                if did {
                    last_used = tokio::time::Instant::now();
                }
                if last_used.elapsed() >= IDLE_CLOSE
                    && let Some(s) = session.take()
                {
                    s.logout().await;
                }
                POLL
            }
            Err(e) => {
                session = None;
                let d = backoff.next_delay();
                tracing::warn!(account = %id, error = %e, retry_in_ms = d.as_millis() as u64,
                    "outbox replay failed; will retry");
                d
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = signal.changed() => { if r.is_err() { tokio::time::sleep(wait).await; } }
            _ = ctx.shutdown.changed() => break,
        }
    }
    if let Some(s) = session.take() {
        s.logout().await;
    }
    tracing::info!(account = %id, "outbox worker stopped");
}

async fn connect(ctx: &OutboxCtx, account: &AccountRecord) -> Result<Session, Error> {
    let auth = crate::account::Auth {
        store: ctx.store.as_ref(),
        passwords: &ctx.passwords,
        oauth: &ctx.oauth,
    };
    // The outbox's work is short; a token expiring later in the session is harmless to it.
    Ok(auth.connect(account, &ctx.endpoint).await?.0)
}

/// Replays everything pending; returns whether there was anything. A transient error ends
/// the round (the caller backs off and reconnects).
async fn drain(
    ctx: &OutboxCtx,
    account: &AccountRecord,
    session: &mut Option<Session>,
    own_modseq: &mut HashMap<MailboxId, u64>,
) -> Result<bool, Error> {
    // One worker for the whole drain: it remembers the selected mailbox between entries.
    let mut w = Worker {
        store: ctx.store.clone(),
        holding: ctx.holding.clone(),
        epoch: ctx.epoch,
        account: account.id,
        selected: None,
        mailboxes: HashMap::new(),
        own_modseq: std::mem::take(own_modseq),
    };
    let r = drain_with(ctx, account, session, &mut w).await;
    *own_modseq = std::mem::take(&mut w.own_modseq);
    // push: leave the mailbox once the queue is empty, so an idle connection never keeps
    // one selected (Dovecot watches a selected mailbox of a session; see
    // docs/design/watching.md). UNSELECT only: CLOSE would expunge what is \Deleted.
    if r.is_ok()
        && w.selected.is_some()
        && let Some(s) = session.as_mut()
    {
        s.unselect_if_offered().await?;
    }
    r
}

async fn drain_with(
    ctx: &OutboxCtx,
    account: &AccountRecord,
    session: &mut Option<Session>,
    w: &mut Worker,
) -> Result<bool, Error> {
    let mut did = false;
    let mut rounds = 0;
    loop {
        rounds += 1;
        if rounds > 10_000 || *ctx.shutdown.borrow() {
            return Ok(did);
        }
        let entries = ctx.store.outbox_next(account.id, BATCH).await?;
        if entries.is_empty() {
            return Ok(did);
        }
        if !ctx.holding.holds() {
            // The lease ran out (or this node was paused past it): another node replays
            // the queue now. The engine's beat stops this worker, or renews the lease.
            tracing::debug!(account = %account.id, "account lease not held; replay paused");
            return Ok(did);
        }
        did = true;
        if session.is_none() {
            match connect(ctx, account).await {
                Ok(s) => *session = Some(s),
                Err(e) => {
                    // Shown to the user (Outbox/get lastError) while it is retried.
                    ctx.store
                        .outbox_defer(entries[0].id, &e.to_string())
                        .await?;
                    return Err(e);
                }
            }
        }
        let Some(s) = session.as_mut() else {
            return Ok(did);
        };
        w.load_mailboxes().await?;
        let flags_run: Vec<OutboxEntry> = entries
            .iter()
            .take_while(|e| matches!(e.op, OutboxOp::Flags { .. }))
            .cloned()
            .collect();
        let moves_run = same_moves(&entries);
        let expunge_run = same_expunges(&entries);
        let result = if !flags_run.is_empty() {
            w.flags(s, &flags_run).await
        } else if moves_run.len() > 1 {
            w.moves(s, &moves_run).await
        } else if expunge_run.len() > 1 {
            w.expunges(s, &expunge_run).await
        } else {
            let e = &entries[0];
            tracing::debug!(account = %account.id, entry = e.id, op = ?e.op, "replaying");
            match w.one(s, e).await {
                Ok(done) => {
                    ctx.store.outbox_complete(account.id, vec![done]).await?;
                    Ok(())
                }
                Err(err) => Err((e.clone(), err)),
            }
        };
        if let Err((entry, err)) = result {
            let permanent = match &err {
                Error::Refused { text, .. } => {
                    !refusal_is_transient(text) || entry.attempts >= MAX_TRANSIENT_REFUSALS
                }
                Error::Protocol(_) => entry.attempts >= MAX_TRANSIENT_REFUSALS,
                _ => false,
            };
            if permanent {
                tracing::warn!(account = %account.id, entry = entry.id, kind = entry.op.kind(),
                    error = %err, "server refused a change; reverted");
                ctx.store
                    .outbox_refuse(account.id, entry.id, &err.to_string())
                    .await?;
                continue;
            }
            ctx.store.outbox_defer(entry.id, &err.to_string()).await?;
            if matches!(err, Error::Refused { .. } | Error::Protocol(_)) {
                ctx.store.outbox_begin(entry.id, None).await?;
            }
            return Err(err);
        }
    }
}

/// The leading run of MOVEs between the same two mailboxes (one UID MOVE for all).
fn same_moves(entries: &[OutboxEntry]) -> Vec<OutboxEntry> {
    let key = |e: &OutboxEntry| match &e.op {
        OutboxOp::Move { from, uid, to, .. } if *uid > 0 && *uid < PLACEHOLDER_UID_BASE => {
            Some((*from, *to))
        }
        _ => None,
    };
    let Some(first) = entries.first().and_then(key) else {
        return Vec::new();
    };
    entries
        .iter()
        .take(imap_sync::write::UIDS_PER_COMMAND)
        .take_while(|e| key(e) == Some(first))
        .cloned()
        .collect()
}

/// The leading run of removals from the same mailbox (one STORE + UID EXPUNGE for all).
fn same_expunges(entries: &[OutboxEntry]) -> Vec<OutboxEntry> {
    let key = |e: &OutboxEntry| match &e.op {
        OutboxOp::Expunge { mailbox, uid, .. } if *uid > 0 && *uid < PLACEHOLDER_UID_BASE => {
            Some(*mailbox)
        }
        _ => None,
    };
    let Some(first) = entries.first().and_then(key) else {
        return Vec::new();
    };
    entries
        .iter()
        .take(imap_sync::write::UIDS_PER_COMMAND)
        .take_while(|e| key(e) == Some(first))
        .cloned()
        .collect()
}

fn uid_of(e: &OutboxEntry) -> u32 {
    match &e.op {
        OutboxOp::Move { uid, .. } | OutboxOp::Expunge { uid, .. } => {
            u32::try_from(*uid).unwrap_or(0)
        }
        _ => 0,
    }
}

fn done_of(e: &OutboxEntry) -> OutboxDone {
    OutboxDone {
        id: e.id,
        rev: e.rev,
        new_uid: None,
        raw_name: None,
        old_raw_name: None,
    }
}

struct Worker {
    store: Arc<dyn Store>,
    holding: Arc<crate::lease::Holding>,
    epoch: i64,
    account: AccountId,
    /// The mailbox selected on the session, with the UIDVALIDITY its SELECT reported.
    selected: Option<(String, UidValidity)>,
    mailboxes: HashMap<MailboxId, MailboxRecord>,
    /// The highest MODSEQ our own STOREs produced per mailbox: our own earlier change is no
    /// reason for a later UNCHANGEDSINCE to fail (the sync has not stored it yet).
    own_modseq: HashMap<MailboxId, u64>,
}

/// Whether a wire name is a real one (a mailbox created locally has none until CREATE).
fn real_raw(m: &MailboxRecord) -> Option<&str> {
    (!m.raw_name.starts_with('\u{0}')).then_some(m.raw_name.as_str())
}

impl Worker {
    async fn load_mailboxes(&mut self) -> Result<(), Error> {
        self.mailboxes = self
            .store
            .mailboxes(self.account)
            .await?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        Ok(())
    }

    fn raw(&self, m: MailboxId) -> Result<String, Error> {
        self.mailboxes
            .get(&m)
            .and_then(real_raw)
            .map(str::to_string)
            .ok_or_else(|| Error::Refused {
                command: "outbox".into(),
                text: format!("mailbox {m} does not exist on the server"),
            })
    }

    async fn select(&mut self, s: &mut Session, raw: &str) -> Result<(), Error> {
        if self.selected_name() != Some(raw) {
            self.selected = None;
            let sel = s.select(raw).await?;
            self.selected = Some((raw.to_string(), UidValidity(sel.uidvalidity)));
        }
        Ok(())
    }

    fn selected_name(&self) -> Option<&str> {
        self.selected.as_ref().map(|(name, _)| name.as_str())
    }

    /// A run of flag entries: one UID STORE per mailbox, direction and flag set.
    async fn flags(
        &mut self,
        s: &mut Session,
        run: &[OutboxEntry],
    ) -> Result<(), (OutboxEntry, Error)> {
        // (mailbox, add?, flags) -> uids; the mailbox's HIGHESTMODSEQ for UNCHANGEDSINCE.
        let mut groups: BTreeMap<(MailboxId, bool, Vec<String>), Vec<u32>> = BTreeMap::new();
        let mut modseq: HashMap<MailboxId, u64> = HashMap::new();
        let mut owner: HashMap<MailboxId, OutboxEntry> = HashMap::new();
        for e in run {
            let OutboxOp::Flags { add, remove } = &e.op else {
                continue;
            };
            let mut add = add.clone();
            add.sort();
            let mut remove = remove.clone();
            remove.sort();
            for (m, uid, hms) in &e.targets {
                modseq.insert(*m, *hms);
                owner.entry(*m).or_insert_with(|| e.clone());
                if !add.is_empty() {
                    groups
                        .entry((*m, true, add.clone()))
                        .or_default()
                        .push(*uid);
                }
                if !remove.is_empty() {
                    groups
                        .entry((*m, false, remove.clone()))
                        .or_default()
                        .push(*uid);
                }
            }
        }
        type Stores = Vec<(bool, Vec<String>, Vec<u32>)>;
        let mut by_mailbox: BTreeMap<MailboxId, Stores> = BTreeMap::new();
        for ((m, add, flags), uids) in groups {
            by_mailbox.entry(m).or_default().push((add, flags, uids));
        }
        for (m, cmds) in by_mailbox {
            let Some(entry) = owner.get(&m).cloned() else {
                continue;
            };
            let Ok(raw) = self.raw(m) else {
                // The mailbox is gone (deleted elsewhere): nothing left to flag there.
                continue;
            };
            match self.select(s, &raw).await {
                Ok(()) => {}
                Err(Error::Refused { .. }) => continue, // gone on the server
                Err(e) => return Err((entry, e)),
            }
            let since = modseq
                .get(&m)
                .copied()
                .filter(|m| *m > 0)
                .map(|hms| hms.max(self.own_modseq.get(&m).copied().unwrap_or(0)));
            for (add, flags, uids) in cmds {
                // Asked before each STORE: a run of them outlasts the check before the
                // batch, and a node paused in it wakes without its lease.
                if !self.holding.holds() {
                    return Err((entry, self.lease_gone()));
                }
                s.clear_unsolicited();
                let out = s
                    .uid_store(&uids, add, &flags, since)
                    .await
                    .map_err(|e| (entry.clone(), e))?;
                // RFC 7162 3.1.3: the server reports the new MODSEQ of what it changed, even
                // for .SILENT.
                if let Some(mm) = out.highest_modseq {
                    let e = self.own_modseq.entry(m).or_insert(0);
                    *e = (*e).max(mm);
                }
                if !out.modified.is_empty() {
                    // Another device changed these since our last sync: take its flags into
                    // the store now (the pending change stays on top), then set ours.
                    self.refresh(s, m, &out.modified)
                        .await
                        .map_err(|e| (entry.clone(), e))?;
                    // Unconditional this time, so asked again: a node paused past its lease
                    // would set again what the user took away meanwhile (the refresh may
                    // write nothing, so the store's fence need not have stopped it).
                    if !self.holding.holds() {
                        return Err((entry, self.lease_gone()));
                    }
                    s.uid_store(&out.modified, add, &flags, None)
                        .await
                        .map_err(|e| (entry.clone(), e))?;
                }
            }
            s.clear_unsolicited();
        }
        let done: Vec<OutboxDone> = run
            .iter()
            .map(|e| OutboxDone {
                id: e.id,
                rev: e.rev,
                new_uid: None,
                raw_name: None,
                old_raw_name: None,
            })
            .collect();
        self.store
            .outbox_complete(self.account, done)
            .await
            .map_err(|e| (run[0].clone(), Error::Store(e)))?;
        Ok(())
    }

    /// A run of MOVEs between the same two mailboxes, as one UID MOVE.
    async fn moves(
        &mut self,
        s: &mut Session,
        run: &[OutboxEntry],
    ) -> Result<(), (OutboxEntry, Error)> {
        let first = run[0].clone();
        let OutboxOp::Move { from, to, .. } = &first.op else {
            return Ok(());
        };
        let (from, to) = (*from, *to);
        let inner = async {
            let (src, dst) = (self.raw(from)?, self.raw(to)?);
            self.select(s, &src).await?;
            let uids: Vec<u32> = run.iter().map(uid_of).collect();
            let pairs: HashMap<u32, u32> = s.uid_move(&uids, &dst).await?.into_iter().collect();
            let mut done = Vec::with_capacity(run.len());
            for e in run {
                let uid = uid_of(e);
                let mut d = done_of(e);
                d.new_uid = pairs.get(&uid).map(|n| (uid, *n));
                if d.new_uid.is_none() {
                    d.new_uid = self
                        .find_by_message_id(s, e.email, &dst)
                        .await?
                        .map(|n| (uid, n));
                }
                done.push(d);
            }
            s.clear_unsolicited();
            self.store.outbox_complete(self.account, done).await?;
            Ok::<(), Error>(())
        };
        inner.await.map_err(|e| (first, e))
    }

    /// A run of removals from one mailbox, as one STORE \Deleted + UID EXPUNGE.
    async fn expunges(
        &mut self,
        s: &mut Session,
        run: &[OutboxEntry],
    ) -> Result<(), (OutboxEntry, Error)> {
        let first = run[0].clone();
        let OutboxOp::Expunge { mailbox, .. } = &first.op else {
            return Ok(());
        };
        let mailbox = *mailbox;
        let inner = async {
            if let Ok(raw) = self.raw(mailbox) {
                match self.select(s, &raw).await {
                    Ok(()) => {
                        let uids: Vec<u32> = run.iter().map(uid_of).collect();
                        s.uid_expunge(&uids).await?;
                    }
                    // The mailbox is gone, and the messages with it.
                    Err(Error::Refused { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            s.clear_unsolicited();
            self.store
                .outbox_complete(self.account, run.iter().map(done_of).collect())
                .await?;
            Ok::<(), Error>(())
        };
        inner.await.map_err(|e| (first, e))
    }

    /// Fetches the server's flags of `uids` in the selected mailbox into the store.
    async fn refresh(&mut self, s: &mut Session, m: MailboxId, uids: &[u32]) -> Result<(), Error> {
        // The UIDs are the selected mailbox's: the store takes their flags only if it holds
        // the same epoch of it.
        let Some((_, uidvalidity)) = self.selected.clone() else {
            return Err(Error::Protocol(
                "flags refreshed without a selected mailbox".into(),
            ));
        };
        let flags = s
            .uid_fetch_flags(uids)
            .await?
            .into_iter()
            .map(|f| FlagUpdate {
                uid: Uid(f.uid),
                flags: f.flags,
                modseq: ModSeq(f.modseq.unwrap_or(0)),
            })
            .collect();
        self.store
            .apply_mailbox_changes(
                self.account,
                m,
                MailboxChanges {
                    flags,
                    ..MailboxChanges::new(uidvalidity)
                },
            )
            .await?;
        Ok(())
    }

    /// The error of a command not sent because the account's lease ran out.
    fn lease_gone(&self) -> Error {
        Error::Store(store::Error::Fenced {
            account: self.account,
            epoch: self.epoch,
        })
    }

    /// One entry that is not a flag change.
    async fn one(&mut self, s: &mut Session, e: &OutboxEntry) -> Result<OutboxDone, Error> {
        let mut done = OutboxDone {
            id: e.id,
            rev: e.rev,
            new_uid: None,
            raw_name: None,
            old_raw_name: None,
        };
        let real_uid = |uid: i64| (uid > 0 && uid < PLACEHOLDER_UID_BASE).then_some(uid as u32);
        match &e.op {
            OutboxOp::Flags { .. } => {}
            OutboxOp::Move { from, uid, to, .. } => {
                let (src, dst) = (self.raw(*from)?, self.raw(*to)?);
                if let Some(uid) = real_uid(*uid) {
                    self.select(s, &src).await?;
                    let pairs = s.uid_move(&[uid], &dst).await?;
                    done.new_uid = pairs.into_iter().find(|(a, _)| *a == uid);
                    if done.new_uid.is_none() {
                        // Nothing moved: a replay after the MOVE happened (crash), or the
                        // message was deleted elsewhere. The first is found by its Message-ID.
                        done.new_uid = self
                            .find_by_message_id(s, e.email, &dst)
                            .await?
                            .map(|u| (uid, u));
                        if done.new_uid.is_none() {
                            tracing::warn!(account = %self.account, entry = e.id, uid,
                                "moved message is on the server in neither mailbox; dropped");
                        }
                    }
                }
            }
            OutboxOp::Copy { from, uid, to, .. } => {
                let (src, dst) = (self.raw(*from)?, self.raw(*to)?);
                if let Some(uid) = real_uid(*uid) {
                    self.select(s, &src).await?;
                    let pairs = s.uid_copy(&[uid], &dst).await?;
                    done.new_uid = pairs.into_iter().find(|(a, _)| *a == uid);
                    if done.new_uid.is_none() {
                        done.new_uid = self
                            .find_by_message_id(s, e.email, &dst)
                            .await?
                            .map(|u| (uid, u));
                    }
                }
            }
            OutboxOp::Expunge { mailbox, uid, .. } => {
                if let (Some(uid), Ok(raw)) = (real_uid(*uid), self.raw(*mailbox)) {
                    match self.select(s, &raw).await {
                        Ok(()) => s.uid_expunge(&[uid]).await?,
                        // The mailbox is gone, and the message with it.
                        Err(Error::Refused { .. }) => {}
                        Err(err) => return Err(err),
                    }
                }
            }
            OutboxOp::Append {
                mailbox,
                blob_id,
                flags,
                received_at,
                header_hash,
                size,
                uidnext_before,
                ..
            } => {
                let raw = self.raw(*mailbox)?;
                // A replay after an attempt that may have reached the server: look first.
                if e.attempts > 0
                    && let Some(n) = uidnext_before
                {
                    self.selected = None;
                    s.examine(&raw, None).await?;
                    if let Some(uid) = s
                        .find_appended(*n, header_hash, u32::try_from(*size).unwrap_or(0))
                        .await?
                    {
                        done.new_uid = Some((uid, uid));
                        return Ok(done);
                    }
                }
                let Some(message) = self.store.blob(blob_id).await? else {
                    return Err(Error::Refused {
                        command: "APPEND".into(),
                        text: "the message's blob is missing from the store".into(),
                    });
                };
                let uidnext = s.status_uidnext(&raw).await?;
                self.store.outbox_begin(e.id, uidnext).await?;
                // Asked again right before the APPEND leaves: a node paused here past its
                // lease would otherwise append, when it wakes, a second copy beside the
                // one the new holder made meanwhile (its look for an earlier attempt's
                // copy cannot see one made after it looked). Flags, MOVEs and EXPUNGEs
                // replayed late do no such harm.
                if !self.holding.holds() {
                    tracing::warn!(account = %self.account, entry = e.id,
                        "account lease ran out before an APPEND; not sent");
                    return Err(self.lease_gone());
                }
                // And once more between the command and the message: a node paused
                // while the server's go-ahead was on its way sends nothing when it wakes.
                let holding = self.holding.clone();
                let still_held = move || holding.holds();
                let guard: Option<&(dyn Fn() -> bool + Send + Sync)> =
                    self.holding.can_end().then_some(&still_held);
                let r = match s
                    .append_if(&raw, flags, Some(*received_at), &message, guard)
                    .await
                {
                    Err(Error::Abandoned(_)) => {
                        tracing::warn!(account = %self.account, entry = e.id,
                            "account lease ran out during an APPEND; its message not sent");
                        return Err(self.lease_gone());
                    }
                    r => r?,
                };
                done.new_uid = r.map(|(_, u)| (u, u));
            }
            OutboxOp::CreateMailbox {
                mailbox,
                parent,
                leaf,
            } => {
                let raw = self.child_raw(*parent, leaf)?;
                // Counted before the CREATE goes out, so a destroy from now on knows it
                // may reach the server; taken back before that, it is not sent at all.
                if !self.store.outbox_begin(e.id, None).await? {
                    let _ = mailbox;
                    return Ok(done);
                }
                if let Err(err) = s.create(&raw).await {
                    // Replayed after a crash: it is there already.
                    if !(matches!(err, Error::Refused { .. }) && s.mailbox_exists(&raw).await?) {
                        return Err(err);
                    }
                }
                let _ = mailbox;
                done.raw_name = Some(raw);
            }
            OutboxOp::RenameMailbox {
                mailbox,
                parent,
                leaf,
                ..
            } => {
                // Its current wire name: an earlier rename of an ancestor changed it.
                let old_raw = &self.raw(*mailbox)?;
                let raw = self.child_raw(*parent, leaf)?;
                if self.selected_name() == Some(old_raw.as_str()) {
                    s.unselect().await?;
                    self.selected = None;
                }
                if let Err(err) = s.rename(old_raw, &raw).await
                    && !(matches!(err, Error::Refused { .. })
                        && s.mailbox_exists(&raw).await?
                        && !s.mailbox_exists(old_raw).await?)
                {
                    return Err(err);
                }
                done.raw_name = Some(raw);
                done.old_raw_name = Some(old_raw.clone());
            }
            OutboxOp::DeleteMailbox { raw_name } => {
                if self.selected_name() == Some(raw_name.as_str()) {
                    s.unselect().await?;
                    self.selected = None;
                }
                if let Err(err) = s.delete(raw_name).await
                    && (!matches!(err, Error::Refused { .. }) || s.mailbox_exists(raw_name).await?)
                {
                    return Err(err);
                }
                // Dovecot (Maildir) brings a deleted mailbox back when another session has
                // it open; it is deleted again on the next try.
                if s.mailbox_exists(raw_name).await? {
                    return Err(Error::Protocol(format!(
                        "mailbox {raw_name:?} still exists after DELETE"
                    )));
                }
            }
            OutboxOp::Subscribe {
                mailbox,
                subscribed,
            } => {
                if let Ok(raw) = self.raw(*mailbox) {
                    match s.subscribe(&raw, *subscribed).await {
                        Ok(()) => {}
                        // UNSUBSCRIBE of something not subscribed: already as wanted.
                        Err(Error::Refused { .. }) if !subscribed => {}
                        Err(err) => return Err(err),
                    }
                }
            }
            OutboxOp::Labels {
                mailbox,
                uid,
                add,
                remove,
                ..
            } => {
                // Gmail's labels live on the message: set on its All Mail copy, every label
                // folder follows. A message gone from All Mail (trashed elsewhere) has no
                // labels to change.
                if let Some(uid) = real_uid(*uid) {
                    let raw = self.raw(*mailbox)?;
                    self.select(s, &raw).await?;
                    s.uid_store_labels(uid, add, remove).await?;
                }
            }
        }
        s.clear_unsolicited();
        Ok(done)
    }

    /// The UID of the Email's message in `mailbox`, by its Message-ID (None without one).
    async fn find_by_message_id(
        &mut self,
        s: &mut Session,
        email: Option<mail_types::EmailId>,
        mailbox: &str,
    ) -> Result<Option<u32>, Error> {
        let Some(email) = email else { return Ok(None) };
        let views = self.store.emails(self.account, &[email]).await?;
        let Some(mid) = views.first().and_then(|v| v.message_id.clone()) else {
            return Ok(None);
        };
        // The search examines `mailbox`: whatever was selected for writing is left.
        self.selected = None;
        let found = s.search_message_id(mailbox, &mid).await?;
        s.clear_unsolicited();
        Ok(found)
    }

    fn child_raw(&self, parent: Option<MailboxId>, leaf: &str) -> Result<String, Error> {
        let delim = self
            .mailboxes
            .values()
            .filter_map(|m| m.delimiter.clone())
            .find(|d| !d.is_empty())
            .unwrap_or_else(|| "/".into());
        let parent_raw = match parent {
            Some(p) => Some(self.raw(p)?),
            None => None,
        };
        imap_sync::write::child_raw_name(parent_raw.as_deref(), &delim, leaf)
    }
}
