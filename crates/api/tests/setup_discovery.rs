#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! Discovery beyond the built-in table, against real servers on loopback: RFC 6186 SRV
//! records from a DNS server this test runs (hickory-proto messages over UDP), and
//! autoconfig documents from an HTTP server this test runs, hostile ones included.

use api::setup::discover::{AUTOCONFIG_MAX, discover};
use api::setup::{DiscoveryOptions, Source};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::SRV;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use mail_types::{AccountKind, Security};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A DNS server on a loopback UDP port answering SRV questions from `records`
/// (`name` → (priority, weight, port, target)); anything else is NXDOMAIN. Runs until
/// the test's runtime ends; each answer is one datagram.
async fn dns_server(records: HashMap<String, Vec<(u16, u16, u16, String)>>) -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        // Bounded: far more questions than any test asks.
        for _ in 0..10_000 {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_op_code(q.op_code())
                .set_recursion_desired(q.recursion_desired())
                .set_recursion_available(true)
                .set_authoritative(true);
            let mut found = false;
            for query in q.queries() {
                r.add_query(query.clone());
                let name = query.name().to_ascii().to_ascii_lowercase();
                if query.query_type() == RecordType::SRV
                    && let Some(list) = records.get(name.trim_end_matches('.'))
                {
                    for (prio, weight, port, target) in list {
                        r.add_answer(Record::from_rdata(
                            query.name().clone(),
                            60,
                            RData::SRV(SRV::new(
                                *prio,
                                *weight,
                                *port,
                                Name::from_ascii(target).unwrap(),
                            )),
                        ));
                    }
                    found = true;
                }
            }
            if !found {
                r.set_response_code(ResponseCode::NXDomain);
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

fn srv_records() -> HashMap<String, Vec<(u16, u16, u16, String)>> {
    let mut m = HashMap::new();
    // Two IMAPS targets: the lower priority wins (RFC 2782).
    m.insert(
        "_imaps._tcp.srv.test".into(),
        vec![
            (20, 0, 1993, "backup.srv.test.".into()),
            (10, 0, 993, "imap.srv.test.".into()),
        ],
    );
    m.insert(
        "_imap._tcp.srv.test".into(),
        vec![(0, 0, 143, "imap.srv.test.".into())],
    );
    m.insert(
        "_submission._tcp.srv.test".into(),
        vec![(0, 0, 587, "smtp.srv.test.".into())],
    );
    // RFC 6186 3.4: "." says the service is not offered.
    m.insert(
        "_submissions._tcp.srv.test".into(),
        vec![(0, 0, 0, ".".into())],
    );
    // A domain whose records point at another domain's servers.
    m.insert(
        "_imaps._tcp.away.test".into(),
        vec![(0, 0, 993, "mail.elsewhere.example.".into())],
    );
    // POP3 only.
    m.insert(
        "_pop3s._tcp.pop.test".into(),
        vec![(0, 0, 995, "pop.pop.test.".into())],
    );
    m
}

#[tokio::test]
async fn srv_records_give_the_servers() {
    let dns = dns_server(srv_records()).await;
    let opts = DiscoveryOptions {
        dns_server: Some(dns),
        offline: true,
        ..DiscoveryOptions::default()
    };
    let f = discover(&opts, "jo@srv.test").await.unwrap();
    assert_eq!(f.source, Source::Srv);
    assert_eq!(f.settings.kind, AccountKind::Imap);
    assert_eq!(f.settings.incoming.host, "imap.srv.test");
    assert_eq!(f.settings.incoming.port, 993);
    assert_eq!(f.settings.incoming.security, Security::Tls);
    let smtp = f.settings.smtp.unwrap();
    assert_eq!(
        (smtp.host.as_str(), smtp.port, smtp.security),
        ("smtp.srv.test", 587, Security::Starttls)
    );
    assert_eq!(f.settings.username, "jo@srv.test");
    assert!(!f.foreign);

    let f = discover(&opts, "jo@away.test").await.unwrap();
    assert_eq!(f.source, Source::Srv);
    assert_eq!(f.settings.incoming.host, "mail.elsewhere.example");
    assert!(f.foreign, "another domain's servers must be confirmed");

    let f = discover(&opts, "jo@pop.test").await.unwrap();
    assert_eq!(f.settings.kind, AccountKind::Pop3);
    assert_eq!(f.settings.incoming.port, 995);

    // No records: the guesses.
    let f = discover(&opts, "jo@none.test").await.unwrap();
    assert_eq!(f.source, Source::Guess);
}

const GOOD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1"><emailProvider id="DOMAIN"><domain>DOMAIN</domain>
<displayName>Auto</displayName>
<incomingServer type="imap"><hostname>HOST</hostname><port>993</port>
<socketType>SSL</socketType><username>%EMAILADDRESS%</username></incomingServer>
<outgoingServer type="smtp"><hostname>smtp.DOMAIN</hostname><port>465</port>
<socketType>SSL</socketType><username>%EMAILADDRESS%</username></outgoingServer>
</emailProvider></clientConfig>"#;

const LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<clientConfig><emailProvider><incomingServer type="imap"><hostname>&lol3;</hostname>
<port>993</port><socketType>SSL</socketType></incomingServer></emailProvider></clientConfig>"#;

/// An HTTP server answering the autoconfig URL by the address's local part: `good`,
/// `foreign` (servers of another domain), `laughs` (entity expansion), `huge` (over the
/// limit), `garbage` (not XML), `slow-huge` (a huge body without Content-Length).
async fn autoconfig_server() -> String {
    use axum::extract::Query;
    use axum::response::IntoResponse;
    async fn doc(Query(q): Query<HashMap<String, String>>) -> axum::response::Response {
        let email = q.get("emailaddress").cloned().unwrap_or_default();
        let (local, domain) = email.split_once('@').unwrap_or(("", ""));
        let good = |host: &str| GOOD.replace("HOST", host).replace("DOMAIN", domain);
        match local {
            "good" => good(&format!("imap.{domain}")).into_response(),
            "foreign" => good("imap.attacker.example").into_response(),
            "laughs" => LAUGHS.into_response(),
            "huge" => format!(
                "{}<!-- {} -->",
                good(&format!("imap.{domain}")),
                "x".repeat(AUTOCONFIG_MAX)
            )
            .into_response(),
            "garbage" => "<<<< not xml at all".into_response(),
            "chunked-huge" => {
                let chunks = (0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 4096]));
                axum::body::Body::from_stream(futures::stream::iter(chunks)).into_response()
            }
            _ => axum::http::StatusCode::NOT_FOUND.into_response(),
        }
    }
    let app = axum::Router::new().route("/mail/config-v1.1.xml", axum::routing::get(doc));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn autoconfig_documents_hostile_ones_refused() {
    let base = autoconfig_server().await;
    let opts = DiscoveryOptions {
        autoconfig_base: Some(base),
        offline: true,
        ..DiscoveryOptions::default()
    };
    let f = discover(&opts, "good@auto.test").await.unwrap();
    assert_eq!(f.source, Source::Autoconfig);
    assert_eq!(f.provider.as_deref(), Some("Auto"));
    assert_eq!(f.settings.incoming.host, "imap.auto.test");
    assert_eq!(f.settings.incoming.port, 993);
    assert_eq!(f.settings.smtp.as_ref().map(|s| s.port), Some(465));
    assert_eq!(f.settings.username, "good@auto.test");
    assert!(!f.foreign);

    // Servers of another domain: offered, flagged for the user to confirm.
    let f = discover(&opts, "foreign@auto.test").await.unwrap();
    assert_eq!(f.source, Source::Autoconfig);
    assert_eq!(f.settings.incoming.host, "imap.attacker.example");
    assert!(f.foreign);

    // Hostile or broken documents are not used: the guesses are offered instead.
    for who in ["laughs", "huge", "garbage", "chunked-huge", "missing"] {
        let started = std::time::Instant::now();
        let f = discover(&opts, &format!("{who}@auto.test")).await.unwrap();
        assert_eq!(f.source, Source::Guess, "{who}");
        assert_eq!(f.settings.incoming.host, "imap.auto.test", "{who}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{who}"
        );
    }
}
