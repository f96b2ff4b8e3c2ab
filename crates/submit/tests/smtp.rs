//! Submission against the testkit's real Postfix, which delivers into a private Dovecot.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};
use submit::{Envelope, Outcome, Server, send};
use testkit::imap_client::ImapClient;
use testkit::smtp::{DEFERRED_DOMAIN, REFUSED_DOMAIN};
use testkit::{Dovecot, DovecotOptions, Smtp};

const USER: &str = "alice@example.org";
const PASS: &str = "secret-pw";

fn server(smtp: &Smtp, port: u16, security: mail_types::Security, password: &str) -> Server {
    Server {
        host: "127.0.0.1".into(),
        port,
        security,
        username: USER.into(),
        password: password.into(),
        oauth2: false,
        ca_file: Some(smtp.ca_file().to_path_buf()),
        hello_name: "localhost".into(),
    }
}

fn message(id: &str, to: &str) -> Vec<u8> {
    format!(
        "From: Alice <{USER}>\r\nTo: {to}\r\nBcc: {USER}\r\nSubject: hello {id}\r\nMessage-ID: <{id}@example.org>\r\n\r\nHi there.\r\n"
    )
    .into_bytes()
}

/// Waits (bounded) until INBOX holds `n` messages, through an independent IMAP client.
fn wait_inbox(d: &Dovecot, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = ImapClient::login(d.imap_port(), USER, PASS).unwrap();
        c.select("INBOX").unwrap();
        let have = c.uids().unwrap().len();
        if have >= n || Instant::now() > deadline {
            return have;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn setup() -> (Dovecot, Smtp) {
    let d = Dovecot::start(DovecotOptions::default()).unwrap();
    d.add_user(USER, PASS).unwrap();
    let s = Smtp::start(&d).unwrap();
    (d, s)
}

#[tokio::test]
async fn starttls_and_implicit_tls_deliver_into_dovecot() {
    let (d, smtp) = setup();
    let env = Envelope {
        mail_from: USER.into(),
        rcpt_to: vec![USER.into()],
    };
    let s = server(
        &smtp,
        smtp.submission_port(),
        mail_types::Security::Starttls,
        PASS,
    );
    let out = send(&s, &env, &message("m1", USER)).await;
    let Outcome::Accepted { reply, recipients } = out else {
        panic!("not accepted: {out:?}");
    };
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(recipients.iter().all(|r| r.accepted()));
    let s = server(
        &smtp,
        smtp.submissions_port(),
        mail_types::Security::Tls,
        PASS,
    );
    let out = send(&s, &env, &message("m2", USER)).await;
    assert!(matches!(out, Outcome::Accepted { .. }), "{out:?}");
    assert_eq!(wait_inbox(&d, 2), 2);
    assert_eq!(
        smtp.accepted_message_ids(),
        vec!["m1@example.org", "m2@example.org"]
    );
}

#[tokio::test]
async fn refusals_are_told_apart() {
    let (_d, mut smtp) = setup();
    let s = server(
        &smtp,
        smtp.submission_port(),
        mail_types::Security::Starttls,
        PASS,
    );
    // 5xx at RCPT: permanent, with the server's reply.
    let to = format!("nobody@{REFUSED_DOMAIN}");
    let env = Envelope {
        mail_from: USER.into(),
        rcpt_to: vec![to.clone()],
    };
    match send(&s, &env, &message("r1", &to)).await {
        Outcome::Refused {
            transient: false,
            recipients,
            ..
        } => {
            assert_eq!(recipients.len(), 1);
            assert_eq!(recipients[0].reply.code, 550, "{recipients:?}");
            assert!(recipients[0].reply.text.contains("5.1.1"));
        }
        other => panic!("{other:?}"),
    }
    // 4xx at RCPT: transient.
    let to = format!("later@{DEFERRED_DOMAIN}");
    let env = Envelope {
        mail_from: USER.into(),
        rcpt_to: vec![to.clone()],
    };
    let out = send(&s, &env, &message("r2", &to)).await;
    assert!(
        matches!(
            out,
            Outcome::Refused {
                transient: true,
                ..
            }
        ),
        "{out:?}"
    );
    // One good and one refused recipient: sent to the good one, the other's reply kept.
    let bad = format!("nobody@{REFUSED_DOMAIN}");
    let env = Envelope {
        mail_from: USER.into(),
        rcpt_to: vec![USER.into(), bad.clone()],
    };
    match send(&s, &env, &message("r3", USER)).await {
        Outcome::Accepted { recipients, .. } => {
            assert!(recipients[0].accepted());
            assert!(!recipients[1].accepted());
            assert_eq!(recipients[1].address, bad);
        }
        other => panic!("{other:?}"),
    }
    // A wrong password: permanent (535).
    let wrong = server(
        &smtp,
        smtp.submission_port(),
        mail_types::Security::Starttls,
        "nope",
    );
    let env = Envelope {
        mail_from: USER.into(),
        rcpt_to: vec![USER.into()],
    };
    match send(&wrong, &env, &message("r4", USER)).await {
        Outcome::Refused {
            transient: false,
            reply: Some(r),
            ..
        } => assert_eq!(r.code, 535),
        other => panic!("{other:?}"),
    }
    // Server down: transient.
    smtp.stop();
    let out = send(&s, &env, &message("r5", USER)).await;
    assert!(
        matches!(
            out,
            Outcome::Refused {
                transient: true,
                ..
            }
        ),
        "{out:?}"
    );
    smtp.restart().unwrap();
    let out = send(&s, &env, &message("r6", USER)).await;
    assert!(matches!(out, Outcome::Accepted { .. }), "{out:?}");
    assert_eq!(
        smtp.accepted_message_ids(),
        vec!["r3@example.org", "r6@example.org"]
    );
}
