//! A lying IMAP server: garbage, absurd literals, a close in the middle of a response.
//! Every case is a typed error or a skipped response, never a panic or a hang.

use anyhow::Result;
use imap_sync::{Credentials, Endpoint, Error, Session};
use mail_types::Security;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A scripted server: sends `greeting`, then for each command line calls `answer` with the
/// tag and command and writes what it returns (None: close the connection; an answer not
/// ending in CRLF is a response cut short, so the connection closes after it too).
async fn fake_server<F>(greeting: &'static [u8], answer: F) -> Result<u16>
where
    F: Fn(&str, &str) -> Option<Vec<u8>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        if w.write_all(greeting).await.is_err() {
            return;
        }
        let mut line = String::new();
        for _ in 0..100 {
            line.clear();
            match r.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let (tag, cmd) = line.trim_end().split_once(' ').unwrap_or(("?", ""));
            match answer(tag, cmd) {
                Some(bytes) => {
                    if w.write_all(&bytes).await.is_err() || !bytes.ends_with(b"\r\n") {
                        return;
                    }
                }
                None => return,
            }
        }
    });
    Ok(port)
}

fn ep(port: u16) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        ca_file: None,
    }
}

fn creds() -> Credentials {
    Credentials {
        username: "u".into(),
        password: "p".into(),
    }
}

const GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 LIST-EXTENDED] fake\r\n";

fn login_ok(tag: &str, cmd: &str) -> Option<Vec<u8>> {
    if cmd.starts_with("LOGIN") {
        return Some(format!("{tag} OK [CAPABILITY IMAP4rev1] in\r\n").into_bytes());
    }
    None
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("a hostile server must not hang the client")
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() -> Result<()> {
    let port = fake_server(GREETING, |tag, cmd| {
        cmd.starts_with("LOGIN")
            .then(|| format!("{tag} NO [AUTHENTICATIONFAILED] nope\r\n").into_bytes())
    })
    .await?;
    let err = within(Session::connect(&ep(port), &creds())).await.err();
    assert!(matches!(err, Some(Error::Auth(_))), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn garbage_greeting_is_a_protocol_error() -> Result<()> {
    let port = fake_server(b"\x00\xffHELLO THERE\r\n", |_, _| None).await?;
    let err = within(Session::connect(&ep(port), &creds())).await.err();
    assert!(matches!(err, Some(Error::Protocol(_))), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn absurd_literal_is_refused_without_allocating() -> Result<()> {
    let port = fake_server(GREETING, |tag, cmd| {
        login_ok(tag, cmd).or_else(|| Some(b"* LIST () \"/\" {99999999999}\r\n".to_vec()))
    })
    .await?;
    let mut s = within(Session::connect(&ep(port), &creds())).await?;
    let err = within(s.list()).await.err();
    assert!(matches!(err, Some(Error::Protocol(_))), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn close_in_the_middle_of_a_literal() -> Result<()> {
    let port = fake_server(GREETING, |tag, cmd| {
        login_ok(tag, cmd).or_else(|| {
            if cmd.starts_with("EXAMINE") {
                Some(
                    format!("* 1 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n{tag} OK done\r\n")
                        .into_bytes(),
                )
            } else if cmd.starts_with("UID FETCH") {
                // Announces 1000 bytes, sends 10, then the script ends the connection.
                Some(b"* 1 FETCH (UID 1 BODY[] {1000}\r\n0123456789".to_vec())
            } else {
                None
            }
        })
    })
    .await?;
    let mut s = within(Session::connect(&ep(port), &creds())).await?;
    within(s.examine("INBOX", None)).await?;
    let mut stream = s.fetch_stream(vec!["UID FETCH 1 (UID BODY.PEEK[])".into()], 1);
    let err = within(stream.next()).await.err();
    assert!(
        matches!(err, Some(Error::Closed) | Some(Error::Io(_))),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn unparseable_responses_are_skipped() -> Result<()> {
    let port = fake_server(GREETING, |tag, cmd| {
        login_ok(tag, cmd).or_else(|| {
            Some(
                format!(
                    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST ((((( garbage\r\n* \x01\x02\r\n* LIST () \"/\" Work\r\n{tag} OK listed\r\n"
                )
                .into_bytes(),
            )
        })
    })
    .await?;
    let mut s = within(Session::connect(&ep(port), &creds())).await?;
    let (entries, _, incomplete) = within(s.list()).await?;
    let names: Vec<_> = entries.iter().map(|e| e.raw_name.as_str()).collect();
    assert_eq!(names, vec!["INBOX", "Work"]);
    assert!(
        incomplete,
        "an unreadable LIST line makes the list incomplete"
    );
    Ok(())
}

#[tokio::test]
async fn silent_server_times_out() -> Result<()> {
    // Accepts and says nothing: the connect deadline fires (tokio time is real here, so
    // the test pauses time instead of waiting 20 s).
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let _keep = tokio::spawn(async move {
        let _conn = listener.accept().await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    tokio::time::pause();
    let err = Session::connect(&ep(port), &creds()).await.err();
    assert!(matches!(err, Some(Error::Timeout)), "{err:?}");
    Ok(())
}

/// A server that refuses a bearer token with the error challenge `challenge` (base64
/// already applied by the caller, or not: it is sent as is) and then a tagged NO.
async fn oauth_refusing(challenge: &'static str) -> Result<u16> {
    let tag = std::sync::Mutex::new(String::new());
    fake_server(
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=OAUTHBEARER] fake\r\n",
        move |t, cmd| {
            let mut tag = tag.lock().ok()?;
            if cmd.starts_with("AUTHENTICATE OAUTHBEARER") {
                *tag = t.to_string();
                return Some(format!("+ {challenge}\r\n").into_bytes());
            }
            // The client's ^A acknowledgement (RFC 7628 3.2.3), a bare base64 line.
            if t == "AQ==" || cmd.is_empty() {
                return Some(format!("{tag} NO [AUTHENTICATIONFAILED] no\r\n").into_bytes());
            }
            None
        },
    )
    .await
}

fn bearer() -> imap_sync::Login {
    imap_sync::Login::OAuth2 {
        username: "u".into(),
        access_token: "t".into(),
    }
}

#[tokio::test]
async fn malformed_oauth_error_challenge_is_a_clear_error() -> Result<()> {
    // "not json{", then the same as valid base64 of something that is no JSON object,
    // then not base64 at all.
    for challenge in ["bm90IGpzb257", "WzEsMl0=", "!!!"] {
        let port = oauth_refusing(challenge).await?;
        match within(Session::connect_login(&ep(port), &bearer())).await {
            Err(Error::Protocol(m)) => assert!(m.contains("OAuth error challenge"), "{m}"),
            other => panic!(
                "{challenge}: expected a protocol error, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    Ok(())
}

#[tokio::test]
async fn oauth_error_challenge_status_is_reported() -> Result<()> {
    // {"status":"insufficient_scope","scope":"mail"}
    let port =
        oauth_refusing("eyJzdGF0dXMiOiJpbnN1ZmZpY2llbnRfc2NvcGUiLCJzY29wZSI6Im1haWwifQ==").await?;
    match within(Session::connect_login(&ep(port), &bearer())).await {
        Err(Error::TokenRejected { failure, .. }) => {
            assert_eq!(failure.status, "insufficient_scope");
            assert!(!failure.token_invalid());
        }
        other => panic!("expected TokenRejected, got {:?}", other.map(|_| ())),
    }
    Ok(())
}
