//! SMTP submission with AUTH XOAUTH2 against the testkit's real Postfix, whose SASL is
//! Dovecot's (checking each token at a real authorization server, oidc-provider).

use submit::{Envelope, Outcome, Server, send};
use testkit::oidc::{AuthServer, AuthServerOptions, CLIENT_ID};
use testkit::{Dovecot, DovecotOAuth2, DovecotOptions, Smtp};

const USER: &str = "alice@example.org";

fn server(smtp: &Smtp, token: String) -> Server {
    Server {
        host: "127.0.0.1".into(),
        port: smtp.submission_port(),
        security: mail_types::Security::Starttls,
        username: USER.into(),
        password: token,
        oauth2: true,
        ca_file: Some(smtp.ca_file().to_path_buf()),
        hello_name: "localhost".into(),
    }
}

#[tokio::test]
async fn xoauth2_submission() -> anyhow::Result<()> {
    let auth = AuthServer::start(AuthServerOptions::default())?;
    let d = Dovecot::start(DovecotOptions {
        oauth2: Some(DovecotOAuth2::new(auth.introspection_url())),
        ..DovecotOptions::default()
    })?;
    d.add_user(USER, "unused")?;
    let smtp = Smtp::start(&d)?;
    let env = Envelope {
        mail_from: USER.into(),
        rcpt_to: vec![USER.into()],
    };
    let msg = format!(
        "From: {USER}\r\nTo: {USER}\r\nSubject: t\r\nMessage-ID: <o1@example.org>\r\n\r\nhi\r\n"
    );
    let rt = auth.mint_refresh_token(USER, CLIENT_ID)?;
    let out = send(
        &server(&smtp, auth.access_token(&rt)?),
        &env,
        msg.as_bytes(),
    )
    .await;
    assert!(matches!(out, Outcome::Accepted { .. }), "{out:?}");
    assert_eq!(smtp.accepted_message_ids(), vec!["o1@example.org"]);

    // A revoked token is refused at AUTH: nothing is sent.
    let stale = auth.access_token(&rt)?;
    auth.revoke(&rt)?;
    let out = send(&server(&smtp, stale), &env, msg.as_bytes()).await;
    match out {
        Outcome::Refused { reason, .. } => assert!(reason.starts_with("AUTH"), "{reason}"),
        other => panic!("a revoked token was not refused: {other:?}"),
    }
    Ok(())
}
