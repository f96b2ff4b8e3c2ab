//! Unit tests over hand-written messages covering the common MIME shapes.

use super::*;

fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

const PLAIN: &str = "From: \"Ann Example\" <ann@example.com>\n\
To: Bob <bob@example.org>, carol@example.net\n\
Cc: undisclosed-recipients:;\n\
Subject:  Hello   there \n\
Date: Tue, 2 Jan 2024 10:00:00 +0100\n\
Message-ID: <m1@example.com>\n\
In-Reply-To: <m0@example.com>\n\
References: <root@example.com>\n <m0@example.com>\n\
\n\
Hi Bob,\n\
\n\
this is   a plain message.\n";

#[test]
fn plain_message() {
    let pm = parse(&crlf(PLAIN));
    assert_eq!(pm.message_id.as_deref(), Some("m1@example.com"));
    assert_eq!(pm.in_reply_to, vec!["m0@example.com"]);
    assert_eq!(pm.references, vec!["root@example.com", "m0@example.com"]);
    assert_eq!(pm.subject.as_deref(), Some("Hello   there"));
    assert_eq!(
        pm.from,
        vec![Address {
            name: Some("Ann Example".into()),
            email: "ann@example.com".into()
        }]
    );
    assert_eq!(pm.to.len(), 2);
    assert_eq!(pm.to[0].name.as_deref(), Some("Bob"));
    assert_eq!(pm.to[1].email, "carol@example.net");
    assert!(pm.cc.is_empty(), "empty group flattens to nothing");
    assert_eq!(pm.sent_at, Some(1_704_186_000));
    assert_eq!(pm.sent_offset, 60, "+0100 is 60 minutes east");
    assert_eq!(pm.preview, "Hi Bob, this is a plain message.");
    assert_eq!(pm.body_text, "Hi Bob, this is a plain message.");
    assert!(!pm.has_attachment);
    assert!(pm.attachments.is_empty());
    assert!(pm.problems.is_empty(), "{:?}", pm.problems);
    // LF-only gives the same result.
    let lf = parse(PLAIN.as_bytes());
    assert_eq!(lf, pm);
}

#[test]
fn header_only() {
    let raw = crlf(PLAIN);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("blank line")
        + 4;
    let pm = parse_header(&raw[..end]);
    let full = parse(&raw);
    assert_eq!(pm.message_id, full.message_id);
    assert_eq!(pm.subject, full.subject);
    assert_eq!(pm.from, full.from);
    assert_eq!(pm.sent_at, full.sent_at);
    assert!(pm.preview.is_empty() && pm.body_text.is_empty() && pm.attachments.is_empty());
    // Even on the full message, parse_header ignores the body.
    assert!(parse_header(&raw).body_text.is_empty());
}

#[test]
fn alternative() {
    let raw = crlf(
        "From: a@example.com\n\
Subject: alt\n\
Date: Tue, 2 Jan 2024 10:00:00 +0000\n\
MIME-Version: 1.0\n\
Content-Type: multipart/alternative; boundary=\"b1\"\n\
\n\
preamble\n\
--b1\n\
Content-Type: text/plain; charset=utf-8\n\
\n\
Plain version\n\
--b1\n\
Content-Type: text/html; charset=utf-8\n\
\n\
<html><body><p>HTML <b>version</b></p></body></html>\n\
--b1--\n",
    );
    let pm = parse(&raw);
    assert_eq!(pm.preview, "Plain version");
    assert_eq!(pm.body_text, "Plain version");
    assert!(pm.attachments.is_empty());
    assert!(!pm.has_attachment);
    assert!(pm.problems.is_empty(), "{:?}", pm.problems);
}

#[test]
fn html_only() {
    let raw = crlf(
        "From: a@example.com\n\
Date: Tue, 2 Jan 2024 10:00:00 +0000\n\
Content-Type: text/html; charset=iso-8859-1\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
<style>x{}</style><p>Caf=E9 &amp; cr=E8me</p>\n",
    );
    let pm = parse(&raw);
    assert_eq!(pm.preview, "Café & crème");
    assert_eq!(pm.body_text, "Café & crème");
}

const MIXED: &str = "From: a@example.com\n\
Subject: report\n\
Date: Tue, 2 Jan 2024 10:00:00 +0000\n\
Content-Type: multipart/mixed; boundary=outer\n\
\n\
--outer\n\
Content-Type: multipart/alternative; boundary=inner\n\
\n\
--inner\n\
Content-Type: text/plain\n\
\n\
See attached.\n\
--inner\n\
Content-Type: text/html\n\
\n\
<p>See attached.</p>\n\
--inner--\n\
--outer\n\
Content-Type: application/pdf; name=\"report.pdf\"\n\
Content-Disposition: attachment; filename=\"report.pdf\"\n\
Content-Transfer-Encoding: base64\n\
\n\
JVBERi0xLjQKJcfs\n\
--outer\n\
Content-Type: text/csv\n\
Content-Disposition: attachment; filename*=UTF-8''na%C3%AFve%20%E2%82%AC.csv\n\
\n\
a,b\n\
--outer--\n";

#[test]
fn mixed_with_attachments() {
    let pm = parse(&crlf(MIXED));
    assert_eq!(pm.preview, "See attached.");
    assert!(pm.has_attachment);
    assert_eq!(pm.attachments.len(), 2, "{:#?}", pm.attachments);
    let pdf = &pm.attachments[0];
    assert_eq!(pdf.part_id, "2");
    assert_eq!(pdf.name.as_deref(), Some("report.pdf"));
    assert_eq!(pdf.content_type, "application/pdf");
    assert_eq!(pdf.size, 12, "decoded size of base64 payload");
    assert_eq!(pdf.disposition.as_deref(), Some("attachment"));
    assert!(!pdf.is_inline);
    let csv = &pm.attachments[1];
    assert_eq!(csv.part_id, "3");
    assert_eq!(
        csv.name.as_deref(),
        Some("naïve €.csv"),
        "RFC 2231 filename"
    );
    assert_eq!(csv.content_type, "text/csv");
    assert!(pm.problems.is_empty(), "{:?}", pm.problems);
    // Part ids are stable for the same input.
    assert_eq!(parse(&crlf(MIXED)).attachments, pm.attachments);
}

#[test]
fn nested_part_ids() {
    let raw = crlf(
        "From: a@example.com\n\
Date: Tue, 2 Jan 2024 10:00:00 +0000\n\
Content-Type: multipart/mixed; boundary=o\n\
\n\
--o\n\
Content-Type: multipart/mixed; boundary=i\n\
\n\
--i\n\
Content-Type: text/plain\n\
\n\
body\n\
--i\n\
Content-Type: application/zip\n\
Content-Disposition: attachment; filename=a.zip\n\
\n\
zip\n\
--i--\n\
--o--\n",
    );
    let pm = parse(&raw);
    assert_eq!(pm.attachments.len(), 1);
    assert_eq!(pm.attachments[0].part_id, "1.2");
    assert_eq!(pm.attachments[0].size, 3);
}

#[test]
fn related_inline_image() {
    let raw = crlf(
        "From: a@example.com\n\
Date: Tue, 2 Jan 2024 10:00:00 +0000\n\
Content-Type: multipart/related; boundary=r\n\
\n\
--r\n\
Content-Type: text/html\n\
\n\
<p>Logo: <img src=\"cid:logo@x\"></p>\n\
--r\n\
Content-Type: image/png\n\
Content-ID: <logo@x>\n\
Content-Transfer-Encoding: base64\n\
\n\
iVBORw0KGgo=\n\
--r--\n",
    );
    let pm = parse(&raw);
    assert_eq!(pm.preview, "Logo:");
    assert_eq!(pm.attachments.len(), 1, "{:#?}", pm.attachments);
    let img = &pm.attachments[0];
    assert_eq!(img.part_id, "2");
    assert_eq!(img.cid.as_deref(), Some("logo@x"));
    assert_eq!(img.content_type, "image/png");
    assert_eq!(img.size, 8);
    assert!(img.is_inline);
    assert!(!pm.has_attachment, "embedded image is not an attachment");
}

#[test]
fn attached_message() {
    let raw = crlf(
        "From: a@example.com\n\
Subject: Fwd: inner\n\
Date: Tue, 2 Jan 2024 10:00:00 +0000\n\
Content-Type: multipart/mixed; boundary=m\n\
\n\
--m\n\
Content-Type: text/plain\n\
\n\
Forwarding.\n\
--m\n\
Content-Type: message/rfc822\n\
Content-Disposition: attachment; filename=inner.eml\n\
\n\
From: inner@example.com\n\
Subject: inner\n\
\n\
Inner body.\n\
--m--\n",
    );
    let pm = parse(&raw);
    assert_eq!(pm.preview, "Forwarding.");
    assert!(!pm.body_text.contains("Inner body"), "{}", pm.body_text);
    assert_eq!(pm.attachments.len(), 1, "{:#?}", pm.attachments);
    let att = &pm.attachments[0];
    assert_eq!(att.part_id, "2");
    assert_eq!(att.content_type, "message/rfc822");
    assert_eq!(att.name.as_deref(), Some("inner.eml"));
    let inner_len = crlf("From: inner@example.com\nSubject: inner\n\nInner body.").len() as u64;
    assert!(
        att.size >= inner_len && att.size <= inner_len + 2,
        "size {} vs {inner_len}",
        att.size
    );
    assert!(pm.has_attachment);
    assert_eq!(pm.from[0].email, "a@example.com", "outer headers win");
}

#[test]
fn encoded_words() {
    let raw = crlf(
        "From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <j@example.de>\n\
To: =?ISO-8859-1?Q?Andr=E9_Pirard?= <pirard@example.be>\n\
Cc: =?utf-8?q?=E2=82=AC_Team?= <t@example.com>\n\
Subject: =?utf-8?B?w5xiZXJ3ZWlzdW5n?= =?utf-8?Q?_f=C3=BCr_M=C3=A4rz?=\n\
Date: Tue, 2 Jan 2024 10:00:00 +0000\n\
\n\
x\n",
    );
    let pm = parse(&raw);
    assert_eq!(pm.subject.as_deref(), Some("Überweisung für März"));
    assert_eq!(pm.from[0].name.as_deref(), Some("Jürgen Müller"));
    assert_eq!(pm.to[0].name.as_deref(), Some("André Pirard"));
    assert_eq!(pm.cc[0].name.as_deref(), Some("€ Team"));
    let iso = parse(&crlf(
        "Subject: =?iso-8859-1?q?Caf=E9?=\nDate: Tue, 2 Jan 2024 10:00:00 +0000\n\nx\n",
    ));
    assert_eq!(iso.subject.as_deref(), Some("Café"));
}

/// RFC 8621 4.1.2.2: `subject` and address names are the Text form, which is NFC
/// (U+212B ANGSTROM SIGN becomes U+00C5).
#[test]
fn subject_and_names_are_nfc() {
    let raw = crlf(
        "From: =?UTF-8?B?4oSr?= <a@example.com>\n\
Subject: =?UTF-8?B?4oSr?=\n\
Date: Tue, 2 Jan 2024 10:00:00 +0000\n\
\n\
x\n",
    );
    for pm in [parse(&raw), parse_header(&raw)] {
        assert_eq!(pm.subject.as_deref(), Some("\u{c5}"));
        assert_eq!(pm.from[0].name.as_deref(), Some("\u{c5}"));
    }
}

#[test]
fn rfc2231_continuations_and_2047_filename() {
    let raw = crlf(
        "From: a@example.com\n\
Date: Tue, 2 Jan 2024 10:00:00 +0000\n\
Content-Type: multipart/mixed; boundary=z\n\
\n\
--z\n\
Content-Type: application/octet-stream\n\
Content-Disposition: attachment;\n filename*0*=iso-8859-1''r%E9sum;\n filename*1=\"e.txt\"\n\
\n\
x\n\
--z\n\
Content-Type: application/octet-stream; name=\"=?utf-8?B?w6lsw6hu?=.bin\"\n\
\n\
y\n\
--z--\n",
    );
    let pm = parse(&raw);
    assert_eq!(pm.attachments.len(), 2, "{:#?}", pm.attachments);
    assert_eq!(pm.attachments[0].name.as_deref(), Some("résume.txt"));
    assert_eq!(pm.attachments[1].name.as_deref(), Some("élèn.bin"));
    assert_eq!(pm.attachments[1].disposition, None);
    assert!(!pm.attachments[1].is_inline);
}

#[test]
fn thread_keys_order_and_dedup() {
    let pm = parse(&crlf(PLAIN));
    assert_eq!(
        thread_keys(&pm),
        vec!["m1@example.com", "root@example.com", "m0@example.com"]
    );
    let mut big = ParsedMessage {
        message_id: Some("self".into()),
        in_reply_to: vec!["parent".into()],
        ..ParsedMessage::default()
    };
    big.references = (0..500).map(|i| format!("r{i}")).collect();
    big.references.push("parent".into());
    let keys = thread_keys(&big);
    assert_eq!(keys.len(), MAX_THREAD_KEYS);
    assert_eq!(keys[0], "self");
    assert_eq!(keys[1], "r0", "thread root kept");
    assert!(keys.contains(&"parent".to_string()));
    assert!(keys.contains(&"r499".to_string()), "nearest ancestors kept");
    let mut seen = std::collections::HashSet::new();
    assert!(keys.iter().all(|k| seen.insert(k)));
    assert!(thread_keys(&ParsedMessage::default()).is_empty());
}

#[test]
fn message_id_cleaning() {
    let long = "x".repeat(1200);
    let raw = format!(
        "Message-ID: <{long}@x>\nReferences: <ok@x> <{long}@y> <ok@x>\nDate: Tue, 2 Jan 2024 10:00:00 +0000\n\nb\n"
    );
    let pm = parse(raw.as_bytes());
    assert_eq!(pm.message_id, None);
    assert_eq!(pm.references, vec!["ok@x"]);
    assert!(pm.problems.iter().any(|p| p.contains("Message-ID")));
    let bare = parse(b"Message-ID:  bare@id  \nDate: Tue, 2 Jan 2024 10:00:00 +0000\n\nb\n");
    assert_eq!(bare.message_id.as_deref(), Some("bare@id"));
}

#[test]
fn base_subject_cases() {
    assert_eq!(
        base_subject("Re: Fwd: [rust-users] Re: Async  traits"),
        "async traits"
    );
    assert_eq!(base_subject("AW: WG: sv: Projekt (fwd)"), "projekt");
    assert_eq!(base_subject("[Fwd: Re: Lunch]"), "lunch");
    assert_eq!(base_subject("Plain"), "plain");
}

#[test]
fn blob_ids() {
    assert_eq!(
        blob_id(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(blob_id(b"abc").len(), 64);
}

#[test]
fn html_to_text_limit() {
    assert_eq!(html_to_text("<p>one</p><p>two three</p>", 7), "one two");
    assert_eq!(html_to_text("<p>one</p>", 0), "");
}

#[test]
fn panic_fence_falls_back_to_header_scan() {
    fn boom(_: &[u8], _: bool) -> ParsedMessage {
        panic!("simulated parser bug")
    }
    let pm = extract::parse_guarded(&crlf(PLAIN), false, boom);
    assert!(pm.problems.iter().any(|p| p == "parser panicked"));
    assert_eq!(pm.message_id.as_deref(), Some("m1@example.com"));
    assert_eq!(pm.subject.as_deref(), Some("Hello   there"));
    assert_eq!(pm.references, vec!["root@example.com", "m0@example.com"]);
    assert_eq!(pm.from[0].email, "ann@example.com");
    assert_eq!(pm.sent_at, Some(1_704_186_000));
    assert!(pm.body_text.is_empty());
}

#[test]
fn latin1_raw_header() {
    let raw = b"From: Ren\xe9 <rene@example.fr>\r\nSubject: caf\xe9 cr\xe8me \x80\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\nbody\r\n";
    let pm = parse(raw);
    assert_eq!(pm.subject.as_deref(), Some("café crème €"));
    assert_eq!(pm.from[0].name.as_deref(), Some("René"));
    assert_eq!(pm.preview, "body");
    assert!(pm.problems.iter().any(|p| p.contains("windows-1252")));
}

#[test]
fn serde_roundtrip() {
    let pm = parse(&crlf(MIXED));
    let json = serde_json_like(&pm);
    assert!(json.contains("report.pdf"));
}

/// serde_json is not a dependency; Debug output is enough to prove the
/// derive compiles and the data is there. Serialize is checked by the
/// compiler through this bound.
fn serde_json_like<T: serde::Serialize + std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}
