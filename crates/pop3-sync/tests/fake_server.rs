//! The client against scripted fake POP3 servers on 127.0.0.1: lying, garbage, cut
//! connections. Every case must end in a typed error, never a panic or a hang.

use anyhow::{Context, Result, bail};
use mail_types::{AccountId, AccountKind, Security};
use pop3_sync::{ClosedDuring, Credentials, Endpoint, Error, Pop3Client, Pop3Options, sync_pop3};
use std::sync::Arc;
use std::time::Duration;
use store::{NewAccount, ServerSettings, SqliteStore, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Every fake server gives up after this, so a test can never hang.
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A well-behaved USER/PASS server with two messages.
    Good,
    /// UIDL answers with a garbage line.
    GarbageUidl,
    /// UIDL has -ERR in the middle of its list.
    ErrMidUidl,
    /// RETR is cut off before the terminating dot.
    CloseMidRetr,
    /// UIDL is not implemented.
    NoUidl,
    /// Lists STLS and sends plaintext right after +OK to STLS.
    StlsInjection,
    /// No STLS in CAPA.
    NoStls,
    /// Never answers UIDL.
    Silent,
    /// The greeting is not a POP3 greeting.
    GarbageGreeting,
}

const MSG1: &[u8] = b"Subject: one\r\n\r\n..dotted\r\nbare lf\nend\r\n";
const MSG2: &[u8] = b"Subject: two\r\n\r\nbody\r\n";

fn stuffed(msg: &[u8]) -> Vec<u8> {
    let mut out = b"+OK message follows\r\n".to_vec();
    let mut at_start = true;
    for &b in msg {
        if at_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Starts a fake server for one connection; returns its port.
async fn fake(mode: Mode) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DEADLINE, serve(listener, mode)).await;
    });
    Ok(port)
}

async fn serve(listener: TcpListener, mode: Mode) -> std::io::Result<()> {
    let (sock, _) = listener.accept().await?;
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    if mode == Mode::GarbageGreeting {
        w.write_all(b"* OK IMAP4rev1 ready\r\n").await?;
        return Ok(());
    }
    w.write_all(b"+OK fake POP3 ready\r\n").await?;
    // Bounded: a client sends far fewer than 100 commands in these tests.
    for _ in 0..100 {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        let word = cmd.split(' ').next().unwrap_or_default().to_string();
        let reply: Vec<u8> = match word.as_str() {
            "CAPA" => match mode {
                Mode::StlsInjection => b"+OK\r\nUIDL\r\nUSER\r\nSTLS\r\n.\r\n".to_vec(),
                _ => b"+OK\r\nUIDL\r\nUSER\r\nTOP\r\n.\r\n".to_vec(),
            },
            "STLS" => b"+OK begin TLS\r\n+OK injected\r\n".to_vec(),
            "USER" => b"+OK\r\n".to_vec(),
            "PASS" if line.trim_end() == "PASS secret" => b"+OK logged in\r\n".to_vec(),
            "PASS" => b"-ERR [AUTH] invalid credentials\r\n".to_vec(),
            "UIDL" => match mode {
                Mode::GarbageUidl => b"+OK\r\n1 u-one\r\n\x00\xffgarbage!\r\n.\r\n".to_vec(),
                Mode::ErrMidUidl => b"+OK\r\n1 u-one\r\n-ERR out of cheese\r\n".to_vec(),
                Mode::NoUidl => b"-ERR unknown command\r\n".to_vec(),
                Mode::Silent => {
                    tokio::time::sleep(DEADLINE).await;
                    return Ok(());
                }
                _ => b"+OK\r\n1 u-one\r\n2 u-two\r\n.\r\n".to_vec(),
            },
            "LIST" => format!("+OK\r\n1 {}\r\n2 {}\r\n.\r\n", MSG1.len(), MSG2.len()).into_bytes(),
            "STAT" => format!("+OK 2 {}\r\n", MSG1.len() + MSG2.len()).into_bytes(),
            "RETR" => {
                let msg = if cmd.ends_with(" 1") { MSG1 } else { MSG2 };
                if mode == Mode::CloseMidRetr {
                    let full = stuffed(msg);
                    w.write_all(&full[..full.len() - 8]).await?;
                    return Ok(());
                }
                stuffed(msg)
            }
            "DELE" | "NOOP" | "RSET" => b"+OK\r\n".to_vec(),
            "QUIT" => {
                w.write_all(b"+OK bye\r\n").await?;
                return Ok(());
            }
            _ => b"-ERR what?\r\n".to_vec(),
        };
        w.write_all(&reply).await?;
    }
    Ok(())
}

fn ep(port: u16, security: Security) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
        security,
        ca_file: None,
    }
}

fn creds() -> Credentials {
    Credentials {
        username: "u".into(),
        password: "secret".into(),
    }
}

async fn store() -> Result<(Arc<dyn Store>, AccountId)> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory()?);
    let user = store.create_user("u", "x").await?;
    let account = store
        .create_account(&NewAccount {
            user,
            name: "fake".into(),
            kind: AccountKind::Pop3,
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: 1,
                security: Security::None,
                username: "u".into(),
                password_enc: vec![1, 2, 3],
                ca_file: None,
            },
            smtp: None,
            pop3_delete_after_days: None,
            auth: Default::default(),
        })
        .await?;
    Ok((store, account))
}

async fn sync_mode(
    mode: Mode,
) -> Result<(
    pop3_sync::Result<pop3_sync::Pop3Report>,
    Arc<dyn Store>,
    AccountId,
)> {
    let port = fake(mode).await?;
    let (store, account) = store().await?;
    let r = tokio::time::timeout(
        DEADLINE,
        sync_pop3(
            &*store,
            account,
            &ep(port, Security::None),
            &creds(),
            &Pop3Options::default(),
        ),
    )
    .await
    .context("sync hung")?;
    Ok((r, store, account))
}

#[tokio::test]
async fn good_server_user_pass_and_unstuffing() -> Result<()> {
    let port = fake(Mode::Good).await?;
    let mut c = Pop3Client::connect_and_login(&ep(port, Security::None), &creds()).await?;
    assert!(c.capabilities().has("UIDL"));
    assert_eq!(c.stat().await?.count, 2);
    assert_eq!(c.uidl().await?.len(), 2);
    assert_eq!(c.list().await?[0].size, MSG1.len() as u64);
    // Dot-unstuffed, bare LF kept as sent.
    assert_eq!(c.retr(1).await?, MSG1);
    c.dele(2).await?;
    c.quit().await?;
    Ok(())
}

#[tokio::test]
async fn good_server_sync_stores_newest_with_highest_uid() -> Result<()> {
    let (r, store, account) = sync_mode(Mode::Good).await?;
    let r = r?;
    assert_eq!((r.listed, r.retrieved), (2, 2));
    let inbox = store
        .mailboxes(account)
        .await?
        .into_iter()
        .find(|m| m.raw_name == "INBOX")
        .context("INBOX")?;
    let mut msgs = store.mailbox_messages(inbox.id).await?;
    msgs.sort_by_key(|m| m.uid);
    let subjects: Vec<_> = msgs.iter().filter_map(|m| m.subject.clone()).collect();
    assert_eq!(subjects, ["one", "two"]);
    let blob = store
        .blob(msgs[0].blob_id.as_deref().context("blob id")?)
        .await?
        .context("blob")?;
    assert_eq!(blob, MSG1);
    Ok(())
}

#[tokio::test]
async fn wrong_password_is_auth() -> Result<()> {
    let port = fake(Mode::Good).await?;
    let bad = Credentials {
        username: "u".into(),
        password: "nope".into(),
    };
    match Pop3Client::connect_and_login(&ep(port, Security::None), &bad).await {
        Err(Error::Auth(text)) => assert!(text.contains("AUTH")),
        other => bail!("expected Auth, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn close_mid_retr_is_typed_and_stores_nothing() -> Result<()> {
    let (r, store, account) = sync_mode(Mode::CloseMidRetr).await?;
    match r {
        Err(Error::Closed(ClosedDuring::MultiLine("RETR"))) => {}
        other => bail!("expected Closed during RETR, got {other:?}"),
    }
    assert!(store.pop3_entries(account).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn garbage_uidl_is_protocol_error() -> Result<()> {
    let (r, _, _) = sync_mode(Mode::GarbageUidl).await?;
    match r {
        Err(e @ Error::Protocol(_)) => assert!(e.is_transient()),
        other => bail!("expected Protocol, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn err_in_the_middle_of_uidl_is_protocol_error() -> Result<()> {
    let (r, _, _) = sync_mode(Mode::ErrMidUidl).await?;
    match r {
        Err(Error::Protocol(msg)) => assert!(msg.contains("UIDL"), "{msg}"),
        other => bail!("expected Protocol, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn no_uidl_is_unsupported() -> Result<()> {
    let (r, _, _) = sync_mode(Mode::NoUidl).await?;
    match r {
        Err(e @ Error::Unsupported("UIDL")) => assert!(!e.is_transient()),
        other => bail!("expected Unsupported(UIDL), got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn stls_refuses_injected_plaintext() -> Result<()> {
    let port = fake(Mode::StlsInjection).await?;
    match Pop3Client::connect(&ep(port, Security::Starttls)).await {
        Err(Error::Protocol(msg)) => assert!(msg.contains("STLS"), "{msg}"),
        other => bail!("expected Protocol, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn starttls_without_stls_is_unsupported() -> Result<()> {
    let port = fake(Mode::NoStls).await?;
    match Pop3Client::connect(&ep(port, Security::Starttls)).await {
        Err(Error::Unsupported("STLS")) => {}
        other => bail!("expected Unsupported(STLS), got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn silent_server_times_out() -> Result<()> {
    let port = fake(Mode::Silent).await?;
    let mut c = Pop3Client::connect_and_login(&ep(port, Security::None), &creds()).await?;
    c.set_read_timeout(Duration::from_millis(300));
    match c.uidl().await {
        Err(e @ Error::Timeout) => assert!(e.is_transient()),
        other => bail!("expected Timeout, got {other:?}"),
    }
    // The session is now unusable rather than out of step.
    assert!(c.noop().await.is_err());
    Ok(())
}

#[tokio::test]
async fn garbage_greeting_is_protocol_error() -> Result<()> {
    let port = fake(Mode::GarbageGreeting).await?;
    match Pop3Client::connect(&ep(port, Security::None)).await {
        Err(Error::Protocol(_)) => {}
        other => bail!("expected Protocol, got {other:?}"),
    }
    Ok(())
}

#[test]
fn credentials_debug_redacts_password() {
    let s = format!("{:?}", creds());
    assert!(!s.contains("secret"), "{s}");
}

/// A server offering SASL OAUTHBEARER that refuses the token with `challenge` as its
/// error challenge, then -ERR once the client acknowledges.
async fn oauth_refusing(challenge: &'static str) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DEADLINE, async move {
            let (sock, _) = listener.accept().await?;
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"+OK fake POP3 ready\r\n").await?;
            for _ in 0..10 {
                let mut line = String::new();
                if r.read_line(&mut line).await? == 0 {
                    break;
                }
                let answer = if line.starts_with("CAPA") {
                    "+OK\r\nSASL OAUTHBEARER\r\nUIDL\r\n.\r\n".to_string()
                } else if line.starts_with("AUTH") {
                    format!("+ {challenge}\r\n")
                } else {
                    // The ^A acknowledgement (RFC 7628 3.2.3), or anything else.
                    "-ERR [AUTH] no\r\n".to_string()
                };
                w.write_all(answer.as_bytes()).await?;
            }
            std::io::Result::Ok(())
        })
        .await;
    });
    Ok(port)
}

#[tokio::test]
async fn malformed_oauth_error_challenge_is_a_clear_error() -> Result<()> {
    let login = pop3_sync::Login::OAuth2 {
        username: "u".into(),
        access_token: "t".into(),
    };
    // "not json{", base64 of "[1,2]", and no base64 at all.
    for challenge in ["bm90IGpzb257", "WzEsMl0=", "!!!"] {
        let port = oauth_refusing(challenge).await?;
        let r = tokio::time::timeout(
            DEADLINE,
            Pop3Client::connect_and_login_with(&ep(port, Security::None), &login),
        )
        .await?;
        match r {
            Err(Error::Protocol(m)) => assert!(m.contains("OAuth error challenge"), "{m}"),
            other => bail!("{challenge}: expected a protocol error, got {other:?}"),
        }
    }
    // A well-formed one is the typed refusal.
    let port = oauth_refusing("eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=").await?;
    match Pop3Client::connect_and_login_with(&ep(port, Security::None), &login).await {
        Err(Error::TokenRejected { failure, .. }) => assert!(failure.token_invalid()),
        other => bail!("expected TokenRejected, got {other:?}"),
    }
    Ok(())
}
