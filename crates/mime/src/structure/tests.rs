//! Body structure, body lists and part content over hand-written messages.

use super::*;
use crate::parse;

fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

/// Leaves in document order: (partId, type).
fn leaves(p: &BodyPart) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![p];
    while let Some(p) = stack.pop() {
        match &p.sub_parts {
            Some(subs) => stack.extend(subs.iter().rev()),
            None => out.push((
                p.part_id.clone().unwrap_or_default(),
                p.content_type.clone(),
            )),
        }
    }
    out
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Every attachment `parse` reports is a leaf here with the same id, type
/// (a multipart that could not be split is `application/octet-stream`
/// here) and name.
fn assert_ids_match(raw: &[u8]) {
    let pm = parse(raw);
    let root = body_structure(raw);
    let all = leaves(&root);
    for a in &pm.attachments {
        let want = if a.content_type.starts_with("multipart/") {
            "application/octet-stream"
        } else {
            a.content_type.as_str()
        };
        assert!(
            all.iter().any(|(id, t)| id == &a.part_id && t == want),
            "attachment {a:?} not in {all:?}"
        );
        let c = part_content(raw, &a.part_id).expect("attachment content");
        assert_eq!(c.name, a.name, "{}", a.part_id);
        assert_eq!(c.content_type, want);
    }
}

/// For well-formed input: every attachment of the RFC algorithm is one
/// `parse` reports too (mail-parser also lists inline media shown in the
/// body, so not the other way round).
fn assert_lists_within_parse(raw: &[u8]) {
    let pm = parse(raw);
    for id in body_lists(&body_structure(raw)).attachments {
        assert!(
            pm.attachments.iter().any(|a| a.part_id == id),
            "{id} not in {:?} for {:?}",
            pm.attachments,
            String::from_utf8_lossy(raw)
        );
    }
}

/// Attachment ids of `parse`, for samples where mail-parser and the RFC
/// algorithm agree.
fn parse_attachment_ids(raw: &[u8]) -> Vec<String> {
    parse(raw)
        .attachments
        .iter()
        .map(|a| a.part_id.clone())
        .collect()
}

const PLAIN: &str = "From: a@example.com\n\
Subject: hi\n\
Content-Type: text/plain; charset=UTF-8\n\
Content-Language: en, DE\n\
\n\
Hello, world.\n";

#[test]
fn plain_single_part() {
    let raw = crlf(PLAIN);
    let root = body_structure(&raw);
    assert_eq!(root.part_id.as_deref(), Some("1"));
    assert_eq!(root.content_type, "text/plain");
    assert_eq!(root.charset.as_deref(), Some("UTF-8"));
    assert_eq!(root.size, "Hello, world.\r\n".len() as u64);
    assert_eq!(root.sub_parts, None);
    assert_eq!(root.language, Some(ids(&["en", "DE"])));
    assert_eq!(
        root.headers,
        vec![
            ("From".to_string(), " a@example.com".to_string()),
            ("Subject".into(), " hi".into()),
            ("Content-Type".into(), " text/plain; charset=UTF-8".into()),
            ("Content-Language".into(), " en, DE".into()),
        ]
    );
    let lists = body_lists(&root);
    assert_eq!(lists.text_body, ids(&["1"]));
    assert_eq!(lists.html_body, ids(&["1"]));
    assert!(lists.attachments.is_empty());
    let v = body_value(&raw, "1", 0).expect("value");
    assert_eq!(v.value, "Hello, world.\n");
    assert!(!v.is_encoding_problem && !v.is_truncated);
    assert_eq!(
        part_content(&raw, "1").expect("c").bytes,
        b"Hello, world.\r\n"
    );
    assert!(part_content(&raw, "2").is_none());
    assert!(part_content(&raw, "").is_none());
    assert!(body_value(&raw, "1.1", 0).is_none());
    assert_ids_match(&raw);
}

#[test]
fn no_content_type_defaults() {
    let raw = b"Subject: x\n\nbody\n";
    let root = body_structure(raw);
    assert_eq!(root.content_type, "text/plain");
    assert_eq!(root.charset.as_deref(), Some("us-ascii"));
}

const ALTERNATIVE: &str = "From: a@example.com\n\
MIME-Version: 1.0\n\
Content-Type: multipart/alternative; boundary=\"b1\"\n\
\n\
preamble\n\
--b1\n\
Content-Type: text/plain; charset=us-ascii\n\
\n\
plain text\n\
--b1\n\
Content-Type: text/html; charset=utf-8\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
<p>html =C3=A9</p>\n\
--b1--\n";

#[test]
fn alternative() {
    let raw = crlf(ALTERNATIVE);
    let root = body_structure(&raw);
    assert_eq!(root.part_id, None);
    assert_eq!(root.content_type, "multipart/alternative");
    assert_eq!(root.size, 0);
    assert_eq!(root.charset, None);
    assert_eq!(
        leaves(&root),
        vec![
            ("1".to_string(), "text/plain".to_string()),
            ("2".into(), "text/html".into())
        ]
    );
    let lists = body_lists(&root);
    assert_eq!(lists.text_body, ids(&["1"]));
    assert_eq!(lists.html_body, ids(&["2"]));
    assert!(lists.attachments.is_empty());
    let html = body_value(&raw, "2", 0).expect("html");
    assert_eq!(html.value, "<p>html é</p>");
    // size is the transfer-decoded octet count.
    let subs = root.sub_parts.as_deref().unwrap_or_default();
    assert_eq!(subs[1].size, "<p>html é</p>".len() as u64);
    assert_eq!(subs[0].size, "plain text".len() as u64);
    assert_ids_match(&raw);
}

const MIXED: &str = "From: a@example.com\n\
Content-Type: multipart/mixed; boundary=\"m\"\n\
\n\
--m\n\
Content-Type: text/plain\n\
\n\
see attached\n\
--m\n\
Content-Type: application/pdf; name=\"ignored.pdf\"\n\
Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf\n\
Content-Transfer-Encoding: base64\n\
Content-ID: <pdf1@example.com>\n\
Content-Location: http://example.com/r.pdf\n\
\n\
JVBERi0xLjQKJcfs\n\
j6IKAAEC/w==\n\
--m--\n";

#[test]
fn mixed_with_attachment() {
    let raw = crlf(MIXED);
    let root = body_structure(&raw);
    assert_eq!(root.content_type, "multipart/mixed");
    let subs = root.sub_parts.as_deref().unwrap_or_default();
    assert_eq!(subs.len(), 2);
    let att = &subs[1];
    assert_eq!(att.part_id.as_deref(), Some("2"));
    assert_eq!(att.content_type, "application/pdf");
    assert_eq!(att.name.as_deref(), Some("résumé.pdf"));
    assert_eq!(att.disposition.as_deref(), Some("attachment"));
    assert_eq!(att.cid.as_deref(), Some("pdf1@example.com"));
    assert_eq!(att.location.as_deref(), Some("http://example.com/r.pdf"));
    assert_eq!(att.charset, None);
    let expected: &[u8] = b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n\x00\x01\x02\xff";
    assert_eq!(att.size, expected.len() as u64);
    let lists = body_lists(&root);
    assert_eq!(lists.text_body, ids(&["1"]));
    assert_eq!(lists.html_body, ids(&["1"]));
    assert_eq!(lists.attachments, ids(&["2"]));
    assert_eq!(parse_attachment_ids(&raw), lists.attachments);
    let c = part_content(&raw, "2").expect("content");
    assert_eq!(c.bytes, expected);
    assert_eq!(c.content_type, "application/pdf");
    assert_eq!(c.name.as_deref(), Some("résumé.pdf"));
    assert!(body_value(&raw, "2", 0).is_none(), "not text");
    assert_ids_match(&raw);
}

const RELATED: &str = "From: a@example.com\n\
Content-Type: multipart/mixed; boundary=\"o\"\n\
\n\
--o\n\
Content-Type: multipart/related; boundary=\"r\"\n\
\n\
--r\n\
Content-Type: text/html\n\
\n\
<img src=\"cid:logo@x\">\n\
--r\n\
Content-Type: image/png; name=\"logo.png\"\n\
Content-ID: <logo@x>\n\
Content-Transfer-Encoding: base64\n\
\n\
iVBORw0KGgo=\n\
--r--\n\
--o\n\
Content-Type: image/jpeg\n\
Content-Disposition: inline\n\
Content-Transfer-Encoding: base64\n\
\n\
/9j/4AAQ\n\
--o--\n";

#[test]
fn related_inline_image() {
    let raw = crlf(RELATED);
    let root = body_structure(&raw);
    assert_eq!(
        leaves(&root),
        vec![
            ("1.1".to_string(), "text/html".to_string()),
            ("1.2".into(), "image/png".into()),
            ("2".into(), "image/jpeg".into()),
        ]
    );
    let subs = root.sub_parts.as_deref().unwrap_or_default();
    assert_eq!(subs[0].part_id, None);
    assert_eq!(subs[0].content_type, "multipart/related");
    let lists = body_lists(&root);
    // RFC 8621 §4.1.4: in multipart/related only the first part can be
    // inline, so the cid image is an attachment; the trailing inline image
    // of the mixed is rendered in both bodies (no list is null here).
    assert_eq!(lists.text_body, ids(&["1.1", "2"]));
    assert_eq!(lists.html_body, ids(&["1.1", "2"]));
    assert_eq!(lists.attachments, ids(&["1.2"]));
    assert_eq!(
        part_content(&raw, "1.2").expect("png").bytes,
        b"\x89PNG\r\n\x1a\n"
    );
    assert_eq!(
        part_content(&raw, "2").expect("jpeg").bytes,
        b"\xff\xd8\xff\xe0\x00\x10"
    );
    assert!(part_content(&raw, "1").is_none(), "containers have no id");
    // mail-parser also lists the inline jpeg (shown in the body, and so
    // not an attachment for RFC 8621); the numbering is the same.
    assert_eq!(parse_attachment_ids(&raw), ids(&["1.2", "2"]));
    let pm = parse(&raw);
    assert!(pm.attachments.iter().all(|a| a.is_inline));
    assert_ids_match(&raw);
}

const RFC822: &str = "From: a@example.com\n\
Content-Type: multipart/mixed; boundary=\"x\"\n\
\n\
--x\n\
Content-Type: text/plain\n\
\n\
forwarding\n\
--x\n\
Content-Type: message/rfc822\n\
\n\
From: b@example.com\n\
Subject: inner\n\
Content-Type: multipart/alternative; boundary=\"y\"\n\
\n\
--y\n\
Content-Type: text/plain\n\
\n\
inner text\n\
--y--\n\
--x--\n";

#[test]
fn message_rfc822_is_a_leaf() {
    let raw = crlf(RFC822);
    let root = body_structure(&raw);
    assert_eq!(
        leaves(&root),
        vec![
            ("1".to_string(), "text/plain".to_string()),
            ("2".into(), "message/rfc822".into()),
        ]
    );
    let lists = body_lists(&root);
    assert_eq!(lists.attachments, ids(&["2"]));
    assert_eq!(parse_attachment_ids(&raw), lists.attachments);
    let c = part_content(&raw, "2").expect("message");
    let inner = crlf(
        "From: b@example.com\n\
Subject: inner\n\
Content-Type: multipart/alternative; boundary=\"y\"\n\
\n\
--y\n\
Content-Type: text/plain\n\
\n\
inner text\n\
--y--",
    );
    assert_eq!(c.bytes, inner);
    let subs = root.sub_parts.as_deref().unwrap_or_default();
    assert_eq!(subs[1].size, inner.len() as u64);
    assert_eq!(subs[1].sub_parts, None);
    // The attached message has its own structure.
    assert_eq!(
        body_structure(&c.bytes).content_type,
        "multipart/alternative"
    );
    assert_ids_match(&raw);
}

#[test]
fn base64_message_rfc822() {
    let inner = b"Subject: in\r\n\r\nbody\r\n";
    let b64 = "U3ViamVjdDogaW4NCg0KYm9keQ0K";
    let raw = crlf(&format!(
        "Content-Type: multipart/mixed; boundary=x\n\n--x\n\
Content-Type: text/plain\n\nhi\n--x\n\
Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n{b64}\n--x--\n"
    ));
    let c = part_content(&raw, "2").expect("message");
    assert_eq!(c.bytes, inner);
    assert_ids_match(&raw);
}

const NESTED: &str = "From: a@example.com\n\
Content-Type: multipart/mixed; boundary=\"o\"\n\
\n\
--o\n\
Content-Type: multipart/alternative; boundary=\"a\"\n\
\n\
--a\n\
Content-Type: text/plain\n\
\n\
text\n\
--a\n\
Content-Type: multipart/related; boundary=\"r\"\n\
\n\
--r\n\
Content-Type: text/html\n\
\n\
<b>html</b>\n\
--r\n\
Content-Type: image/gif\n\
Content-ID: <g@x>\n\
\n\
GIF89a\n\
--r--\n\
--a--\n\
--o\n\
Content-Type: text/plain; name=\"notes.txt\"\n\
\n\
notes\n\
--o\n\
Content-Type: application/zip\n\
Content-Disposition: attachment; filename=\"a.zip\"\n\
\n\
PK\n\
--o\n\
Content-Type: text/plain\n\
\n\
footer\n\
--o--\n";

#[test]
fn nested_alternative_in_mixed() {
    let raw = crlf(NESTED);
    let root = body_structure(&raw);
    assert_eq!(
        leaves(&root)
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        vec!["1.1", "1.2.1", "1.2.2", "2", "3", "4"]
    );
    let lists = body_lists(&root);
    assert_eq!(lists.text_body, ids(&["1.1", "4"]));
    assert_eq!(lists.html_body, ids(&["1.2.1", "4"]));
    // The text part with a file name after the first is an attachment, as
    // is the related image.
    assert_eq!(lists.attachments, ids(&["1.2.2", "2", "3"]));
    assert_eq!(parse_attachment_ids(&raw), lists.attachments);
    assert_ids_match(&raw);
}

#[test]
fn alternative_html_only_fills_text_body() {
    let raw = crlf(
        "Content-Type: multipart/alternative; boundary=a\n\n--a\n\
Content-Type: text/html\n\n<p>x</p>\n--a--\n",
    );
    let lists = body_lists(&body_structure(&raw));
    assert_eq!(lists.text_body, ids(&["1"]));
    assert_eq!(lists.html_body, ids(&["1"]));
    let raw = crlf(
        "Content-Type: multipart/alternative; boundary=a\n\n--a\n\
Content-Type: text/plain\n\nx\n--a--\n",
    );
    let lists = body_lists(&body_structure(&raw));
    assert_eq!(lists.text_body, ids(&["1"]));
    assert_eq!(lists.html_body, ids(&["1"]));
}

#[test]
fn mixed_inside_alternative_nulls_other_list() {
    // alternative [ mixed [text/plain, image], text/html ]
    let raw = crlf(
        "Content-Type: multipart/alternative; boundary=a\n\n--a\n\
Content-Type: multipart/mixed; boundary=m\n\n--m\n\
Content-Type: text/plain\n\nt\n--m\n\
Content-Type: image/png\n\nP\n--m--\n--a\n\
Content-Type: text/html\n\n<p>h</p>\n--a--\n",
    );
    let lists = body_lists(&body_structure(&raw));
    assert_eq!(lists.text_body, ids(&["1.1", "1.2"]));
    assert_eq!(lists.html_body, ids(&["2"]));
    // The image went to textBody only, so it is an attachment as well.
    assert_eq!(lists.attachments, ids(&["1.2"]));
}

#[test]
fn iso_8859_1_quoted_printable() {
    let raw = crlf(
        "Content-Type: text/plain; charset=ISO-8859-1\n\
Content-Transfer-Encoding: quoted-printable\n\n\
Caf=E9 cr=E8me, gr=FC=DFe =\n\
soft\n",
    );
    let root = body_structure(&raw);
    assert_eq!(root.charset.as_deref(), Some("ISO-8859-1"));
    let c = part_content(&raw, "1").expect("content");
    assert_eq!(c.bytes, b"Caf\xe9 cr\xe8me, gr\xfc\xdfe soft\r\n");
    assert_eq!(root.size, c.bytes.len() as u64);
    let v = body_value(&raw, "1", 0).expect("value");
    assert_eq!(v.value, "Café crème, grüße soft\n");
    assert!(!v.is_encoding_problem && !v.is_truncated);
}

#[test]
fn truncation_on_char_boundary() {
    let raw = crlf("Content-Type: text/plain; charset=utf-8\n\naé€😀z");
    // "a" 1 byte, "é" 2, "€" 3, "😀" 4.
    let v = |n| body_value(&raw, "1", n).expect("value");
    assert_eq!(v(0).value, "aé€😀z");
    assert!(!v(0).is_truncated);
    assert_eq!(v(1).value, "a");
    assert!(v(1).is_truncated);
    assert_eq!(v(2).value, "a");
    assert_eq!(v(3).value, "aé");
    assert_eq!(v(5).value, "aé");
    assert_eq!(v(6).value, "aé€");
    assert_eq!(v(9).value, "aé€");
    assert_eq!(v(10).value, "aé€😀");
    assert!(v(10).is_truncated);
    assert_eq!(v(11).value, "aé€😀z");
    assert!(!v(11).is_truncated);
    assert!(!v(100).is_truncated);
}

#[test]
fn encoding_problems() {
    // Invalid UTF-8 under a UTF-8 label.
    let raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\nbad \xff\xfe end";
    let v = body_value(raw, "1", 0).expect("value");
    assert!(v.is_encoding_problem);
    assert!(v.value.starts_with("bad ") && v.value.ends_with(" end"));
    // Unknown charset with 8-bit content.
    let raw = b"Content-Type: text/plain; charset=x-klingon\r\n\r\nqa\xe9pla";
    let v = body_value(raw, "1", 0).expect("value");
    assert!(v.is_encoding_problem);
    assert_eq!(v.value, "qaépla");
    // Unknown charset, pure ASCII: nothing lost.
    let raw = b"Content-Type: text/plain; charset=x-klingon\r\n\r\nqapla";
    assert!(!body_value(raw, "1", 0).expect("value").is_encoding_problem);
    // Undeclared charset with UTF-8 content reads as UTF-8.
    let raw = "Subject: x\r\n\r\nnaïve".as_bytes();
    let v = body_value(raw, "1", 0).expect("value");
    assert_eq!(v.value, "naïve");
    assert!(!v.is_encoding_problem);
    // Broken base64 keeps the raw octets and says so.
    let raw =
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!not base64!!";
    let v = body_value(raw, "1", 0).expect("value");
    assert!(v.is_encoding_problem);
    assert_eq!(v.value, "!!not base64!!");
}

#[test]
fn hostile_input_does_not_panic() {
    let empty = body_structure(b"");
    assert_eq!(empty.part_id.as_deref(), Some("1"));
    assert_eq!(empty.content_type, "text/plain");
    assert_eq!(empty.size, 0);
    assert_eq!(part_content(b"", "1").expect("c").bytes, b"");

    let garbage: &[u8] = b"\x00\x01\x02\xff\xfe garbage without any header\x00";
    let root = body_structure(garbage);
    assert_eq!(root.part_id.as_deref(), Some("1"));
    assert_eq!(root.content_type, "text/plain");
    assert_eq!(root.sub_parts, None);
    let lists = body_lists(&root);
    assert_eq!(lists.text_body, ids(&["1"]));
    assert!(part_content(garbage, "1").is_some());
    assert!(body_value(garbage, "1", 10).is_some_and(|v| v.value.len() <= 10));

    // Multipart without boundary / never closed / boundary never found.
    for raw in [
        "Content-Type: multipart/mixed\n\nno boundary\n",
        "Content-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/plain\n\nopen",
        "Content-Type: multipart/mixed; boundary=q\n\nnever a delimiter\n",
        "Content-Type: multipart/mixed; boundary=q\n\n--q\n\n--q\n\n--q--",
        "Content-Type: message/rfc822\n\n",
        "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n=\n=4\n=ZZ",
        "Content-Type: /\n\nx",
        "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: a\n\nb\n--d--\n",
    ] {
        let raw = crlf(raw);
        let root = body_structure(&raw);
        let _ = body_lists(&root);
        for (id, _) in leaves(&root) {
            assert!(part_content(&raw, &id).is_some(), "{id} in {root:?}");
            let _ = body_value(&raw, &id, 3);
        }
        assert_ids_match(&raw);
        let _ = serde_json_like(&root);
    }
    let unbounded = body_structure(&crlf("Content-Type: multipart/mixed\n\nno boundary\n"));
    assert_eq!(unbounded.content_type, "application/octet-stream");
    assert_eq!(unbounded.sub_parts, None);
}

/// Cheap stand-in for serialising: walks every field.
fn serde_json_like(p: &BodyPart) -> usize {
    format!("{p:?}").len()
}

#[test]
fn deep_nesting_is_bounded() {
    let depth = 200;
    let mut raw = String::new();
    for i in 0..depth {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\n\ndeep\n");
    for i in (0..depth).rev() {
        raw.push_str(&format!("--b{i}--\n"));
    }
    let raw = crlf(&raw);
    let root = body_structure(&raw);
    let mut d = 0;
    let mut p = &root;
    while let Some(subs) = &p.sub_parts {
        let Some(first) = subs.first() else { break };
        p = first;
        d += 1;
    }
    assert!(d <= MAX_BODY_DEPTH as usize, "{d}");
    assert_eq!(p.content_type, "application/octet-stream");
    let _ = body_lists(&root);
    let id = p.part_id.clone().expect("leaf id");
    assert!(part_content(&raw, &id).is_some());
}

#[test]
fn part_count_is_bounded() {
    let n = MAX_BODY_PARTS + 50;
    let mut raw = String::from("Content-Type: multipart/mixed; boundary=z\n\n");
    for _ in 0..n {
        raw.push_str("--z\n\nx\n");
    }
    raw.push_str("--z--\n");
    let root = body_structure(raw.as_bytes());
    let count = root.sub_parts.as_ref().map_or(0, Vec::len);
    assert_eq!(count + 1, MAX_BODY_PARTS);
    let lists = body_lists(&root);
    assert_eq!(lists.text_body.len(), MAX_BODY_PARTS - 1);
}

#[test]
fn too_many_headers_are_cut() {
    let mut raw = String::new();
    for i in 0..500 {
        raw.push_str(&format!("X-H{i}: v\n"));
    }
    raw.push_str("\nbody\n");
    let root = body_structure(raw.as_bytes());
    assert_eq!(root.headers.len(), MAX_PART_HEADERS);
    assert_eq!(root.headers[0], ("X-H0".to_string(), " v".to_string()));
}

#[test]
fn folded_header_kept_raw() {
    let raw = crlf("Subject: a\n b\nX-Odd :  v \n\nbody");
    let root = body_structure(&raw);
    assert_eq!(
        root.headers[0],
        ("Subject".to_string(), " a\r\n b".to_string())
    );
    assert_eq!(root.headers[1], ("X-Odd".to_string(), "  v ".to_string()));
}

#[test]
fn ids_match_parse_on_samples() {
    for s in [PLAIN, ALTERNATIVE, MIXED, RELATED, RFC822, NESTED] {
        assert_ids_match(&crlf(s));
        assert_ids_match(s.as_bytes());
        assert_lists_within_parse(&crlf(s));
        assert_lists_within_parse(s.as_bytes());
    }
}

#[test]
fn lf_and_crlf_agree_on_structure() {
    for s in [ALTERNATIVE, MIXED, RELATED, NESTED] {
        let a = body_structure(s.as_bytes());
        let b = body_structure(&crlf(s));
        assert_eq!(leaves(&a), leaves(&b));
        assert_eq!(body_lists(&a), body_lists(&b));
    }
}

#[test]
fn panic_falls_back_to_single_part() {
    let raw = crlf(MIXED);
    let out = analyse(
        &raw,
        |_, _, _| -> Option<usize> { panic!("simulated parser bug") },
        |body| Some(body.len()),
    );
    let body = fallback_body(&raw);
    assert!(body.starts_with(b"--m\r\n"));
    assert_eq!(out, Some(body.len()));
}

#[test]
fn every_prefix_and_corruption_is_safe() {
    for s in [ALTERNATIVE, MIXED, RELATED, RFC822, NESTED] {
        let raw = crlf(s);
        let mut inputs: Vec<Vec<u8>> = (0..raw.len()).map(|n| raw[..n].to_vec()).collect();
        for (i, b) in [0u8, b'-', b'\n', b'=', 0xff].into_iter().enumerate() {
            for pos in (i..raw.len()).step_by(7) {
                let mut v = raw.clone();
                v[pos] = b;
                inputs.push(v);
            }
        }
        for input in inputs {
            let root = body_structure(&input);
            let lists = body_lists(&root);
            for id in lists.text_body.iter().chain(&lists.html_body) {
                assert!(part_content(&input, id).is_some());
            }
            assert_ids_match(&input);
        }
    }
}

#[test]
fn digest_children_default_to_message() {
    let raw = crlf(
        "Content-Type: multipart/digest; boundary=d\n\n--d\n\n\
Subject: one\n\nfirst\n--d\nContent-Type: text/plain\n\nnot a message\n--d--\n",
    );
    let root = body_structure(&raw);
    assert_eq!(
        leaves(&root),
        vec![
            ("1".to_string(), "message/rfc822".to_string()),
            ("2".into(), "text/plain".into()),
        ]
    );
    assert_eq!(
        part_content(&raw, "1").expect("msg").bytes,
        b"Subject: one\r\n\r\nfirst"
    );
    assert_ids_match(&raw);
}

/// With a limit, only the start of a long part is decoded: the answer must be exactly the
/// whole part decoded, then cut (for every transfer encoding, charsets of 1 to 4 bytes per
/// character, and limits around every character boundary).
#[test]
fn a_limited_value_of_a_long_part_is_the_whole_value_cut() {
    let line = "Grüße, 😀 € naïve – ünïcödé text of a long part.\r\n";
    let text: String = line.repeat(400);
    let qp = |s: &str| -> String {
        let mut out = String::new();
        for l in s.split("\r\n") {
            let mut width = 0;
            for b in l.bytes() {
                let piece = if b.is_ascii_alphanumeric() || b == b' ' || b == b',' {
                    (b as char).to_string()
                } else {
                    format!("={b:02X}")
                };
                if width + piece.len() > 72 {
                    out.push_str("=\r\n");
                    width = 0;
                }
                width += piece.len();
                out.push_str(&piece);
            }
            out.push_str("\r\n");
        }
        out
    };
    let b64 = |b: &[u8]| -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = Vec::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                s.push(if i <= c.len() {
                    A[(n >> (18 - 6 * i) & 63) as usize]
                } else {
                    b'='
                });
            }
        }
        s.chunks(76)
            .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
            .collect()
    };
    let latin1: Vec<u8> = "Caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e.\r\n"
        .repeat(800)
        .chars()
        .map(|c| c as u32 as u8)
        .collect();
    let utf16: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    let cases: Vec<(String, &str, String)> = vec![
        ("utf-8".into(), "8bit", text.clone()),
        ("utf-8".into(), "base64", b64(text.as_bytes())),
        ("utf-8".into(), "quoted-printable", qp(&text)),
        ("iso-8859-1".into(), "base64", b64(&latin1)),
        ("utf-16be".into(), "base64", b64(&utf16)),
    ];
    for (charset, cte, body) in cases {
        let raw = format!(
            "Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{body}"
        )
        .into_bytes();
        let whole = body_value(&raw, "1", 0).expect("value");
        assert!(whole.value.len() > 10_000, "{charset} {cte}");
        for max in (1..40).chain([100, 997, 1000, 1001, 2500, 4096]) {
            let got = body_value(&raw, "1", max).expect("value");
            let end = floor_char_boundary(&whole.value, max);
            assert_eq!(got.value, whole.value[..end], "{charset} {cte} max {max}");
            assert!(got.is_truncated, "{charset} {cte} max {max}");
            assert_eq!(
                got.is_encoding_problem, whole.is_encoding_problem,
                "{charset} {cte} max {max}"
            );
        }
        let all = body_value(&raw, "1", whole.value.len()).expect("value");
        assert_eq!(
            all, whole,
            "{charset} {cte}: a limit of the whole length cuts nothing"
        );
    }
}

#[test]
fn several_values_come_from_one_parse_in_the_order_asked() {
    let raw = crlf(
        "Content-Type: multipart/alternative; boundary=b\n\n--b\n\
         Content-Type: text/plain\n\nplain\n--b\nContent-Type: text/html\n\n<p>html</p>\n--b--\n",
    );
    let got = body_values(&raw, &["2", "1", "2", "9"], 0);
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["2", "1"]);
    assert_eq!(got[1].1.value, "plain");
    assert!(got[0].1.value.contains("<p>html</p>"));
}

/// Reusing the message's buffer for the largest plain value gives the same values as
/// decoding from a borrowed buffer, whatever the parts and the limit.
#[test]
fn values_from_an_owned_buffer_are_the_same() {
    let raw = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n\
         Content-Type: text/plain; charset=utf-8\n\nGrüße, the long plain part.\nSecond line.\n\
         --b\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\nPHA+aHRtbDwvcD4=\n\
         --b\nContent-Type: text/plain; charset=iso-8859-1\n\nCaf\u{e9}\n--b--\n",
    );
    for ids in [&["1", "2", "3"][..], &["3", "1"], &["2"], &["9", "1", "1"]] {
        for max in [0, 5, 100] {
            assert_eq!(
                body_values_owned(raw.clone(), ids, max),
                body_values(&raw, ids, max),
                "{ids:?} {max}"
            );
        }
    }
    let single = crlf("Subject: x\n\nJust text.\n");
    assert_eq!(
        body_values_owned(single.clone(), &["1"], 0),
        body_values(&single, &["1"], 0)
    );
}

/// RFC 8621 4.1.4: a body value has its CRLF line ends replaced by LF, whatever the
/// transfer encoding and charset, and `maxBodyValueBytes` counts the value so converted.
#[test]
fn body_values_have_lf_line_ends() {
    let text = "line one\r\nline two\r\nlast\r\n";
    let want = "line one\nline two\nlast\n";
    let utf16: String = text
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .map(|b| format!("={b:02X}"))
        .collect::<Vec<_>>()
        .chunks(20)
        .map(|c| c.concat())
        .collect::<Vec<_>>()
        .join("=\r\n");
    let cases = [
        ("utf-8", "8bit", text.to_string()),
        ("us-ascii", "7bit", text.to_string()),
        (
            "utf-8",
            "base64",
            "bGluZSBvbmUNCmxpbmUgdHdvDQpsYXN0DQo=\r\n".to_string(),
        ),
        ("utf-16be", "quoted-printable", utf16),
    ];
    for (charset, cte, body) in cases {
        let raw = format!(
            "Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{body}"
        )
        .into_bytes();
        let v = body_value(&raw, "1", 0).expect("value");
        assert_eq!(v.value, want, "{charset} {cte}");
        assert!(!v.is_truncated, "{charset} {cte}");
        // The limit counts the converted value: its whole length cuts nothing.
        let all = body_value(&raw, "1", want.len()).expect("value");
        assert_eq!(all.value, want, "{charset} {cte}");
        assert!(!all.is_truncated, "{charset} {cte}");
        let cut = body_value(&raw, "1", 10).expect("value");
        assert_eq!(cut.value, "line one\nl", "{charset} {cte}");
        assert!(cut.is_truncated, "{charset} {cte}");
        for max in [0, want.len(), 10] {
            assert_eq!(
                body_values_owned(raw.clone(), &["1"], max),
                body_values(&raw, &["1"], max),
                "{charset} {cte} {max}"
            );
        }
    }
}

#[test]
fn only_crlf_pairs_lose_their_cr() {
    let mut v = b"a\r\nb\rc\n\r\r\n\r".to_vec();
    super::lf_line_ends(&mut v);
    assert_eq!(v, b"a\nb\rc\n\r\n\r");
}
