//! OAuth 2.0 logins against a real authorization server (oidc-provider) and a Dovecot that
//! checks every token by introspection: OAUTHBEARER (RFC 7628) and XOAUTH2, and the error
//! challenge of a refused token (RFC 7628 3.2.2) as a typed error.

use anyhow::Result;
use imap_sync::{Endpoint, Error, Login, Session};
use mail_types::Security;
use testkit::oidc::{AuthServer, AuthServerOptions, CLIENT_ID};
use testkit::{Dovecot, DovecotOAuth2, DovecotOptions};

const USER: &str = "alice@example.org";

fn start(mechanisms: &[&str]) -> Result<(AuthServer, Dovecot)> {
    let auth = AuthServer::start(AuthServerOptions::default())?;
    let mut oauth2 = DovecotOAuth2::new(auth.introspection_url());
    oauth2.mechanisms = mechanisms.iter().map(|m| m.to_string()).collect();
    let dovecot = Dovecot::start(DovecotOptions {
        oauth2: Some(oauth2),
        ..DovecotOptions::default()
    })?;
    dovecot.add_user(USER, "a password nobody uses here")?;
    Ok((auth, dovecot))
}

fn endpoint(d: &Dovecot) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port: d.imaps_port(),
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

/// The mechanism of the last successful IMAP login, from Dovecot's log.
fn last_login_method(d: &Dovecot) -> Option<String> {
    let log = std::fs::read_to_string(d.log_path()).ok()?;
    log.lines()
        .rev()
        .filter(|l| l.contains("imap-login: Info: Login:"))
        .find_map(|l| {
            let m = l.split("method=").nth(1)?;
            Some(m.split(',').next()?.to_string())
        })
}

async fn logs_in_with(mechanisms: &[&str], expected: &str) -> Result<()> {
    let (auth, dovecot) = start(mechanisms)?;
    let token = auth.access_token(&auth.mint_refresh_token(USER, CLIENT_ID)?)?;
    let mut s = Session::connect_login(&endpoint(&dovecot), &bearer(token)).await?;
    // Authenticated: the mailboxes are there.
    let (entries, _, _) = s.list().await?;
    assert!(entries.iter().any(|e| e.raw_name == "INBOX"));
    s.logout().await;
    // The log line is written as the login completes; allow it a moment.
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
async fn oauthbearer_login_when_offered() -> Result<()> {
    logs_in_with(&["xoauth2", "oauthbearer"], "OAUTHBEARER").await
}

#[tokio::test]
async fn xoauth2_login_when_oauthbearer_is_not_offered() -> Result<()> {
    logs_in_with(&["xoauth2"], "XOAUTH2").await
}

#[tokio::test]
async fn refused_token_is_a_typed_error_with_the_servers_status() -> Result<()> {
    for mechs in [&["oauthbearer"][..], &["xoauth2"][..]] {
        let (auth, dovecot) = start(mechs)?;
        let rt = auth.mint_refresh_token(USER, CLIENT_ID)?;
        let token = auth.access_token(&rt)?;
        // Revoking the grant ends its access tokens too: the server now refuses this one.
        auth.revoke(&rt)?;
        match Session::connect_login(&endpoint(&dovecot), &bearer(token)).await {
            Err(Error::TokenRejected { failure, .. }) => {
                assert!(failure.token_invalid(), "{mechs:?}: {failure}")
            }
            Err(e) => panic!("{mechs:?}: expected TokenRejected, got {e}"),
            Ok(_) => panic!("{mechs:?}: a revoked token logged in"),
        }
        // The connection was left in a clean state: a good token works at once.
        let rt = auth.mint_refresh_token(USER, CLIENT_ID)?;
        let token = auth.access_token(&rt)?;
        Session::connect_login(&endpoint(&dovecot), &bearer(token))
            .await?
            .logout()
            .await;
    }
    Ok(())
}

#[tokio::test]
async fn no_oauth_mechanism_is_unsupported() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, "pw")?;
    match Session::connect_login(&endpoint(&dovecot), &bearer("t".into())).await {
        Err(Error::Unsupported(_)) => Ok(()),
        other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
    }
}
