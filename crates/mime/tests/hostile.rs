//! Hostile-input tests: every case must return without panicking, with
//! sensible fields and the documented bounds.

use mime::{MAX_INDEX_TEXT, ParsedMessage, parse, parse_header, thread_keys};

/// Checks the invariants every parse result must satisfy, whatever the input.
fn check(pm: &ParsedMessage) {
    assert!(pm.preview.chars().count() <= 256, "preview too long");
    assert!(pm.body_text.len() <= MAX_INDEX_TEXT, "body_text too long");
    for id in pm
        .message_id
        .iter()
        .chain(&pm.in_reply_to)
        .chain(&pm.references)
    {
        assert!(
            !id.is_empty() && id.len() <= 998,
            "bad id length {}",
            id.len()
        );
        assert!(!id.starts_with('<') || !id.ends_with('>'));
    }
    let keys = thread_keys(pm);
    assert!(keys.len() <= 100);
    if let Some(s) = &pm.subject {
        assert!(!s.chars().any(char::is_control), "control char in subject");
        assert_eq!(s.trim(), s);
    }
    assert!(!pm.preview.chars().any(char::is_control));
    assert!(!pm.body_text.chars().any(char::is_control));
    for a in pm
        .from
        .iter()
        .chain(&pm.to)
        .chain(&pm.cc)
        .chain(&pm.bcc)
        .chain(&pm.sender)
        .chain(&pm.reply_to)
    {
        assert!(!a.email.is_empty());
        assert_eq!(a.email.trim(), a.email);
    }
    assert_eq!(
        pm.has_attachment,
        pm.attachments.iter().any(|a| !a.is_inline)
    );
}

/// The JMAP structure of hostile input: no panic, every attachment `parse`
/// reports is a leaf of the tree, a few leaves' content can be read.
fn check_structure(raw: &[u8], pm: &ParsedMessage) {
    let root = mime::body_structure(raw);
    let lists = mime::body_lists(&root);
    let mut leaf_ids = Vec::new();
    let mut depth_parts = vec![(&root, 0u32)];
    let mut count = 0;
    while let Some((part, depth)) = depth_parts.pop() {
        count += 1;
        assert!(depth <= mime::MAX_BODY_DEPTH);
        assert!(part.headers.len() <= mime::MAX_PART_HEADERS);
        match &part.sub_parts {
            Some(subs) => {
                assert!(part.part_id.is_none());
                depth_parts.extend(subs.iter().map(|s| (s, depth + 1)));
            }
            None => leaf_ids.push(part.part_id.clone().expect("leaf id")),
        }
    }
    assert!(count <= mime::MAX_BODY_PARTS);
    for a in &pm.attachments {
        assert!(leaf_ids.contains(&a.part_id), "{} missing", a.part_id);
    }
    for id in lists
        .text_body
        .iter()
        .chain(&lists.html_body)
        .chain(&lists.attachments)
    {
        assert!(leaf_ids.contains(id));
    }
    for id in leaf_ids.iter().take(5) {
        assert!(mime::part_content(raw, id).is_some(), "{id}");
        if let Some(v) = mime::body_value(raw, id, 7) {
            assert!(v.value.len() <= 7);
        }
    }
}

fn p(raw: &[u8]) -> ParsedMessage {
    let pm = parse(raw);
    check(&pm);
    check_structure(raw, &pm);
    let ph = parse_header(raw);
    check(&ph);
    assert!(ph.attachments.is_empty() && ph.body_text.is_empty() && ph.preview.is_empty());
    pm
}

/// Small deterministic PRNG (xorshift64*), so the fuzz loop is reproducible
/// without extra dependencies.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SAMPLE: &str = "From: =?utf-8?q?J=C3=BCrgen?= <j@example.de>\r\n\
To: a@example.com, Group: b@example.com, c@example.com;\r\n\
Subject: =?utf-8?B?w5xiZXJ3ZWlzdW5n?= Re: [list] test\r\n\
Date: Tue, 2 Jan 2024 10:00:00 +0100\r\n\
Message-ID: <sample@example.de>\r\n\
References: <r1@x> <r2@x>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
\r\n\
--XX\r\n\
Content-Type: multipart/alternative; boundary=YY\r\n\
\r\n\
--YY\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Caf=E9 au lait =\r\n\
soft break\r\n\
--YY\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>Caf&eacute; <script>x</script></p>\r\n\
--YY--\r\n\
--XX\r\n\
Content-Type: image/png; name=a.png\r\n\
Content-Disposition: inline; filename*=utf-8''%C3%A4.png\r\n\
Content-ID: <img1>\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
iVBORw0KGgoAAAANSUhEUg==\r\n\
--XX\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n\
--XX--\r\n";

#[test]
fn sample_is_sane() {
    let pm = p(SAMPLE.as_bytes());
    assert_eq!(pm.message_id.as_deref(), Some("sample@example.de"));
    assert_eq!(pm.preview, "Café au lait soft break");
    assert_eq!(pm.to.len(), 3, "group members flattened: {:?}", pm.to);
    assert_eq!(pm.attachments.len(), 2, "{:#?}", pm.attachments);
    assert!(pm.has_attachment, "message/rfc822 counts");
    assert!(pm.problems.is_empty(), "{:?}", pm.problems);
}

#[test]
fn empty_input() {
    let pm = p(b"");
    assert_eq!(pm.message_id, None);
    assert!(pm.problems.iter().any(|p| p == "empty input"));
}

#[test]
fn garbage_bytes() {
    let mut rng = Rng(7);
    for len in [1usize, 2, 3, 17, 256, 4096, 65536] {
        let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let pm = p(&raw);
        assert!(pm.attachments.len() <= len);
    }
    p(b"\xff\xfe\x00\x01");
    p(b":");
    p(b"::::\n\n::::");
    p(b"\n");
    p(b"\r\n\r\n");
    p(b"--\n--\n");
}

#[test]
fn header_without_body_and_no_blank_line() {
    let pm = p(b"Subject: only header\r\nMessage-ID: <h@x>\r\n");
    assert_eq!(pm.subject.as_deref(), Some("only header"));
    assert_eq!(pm.message_id.as_deref(), Some("h@x"));
    assert!(pm.body_text.is_empty());
    // Not even a final line break: the last structured field still counts.
    let pm = p(b"Subject: x\r\nMessage-ID: <last@x>");
    assert_eq!(pm.message_id.as_deref(), Some("last@x"));
    assert!(pm.problems.iter().any(|p| p.contains("blank line")));
    // Header terminated, empty body.
    let pm = p(b"Subject: y\r\n\r\n");
    assert_eq!(pm.subject.as_deref(), Some("y"));
    assert_eq!(pm.preview, "");
}

#[test]
fn latin1_raw_headers() {
    let pm = p(b"From: J\xf6rg <j@example.de>\nSubject: Gr\xfc\xdfe aus K\xf6ln\nDate: Tue, 2 Jan 2024 10:00:00 +0000\n\nHallo\n");
    assert_eq!(pm.subject.as_deref(), Some("Grüße aus Köln"));
    assert_eq!(pm.from[0].name.as_deref(), Some("Jörg"));
    assert_eq!(pm.from[0].email, "j@example.de");
    assert_eq!(pm.preview, "Hallo");
}

#[test]
fn broken_encoded_words() {
    for subj in [
        "=?utf-8?B?not-base64?=",
        "=?utf-8?Q?=ZZ=?=",
        "=?bogus-charset?B?SGVsbG8=?=",
        "=?utf-8?X?abc?=",
        "=?utf-8?B?",
        "=?=?=?",
        "=?utf-8?B?//79/A==?=",
    ] {
        let raw = format!("Subject: {subj}\nFrom: =?utf-8?B?%%%?= <a@b>\n\nbody\n");
        let pm = p(raw.as_bytes());
        assert!(pm.subject.is_some(), "{subj}");
        assert_eq!(pm.from.len(), 1, "{subj}");
    }
}

#[test]
fn unterminated_and_missing_boundaries() {
    let pm = p(b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nstart of text that never ends\n--b\nContent-Type: application/pdf\nContent-Disposition: attachment\n\n%PDF-1.");
    assert!(pm.preview.starts_with("start of text"), "{}", pm.preview);
    assert!(
        pm.problems.iter().any(|p| p == "truncated multipart"),
        "{:?}",
        pm.problems
    );
    let pm = p(b"Content-Type: multipart/mixed\n\n--x\nContent-Type: text/plain\n\nhello\n--x--\n");
    assert!(
        pm.problems.iter().any(|p| p.contains("without boundary")),
        "{:?}",
        pm.problems
    );
    let pm = p(b"Content-Type: multipart/mixed; boundary=absent\n\n--other\n\nhello\n--other--\n");
    assert!(
        pm.problems.iter().any(|p| p.contains("boundary")),
        "{:?}",
        pm.problems
    );
    p(b"Content-Type: multipart/mixed; boundary=\"\"\n\n--\n\nx\n----\n");
    p(b"Content-Type: multipart/mixed; boundary=b\n\n--b");
    p(b"Content-Type: multipart/mixed; boundary=b\n\n--b--");
    p(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n");
    p(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\n--b--\n--b--\n--b\n");
}

fn nested_multipart(depth: usize) -> Vec<u8> {
    let mut raw = b"From: deep@example.com\r\nSubject: deep\r\n".to_vec();
    for i in 0..depth {
        raw.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    raw.extend_from_slice(b"Content-Type: text/plain\r\n\r\ndeepest text\r\n");
    for i in (0..depth).rev() {
        raw.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
    }
    raw
}

#[test]
fn ten_thousand_nested_multiparts() {
    let raw = nested_multipart(10_000);
    let start = std::time::Instant::now();
    let pm = p(&raw);
    eprintln!(
        "10k nested multipart: {:?}, preview {:?}, problems {:?}",
        start.elapsed(),
        pm.preview,
        pm.problems
    );
    assert_eq!(pm.subject.as_deref(), Some("deep"));
}

#[test]
fn ten_thousand_nested_messages() {
    let mut raw = b"From: deep@example.com\r\nSubject: deep\r\n".to_vec();
    for i in 0..10_000 {
        raw.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"m{i}\"\r\n\r\n--m{i}\r\nContent-Type: message/rfc822\r\n\r\nSubject: level {i}\r\n").as_bytes(),
        );
    }
    raw.extend_from_slice(b"\r\nbottom\r\n");
    let pm = p(&raw);
    assert_eq!(pm.subject.as_deref(), Some("deep"));
    assert!(pm.attachments.len() <= 1);
}

#[test]
fn thousand_attachments() {
    let mut raw = b"From: a@example.com\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee below\r\n".to_vec();
    for i in 0..1000 {
        raw.extend_from_slice(
            format!("--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f{i}.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n").as_bytes(),
        );
    }
    raw.extend_from_slice(b"--B--\r\n");
    let pm = p(&raw);
    assert_eq!(pm.attachments.len(), 1000);
    assert!(pm.has_attachment);
    assert_eq!(pm.attachments[0].part_id, "2");
    assert_eq!(pm.attachments[999].part_id, "1001");
    assert_eq!(pm.attachments[999].name.as_deref(), Some("f999.bin"));
    assert!(pm.attachments.iter().all(|a| a.size == 6));
    assert_eq!(pm.preview, "see below");
}

#[test]
fn fifty_megabyte_message() {
    let line = "The quick brown fox jumps over the lazy dog, again and again.\r\n";
    let mut raw =
        b"From: big@example.com\r\nSubject: big\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\n"
            .to_vec();
    raw.reserve(50 * 1024 * 1024 + line.len());
    while raw.len() < 50 * 1024 * 1024 {
        raw.extend_from_slice(line.as_bytes());
    }
    let start = std::time::Instant::now();
    let pm = parse(&raw);
    eprintln!("50 MB parse: {:?}", start.elapsed());
    check(&pm);
    assert_eq!(pm.subject.as_deref(), Some("big"));
    assert_eq!(pm.preview.chars().count(), 256);
    assert!(pm.body_text.len() > MAX_INDEX_TEXT - 100);
    assert!(pm.body_text.starts_with("The quick brown fox"));
}

#[test]
fn nul_bytes() {
    let pm = p(
        b"Subject: a\0b\r\nFrom: x\0y <x@y>\r\nMessage-ID: <nul\0id@x>\r\n\r\nbody\0with\0nuls\r\n",
    );
    assert_eq!(pm.subject.as_deref(), Some("ab"));
    assert_eq!(pm.preview, "bodywithnuls");
    p(&[0u8; 10_000]);
    p(b"\0\0\0:\0\0\n\n\0");
}

#[test]
fn line_endings() {
    let body = "Subject: endings\nMessage-ID: <le@x>\nDate: Tue, 2 Jan 2024 10:00:00 +0000\nContent-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/plain\n\nline one\nline two\n--q\nContent-Type: application/zip\nContent-Disposition: attachment; filename=z.zip\n\nPK\n--q--\n";
    let lf = p(body.as_bytes());
    let crlf = p(body.replace('\n', "\r\n").as_bytes());
    let cr = p(body.replace('\n', "\r").as_bytes());
    for pm in [&lf, &crlf, &cr] {
        assert_eq!(pm.subject.as_deref(), Some("endings"));
        assert_eq!(pm.message_id.as_deref(), Some("le@x"));
        assert_eq!(pm.preview, "line one line two");
        assert_eq!(pm.attachments.len(), 1);
        assert_eq!(pm.attachments[0].name.as_deref(), Some("z.zip"));
        assert!(pm.sent_at.is_some());
    }
    assert!(cr.problems.iter().any(|p| p.contains("CR-only")));
    // Mixed endings.
    p(b"Subject: mixed\r\nFrom: a@b\nTo: c@d\r\r\n\nbody\r");
}

#[test]
fn megabyte_header_lines() {
    let huge = "x".repeat(1024 * 1024);
    let mut raw = format!("Subject: {huge}\r\nFrom: {huge}@example.com\r\nX-Junk: {huge}\r\nMessage-ID: <{huge}>\r\nReferences: ").into_bytes();
    for i in 0..50_000 {
        raw.extend_from_slice(format!("<ref{i}@x> ").as_bytes());
    }
    raw.extend_from_slice(b"\r\nTo: ");
    for i in 0..30_000 {
        raw.extend_from_slice(format!("u{i}@example.com, ").as_bytes());
    }
    raw.extend_from_slice(b"\r\n\r\nbody\r\n");
    let pm = p(&raw);
    let subject = pm.subject.as_deref().unwrap_or_default();
    assert!(subject.len() <= 16 * 1024 && subject.starts_with("xxx"));
    assert_eq!(pm.message_id, None, "over-long id rejected");
    assert_eq!(pm.references.len(), 50_000);
    assert_eq!(thread_keys(&pm).len(), 100);
    assert!(pm.to.len() <= 10_000);
    assert_eq!(pm.preview, "body");
    // A 1 MB folded header line.
    let mut folded = b"Subject: start".to_vec();
    for _ in 0..20_000 {
        folded.extend_from_slice(b"\r\n continued segment of the subject line ....");
    }
    folded.extend_from_slice(b"\r\n\r\nb\r\n");
    assert!(p(&folded).subject.is_some());
}

#[test]
fn invalid_dates() {
    for date in [
        "",
        "yesterday",
        "Mon, 32 Jan 2024 10:00:00 +0000",
        "Mon, 1 Foo 2024 10:00:00 +0000",
        "Mon, 1 Jan 2024 25:61:61 +0000",
        "Mon, 1 Jan 99999999999 10:00:00 +0000",
        "Mon, 1 Jan 1800 10:00:00 +0000",
        "Mon, 1 Jan 2024 10:00:00 +9999",
        "\u{1F4A9}",
        "1 1 1 1 1 1 1 1 1 1 1 1 1 1",
    ] {
        let raw = format!("Date: {date}\r\nSubject: d\r\n\r\nb\r\n");
        let pm = p(raw.as_bytes());
        if let Some(ts) = pm.sent_at {
            // Anything accepted must be a plausible timestamp.
            assert!(
                (-2_208_988_800..=32_535_215_999).contains(&ts),
                "{date}: {ts}"
            );
        } else {
            assert!(pm.problems.iter().any(|p| p.contains("Date")), "{date}");
        }
    }
    let pm = p(b"Subject: no date\r\n\r\nb\r\n");
    assert_eq!(pm.sent_at, None);
}

#[test]
fn fuzz_mutations() {
    let base = SAMPLE.as_bytes();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let interesting: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b"\r",
        b"\0",
        b"--XX",
        b"--XX--",
        b"--YY",
        b"=?",
        b"?=",
        b"<",
        b">",
        b":",
        b";",
        b"\"",
        b"=",
        b"\xff",
        b"\xc3",
        b"boundary=",
        b"Content-Type: multipart/mixed; boundary=XX\r\n",
        b"message/rfc822",
        b"base64",
        b"*0*=",
        b"&#",
        b"<script>",
    ];
    for _ in 0..2_000 {
        let mut m = base.to_vec();
        for _ in 0..1 + rng.below(8) {
            let pos = rng.below(m.len() + 1);
            match rng.below(5) {
                0 if pos < m.len() => m[pos] = rng.next() as u8,
                1 if pos < m.len() => {
                    let end = (pos + rng.below(64)).min(m.len());
                    m.drain(pos..end);
                }
                2 => {
                    let tok = interesting[rng.below(interesting.len())];
                    m.splice(pos..pos, tok.iter().copied());
                }
                3 => {
                    let from = rng.below(m.len());
                    let end = (from + rng.below(200)).min(m.len());
                    let chunk = m[from..end].to_vec();
                    m.splice(pos..pos, chunk);
                }
                _ => m.truncate(pos),
            }
        }
        p(&m);
    }
}
