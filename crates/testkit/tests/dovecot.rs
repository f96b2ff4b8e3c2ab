//! Integration tests against a real private Dovecot.

// Panicking on unexpected errors is what a test should do.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::corpus;
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, SeedMessage};

fn start() -> Dovecot {
    Dovecot::start(DovecotOptions::default()).expect("start dovecot")
}

fn start_with_user() -> Dovecot {
    let d = start();
    d.add_user("alice@example.org", "secret").expect("add user");
    d
}

#[test]
fn deliver_and_see_with_imap() {
    let d = start_with_user();
    let raw = corpus::message(
        "Bob <bob@example.com>",
        "alice@example.org",
        "Hello Grüße",
        "first line\n.leading dot\n..two dots\nlast",
    );
    d.deliver("alice@example.org", &raw).unwrap();
    let mut c = ImapClient::login(d.imap_port(), "alice@example.org", "secret").unwrap();
    c.select("INBOX").unwrap();
    let uids = c.uids().unwrap();
    assert_eq!(uids.len(), 1);
    let body = c
        .raw_command(&format!("UID FETCH {} (BODY.PEEK[])", uids[0]))
        .unwrap();
    assert!(
        body.contains("\r\n.leading dot\r\n..two dots\r\nlast"),
        "{body}"
    );
    // Special-use mailboxes exist and are subscribed; separator is "/".
    let list = c
        .raw_command("LIST (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)")
        .unwrap();
    for (name, flag) in [
        ("Drafts", "\\Drafts"),
        ("Sent", "\\Sent"),
        ("Trash", "\\Trash"),
        ("Junk", "\\Junk"),
        ("Archive", "\\Archive"),
    ] {
        assert!(
            list.lines().any(|l| l.contains(flag) && l.ends_with(name)),
            "{name}: {list}"
        );
    }
    assert!(list.contains("\"/\""), "{list}");
    c.logout().unwrap();
}

#[test]
fn unknown_recipient_is_rejected() {
    let d = start_with_user();
    let raw = corpus::message("a@example.org", "nobody@example.org", "x", "y");
    assert!(d.deliver("nobody@example.org", &raw).is_err());
}

#[test]
fn short_user_names_work() {
    let d = start();
    d.add_user("bob", "pw").unwrap();
    d.deliver(
        "bob",
        &corpus::message("a@example.org", "bob", "hi", "there"),
    )
    .unwrap();
    let mut c = ImapClient::login(d.imap_port(), "bob", "pw").unwrap();
    c.select("INBOX").unwrap();
    assert_eq!(c.uids().unwrap().len(), 1);
    // Changing the password takes effect at once too.
    d.add_user("bob", "new").unwrap();
    assert!(ImapClient::login(d.imap_port(), "bob", "pw").is_err());
    ImapClient::login(d.imap_port(), "bob", "new").unwrap();
}

#[test]
fn seed_keeps_flags_keywords_dates_and_order() {
    let d = start_with_user();
    let base = 1_700_000_000i64;
    let msgs: Vec<SeedMessage> = (0..100)
        .map(|i| {
            let mut flags = Vec::new();
            if i % 2 == 0 {
                flags.push("\\Seen".to_owned());
            }
            if i % 10 == 0 {
                flags.push("\\Flagged".to_owned());
            }
            if i % 7 == 0 {
                flags.push("$Label1".to_owned());
            }
            if i % 11 == 0 {
                flags.push("Custom_kw".to_owned());
            }
            let mut raw = format!("X-Seq: {i}\r\n").into_bytes();
            raw.extend(corpus::message(
                "a@example.org",
                "alice@example.org",
                &format!("seed {i}"),
                "body",
            ));
            SeedMessage {
                raw,
                flags,
                internal_date: base + i * 3600,
            }
        })
        .collect();
    d.seed("alice@example.org", "INBOX", &msgs).unwrap();
    d.seed("alice@example.org", "Lists/rust-users", &msgs[..10])
        .unwrap();
    d.seed("alice@example.org", "Entwürfe/Ünter", &msgs[..3])
        .unwrap();

    let mut c = ImapClient::login(d.imap_port(), "alice@example.org", "secret").unwrap();
    c.select("INBOX").unwrap();
    let flags = c.fetch_flags().unwrap();
    assert_eq!(flags.len(), 100);
    for (i, (_, f)) in flags.iter().enumerate() {
        let has = |x: &str| f.iter().any(|g| g == x);
        assert_eq!(has("\\Seen"), i % 2 == 0, "msg {i}: {f:?}");
        assert_eq!(has("\\Flagged"), i % 10 == 0, "msg {i}: {f:?}");
        assert_eq!(has("$Label1"), i % 7 == 0, "msg {i}: {f:?}");
        assert_eq!(has("Custom_kw"), i % 11 == 0, "msg {i}: {f:?}");
    }
    // UIDs follow slice order, and INTERNALDATE is the seeded one.
    let resp = c
        .raw_command("UID FETCH 1:* (INTERNALDATE BODY.PEEK[HEADER.FIELDS (X-SEQ)])")
        .unwrap();
    let seqs: Vec<usize> = resp
        .split("X-Seq: ")
        .skip(1)
        .map(|s| s.split('\r').next().unwrap().trim().parse().unwrap())
        .collect();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    // 1_700_000_000 = 2023-11-14 22:13:20 UTC.
    assert!(
        resp.contains("INTERNALDATE \"14-Nov-2023 22:13:20 +0000\""),
        "{resp}"
    );

    let status = c
        .raw_command("STATUS \"Lists/rust-users\" (MESSAGES)")
        .unwrap();
    assert!(status.contains("MESSAGES 10"), "{status}");
    let status = c
        .raw_command("STATUS \"Entw&APw-rfe/&ANw-nter\" (MESSAGES)")
        .unwrap();
    assert!(status.contains("MESSAGES 3"), "{status}");
    // Seeding again appends after the existing messages.
    d.seed("alice@example.org", "INBOX", &msgs[..5]).unwrap();
    c.raw_command("NOOP").unwrap();
    assert_eq!(c.uids().unwrap().len(), 105);
}

fn tls_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_wrap(stream: TcpStream, name: &str, ca: &Path) -> Tls {
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(tls_config(ca), server_name).unwrap();
    rustls::StreamOwned::new(conn, stream)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_line<R: Read>(r: &mut BufReader<R>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    l
}

#[test]
fn implicit_tls_validates_against_ca() {
    let d = start();
    for (port, greeting) in [(d.imaps_port(), "* OK"), (d.pop3s_port(), "+OK")] {
        for name in ["127.0.0.1", "localhost"] {
            let mut r = BufReader::new(tls_wrap(connect(port), name, d.ca_file()));
            let l = read_line(&mut r);
            assert!(l.starts_with(greeting), "{port} {name}: {l}");
        }
        // A name the certificate does not cover must fail verification.
        let mut r = BufReader::new(tls_wrap(connect(port), "example.com", d.ca_file()));
        let mut l = String::new();
        assert!(r.read_line(&mut l).is_err());
    }
}

#[test]
fn starttls_and_stls_work() {
    let d = start_with_user();
    // IMAP STARTTLS, then LOGIN inside TLS.
    let s = connect(d.imap_port());
    let mut r = BufReader::new(s.try_clone().unwrap());
    let greeting = read_line(&mut r);
    assert!(greeting.contains("STARTTLS"), "{greeting}");
    (&s).write_all(b"a STARTTLS\r\n").unwrap();
    assert!(read_line(&mut r).starts_with("a OK"));
    let mut tls = BufReader::new(tls_wrap(s, "127.0.0.1", d.ca_file()));
    tls.get_mut()
        .write_all(b"b LOGIN alice@example.org secret\r\n")
        .unwrap();
    let l = read_line(&mut tls);
    assert!(l.starts_with("b OK"), "{l}");

    // POP3 STLS.
    let s = connect(d.pop3_port());
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert!(read_line(&mut r).starts_with("+OK"));
    (&s).write_all(b"STLS\r\n").unwrap();
    assert!(read_line(&mut r).starts_with("+OK"));
    let mut tls = BufReader::new(tls_wrap(s, "localhost", d.ca_file()));
    tls.get_mut().write_all(b"CAPA\r\n").unwrap();
    assert!(read_line(&mut tls).starts_with("+OK"));
}

#[test]
fn pop3_plain_login_and_stat() {
    let d = start_with_user();
    d.deliver(
        "alice@example.org",
        &corpus::message("a@example.org", "alice@example.org", "pop", "me"),
    )
    .unwrap();
    let s = connect(d.pop3_port());
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert!(read_line(&mut r).starts_with("+OK"));
    for (cmd, want) in [
        ("USER alice@example.org\r\n", "+OK"),
        ("PASS secret\r\n", "+OK"),
        ("STAT\r\n", "+OK 1 "),
        ("QUIT\r\n", "+OK"),
    ] {
        (&s).write_all(cmd.as_bytes()).unwrap();
        let l = read_line(&mut r);
        assert!(l.starts_with(want), "{cmd}: {l}");
    }
}

fn capability(d: &Dovecot) -> String {
    let mut c = ImapClient::login(d.imap_port(), "alice@example.org", "secret").unwrap();
    c.raw_command("CAPABILITY").unwrap()
}

#[test]
fn capabilities_follow_options() {
    let d = start_with_user();
    let caps = capability(&d);
    for cap in [
        "IDLE",
        "CONDSTORE",
        "QRESYNC",
        "NOTIFY",
        "MOVE",
        "UIDPLUS",
        "SPECIAL-USE",
        "LIST-STATUS",
        "ESEARCH",
        "LITERAL+",
    ] {
        assert!(caps.split_whitespace().any(|c| c == cap), "{cap}: {caps}");
    }
    drop(d);

    let d = Dovecot::start(DovecotOptions {
        condstore: false,
        notify: false,
        ..Default::default()
    })
    .unwrap();
    d.add_user("alice@example.org", "secret").unwrap();
    let caps = capability(&d);
    for cap in ["CONDSTORE", "QRESYNC", "NOTIFY"] {
        assert!(!caps.contains(cap), "{cap}: {caps}");
    }
    for cap in ["IDLE", "MOVE", "UIDPLUS"] {
        assert!(caps.split_whitespace().any(|c| c == cap), "{cap}: {caps}");
    }
    // The greeting (pre-login) list must not leak them either.
    let s = connect(d.imap_port());
    let greeting = read_line(&mut BufReader::new(s));
    assert!(!greeting.contains("CONDSTORE"), "{greeting}");
}

#[test]
fn restart_keeps_mail_and_ports() {
    let mut d = start_with_user();
    d.deliver(
        "alice@example.org",
        &corpus::message("a@example.org", "alice@example.org", "keep", "me"),
    )
    .unwrap();
    let port = d.imap_port();
    d.stop();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let t = Instant::now();
    d.restart().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(d.imap_port(), port);
    let mut c = ImapClient::login(port, "alice@example.org", "secret").unwrap();
    c.select("INBOX").unwrap();
    assert_eq!(c.uids().unwrap().len(), 1);
}

#[test]
fn kept_state_dir_survives_drop() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let state = dir.path().join("state");
    let opts = DovecotOptions {
        state_dir: Some(state.clone()),
        ..Default::default()
    };
    {
        let d = Dovecot::start(opts.clone()).unwrap();
        d.add_user("carol@example.org", "pw").unwrap();
        d.seed_corpus("carol@example.org", &corpus::generate(1, 20, &["INBOX"]))
            .unwrap();
    }
    assert!(state.join("dovecot.log").exists());
    let d = Dovecot::start(opts).unwrap();
    let mut c = ImapClient::login(d.imap_port(), "carol@example.org", "pw").unwrap();
    c.select("INBOX").unwrap();
    assert_eq!(c.uids().unwrap().len(), 20);
}

#[test]
fn imap_client_operations() {
    let d = start_with_user();
    let mut c = ImapClient::login(d.imap_port(), "alice@example.org", "secret").unwrap();
    c.create("Work").unwrap();
    c.create("Entwürfe").unwrap();
    let raw = corpus::message("a@example.org", "alice@example.org", "one", "1");
    let uid = c.append("Work", &["\\Seen"], &raw).unwrap();
    assert_eq!(uid, Some(1));
    c.append("Work", &[], &raw).unwrap();
    c.append("Work", &["$Label2"], &raw).unwrap();
    c.select("Work").unwrap();
    assert_eq!(c.uids().unwrap(), vec![1, 2, 3]);
    c.store_flags("2", "+FLAGS", &["\\Flagged"]).unwrap();
    c.store_flags("1", "-FLAGS", &["\\Seen"]).unwrap();
    // \Recent comes and goes with sessions; ignore it.
    let flags: Vec<(u32, Vec<String>)> = c
        .fetch_flags()
        .unwrap()
        .into_iter()
        .map(|(u, f)| (u, f.into_iter().filter(|f| f != "\\Recent").collect()))
        .collect();
    assert!(flags[0].1.is_empty(), "{flags:?}");
    assert_eq!(flags[1].1, vec!["\\Flagged".to_owned()]);
    assert_eq!(flags[2].1, vec!["$Label2".to_owned()]);
    c.copy_uids("1", "Entwürfe").unwrap();
    c.move_uids("2", "Archive").unwrap();
    c.expunge_uids("3").unwrap();
    assert_eq!(c.uids().unwrap(), vec![1]);
    c.select("Entwürfe").unwrap();
    assert_eq!(c.uids().unwrap().len(), 1);
    c.select("Archive").unwrap();
    assert_eq!(c.uids().unwrap().len(), 1);
    c.rename("Work", "Projects/Old").unwrap();
    let list = c.raw_command("LIST \"\" \"*\"").unwrap();
    assert!(list.contains("Projects/Old"), "{list}");
    assert!(list.contains("Entw&APw-rfe"), "{list}");
    c.delete("Projects/Old").unwrap();
    // A failing command reports the server's answer rather than hanging.
    assert!(c.select("Missing").is_err());
    // Literals in responses are read through, not mistaken for lines.
    c.select("Archive").unwrap();
    let fetched = c.raw_command("UID FETCH 1:* (BODY.PEEK[] FLAGS)").unwrap();
    assert!(fetched.contains("Subject: one\r\n"), "{fetched}");
    assert!(
        fetched.lines().last().unwrap().contains(" OK "),
        "{fetched}"
    );
    c.logout().unwrap();
}

#[test]
fn demo_corpus_seeds_into_all_folders() {
    let d = start_with_user();
    let demo = corpus::demo_corpus();
    d.seed_corpus("alice@example.org", &demo).unwrap();
    let mut c = ImapClient::login(d.imap_port(), "alice@example.org", "secret").unwrap();
    let mut total = 0;
    for folder in ["INBOX", "Archive", "Sent", "Work", "Lists/rust-users"] {
        c.select(folder).unwrap();
        let n = c.uids().unwrap().len();
        assert_eq!(n, demo.iter().filter(|m| m.folder == folder).count());
        total += n;
    }
    assert_eq!(total, demo.len());
    // Full-text search has real words to find.
    c.select("INBOX").unwrap();
    let found = c.raw_command("UID SEARCH BODY \"hedgehog\"").unwrap();
    assert!(found.split_whitespace().count() > 4, "{found}");
}

#[test]
fn doveadm_reports_errors() {
    let d = start_with_user();
    let out = d.doveadm(&["user", "alice@example.org"]).unwrap();
    assert!(out.contains("home"), "{out}");
    let err = d.doveadm(&[
        "mailbox",
        "status",
        "-u",
        "alice@example.org",
        "messages",
        "Nope",
    ]);
    assert!(err.is_err());
}

/// Seeds 10,000 corpus messages and reports the time. Run with
/// `cargo test -p testkit --release -- --ignored seed_10000 --nocapture`.
#[test]
#[ignore]
fn seed_10000() {
    let d = start_with_user();
    let t = Instant::now();
    let msgs: Vec<SeedMessage> = corpus::generate(3, 10_000, &["INBOX"])
        .into_iter()
        .map(SeedMessage::from)
        .collect();
    let bytes: usize = msgs.iter().map(|m| m.raw.len()).sum();
    eprintln!(
        "generated 10000 messages ({} MB) in {:?}",
        bytes / 1_000_000,
        t.elapsed()
    );
    let t = Instant::now();
    d.seed("alice@example.org", "INBOX", &msgs).unwrap();
    eprintln!("seeded 10000 messages in {:?}", t.elapsed());
    let t = Instant::now();
    let mut c = ImapClient::login(d.imap_port(), "alice@example.org", "secret").unwrap();
    c.select("INBOX").unwrap();
    assert_eq!(c.uids().unwrap().len(), 10_000);
    eprintln!("SELECT + UID SEARCH in {:?}", t.elapsed());
}

/// Reads ManageSieve response lines up to and including the final OK/NO/BYE line.
fn sieve_response(r: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    for _ in 0..100 {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        all.push_str(&line);
        let up = line.to_ascii_uppercase();
        if up.starts_with("OK") || up.starts_with("NO") || up.starts_with("BYE") {
            break;
        }
    }
    all
}

#[test]
fn sieve_vacation_reply_reaches_the_sink() {
    let d = Dovecot::start(DovecotOptions {
        sieve: true,
        ..Default::default()
    })
    .unwrap();
    d.add_user("alice@example.org", "secret").unwrap();
    let port = d.managesieve_port().unwrap();
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let greeting = sieve_response(&mut r);
    assert!(greeting.contains("\"SIEVE\""), "{greeting}");
    assert!(greeting.contains("vacation"), "{greeting}");
    w.write_all(b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==\"\r\n")
        .unwrap();
    assert!(sieve_response(&mut r).starts_with("OK"));
    let script = "require \"vacation\";\r\nvacation :subject \"Away\" \"I am away.\";\r\n";
    w.write_all(format!("PUTSCRIPT \"v\" {{{}+}}\r\n{script}\r\n", script.len()).as_bytes())
        .unwrap();
    let put = sieve_response(&mut r);
    assert!(put.starts_with("OK"), "{put}");
    w.write_all(b"SETACTIVE \"v\"\r\n").unwrap();
    assert!(sieve_response(&mut r).starts_with("OK"));
    assert!(d.sent_by_sieve().unwrap().is_empty());
    let raw = corpus::message("Bob <bob@example.com>", "alice@example.org", "Hi", "hello");
    d.deliver("alice@example.org", &raw).unwrap();
    let sent = d.sent_by_sieve().unwrap();
    assert_eq!(
        sent.len(),
        1,
        "{}",
        std::fs::read_to_string(d.log_path()).unwrap()
    );
    let reply = String::from_utf8_lossy(&sent[0]);
    assert!(reply.contains("Subject: Away"), "{reply}");
    assert!(reply.contains("I am away."), "{reply}");
}
