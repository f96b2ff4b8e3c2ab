//! ManageSieve in the engine: tried at account start with the account's own login (an
//! OAuth2 access token from the engine's token source, renewed once when refused), and
//! never tried when the configuration says `sieve = false`.

use anyhow::{Context, Result};
use engine::{Engine, OAuth, OAuthProvider, PasswordSource, SecretSeal};
use mail_types::{AccountAuth, AccountId, AccountKind, Security};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{NewAccount, ServerSettings, SieveSettings, SqliteStore, Store};
use testkit::oidc::{AuthServer, AuthServerOptions, CLIENT_ID, CLIENT_SECRET};
use testkit::{Dovecot, DovecotOAuth2, DovecotOptions};

const DEADLINE: Duration = Duration::from_secs(30);
const ALICE: &str = "alice@example.org";

fn plain_passwords() -> PasswordSource {
    Arc::new(|a: &store::AccountRecord| Ok(String::from_utf8(a.server.password_enc.clone())?))
}

fn plain_seal() -> SecretSeal {
    Arc::new(|s: &str| Ok(s.as_bytes().to_vec()))
}

fn provider(auth: &AuthServer) -> OAuthProvider {
    OAuthProvider {
        name: "test".into(),
        issuer: Some(auth.issuer()),
        auth_url: None,
        token_url: None,
        device_url: None,
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        scopes: engine::oauth::default_scopes(Some(&auth.issuer())),
    }
}

async fn add_account(
    store: &dyn Store,
    dovecot: &Dovecot,
    secret: &str,
    auth: AccountAuth,
    sieve: SieveSettings,
) -> Result<AccountId> {
    let user = store.create_user("u", "x").await?;
    let id = store
        .create_account(&NewAccount {
            user,
            name: "a".into(),
            kind: AccountKind::Imap,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: dovecot.imap_port(),
                security: Security::Starttls,
                username: ALICE.into(),
                password_enc: secret.as_bytes().to_vec(),
                ca_file: Some(dovecot.ca_file().display().to_string()),
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth,
        })
        .await?;
    store.set_sieve_settings(id, &sieve).await?;
    Ok(id)
}

async fn wait_tried(store: &dyn Store, id: AccountId) -> Result<SieveSettings> {
    let start = Instant::now();
    loop {
        let s = store.sieve_settings(id).await?;
        if s.checked_at != 0 {
            return Ok(s);
        }
        anyhow::ensure!(start.elapsed() < DEADLINE, "ManageSieve never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn oauth2_account_finds_managesieve_with_its_token() -> Result<()> {
    let auth = AuthServer::start(AuthServerOptions::default())?;
    let dovecot = Dovecot::start(DovecotOptions {
        sieve: true,
        oauth2: Some(DovecotOAuth2::new(auth.introspection_url())),
        ..DovecotOptions::default()
    })?;
    dovecot.add_user(ALICE, "unused")?;
    let rt = auth.mint_refresh_token(ALICE, CLIENT_ID)?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let sieve = SieveSettings {
        port: dovecot.managesieve_port(),
        ..SieveSettings::default()
    };
    let oauth2 = AccountAuth::OAuth2 {
        provider: "test".into(),
    };
    let id = add_account(store.as_ref(), &dovecot, &rt, oauth2, sieve).await?;
    let oauth = Arc::new(OAuth::new(vec![provider(&auth)], Some(plain_seal())));
    let mut engine = Engine::new(store.clone(), plain_passwords()).with_oauth(oauth);
    engine.start_all().await?;
    let found = wait_tried(store.as_ref(), id).await?;
    let caps: managesieve::Capabilities =
        serde_json::from_str(found.capabilities.as_deref().context("not found")?)?;
    assert!(caps.has_extension("vacation"), "{caps:?}");

    // The access token the engine holds is revoked: the next connection renews it once.
    auth.revoke_access_tokens(ALICE)?;
    let record = store.account(id).await?.context("account")?;
    let mut c = engine.sieve().connect(&record).await?;
    assert!(c.list_scripts().await?.is_empty());
    c.logout().await;
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn sieve_false_is_never_tried() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions {
        sieve: true,
        ..DovecotOptions::default()
    })?;
    dovecot.add_user(ALICE, "pw")?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let sieve = SieveSettings {
        enabled: false,
        port: dovecot.managesieve_port(),
        ..SieveSettings::default()
    };
    let id = add_account(store.as_ref(), &dovecot, "pw", AccountAuth::Password, sieve).await?;
    let mut engine = Engine::new(store.clone(), plain_passwords());
    engine.start_all().await?;
    let found = wait_tried(store.as_ref(), id).await?;
    assert_eq!(found.capabilities, None);
    let record = store.account(id).await?.context("account")?;
    assert!(matches!(
        engine.sieve().connect(&record).await,
        Err(engine::sieve::SieveError::Disabled)
    ));
    // No ManageSieve login reached the server.
    let log = std::fs::read_to_string(dovecot.log_path())?;
    assert!(!log.contains("managesieve-login: Login"), "{log}");
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_server_down_at_start_is_found_when_it_is_back() -> Result<()> {
    let mut dovecot = Dovecot::start(DovecotOptions {
        sieve: true,
        ..DovecotOptions::default()
    })?;
    dovecot.add_user(ALICE, "pw")?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite"))?);
    let sieve = SieveSettings {
        port: dovecot.managesieve_port(),
        ..SieveSettings::default()
    };
    let id = add_account(store.as_ref(), &dovecot, "pw", AccountAuth::Password, sieve).await?;
    dovecot.stop();
    let mut engine =
        Engine::new(store.clone(), plain_passwords()).with_options(engine::EngineOptions {
            sieve_retry: Duration::from_millis(200),
            ..engine::EngineOptions::default()
        });
    engine.start_all().await?;
    let first = wait_tried(store.as_ref(), id).await?;
    assert_eq!(first.capabilities, None, "found while the server was down");
    dovecot.restart()?;
    let start = Instant::now();
    while store.sieve_settings(id).await?.capabilities.is_none() {
        anyhow::ensure!(
            start.elapsed() < DEADLINE,
            "not found after the server came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.shutdown().await;
    Ok(())
}
