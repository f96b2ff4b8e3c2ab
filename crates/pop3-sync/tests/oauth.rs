//! POP3 AUTH (RFC 5034) with OAuth 2.0 bearer tokens against a real authorization server
//! (oidc-provider) and a Dovecot that introspects every token: OAUTHBEARER (RFC 7628) and
//! XOAUTH2, and a refused token as a typed error.

use anyhow::Result;
use mail_types::{AccountKind, Security};
use pop3_sync::{Endpoint, Error, Login, Pop3Client, Pop3Options, sync_pop3_login};
use std::sync::Arc;
use store::{NewAccount, ServerSettings, SqliteStore, Store};
use testkit::oidc::{AuthServer, AuthServerOptions, CLIENT_ID};
use testkit::{Dovecot, DovecotOAuth2, DovecotOptions, corpus};

const USER: &str = "bob@example.org";

fn start(mechanisms: &[&str]) -> Result<(AuthServer, Dovecot)> {
    let auth = AuthServer::start(AuthServerOptions::default())?;
    let mut oauth2 = DovecotOAuth2::new(auth.introspection_url());
    oauth2.mechanisms = mechanisms.iter().map(|m| m.to_string()).collect();
    let dovecot = Dovecot::start(DovecotOptions {
        oauth2: Some(oauth2),
        ..DovecotOptions::default()
    })?;
    dovecot.add_user(USER, "unused password")?;
    Ok((auth, dovecot))
}

fn endpoint(d: &Dovecot) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port: d.pop3s_port(),
        security: Security::Tls,
        ca_file: Some(d.ca_file().to_path_buf()),
    }
}

fn bearer(token: String) -> Login {
    Login::OAuth2 {
        username: USER.into(),
        access_token: token,
    }
}

fn last_login_method(d: &Dovecot) -> Option<String> {
    let log = std::fs::read_to_string(d.log_path()).ok()?;
    log.lines()
        .rev()
        .filter(|l| l.contains("pop3-login: Info: Login:"))
        .find_map(|l| Some(l.split("method=").nth(1)?.split(',').next()?.to_string()))
}

async fn retrieves_with(mechanisms: &[&str], expected: &str) -> Result<()> {
    let (auth, dovecot) = start(mechanisms)?;
    dovecot.deliver(USER, &corpus::message("a@example.com", USER, "Hi", "Hello"))?;
    let token = auth.access_token(&auth.mint_refresh_token(USER, CLIENT_ID)?)?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("p.sqlite"))?);
    let user = store.create_user("bob", "x").await?;
    let account = store
        .create_account(&NewAccount {
            user,
            name: "pop".into(),
            kind: AccountKind::Pop3,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: dovecot.pop3s_port(),
                security: Security::Tls,
                username: USER.into(),
                password_enc: vec![],
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await?;
    let report = sync_pop3_login(
        &*store,
        account,
        &endpoint(&dovecot),
        &bearer(token),
        &Pop3Options::default(),
    )
    .await?;
    assert_eq!(report.retrieved, 1);
    let mut method = None;
    for _ in 0..50 {
        method = last_login_method(&dovecot);
        if method.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(method.as_deref(), Some(expected));
    Ok(())
}

#[tokio::test]
async fn oauthbearer_retrieval() -> Result<()> {
    retrieves_with(&["xoauth2", "oauthbearer"], "OAUTHBEARER").await
}

#[tokio::test]
async fn xoauth2_retrieval() -> Result<()> {
    retrieves_with(&["xoauth2"], "XOAUTH2").await
}

#[tokio::test]
async fn refused_token_is_token_rejected() -> Result<()> {
    for mechs in [&["oauthbearer"][..], &["xoauth2"][..]] {
        let (auth, dovecot) = start(mechs)?;
        let rt = auth.mint_refresh_token(USER, CLIENT_ID)?;
        let token = auth.access_token(&rt)?;
        auth.revoke(&rt)?;
        match Pop3Client::connect_and_login_with(&endpoint(&dovecot), &bearer(token)).await {
            Err(Error::TokenRejected { failure, .. }) => {
                assert!(failure.token_invalid(), "{mechs:?}: {failure}")
            }
            Err(e) => panic!("{mechs:?}: expected TokenRejected, got {e}"),
            Ok(_) => panic!("{mechs:?}: a revoked token logged in"),
        }
    }
    Ok(())
}
