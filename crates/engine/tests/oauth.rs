//! OAuth2 accounts in the engine, against a real authorization server (oidc-provider, on
//! loopback) and a Dovecot that introspects every token: access tokens renewed before
//! they expire while the account watches, a refresh token rotated and stored, a revoked
//! grant that ends as "auth failed: sign in again" without touching the other accounts,
//! and a token endpoint that is down, which is only "retrying".

use anyhow::{Context, Result, bail};
use engine::oauth::SIGN_IN_AGAIN;
use engine::{Engine, OAuth, OAuthProvider, PasswordSource, SecretSeal};
use mail_types::{AccountAuth, AccountId, AccountKind, Security, SyncStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{NewAccount, ServerSettings, SqliteStore, Store};
use testkit::oidc::{AuthServer, AuthServerOptions, CLIENT_ID, CLIENT_SECRET};
use testkit::{Dovecot, DovecotOAuth2, DovecotOptions, corpus};

const DEADLINE: Duration = Duration::from_secs(30);
const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

/// Secrets are stored as is: the tests read them back.
fn plain_passwords() -> PasswordSource {
    Arc::new(|a: &store::AccountRecord| Ok(String::from_utf8(a.server.password_enc.clone())?))
}

fn plain_seal() -> SecretSeal {
    Arc::new(|s: &str| Ok(s.as_bytes().to_vec()))
}

fn provider(auth: &AuthServer) -> OAuthProvider {
    OAuthProvider {
        name: "test".into(),
        // Discovery finds the token endpoint.
        issuer: Some(auth.issuer()),
        auth_url: None,
        token_url: None,
        device_url: None,
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        scopes: engine::oauth::default_scopes(Some(&auth.issuer())),
    }
}

fn dovecot_for(auth: &AuthServer, notify: bool) -> Result<Dovecot> {
    let d = Dovecot::start(DovecotOptions {
        notify,
        oauth2: Some(DovecotOAuth2::new(auth.introspection_url())),
        ..DovecotOptions::default()
    })?;
    d.add_user(ALICE, "alices password, unused")?;
    d.add_user(BOB, "bobs")?;
    Ok(d)
}

async fn add_account(
    store: &dyn Store,
    dovecot: &Dovecot,
    name: &str,
    login: &str,
    secret: &str,
    auth: AccountAuth,
) -> Result<AccountId> {
    let user = match store.user_by_name("u").await? {
        Some(u) => u.id,
        None => store.create_user("u", "x").await?,
    };
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
                password_enc: secret.as_bytes().to_vec(),
                ca_file: Some(dovecot.ca_file().display().to_string()),
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth,
        })
        .await?)
}

fn oauth2() -> AccountAuth {
    AccountAuth::OAuth2 {
        provider: "test".into(),
    }
}

async fn status(store: &dyn Store, id: AccountId) -> Result<SyncStatus> {
    Ok(store.account(id).await?.context("account")?.status)
}

async fn wait_status(store: &dyn Store, id: AccountId, want: &str) -> Result<SyncStatus> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        let s = status(store, id).await?;
        if s.name() == want {
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "account {id} never reached {want}; it is {:?}",
        status(store, id).await?
    )
}

async fn wait_subject(store: &dyn Store, id: AccountId, subject: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Some(inbox) = store
            .mailboxes(id)
            .await?
            .into_iter()
            .find(|m| m.name == "INBOX")
            && store
                .mailbox_messages(inbox.id)
                .await?
                .iter()
                .any(|m| m.subject.as_deref() == Some(subject))
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{subject:?} never reached the store of account {id}")
}

/// Successful IMAP logins of `user` with a bearer mechanism, from Dovecot's log.
fn bearer_logins(d: &Dovecot, user: &str) -> usize {
    let log = std::fs::read_to_string(d.log_path()).unwrap_or_default();
    log.lines()
        .filter(|l| {
            l.contains("imap-login: Info: Login:")
                && l.contains(&format!("user=<{user}>"))
                && (l.contains("method=OAUTHBEARER") || l.contains("method=XOAUTH2"))
        })
        .count()
}

async fn renewed_while_watching(notify: bool) -> Result<()> {
    // Short-lived access tokens, and a new refresh token at every refresh (the old one
    // then stops working: only a stored new one keeps the account alive).
    const TTL: Duration = Duration::from_secs(4);
    let auth = AuthServer::start(AuthServerOptions {
        access_token_ttl: Some(TTL),
        rotate_refresh_tokens: true,
        ..Default::default()
    })?;
    let dovecot = dovecot_for(&auth, notify)?;
    let rt = auth.mint_refresh_token(ALICE, CLIENT_ID)?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let id = add_account(store.as_ref(), &dovecot, "a", ALICE, &rt, oauth2()).await?;
    let oauth = Arc::new(OAuth::new(vec![provider(&auth)], Some(plain_seal())));
    let mut engine = Engine::new(store.clone(), plain_passwords()).with_oauth(oauth);
    engine.start_all().await?;
    wait_status(store.as_ref(), id, "ok").await?;
    let first = bearer_logins(&dovecot, ALICE);
    assert!(first >= 2, "worker and watcher logged in with a token");

    // Past the first token's life: the watch must have logged in again meanwhile.
    tokio::time::sleep(TTL + Duration::from_secs(2)).await;
    dovecot.deliver(
        ALICE,
        &corpus::message(BOB, ALICE, "After expiry", "still synced"),
    )?;
    wait_subject(store.as_ref(), id, "After expiry").await?;
    let later = bearer_logins(&dovecot, ALICE);
    assert!(
        later >= first + 2,
        "the logins were renewed before the token expired ({first} then {later})"
    );
    let stored = store
        .account(id)
        .await?
        .context("account")?
        .server
        .password_enc;
    assert_ne!(
        stored,
        rt.as_bytes(),
        "the rotated refresh token was stored"
    );
    // Healthy: a pass the renewed login started may still be running ("syncing"), and
    // ends "ok", not in an auth error.
    wait_status(store.as_ref(), id, "ok").await?;
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn expiring_token_is_renewed_while_watching_with_notify() -> Result<()> {
    renewed_while_watching(true).await
}

#[tokio::test]
async fn expiring_token_is_renewed_while_watching_with_idle() -> Result<()> {
    renewed_while_watching(false).await
}

#[tokio::test]
async fn revoked_grant_is_sign_in_again_and_other_accounts_keep_syncing() -> Result<()> {
    const TTL: Duration = Duration::from_secs(3);
    let auth = AuthServer::start(AuthServerOptions {
        access_token_ttl: Some(TTL),
        rotate_refresh_tokens: false,
        ..Default::default()
    })?;
    let dovecot = dovecot_for(&auth, true)?;
    let rt = auth.mint_refresh_token(ALICE, CLIENT_ID)?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let alice = add_account(store.as_ref(), &dovecot, "a", ALICE, &rt, oauth2()).await?;
    let bob = add_account(
        store.as_ref(),
        &dovecot,
        "b",
        BOB,
        "bobs",
        AccountAuth::Password,
    )
    .await?;
    let oauth = Arc::new(OAuth::new(vec![provider(&auth)], Some(plain_seal())));
    let mut engine = Engine::new(store.clone(), plain_passwords()).with_oauth(oauth);
    engine.start_all().await?;
    wait_status(store.as_ref(), alice, "ok").await?;
    wait_status(store.as_ref(), bob, "ok").await?;

    // The user withdraws Tidings' access at the provider.
    auth.revoke(&rt)?;
    let s = wait_status(store.as_ref(), alice, "auth_failed").await?;
    assert_eq!(s, SyncStatus::AuthFailed(SIGN_IN_AGAIN.into()));

    // Bob's account is untouched and still syncing live.
    dovecot.deliver(BOB, &corpus::message(ALICE, BOB, "For bob", "hi"))?;
    wait_subject(store.as_ref(), bob, "For bob").await?;
    assert_eq!(status(store.as_ref(), bob).await?.name(), "ok");
    // And alice stays failed (no retry storm against the provider in between).
    assert_eq!(
        status(store.as_ref(), alice).await?,
        SyncStatus::AuthFailed(SIGN_IN_AGAIN.into())
    );
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn token_endpoint_down_is_retrying_not_auth_failed() -> Result<()> {
    let mut auth = AuthServer::start(AuthServerOptions::default())?;
    let dovecot = dovecot_for(&auth, true)?;
    let rt = auth.mint_refresh_token(ALICE, CLIENT_ID)?;
    let provider = provider(&auth);
    auth.stop();
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let id = add_account(store.as_ref(), &dovecot, "a", ALICE, &rt, oauth2()).await?;
    let oauth = Arc::new(OAuth::new(vec![provider], Some(plain_seal())));
    let mut engine = Engine::new(store.clone(), plain_passwords()).with_oauth(oauth);
    engine.start_all().await?;
    let s = wait_status(store.as_ref(), id, "retrying").await?;
    assert!(s.error().contains("token endpoint"), "{s:?}");
    // A few backoff rounds later it is still a transient failure.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let s = status(store.as_ref(), id).await?;
        assert!(!matches!(s, SyncStatus::AuthFailed(_)), "{s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn refused_access_token_is_renewed_once_and_the_account_goes_on() -> Result<()> {
    // Long-lived tokens: only the refusal can make the engine renew one.
    let auth = AuthServer::start(AuthServerOptions::default())?;
    let dovecot = dovecot_for(&auth, true)?;
    let rt = auth.mint_refresh_token(ALICE, CLIENT_ID)?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let id = add_account(store.as_ref(), &dovecot, "a", ALICE, &rt, oauth2()).await?;
    let oauth = Arc::new(OAuth::new(vec![provider(&auth)], Some(plain_seal())));
    let mut engine = Engine::new(store.clone(), plain_passwords()).with_oauth(oauth);
    engine.start_all().await?;
    wait_status(store.as_ref(), id, "ok").await?;

    // The provider ends the access token (not the grant), and the server drops the
    // sessions: the engine's next login with its cached token is refused.
    assert!(auth.revoke_access_tokens(ALICE)? >= 1);
    dovecot.doveadm(&["kick", ALICE])?;
    dovecot.deliver(ALICE, &corpus::message(BOB, ALICE, "After kick", "x"))?;
    wait_subject(store.as_ref(), id, "After kick").await?;
    wait_status(store.as_ref(), id, "ok").await?;
    let log = std::fs::read_to_string(dovecot.log_path())?;
    assert!(
        log.lines().any(|l| l.contains("auth failed")
            && l.contains("method=OAUTHBEARER")
            && l.contains(&format!("user=<{ALICE}>"))),
        "the cached token was tried and refused first"
    );
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn pop3_oauth2_account_retrieves() -> Result<()> {
    let auth = AuthServer::start(AuthServerOptions::default())?;
    let dovecot = dovecot_for(&auth, true)?;
    dovecot.deliver(ALICE, &corpus::message(BOB, ALICE, "By POP3", "x"))?;
    let rt = auth.mint_refresh_token(ALICE, CLIENT_ID)?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let user = store.create_user("u", "x").await?;
    let id = store
        .create_account(&NewAccount {
            user,
            name: "p".into(),
            kind: AccountKind::Pop3,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: dovecot.pop3s_port(),
                security: Security::Tls,
                username: ALICE.into(),
                password_enc: rt.as_bytes().to_vec(),
                ca_file: Some(dovecot.ca_file().display().to_string()),
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: oauth2(),
        })
        .await?;
    let oauth = Arc::new(OAuth::new(vec![provider(&auth)], Some(plain_seal())));
    let mut engine = Engine::new(store.clone(), plain_passwords()).with_oauth(oauth);
    engine.start_all().await?;
    wait_subject(store.as_ref(), id, "By POP3").await?;
    wait_status(store.as_ref(), id, "ok").await?;
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_public_client_refreshes_without_a_secret() -> Result<()> {
    use testkit::oidc::PUBLIC_CLIENT_ID;
    let auth = AuthServer::start(AuthServerOptions::default())?;
    let dovecot = dovecot_for(&auth, true)?;
    let rt = auth.mint_refresh_token(ALICE, PUBLIC_CLIENT_ID)?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let id = add_account(store.as_ref(), &dovecot, "a", ALICE, &rt, oauth2()).await?;
    let mut p = provider(&auth);
    p.client_id = PUBLIC_CLIENT_ID.into();
    p.client_secret = None;
    let oauth = Arc::new(OAuth::new(vec![p], Some(plain_seal())));
    let mut engine = Engine::new(store.clone(), plain_passwords()).with_oauth(oauth);
    engine.start_all().await?;
    wait_status(store.as_ref(), id, "ok").await?;
    engine.shutdown().await;
    Ok(())
}
