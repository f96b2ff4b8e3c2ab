//! The client against a real Pigeonhole ManageSieve server (private Dovecot from
//! testkit), and against hostile servers on loopback.

#![allow(clippy::unwrap_used)]

use mail_types::Security;
use managesieve::{Auth, Client, Config, Error};
use std::time::Duration;
use testkit::{Dovecot, DovecotOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "alice@example.org";
const PASSWORD: &str = "secret";

fn dovecot() -> Dovecot {
    let d = Dovecot::start(DovecotOptions {
        sieve: true,
        ..Default::default()
    })
    .unwrap();
    d.add_user(USER, PASSWORD).unwrap();
    d
}

fn config(d: &Dovecot, security: Security) -> Config {
    let tls = mail_net::tls_config(Some(d.ca_file())).unwrap();
    Config::new(
        "127.0.0.1".into(),
        d.managesieve_port().unwrap(),
        security,
        tls,
    )
}

async fn login(d: &Dovecot, security: Security) -> Client {
    let mut c = Client::connect(config(d, security)).await.unwrap();
    c.authenticate(&Auth::Plain {
        username: USER,
        password: PASSWORD,
    })
    .await
    .unwrap();
    c
}

#[tokio::test]
async fn every_command_against_pigeonhole() {
    let d = dovecot();
    let mut c = login(&d, Security::Starttls).await;
    let caps = c.capabilities().clone();
    assert!(caps.implementation.unwrap().contains("Pigeonhole"));
    assert!(
        caps.sieve.iter().any(|e| e == "vacation"),
        "{:?}",
        caps.sieve
    );
    assert!(caps.sieve.iter().any(|e| e == "include"));
    assert!(c.list_scripts().await.unwrap().is_empty());

    // A script with a line break in a string goes as a literal, both ways.
    let good = b"require \"fileinto\";\r\nif header :contains \"subject\" \"x\" {\r\n  fileinto \"Junk\";\r\n}\r\n";
    assert_eq!(c.check_script(good).await.unwrap(), None);
    c.have_space("filters", good.len() as u64).await.unwrap();
    c.put_script("filters", good).await.unwrap();
    assert_eq!(c.get_script("filters").await.unwrap(), good.to_vec());
    c.set_active("filters").await.unwrap();
    let list = c.list_scripts().await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].active && list[0].name == "filters");

    // The server's words for a broken script.
    let bad = b"require \"fileinto\";\r\nfileinto \"Junk\"\r\n";
    let err = c.check_script(bad).await.unwrap_err();
    match &err {
        Error::No { text, .. } => assert!(text.contains("line"), "{text}"),
        other => panic!("{other:?}"),
    }
    let err = c.put_script("broken", bad).await.unwrap_err();
    assert!(matches!(err, Error::No { .. }), "{err:?}");

    // The active script cannot be deleted (RFC 5804 2.10: code ACTIVE).
    let err = c.delete_script("filters").await.unwrap_err();
    assert!(err.has_code("ACTIVE"), "{err:?}");
    let err = c.get_script("nope").await.unwrap_err();
    assert!(err.has_code("NONEXISTENT"), "{err:?}");

    c.rename_script("filters", "renamed").await.unwrap();
    let list = c.list_scripts().await.unwrap();
    assert_eq!(list[0].name, "renamed");
    assert!(list[0].active, "renaming keeps it active");
    c.set_active("").await.unwrap();
    c.delete_script("renamed").await.unwrap();
    assert!(c.list_scripts().await.unwrap().is_empty());
    // Names with quotes and non-ASCII survive the quoting.
    c.put_script("Ferien \"ä\"", b"keep;\r\n").await.unwrap();
    assert_eq!(c.list_scripts().await.unwrap()[0].name, "Ferien \"ä\"");
    c.logout().await;
}

#[tokio::test]
async fn plain_and_wrong_password() {
    let d = dovecot();
    let mut c = Client::connect(config(&d, Security::None)).await.unwrap();
    let err = c
        .authenticate(&Auth::Plain {
            username: USER,
            password: "wrong",
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    let mut c = login(&d, Security::None).await;
    c.capability().await.unwrap();
    c.logout().await;
}

#[tokio::test]
async fn no_server_there() {
    let d = Dovecot::start(DovecotOptions::default()).unwrap();
    // The IMAP port answers with an IMAP greeting: not ManageSieve.
    let mut cfg = config_for_port(d.imap_port());
    cfg.read_timeout = Duration::from_secs(2);
    assert!(Client::connect(cfg).await.is_err());
}

fn config_for_port(port: u16) -> Config {
    let tls = mail_net::tls_config(None).unwrap();
    Config::new("127.0.0.1".into(), port, Security::None, tls)
}

/// A server on loopback that sends `script` after reading each command line.
async fn hostile(replies: Vec<Vec<u8>>) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let mut buf = [0u8; 4096];
        for (i, reply) in replies.into_iter().enumerate() {
            if i > 0 && matches!(s.read(&mut buf).await, Ok(0) | Err(_)) {
                return;
            }
            if s.write_all(&reply).await.is_err() {
                return;
            }
        }
        // Hold the connection open for a while, then close.
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    port
}

const GREETING: &[u8] = b"\"IMPLEMENTATION\" \"evil\"\r\n\"SASL\" \"PLAIN\"\r\nOK\r\n";

#[tokio::test]
async fn a_huge_literal_is_refused_before_it_is_read() {
    let port = hostile(vec![
        GREETING.to_vec(),
        b"OK\r\n".to_vec(),
        // CAPABILITY after AUTHENTICATE
        GREETING.to_vec(),
        b"{9000000000}\r\nxxxx".to_vec(),
    ])
    .await;
    let mut c = Client::connect(config_for_port(port)).await.unwrap();
    c.authenticate(&Auth::Plain {
        username: "u",
        password: "p",
    })
    .await
    .unwrap();
    let err = c.get_script("x").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol(managesieve::parse::ParseError::LiteralTooLarge { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_server_closing_mid_response() {
    let port = hostile(vec![GREETING.to_vec(), b"\"a\"\r\n\"b".to_vec()]).await;
    let mut c = Client::connect(config_for_port(port)).await.unwrap();
    // The server holds the half line, then closes.
    let mut cfg_err = c.list_scripts().await.unwrap_err();
    if matches!(cfg_err, Error::Timeout(_)) {
        cfg_err = Error::Closed;
    }
    assert!(matches!(cfg_err, Error::Closed), "{cfg_err:?}");

    // Closing in the greeting.
    let port = hostile(vec![b"\"IMPLEMENTATION\" {10}\r\nabc".to_vec()]).await;
    let mut cfg = config_for_port(port);
    cfg.connect_timeout = Duration::from_secs(1);
    let err = Client::connect(cfg).await.err().unwrap();
    assert!(matches!(err, Error::Closed | Error::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn garbage_and_silence() {
    let port = hostile(vec![b"\x00\x01garbage\r\n".to_vec()]).await;
    let err = Client::connect(config_for_port(port)).await.err().unwrap();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");

    // A server that says nothing: the read times out instead of hanging.
    let port = hostile(vec![Vec::new()]).await;
    let mut cfg = config_for_port(port);
    cfg.connect_timeout = Duration::from_millis(300);
    let err = Client::connect(cfg).await.err().unwrap();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");

    // An endless line without CRLF is refused at the limit.
    let port = hostile(vec![vec![b'A'; 200_000]]).await;
    let err = Client::connect(config_for_port(port)).await.err().unwrap();
    assert!(
        matches!(
            err,
            Error::Protocol(managesieve::parse::ParseError::LineTooLong(_))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn starttls_required_but_not_offered() {
    let port = hostile(vec![GREETING.to_vec()]).await;
    let mut cfg = config_for_port(port);
    cfg.security = Security::Starttls;
    let err = Client::connect(cfg).await.err().unwrap();
    assert!(matches!(err, Error::Unsupported("STARTTLS")), "{err:?}");
}

/// OAuth 2.0: a bearer token checked by Dovecot at the test authorization server, with
/// OAUTHBEARER (RFC 7628) or, where only that is offered, XOAUTH2; a bad token is refused.
#[tokio::test]
async fn oauth2_bearer_tokens() {
    use testkit::oidc::{AuthServer, AuthServerOptions, CLIENT_ID};
    let auth = AuthServer::start(AuthServerOptions::default()).unwrap();
    let rt = auth.mint_refresh_token(USER, CLIENT_ID).unwrap();
    let token = auth.access_token(&rt).unwrap();
    for mechanisms in [vec!["oauthbearer", "xoauth2"], vec!["xoauth2"]] {
        let mut oauth = testkit::DovecotOAuth2::new(auth.introspection_url());
        oauth.mechanisms = mechanisms.iter().map(|m| m.to_string()).collect();
        let d = Dovecot::start(DovecotOptions {
            sieve: true,
            oauth2: Some(oauth),
            ..Default::default()
        })
        .unwrap();
        d.add_user(USER, "unused").unwrap();
        let mut c = Client::connect(config(&d, Security::Starttls))
            .await
            .unwrap();
        let offered = c.capabilities().sasl.clone();
        assert_eq!(
            offered.contains(&"OAUTHBEARER".to_string()),
            mechanisms.contains(&"oauthbearer"),
            "{offered:?}"
        );
        c.authenticate(&Auth::OAuth2 {
            username: USER,
            token: &token,
        })
        .await
        .unwrap();
        assert!(c.list_scripts().await.unwrap().is_empty());
        c.logout().await;

        let mut c = Client::connect(config(&d, Security::Starttls))
            .await
            .unwrap();
        let err = c
            .authenticate(&Auth::OAuth2 {
                username: USER,
                token: "not-a-token",
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Auth(_)), "{err:?}");
    }
}
