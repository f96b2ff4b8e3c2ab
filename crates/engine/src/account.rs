//! The life of one account: connect, sync everything, then watch and resync what changes;
//! on any failure back off and start over. The account's status is kept in the store.

use crate::oauth::{OAuth, TokenError};
use crate::{Backoff, PasswordSource};
use imap_sync::response::Response;
use imap_sync::sync::{AccountSync, SyncReport};
use imap_sync::{Credentials, Endpoint, Error, Login, Session};
use mail_types::{AccountAuth, AccountId, SyncStatus, UserId};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::{AccountRecord, BodyPolicy, Directory, Store};
use tokio::sync::watch;

/// RFC 2177: a server may log out a client idle for 30 minutes; IDLE is renewed well
/// before.
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
/// With NOTIFY nothing is renewed by itself; a NOOP on both connections this often proves
/// them alive (and keeps middleboxes from forgetting them). TCP keepalive catches a dead
/// peer in between.
const NOTIFY_KEEPALIVE: Duration = Duration::from_secs(10 * 60);
/// Without NOTIFY only INBOX is watched live; the other mailboxes are resynced this often.
const IDLE_MODE_RESYNC: Duration = Duration::from_secs(5 * 60);
/// A refused password is retried this rarely: it will not start working by itself, and
/// servers lock accounts that keep failing.
const AUTH_RETRY: Duration = Duration::from_secs(15 * 60);
/// After a first event, wait this long for more so a burst costs one resync.
const COALESCE: Duration = Duration::from_millis(3);
/// With `notify_flush` set and nobody looking, how often a quiet NOTIFY watcher asks again
/// whether someone is (a wakeup, no network traffic).
const PRESENCE_CHECK: Duration = Duration::from_secs(1);

pub(crate) struct Ctx {
    pub store: Arc<dyn Store>,
    pub passwords: PasswordSource,
    pub oauth: Arc<OAuth>,
    pub shutdown: watch::Receiver<bool>,
    pub options: crate::EngineOptions,
    pub presence: Option<Arc<dyn crate::Presence>>,
    /// Shared by every account: see `EngineOptions::connect_concurrency`.
    pub connecting: Arc<tokio::sync::Semaphore>,
}

/// How an account logs in: its password, or an OAuth2 access token kept fresh.
pub(crate) struct Auth<'a> {
    pub store: &'a dyn Directory,
    pub passwords: &'a PasswordSource,
    pub oauth: &'a OAuth,
}

impl Auth<'_> {
    /// The login to use now, and when it must be renewed (OAuth2: before the access token
    /// expires). `rejected`: an access token a server just refused.
    pub async fn login(
        &self,
        account: &AccountRecord,
        rejected: Option<&str>,
    ) -> Result<(Login, Option<tokio::time::Instant>), Error> {
        let username = account.server.username.clone();
        match &account.auth {
            AccountAuth::Password => {
                let password = (self.passwords)(account)
                    .map_err(|e| Error::Auth(format!("stored password unusable: {e}")))?;
                Ok((Login::Password(Credentials { username, password }), None))
            }
            AccountAuth::OAuth2 { .. } => {
                let t = self
                    .oauth
                    .access_token(self.store, self.passwords, account, rejected)
                    .await
                    .map_err(token_error)?;
                Ok((
                    Login::OAuth2 {
                        username,
                        access_token: t.value,
                    },
                    Some(t.renew_at),
                ))
            }
        }
    }

    /// Connects and logs in. An access token the server refuses is renewed and tried once
    /// more (it may have been revoked or have expired early); a second refusal stands.
    pub async fn connect(
        &self,
        account: &AccountRecord,
        ep: &Endpoint,
    ) -> Result<(Session, Option<tokio::time::Instant>), Error> {
        let (login, renew) = self.login(account, None).await?;
        let choice = provider_choice(account);
        match Session::connect_profile(ep, &login, choice).await {
            Ok(s) => Ok((s, renew)),
            Err(e) => match refused_token(&login, &e) {
                Some(rejected) => {
                    tracing::info!(account = %account.id, error = %e,
                        "access token refused; renewing it once");
                    let (login, renew) = self.login(account, Some(rejected)).await?;
                    Ok((Session::connect_profile(ep, &login, choice).await?, renew))
                }
                None => Err(e),
            },
        }
    }
}

/// The provider profile the account's configuration named; a name this build does not
/// know (a store written by a newer one) falls back to detection.
pub(crate) fn provider_choice(account: &AccountRecord) -> imap_sync::ProviderChoice {
    account.provider.parse().unwrap_or_else(|e: String| {
        tracing::warn!(account = %account.id, error = %e, "unknown provider profile; detecting it");
        imap_sync::ProviderChoice::Auto
    })
}

/// The access token a server refused, when a new one may do better.
fn refused_token<'a>(login: &'a Login, e: &Error) -> Option<&'a str> {
    let Login::OAuth2 { access_token, .. } = login else {
        return None;
    };
    match e {
        Error::TokenRejected { failure, .. } if failure.token_invalid() => Some(access_token),
        // Microsoft answers a bad token with a plain NO and no error challenge.
        Error::Auth(_) => Some(access_token),
        _ => None,
    }
}

/// A token failure as the session error the account loop classifies: an unreachable
/// token endpoint is retried with backoff like an unreachable mail server; the rest needs
/// someone to act.
fn token_error(e: TokenError) -> Error {
    if e.is_transient() {
        Error::Io(std::io::Error::other(e.to_string()))
    } else {
        Error::Auth(e.to_string())
    }
}

/// Why a connected round ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoundEnd {
    Shutdown,
    /// The access token is about to expire: log in again with a fresh one. Servers may
    /// end a session whose token expired (Microsoft does); the new round's first pass
    /// picks up whatever happened in between.
    Renew,
}

impl Ctx {
    fn auth(&self) -> Auth<'_> {
        Auth {
            store: self.store.as_ref(),
            passwords: &self.passwords,
            oauth: &self.oauth,
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps, or returns early (true) when shutdown is signalled.
    async fn sleep_or_stop(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stopping(),
            _ = self.shutdown.changed() => true,
        }
    }

    /// How often the NOTIFY watcher of `user`'s account flushes now (None: not now).
    fn flush_interval(&self, user: UserId) -> Option<Duration> {
        let f = self.options.notify_flush?;
        let present = self.options.notify_flush_always
            || self.presence.as_ref().is_some_and(|p| p.is_present(user));
        present.then_some(f)
    }

    async fn set_status(&self, account: AccountId, status: SyncStatus) {
        if let Err(e) = self.store.set_sync_status(account, &status).await {
            tracing::error!(account = %account, error = %e, "cannot record sync status");
        }
    }
}

/// POP3 has no push: new mail is retrieved this often.
const POP3_POLL: Duration = Duration::from_secs(120);

pub(crate) async fn run_pop3(mut ctx: Ctx, account: AccountRecord) {
    let id = account.id;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    let opts = pop3_sync::Pop3Options {
        delete_after_days: account.pop3_delete_after_days,
        ..pop3_sync::Pop3Options::default()
    };
    while !ctx.stopping() {
        let result = pop3_round(&ctx, &account, &opts).await;
        let wait = match result {
            Ok(r) => {
                tracing::info!(account = %id, listed = r.listed, retrieved = r.retrieved,
                    deleted = r.deleted, "POP3 retrieval done");
                ctx.set_status(id, SyncStatus::Ok).await;
                backoff.reset();
                POP3_POLL
            }
            Err(pop3_sync::Error::Auth(text)) => {
                tracing::warn!(account = %id, user = %account.server.username, "POP3 authentication failed");
                ctx.set_status(id, SyncStatus::AuthFailed(text)).await;
                AUTH_RETRY
            }
            Err(e @ pop3_sync::Error::TokenRejected { .. }) => {
                tracing::warn!(account = %id, user = %account.server.username, error = %e,
                    "POP3 authentication failed");
                ctx.set_status(id, SyncStatus::AuthFailed(e.to_string()))
                    .await;
                AUTH_RETRY
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(account = %id, error = %e, retry_in_ms = delay.as_millis() as u64,
                    "POP3 retrieval failed; will retry");
                ctx.set_status(id, SyncStatus::Retrying(e.to_string()))
                    .await;
                delay
            }
        };
        if ctx.sleep_or_stop(wait).await {
            break;
        }
    }
    tracing::info!(account = %id, "account task stopped");
}

/// One POP3 retrieval: log in (renewing a refused access token once), retrieve.
async fn pop3_round(
    ctx: &Ctx,
    account: &AccountRecord,
    opts: &pop3_sync::Pop3Options,
) -> Result<pop3_sync::Pop3Report, pop3_sync::Error> {
    let auth = ctx.auth();
    let (login, _) = auth.login(account, None).await.map_err(pop3_login_error)?;
    ctx.set_status(account.id, SyncStatus::Syncing).await;
    let ep = endpoint(account);
    let result = pop3_sync::sync_pop3_login(&*ctx.store, account.id, &ep, &login, opts).await;
    let rejected = match (&login, &result) {
        (
            Login::OAuth2 { access_token, .. },
            Err(pop3_sync::Error::TokenRejected { failure, .. }),
        ) if failure.token_invalid() => Some(access_token.as_str()),
        (Login::OAuth2 { access_token, .. }, Err(pop3_sync::Error::Auth(_))) => {
            Some(access_token.as_str())
        }
        _ => None,
    };
    let Some(rejected) = rejected else {
        return result;
    };
    tracing::info!(account = %account.id, "access token refused; renewing it once");
    let (login, _) = auth
        .login(account, Some(rejected))
        .await
        .map_err(pop3_login_error)?;
    pop3_sync::sync_pop3_login(&*ctx.store, account.id, &ep, &login, opts).await
}

fn pop3_login_error(e: Error) -> pop3_sync::Error {
    match e {
        Error::Auth(text) => pop3_sync::Error::Auth(text),
        Error::Io(e) => pop3_sync::Error::Io(e),
        other => pop3_sync::Error::Protocol(other.to_string()),
    }
}

pub(crate) fn endpoint(a: &AccountRecord) -> Endpoint {
    Endpoint {
        host: a.server.host.clone(),
        port: a.server.port,
        security: a.server.security,
        ca_file: a.server.ca_file.as_ref().map(PathBuf::from),
    }
}

pub(crate) async fn run_imap(mut ctx: Ctx, account: AccountRecord) {
    let id = account.id;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    while !ctx.stopping() {
        let result = imap_round(&mut ctx, &account, &mut backoff).await;
        match result {
            Ok(RoundEnd::Shutdown) => break,
            Ok(RoundEnd::Renew) => {
                tracing::info!(account = %id, "access token due for renewal; logging in again");
            }
            Err(Error::Auth(text)) => {
                tracing::warn!(account = %id, user = %account.server.username, "authentication failed");
                ctx.set_status(id, SyncStatus::AuthFailed(text)).await;
                if ctx.sleep_or_stop(AUTH_RETRY).await {
                    break;
                }
            }
            Err(e @ Error::TokenRejected { .. }) => {
                tracing::warn!(account = %id, user = %account.server.username, error = %e,
                    "authentication failed");
                ctx.set_status(id, SyncStatus::AuthFailed(e.to_string()))
                    .await;
                if ctx.sleep_or_stop(AUTH_RETRY).await {
                    break;
                }
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(account = %id, error = %e, retry_in_ms = delay.as_millis() as u64,
                    "sync failed; will retry");
                ctx.set_status(id, SyncStatus::Retrying(e.to_string()))
                    .await;
                if ctx.sleep_or_stop(delay).await {
                    break;
                }
            }
        }
    }
    tracing::info!(account = %id, "account task stopped");
}

/// One connected life: full sync, then watch until an error or shutdown.
async fn imap_round(
    ctx: &mut Ctx,
    account: &AccountRecord,
    backoff: &mut Backoff,
) -> Result<RoundEnd, Error> {
    let ep = endpoint(account);
    let Some(permit) = connect_permit(ctx).await else {
        return Ok(RoundEnd::Shutdown);
    };
    ctx.set_status(account.id, SyncStatus::Syncing).await;
    let (mut worker, renew) = ctx.auth().connect(account, &ep).await?;
    drop(permit);
    let mut sync = AccountSync::new(ctx.store.clone(), account.id);
    sync.options.bodies = ctx.options.background_bodies;
    apply_policy(ctx, &mut sync, &worker).await?;
    let started = std::time::Instant::now();
    let report = sync.sync_all(&mut worker).await?;
    log_report(account.id, &report, started.elapsed());
    // Not a reset: a server that gets through a pass and then answers nothing usable would
    // otherwise be retried at the first delay forever.
    backoff.working();

    let watch = Watch {
        account,
        ep: &ep,
        renew,
    };
    // The NOTIFY watcher is a second connection for the whole life of the round; a server
    // whose profile allows fewer connections than the engine's four (worker, watcher,
    // outbox, priority lane) is watched on the worker itself (`watch_idle`).
    if worker.has("NOTIFY") && !shares_worker(&worker) {
        watch_notify(ctx, &sync, account.user, worker, watch).await
    } else {
        watch_idle(ctx, &sync, worker, watch).await
    }
}

/// Puts the account's body policy and download budget in force for this round: which
/// bodies the background pass fetches, and the daily limit (the configured one, else the
/// provider profile's) recorded for everyone who reads the budget.
async fn apply_policy(ctx: &Ctx, sync: &mut AccountSync, worker: &Session) -> Result<(), Error> {
    apply_body_policy(ctx.store.as_ref(), sync, worker).await
}

/// The account's body policy and download limit put in force on `sync` (the engine's
/// rounds, and `tidings account sync`); `worker`'s provider profile gives the default
/// limit.
pub async fn apply_body_policy(
    store: &dyn BodyPolicy,
    sync: &mut AccountSync,
    worker: &Session,
) -> Result<(), Error> {
    let policy = store.account_policy(sync.account).await?;
    sync.options.bodies_since = policy.bodies_days.map(|days| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        now.saturating_sub(i64::from(days).saturating_mul(mail_types::budget::DAY_SECONDS))
    });
    let limit = match policy.daily_download_mb {
        Some(0) => None,
        Some(mb) => Some(mb),
        None => worker.profile().daily_download_mb,
    };
    store.set_download_limit(sync.account, limit).await?;
    sync.options.budget = limit.is_some();
    tracing::debug!(account = %sync.account, bodies_days = ?policy.bodies_days,
        daily_download_mb = ?limit, "body policy");
    Ok(())
}

/// What the watchers need to open their connection and to know when to log in again.
struct Watch<'a> {
    account: &'a AccountRecord,
    ep: &'a Endpoint,
    /// When the worker's login must be renewed (OAuth2).
    renew: Option<tokio::time::Instant>,
}

impl Watch<'_> {
    /// How long until the logins must be renewed (`Duration::MAX`: never).
    fn until_renew(&self) -> Duration {
        self.renew.map_or(Duration::MAX, |r| {
            r.saturating_duration_since(tokio::time::Instant::now())
        })
    }

    fn renew_due(&self) -> bool {
        self.renew.is_some_and(|r| tokio::time::Instant::now() >= r)
    }
}

/// A permit to open a connection (TCP, TLS, login), of `EngineOptions::
/// connect_concurrency`; `None` when shutting down. Only connecting is limited: a long first
/// pass of a big account does not hold back the others.
async fn connect_permit(ctx: &mut Ctx) -> Option<Option<tokio::sync::OwnedSemaphorePermit>> {
    let connecting = ctx.connecting.clone();
    tokio::select! {
        p = connecting.acquire_owned() => Some(p.ok()),
        _ = ctx.shutdown.changed() => None,
    }
}

/// Opens the watcher connection under a connect permit; the renewal time becomes the
/// earlier of both connections'.
async fn connect_watcher(ctx: &mut Ctx, watch: &mut Watch<'_>) -> Result<Option<Session>, Error> {
    let Some(_permit) = connect_permit(ctx).await else {
        return Ok(None);
    };
    let (s, renew) = ctx.auth().connect(watch.account, watch.ep).await?;
    watch.renew = match (watch.renew, renew) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Some(s))
}

/// The account is in step and its watcher is in place: `ok` means "watching", so a client
/// (and the watch_many bench) can tell when a change will be pushed.
async fn watching(ctx: &Ctx, account: AccountId) {
    ctx.set_status(account, SyncStatus::Ok).await;
}

fn log_report(account: AccountId, r: &SyncReport, took: Duration) {
    tracing::info!(account = %account, mailboxes = r.mailboxes, unchanged = r.skipped_unchanged,
        new = r.new_headers, bodies = r.bodies, flags = r.flag_updates, expunged = r.expunged,
        resets = r.resets, took_ms = took.as_millis() as u64, "sync pass done");
    if r.budget_reached {
        tracing::warn!(account = %account,
            "daily download budget reached; the background body pass resumes tomorrow (UTC)");
    }
}

/// NOTIFY on a second connection with nothing selected; each STATUS event names the
/// mailbox to resync on the worker connection.
async fn watch_notify(
    ctx: &mut Ctx,
    sync: &AccountSync,
    user: UserId,
    mut worker: Session,
    mut watch: Watch<'_>,
) -> Result<RoundEnd, Error> {
    let Some(mut watcher) = connect_watcher(ctx, &mut watch).await? else {
        return Ok(RoundEnd::Shutdown);
    };
    // What NOTIFY SET answers (every mailbox's STATUS now) is the first batch of events: a
    // message delivered after the first pass looked at its mailbox and before the
    // notifications started is told by nothing else until the next full pass.
    let mut initial = watcher.notify_personal().await?;
    // The first pass may have left its last mailbox selected.
    worker.leave_examined().await?;
    worker.shrink_buffers();
    watching(ctx, sync.account).await;
    tracing::info!(account = %sync.account, "watching all mailboxes with NOTIFY");
    let mut last_pass = tokio::time::Instant::now();
    let mut last_noop = tokio::time::Instant::now();
    let mut last_flush = tokio::time::Instant::now();
    loop {
        if watch.renew_due() && initial.is_empty() {
            watcher.logout().await;
            worker.logout().await;
            return Ok(RoundEnd::Renew);
        }
        // Dovecot 2.3 reports a mailbox renamed or deleted by another client late or not
        // at all, so a full pass runs every `notify_full_pass`; with LIST-STATUS it costs
        // one LIST when nothing changed.
        let until_pass = ctx
            .options
            .notify_full_pass
            .saturating_sub(last_pass.elapsed());
        let until_noop = NOTIFY_KEEPALIVE.saturating_sub(last_noop.elapsed());
        // With `notify_flush`, a NOOP this often makes Dovecot send what it holds back,
        // while the user is looking (asked again every PRESENCE_CHECK otherwise).
        let flush = ctx.flush_interval(user);
        let until_flush = match flush {
            Some(f) => f.saturating_sub(last_flush.elapsed()),
            None if ctx.options.notify_flush.is_some() => PRESENCE_CHECK,
            None => Duration::MAX,
        };
        let mut events = Vec::new();
        // Events a NOOP brought came all at once, in its answer: no need to wait for more.
        let mut whole = false;
        let first = if initial.is_empty() {
            tokio::select! {
                _ = ctx.shutdown.changed() => {
                    watcher.logout().await;
                    worker.logout().await;
                    return Ok(RoundEnd::Shutdown);
                }
                ev = watcher.wait_event(
                    until_pass.min(until_noop).min(until_flush).min(watch.until_renew())
                ) => ev?,
            }
        } else {
            events = std::mem::take(&mut initial);
            whole = true;
            None
        };
        match first {
            Some(first) => {
                // The instant the server told us (push_latency measures from this line).
                tracing::debug!(account = %sync.account, "told by the server");
                events.push(first);
            }
            None if whole => {}
            None => {
                if last_pass.elapsed() >= ctx.options.notify_full_pass {
                    let started = std::time::Instant::now();
                    let report = sync.sync_all(&mut worker).await?;
                    if report.skipped_unchanged < report.mailboxes {
                        log_report(sync.account, &report, started.elapsed());
                    }
                    worker.leave_examined().await?;
                    last_pass = tokio::time::Instant::now();
                }
                let flush_due = flush.is_some_and(|f| last_flush.elapsed() >= f);
                if last_noop.elapsed() >= NOTIFY_KEEPALIVE || flush_due {
                    // Dovecot answers a NOOP with the notifications it was delaying
                    // (imap-notify.c `imap_notify_flush`); they are events like any other.
                    events = watcher.noop().await?;
                    last_flush = tokio::time::Instant::now();
                    if !events.is_empty() {
                        tracing::debug!(account = %sync.account, "told by the server");
                        whole = true;
                    }
                }
                if last_noop.elapsed() >= NOTIFY_KEEPALIVE {
                    // Quiet for a long time: prove the worker is alive too.
                    worker.noop().await?;
                    last_noop = tokio::time::Instant::now();
                }
                if events.is_empty() {
                    continue;
                }
            }
        }
        while !whole && let Some(more) = watcher.wait_event(COALESCE).await? {
            events.push(more);
            if events.len() > 10_000 {
                break;
            }
        }
        let mut list_changed = false;
        let mut touched: BTreeMap<String, Option<imap_sync::response::StatusData>> =
            BTreeMap::new();
        for ev in events {
            match ev {
                Response::Status(st) => {
                    touched.insert(st.raw_name.clone(), Some(st));
                }
                Response::List(_) | Response::UnparsedList => list_changed = true,
                Response::Condition { text, .. } if text.contains("NOTIFICATIONOVERFLOW") => {
                    // RFC 5465 5.8: the server gave up on events; everything may have changed.
                    list_changed = true;
                }
                _ => {}
            }
        }
        if list_changed {
            let started = std::time::Instant::now();
            let report = sync.sync_all(&mut worker).await?;
            log_report(sync.account, &report, started.elapsed());
            last_pass = tokio::time::Instant::now();
        } else {
            for (raw, st) in touched {
                let Some(mb) = sync.mailbox_by_raw_name(&raw).await? else {
                    continue;
                };
                let started = std::time::Instant::now();
                let mut report = SyncReport::default();
                sync.sync_mailbox(&mut worker, &mb, st.as_ref(), &mut report)
                    .await?;
                if sync.options.bodies {
                    sync.fetch_bodies(&mut worker, &mb, &mut report).await?;
                }
                sync.store.collect_orphans(sync.account).await?;
                sync.record_download(&mut worker).await?;
                if report.new_headers + report.flag_updates + report.expunged + report.resets > 0 {
                    tracing::info!(account = %sync.account, mailbox = %mb.name,
                        new = report.new_headers, flags = report.flag_updates,
                        expunged = report.expunged, took_ms = started.elapsed().as_millis() as u64,
                        "mailbox changed on the server");
                }
            }
            // A delivery or an expunge moves the quota's usage (RFC 9425 via RFC 9208).
            sync.sync_quota(&mut worker).await?;
        }
        // The watcher's events count too (small, but a day of them adds up).
        sync.record_download(&mut watcher).await?;
        // push: leave the mailbox. With the worker left in INBOX, Dovecot 2.3 told the
        // watcher of later deliveries ~500 ms late (measured, see docs/design/push.md, "Latency").
        worker.leave_examined().await?;
        worker.shrink_buffers();
    }
}

/// Connections per account the engine opens at most: the worker, the watcher, the outbox
/// and the priority lane.
const CONNECTIONS_PER_ACCOUNT: u32 = 4;

/// Whether the worker must also be the watcher: the provider's profile allows fewer
/// connections than the engine would open (iCloud drops clients beyond a few). The outbox
/// and the priority lane keep theirs: they are opened only when there is work.
fn shares_worker(worker: &Session) -> bool {
    worker.profile().max_connections < CONNECTIONS_PER_ACCOUNT
}

/// IDLE on INBOX on a second connection (or on the worker, when the provider's profile
/// allows too few connections); the rest is resynced on a timer.
async fn watch_idle(
    ctx: &mut Ctx,
    sync: &AccountSync,
    mut worker: Session,
    mut watch: Watch<'_>,
) -> Result<RoundEnd, Error> {
    if !worker.has("IDLE") {
        tracing::info!(account = %sync.account, "server has neither NOTIFY nor IDLE; polling");
    }
    let mut own_watcher = if shares_worker(&worker) {
        tracing::info!(account = %sync.account, provider = %worker.profile().provider,
            max_connections = worker.profile().max_connections,
            "few connections allowed; watching INBOX on the worker");
        None
    } else {
        let Some(w) = connect_watcher(ctx, &mut watch).await? else {
            return Ok(RoundEnd::Shutdown);
        };
        Some(w)
    };
    if let Some(w) = own_watcher.as_mut() {
        w.examine("INBOX", None).await?;
    }
    worker.shrink_buffers();
    watching(ctx, sync.account).await;
    let mut last_full = tokio::time::Instant::now();
    loop {
        if watch.renew_due() {
            if let Some(w) = own_watcher.take() {
                w.logout().await;
            }
            worker.logout().await;
            return Ok(RoundEnd::Renew);
        }
        let until_full = IDLE_MODE_RESYNC.saturating_sub(last_full.elapsed());
        let wait = until_full.min(IDLE_RENEW).min(watch.until_renew());
        let watcher = match own_watcher.as_mut() {
            Some(w) => w,
            None => {
                // The pass left another mailbox selected: IDLE reports on INBOX only.
                worker.examine("INBOX", None).await?;
                &mut worker
            }
        };
        let events = if watcher.has("IDLE") {
            tokio::select! {
                _ = ctx.shutdown.changed() => None,
                ev = watcher.idle(wait) => Some(ev?),
            }
        } else {
            if ctx.sleep_or_stop(wait.min(Duration::from_secs(60))).await {
                return Ok(RoundEnd::Shutdown);
            }
            Some(watcher.noop().await?)
        };
        let Some(events) = events else {
            worker.logout().await;
            return Ok(RoundEnd::Shutdown);
        };
        let inbox_changed = events.iter().any(|e| {
            matches!(
                e,
                Response::Exists(_)
                    | Response::Expunge(_)
                    | Response::Vanished { .. }
                    | Response::Fetch(_)
            )
        });
        if last_full.elapsed() >= IDLE_MODE_RESYNC {
            let started = std::time::Instant::now();
            let report = sync.sync_all(&mut worker).await?;
            log_report(sync.account, &report, started.elapsed());
            last_full = tokio::time::Instant::now();
        } else if inbox_changed {
            if let Some(mb) = sync.mailbox_by_raw_name("INBOX").await? {
                let mut report = SyncReport::default();
                sync.sync_mailbox(&mut worker, &mb, None, &mut report)
                    .await?;
                if sync.options.bodies {
                    sync.fetch_bodies(&mut worker, &mb, &mut report).await?;
                }
                sync.store.collect_orphans(sync.account).await?;
                sync.sync_quota(&mut worker).await?;
            }
        } else {
            worker.noop().await?;
        }
        sync.record_download(&mut worker).await?;
        if let Some(w) = own_watcher.as_mut() {
            sync.record_download(w).await?;
        }
    }
}
